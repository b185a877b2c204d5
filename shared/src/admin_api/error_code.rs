//! The typed `error.details.error_code` of Anthropic's API errors, and the one
//! place that decides what each means for this workflow: send the request
//! again, stop with a named error, or look into the key (Diagnose).
//!
//! Sources (read 2026-12-07): the official SDKs' error classes, which carry
//! each code with its documentation (anthropic-sdk-ruby
//! `Anthropic::Models::Organization::ExternalKeyChangedError` "The external
//! key changed while the request was validating it. Send the request again.",
//! `…ExternalKeyInWorkspacePolicyError` "can't be deleted or reconfigured
//! while the organization's Workspace Policy lists it as an allowed key",
//! `…KeyProfileMismatchError` "A key and its Workspace must have the same user
//! profile, or both have none", `BetaExternalKeyProviderMismatchError` "held by
//! a key management service that this endpoint does not take";
//! anthropic-sdk-typescript `ExternalKeyValidationTimedOutError` "Wait a
//! moment, then send the request again", `ExternalKeyValidationFailedError`
//! "failed Anthropic's validation, so the request was refused"), and the CMEK
//! troubleshooting page (platform.claude.com/docs/en/manage-claude/cmek-troubleshooting:
//! `cmek_key_disabled` 400, `cmek_key_network_blocked` 400 "The key itself may
//! be healthy", `cmek_key_unreachable` "Try again shortly").

use std::fmt;

/// A documented error code, or one this client does not know yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    ValidationFailed,
    ValidationTimedOut,
    KeyChanged,
    InWorkspacePolicy,
    ProviderMismatch,
    KeyProfileMismatch,
    ExternalKeyNotFound,
    CmekKeyDisabled,
    CmekKeyNetworkBlocked,
    CmekKeyUnreachable,
    /// A code the documentation did not have when this was written: the
    /// error is routed by its status and `error.type` as before, and the code
    /// is logged so that it can be added here.
    Unknown(String),
}

/// What the workflow does with an error that carries a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Transient: the state machine sends the request again on its
    /// transient schedule (nothing was changed by the refused request).
    Retry,
    /// Permanent: stop at once with the code's own named error.
    Refuse,
    /// The key was refused: Diagnose reads the key and its policy and names the cause.
    Diagnose,
}

/// Every documented code, for tests and the table in docs/architecture.md.
pub const DOCUMENTED: &[&str] = &[
    "external_key_validation_failed",
    "external_key_validation_timed_out",
    "external_key_changed",
    "external_key_in_workspace_policy",
    "external_key_provider_mismatch",
    "key_profile_mismatch",
    "external_key_not_found",
    "cmek_key_disabled",
    "cmek_key_network_blocked",
    "cmek_key_unreachable",
];

impl ErrorCode {
    pub fn parse(code: &str) -> Self {
        use ErrorCode::*;
        match code {
            "external_key_validation_failed" => ValidationFailed,
            "external_key_validation_timed_out" => ValidationTimedOut,
            "external_key_changed" => KeyChanged,
            "external_key_in_workspace_policy" => InWorkspacePolicy,
            "external_key_provider_mismatch" => ProviderMismatch,
            "key_profile_mismatch" => KeyProfileMismatch,
            "external_key_not_found" => ExternalKeyNotFound,
            "cmek_key_disabled" => CmekKeyDisabled,
            "cmek_key_network_blocked" => CmekKeyNetworkBlocked,
            "cmek_key_unreachable" => CmekKeyUnreachable,
            other => Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        use ErrorCode::*;
        match self {
            ValidationFailed => "external_key_validation_failed",
            ValidationTimedOut => "external_key_validation_timed_out",
            KeyChanged => "external_key_changed",
            InWorkspacePolicy => "external_key_in_workspace_policy",
            ProviderMismatch => "external_key_provider_mismatch",
            KeyProfileMismatch => "key_profile_mismatch",
            ExternalKeyNotFound => "external_key_not_found",
            CmekKeyDisabled => "cmek_key_disabled",
            CmekKeyNetworkBlocked => "cmek_key_network_blocked",
            CmekKeyUnreachable => "cmek_key_unreachable",
            Unknown(code) => code,
        }
    }

    /// The route, or `None` for a code this client does not know (routed by
    /// status and type instead).
    pub fn route(&self) -> Option<Route> {
        use ErrorCode::*;
        Some(match self {
            ValidationTimedOut | KeyChanged | CmekKeyUnreachable => Route::Retry,
            InWorkspacePolicy | ProviderMismatch | KeyProfileMismatch | ExternalKeyNotFound => Route::Refuse,
            ValidationFailed | CmekKeyDisabled | CmekKeyNetworkBlocked => Route::Diagnose,
            Unknown(_) => return None,
        })
    }

    /// What an operator does about a permanent refusal (in the error's message).
    pub fn fix(&self) -> Option<&'static str> {
        use ErrorCode::*;
        Some(match self {
            InWorkspacePolicy => {
                "the organization's Workspace Policy lists this key as an allowed key, and such a key cannot be deleted or reconfigured; change the Workspace Policy first, or leave the key as it is"
            }
            ProviderMismatch => {
                "the registration is held by a key management service this endpoint does not take: register an AWS KMS key (on Claude Platform on AWS, a single-Region key in the organization's own account)"
            }
            KeyProfileMismatch => {
                "a key and its workspace must have the same user profile, or both have none; the binding cannot be changed: use a registration bound to the workspace's user profile (or none), or a workspace without one"
            }
            ExternalKeyNotFound => {
                "the external key is not registered in this organization: check the id, and that the admin key belongs to the organization that registered it"
            }
            CmekKeyDisabled => {
                "the key is disabled or Anthropic's access to it was removed (or the key policy lists other workspaces but not this one, or an IP condition blocks Anthropic): re-enable the key or restore the documented grant"
            }
            CmekKeyNetworkBlocked => {
                "the key management service's network controls (an IP allow-list or VPC condition in the key policy, a firewall) blocked Anthropic: allow Anthropic's published IP addresses, or remove the network condition from Anthropic's grant"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_round_trips_and_has_a_route() {
        for code in DOCUMENTED {
            let parsed = ErrorCode::parse(code);
            assert_eq!(parsed.as_str(), *code);
            assert!(parsed.route().is_some(), "{code} has no route");
            if parsed.route() == Some(Route::Refuse) {
                assert!(parsed.fix().is_some(), "{code} is refused without a fix");
            }
        }
    }

    #[test]
    fn an_unknown_code_has_no_route_and_keeps_its_text() {
        let c = ErrorCode::parse("external_key_frobnicated");
        assert_eq!(c.route(), None);
        assert_eq!(c.to_string(), "external_key_frobnicated");
    }
}
