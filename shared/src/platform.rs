//! Which Anthropic platform the organization's workspaces live on. The same
//! routes serve both; what differs is who is trusted and how a caller proves
//! who it is.
//!
//! - **Claude Platform** (the default): `https://api.anthropic.com`, an Admin
//!   API key read from Secrets Manager, and Anthropic's cross-account role in
//!   the key policy (see `geo`).
//! - **Claude Platform on AWS**: `https://aws-external-anthropic.<region>.api.aws`,
//!   every request signed with SigV4 (service `aws-external-anthropic`) by the
//!   function's own role, so no secret exists at all; the key policy trusts
//!   the service principal `aws-external-anthropic.amazonaws.com`; the key must
//!   be in the workspace's own account and Region; a registration is known by
//!   its KMS key ARN; and there is no separate validation: attaching performs
//!   it. (Anthropic's "Configure AWS KMS for CMEK", section "Set up CMEK on
//!   Claude Platform on AWS", and the Claude Platform on AWS user guide's
//!   authentication page.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, Region, WorkspaceId};

/// The SigV4 signing name and IAM service prefix of Claude Platform on AWS.
pub const SIGNING_NAME: &str = "aws-external-anthropic";

/// Claude Platform's API endpoint.
pub const CLAUDE_PLATFORM_URL: &str = "https://api.anthropic.com";

/// The service principal that uses the key on Claude Platform on AWS.
pub const SERVICE_PRINCIPAL: &str = "aws-external-anthropic.amazonaws.com";

/// The condition key binding the service principal to the caller's workspaces.
pub const SOURCE_ARN_CONDITION_KEY: &str = "aws:SourceArn";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// `claude-platform`: today's flow, with an Admin API key.
    #[default]
    ClaudePlatform,
    /// `claude-platform-on-aws`: SigV4, the service principal, attach-time validation.
    ClaudePlatformOnAws,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::ClaudePlatform, Platform::ClaudePlatformOnAws];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::ClaudePlatform => "claude-platform",
            Platform::ClaudePlatformOnAws => "claude-platform-on-aws",
        }
    }

    pub fn is_on_aws(self) -> bool {
        self == Platform::ClaudePlatformOnAws
    }

    /// Whether AttachKey performs the validation (no ValidateKey step).
    pub fn attach_validates(self) -> bool {
        self.is_on_aws()
    }

    /// The API endpoint for workspaces bound to `region`.
    pub fn endpoint(self, region: &Region) -> String {
        match self {
            Platform::ClaudePlatform => CLAUDE_PLATFORM_URL.to_owned(),
            Platform::ClaudePlatformOnAws => format!("https://{SIGNING_NAME}.{region}.api.aws"),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown platform {:?}: expected claude-platform or claude-platform-on-aws",
                    crate::ids::shown(s)
                )
            })
    }
}

/// How tightly the key policy's `aws:SourceArn` condition binds the service
/// principal on Claude Platform on AWS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceArnScope {
    /// `arn:aws:aws-external-anthropic:*:<account>:workspace/*`, as documented:
    /// any workspace of the account (the compartment condition still lists
    /// the workspaces).
    #[default]
    Account,
    /// The exact ARN of each workspace the key is given to.
    Workspaces,
}

impl FromStr for SourceArnScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "account" => Ok(Self::Account),
            "workspaces" => Ok(Self::Workspaces),
            other => Err(format!(
                "unknown source ARN scope {:?}: expected account or workspaces",
                crate::ids::shown(other)
            )),
        }
    }
}

/// A workspace's ARN on Claude Platform on AWS (the IAM actions reference:
/// `arn:aws:aws-external-anthropic:{region}:{account-id}:workspace/{workspace-id}`).
pub fn workspace_arn(region: &Region, account: &AccountId, workspace: &WorkspaceId) -> String {
    format!("arn:aws:{SIGNING_NAME}:{region}:{account}:workspace/{workspace}")
}

/// The documented `aws:SourceArn` pattern: every workspace of the account, any Region.
pub fn account_workspaces_pattern(account: &AccountId) -> String {
    format!("arn:aws:{SIGNING_NAME}:*:{account}:workspace/*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in Platform::ALL {
            assert_eq!(p.as_str().parse::<Platform>(), Ok(p));
            assert_eq!(serde_json::to_value(p).ok(), Some(serde_json::json!(p.as_str())));
        }
        let err = "bedrock".parse::<Platform>().err().unwrap_or_default();
        assert!(err.contains("claude-platform-on-aws"), "{err}");
    }

    #[test]
    fn endpoint_and_arns_follow_the_documented_forms() -> Result<(), crate::ids::IdError> {
        let region: Region = "us-east-2".parse()?;
        let account: AccountId = "123456789012".parse()?;
        let ws: WorkspaceId = "wrkspc_01abc".parse()?;
        assert_eq!(
            Platform::ClaudePlatformOnAws.endpoint(&region),
            "https://aws-external-anthropic.us-east-2.api.aws"
        );
        assert_eq!(
            Platform::ClaudePlatform.endpoint(&region),
            "https://api.anthropic.com"
        );
        assert_eq!(
            workspace_arn(&region, &account, &ws),
            "arn:aws:aws-external-anthropic:us-east-2:123456789012:workspace/wrkspc_01abc"
        );
        assert_eq!(
            account_workspaces_pattern(&account),
            "arn:aws:aws-external-anthropic:*:123456789012:workspace/*"
        );
        Ok(())
    }
}
