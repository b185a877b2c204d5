//! Anthropic's Admin API: the workspace and external-key endpoints CMEK needs,
//! with the official SDKs' retry rules and an admin key that never leaks.

pub(crate) mod client;
mod error;
pub mod error_code;
mod retries;
mod secret;
mod sigv4;
#[cfg(test)]
mod tests;
mod types;

pub use client::{AdminApiClient, Auth, BaseUrlError, ClientOptions, DEFAULT_BASE_URL, RetryPolicy};
pub use error::{AdminApiError, ApiFailure};
pub use error_code::{DOCUMENTED as DOCUMENTED_CODES, ErrorCode, Route};
pub use retries::{Retries, RetryCounter};
pub use secret::AdminKey;
pub use sigv4::SigV4Signer;
pub use types::*;
