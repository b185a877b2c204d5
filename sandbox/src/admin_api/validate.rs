//! What Anthropic does when it validates a key (on `validate`, and again on
//! attach): look at the key in KMS, evaluate its policy for Anthropic's role,
//! run a real encrypt/decrypt round trip with the encryption context, and —
//! under the current contract — check that four requests that must be denied
//! are denied, each leaving an access-denied event in CloudTrail. moto
//! enforces no key policy and lets a disabled key encrypt, so the state and
//! policy checks are done here, with the stand-in's own evaluator.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use serde_json::{Value, json};

use super::contract::{
    ANTHROPIC_ROLE_US, ASSOCIATED_DATA_CONTEXT, ASSOCIATED_DATA_VALUE, COMPARTMENT_CONTEXT, Contract,
    FOREIGN_COMPARTMENT, FOREIGN_ORG, ORG_CONTEXT, VALIDATION_COMPARTMENT,
};
use super::evaluator::{Decision, KmsRequest, encrypt_grant_lists_compartments, evaluate};

/// What one validation is asked to check.
#[derive(Debug, Clone)]
pub struct Check {
    pub contract: Contract,
    /// The organization the key belongs to (sent as `anthropic:org_uuid`
    /// under the current contract).
    pub org_uuid: String,
    /// The compartment ids to round-trip with, one validation each; `None`
    /// sends no compartment key. Several ids: a key attached to several
    /// workspaces, or the July 2026 contract trying each workspace.
    pub compartments: Vec<Option<String>>,
    /// July 2026: passing for any one of `compartments` is enough.
    pub any_compartment: bool,
}

/// The result, and the access-denied CloudTrail events its negative checks left.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Result<(), String>,
    pub denied: Vec<Value>,
}

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

    pub(super) async fn client(&self, region: &str) -> Result<Client, String> {
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

    /// Validate `kms_arn` as `check` says.
    pub async fn validate(&self, kms_arn: &str, geo: &str, check: &Check) -> Outcome {
        let mut denied = Vec::new();
        let verdict = self.run(kms_arn, geo, check, &mut denied).await;
        Outcome { verdict, denied }
    }

    async fn run(
        &self,
        kms_arn: &str,
        geo: &str,
        check: &Check,
        denied: &mut Vec<Value>,
    ) -> Result<(), String> {
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
        let mut last_err = None;
        for compartment in &check.compartments {
            let ctx = context(check, compartment.as_deref(), true);
            match self.round_trip(&kms, kms_arn, &policy, &ctx).await {
                Ok(()) if check.any_compartment => return Ok(()),
                Ok(()) => {}
                Err(e) if check.any_compartment => last_err = Some(e),
                Err(e) => return Err(e),
            }
            if check.contract == Contract::Current {
                self.negative_checks(kms_arn, &policy, check, compartment.as_deref(), denied)?;
            }
        }
        match last_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// DescribeKey, then Encrypt and Decrypt with the context: allowed by
    /// the policy, and really performed against KMS.
    async fn round_trip(
        &self,
        kms: &Client,
        kms_arn: &str,
        policy: &str,
        ctx: &[(String, String)],
    ) -> Result<(), String> {
        let pairs: Vec<(&str, &str)> = ctx.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for (action, context) in [
            ("kms:DescribeKey", &[][..]),
            ("kms:Encrypt", &pairs[..]),
            ("kms:Decrypt", &pairs[..]),
        ] {
            let req = KmsRequest {
                principal_arn: ANTHROPIC_ROLE_US,
                key_arn: kms_arn,
                action,
                encryption_context: context,
                service: None,
                source_arn: None,
                source_account: None,
            };
            if let Decision::Denied(why) = evaluate(policy, &req) {
                return Err(why);
            }
        }
        let map: HashMap<String, String> = ctx.iter().cloned().collect();
        encrypt_then_decrypt(kms, kms_arn, &map).await
    }

    /// The four requests that must be denied: another organization's UUID, no
    /// encryption context at all, another workspace's compartment (where the
    /// policy lists compartments; else a re-encryption), and an action beyond
    /// Encrypt/Decrypt. Each denial is recorded as KMS would log it.
    fn negative_checks(
        &self,
        kms_arn: &str,
        policy: &str,
        check: &Check,
        compartment: Option<&str>,
        denied: &mut Vec<Value>,
    ) -> Result<(), String> {
        let lists_compartments = encrypt_grant_lists_compartments(policy, ANTHROPIC_ROLE_US);
        let own = context(check, compartment, true);
        let foreign_org: Vec<(String, String)> = own
            .iter()
            .map(|(k, v)| {
                if k == ORG_CONTEXT {
                    (k.clone(), FOREIGN_ORG.to_owned())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        let mut foreign_compartment = own.clone();
        foreign_compartment.retain(|(k, _)| k != COMPARTMENT_CONTEXT);
        foreign_compartment.push((COMPARTMENT_CONTEXT.to_owned(), FOREIGN_COMPARTMENT.to_owned()));
        let third = if lists_compartments {
            ("foreign_compartment", "kms:Encrypt", foreign_compartment)
        } else {
            ("re_encrypt", "kms:ReEncryptFrom", own.clone())
        };
        // "No context" means none of Anthropic's keys; associatedData stays,
        // so that every probe matches the documented CloudTrail filter.
        let no_context = vec![(
            ASSOCIATED_DATA_CONTEXT.to_owned(),
            ASSOCIATED_DATA_VALUE.to_owned(),
        )];
        let probes = [
            ("foreign_org", "kms:Encrypt", foreign_org),
            ("no_context", "kms:Encrypt", no_context),
            third,
            ("extra_action", "kms:GenerateDataKey", own.clone()),
        ];
        for (name, action, ctx) in probes {
            let pairs: Vec<(&str, &str)> = ctx.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let req = KmsRequest {
                principal_arn: ANTHROPIC_ROLE_US,
                key_arn: kms_arn,
                action,
                encryption_context: &pairs,
                service: None,
                source_arn: None,
                source_account: None,
            };
            match evaluate(policy, &req) {
                Decision::Allowed => {
                    return Err(match name {
                        "foreign_org" => format!(
                            "the key policy lets {action} through with another organization's {ORG_CONTEXT}: the crypto statement must require StringEquals on kms:EncryptionContext:{ORG_CONTEXT} with your organization's UUID"
                        ),
                        "no_context" => format!(
                            "the key policy lets {action} through without any encryption context: the crypto statement must require your organization's {ORG_CONTEXT}"
                        ),
                        "foreign_compartment" => format!(
                            "the key policy lets {action} through for a workspace it does not list: the compartment condition must name only your workspaces"
                        ),
                        _ => format!(
                            "the key policy grants Anthropic's role {action}, beyond kms:Encrypt and kms:Decrypt (an over-permissive grant, such as the console wizard's)"
                        ),
                    });
                }
                Decision::Denied(reason) => {
                    denied.push(cloudtrail_event(kms_arn, action, &ctx, name, &reason))
                }
            }
        }
        Ok(())
    }

    /// Would Anthropic's traffic for an attached workspace be allowed now?
    /// Live traffic carries the organization (current contract); data
    /// written before the September 2026 contract is decrypted with the
    /// compartment alone.
    pub async fn live_traffic_allowed(
        &self,
        kms_arn: &str,
        org_uuid: &str,
        compartment: &str,
        attached_under: Option<Contract>,
    ) -> Result<(), String> {
        let region = kms_arn.split(':').nth(3).unwrap_or_default().to_owned();
        let kms = self.client(&region).await?;
        let policy = key_policy(&kms, kms_arn).await?;
        let live = [(ORG_CONTEXT, org_uuid), (COMPARTMENT_CONTEXT, compartment)];
        let old = [(COMPARTMENT_CONTEXT, compartment)];
        type Context<'c> = &'c [(&'c str, &'c str)];
        let mut requests: Vec<(&str, Context<'_>, &str)> = vec![
            ("kms:Encrypt", &live, "new data"),
            ("kms:Decrypt", &live, "new data"),
        ];
        if attached_under.is_some_and(|c| c != Contract::Current) {
            requests.push((
                "kms:Decrypt",
                &old,
                "data written before the organization condition",
            ));
        }
        for (action, context, what) in requests {
            let req = KmsRequest {
                principal_arn: ANTHROPIC_ROLE_US,
                key_arn: kms_arn,
                action,
                encryption_context: context,
                service: None,
                source_arn: None,
                source_account: None,
            };
            if let Decision::Denied(why) = evaluate(&policy, &req) {
                return Err(format!("{what}: {why}"));
            }
        }
        Ok(())
    }
}

/// The encryption context a validation sends for `compartment`.
fn context(check: &Check, compartment: Option<&str>, validation: bool) -> Vec<(String, String)> {
    let mut ctx = Vec::new();
    if check.contract == Contract::Current {
        ctx.push((ORG_CONTEXT.to_owned(), check.org_uuid.clone()));
        if validation {
            ctx.push((
                ASSOCIATED_DATA_CONTEXT.to_owned(),
                ASSOCIATED_DATA_VALUE.to_owned(),
            ));
        }
    }
    if let Some(c) = compartment {
        ctx.push((COMPARTMENT_CONTEXT.to_owned(), c.to_owned()));
    }
    ctx
}

/// The all-zeros id, for callers that build checks.
pub fn zeros() -> Option<String> {
    Some(VALIDATION_COMPARTMENT.to_owned())
}

/// An access-denied event as CloudTrail records Anthropic's denied call.
fn cloudtrail_event(
    kms_arn: &str,
    action: &str,
    ctx: &[(String, String)],
    probe: &str,
    reason: &str,
) -> Value {
    let event_name = action.trim_start_matches("kms:");
    let context: serde_json::Map<String, Value> = ctx.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({
        "eventSource": "kms.amazonaws.com",
        "eventName": event_name,
        "eventTime": super::state::now_rfc3339(),
        "errorCode": "AccessDenied",
        "errorMessage": reason,
        "userIdentity": {"type": "AssumedRole", "accountId": "915198916910", "arn": format!("{ANTHROPIC_ROLE_US}/cmek-validation")},
        "requestParameters": {"keyId": kms_arn, "encryptionContext": context},
        "resources": [{"accountId": kms_arn.split(':').nth(4).unwrap_or_default(), "type": "AWS::KMS::Key", "ARN": kms_arn}],
        "sandboxProbe": probe,
    })
}

pub(super) async fn key_policy(kms: &Client, kms_arn: &str) -> Result<String, String> {
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

/// Encrypt a random value under the key with `context`, decrypt it, and
/// check it came back: a round trip really performed against KMS (moto).
pub(super) async fn encrypt_then_decrypt(
    kms: &Client,
    kms_arn: &str,
    context: &HashMap<String, String>,
) -> Result<(), String> {
    let plaintext = uuid::Uuid::new_v4().as_bytes().to_vec();
    let ct = kms
        .encrypt()
        .key_id(kms_arn)
        .plaintext(Blob::new(plaintext.clone()))
        .set_encryption_context(Some(context.clone()))
        .send()
        .await
        .map_err(|e| format!("Encrypt failed: {}", aws_sdk_kms::error::DisplayErrorContext(&e)))?;
    let blob = ct
        .ciphertext_blob()
        .cloned()
        .ok_or("Encrypt returned no ciphertext")?;
    decrypts_to(kms, blob, context, &plaintext).await
}

/// Decrypt `blob` with `context` and check it gives `expected` back.
pub(super) async fn decrypts_to(
    kms: &Client,
    blob: Blob,
    context: &HashMap<String, String>,
    expected: &[u8],
) -> Result<(), String> {
    let pt = kms
        .decrypt()
        .ciphertext_blob(blob)
        .set_encryption_context(Some(context.clone()))
        .send()
        .await
        .map_err(|e| format!("Decrypt failed: {}", aws_sdk_kms::error::DisplayErrorContext(&e)))?;
    if pt.plaintext().map(|b| b.as_ref()) != Some(expected) {
        return Err("Decrypt returned different plaintext".into());
    }
    Ok(())
}
