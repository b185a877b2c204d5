//! The one error type the Lambda functions return. Each variant leaves the
//! function as a stable `errorType` (see [`CmekError::error_type`]): those
//! names, not Rust type names, are what the state machine's `Retry` and
//! `Catch` match on, and they are documented in docs/architecture.md.

use lambda_runtime::Diagnostic;

use crate::admin_api::AdminApiError;
use crate::kms::KmsError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmekError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("configuration error: {0}")]
    Configuration(String),
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("Admin API unavailable: {0}")]
    AdminApiUnavailable(String),
    #[error("Admin API refused the request: {0}")]
    AdminApiRejected(String),
    #[error("KMS unavailable: {0}")]
    KmsUnavailable(String),
    #[error("workflow store unavailable: {0}")]
    StoreUnavailable(String),
    #[error("workspace {0} not found (check the id and that the admin key belongs to its organization)")]
    WorkspaceNotFound(String),
    #[error("workspace {0} is archived; archived workspaces are not provisioned")]
    WorkspaceArchived(String),
    #[error(
        "workspace {workspace} is already attached to external key {external_key_id}, which is not this workflow's key; attachment is permanent, nothing was changed"
    )]
    WorkspaceAlreadyAttached {
        workspace: String,
        external_key_id: String,
    },
    #[error("{0}")]
    ConcurrentExecution(String),
    #[error("workflow state conflict: {0}")]
    StateConflict(String),
    #[error("key {key} cannot be used: {reason}")]
    KeyNotUsable { key: String, reason: String },
    #[error("key {key} is in {region}, which does not serve geo {geo} (use e.g. {recommended})")]
    KeyRegionMismatch {
        key: String,
        region: String,
        geo: String,
        recommended: String,
    },
    #[error("key policy of {key} was not accepted: {summary}")]
    KeyPolicyRejected { key: String, summary: String },
    #[error("key conflict: {0}")]
    KeyConflict(String),
    #[error("validation of {external_key_id} failed (attempt {attempt}): {reason}")]
    ValidationFailed {
        external_key_id: String,
        attempt: u32,
        reason: String,
    },
    #[error("refusing to attach: {0}")]
    NotValidated(String),
    #[error(
        "Anthropic refused to attach {external_key_id} to workspace {workspace} (attach validates the key again): {reason}"
    )]
    AttachRefused {
        workspace: String,
        external_key_id: String,
        reason: String,
    },
    #[error("{0} (nothing was changed)")]
    RequestSignatureRejected(String),
    #[error(
        "Anthropic has not accepted {external_key_id} for workspace {workspace} yet (attempt {attempt}; attach validates the key, and KMS may still be propagating its policy): {reason}"
    )]
    AttachNotYetAccepted {
        workspace: String,
        external_key_id: String,
        attempt: u32,
        reason: String,
    },
    /// `external_key_validation_timed_out`: Anthropic's validation did not
    /// finish in time and the request was refused ("wait a moment, then send
    /// the request again"). Retried on the transient schedule.
    #[error(
        "Anthropic's validation of the key did not finish in time; the request was refused and is sent again: {0}"
    )]
    KeyValidationTimedOut(String),
    /// `external_key_changed` (409): the key changed while the request was
    /// validating it ("send the request again"). Retried.
    #[error("the key changed while Anthropic was validating it; the request is sent again: {0}")]
    ExternalKeyChanged(String),
    /// `external_key_in_workspace_policy`: the organization's Workspace Policy
    /// lists the key as allowed, so it cannot be deleted or reconfigured.
    #[error("the key is listed by the organization's Workspace Policy (nothing was changed): {0}")]
    KeyInWorkspacePolicy(String),
    /// `external_key_provider_mismatch`: the registration's provider does not
    /// fit the endpoint. Permanent.
    #[error("the registration's key provider does not fit (nothing was attached): {0}")]
    KeyProviderMismatch(String),
    /// `key_profile_mismatch`, or the same found before the call: a key and
    /// its workspace must have the same user profile, or both have none.
    #[error(
        "the registration and the workspace do not have the same user profile (nothing was attached): {0}"
    )]
    KeyProfileMismatch(String),
    /// `external_key_not_found`: no such registration in the organization.
    #[error("the external key is not registered in this organization: {0}")]
    ExternalKeyNotFound(String),
    /// A create whose answer was lost, and no workspace found for it yet:
    /// looked up again before anything is created (CreateWorkspace's own
    /// retry, not a transient error of every step).
    #[error("{0}")]
    CreationOutcomeUnknown(String),
    /// The workspace is the organization's Default Workspace and the
    /// request did not opt in to giving it a key (`defaultWorkspace`).
    #[error("{0}")]
    DefaultWorkspaceNotOptedIn(String),
    #[error("organization UUID unusable: {0}; nothing was created")]
    InvalidOrganization(String),
    #[error("attachment not confirmed: {0}")]
    AttachmentMismatch(String),
    #[error("could not deliver the CloudFormation response: {0}")]
    CloudFormationUnreachable(String),
    #[error("{0} (the function's role lacks a permission; see the template)")]
    AccessDenied(String),
    #[error("AWS unavailable: {0}")]
    AwsUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The `errorType` names and which of them are worth retrying, from one
/// list: each name is the variant's identifier, and the match the macro
/// writes is exhaustive, so a variant cannot go unnamed or be named twice.
macro_rules! error_types {
    ($($variant:ident $(=> $transient:ident)?),* $(,)?) => {
        /// Every `errorType` the functions can emit, in declaration order
        /// (the state machine checks compare against it).
        pub const ERROR_TYPES: &[&str] = &[$(stringify!($variant)),*];

        /// The `errorType`s the state machine retries with backoff.
        pub const TRANSIENT_ERROR_TYPES: &[&str] = &[$($(error_types!(@name $variant $transient),)?)*];

        impl CmekError {
            pub fn error_type(&self) -> &'static str {
                match self {
                    $(CmekError::$variant { .. } => stringify!($variant),)*
                }
            }
        }
    };
    (@name $variant:ident transient) => { stringify!($variant) };
}

error_types! {
    InvalidInput,
    Configuration,
    Throttled => transient,
    AdminApiUnavailable => transient,
    AdminApiRejected,
    KmsUnavailable => transient,
    StoreUnavailable => transient,
    WorkspaceNotFound,
    WorkspaceArchived,
    WorkspaceAlreadyAttached,
    ConcurrentExecution,
    StateConflict,
    KeyNotUsable,
    KeyRegionMismatch,
    KeyPolicyRejected,
    KeyConflict,
    ValidationFailed,
    NotValidated,
    AttachRefused,
    RequestSignatureRejected,
    AttachNotYetAccepted,
    KeyValidationTimedOut => transient,
    ExternalKeyChanged => transient,
    KeyInWorkspacePolicy,
    KeyProviderMismatch,
    KeyProfileMismatch,
    ExternalKeyNotFound,
    CreationOutcomeUnknown,
    DefaultWorkspaceNotOptedIn,
    InvalidOrganization,
    AttachmentMismatch,
    CloudFormationUnreachable => transient,
    AccessDenied,
    AwsUnavailable => transient,
    Internal,
}

impl CmekError {
    /// Worth retrying as is (the state machine retries these with backoff).
    pub fn is_transient(&self) -> bool {
        TRANSIENT_ERROR_TYPES.contains(&self.error_type())
    }
}

impl From<crate::cloudformation::CallbackError> for CmekError {
    fn from(e: crate::cloudformation::CallbackError) -> Self {
        use crate::cloudformation::CallbackError;
        match e {
            CallbackError::BadUrl(_) => CmekError::InvalidInput(e.to_string()),
            CallbackError::Unreachable(m) => CmekError::CloudFormationUnreachable(m),
        }
    }
}

/// Read outside input as a `T`. A mismatch is `InvalidInput` naming the
/// field's path after `context` (`ResourceProperties.WorkspaceId: …`), with
/// serde's message stripped of control characters and kept short: it may
/// quote the offending value.
pub fn parse_input<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    context: &str,
) -> Result<T, CmekError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message: String = e
            .into_inner()
            .to_string()
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        CmekError::InvalidInput(match (path.as_str(), context) {
            (".", "") => message,
            (".", context) => format!("{}: {message}", context.trim_end_matches(['.', ':', ' '])),
            (path, context) => format!("{context}{path}: {message}"),
        })
    })
}

impl From<crate::config::ConfigError> for CmekError {
    fn from(e: crate::config::ConfigError) -> Self {
        CmekError::Configuration(e.to_string())
    }
}

impl From<crate::aws::SecretError> for CmekError {
    fn from(e: crate::aws::SecretError) -> Self {
        CmekError::Configuration(e.to_string())
    }
}

impl From<crate::events::EventsError> for CmekError {
    fn from(e: crate::events::EventsError) -> Self {
        crate::aws::AwsFailure::from(e).into()
    }
}

impl From<crate::aws::AwsFailure> for CmekError {
    fn from(f: crate::aws::AwsFailure) -> Self {
        use crate::aws::FailureKind;
        let text = f.to_string();
        match f.kind {
            FailureKind::Throttled => CmekError::Throttled(text),
            FailureKind::Unavailable => CmekError::AwsUnavailable(text),
            FailureKind::AccessDenied => CmekError::AccessDenied(text),
            FailureKind::Rejected => CmekError::Internal(text),
        }
    }
}

impl From<CmekError> for Diagnostic {
    fn from(e: CmekError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The error router: an error's typed code decides first (see
/// [`crate::admin_api::error_code`]); without one, or with a code this
/// version does not know (logged), its status and `error.type` do.
impl From<AdminApiError> for CmekError {
    fn from(e: AdminApiError) -> Self {
        use crate::admin_api::{ErrorCode as C, Route};
        use AdminApiError as A;
        let text = e.to_string();
        if let Some(code) = e.error_code() {
            let with_fix = || match code.fix() {
                Some(fix) => format!("{text}; {fix}"),
                None => text.clone(),
            };
            match (code.route(), code) {
                (Some(Route::Retry), C::ValidationTimedOut) => return CmekError::KeyValidationTimedOut(text),
                (Some(Route::Retry), C::KeyChanged) => return CmekError::ExternalKeyChanged(text),
                (Some(Route::Retry), _) => return CmekError::AdminApiUnavailable(text),
                (Some(Route::Refuse), C::InWorkspacePolicy) => {
                    return CmekError::KeyInWorkspacePolicy(with_fix());
                }
                (Some(Route::Refuse), C::ProviderMismatch) => {
                    return CmekError::KeyProviderMismatch(with_fix());
                }
                (Some(Route::Refuse), C::KeyProfileMismatch) => {
                    return CmekError::KeyProfileMismatch(with_fix());
                }
                (Some(Route::Refuse), _) => return CmekError::ExternalKeyNotFound(with_fix()),
                // A refusal of the key outside an attach (which sends it to
                // Diagnose itself): permanent, with what the code says to check.
                (Some(Route::Diagnose), _) => return CmekError::AdminApiRejected(with_fix()),
                (None, _) => tracing::warn!(
                    error_code = %code,
                    status = e.status().unwrap_or_default(),
                    "the Admin API answered an error code this version does not know; routed by its status and type"
                ),
            }
        }
        match e {
            A::RateLimited { .. } => CmekError::Throttled(text),
            A::Internal(_)
            | A::Timeout(_)
            | A::Overloaded(_)
            | A::Conflict(_)
            | A::Transport(_)
            | A::ClientTimeout(_) => CmekError::AdminApiUnavailable(text),
            A::Unexpected(ref f) if f.status >= 500 || f.status == 408 => {
                CmekError::AdminApiUnavailable(text)
            }
            A::SignatureRejected(_) | A::Signing(_) => CmekError::RequestSignatureRejected(text),
            A::InvalidRequest(_)
            | A::Authentication(_)
            | A::Billing(_)
            | A::Permission(_)
            | A::NotFound(_)
            | A::RequestTooLarge(_)
            | A::Unexpected(_)
            | A::Decode(_) => CmekError::AdminApiRejected(text),
        }
    }
}

impl From<KmsError> for CmekError {
    fn from(e: KmsError) -> Self {
        let text = e.to_string();
        match e {
            KmsError::Throttled { .. } => CmekError::Throttled(text),
            KmsError::Unavailable { .. } => CmekError::KmsUnavailable(text),
            KmsError::AliasConflict { .. } => CmekError::KeyConflict(text),
            KmsError::NotFound { what } => CmekError::KeyNotUsable {
                key: what,
                reason: "not found".into(),
            },
            KmsError::InvalidState { .. } => CmekError::KeyNotUsable {
                key: String::new(),
                reason: text,
            },
            KmsError::AccessDenied { .. } => CmekError::AccessDenied(text),
            KmsError::MalformedPolicy { .. } | KmsError::Other { .. } => CmekError::Internal(text),
        }
    }
}

impl From<StoreError> for CmekError {
    fn from(e: StoreError) -> Self {
        let text = e.to_string();
        match e {
            StoreError::ConcurrentExecution { .. } => CmekError::ConcurrentExecution(text),
            StoreError::VersionConflict { .. }
            | StoreError::LeaseLost { .. }
            | StoreError::InvalidTransition { .. } => CmekError::StateConflict(text),
            StoreError::Unavailable { .. } => CmekError::StoreUnavailable(text),
            StoreError::AccessDenied { .. } => CmekError::AccessDenied(text),
            StoreError::NotFound { .. } | StoreError::Corrupt { .. } | StoreError::Backend { .. } => {
                CmekError::Internal(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_api::ApiFailure;

    #[test]
    fn every_variant_names_a_listed_error_type() {
        let samples = [
            CmekError::InvalidInput(String::new()),
            CmekError::Configuration(String::new()),
            CmekError::Throttled(String::new()),
            CmekError::AdminApiUnavailable(String::new()),
            CmekError::AdminApiRejected(String::new()),
            CmekError::KmsUnavailable(String::new()),
            CmekError::StoreUnavailable(String::new()),
            CmekError::WorkspaceNotFound(String::new()),
            CmekError::WorkspaceArchived(String::new()),
            CmekError::WorkspaceAlreadyAttached {
                workspace: String::new(),
                external_key_id: String::new(),
            },
            CmekError::ConcurrentExecution(String::new()),
            CmekError::StateConflict(String::new()),
            CmekError::KeyNotUsable {
                key: String::new(),
                reason: String::new(),
            },
            CmekError::KeyRegionMismatch {
                key: String::new(),
                region: String::new(),
                geo: String::new(),
                recommended: String::new(),
            },
            CmekError::KeyPolicyRejected {
                key: String::new(),
                summary: String::new(),
            },
            CmekError::KeyConflict(String::new()),
            CmekError::ValidationFailed {
                external_key_id: String::new(),
                attempt: 0,
                reason: String::new(),
            },
            CmekError::NotValidated(String::new()),
            CmekError::AttachRefused {
                workspace: String::new(),
                external_key_id: String::new(),
                reason: String::new(),
            },
            CmekError::RequestSignatureRejected(String::new()),
            CmekError::AttachNotYetAccepted {
                workspace: String::new(),
                external_key_id: String::new(),
                attempt: 0,
                reason: String::new(),
            },
            CmekError::KeyValidationTimedOut(String::new()),
            CmekError::ExternalKeyChanged(String::new()),
            CmekError::KeyInWorkspacePolicy(String::new()),
            CmekError::KeyProviderMismatch(String::new()),
            CmekError::KeyProfileMismatch(String::new()),
            CmekError::ExternalKeyNotFound(String::new()),
            CmekError::CreationOutcomeUnknown(String::new()),
            CmekError::DefaultWorkspaceNotOptedIn(String::new()),
            CmekError::InvalidOrganization(String::new()),
            CmekError::AttachmentMismatch(String::new()),
            CmekError::CloudFormationUnreachable(String::new()),
            CmekError::AccessDenied(String::new()),
            CmekError::AwsUnavailable(String::new()),
            CmekError::Internal(String::new()),
        ];
        let names: Vec<&str> = samples.iter().map(CmekError::error_type).collect();
        assert_eq!(
            names, ERROR_TYPES,
            "ERROR_TYPES must list every variant, in order"
        );
    }

    #[test]
    fn diagnostic_carries_the_stable_name() {
        let d: Diagnostic = CmekError::ConcurrentExecution("busy".into()).into();
        assert_eq!(d.error_type, "ConcurrentExecution");
        assert_eq!(d.error_message, "busy");
    }

    #[test]
    fn admin_api_errors_map_to_retryable_or_not() {
        let f = || ApiFailure {
            status: 500,
            message: "m".into(),
            request_id: None,
            error_code: None,
        };
        assert_eq!(
            CmekError::from(AdminApiError::Overloaded(f())).error_type(),
            "AdminApiUnavailable"
        );
        assert_eq!(
            CmekError::from(AdminApiError::RateLimited {
                failure: f(),
                retry_after: None
            })
            .error_type(),
            "Throttled"
        );
        assert_eq!(
            CmekError::from(AdminApiError::Authentication(f())).error_type(),
            "AdminApiRejected"
        );
        assert!(CmekError::from(AdminApiError::Internal(f())).is_transient());
        assert!(!CmekError::from(AdminApiError::Permission(f())).is_transient());
    }

    #[test]
    fn the_router_follows_the_typed_code_before_the_status() {
        use crate::admin_api::{DOCUMENTED_CODES, ErrorCode, Route};
        let with = |status: u16, code: &str| {
            let f = ApiFailure {
                status,
                message: "m".into(),
                request_id: None,
                error_code: Some(ErrorCode::parse(code)),
            };
            CmekError::from(if status == 409 {
                AdminApiError::Conflict(f)
            } else {
                AdminApiError::InvalidRequest(f)
            })
        };
        assert_eq!(
            with(400, "external_key_validation_timed_out").error_type(),
            "KeyValidationTimedOut"
        );
        assert!(with(400, "external_key_validation_timed_out").is_transient());
        assert_eq!(
            with(409, "external_key_changed").error_type(),
            "ExternalKeyChanged"
        );
        assert!(with(409, "external_key_changed").is_transient());
        assert_eq!(
            with(400, "external_key_in_workspace_policy").error_type(),
            "KeyInWorkspacePolicy"
        );
        assert_eq!(
            with(400, "external_key_provider_mismatch").error_type(),
            "KeyProviderMismatch"
        );
        assert_eq!(
            with(400, "key_profile_mismatch").error_type(),
            "KeyProfileMismatch"
        );
        assert_eq!(
            with(400, "external_key_not_found").error_type(),
            "ExternalKeyNotFound"
        );
        assert_eq!(
            with(503, "cmek_key_unreachable").error_type(),
            "AdminApiUnavailable"
        );
        // Every code: a retried code is transient, a refused one is not, and
        // the message names the code.
        for code in DOCUMENTED_CODES {
            let e = with(400, code);
            let route = ErrorCode::parse(code).route().unwrap();
            assert_eq!(e.is_transient(), route == Route::Retry, "{code}");
            assert!(e.to_string().contains(code), "{code}: {e}");
        }
        // An unknown code falls back to the status (a 400 is a refusal).
        assert_eq!(
            with(400, "external_key_frobnicated").error_type(),
            "AdminApiRejected"
        );
        assert!(with(409, "external_key_frobnicated").is_transient());
    }
}
