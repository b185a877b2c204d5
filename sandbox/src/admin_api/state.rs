//! The stand-in's organizations, workspaces and external keys.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn now_rfc3339() -> String {
    cmek::store::timestamp(time::OffsetDateTime::now_utc())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkspaceRec {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub archived_at: Option<String>,
    pub compartment_id: String,
    pub external_key_id: Option<String>,
    pub display_color: String,
    /// Creation order: lists are ordered by it, as the real API orders by creation.
    pub seq: u64,
    /// The organization's Default Workspace: listed only with `include_default=true`.
    #[serde(default)]
    pub is_default: bool,
    /// Sandbox-only: the contract in force when the key was attached. Data
    /// written before the September 2026 contract carries no `org_uuid` in
    /// its encryption context, so it needs the existing-data statement.
    #[serde(default)]
    pub attached_under: Option<super::Contract>,
    /// The user profile the workspace belongs to (`POST /_sandbox/user-profile`).
    #[serde(default)]
    pub user_profile_id: Option<String>,
    /// User-defined tags (`tags` on create and update; keys may not begin
    /// with "anthropic").
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `data_residency` as created (`workspace_geo` is immutable).
    #[serde(default)]
    pub data_residency: Option<Value>,
}

/// The documented default when a create names no `data_residency`
/// ("defaults to workspace_geo: \"us\", allowed_inference_geos:
/// \"unrestricted\", and default_inference_geo: \"global\"").
pub fn default_data_residency() -> Value {
    json!({"workspace_geo": "us", "allowed_inference_geos": "unrestricted", "default_inference_geo": "global"})
}

impl WorkspaceRec {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "type": "workspace",
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "archived_at": self.archived_at,
            "display_color": self.display_color,
            "compartment_id": self.compartment_id,
            "external_key_id": self.external_key_id,
            "tags": self.tags,
            "data_residency": self.data_residency.clone().unwrap_or_else(default_data_residency),
        });
        if let Some(p) = &self.user_profile_id {
            v["user_profile_id"] = json!(p);
        }
        v
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRec {
    pub id: String,
    /// Nullable, as in the API.
    pub display_name: Option<String>,
    pub geo: String,
    /// `aws`, `gcp` or `azure`.
    pub provider: String,
    /// The KMS key ARN of an AWS key; empty for other providers.
    pub kms_arn: String,
    /// The provider configuration as answered, for GCP and Azure keys.
    pub provider_fields: Value,
    pub role_arn: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub seq: u64,
    /// Sandbox-only: validation fails until this instant (KMS propagation).
    #[serde(skip)]
    pub propagates_at: Option<std::time::Instant>,
    /// Sandbox-only: a validate call has succeeded for this key. Tests use it
    /// to prove no key was attached without a successful validation.
    #[serde(skip)]
    pub validated: bool,
    /// The user profile the registration is bound to (`POST /_sandbox/user-profile`).
    #[serde(default)]
    pub user_profile_id: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Org {
    pub name: String,
    /// The organization's id (`GET /v1/organizations/me`): a bare UUID.
    pub uuid: String,
    pub workspaces: BTreeMap<String, WorkspaceRec>,
    pub keys: BTreeMap<String, KeyRec>,
    pub next_seq: u64,
    /// The organization's Workspace Policy: the external keys it lists as
    /// allowed (`POST /_sandbox/workspace-policy`). Such a key "can't be
    /// deleted or reconfigured".
    #[serde(default)]
    pub workspace_policy_keys: std::collections::BTreeSet<String>,
}

impl Org {
    pub fn key_json(&self, k: &KeyRec) -> Value {
        let provider_config = if k.provider == "aws" {
            let region = k.kms_arn.split(':').nth(3).unwrap_or_default();
            json!({"type": "aws", "kms_arn": k.kms_arn, "role_arn": k.role_arn, "region": region})
        } else {
            k.provider_fields.clone()
        };
        let mut v = json!({
            "type": "external_key",
            "id": k.id,
            "display_name": k.display_name,
            "geo": k.geo,
            "provider_config": provider_config,
            "attachment": {"type": if self.is_attached(&k.id) { "attached" } else { "unattached" }},
            "created_at": k.created_at,
            "updated_at": k.updated_at,
        });
        if let Some(p) = &k.user_profile_id {
            v["user_profile_id"] = json!(p);
        }
        v
    }

    pub fn is_attached(&self, key_id: &str) -> bool {
        self.workspaces
            .values()
            .any(|w| w.external_key_id.as_deref() == Some(key_id))
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn add_workspace(
        &mut self,
        name: &str,
        archived: bool,
        external_key_id: Option<String>,
    ) -> WorkspaceRec {
        let seq = self.seq();
        let attached_under = external_key_id.is_some().then_some(super::Contract::August2026);
        let w = WorkspaceRec {
            id: format!("wrkspc_{}", random_suffix(24)),
            name: name.to_owned(),
            created_at: now_rfc3339(),
            archived_at: archived.then(now_rfc3339),
            compartment_id: uuid::Uuid::new_v4().hyphenated().to_string(),
            external_key_id,
            display_color: "#6C5BB9".into(),
            seq,
            is_default: false,
            attached_under,
            user_profile_id: None,
            tags: BTreeMap::new(),
            data_residency: None,
        };
        self.workspaces.insert(w.id.clone(), w.clone());
        w
    }

    pub fn add_key(
        &mut self,
        display_name: Option<&str>,
        geo: &str,
        kms_arn: &str,
        role_arn: Option<String>,
    ) -> KeyRec {
        self.add_provider_key(display_name, geo, "aws", kms_arn, Value::Null, role_arn)
    }

    pub fn add_provider_key(
        &mut self,
        display_name: Option<&str>,
        geo: &str,
        provider: &str,
        kms_arn: &str,
        provider_fields: Value,
        role_arn: Option<String>,
    ) -> KeyRec {
        let seq = self.seq();
        let now = now_rfc3339();
        let k = KeyRec {
            id: format!("ekey_{}", random_suffix(24)),
            display_name: display_name.map(str::to_owned),
            geo: geo.to_owned(),
            provider: provider.to_owned(),
            kms_arn: kms_arn.to_owned(),
            provider_fields,
            role_arn,
            created_at: now.clone(),
            updated_at: now,
            seq,
            propagates_at: None,
            validated: false,
            user_profile_id: None,
        };
        self.keys.insert(k.id.clone(), k.clone());
        k
    }

    pub fn workspaces_in_order(&self) -> Vec<&WorkspaceRec> {
        let mut v: Vec<&WorkspaceRec> = self.workspaces.values().collect();
        v.sort_by_key(|w| w.seq);
        v
    }

    /// Creation order (the inspection API's view).
    pub fn keys_in_order(&self) -> Vec<&KeyRec> {
        let mut v: Vec<&KeyRec> = self.keys.values().collect();
        v.sort_by_key(|k| k.seq);
        v
    }

    /// Newest first, as the API lists external keys.
    pub fn keys_newest_first(&self) -> Vec<&KeyRec> {
        let mut v = self.keys_in_order();
        v.reverse();
        v
    }
}

/// How to seed an organization.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrgSeed {
    pub name: String,
    /// The Admin API key that authenticates as this organization.
    pub admin_key: String,
    /// Active, unattached workspaces to create.
    pub workspaces: usize,
    /// Archived workspaces to create.
    pub archived: usize,
    /// Workspaces already attached to a (pre-registered) external key.
    pub attached: usize,
    /// Name prefix of the created workspaces.
    pub name_prefix: Option<String>,
    /// The organization's UUID (random when not given). Only the first seed
    /// of an organization sets it.
    pub org_uuid: Option<String>,
    /// Create the organization's Default Workspace (hidden from lists
    /// unless `include_default=true`).
    pub default_workspace: bool,
    /// Registered AWS keys with a null display name (unattached).
    pub unnamed_keys: usize,
    /// Registered Google Cloud KMS keys.
    pub gcp_keys: usize,
    /// Registered Azure Key Vault keys.
    pub azure_keys: usize,
}

/// Where an admin key's requests go: organizations by key.
#[derive(Debug, Default)]
pub struct World {
    pub orgs: BTreeMap<String, Org>,
}

impl World {
    pub fn seed(&mut self, seed: &OrgSeed) -> Vec<WorkspaceRec> {
        let org = self.orgs.entry(seed.admin_key.clone()).or_insert_with(|| Org {
            name: seed.name.clone(),
            uuid: seed
                .org_uuid
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string()),
            ..Org::default()
        });
        let prefix = seed.name_prefix.clone().unwrap_or_else(|| "workspace".into());
        let mut out = Vec::new();
        if seed.default_workspace && !org.workspaces.values().any(|w| w.is_default) {
            let mut w = org.add_workspace("Default Workspace", false, None);
            w.is_default = true;
            if let Some(stored) = org.workspaces.get_mut(&w.id) {
                stored.is_default = true;
            }
            out.push(w);
        }
        for i in 0..seed.workspaces {
            out.push(org.add_workspace(&format!("{prefix}-{i:05}"), false, None));
        }
        for i in 0..seed.archived {
            out.push(org.add_workspace(&format!("{prefix}-archived-{i:05}"), true, None));
        }
        for _ in 0..seed.unnamed_keys {
            let arn = format!("arn:aws:kms:us-east-2:111122223333:key/{}", uuid::Uuid::new_v4());
            org.add_key(None, "us", &arn, None);
        }
        for i in 0..seed.gcp_keys {
            let fields = json!({"type": "gcp", "key_name": format!("projects/p/locations/us-central1/keyRings/r/cryptoKeys/k{i}")});
            org.add_provider_key(Some(&format!("gcp-{i}")), "us", "gcp", "", fields, None);
        }
        for i in 0..seed.azure_keys {
            let fields = json!({"type": "azure", "key_name": format!("k{i}"), "tenant_id": uuid::Uuid::new_v4().to_string(), "vault_uri": "https://vault.vault.azure.net/"});
            org.add_provider_key(Some(&format!("azure-{i}")), "us", "azure", "", fields, None);
        }
        for i in 0..seed.attached {
            let key = org.add_key(
                Some(&format!("pre-existing-{i}")),
                "us",
                &format!("arn:aws:kms:us-east-2:111122223333:key/{}", uuid::Uuid::new_v4()),
                None,
            );
            out.push(org.add_workspace(&format!("{prefix}-attached-{i:05}"), false, Some(key.id)));
        }
        out
    }
}
