//! The stand-in as Claude Platform on AWS: the same routes, but every request
//! must carry a SigV4 signature (service `aws-external-anthropic`, this
//! Region) that verifies against the local stack's credentials; registrations
//! are known by their KMS key ARN, and a key of another account or Region is
//! refused; there is no validate call: attaching runs the service's round
//! trip as the service principal (`aws-external-anthropic.amazonaws.com`,
//! with `aws:SourceArn` = the workspace's ARN) against moto KMS, judged by
//! the stand-in's own evaluator, plus a check of the caller's own access.
//!
//! The signature is recomputed with `aws-sigv4`, the AWS SDKs' signer, from
//! the request as received: the stand-in shares no code with the client's
//! signing beyond that reference implementation.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::http::{HeaderMap, Method, Uri};
use serde::{Deserialize, Serialize};

pub const SIGNING_NAME: &str = "aws-external-anthropic";
pub const SERVICE_PRINCIPAL: &str = "aws-external-anthropic.amazonaws.com";

/// The stand-in's Claude Platform on AWS mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsPlatform {
    /// The AWS account the organization belongs to (keys must be in it).
    pub account_id: String,
    /// The Region of the endpoint and of the workspaces (keys must be in it).
    pub region: String,
    /// The secret of every access key id the local stack hands out: each
    /// function signs with its own key id (its logical id), so the stand-in
    /// knows which role made a call.
    pub secret_access_key: String,
    /// How far a request's `x-amz-date` may be from now (AWS allows 5 minutes).
    pub max_skew_secs: u64,
}

impl Default for AwsPlatform {
    fn default() -> Self {
        Self {
            account_id: "123456789012".into(),
            region: "us-east-2".into(),
            secret_access_key: "testing".into(),
            max_skew_secs: 300,
        }
    }
}

/// Who signed a request that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: String,
}

/// Why a signature was refused: AWS's error type (`x-amzn-ErrorType`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub aws_type: &'static str,
    pub message: String,
}

fn refuse(aws_type: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        aws_type,
        message: message.into(),
    }
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let scope: Vec<&str> = credential?.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return None;
    };
    Some(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = time::PrimitiveDateTime::parse(s, format).ok()?.assume_utc();
    Some(SystemTime::UNIX_EPOCH + Duration::try_from(at - time::OffsetDateTime::UNIX_EPOCH).ok()?)
}

/// Verify a request's SigV4 signature as the service would: present, scoped
/// to this service and Region, dated within the allowed skew, and equal to
/// the signature recomputed from the request as received.
pub fn verify(
    config: &AwsPlatform,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Caller, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(value) = header("authorization") else {
        return Err(refuse(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token: requests to Claude Platform on AWS must be signed with SigV4",
        ));
    };
    let auth = parse_authorization(value).ok_or_else(|| {
        refuse(
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders and Signature (AWS4-HMAC-SHA256)",
        )
    })?;
    if auth.service != SIGNING_NAME {
        return Err(refuse(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{SIGNING_NAME}'."),
        ));
    }
    if auth.region != config.region {
        return Err(refuse(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region. This endpoint serves '{}', not '{}'.",
                config.region, auth.region
            ),
        ));
    }
    let amz_date = header("x-amz-date").ok_or_else(|| {
        refuse(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    let signed_at = parse_amz_date(amz_date)
        .filter(|_| amz_date.starts_with(auth.date))
        .ok_or_else(|| {
            refuse(
                "IncompleteSignatureException",
                "X-Amz-Date is malformed or disagrees with the credential scope",
            )
        })?;
    let skew = match now.duration_since(signed_at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > Duration::from_secs(config.max_skew_secs) {
        return Err(refuse(
            "InvalidSignatureException",
            format!(
                "Signature expired: {amz_date} is more than {} seconds from the server's time",
                config.max_skew_secs
            ),
        ));
    }
    let token = header("x-amz-security-token").map(str::to_owned);
    let identity = Credentials::new(
        auth.access_key_id,
        &config.secret_access_key,
        token,
        None,
        "sandbox",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(signed_at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| refuse("InvalidSignatureException", e.to_string()))?
        .into();
    let host = header("host").unwrap_or_default();
    let url = format!(
        "http://{host}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    // The signer adds host, x-amz-date and the session token itself.
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        if matches!(*name, "host" | "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        let value = header(name).ok_or_else(|| {
            refuse(
                "InvalidSignatureException",
                format!("signed header {name} is missing from the request"),
            )
        })?;
        signed.push((name, value));
    }
    let signable = SignableRequest::new(
        method.as_str(),
        &url,
        signed.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| refuse("InvalidSignatureException", e.to_string()))?;
    let (_, expected) = sign(signable, &params)
        .map_err(|e| refuse("InvalidSignatureException", e.to_string()))?
        .into_parts();
    if expected != auth.signature {
        return Err(refuse(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(Caller {
        access_key_id: auth.access_key_id.to_owned(),
    })
}

/// Why a KMS key ARN cannot be registered on Claude Platform on AWS: "the
/// key must be a single-Region key in your organization's own AWS account;
/// cross-account keys, multi-Region keys, and alias ARNs are rejected" (the
/// API reference's `kms_arn`), and in the workspaces' Region.
pub fn registration_refusal(config: &AwsPlatform, kms_arn: &str) -> Option<String> {
    let parts: Vec<&str> = kms_arn.split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "kms" {
        return Some("provider_config.kms_arn: must be a KMS key ARN".into());
    }
    if parts[5].starts_with("alias/") {
        return Some("provider_config.kms_arn: alias ARNs are rejected; give the key's own ARN".into());
    }
    if parts[5].starts_with("key/mrk-") {
        return Some(
            "provider_config.kms_arn: multi-Region keys are rejected; use a single-Region key".into(),
        );
    }
    if parts[4] != config.account_id {
        return Some(format!(
            "provider_config.kms_arn: the key belongs to account {}; cross-account keys are rejected (the organization's account is {})",
            parts[4], config.account_id
        ));
    }
    if parts[3] != config.region {
        return Some(format!(
            "provider_config.kms_arn: the key is in {}; it must be in the workspaces' Region {}",
            parts[3], config.region
        ));
    }
    None
}

/// A workspace's ARN on Claude Platform on AWS.
pub fn workspace_arn(config: &AwsPlatform, workspace: &str) -> String {
    format!(
        "arn:aws:{SIGNING_NAME}:{}:{}:workspace/{workspace}",
        config.region, config.account_id
    )
}

/// Percent-decode one path segment (an ARN id arrives with `/` as `%2F`).
pub fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_parts() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-2/aws-external-anthropic/aws4_request, SignedHeaders=anthropic-version;host;x-amz-date, Signature=abc",
        )
        .unwrap_or_else(|| panic!("must parse"));
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.region, "us-east-2");
        assert_eq!(a.service, "aws-external-anthropic");
        assert_eq!(a.signed_headers, ["anthropic-version", "host", "x-amz-date"]);
        assert_eq!(a.signature, "abc");
        assert!(parse_authorization("Bearer x").is_none());
    }

    #[test]
    fn registration_refuses_other_accounts_regions_aliases_and_multi_region_keys() {
        let c = AwsPlatform::default();
        let ok = "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(registration_refusal(&c, ok), None);
        for bad in [
            "arn:aws:kms:us-east-2:999999999999:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-2:123456789012:alias/mine",
            "arn:aws:kms:us-east-2:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            assert!(registration_refusal(&c, bad).is_some(), "{bad}");
        }
        assert_eq!(
            decode_segment("arn:aws:kms:us-east-2:1:key%2Fabc"),
            "arn:aws:kms:us-east-2:1:key/abc"
        );
    }
}
