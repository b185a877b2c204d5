//! Finding new workspaces. Anthropic publishes no event for a new workspace,
//! so `discover-workspaces` runs on a schedule, pages through the
//! organization's workspaces and puts a `Workspace Discovered` event on the
//! project's bus for each one that is opted in, unarchived, unattached and
//! unknown to the workflow table. Attaching is irreversible, so
//! auto-provisioning is off unless configured, and then only for an
//! allow-list of ids and/or a name pattern.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::OptIn;
use crate::context::Deps;
use crate::error::CmekError;
use crate::ids::WorkspaceId;
use crate::store::{self, AuditEvent, StoreError, WorkflowRecord, timestamp};

crate::context::lambda_function!(
    /// Scheduled: find new workspaces and announce the opted-in ones on the bus.
    DiscoverWorkspaces: on_schedule => DiscoveryReport,
    crate::context::Needs {
        admin_api: true,
        events: true,
        ..crate::context::Needs::NONE
    }
);

pub const DETAIL_TYPE: &str = "Workspace Discovered";
pub const SOURCE: &str = crate::events::SOURCE;
/// PutEvents takes at most 10 entries.
const BATCH: usize = 10;
const PUT_ATTEMPTS: usize = 5;
/// A workspace announced this long ago that no execution has claimed since
/// (its event was lost: every invocation of the rule's target failed) is
/// announced again. Long enough for EventBridge's and Lambda's own retries.
pub const REANNOUNCE_AFTER: Duration = Duration::from_secs(3600);

/// The event's `detail`; anyone's workspace-vending tooling may put the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Discovered {
    pub workspace_id: String,
    #[serde(default)]
    pub workspace_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub discovered_at: Option<String>,
}

/// Where discovery puts its events (EventBridge in Lambda; fakes in unit tests).
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Put one batch; the result says, per entry, whether it was accepted.
    async fn put(&self, details: &[Value]) -> Result<Vec<bool>, CmekError>;
}

#[async_trait]
impl EventSink for crate::events::EventPublisher {
    async fn put(&self, details: &[Value]) -> Result<Vec<bool>, CmekError> {
        Ok(self.put_batch(DETAIL_TYPE, details).await?)
    }
}

/// Put every event, retrying only the entries that failed, with backoff.
/// Returns, per input, whether it was accepted in the end.
pub async fn put_all(
    sink: &dyn EventSink,
    details: &[Value],
    first_backoff: Duration,
) -> Result<Vec<bool>, CmekError> {
    let mut accepted = vec![false; details.len()];
    for chunk_start in (0..details.len()).step_by(BATCH) {
        let mut pending: Vec<usize> = (chunk_start..(chunk_start + BATCH).min(details.len())).collect();
        let mut delay = first_backoff;
        for attempt in 0..PUT_ATTEMPTS {
            let batch: Vec<Value> = pending.iter().map(|i| details[*i].clone()).collect();
            let results = sink.put(&batch).await?;
            let mut still = Vec::new();
            for (i, ok) in pending
                .iter()
                .zip(results.iter().chain(std::iter::repeat(&false)))
            {
                if *ok {
                    accepted[*i] = true;
                } else {
                    still.push(*i);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            tracing::warn!(
                failed = pending.len(),
                attempt,
                "PutEvents rejected some entries; retrying those"
            );
            if attempt + 1 < PUT_ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    Ok(accepted)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryReport {
    pub listed: usize,
    pub archived: usize,
    pub attached: usize,
    pub known: usize,
    pub not_opted_in: usize,
    pub discovered: Vec<String>,
    /// Announced earlier, never claimed since: announced again.
    #[serde(default)]
    pub reannounced: Vec<String>,
    pub failed: Vec<String>,
}

/// Whether a record is a discovery announcement no execution ever picked up,
/// older than `after`.
fn stuck(r: &WorkflowRecord, now: time::OffsetDateTime, after: Duration) -> bool {
    let Some(trigger) = &r.trigger else {
        return false;
    };
    let announced = trigger
        .get("discoveredAt")
        .and_then(Value::as_str)
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
    r.status == crate::store::Status::Pending
        && r.lease.is_none()
        && trigger.get("source").and_then(Value::as_str) == Some("eventbridge")
        && announced.is_some_and(|at| now - at >= after)
}

/// The schedule's event (checked to be one) says nothing discovery needs.
async fn on_schedule(deps: &Deps, event: Value) -> Result<DiscoveryReport, CmekError> {
    let event = crate::inbound::eventbridge::<Value>(event)?;
    if event.detail_type != crate::inbound::SCHEDULED_DETAIL_TYPE {
        return Err(CmekError::InvalidInput(format!(
            "expected the discovery schedule's {:?} event, got {:?}",
            crate::inbound::SCHEDULED_DETAIL_TYPE,
            crate::ids::shown(&event.detail_type)
        )));
    }
    poll(deps).await
}

/// The scheduled Lambda's work: one poll, publishing through the project's bus.
pub async fn poll(deps: &Deps) -> Result<DiscoveryReport, CmekError> {
    let opt_in = &deps.config.auto_provision;
    let sink = deps
        .events
        .as_ref()
        .ok_or_else(|| CmekError::Configuration(format!("{} is not set", crate::config::EVENT_BUS_NAME)))?;
    discover(deps, opt_in, sink).await
}

/// One poll.
pub async fn discover(
    deps: &Deps,
    opt_in: &OptIn,
    sink: &dyn EventSink,
) -> Result<DiscoveryReport, CmekError> {
    let mut report = DiscoveryReport::default();
    let all = deps.admin()?.list_workspaces(false, false).await?;
    report.listed = all.len();
    // Re-announce only workspaces that still exist, unattached and unarchived.
    let all_ids: HashSet<String> = all
        .iter()
        .filter(|w| !w.is_archived() && w.external_key_id.is_none())
        .map(|w| w.id.clone())
        .collect();
    let records = deps.store.list(None).await?;
    let known: HashSet<String> = records.iter().map(|r| r.workspace_id.to_string()).collect();
    let stuck_records: Vec<WorkflowRecord> = records
        .into_iter()
        .filter(|r| stuck(r, deps.now(), REANNOUNCE_AFTER))
        .collect();
    let mut candidates = Vec::new();
    for w in all {
        if w.is_archived() {
            report.archived += 1;
        } else if w.external_key_id.is_some() {
            report.attached += 1;
        } else if known.contains(&w.id) {
            report.known += 1;
        } else if !opt_in.admits(&w) {
            report.not_opted_in += 1;
        } else if let Ok(id) = w.id.parse::<WorkspaceId>() {
            candidates.push((id, w.name.clone()));
        }
    }
    let now = timestamp(deps.now());
    // Announced before and never claimed: their event was lost. They go out
    // again with the new ones (and are recorded as re-announced below).
    let stale_names: Vec<(WorkspaceId, String)> = stuck_records
        .iter()
        .filter(|r| all_ids.contains(r.workspace_id.as_str()))
        .map(|r| (r.workspace_id.clone(), String::new()))
        .collect();
    let details: Vec<Value> = candidates
        .iter()
        .chain(stale_names.iter())
        .map(|(id, name)| {
            serde_json::to_value(Discovered {
                workspace_id: id.to_string(),
                workspace_name: (!name.is_empty()).then(|| name.clone()),
                display_name: None,
                discovered_at: Some(now.clone()),
            })
            .unwrap_or_default()
        })
        .collect();
    let accepted = put_all(sink, &details, Duration::from_millis(200)).await?;
    let (accepted, accepted_again) = accepted.split_at(candidates.len());
    for (rec, ok) in stuck_records
        .iter()
        .filter(|r| all_ids.contains(r.workspace_id.as_str()))
        .zip(accepted_again)
    {
        if !ok {
            report.failed.push(rec.workspace_id.to_string());
            continue;
        }
        // Versioned: if an execution claimed it meanwhile, this write loses
        // and nothing is recorded twice.
        let event = AuditEvent::new(
            "Discovery",
            "reannounced",
            None,
            json!({"after_seconds": REANNOUNCE_AFTER.as_secs()}),
        );
        match store::update_unheld(&*deps.store, rec, event, deps.now(), |r| {
            r.trigger = Some(json!({"source": "eventbridge", "discoveredAt": now, "reannounced": true}));
        })
        .await
        {
            Ok(_) => report.reannounced.push(rec.workspace_id.to_string()),
            Err(StoreError::VersionConflict { .. } | StoreError::ConcurrentExecution { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for ((id, name), ok) in candidates.into_iter().zip(accepted.iter().copied()) {
        if !ok {
            report.failed.push(id.to_string());
            continue;
        }
        // Remember the decision, so the next poll does not announce it again.
        let event = AuditEvent::new("Discovery", "discovered", None, json!({"workspace_name": name}));
        store::record_unclaimed(&*deps.store, &id, event, deps.now(), |r| {
            r.trigger = Some(json!({"source": "eventbridge", "discoveredAt": now}));
        })
        .await?;
        report.discovered.push(id.to_string());
    }
    tracing::info!(
        listed = report.listed,
        discovered = report.discovered.len(),
        reannounced = report.reannounced.len(),
        failed = report.failed.len(),
        "discovery poll done"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Rejects the entries with the given ids in the first call(s).
    struct Flaky {
        reject: Mutex<Vec<Vec<&'static str>>>,
        seen: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl EventSink for Flaky {
        async fn put(&self, details: &[Value]) -> Result<Vec<bool>, CmekError> {
            self.seen.lock().unwrap().push(
                details
                    .iter()
                    .map(|d| d["workspaceId"].as_str().unwrap().to_owned())
                    .collect(),
            );
            let reject = {
                let mut r = self.reject.lock().unwrap();
                if r.is_empty() { vec![] } else { r.remove(0) }
            };
            Ok(details
                .iter()
                .map(|d| !reject.contains(&d["workspaceId"].as_str().unwrap()))
                .collect())
        }
    }

    #[tokio::test]
    async fn only_failed_entries_are_retried() {
        let details: Vec<Value> = (0..12)
            .map(|i| json!({"workspaceId": format!("wrkspc_{i}")}))
            .collect();
        let sink = Flaky {
            reject: Mutex::new(vec![vec!["wrkspc_1", "wrkspc_3"], vec!["wrkspc_3"]]),
            seen: Mutex::new(vec![]),
        };
        let accepted = put_all(&sink, &details, Duration::from_millis(1)).await.unwrap();
        assert!(accepted.iter().all(|a| *a));
        let seen = sink.seen.lock().unwrap().clone();
        assert_eq!(seen[0].len(), 10, "batches of 10");
        assert_eq!(
            seen[1],
            vec!["wrkspc_1", "wrkspc_3"],
            "only the rejected two again"
        );
        assert_eq!(seen[2], vec!["wrkspc_3"], "then only the one still rejected");
        assert_eq!(seen[3], vec!["wrkspc_10", "wrkspc_11"]);
    }

    #[tokio::test]
    async fn entries_rejected_every_time_are_reported() {
        let details: Vec<Value> = (0..3)
            .map(|i| json!({"workspaceId": format!("wrkspc_{i}")}))
            .collect();
        let sink = Flaky {
            reject: Mutex::new(vec![vec!["wrkspc_2"]; 10]),
            seen: Mutex::new(vec![]),
        };
        let accepted = put_all(&sink, &details, Duration::from_millis(1)).await.unwrap();
        assert_eq!(accepted, vec![true, true, false]);
        assert_eq!(sink.seen.lock().unwrap().len(), PUT_ATTEMPTS, "bounded");
    }
}
