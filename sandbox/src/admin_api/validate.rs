//! What Anthropic does when asked to validate a key: look at the key in KMS,
//! evaluate its policy for Anthropic's role, and run a real encrypt/decrypt
//! round trip with the encryption context. moto enforces no key policy and
//! lets a disabled key encrypt, so the state and policy checks are done here.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;

use super::evaluator::{Decision, KmsRequest, evaluate};

pub const ANTHROPIC_ROLE_US: &str = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
/// What validation sends as `anthropic:compartment_uuid` (Anthropic's mid-2026 documentation).
pub const VALIDATION_COMPARTMENT: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Debug)]
pub struct Validator {
    endpoint: Option<String>,
    /// Regions Anthropic serves the `us` geo from, as far as the stand-in knows.
    pub serving_regions: Vec<String>,
    clients: Mutex<HashMap<String, Client>>,
}

impl Validator {
    pub fn new(endpoint: Option<String>, serving_regions: Vec<String>) -> Self {
        Self {
            endpoint,
            serving_regions,
            clients: Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, region: &str) -> Result<Client, String> {
        let endpoint = self
            .endpoint
            .clone()
            .ok_or("the sandbox has no KMS endpoint configured")?;
        if let Ok(map) = self.clients.lock()
            && let Some(c) = map.get(region)
        {
            return Ok(c.clone());
        }
        let creds = aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "sandbox");
        let conf = cmek::aws::config_loader()
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(creds)
            .load()
            .await;
        let client = Client::new(&conf);
        if let Ok(mut map) = self.clients.lock() {
            map.insert(region.to_owned(), client.clone());
        }
        Ok(client)
    }

    /// `Ok(())` for success, `Err(reason)` for a validation failure.
    pub async fn validate(&self, kms_arn: &str, geo: &str) -> Result<(), String> {
        let parts: Vec<&str> = kms_arn.split(':').collect();
        let (Some(region), Some(_account)) = (parts.get(3), parts.get(4)) else {
            return Err(format!("InvalidArnException: {kms_arn} is not a KMS key ARN"));
        };
        if geo != "us" {
            return Err(format!("geo {geo} is not supported"));
        }
        if !self.serving_regions.iter().any(|r| r == region) {
            return Err(format!(
                "Region mismatch: the key is in {region}, which Anthropic does not operate in for geo {geo}"
            ));
        }
        let kms = self.client(region).await?;
        let described = kms.describe_key().key_id(kms_arn).send().await.map_err(|e| {
            format!(
                "NotFoundException: key {kms_arn} could not be described ({})",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            )
        })?;
        let meta = described
            .key_metadata()
            .ok_or("DescribeKey returned no metadata")?;
        match meta.key_state().map(|s| s.as_str()) {
            Some("Enabled") => {}
            Some("Disabled") => return Err(format!("DisabledException: {kms_arn} is disabled")),
            Some(other) => return Err(format!("KMSInvalidStateException: {kms_arn} is {other}")),
            None => return Err("KMSInvalidStateException: key state unknown".into()),
        }
        if meta.key_spec().map(|s| s.as_str()) != Some("SYMMETRIC_DEFAULT")
            // KMS defaults KeyUsage to ENCRYPT_DECRYPT; moto leaves it unset.
            || meta.key_usage().map(|s| s.as_str()).filter(|s| !s.is_empty()).unwrap_or("ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT"
        {
            return Err("InvalidKeyUsageException: the key must be a symmetric ENCRYPT_DECRYPT key".into());
        }
        let policy = key_policy(&kms, kms_arn).await?;
        let ctx = [("anthropic:compartment_uuid", VALIDATION_COMPARTMENT)];
        for (action, context) in [
            ("kms:DescribeKey", &[][..]),
            ("kms:Encrypt", &ctx[..]),
            ("kms:Decrypt", &ctx[..]),
        ] {
            let req = KmsRequest {
                principal_arn: ANTHROPIC_ROLE_US,
                action,
                encryption_context: context,
            };
            if let Decision::Denied(why) = evaluate(&policy, &req) {
                return Err(why);
            }
        }
        let plaintext = uuid::Uuid::new_v4().as_bytes().to_vec();
        let ct = kms
            .encrypt()
            .key_id(kms_arn)
            .plaintext(Blob::new(plaintext.clone()))
            .encryption_context(ctx[0].0, ctx[0].1)
            .send()
            .await
            .map_err(|e| format!("Encrypt failed: {}", aws_sdk_kms::error::DisplayErrorContext(&e)))?;
        let blob = ct
            .ciphertext_blob()
            .cloned()
            .ok_or("Encrypt returned no ciphertext")?;
        let pt = kms
            .decrypt()
            .ciphertext_blob(blob)
            .encryption_context(ctx[0].0, ctx[0].1)
            .send()
            .await
            .map_err(|e| format!("Decrypt failed: {}", aws_sdk_kms::error::DisplayErrorContext(&e)))?;
        if pt.plaintext().map(|b| b.as_ref()) != Some(plaintext.as_slice()) {
            return Err("Decrypt returned different plaintext".into());
        }
        Ok(())
    }

    /// Would live traffic for `compartment` be allowed (Anthropic's traffic
    /// after attachment)? Used to flag attachments that will break.
    pub async fn live_traffic_allowed(&self, kms_arn: &str, compartment: &str) -> Result<(), String> {
        let region = kms_arn.split(':').nth(3).unwrap_or_default().to_owned();
        let kms = self.client(&region).await?;
        let policy = key_policy(&kms, kms_arn).await?;
        let ctx = [("anthropic:compartment_uuid", compartment)];
        for action in ["kms:Encrypt", "kms:Decrypt"] {
            let req = KmsRequest {
                principal_arn: ANTHROPIC_ROLE_US,
                action,
                encryption_context: &ctx,
            };
            if let Decision::Denied(why) = evaluate(&policy, &req) {
                return Err(why);
            }
        }
        Ok(())
    }
}

async fn key_policy(kms: &Client, kms_arn: &str) -> Result<String, String> {
    let out = kms
        .get_key_policy()
        .key_id(kms_arn)
        .policy_name("default")
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not read the key policy: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(out.policy().unwrap_or_default().to_owned())
}
