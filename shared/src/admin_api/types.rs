//! The Admin API's documented shapes. Unknown fields are ignored so that
//! additions on Anthropic's side do not break a deployed workflow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geo::Geo;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub archived_at: Option<String>,
    #[serde(default)]
    pub compartment_id: Option<String>,
    #[serde(default)]
    pub external_key_id: Option<String>,
    /// The user profile the workspace belongs to, if any ("a key bound to a
    /// user profile can only be attached to a Workspace that has the same
    /// user profile"). Not found in the workspace reference: read when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_profile_id: Option<String>,
    /// User-defined tags (the Workspace object's `tags`; "Keys may not begin
    /// with anthropic"). A workspace this project creates carries its
    /// creation token here, which is how a retry finds it.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_color: Option<String>,
}

fn null_as_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
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

/// Where a registered key lives. An organization's list can hold keys of all
/// three providers (and, one day, others): every kind decodes, and only AWS
/// keys can be this project's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ProviderConfig {
    Aws {
        #[serde(default)]
        kms_arn: Option<String>,
        /// Deprecated and ignored by the API; read, never sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_arn: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    Gcp {
        #[serde(default)]
        key_name: Option<String>,
    },
    Azure {
        #[serde(default)]
        key_name: Option<String>,
        #[serde(default)]
        tenant_id: Option<String>,
        #[serde(default)]
        vault_uri: Option<String>,
    },
    /// A provider this client does not know yet.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalKey {
    pub id: String,
    /// Nullable in the API.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub geo: Option<String>,
    #[serde(default, deserialize_with = "lenient_provider")]
    pub provider_config: Option<ProviderConfig>,
    #[serde(default)]
    pub attachment: Option<Attachment>,
    /// The user profile the registration is bound to; the binding cannot be
    /// changed, and such a key attaches only to a workspace of the same profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_profile_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A provider configuration this client cannot read (a missing `type`, a
/// field of an unexpected shape) is kept as [`ProviderConfig::Other`]: one odd
/// key must not make the whole list unreadable, and it is not ours either way.
fn lenient_provider<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ProviderConfig>, D::Error> {
    let raw = Option::<serde_json::Value>::deserialize(d)?;
    Ok(raw.map(|v| serde_json::from_value(v).unwrap_or(ProviderConfig::Other)))
}

impl ExternalKey {
    /// The KMS key ARN of an AWS registration; `None` for other providers.
    pub fn kms_arn(&self) -> Option<&str> {
        match &self.provider_config {
            Some(ProviderConfig::Aws { kms_arn, .. }) => kms_arn.as_deref(),
            _ => None,
        }
    }

    /// `aws`, `gcp`, `azure`, or `other`.
    pub fn provider(&self) -> &'static str {
        match &self.provider_config {
            Some(ProviderConfig::Aws { .. }) => "aws",
            Some(ProviderConfig::Gcp { .. }) => "gcp",
            Some(ProviderConfig::Azure { .. }) => "azure",
            Some(ProviderConfig::Other) | None => "other",
        }
    }

    pub fn is_attached(&self) -> bool {
        self.attachment.as_ref().is_some_and(|a| a.kind == "attached")
    }

    pub fn display_name_or_empty(&self) -> &str {
        self.display_name.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalKeyPage {
    pub data: Vec<ExternalKey>,
    #[serde(default)]
    pub next_page: Option<String>,
}

/// The body of `POST /v1/organizations/external_keys` for a KMS key.
#[derive(Debug, Clone, Serialize)]
pub struct CreateExternalKey<'a> {
    pub display_name: &'a str,
    pub geo: Geo,
    pub provider_config: CreateAwsProvider<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateAwsProvider<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub kms_arn: &'a str,
}

/// The body of `POST /v1/organizations/workspaces` ("Create Workspace"):
/// a workspace encrypted with `external_key_id` from its first byte.
#[derive(Debug, Clone, Serialize)]
pub struct CreateWorkspace<'a> {
    pub name: &'a str,
    pub external_key_id: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_color: Option<&'a str>,
    /// Only `workspace_geo` is sent (immutable after creation; `us`, the
    /// only geo with CMEK); inference geos keep their documented defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_residency: Option<DataResidency>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct DataResidency {
    pub workspace_geo: Geo,
}

/// `GET /v1/organizations/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
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
