//! What an execution is asked to do, validated before anything is touched.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloudformation::Callback;
use crate::error::CmekError;
use crate::ids::{KeyArn, WorkspaceId, shown};
use crate::policy::FindingCode;

/// The state machine's input, as manual runs, EventBridge and CloudFormation give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionRequest {
    pub workspace_id: WorkspaceId,
    /// Name of the registration in Anthropic's console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Reuse an existing key instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_arn: Option<KeyArn>,
    /// With `keyArn`: add this workspace's compartment to the key's policy
    /// (default). Set false when the policy is managed elsewhere (Terraform,
    /// CloudFormation): the workflow then only checks it.
    #[serde(default = "yes")]
    pub manage_key_policy: bool,
    /// Whether a key created here lists the workspaces that may use it
    /// (`StringEqualsIfExists` on the compartment, the default) or is bound to
    /// the organization only (`false`). Overrides the stack's
    /// `RestrictToWorkspaces`. The organization condition is always written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrict_to_workspaces: Option<bool>,
    /// Over-permissive findings the operator accepts for an adopted key,
    /// e.g. `["ACCOUNT_WIDE_PRINCIPAL", "EXTRA_ACTIONS"]`. Recorded in the audit trail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_findings: Vec<FindingCode>,
    /// The operator's explicit opt-in to giving the organization's Default
    /// Workspace a key (organization webhooks are then refused; see
    /// `crate::lifecycle`). Begin refuses the Default Workspace without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_workspace: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

fn yes() -> bool {
    true
}

/// What started the execution, recorded on the workflow record. The JSON is
/// an object tagged by `source`; CloudFormation's carries how to answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Trigger {
    /// A person or script (`cmekctl`, the console): whatever it wants recorded.
    Manual {
        #[serde(flatten)]
        detail: serde_json::Map<String, Value>,
    },
    /// A `Workspace Discovered` event (`eventId`, `eventSource`) or discovery itself.
    Eventbridge {
        #[serde(flatten)]
        detail: serde_json::Map<String, Value>,
    },
    /// A custom resource: Finish answers CloudFormation through it.
    Cloudformation(Callback),
}

const MAX_DISPLAY_NAME: usize = 255;
/// State machine inputs are small; anything bigger is not ours.
const MAX_INPUT_BYTES: usize = 32 * 1024;

impl ProvisionRequest {
    /// Parse and check a request; every problem is an `InvalidInput` naming the field.
    pub fn from_value(value: &Value) -> Result<Self, CmekError> {
        let size = value.to_string().len();
        if size > MAX_INPUT_BYTES {
            return Err(CmekError::InvalidInput(format!(
                "input is {size} bytes; the limit is {MAX_INPUT_BYTES}"
            )));
        }
        if !value.is_object() {
            return Err(CmekError::InvalidInput(
                "input must be a JSON object with a workspaceId".into(),
            ));
        }
        // The error names the field (e.g. `trigger.source: unknown variant …`).
        let req: ProvisionRequest = crate::error::parse_input(value.clone(), "")?;
        if let Some(name) = &req.display_name {
            let n = name.chars().count();
            if n == 0 || n > MAX_DISPLAY_NAME || name.chars().any(|c| c.is_control() || is_invisible(c)) {
                return Err(CmekError::InvalidInput(format!(
                    "displayName must be 1-{MAX_DISPLAY_NAME} printable characters, got {:?}",
                    shown(name)
                )));
            }
        }
        if !req.accept_findings.is_empty() && req.key_arn.is_none() {
            return Err(CmekError::InvalidInput(
                "acceptFindings applies only to an adopted key (keyArn); keys created here have the documented policy".into(),
            ));
        }
        // Only findings that leave a working key can be accepted: a policy
        // Anthropic's validation refuses cannot be accepted into working.
        if let Some(f) = req.accept_findings.iter().find(|f| !f.acceptable()) {
            return Err(CmekError::InvalidInput(format!(
                "acceptFindings: {} cannot be accepted (Anthropic's validation refuses such a key; fix the policy instead)",
                f.name()
            )));
        }
        Ok(req)
    }

    pub fn display_name_or_default(&self) -> String {
        self.display_name
            .clone()
            .unwrap_or_else(|| format!("cmek-provisioner {}", self.workspace_id))
    }
}

/// Bidirectional overrides and zero-width characters: legal Unicode, but in a
/// name shown in Anthropic's console they can make one key look like another.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// What every step after Begin receives from the state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepInput {
    pub request: ProvisionRequest,
    /// `$$.Execution.Id`: the lease owner.
    pub execution: String,
}

impl StepInput {
    pub fn from_value(value: &Value) -> Result<Self, CmekError> {
        let execution = value
            .get("execution")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty() && e.len() <= 512)
            .ok_or_else(|| CmekError::InvalidInput("execution (the execution id) is required".into()))?
            .to_owned();
        let request = ProvisionRequest::from_value(value.get("request").unwrap_or(&Value::Null))?;
        Ok(Self { request, execution })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn minimal_and_full_requests() {
        let r = ProvisionRequest::from_value(&json!({"workspaceId": "wrkspc_01ABC"})).unwrap();
        assert!(r.manage_key_policy);
        assert_eq!(r.display_name_or_default(), "cmek-provisioner wrkspc_01ABC");
        let full = json!({
            "workspaceId": "wrkspc_01ABC", "displayName": "prod", "manageKeyPolicy": false,
            "keyArn": "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "acceptFindings": ["EVERYONE_PRINCIPAL"], "restrictToWorkspaces": false,
            "trigger": {"source": "cloudformation", "requestType": "Create", "requestId": "r-1",
                        "responseUrl": "https://s3.example/r?sig=1", "stackId": "arn:aws:cloudformation:us-east-2:111122223333:stack/s/1",
                        "logicalResourceId": "Key", "physicalResourceId": "cmek:wrkspc_01ABC",
                        "failurePhysicalResourceId": "cmek-failed:r-1"}
        });
        let r = ProvisionRequest::from_value(&full).unwrap();
        assert_eq!(r.restrict_to_workspaces, Some(false));
        let Some(Trigger::Cloudformation(callback)) = r.trigger else {
            panic!("not a CloudFormation trigger: {:?}", r.trigger)
        };
        assert_eq!(callback.request_id, "r-1");
        // The JSON round-trips unchanged (records store it as is).
        assert_eq!(
            serde_json::to_value(ProvisionRequest::from_value(&full).unwrap()).unwrap()["trigger"],
            full["trigger"]
        );
    }

    #[test]
    fn bad_input_is_named() {
        let cases = [
            (json!({}), "workspaceId"),
            (json!("wrkspc_1"), "JSON object"),
            (json!({"workspaceId": "ws_1"}), "wrkspc_"),
            (json!({"workspaceId": "wrkspc_1", "extra": 1}), "extra"),
            (
                json!({"workspaceId": "wrkspc_1", "keyArn": "arn:aws:s3:::bucket"}),
                "KMS",
            ),
            (
                json!({"workspaceId": "wrkspc_1", "displayName": ""}),
                "displayName",
            ),
            (
                json!({"workspaceId": "wrkspc_1", "displayName": "a\u{0007}b"}),
                "displayName",
            ),
            (
                json!({"workspaceId": "wrkspc_1", "acceptFindings": ["EXTRA_ACTIONS"]}),
                "adopted key",
            ),
            (
                json!({"workspaceId": "wrkspc_1", "trigger": {"source": "email"}}),
                "email",
            ),
            // A CloudFormation trigger that cannot be answered is refused,
            // not run to an answer nobody receives.
            (
                json!({"workspaceId": "wrkspc_1", "trigger": {"source": "cloudformation", "requestId": "r-1"}}),
                "trigger",
            ),
            (
                json!({"workspaceId": "wrkspc_1", "displayName": "x".repeat(40_000)}),
                "limit",
            ),
            (
                json!({"workspaceId": "wrkspc_1", "roleArn": "arn:aws:iam::666666666666:role/x"}),
                "roleArn",
            ),
        ];
        for (input, needle) in cases {
            let err = ProvisionRequest::from_value(&input).unwrap_err();
            assert_eq!(err.error_type(), "InvalidInput");
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
        let arn = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        // Findings validation refuses cannot be accepted: not a missing
        // grant, and (since September 2026) not the wizard's account-wide
        // grant, extra actions or a missing organization condition either.
        for code in [
            "NO_CRYPTO_GRANT",
            "ACCOUNT_WIDE_PRINCIPAL",
            "EXTRA_ACTIONS",
            "NO_ORG_CONDITION",
        ] {
            let err = ProvisionRequest::from_value(
                &json!({"workspaceId": "wrkspc_1", "keyArn": arn, "acceptFindings": [code]}),
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("cannot be accepted") && err.to_string().contains(code),
                "{err}"
            );
        }
        assert!(
            ProvisionRequest::from_value(
                &json!({"workspaceId": "wrkspc_1", "keyArn": arn, "acceptFindings": ["UNPUBLISHED_ANTHROPIC_PRINCIPAL"]})
            )
            .is_ok()
        );
    }
}
