//! Admin API failures, one variant per documented error type. No variant
//! carries the admin key: messages are scrubbed of it before they get here.

use std::time::Duration;

use super::error_code::ErrorCode;

/// What the API said about a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: u16,
    pub message: String,
    /// From the body's `request_id` or the `request-id` header: quote it to Anthropic support.
    pub request_id: Option<String>,
    /// The typed `error.details.error_code`, when the body carries one.
    pub error_code: Option<ErrorCode>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.error_code {
            write!(f, " {code}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request-id {id})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminApiError {
    #[error("Admin API rejected the request as invalid: {0}")]
    InvalidRequest(ApiFailure),
    #[error(
        "Admin API authentication failed (Claude Platform: check the admin key in Secrets Manager; Claude Platform on AWS: check the function's credentials): {0}"
    )]
    Authentication(ApiFailure),
    /// Claude Platform on AWS refused the request's SigV4 signature (wrong
    /// service or Region in the scope, an expired date, or a request changed
    /// after signing). Retrying the same request cannot help.
    #[error("Claude Platform on AWS refused the request signature: {0}")]
    SignatureRejected(ApiFailure),
    /// The function's credentials could not be read or the request could not be signed.
    #[error("could not sign the request with SigV4: {0}")]
    Signing(String),
    #[error("Admin API billing error: {0}")]
    Billing(ApiFailure),
    #[error(
        "Admin API permission denied (Claude Platform: the key must be an admin key of an organization with CMEK enabled; Claude Platform on AWS: the function's role must be allowed the aws-external-anthropic action): {0}"
    )]
    Permission(ApiFailure),
    #[error("Admin API: not found: {0}")]
    NotFound(ApiFailure),
    #[error("Admin API conflict: {0}")]
    Conflict(ApiFailure),
    #[error("Admin API: request too large: {0}")]
    RequestTooLarge(ApiFailure),
    #[error("Admin API rate limit: {failure}")]
    RateLimited {
        failure: ApiFailure,
        /// The server's `retry-after`, if it sent one. None often means a
        /// spend or usage cap that retrying soon will not clear.
        retry_after: Option<Duration>,
    },
    #[error("Admin API internal error: {0}")]
    Internal(ApiFailure),
    #[error("Admin API timed out on its side: {0}")]
    Timeout(ApiFailure),
    #[error("Admin API overloaded: {0}")]
    Overloaded(ApiFailure),
    #[error("Admin API answered an unexpected error: {0}")]
    Unexpected(ApiFailure),
    #[error("Admin API could not be reached: {0}")]
    Transport(String),
    #[error("Admin API call timed out after {0:?}")]
    ClientTimeout(Duration),
    #[error("Admin API answered a body this client cannot read: {0}")]
    Decode(String),
}

impl AdminApiError {
    pub fn failure(&self) -> Option<&ApiFailure> {
        use AdminApiError::*;
        match self {
            InvalidRequest(f) | Authentication(f) | SignatureRejected(f) | Billing(f) | Permission(f)
            | NotFound(f) | Conflict(f) | RequestTooLarge(f) | Internal(f) | Timeout(f) | Overloaded(f)
            | Unexpected(f) => Some(f),
            RateLimited { failure, .. } => Some(failure),
            Transport(_) | ClientTimeout(_) | Decode(_) | Signing(_) => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        self.failure().map(|f| f.status)
    }

    /// The typed error code the API sent with this error, if any.
    pub fn error_code(&self) -> Option<&ErrorCode> {
        self.failure().and_then(|f| f.error_code.as_ref())
    }

    /// No such registration: a 404, or the 400 `external_key_not_found`
    /// the beta endpoints answer instead.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AdminApiError::NotFound(_))
            || matches!(self.error_code(), Some(ErrorCode::ExternalKeyNotFound))
    }

    pub fn request_id(&self) -> Option<&str> {
        self.failure().and_then(|f| f.request_id.as_deref())
    }

    /// Build the variant for an HTTP error from the documented `error.type`
    /// (falling back to the status when the body is not the documented one).
    pub fn from_response(
        status: u16,
        error_type: Option<&str>,
        failure: ApiFailure,
        retry_after: Option<Duration>,
    ) -> Self {
        use AdminApiError::*;
        match (error_type, status) {
            (Some("invalid_request_error"), _) | (None, 400) => InvalidRequest(failure),
            (Some("authentication_error"), _) | (None, 401) => Authentication(failure),
            (Some("billing_error"), _) | (None, 402) => Billing(failure),
            (Some("permission_error"), _) | (None, 403) => Permission(failure),
            (Some("not_found_error"), _) | (None, 404) => NotFound(failure),
            (Some("conflict_error"), _) | (None, 409) => Conflict(failure),
            (Some("request_too_large"), _) | (None, 413) => RequestTooLarge(failure),
            (Some("rate_limit_error"), _) | (None, 429) => RateLimited { failure, retry_after },
            (Some("api_error"), _) | (None, 500) => Internal(failure),
            (Some("timeout_error"), _) | (None, 504) => Timeout(failure),
            (Some("overloaded_error"), _) | (None, 529) => Overloaded(failure),
            _ => Unexpected(failure),
        }
    }
}
