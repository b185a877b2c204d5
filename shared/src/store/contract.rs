//! The behaviour every [`WorkflowStore`] must have, run against the in-memory
//! store in unit tests and against DynamoDB (moto) in integration tests.

// A test suite: failing loudly on the first broken rule is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use super::*;
use crate::ids::WorkspaceId;

const TTL: Duration = Duration::from_secs(900);

pub fn fresh_workspace() -> WorkspaceId {
    format!("wrkspc_{}", uuid::Uuid::new_v4().simple())
        .parse()
        .expect("generated id is valid")
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn event(outcome: &str) -> AuditEvent {
    AuditEvent::new("Test", outcome, None, json!({}))
}

/// Run every check; panics (as a test would) on the first broken rule.
pub async fn run_all(store: Arc<dyn WorkflowStore>) {
    claim_creates_a_pending_record(&*store).await;
    claim_is_reentrant_for_its_own_execution(&*store).await;
    live_lease_blocks_other_executions(&*store).await;
    expired_lease_is_taken_over_and_progress_resumed(&*store).await;
    advance_moves_forward_with_one_event(&*store).await;
    stale_version_is_rejected_and_writes_nothing(&*store).await;
    non_owner_cannot_advance(&*store).await;
    attached_is_never_failed(&*store).await;
    release_clears_lease_and_list_filters(&*store).await;
    progress_extends_the_lease(&*store).await;
    unclaimed_records_follow_the_rules(&*store).await;
    append_event_without_lease(&*store).await;
    records_are_found_by_their_key(&*store).await;
    concurrent_claims_have_one_winner(store.clone()).await;
}

async fn records_are_found_by_their_key(store: &dyn WorkflowStore) {
    let key = format!("arn:aws:kms:us-east-2:111122223333:key/{}", uuid::Uuid::new_v4());
    let (a, b, c) = (fresh_workspace(), fresh_workspace(), fresh_workspace());
    for (ws, on_key) in [(&a, true), (&b, true), (&c, false)] {
        let rec = claim(store, ws, "exec-k", None, now(), TTL).await.unwrap();
        release(
            store,
            &rec,
            "exec-k",
            Status::Attached,
            event("attached"),
            now(),
            |r| {
                if on_key {
                    r.key_arn = Some(key.parse().unwrap());
                }
            },
        )
        .await
        .unwrap();
    }
    let mut found: Vec<WorkspaceId> = store
        .by_key(&key)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.workspace_id)
        .collect();
    found.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(found, want, "exactly the records on the key");
    assert!(
        store
            .by_key("arn:aws:kms:us-east-2:111122223333:key/none")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn claim_creates_a_pending_record(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let rec = claim(
        store,
        &ws,
        "exec-a",
        Some(json!({"source": "manual"})),
        now(),
        TTL,
    )
    .await
    .unwrap();
    assert_eq!(rec.status, Status::Pending);
    assert_eq!(rec.version, 1);
    assert_eq!(rec.lease_owner(), Some("exec-a"));
    assert_eq!(store.load(&ws).await.unwrap().unwrap(), rec);
    let events = store.events(&ws).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].step.as_str(), events[0].outcome.as_str()),
        ("Begin", "claimed")
    );
    assert_eq!(events[0].execution.as_deref(), Some("exec-a"));
    assert_eq!(events[0].detail["trigger"]["source"], "manual");
}

async fn claim_is_reentrant_for_its_own_execution(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let first = claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    let again = claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    assert_eq!(again.version, first.version + 1);
    assert_eq!(store.events(&ws).await.unwrap()[1].outcome, "reclaimed");
}

async fn live_lease_blocks_other_executions(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    let err = claim(store, &ws, "exec-b", None, now(), TTL).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::ConcurrentExecution { owner, .. } if owner == "exec-a"),
        "{err:?}"
    );
    // One second before expiry is still not expired.
    let err = claim(
        store,
        &ws,
        "exec-b",
        None,
        now() + TTL - Duration::from_secs(2),
        TTL,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::ConcurrentExecution { .. }));
    assert_eq!(
        store.events(&ws).await.unwrap().len(),
        1,
        "a refused claim writes nothing"
    );
}

async fn expired_lease_is_taken_over_and_progress_resumed(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let t0 = now();
    let rec = claim(store, &ws, "exec-a", None, t0, TTL).await.unwrap();
    let rec = advance(
        store,
        &rec,
        "exec-a",
        Status::KeyCreated,
        event("key_created"),
        t0,
        |r| {
            r.key_arn = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .parse()
                .ok();
        },
    )
    .await
    .unwrap();
    let rec = advance(
        store,
        &rec,
        "exec-a",
        Status::Registered,
        event("registered"),
        t0,
        |r| {
            r.external_key_id = "ekey_1".parse().ok();
        },
    )
    .await
    .unwrap();
    advance(
        store,
        &rec,
        "exec-a",
        Status::Validated,
        event("validated"),
        t0,
        |r| r.validated_by = Some("exec-a".into()),
    )
    .await
    .unwrap();
    // exec-a dies. After expiry exec-b takes over, resuming at REGISTERED:
    // the validation belonged to exec-a and does not carry over.
    let later = t0 + TTL + Duration::from_secs(1);
    let taken = claim(store, &ws, "exec-b", None, later, TTL).await.unwrap();
    assert_eq!(taken.lease_owner(), Some("exec-b"));
    assert_eq!(taken.status, Status::Registered);
    assert_eq!(taken.validated_by, None);
    assert_eq!(taken.external_key_id.as_deref(), Some("ekey_1"));
    let last = store.events(&ws).await.unwrap().pop().unwrap();
    assert_eq!(last.outcome, "taken_over");
    assert_eq!(last.detail["previous_owner"], "exec-a");
}

async fn advance_moves_forward_with_one_event(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let rec = claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    let next = advance(
        store,
        &rec,
        "exec-a",
        Status::KeyCreated,
        event("key_created"),
        now(),
        |r| r.alias = Some("alias/anthropic-cmek/x".into()),
    )
    .await
    .unwrap();
    assert_eq!(next.version, 2);
    assert_eq!(next.alias.as_deref(), Some("alias/anthropic-cmek/x"));
    assert_eq!(store.load(&ws).await.unwrap().unwrap(), next);
    let events = store.events(&ws).await.unwrap();
    assert_eq!(events.len() as u64, next.version, "one event per write");
    assert_eq!(events[1].execution.as_deref(), Some("exec-a"));
    assert_eq!(events[1].version, 2);
}

async fn stale_version_is_rejected_and_writes_nothing(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let v1 = claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    let v2 = advance(
        store,
        &v1,
        "exec-a",
        Status::KeyCreated,
        event("a"),
        now(),
        |_| {},
    )
    .await
    .unwrap();
    let err = advance(
        store,
        &v1,
        "exec-a",
        Status::KeyCreated,
        event("stale"),
        now(),
        |r| r.alias = Some("x".into()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StoreError::VersionConflict { expected: 1, .. }),
        "{err:?}"
    );
    assert_eq!(store.load(&ws).await.unwrap().unwrap(), v2, "state untouched");
    let events = store.events(&ws).await.unwrap();
    assert!(
        events.iter().all(|e| e.outcome != "stale"),
        "the audit event of a rejected write must not exist"
    );
}

async fn non_owner_cannot_advance(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let rec = claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    let err = advance(
        store,
        &rec,
        "exec-b",
        Status::KeyCreated,
        event("x"),
        now(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    let err = load_held(store, &ws, "exec-b").await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }));
    assert!(load_held(store, &ws, "exec-a").await.is_ok());
}

async fn attached_is_never_failed(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let rec = claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    let rec = advance(
        store,
        &rec,
        "exec-a",
        Status::Attached,
        event("attached"),
        now(),
        |_| {},
    )
    .await
    .unwrap();
    let err = advance(store, &rec, "exec-a", Status::Failed, event("x"), now(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: Status::Attached,
            to: Status::Failed,
            ..
        }
    ));
    let err = advance(
        store,
        &rec,
        "exec-a",
        Status::Registered,
        event("x"),
        now(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition { .. }));
}

async fn release_clears_lease_and_list_filters(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let rec = claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    let done = release(
        store,
        &rec,
        "exec-a",
        Status::Failed,
        event("failed"),
        now(),
        |r| r.last_error = Some("boom".into()),
    )
    .await
    .unwrap();
    assert_eq!(done.lease, None);
    // A new execution may claim at once.
    claim(store, &ws, "exec-b", None, now(), TTL).await.unwrap();
    let other = fresh_workspace();
    let r = claim(store, &other, "exec-c", None, now(), TTL).await.unwrap();
    release(
        store,
        &r,
        "exec-c",
        Status::Failed,
        event("failed"),
        now(),
        |_| {},
    )
    .await
    .unwrap();
    let failed = store.list(Some(Status::Failed)).await.unwrap();
    assert!(failed.iter().any(|r| r.workspace_id == other));
    assert!(failed.iter().all(|r| r.status == Status::Failed));
    assert!(
        !failed.iter().any(|r| r.workspace_id == ws),
        "ws was re-claimed as PENDING"
    );
    assert!(
        store
            .list(None)
            .await
            .unwrap()
            .iter()
            .any(|r| r.workspace_id == ws)
    );
}

async fn append_event_without_lease(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let skipped = AuditEvent::new("discovery", "skipped", None, json!({"why": "not opted in"}));
    append_event(store, &ws, skipped, now()).await.unwrap();
    assert!(
        store.load(&ws).await.unwrap().is_none(),
        "no STATE item is created"
    );
    assert_eq!(store.events(&ws).await.unwrap()[0].detail["why"], "not opted in");
    // An audit-only event never disturbs the execution holding the lease.
    let rec = claim(store, &ws, "exec-a", None, now(), TTL).await.unwrap();
    let refused = AuditEvent::new("Finish", "refused", Some("exec-b"), json!({}));
    append_event(store, &ws, refused, now()).await.unwrap();
    advance(
        store,
        &rec,
        "exec-a",
        Status::KeyCreated,
        event("key_created"),
        now(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(store.events(&ws).await.unwrap().len(), 4);
}

async fn concurrent_claims_have_one_winner(store: Arc<dyn WorkflowStore>) {
    let ws = fresh_workspace();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (store, ws) = (store.clone(), ws.clone());
        tasks.spawn(async move { claim(&*store, &ws, &format!("exec-{i}"), None, now(), TTL).await });
    }
    let mut winners = Vec::new();
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(rec) => winners.push(rec),
            Err(StoreError::ConcurrentExecution { .. }) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    assert_eq!(refused, 19);
    let stored = store.load(&ws).await.unwrap().unwrap();
    assert_eq!(stored.lease_owner(), winners[0].lease_owner());
    assert_eq!(store.events(&ws).await.unwrap().len(), 1);
}

/// Each step's progress moves the lease on (the workflow's `advance` does
/// this on every write), so a long provisioning keeps its workspace.
async fn progress_extends_the_lease(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let t0 = now();
    let rec = claim(store, &ws, "exec-a", None, t0, TTL).await.unwrap();
    let later = t0 + Duration::from_secs(600);
    let expires_at = later.unix_timestamp() + TTL.as_secs() as i64;
    let event = AuditEvent::new("CreateKey", "key_created", Some("exec-a"), json!({}));
    let advanced = advance(store, &rec, "exec-a", Status::KeyCreated, event, later, |r| {
        if let Some(lease) = r.lease.as_mut() {
            lease.expires_at = expires_at;
        }
    })
    .await
    .unwrap();
    assert_eq!(advanced.lease.as_ref().unwrap().expires_at, expires_at);
    // Past the original expiry but within the moved one, exec-b is refused.
    let err = claim(store, &ws, "exec-b", None, t0 + TTL + Duration::from_secs(1), TTL)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConcurrentExecution { .. }));
}

/// What discovery writes: a first record only where none exists, and
/// changes to it only while no execution has claimed it since.
async fn unclaimed_records_follow_the_rules(store: &dyn WorkflowStore) {
    let ws = fresh_workspace();
    let t0 = now();
    let event = || AuditEvent::new("Discovery", "discovered", None, json!({}));
    assert!(record_unclaimed(store, &ws, event(), t0, |_| {}).await.unwrap());
    assert!(
        !record_unclaimed(store, &ws, event(), t0, |_| {}).await.unwrap(),
        "the first record wins"
    );
    let seen = store.load(&ws).await.unwrap().unwrap();
    assert_eq!((seen.version, seen.status), (1, Status::Pending));
    let updated = update_unheld(store, &seen, event(), t0, |r| {
        r.trigger = Some(json!({"again": true}))
    })
    .await
    .unwrap();
    assert_eq!((updated.version, updated.status), (2, Status::Pending));
    // An execution claims it: a change from the old read loses, and one
    // from a fresh read is refused while the lease is held.
    claim(store, &ws, "exec-a", None, t0, TTL).await.unwrap();
    let err = update_unheld(store, &updated, event(), t0, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { .. }), "{err}");
    let claimed = store.load(&ws).await.unwrap().unwrap();
    let err = update_unheld(store, &claimed, event(), t0, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ConcurrentExecution { .. }), "{err}");
    assert_eq!(
        store.load(&ws).await.unwrap().unwrap().lease_owner(),
        Some("exec-a")
    );
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        super::run_all(std::sync::Arc::new(super::MemoryStore::new())).await;
    }
}
