//! The workflow rules over any [`WorkflowStore`].

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::model::*;
use crate::ids::WorkspaceId;

/// How often a claim re-reads after losing a race before giving up.
const CLAIM_ATTEMPTS: usize = 8;

/// Claim `workspace` for `execution`: create its record, re-enter a lease
/// this execution already holds, or take over a lease that expired. Anyone
/// else holding a live lease gets [`StoreError::ConcurrentExecution`].
pub async fn claim(
    store: &dyn WorkflowStore,
    workspace: &WorkspaceId,
    execution: &str,
    trigger: Option<Value>,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<WorkflowRecord, StoreError> {
    let expires_at = now.unix_timestamp() + ttl.as_secs() as i64;
    for _ in 0..CLAIM_ATTEMPTS {
        let current = store.load(workspace).await?;
        let (expected, mut next, outcome) = match &current {
            None => (None, WorkflowRecord::new(workspace.clone(), now), "claimed"),
            Some(rec) => {
                let outcome = match &rec.lease {
                    None => "claimed",
                    Some(l) if l.owner == execution => "reclaimed",
                    Some(l) if l.expires_at <= now.unix_timestamp() => "taken_over",
                    Some(l) => {
                        return Err(StoreError::ConcurrentExecution {
                            workspace: workspace.to_string(),
                            owner: l.owner.clone(),
                            expires_at: l.expires_at,
                        });
                    }
                };
                let mut next = rec.clone();
                if outcome != "reclaimed" {
                    // A new execution resumes from recorded progress; a
                    // validation by another execution does not count for it.
                    next.status = rec.resume_status();
                    next.validated_by = None;
                    next.validation_attempts = 0;
                    next.last_error = None;
                    next.last_error_code = None;
                    next.diagnosis = None;
                }
                (
                    Some(Expected {
                        version: rec.version,
                        status: rec.status,
                    }),
                    next,
                    outcome,
                )
            }
        };
        let previous_owner = current.as_ref().and_then(|r| r.lease_owner().map(str::to_owned));
        next.lease = Some(Lease {
            owner: execution.to_owned(),
            expires_at,
        });
        if trigger.is_some() {
            next.trigger = trigger.clone();
        }
        let event = AuditEvent::new(
            "Begin",
            outcome,
            Some(execution),
            serde_json::json!({"previous_owner": previous_owner, "lease_expires_at": expires_at, "trigger": trigger}),
        );
        match write(store, expected, next, event, now).await {
            Ok(rec) => return Ok(rec),
            Err(StoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::VersionConflict {
        workspace: workspace.to_string(),
        expected: 0,
    })
}

/// Move a record this execution holds to `to`, applying `patch`, with one
/// audit event, as a single conditional write on the expected version and status.
pub async fn advance(
    store: &dyn WorkflowStore,
    current: &WorkflowRecord,
    execution: &str,
    to: Status,
    event: AuditEvent,
    now: OffsetDateTime,
    patch: impl FnOnce(&mut WorkflowRecord),
) -> Result<WorkflowRecord, StoreError> {
    if current.lease_owner() != Some(execution) {
        return Err(StoreError::LeaseLost {
            workspace: current.workspace_id.to_string(),
            owner: current.lease_owner().map(str::to_owned),
        });
    }
    if !current.status.can_move_to(to) {
        return Err(StoreError::InvalidTransition {
            workspace: current.workspace_id.to_string(),
            from: current.status,
            to,
        });
    }
    let mut next = current.clone();
    patch(&mut next);
    next.status = to;
    let expected = Expected {
        version: current.version,
        status: current.status,
    };
    let mut event = event;
    event.execution = Some(execution.to_owned());
    write(store, Some(expected), next, event, now).await
}

/// Re-read the record and check that `execution` still holds it: the first
/// thing every step after Begin does, so a step of an execution whose lease
/// was taken over stops instead of acting.
pub async fn load_held(
    store: &dyn WorkflowStore,
    workspace: &WorkspaceId,
    execution: &str,
) -> Result<WorkflowRecord, StoreError> {
    let rec = store.load(workspace).await?.ok_or_else(|| StoreError::NotFound {
        workspace: workspace.to_string(),
    })?;
    if rec.lease_owner() != Some(execution) {
        return Err(StoreError::LeaseLost {
            workspace: workspace.to_string(),
            owner: rec.lease_owner().map(str::to_owned),
        });
    }
    Ok(rec)
}

/// End this execution's hold on the workspace with its final status.
pub async fn release(
    store: &dyn WorkflowStore,
    current: &WorkflowRecord,
    execution: &str,
    to: Status,
    event: AuditEvent,
    now: OffsetDateTime,
    patch: impl FnOnce(&mut WorkflowRecord),
) -> Result<WorkflowRecord, StoreError> {
    advance(store, current, execution, to, event, now, |r| {
        patch(r);
        r.lease = None;
    })
    .await
}

/// Record a workspace no execution has touched yet, with its first audit
/// event (discovery remembers what it announced, so the next poll does not
/// announce it again). `Ok(false)`: a record exists already, and wins.
pub async fn record_unclaimed(
    store: &dyn WorkflowStore,
    workspace: &WorkspaceId,
    event: AuditEvent,
    now: OffsetDateTime,
    patch: impl FnOnce(&mut WorkflowRecord),
) -> Result<bool, StoreError> {
    let mut rec = WorkflowRecord::new(workspace.clone(), now);
    patch(&mut rec);
    match write(store, None, rec, event, now).await {
        Ok(_) => Ok(true),
        Err(StoreError::VersionConflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Change a record no execution holds, keeping its status, with one audit
/// event: a versioned write that loses (`VersionConflict`) to anything
/// written since `current` was read, above all an execution's claim.
pub async fn update_unheld(
    store: &dyn WorkflowStore,
    current: &WorkflowRecord,
    event: AuditEvent,
    now: OffsetDateTime,
    patch: impl FnOnce(&mut WorkflowRecord),
) -> Result<WorkflowRecord, StoreError> {
    if let Some(owner) = current.lease_owner() {
        return Err(StoreError::ConcurrentExecution {
            workspace: current.workspace_id.to_string(),
            owner: owner.to_owned(),
            expires_at: current.lease.as_ref().map_or(0, |l| l.expires_at),
        });
    }
    let mut next = current.clone();
    patch(&mut next);
    next.status = current.status;
    let expected = Expected {
        version: current.version,
        status: current.status,
    };
    write(store, Some(expected), next, event, now).await
}

/// Append an audit event without changing the workflow (used by triggers,
/// by Finish for executions that never held the workspace, and by the guardian).
pub async fn append_event(
    store: &dyn WorkflowStore,
    workspace: &WorkspaceId,
    mut event: AuditEvent,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    event.at = timestamp(now);
    event.version = 0;
    store.append(workspace, &event).await
}

async fn write(
    store: &dyn WorkflowStore,
    expected: Option<Expected>,
    mut next: WorkflowRecord,
    mut event: AuditEvent,
    now: OffsetDateTime,
) -> Result<WorkflowRecord, StoreError> {
    next.version = expected.map_or(1, |e| e.version + 1);
    next.updated_at = timestamp(now);
    event.at = timestamp(now);
    event.version = next.version;
    store.save(expected, &next, &event).await?;
    Ok(next)
}
