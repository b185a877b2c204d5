//! What the guardian tells: alerts, on the project's bus and to people.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::Deps;
use crate::error::CmekError;

pub const ALERT_DETAIL_TYPE: &str = "CMEK Key Alert";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    Medium,
    High,
    Critical,
}

/// One thing the guardian found about one key, for every workspace on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub severity: Severity,
    /// e.g. `KEY_DELETION_SCHEDULED`, `KEY_DISABLED`, `POLICY_BROKEN`.
    pub code: String,
    pub key_arn: String,
    pub workspaces: Vec<String>,
    pub message: String,
    #[serde(default)]
    pub detail: Value,
}

/// Send an alert: every one to the project's bus (automation), HIGH and
/// CRITICAL ones also to the alert topic (people), when the stack has one.
pub async fn notify(deps: &Deps, alert: &Alert) -> Result<(), CmekError> {
    if let Some(bus) = &deps.events {
        bus.publish(
            ALERT_DETAIL_TYPE,
            &serde_json::to_value(alert).unwrap_or_default(),
        )
        .await?;
    }
    if alert.severity >= Severity::High
        && let (Some(sns), Some(topic)) = (&deps.sns, &deps.config.alert_topic_arn)
    {
        let subject = format!("[cmek-provisioner] {:?}: {}", alert.severity, alert.code);
        let body = format!(
            "{}\n\nKey: {}\nAffected workspaces: {}\n\nDetails: {}",
            alert.message,
            alert.key_arn,
            alert.workspaces.join(", "),
            serde_json::to_string_pretty(&alert.detail).unwrap_or_default()
        );
        sns.publish()
            .topic_arn(topic)
            .subject(subject.chars().take(100).collect::<String>())
            .message(body)
            .send()
            .await
            .map_err(|e| crate::aws::classify("sns", "Publish", &e))?;
    }
    Ok(())
}
