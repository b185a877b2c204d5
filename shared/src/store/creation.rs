//! The record of one workspace creation ("create a workspace with its
//! key"), keyed by its creation token: before the workspace exists there is
//! no workspace id to key a [`WorkflowRecord`] by. It is leased to one
//! execution at a time like a workspace's record, versioned, and written
//! with an audit event; once the workspace exists, the workspace's own
//! record takes over (Begin and Finish of the same execution).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::model::{AuditEvent, Lease, Status, StoreError, WorkflowStore, timestamp};
use crate::ids::{CompartmentId, CreationToken, ExternalKeyId, KeyArn, OrgUuid, WorkspaceId};

/// The `CREATION` item of one creation token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreationRecord {
    pub token: CreationToken,
    /// `PENDING` → `KEY_CREATED` → `REGISTERED` → (`VALIDATED`) →
    /// `ATTACHED` (the workspace exists, created with the key), or `FAILED`.
    pub status: Status,
    pub version: u64,
    #[serde(default)]
    pub lease: Option<Lease>,
    /// The workspace's name as asked.
    pub name: String,
    #[serde(default)]
    pub org_uuid: Option<OrgUuid>,
    /// Not `key_arn`: the table's `by-key` index holds workspace records only.
    #[serde(default)]
    pub kms_key_arn: Option<KeyArn>,
    #[serde(default)]
    pub key_adopted: bool,
    #[serde(default)]
    pub key_creation_started: bool,
    #[serde(default)]
    pub registration_started: bool,
    #[serde(default)]
    pub external_key_id: Option<ExternalKeyId>,
    #[serde(default)]
    pub validated_by: Option<String>,
    #[serde(default)]
    pub validation_attempts: u32,
    /// Set just before the create call: after a lost answer, the workspace
    /// is looked up by its tag before anything is created again.
    #[serde(default)]
    pub creation_started: bool,
    /// When the latest create was sent (Unix seconds).
    #[serde(default)]
    pub creation_started_at: Option<i64>,
    #[serde(default)]
    pub workspace_id: Option<WorkspaceId>,
    #[serde(default)]
    pub compartment_id: Option<CompartmentId>,
    /// The key policy lists the new workspace's compartment (and, on Claude
    /// Platform on AWS, its ARN) instead of the whole organization/account.
    #[serde(default)]
    pub policy_narrowed: bool,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub trigger: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl CreationRecord {
    pub fn new(token: CreationToken, name: &str, now: OffsetDateTime) -> Self {
        let at = timestamp(now);
        Self {
            token,
            status: Status::Pending,
            version: 0,
            lease: None,
            name: name.to_owned(),
            org_uuid: None,
            kms_key_arn: None,
            key_adopted: false,
            key_creation_started: false,
            registration_started: false,
            external_key_id: None,
            validated_by: None,
            validation_attempts: 0,
            creation_started: false,
            creation_started_at: None,
            workspace_id: None,
            compartment_id: None,
            policy_narrowed: false,
            last_error: None,
            trigger: None,
            created_at: at.clone(),
            updated_at: at,
        }
    }

    pub fn lease_owner(&self) -> Option<&str> {
        self.lease.as_ref().map(|l| l.owner.as_str())
    }

    fn subject(&self) -> String {
        format!("creation {}", self.token)
    }
}

/// Claim the creation for `execution` (creating its record), re-enter this
/// execution's own lease, or take over an expired one; a live lease of
/// another execution is [`StoreError::ConcurrentExecution`]. A new
/// execution resumes from what was recorded (a validation never carries
/// over); a FAILED creation that never created its workspace starts again
/// from its recorded key and registration.
pub async fn claim_creation(
    store: &dyn WorkflowStore,
    token: &CreationToken,
    name: &str,
    execution: &str,
    trigger: Option<serde_json::Value>,
    now: OffsetDateTime,
    ttl: std::time::Duration,
) -> Result<CreationRecord, StoreError> {
    let expires_at = now.unix_timestamp() + ttl.as_secs() as i64;
    for _ in 0..8 {
        let current = store.load_creation(token).await?;
        let (expected, mut next, outcome) = match &current {
            None => (None, CreationRecord::new(token.clone(), name, now), "claimed"),
            Some(rec) => {
                let outcome = match &rec.lease {
                    None => "claimed",
                    Some(l) if l.owner == execution => "reclaimed",
                    Some(l) if l.expires_at <= now.unix_timestamp() => "taken_over",
                    Some(l) => {
                        return Err(StoreError::ConcurrentExecution {
                            workspace: rec.subject(),
                            owner: l.owner.clone(),
                            expires_at: l.expires_at,
                        });
                    }
                };
                let mut next = rec.clone();
                if outcome != "reclaimed" {
                    next.status = if rec.status == Status::Attached {
                        Status::Attached
                    } else if rec.external_key_id.is_some() {
                        Status::Registered
                    } else if rec.kms_key_arn.is_some() {
                        Status::KeyCreated
                    } else {
                        Status::Pending
                    };
                    next.validated_by = None;
                    next.validation_attempts = 0;
                    next.last_error = None;
                }
                (Some(rec.version), next, outcome)
            }
        };
        next.lease = Some(Lease {
            owner: execution.to_owned(),
            expires_at,
        });
        if trigger.is_some() {
            next.trigger = trigger.clone();
        }
        let event = AuditEvent::new(
            "CreateWorkspace",
            outcome,
            Some(execution),
            serde_json::json!({"name": name, "lease_expires_at": expires_at}),
        );
        match write_creation(store, expected, next, event, now).await {
            Ok(rec) => return Ok(rec),
            Err(StoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::VersionConflict {
        workspace: format!("creation {token}"),
        expected: 0,
    })
}

/// Move a creation this execution holds to `to`, applying `patch`, with one
/// audit event; `release` also lets the creation go.
#[allow(clippy::too_many_arguments)]
pub async fn advance_creation(
    store: &dyn WorkflowStore,
    current: &CreationRecord,
    execution: &str,
    to: Status,
    event: AuditEvent,
    now: OffsetDateTime,
    release: bool,
    patch: impl FnOnce(&mut CreationRecord),
) -> Result<CreationRecord, StoreError> {
    if current.lease_owner() != Some(execution) {
        return Err(StoreError::LeaseLost {
            workspace: current.subject(),
            owner: current.lease_owner().map(str::to_owned),
        });
    }
    if !current.status.can_move_to(to) {
        return Err(StoreError::InvalidTransition {
            workspace: current.subject(),
            from: current.status,
            to,
        });
    }
    let mut next = current.clone();
    patch(&mut next);
    next.status = to;
    if release {
        next.lease = None;
    }
    let mut event = event;
    event.execution = Some(execution.to_owned());
    write_creation(store, Some(current.version), next, event, now).await
}

async fn write_creation(
    store: &dyn WorkflowStore,
    expected: Option<u64>,
    mut next: CreationRecord,
    mut event: AuditEvent,
    now: OffsetDateTime,
) -> Result<CreationRecord, StoreError> {
    next.version = expected.map_or(1, |v| v + 1);
    next.updated_at = timestamp(now);
    event.at = timestamp(now);
    event.version = next.version;
    store.save_creation(expected, &next, &event).await?;
    Ok(next)
}
