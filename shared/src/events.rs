//! Result events on the project's EventBridge bus.

use serde_json::Value;

use crate::aws::{AwsFailure, FailureKind, classify, kind_of_code};

pub const SOURCE: &str = "cmek-provisioner";
pub const DETAIL_SUCCEEDED: &str = "CMEK Provisioning Succeeded";
pub const DETAIL_FAILED: &str = "CMEK Provisioning Failed";
/// `cmekctl preflight`'s test event: the result rule delivers it to the
/// result topic like a result, so that a deployment shows it can.
pub const DETAIL_PREFLIGHT: &str = "CMEK Preflight";

/// Why events did not reach the bus: the call failed, or EventBridge took
/// the call and refused the entry. Either is classified by AWS's own error
/// code, so that only a throttled put reads as `Throttled`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    Call(AwsFailure),
    #[error("PutEvents rejected the event ({code}): {message}")]
    EntryRejected { code: String, message: String },
}

impl EventsError {
    pub fn kind(&self) -> FailureKind {
        match self {
            EventsError::Call(f) => f.kind,
            EventsError::EntryRejected { code, .. } => kind_of_code(code),
        }
    }
}

/// As an [`AwsFailure`], for the functions' one error type.
impl From<EventsError> for AwsFailure {
    fn from(e: EventsError) -> Self {
        let kind = e.kind();
        match e {
            EventsError::Call(f) => f,
            EventsError::EntryRejected { code, message } => AwsFailure {
                service: "events",
                op: "PutEvents",
                kind,
                code,
                message,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventPublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventPublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }

    fn entry(&self, detail_type: &str, detail: &Value) -> aws_sdk_eventbridge::types::PutEventsRequestEntry {
        aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .build()
    }

    async fn put(
        &self,
        entries: Vec<aws_sdk_eventbridge::types::PutEventsRequestEntry>,
    ) -> Result<aws_sdk_eventbridge::operation::put_events::PutEventsOutput, EventsError> {
        self.client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| EventsError::Call(classify("events", "PutEvents", &e)))
    }

    /// Put up to 10 events of one type; per entry, whether it was accepted.
    pub async fn put_batch(&self, detail_type: &str, details: &[Value]) -> Result<Vec<bool>, EventsError> {
        let entries = details.iter().map(|d| self.entry(detail_type, d)).collect();
        let out = self.put(entries).await?;
        let results = out.entries();
        Ok((0..details.len())
            .map(|i| {
                results
                    .get(i)
                    .is_some_and(|r| r.error_code().is_none() && r.event_id().is_some())
            })
            .collect())
    }

    /// Publish one event. A failure is returned, not swallowed: the caller
    /// decides whether the event is worth failing the step for.
    pub async fn publish(&self, detail_type: &str, detail: &Value) -> Result<(), EventsError> {
        let out = self.put(vec![self.entry(detail_type, detail)]).await?;
        if out.failed_entry_count() > 0 {
            let failed = out.entries().iter().find(|e| e.error_code().is_some());
            return Err(EventsError::EntryRejected {
                code: failed
                    .and_then(|e| e.error_code())
                    .unwrap_or("Unknown")
                    .to_owned(),
                message: failed
                    .and_then(|e| e.error_message())
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_entry_is_classified_by_its_code() {
        let rejected = |code: &str| EventsError::EntryRejected {
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(rejected("ThrottlingException").kind(), FailureKind::Throttled);
        assert_eq!(rejected("InternalFailure").kind(), FailureKind::Unavailable);
        assert_eq!(
            rejected("AccessDeniedException").kind(),
            FailureKind::AccessDenied
        );
        assert_eq!(rejected("MalformedDetail").kind(), FailureKind::Rejected);
    }
}
