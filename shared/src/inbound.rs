//! The events the functions receive from EventBridge, typed with
//! `aws_lambda_events` (`EventBridgeEvent<T>` with a typed `detail`): a
//! malformed event is an `InvalidInput` that names the offending field.
//! (The CloudFormation custom resource request is read in
//! `triggers::custom_resource`, which must answer even a malformed one.)

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CmekError;

/// `detail-type` of a CloudTrail record EventBridge delivers.
pub const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
/// `detail-type` of an EventBridge schedule.
pub const SCHEDULED_DETAIL_TYPE: &str = "Scheduled Event";

/// Read `event` as an EventBridge event whose detail is a `T`.
pub fn eventbridge<T>(event: Value) -> Result<EventBridgeEvent<T>, CmekError>
where
    T: Serialize + DeserializeOwned,
{
    crate::error::parse_input(event, "not an EventBridge event: ")
}

/// The part of a CloudTrail record of a KMS call that the guardian reads
/// (`detail` of an "AWS API Call via CloudTrail" event). Every field is
/// optional: CloudTrail leaves out what a call did not have.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsCall {
    #[serde(default)]
    pub event_name: String,
    #[serde(default, rename = "eventID")]
    pub event_id: Option<String>,
    /// Set when the call failed (`AccessDenied`…): nothing changed.
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub user_identity: Option<UserIdentity>,
    #[serde(default)]
    pub request_parameters: Option<Value>,
    #[serde(default)]
    pub response_elements: Option<Value>,
    #[serde(default)]
    pub resources: Option<Vec<Resource>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(default)]
    pub arn: Option<String>,
    /// Set when an AWS service made the call on someone's behalf.
    #[serde(default)]
    pub invoked_by: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(default, rename = "ARN")]
    pub arn: Option<String>,
}

impl KmsCall {
    /// Who made the call, as CloudTrail names them.
    pub fn actor(&self) -> &str {
        self.user_identity
            .as_ref()
            .and_then(|u| u.arn.as_deref())
            .unwrap_or("unknown")
    }

    /// The key ARN among the call's resources, if CloudTrail listed one.
    pub fn key_arn(&self) -> Option<&str> {
        self.resources
            .iter()
            .flatten()
            .filter_map(|r| r.arn.as_deref())
            .find(|a| a.contains(":key/"))
    }

    /// `requestParameters.keyId`: an id, an ARN or an alias.
    pub fn key_id_parameter(&self) -> Option<&str> {
        self.request_parameters.as_ref()?.get("keyId")?.as_str()
    }

    /// `responseElements.deletionDate` of a `ScheduleKeyDeletion`.
    pub fn deletion_date(&self) -> Value {
        self.response_elements
            .as_ref()
            .and_then(|r| r.get("deletionDate"))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_cloudtrail_kms_event_reads_as_typed() {
        let e: EventBridgeEvent<KmsCall> = eventbridge(json!({
            "version": "0", "id": "e-1", "detail-type": CLOUDTRAIL_DETAIL_TYPE, "source": "aws.kms",
            "account": "123456789012", "time": "2026-11-28T10:00:00Z", "region": "us-east-2", "resources": [],
            "detail": {"eventName": "ScheduleKeyDeletion", "eventID": "c-1",
                       "userIdentity": {"arn": "arn:aws:iam::123456789012:user/bob"},
                       "requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
                       "responseElements": {"deletionDate": "Dec 7, 2026, 10:00:00 AM"},
                       "resources": [{"ARN": "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]}
        }))
        .unwrap();
        assert_eq!(e.detail_type, CLOUDTRAIL_DETAIL_TYPE);
        assert_eq!(e.detail.event_name, "ScheduleKeyDeletion");
        assert_eq!(e.detail.actor(), "arn:aws:iam::123456789012:user/bob");
        assert!(e.detail.key_arn().is_some_and(|a| a.ends_with("1234567890ab")));
        assert_eq!(e.detail.deletion_date(), "Dec 7, 2026, 10:00:00 AM");
    }

    #[test]
    fn a_malformed_event_names_the_field() {
        let err = eventbridge::<KmsCall>(
            json!({"detail-type": "x", "source": "aws.kms", "detail": {"eventName": 7}}),
        )
        .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        assert!(err.to_string().contains("detail.eventName"), "{err}");
        let err = eventbridge::<Value>(json!({"source": "aws.events", "detail": {}})).unwrap_err();
        assert!(err.to_string().contains("detail-type"), "{err}");
    }
}
