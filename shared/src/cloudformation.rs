//! CloudFormation custom resources: the request CloudFormation sends, and the
//! response PUT to its pre-signed URL. The response must always be sent —
//! a stack otherwise waits for its timeout — and must fit in 4,096 bytes.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::shown;
use crate::store::WorkflowRecord;

/// Why a response could not go to CloudFormation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Not CloudFormation's pre-signed URL: nothing is sent there.
    #[error("ResponseURL {0:?} is not an https URL")]
    BadUrl(String),
    /// Every attempt to PUT the response failed.
    #[error("{0}")]
    Unreachable(String),
}

/// CloudFormation rejects larger response bodies.
pub const MAX_RESPONSE_BYTES: usize = 4096;
/// The physical id of a resource that was never created (a failed Create);
/// its rollback Delete is answered at once.
pub const FAILED_PREFIX: &str = "cmek-failed:";
/// The physical id of a provisioned workspace: stable for its lifetime.
pub const PHYSICAL_PREFIX: &str = "cmek:";
/// The physical id of a workspace a `Custom::AnthropicCmekWorkspace`
/// created with its key: known only once the workspace exists.
pub const WORKSPACE_PHYSICAL_PREFIX: &str = "cmek-workspace:";

/// The fields every request carries, which are needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub no_echo: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
}

impl Response {
    pub fn to(envelope: &Envelope, status: Status, physical_resource_id: &str, reason: &str) -> Self {
        Self {
            status,
            reason: reason.to_owned(),
            physical_resource_id: physical_resource_id.to_owned(),
            stack_id: envelope.stack_id.clone(),
            request_id: envelope.request_id.clone(),
            logical_resource_id: envelope.logical_resource_id.clone(),
            no_echo: false,
            data: Map::new(),
        }
    }

    /// The body to PUT: the reason is shortened (keeping its start, which
    /// names the error) until the whole body fits CloudFormation's limit.
    pub fn body(&self) -> String {
        let mut r = self.clone();
        r.reason = r.reason.chars().filter(|c| !c.is_control()).collect();
        loop {
            let body = serde_json::to_string(&r).unwrap_or_default();
            if body.len() <= MAX_RESPONSE_BYTES || r.reason.is_empty() {
                return body;
            }
            let excess = body.len() - MAX_RESPONSE_BYTES;
            let keep = r.reason.chars().count().saturating_sub(excess + 20);
            r.reason = r.reason.chars().take(keep).collect::<String>() + " […]";
            if keep == 0 {
                r.reason.clear();
            }
        }
    }
}

/// How the workflow answers CloudFormation when a provisioning that a
/// custom resource started ends. The custom resource function writes it
/// into the execution's input (`trigger`, with `"source": "cloudformation"`)
/// and Finish reads it back: one type for both, so neither can misspell a
/// field the other needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    pub request_type: RequestType,
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// Reported on success: the workspace's stable id (`cmek:<workspace>`).
    pub physical_resource_id: String,
    /// Reported on failure: a failed Create made nothing (see [`FAILED_PREFIX`]).
    pub failure_physical_resource_id: String,
}

impl Callback {
    pub fn new(
        envelope: &Envelope,
        physical_resource_id: String,
        failure_physical_resource_id: String,
    ) -> Self {
        Self {
            request_type: envelope.request_type,
            response_url: envelope.response_url.clone(),
            stack_id: envelope.stack_id.clone(),
            request_id: envelope.request_id.clone(),
            logical_resource_id: envelope.logical_resource_id.clone(),
            physical_resource_id,
            failure_physical_resource_id,
        }
    }

    /// The answer for how the provisioning ended; on success with the
    /// resource's attributes from its record.
    pub fn response(&self, succeeded: bool, record: Option<&WorkflowRecord>, reason: &str) -> Response {
        let envelope = Envelope {
            request_type: self.request_type,
            response_url: self.response_url.clone(),
            stack_id: self.stack_id.clone(),
            request_id: self.request_id.clone(),
            logical_resource_id: self.logical_resource_id.clone(),
            physical_resource_id: None,
        };
        if succeeded {
            let mut r = Response::to(&envelope, Status::Success, &self.physical_resource_id, reason);
            if let Some(rec) = record {
                r.data = attributes(rec);
            }
            r
        } else {
            Response::to(
                &envelope,
                Status::Failed,
                &self.failure_physical_resource_id,
                reason,
            )
        }
    }

    /// Send the answer (see [`send`]).
    pub async fn answer(
        &self,
        http: &reqwest::Client,
        succeeded: bool,
        record: Option<&WorkflowRecord>,
        reason: &str,
    ) -> Result<(), CallbackError> {
        send(
            http,
            &self.response_url,
            &self.response(succeeded, record, reason),
        )
        .await
    }
}

/// The documented `Fn::GetAtt` attributes of the custom resource.
pub const ATTRIBUTES: [&str; 6] = [
    "KeyArn",
    "KeyId",
    "AliasName",
    "ExternalKeyId",
    "CompartmentId",
    "WorkspaceId",
];

/// `Fn::GetAtt` attributes of the custom resource: every documented one,
/// always — an empty string where there is nothing (an adopted key has no
/// alias of ours). A missing attribute fails the caller's stack at
/// `!GetAtt`, after the irreversible attach.
pub fn attributes(rec: &WorkflowRecord) -> Map<String, Value> {
    let values = [
        rec.key_arn.as_ref().map(ToString::to_string),
        rec.key_arn.as_ref().map(|a| a.key_id().to_owned()),
        rec.alias.clone(),
        rec.external_key_id.as_ref().map(ToString::to_string),
        rec.compartment_id.map(|c| c.to_string()),
        Some(rec.workspace_id.to_string()),
    ];
    ATTRIBUTES
        .iter()
        .zip(values)
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.unwrap_or_default())))
        .collect()
}

/// The response URL must be CloudFormation's https pre-signed URL (or, for
/// the local stack's stand-in, plain http on loopback).
pub fn check_response_url(url: &str) -> Result<(), CallbackError> {
    crate::admin_api::client::parse_base_url_allowing_query(url)
        .map(|_| ())
        .map_err(|_| CallbackError::BadUrl(shown(url)))
}

/// PUT the response, retrying transient failures (the stack is waiting on it).
pub async fn send(http: &reqwest::Client, url: &str, response: &Response) -> Result<(), CallbackError> {
    check_response_url(url)?;
    let body = response.body();
    let retry = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(8))
        .with_max_times(6)
        .with_jitter();
    (|| async {
        // S3 pre-signed URLs are signed without a content type.
        let resp = http
            .put(url)
            .header("content-type", "")
            .body(body.clone())
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| {
                (
                    true,
                    format!("PUT to the response URL failed: {}", e.without_url()),
                )
            })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            let transient = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
            Err((
                transient,
                format!("PUT to the response URL answered HTTP {status}"),
            ))
        }
    })
    .retry(retry)
    .sleep(tokio::time::sleep)
    .when(|(transient, _)| *transient)
    .await
    .map_err(|(_, msg)| CallbackError::Unreachable(msg))?;
    // The pre-signed URL is a credential: log whom it answered, not where.
    tracing::info!(
        status = ?response.status,
        stack_id = %response.stack_id,
        logical_resource_id = %response.logical_resource_id,
        request_id = %response.request_id,
        physical_resource_id = %response.physical_resource_id,
        "answered CloudFormation"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        serde_json::from_value(serde_json::json!({
            "RequestType": "Create", "ResponseURL": "https://s3.example/x?sig=1",
            "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/s/1", "RequestId": "r-1",
            "LogicalResourceId": "WorkspaceKey", "ResourceType": "Custom::AnthropicCmek"
        }))
        .unwrap()
    }

    #[test]
    fn a_10kb_reason_still_fits() {
        let mut r = Response::to(
            &envelope(),
            Status::Failed,
            "cmek-failed:r-1",
            &"x".repeat(10 * 1024),
        );
        r.data.insert("KeyArn".into(), Value::String("arn".into()));
        let body = r.body();
        assert!(body.len() <= MAX_RESPONSE_BYTES, "{}", body.len());
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Status"], "FAILED");
        assert!(v["Reason"].as_str().unwrap().starts_with("xxx"));
        assert_eq!(v["PhysicalResourceId"], "cmek-failed:r-1");
        // Multi-byte characters are cut on character boundaries.
        let r = Response::to(&envelope(), Status::Failed, "p", &"é".repeat(5000));
        assert!(r.body().len() <= MAX_RESPONSE_BYTES);
    }

    #[test]
    fn response_urls_must_be_https_or_loopback() {
        assert!(
            check_response_url(
                "https://cloudformation-custom-resource-response-useast2.s3.amazonaws.com/x?X-Amz-Signature=1"
            )
            .is_ok()
        );
        assert!(check_response_url("http://127.0.0.1:9000/cfn/1").is_ok());
        assert!(check_response_url("http://evil.example/x").is_err());
        assert!(check_response_url("file:///etc/passwd").is_err());
    }
}
