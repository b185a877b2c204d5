use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{CompartmentId, ExternalKeyId, KeyArn, OrgUuid, WorkspaceId};

/// Where a workspace is in the workflow. Progress only moves forward, except
/// that a new execution resumes a failed one from what was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    KeyCreated,
    Registered,
    Validated,
    Attached,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::KeyCreated => "KEY_CREATED",
            Status::Registered => "REGISTERED",
            Status::Validated => "VALIDATED",
            Status::Attached => "ATTACHED",
            Status::Failed => "FAILED",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::KeyCreated => 1,
            Status::Registered => 2,
            Status::Validated => 3,
            Status::Attached => 4,
            Status::Failed => 5,
        }
    }

    /// Legal moves: forward one step or more (a re-run can skip steps that are
    /// already done), staying put, or to FAILED from anything but ATTACHED —
    /// an attached workspace is never marked failed, whatever happens later.
    pub fn can_move_to(self, to: Status) -> bool {
        match (self, to) {
            (a, b) if a == b => true,
            (Status::Attached, _) => false,
            (_, Status::Failed) => true,
            (Status::Failed, _) => false,
            (a, b) => b.rank() > a.rank(),
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown status {:?}", crate::ids::shown(s)))
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The execution holding the workspace.
    pub owner: String,
    /// Unix seconds after which another execution may take over.
    pub expires_at: i64,
}

/// The `STATE` item of one workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub workspace_id: WorkspaceId,
    pub status: Status,
    pub version: u64,
    #[serde(default)]
    pub lease: Option<Lease>,
    #[serde(default)]
    pub compartment_id: Option<CompartmentId>,
    /// The organization the key is bound to (`GET /v1/organizations/me`),
    /// recorded by Begin; absent on records written before the September
    /// 2026 contract.
    #[serde(default)]
    pub org_uuid: Option<OrgUuid>,
    /// For an adopted key: the compartments of every workspace it is already
    /// attached to (Admin API and workflow table, read by Begin). Their data
    /// must stay readable when CreateKey rewrites the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_protects: Vec<CompartmentId>,
    #[serde(default)]
    pub key_arn: Option<KeyArn>,
    #[serde(default)]
    pub key_region: Option<String>,
    #[serde(default)]
    pub alias: Option<String>,
    /// True when the key was supplied (`keyArn`) rather than created here.
    #[serde(default)]
    pub key_adopted: bool,
    /// Set just before CreateKey: if a crash loses its answer, the next
    /// attempt looks for a tagged key instead of making a second one.
    #[serde(default)]
    pub key_creation_started: bool,
    /// Set just before the Admin API create call, for the same reason.
    #[serde(default)]
    pub registration_started: bool,
    #[serde(default)]
    pub external_key_id: Option<ExternalKeyId>,
    /// The execution whose validation succeeded; attach requires it to be the current one.
    #[serde(default)]
    pub validated_by: Option<String>,
    #[serde(default)]
    pub validation_attempts: u32,
    /// Findings the operator explicitly accepted (e.g. an over-permissive adopted key).
    #[serde(default)]
    pub accepted_findings: Vec<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The typed `error_code` Anthropic sent with `last_error`, if any:
    /// Diagnose reads it (`cmek_key_network_blocked` names its cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_code: Option<String>,
    #[serde(default)]
    pub diagnosis: Option<serde_json::Value>,
    #[serde(default)]
    pub trigger: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl WorkflowRecord {
    pub fn new(workspace_id: WorkspaceId, now: OffsetDateTime) -> Self {
        let at = timestamp(now);
        Self {
            workspace_id,
            status: Status::Pending,
            version: 0,
            lease: None,
            compartment_id: None,
            org_uuid: None,
            key_protects: Vec::new(),
            key_arn: None,
            key_region: None,
            alias: None,
            key_adopted: false,
            key_creation_started: false,
            registration_started: false,
            external_key_id: None,
            validated_by: None,
            validation_attempts: 0,
            accepted_findings: Vec::new(),
            last_error: None,
            last_error_code: None,
            diagnosis: None,
            trigger: None,
            created_at: at.clone(),
            updated_at: at,
        }
    }

    pub fn lease_owner(&self) -> Option<&str> {
        self.lease.as_ref().map(|l| l.owner.as_str())
    }

    /// The status a new execution resumes from: recorded progress, except
    /// that a validation never carries over to another execution.
    pub fn resume_status(&self) -> Status {
        if self.status == Status::Attached {
            Status::Attached
        } else if self.external_key_id.is_some() {
            Status::Registered
        } else if self.key_arn.is_some() {
            Status::KeyCreated
        } else {
            Status::Pending
        }
    }
}

/// One audit item: who did what to the workspace, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: String,
    #[serde(default)]
    pub execution: Option<String>,
    /// The workflow step or actor, e.g. `Begin`, `CreateKey`, `Finish`, `discovery`.
    pub step: String,
    /// What happened, e.g. `claimed`, `key_created`, `validation_failed`.
    pub outcome: String,
    #[serde(default)]
    pub detail: serde_json::Value,
    /// The record version this event was written with (orders events within a second).
    #[serde(default)]
    pub version: u64,
}

impl AuditEvent {
    pub fn new(step: &str, outcome: &str, execution: Option<&str>, detail: serde_json::Value) -> Self {
        Self {
            at: String::new(),
            execution: execution.map(str::to_owned),
            step: step.to_owned(),
            outcome: outcome.to_owned(),
            detail,
            version: 0,
        }
    }
}

/// RFC 3339 with milliseconds, UTC: sorts as text.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// What the stored record must still be for a write to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub version: u64,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(
        "workspace {workspace}: the record changed since version {expected} (another writer got there first)"
    )]
    VersionConflict { workspace: String, expected: u64 },
    #[error(
        "workspace {workspace} is being provisioned by execution {owner} (lease until unix time {expires_at})"
    )]
    ConcurrentExecution {
        workspace: String,
        owner: String,
        expires_at: i64,
    },
    #[error("workspace {workspace}: this execution no longer holds the lease (held by {owner:?})")]
    LeaseLost {
        workspace: String,
        owner: Option<String>,
    },
    #[error("workspace {workspace}: status cannot move from {from} to {to}")]
    InvalidTransition {
        workspace: String,
        from: Status,
        to: Status,
    },
    #[error("workspace {workspace} has no workflow record")]
    NotFound { workspace: String },
    #[error("workflow record of {workspace} is unreadable: {message}")]
    Corrupt { workspace: String, message: String },
    #[error("workflow store unavailable: {message}")]
    Unavailable { message: String },
    #[error("workflow store access denied: {message}")]
    AccessDenied { message: String },
    #[error("workflow store error: {message}")]
    Backend { message: String },
}

/// The storage primitives; the workflow rules are in `ops` over this.
#[async_trait]
pub trait WorkflowStore: Send + Sync + std::fmt::Debug {
    async fn load(&self, workspace: &WorkspaceId) -> Result<Option<WorkflowRecord>, StoreError>;

    /// Write `next` and `event` together, if the stored record is still
    /// `expected` (`None`: no record may exist yet). All or nothing.
    async fn save(
        &self,
        expected: Option<Expected>,
        next: &WorkflowRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Write an audit event on its own, without touching the `STATE` item (so a
    /// trigger or the guardian never races the execution that holds the lease).
    async fn append(&self, workspace: &WorkspaceId, event: &AuditEvent) -> Result<(), StoreError>;

    /// The audit trail of a workspace, oldest first.
    async fn events(&self, workspace: &WorkspaceId) -> Result<Vec<AuditEvent>, StoreError>;

    /// Every record, optionally only those in `status`.
    async fn list(&self, status: Option<Status>) -> Result<Vec<WorkflowRecord>, StoreError>;

    /// The records whose key is `key_arn` (the key guardian's lookup per
    /// KMS event): one index query, however large the table.
    async fn by_key(&self, key_arn: &str) -> Result<Vec<WorkflowRecord>, StoreError>;

    /// The record of a workspace creation (see [`super::CreationRecord`]).
    async fn load_creation(
        &self,
        token: &crate::ids::CreationToken,
    ) -> Result<Option<super::CreationRecord>, StoreError>;

    /// Write a creation record and its event together, if the stored
    /// record is still at version `expected` (`None`: none may exist yet).
    async fn save_creation(
        &self,
        expected: Option<u64>,
        next: &super::CreationRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The audit trail of a creation, oldest first.
    async fn creation_events(&self, token: &crate::ids::CreationToken)
    -> Result<Vec<AuditEvent>, StoreError>;
}
