//! Result events on the project's EventBridge bus.

use serde_json::Value;

pub const SOURCE: &str = "cmek-provisioner";
pub const DETAIL_SUCCEEDED: &str = "CMEK Provisioning Succeeded";
pub const DETAIL_FAILED: &str = "CMEK Provisioning Failed";

#[derive(Debug, Clone)]
pub struct EventPublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventPublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }

    /// Put up to 10 events of one type; per entry, whether it was accepted.
    pub async fn put_batch(
        &self,
        detail_type: &str,
        details: &[serde_json::Value],
    ) -> Result<Vec<bool>, String> {
        let entries: Vec<_> = details
            .iter()
            .map(|d| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(SOURCE)
                    .detail_type(detail_type)
                    .detail(d.to_string())
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "PutEvents: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                )
            })?;
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
    pub async fn publish(&self, detail_type: &str, detail: &Value) -> Result<(), String> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "PutEvents: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                )
            })?;
        if out.failed_entry_count() > 0 {
            let why = out
                .entries()
                .iter()
                .filter_map(|e| e.error_message())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(format!("PutEvents rejected the event: {why}"));
        }
        Ok(())
    }
}
