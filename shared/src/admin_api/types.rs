//! The Admin API's documented shapes. Unknown fields are ignored so that
//! additions on Anthropic's side do not break a deployed workflow.

use serde::{Deserialize, Serialize};

use crate::geo::Geo;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub archived_at: Option<String>,
    #[serde(default)]
    pub compartment_id: Option<String>,
    #[serde(default)]
    pub external_key_id: Option<String>,
}

impl Workspace {
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePage {
    pub data: Vec<Workspace>,
    pub has_more: bool,
    #[serde(default)]
    pub first_id: Option<String>,
    #[serde(default)]
    pub last_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub kms_arn: String,
    /// Deprecated and ignored by later API versions; still sent, as the
    /// older documentation requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalKey {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub geo: Option<String>,
    #[serde(default)]
    pub provider_config: Option<ProviderConfig>,
    #[serde(default)]
    pub attachment: Option<Attachment>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl ExternalKey {
    pub fn kms_arn(&self) -> Option<&str> {
        self.provider_config.as_ref().map(|p| p.kms_arn.as_str())
    }
    pub fn is_attached(&self) -> bool {
        self.attachment.as_ref().is_some_and(|a| a.kind == "attached")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalKeyPage {
    pub data: Vec<ExternalKey>,
    #[serde(default)]
    pub next_page: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateExternalKey<'a> {
    pub display_name: &'a str,
    pub geo: Geo,
    pub provider_config: ProviderConfig,
}

/// Validate answers HTTP 200 whatever the verdict: a failure is data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationStatus {
    Success,
    Failure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub status: ValidationStatus,
    /// Why validation failed; its shape is not documented, so any JSON is kept.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

impl Validation {
    pub fn succeeded(&self) -> bool {
        self.status == ValidationStatus::Success
    }

    /// The failure reason as text, whether the API sent a string or an object.
    pub fn error_text(&self) -> Option<String> {
        match &self.error {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Object(o)) => o
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .or_else(|| Some(serde_json::Value::Object(o.clone()).to_string())),
            Some(other) => Some(other.to_string()),
        }
    }
}
