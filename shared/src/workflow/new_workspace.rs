//! What an execution that creates a workspace with its key is asked to do:
//! the `createWorkspace` input, validated before anything is touched.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ProvisionRequest, Trigger};
use crate::error::CmekError;
use crate::ids::{CreationToken, KeyArn, WorkspaceId, shown};

/// `{"createWorkspace": {...}, "keyArn"?, "displayName"?, "restrictToWorkspaces"?, "trigger"?}`:
/// a new workspace, encrypted with its key from its first byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreationRequest {
    pub create_workspace: NewWorkspace,
    /// Name of the key's registration in Anthropic's console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Use this key (tagged `cmek:managed-by=cmek-provisioner` by its owner)
    /// instead of creating one. Its policy must already admit a workspace
    /// that does not exist yet; the provisioner does not rewrite it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_arn: Option<KeyArn>,
    /// Narrow a created key's policy to the new workspace once it exists
    /// (default: the stack's `RestrictToWorkspaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrict_to_workspaces: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWorkspace {
    /// The workspace's name (1–255 characters).
    pub name: String,
    /// `data_residency.workspace_geo`: immutable after creation. `us`, the
    /// only geo CMEK supports, is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_geo: Option<String>,
    /// `#RRGGBB`, as the console shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_color: Option<String>,
    /// What makes two requests the same request (default: derived from the
    /// name, so the same name twice makes one workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_token: Option<CreationToken>,
}

const MAX_NAME: usize = 255;

impl CreationRequest {
    /// Whether an execution's input asks for a new workspace.
    pub fn is_creation(value: &Value) -> bool {
        value.get("createWorkspace").is_some()
    }

    /// Parse and check a request; every problem is an `InvalidInput` naming the field.
    pub fn from_value(value: &Value) -> Result<Self, CmekError> {
        if value.to_string().len() > 32 * 1024 {
            return Err(CmekError::InvalidInput("input is larger than 32 KiB".into()));
        }
        let req: CreationRequest = crate::error::parse_input(value.clone(), "")?;
        let name = &req.create_workspace.name;
        let n = name.chars().count();
        if n == 0 || n > MAX_NAME || name.chars().any(char::is_control) || name.trim() != name {
            return Err(CmekError::InvalidInput(format!(
                "createWorkspace.name must be 1-{MAX_NAME} printable characters without leading or trailing spaces, got {:?}",
                shown(name)
            )));
        }
        if let Some(geo) = &req.create_workspace.workspace_geo
            && geo != "us"
        {
            return Err(CmekError::InvalidInput(format!(
                "createWorkspace.workspaceGeo {:?}: CMEK is available for the \"us\" workspace geo only",
                shown(geo)
            )));
        }
        if let Some(c) = &req.create_workspace.display_color
            && !(c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|x| x.is_ascii_hexdigit()))
        {
            return Err(CmekError::InvalidInput(format!(
                "createWorkspace.displayColor must be #RRGGBB, got {:?}",
                shown(c)
            )));
        }
        // The registration's name is checked by the provisioning request's rules.
        if req.display_name.is_some() {
            let probe = serde_json::json!({"workspaceId": "wrkspc_x", "displayName": req.display_name});
            ProvisionRequest::from_value(&probe)?;
        }
        Ok(req)
    }

    pub fn token(&self) -> CreationToken {
        self.create_workspace
            .creation_token
            .clone()
            .unwrap_or_else(|| CreationToken::for_name(&self.create_workspace.name))
    }

    pub fn display_name_or_default(&self) -> String {
        self.display_name
            .clone()
            .unwrap_or_else(|| format!("cmek-provisioner {}", self.create_workspace.name))
    }

    /// What the rest of the state machine runs once the workspace exists:
    /// an ordinary provisioning of that workspace with the key it was
    /// created with (Begin finds it attached to that key; Finish records
    /// it and answers CloudFormation with the new workspace's id).
    pub fn hand_off(&self, workspace: &WorkspaceId, key: &KeyArn) -> ProvisionRequest {
        let trigger = self.trigger.clone().map(|t| match t {
            Trigger::Cloudformation(mut callback) => {
                callback.physical_resource_id =
                    format!("{}{workspace}", crate::cloudformation::WORKSPACE_PHYSICAL_PREFIX);
                Trigger::Cloudformation(callback)
            }
            other => other,
        });
        ProvisionRequest {
            workspace_id: workspace.clone(),
            display_name: self.display_name.clone(),
            key_arn: Some(key.clone()),
            manage_key_policy: false,
            restrict_to_workspaces: self.restrict_to_workspaces,
            accept_findings: Vec::new(),
            default_workspace: false,
            trigger,
        }
    }
}

/// What the creation step receives from the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct CreationInput {
    pub request: CreationRequest,
    pub execution: String,
}

impl CreationInput {
    pub fn from_value(value: &Value) -> Result<Self, CmekError> {
        let execution = value
            .get("execution")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty() && e.len() <= 512)
            .ok_or_else(|| CmekError::InvalidInput("execution (the execution id) is required".into()))?
            .to_owned();
        let request = CreationRequest::from_value(value.get("request").unwrap_or(&Value::Null))?;
        Ok(Self { request, execution })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_same_name_is_the_same_request() {
        let a = CreationRequest::from_value(&json!({"createWorkspace": {"name": "prod"}})).unwrap();
        let b =
            CreationRequest::from_value(&json!({"createWorkspace": {"name": "prod"}, "displayName": "k"}))
                .unwrap();
        let c = CreationRequest::from_value(&json!({"createWorkspace": {"name": "prod2"}})).unwrap();
        assert_eq!(a.token(), b.token());
        assert_ne!(a.token(), c.token());
        let d = CreationRequest::from_value(
            &json!({"createWorkspace": {"name": "prod", "creationToken": "second-prod"}}),
        )
        .unwrap();
        assert_eq!(d.token().as_str(), "second-prod");
    }

    #[test]
    fn bad_input_is_named() {
        for (input, needle) in [
            (json!({"createWorkspace": {}}), "name"),
            (json!({"createWorkspace": {"name": ""}}), "createWorkspace.name"),
            (json!({"createWorkspace": {"name": " x"}}), "createWorkspace.name"),
            (
                json!({"createWorkspace": {"name": "x", "workspaceGeo": "eu"}}),
                "workspaceGeo",
            ),
            (
                json!({"createWorkspace": {"name": "x", "displayColor": "red"}}),
                "displayColor",
            ),
            (
                json!({"createWorkspace": {"name": "x", "creationToken": "a b"}}),
                "creation token",
            ),
            (
                json!({"createWorkspace": {"name": "x"}, "workspaceId": "wrkspc_1"}),
                "workspaceId",
            ),
            (
                json!({"createWorkspace": {"name": "x"}, "keyArn": "arn:aws:s3:::b"}),
                "KMS",
            ),
            (
                json!({"createWorkspace": {"name": "x"}, "displayName": ""}),
                "displayName",
            ),
        ] {
            let err = CreationRequest::from_value(&input).unwrap_err();
            assert_eq!(err.error_type(), "InvalidInput");
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
    }
}
