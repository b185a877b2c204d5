//! The KMS side: create the key, its alias and rotation; find and describe
//! keys; read and write their policy; and, for the key guardian only, undo a
//! scheduled deletion. There is deliberately no function here that schedules
//! deletion or disables a key — a lost key is lost data — and the functions'
//! IAM roles deny both explicitly as well.

use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, OriginType, Tag};
use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;

use crate::ids::{KeyArn, shown};

/// Tag on every key the project creates: what the guardian and IAM conditions look for.
pub const TAG_MANAGED_BY: &str = "cmek:managed-by";
pub const TAG_MANAGED_BY_VALUE: &str = "cmek-provisioner";
/// Tag naming the workspace a key was created for (for a workspace created
/// with its key: its creation token until the workspace exists, then its
/// id): how a key created just before a crash is found again.
pub const TAG_WORKSPACE: &str = "cmek:workspace-id";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    #[error("KMS throttled {op}: {message}")]
    Throttled { op: &'static str, message: String },
    #[error("KMS is unavailable for {op}: {message}")]
    Unavailable { op: &'static str, message: String },
    #[error("KMS key or alias not found: {what}")]
    NotFound { what: String },
    #[error("alias {alias} already points to another key ({target}); refusing to move it")]
    AliasConflict { alias: String, target: String },
    #[error("KMS rejected the key policy: {message}")]
    MalformedPolicy { message: String },
    #[error("KMS denied {op}: {message}")]
    AccessDenied { op: &'static str, message: String },
    #[error("KMS key is in the wrong state for {op}: {message}")]
    InvalidState { op: &'static str, message: String },
    #[error("KMS {op} failed ({code}): {message}")]
    Other {
        op: &'static str,
        code: String,
        message: String,
    },
}

impl KmsError {
    pub fn is_transient(&self) -> bool {
        matches!(self, KmsError::Throttled { .. } | KmsError::Unavailable { .. })
    }
}

fn classify<E, R>(op: &'static str, err: SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use crate::aws::FailureKind;
    let f = crate::aws::classify("kms", op, &err);
    let message = f.message;
    match f.code.as_str() {
        "NotFoundException" => KmsError::NotFound { what: message },
        "MalformedPolicyDocumentException" => KmsError::MalformedPolicy { message },
        "KMSInvalidStateException" | "DisabledException" => KmsError::InvalidState { op, message },
        // A quota of KMS's (keys, aliases, grants per key), not a request
        // rate, although the SDK's generic list counts it as throttling.
        "LimitExceededException" => KmsError::Other {
            op,
            code: f.code,
            message,
        },
        _ => match f.kind {
            FailureKind::Throttled => KmsError::Throttled { op, message },
            FailureKind::Unavailable => KmsError::Unavailable { op, message },
            FailureKind::AccessDenied => KmsError::AccessDenied { op, message },
            FailureKind::Rejected => KmsError::Other {
                op,
                code: f.code,
                message,
            },
        },
    }
}

/// The SDK's enums as KMS spells them (`Enabled`, `SYMMETRIC_DEFAULT`…).
fn as_text<S: serde::Serializer>(value: &impl AsRef<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_ref())
}

/// What the workflow needs to know about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub arn: String,
    pub key_id: String,
    pub account: String,
    #[serde(serialize_with = "as_text")]
    pub state: KeyState,
    pub enabled: bool,
    #[serde(serialize_with = "as_text")]
    pub key_spec: KeySpec,
    #[serde(serialize_with = "as_text")]
    pub key_usage: KeyUsageType,
    #[serde(serialize_with = "as_text")]
    pub origin: OriginType,
    pub multi_region: bool,
    pub deletion_date: Option<String>,
    pub customer_managed: bool,
    pub description: String,
}

impl KeyInfo {
    pub fn parsed_arn(&self) -> Result<KeyArn, crate::ids::IdError> {
        self.arn.parse()
    }

    /// Why this key cannot serve as a CMEK, if it cannot.
    pub fn unusable_reason(&self) -> Option<String> {
        if self.state != KeyState::Enabled {
            return Some(format!("key state is {} (must be Enabled)", self.state.as_str()));
        }
        if self.key_spec != KeySpec::SymmetricDefault || self.key_usage != KeyUsageType::EncryptDecrypt {
            return Some(format!(
                "key is {} / {} (must be SYMMETRIC_DEFAULT / ENCRYPT_DECRYPT)",
                self.key_spec.as_str(),
                self.key_usage.as_str()
            ));
        }
        if self.multi_region {
            return Some("key is multi-Region (must be single-Region)".into());
        }
        if self.origin != OriginType::AwsKms {
            return Some(format!(
                "key origin is {} (must be AWS_KMS)",
                self.origin.as_str()
            ));
        }
        if !self.customer_managed {
            return Some("key is AWS-managed (must be customer-managed)".into());
        }
        None
    }
}

/// The KMS operations of the workflow, bounded-retried.
#[derive(Debug, Clone)]
pub struct KeyManager {
    client: Client,
    retry: ExponentialBuilder,
}

impl KeyManager {
    pub fn new(client: Client) -> Self {
        Self::with_backoff(client, Duration::from_secs(1), Duration::from_secs(8), 5)
    }

    /// `first`/`max` delays and `times` retries, for the transient errors and
    /// the principal-propagation `MalformedPolicyDocumentException`.
    pub fn with_backoff(client: Client, first: Duration, max: Duration, times: usize) -> Self {
        let retry = ExponentialBuilder::default()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_max_times(times)
            .with_jitter();
        Self { client, retry }
    }

    /// Run one KMS call with the bounded backoff, retrying the errors
    /// `retryable` accepts (each call site says which are safe for it).
    async fn with_retries<T, Fut>(
        &self,
        op: &'static str,
        retryable: impl FnMut(&KmsError) -> bool,
        call: impl FnMut() -> Fut,
    ) -> Result<T, KmsError>
    where
        Fut: std::future::Future<Output = Result<T, KmsError>>,
    {
        call.retry(self.retry)
            .sleep(tokio::time::sleep)
            .when(retryable)
            .notify(|e, d| tracing::warn!(retry_in_ms = d.as_millis() as u64, "{op} failed, retrying: {e}"))
            .await
    }

    /// Create a symmetric, single-Region, KMS-origin key with `policy`,
    /// untagged: KMS takes tags at creation only from a caller whose IAM
    /// policy may tag every key of the account ("To add tags while creating
    /// a KMS key, the principal must have permission in an IAM policy that
    /// isn't restricted to particular KMS keys", KMS Developer Guide,
    /// "Controlling access to tags"), and the project's tag confers rights;
    /// the caller tags it next ([`Self::tag_as_ours`]).
    ///
    /// Not idempotent: it is retried only on answers that prove no key was
    /// made (throttling, a policy KMS rejected while Anthropic's principal
    /// propagates). After an unknown outcome the caller finds the key
    /// ([`Self::find_tagged_keys`], [`Self::find_untagged_keys_of`]) instead
    /// of creating another. The SDK's own retries are off for this one call:
    /// its standard policy replays a 500, and a 500 that arrives after KMS
    /// made the key would make a second.
    pub async fn create_key(&self, policy: &str, description: &str) -> Result<KeyInfo, KmsError> {
        let out = self
            .with_retries(
                "CreateKey",
                |e| matches!(e, KmsError::Throttled { .. } | KmsError::MalformedPolicy { .. }),
                || async {
                    self.client
                        .create_key()
                        .policy(policy)
                        .description(description)
                        .key_spec(KeySpec::SymmetricDefault)
                        .key_usage(KeyUsageType::EncryptDecrypt)
                        .origin(OriginType::AwsKms)
                        .multi_region(false)
                        .bypass_policy_lockout_safety_check(false)
                        .customize()
                        .config_override(
                            aws_sdk_kms::config::Builder::default()
                                .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled()),
                        )
                        .send()
                        .await
                        .map_err(|e| classify("CreateKey", e))
                },
            )
            .await?;
        let meta = out.key_metadata().ok_or_else(|| KmsError::Other {
            op: "CreateKey",
            code: "NoMetadata".into(),
            message: "no key metadata returned".into(),
        })?;
        Ok(key_info(meta))
    }

    /// Point `alias` at `key_id`. An alias that already points at this key is
    /// fine (a retry); one that points elsewhere is never moved.
    /// Tag a key this project just created as its own and its workspace's.
    /// The CreateKey role may tag only keys whose policy lets it (the policy
    /// it wrote at creation does; see `workflow::create_key`), never another.
    /// Idempotent.
    pub async fn tag_as_ours(&self, key_id: &str, workspace: &str) -> Result<(), KmsError> {
        let tags = [
            Tag::builder()
                .tag_key(TAG_MANAGED_BY)
                .tag_value(TAG_MANAGED_BY_VALUE)
                .build(),
            Tag::builder().tag_key(TAG_WORKSPACE).tag_value(workspace).build(),
        ];
        let tags: Vec<Tag> = tags
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| KmsError::Other {
                op: "TagResource",
                code: "BuildError".into(),
                message: e.to_string(),
            })?;
        self.with_retries(
            "TagResource",
            |e| matches!(e, KmsError::Throttled { .. } | KmsError::Unavailable { .. }),
            || async {
                self.client
                    .tag_resource()
                    .key_id(key_id)
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("TagResource", e))
            },
        )
        .await
    }

    pub async fn ensure_alias(&self, alias: &str, key_id: &str) -> Result<(), KmsError> {
        let created = self
            .with_retries("CreateAlias", KmsError::is_transient, || async {
                self.client
                    .create_alias()
                    .alias_name(alias)
                    .target_key_id(key_id)
                    .send()
                    .await
                    .map_err(|e| classify("CreateAlias", e))
            })
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(KmsError::Other { code, .. }) if code == "AlreadyExistsException" => {
                match self.describe(alias).await? {
                    Some(existing) if existing.key_id == key_id => Ok(()),
                    Some(existing) => Err(KmsError::AliasConflict {
                        alias: alias.to_owned(),
                        target: existing.arn,
                    }),
                    None => Err(KmsError::NotFound {
                        what: format!("alias {alias} exists but resolves to no key"),
                    }),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Describe a key by id, ARN or `alias/…`; `None` if there is no such key.
    pub async fn describe(&self, key: &str) -> Result<Option<KeyInfo>, KmsError> {
        let out = self
            .with_retries("DescribeKey", KmsError::is_transient, || async {
                self.client
                    .describe_key()
                    .key_id(key)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeKey", e))
            })
            .await;
        match out {
            Ok(out) => Ok(out.key_metadata().map(key_info)),
            Err(KmsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn get_policy(&self, key: &str) -> Result<String, KmsError> {
        let out = self
            .with_retries("GetKeyPolicy", KmsError::is_transient, || async {
                self.client
                    .get_key_policy()
                    .key_id(key)
                    .policy_name("default")
                    .send()
                    .await
                    .map_err(|e| classify("GetKeyPolicy", e))
            })
            .await?;
        Ok(out.policy().unwrap_or_default().to_owned())
    }

    /// Replace the key policy. Callers build it with `policy::add_compartment`
    /// so that nothing already granted is dropped.
    pub async fn put_policy(&self, key: &str, policy: &str) -> Result<(), KmsError> {
        self.with_retries(
            "PutKeyPolicy",
            |e| e.is_transient() || matches!(e, KmsError::MalformedPolicy { .. }),
            || async {
                self.client
                    .put_key_policy()
                    .key_id(key)
                    .policy_name("default")
                    .policy(policy)
                    .bypass_policy_lockout_safety_check(false)
                    .send()
                    .await
                    .map_err(|e| classify("PutKeyPolicy", e))
            },
        )
        .await?;
        Ok(())
    }

    pub async fn enable_rotation(&self, key: &str) -> Result<(), KmsError> {
        self.with_retries("EnableKeyRotation", KmsError::is_transient, || async {
            self.client
                .enable_key_rotation()
                .key_id(key)
                .send()
                .await
                .map_err(|e| classify("EnableKeyRotation", e))
        })
        .await?;
        Ok(())
    }

    pub async fn rotation_enabled(&self, key: &str) -> Result<bool, KmsError> {
        let out = self
            .client
            .get_key_rotation_status()
            .key_id(key)
            .send()
            .await
            .map_err(|e| classify("GetKeyRotationStatus", e))?;
        Ok(out.key_rotation_enabled())
    }

    /// Cancel a scheduled deletion (the key comes back Disabled). Only the
    /// key guardian calls this, and its IAM role allows it only on keys
    /// carrying this project's tag.
    pub async fn cancel_key_deletion(&self, key: &str) -> Result<(), KmsError> {
        self.with_retries("CancelKeyDeletion", KmsError::is_transient, || async {
            self.client
                .cancel_key_deletion()
                .key_id(key)
                .send()
                .await
                .map_err(|e| classify("CancelKeyDeletion", e))
        })
        .await?;
        Ok(())
    }

    /// Re-enable a key after cancelling its deletion (guardian only, as above).
    pub async fn enable_key(&self, key: &str) -> Result<(), KmsError> {
        self.with_retries("EnableKey", KmsError::is_transient, || async {
            self.client
                .enable_key()
                .key_id(key)
                .send()
                .await
                .map_err(|e| classify("EnableKey", e))
        })
        .await?;
        Ok(())
    }

    pub async fn tags(&self, key: &str) -> Result<Vec<(String, String)>, KmsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_resource_tags()
                .key_id(key)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| classify("ListResourceTags", e))?;
            out.extend(
                page.tags()
                    .iter()
                    .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned())),
            );
            match page.next_marker() {
                Some(m) if page.truncated() => marker = Some(m.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Every key id of the account in this Region (ListKeys, every page):
    /// what the crash-recovery searches below walk.
    async fn all_key_ids(&self) -> Result<Vec<String>, KmsError> {
        let mut ids = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_keys()
                .limit(1000)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| classify("ListKeys", e))?;
            ids.extend(page.keys().iter().filter_map(|k| k.key_id()).map(str::to_owned));
            match page.next_marker() {
                Some(m) if page.truncated() => marker = Some(m.to_owned()),
                _ => return Ok(ids),
            }
        }
    }

    /// Keys this project created for `workspace`, found by tag, excluding keys
    /// pending deletion. Used only to recover from a crash between CreateKey
    /// and recording its result, so its cost (a tag read per key) is rare.
    pub async fn find_tagged_keys(&self, workspace: &str) -> Result<Vec<KeyInfo>, KmsError> {
        let mut found = Vec::new();
        for id in self.all_key_ids().await? {
            let id = id.as_str();
            let tags = match self.tags(id).await {
                Ok(t) => t,
                // Keys we may not read (other teams' keys) are not ours.
                Err(KmsError::AccessDenied { .. } | KmsError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let ours = tags
                .iter()
                .any(|(k, v)| k == TAG_MANAGED_BY && v == TAG_MANAGED_BY_VALUE)
                && tags.iter().any(|(k, v)| k == TAG_WORKSPACE && v == workspace);
            if ours
                && let Some(info) = self.describe(id).await?
                && info.state != KeyState::PendingDeletion
            {
                found.push(info);
            }
        }
        Ok(found)
    }

    /// Keys this project created for `workspace` and did not get to tag (a
    /// crash between CreateKey and TagResource): described as made for it
    /// (`description`), and with a policy naming `creator` in the statement
    /// that lets it tag the key. A key of anyone else's has neither. Like
    /// [`Self::find_tagged_keys`], only a crash's recovery pays for it (a
    /// description read per key, a policy read per match).
    pub async fn find_untagged_keys_of(
        &self,
        description: &str,
        creator_statement: &str,
        creator: &str,
    ) -> Result<Vec<KeyInfo>, KmsError> {
        let mut found = Vec::new();
        for id in self.all_key_ids().await? {
            let id = id.as_str();
            let info = match self.describe(id).await {
                Ok(Some(info)) => info,
                Ok(None) | Err(KmsError::AccessDenied { .. }) => continue,
                Err(e) => return Err(e),
            };
            if info.description != description || info.state == KeyState::PendingDeletion {
                continue;
            }
            let policy = match self.get_policy(&info.arn).await {
                Ok(p) => p,
                Err(KmsError::AccessDenied { .. } | KmsError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if names_creator(&policy, creator_statement, creator) {
                found.push(info);
            }
        }
        Ok(found)
    }
}

fn key_info(meta: &aws_sdk_kms::types::KeyMetadata) -> KeyInfo {
    KeyInfo {
        arn: meta.arn().unwrap_or_default().to_owned(),
        key_id: meta.key_id().to_owned(),
        account: meta.aws_account_id().unwrap_or_default().to_owned(),
        state: meta
            .key_state()
            .cloned()
            .unwrap_or_else(|| KeyState::from("Unknown")),
        enabled: meta.enabled(),
        key_spec: meta.key_spec().cloned().unwrap_or_else(|| KeySpec::from("")),
        // KMS defaults KeyUsage to ENCRYPT_DECRYPT; moto omits it when not given.
        key_usage: meta
            .key_usage()
            .filter(|u| !u.as_str().is_empty())
            .cloned()
            .unwrap_or(KeyUsageType::EncryptDecrypt),
        origin: meta.origin().cloned().unwrap_or_else(|| OriginType::from("")),
        multi_region: meta.multi_region().unwrap_or(false),
        deletion_date: meta.deletion_date().map(|d| d.to_string()),
        // moto may omit KeyManager; only an explicit AWS value disqualifies.
        customer_managed: meta.key_manager().is_none_or(|m| m.as_str() == "CUSTOMER"),
        description: meta.description().unwrap_or_default().to_owned(),
    }
}

/// Whether a key policy has the statement `sid` naming `creator` as its
/// principal (the statement CreateKey writes into the keys it creates).
fn names_creator(policy: &str, sid: &str, creator: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return false;
    };
    let Some(statements) = crate::policy::statement_items(&doc["Statement"]) else {
        return false;
    };
    statements.iter().any(|s| {
        s["Sid"] == sid
            && crate::policy::string_values(&s["Principal"]["AWS"])
                .iter()
                .any(|p| p == creator)
    })
}

/// The alias for a workspace's key, e.g. `alias/anthropic-cmek/wrkspc_01…`.
pub fn alias_for(prefix: &str, workspace: &impl std::fmt::Display) -> String {
    format!("{}/{}", prefix.trim_end_matches('/'), workspace)
}

/// An alias prefix must be `alias/` + name characters KMS accepts, and not
/// the reserved `alias/aws/`.
pub fn validate_alias_prefix(prefix: &str) -> Result<(), String> {
    let name = prefix
        .strip_prefix("alias/")
        .ok_or_else(|| format!("{:?} must start with \"alias/\"", shown(prefix)))?;
    if name.is_empty() || name.starts_with("aws/") || name == "aws" {
        return Err(format!(
            "{:?} must name a prefix other than alias/aws",
            shown(prefix)
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        || prefix.len() > 200
    {
        return Err(format!(
            "{:?} may hold only letters, digits, '/', '_' and '-'",
            shown(prefix)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(state: KeyState) -> KeyInfo {
        KeyInfo {
            arn: "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            account: "111122223333".into(),
            state,
            enabled: true,
            key_spec: KeySpec::SymmetricDefault,
            key_usage: KeyUsageType::EncryptDecrypt,
            origin: OriginType::AwsKms,
            multi_region: false,
            deletion_date: None,
            customer_managed: true,
            description: String::new(),
        }
    }

    /// States and specs are KMS's enums, shown (and serialized) as KMS
    /// spells them; a state the SDK does not know yet is still not Enabled.
    #[test]
    fn only_an_enabled_symmetric_kms_key_is_usable() {
        assert_eq!(key(KeyState::Enabled).unusable_reason(), None);
        let why = key(KeyState::PendingDeletion)
            .unusable_reason()
            .unwrap_or_default();
        assert!(why.contains("PendingDeletion"), "{why}");
        assert!(key(KeyState::from("SomethingNew")).unusable_reason().is_some());
        let mut hmac = key(KeyState::Enabled);
        hmac.key_spec = KeySpec::Hmac256;
        assert!(hmac.unusable_reason().unwrap_or_default().contains("HMAC_256"));
        let json = serde_json::to_value(key(KeyState::Enabled)).unwrap_or_default();
        assert_eq!(
            (&json["state"], &json["key_spec"], &json["origin"]),
            (
                &serde_json::json!("Enabled"),
                &serde_json::json!("SYMMETRIC_DEFAULT"),
                &serde_json::json!("AWS_KMS")
            )
        );
    }
}
