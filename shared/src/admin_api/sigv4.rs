//! SigV4 signing for Claude Platform on AWS: every request is signed by the
//! caller's own AWS credentials (the function's role in Lambda, from the
//! environment Lambda sets: `cmek::aws::lambda_sdk_config`; `cmekctl`'s from
//! the default provider chain), service `aws-external-anthropic`, the stack's
//! Region. The signing itself is `aws-sigv4`'s, the AWS SDKs' own signer:
//! nothing here canonicalises a request by hand. (Claude Platform on AWS
//! user guide, "Authentication": SigV4 against
//! `https://aws-external-anthropic.<region>.api.aws`.)

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::error::AdminApiError;
use crate::platform::SIGNING_NAME;

/// Who signs, and for which Region.
#[derive(Clone)]
pub struct SigV4Signer {
    credentials: SharedCredentialsProvider,
    region: String,
}

impl fmt::Debug for SigV4Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The provider holds secrets; only the Region is worth showing.
        f.debug_struct("SigV4Signer")
            .field("service", &SIGNING_NAME)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl SigV4Signer {
    pub fn new(credentials: SharedCredentialsProvider, region: impl Into<String>) -> Self {
        Self {
            credentials,
            region: region.into(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Sign `request` in place: adds `authorization`, `x-amz-date` and, for
    /// temporary credentials, `x-amz-security-token`. Credentials are read
    /// (and refreshed by the provider) on every request, so an attempt
    /// retried after a long wait is signed afresh.
    pub async fn sign(&self, request: &mut reqwest::Request) -> Result<(), AdminApiError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| AdminApiError::Signing(format!("no AWS credentials to sign with: {e}")))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| AdminApiError::Signing(e.to_string()))?
            .into();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
            .collect();
        let body = request
            .body()
            .and_then(reqwest::Body::as_bytes)
            .unwrap_or_default();
        let signable = SignableRequest::new(
            request.method().as_str(),
            request.url().as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| AdminApiError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| AdminApiError::Signing(e.to_string()))?
            .into_parts();
        let mut added = Vec::new();
        for (name, value) in instructions.headers() {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| AdminApiError::Signing(e.to_string()))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| AdminApiError::Signing(e.to_string()))?;
            // Keeps the signature and the session token out of any debug print.
            value.set_sensitive(true);
            added.push((name, value));
        }
        for (name, value) in added {
            request.headers_mut().insert(name, value);
        }
        Ok(())
    }
}
