//! `cmekctl onboard`: provision many existing workspaces, one execution each,
//! paced so the Admin API's rate limit holds, with a bounded number in
//! flight. One workspace failing does not stop the others; the summary at
//! the end names every failure with its error.
//!
//! Pacing ([`crate::pacing`]): without `--rpm` the limit is found while
//! onboarding (slow start, then additive increase and multiplicative
//! decrease on 429s), heard from the executions themselves: each is followed
//! through its history, where every step's output carries the 429s its
//! Admin API client absorbed. With `--rpm` the pace starts at 90 % of it and
//! never exceeds that. Attaching is irreversible, so nothing starts without
//! `--yes`: the default is to print the plan.
//!
//! Before starting anything, a `--workspaces-file` batch is read back from
//! the Admin API 100 ids a call (the list's `id` filter): workspaces already
//! attached, archived or not in the organization start no execution.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType};
use cmek::admin_api::AdminApiClient;
use cmek::ids::WorkspaceId;
use cmek::store::{DynamoStore, Status, WorkflowStore};
use serde_json::{Value, json};

use crate::pacing::Pacer;
use crate::progress::{Progress, Snapshot, Style};

/// How often a running execution's history is read.
const POLL: Duration = Duration::from_secs(1);
/// Polls in a row whose history read failed before the execution is
/// reported as lost track of.
const MAX_UNREAD_POLLS: u32 = 30;

#[derive(Debug, Clone)]
pub struct Plan {
    pub workspaces: Vec<WorkspaceId>,
    pub concurrency: usize,
    /// The organization's Admin API budget, requests per minute, if known.
    pub rpm: Option<u32>,
    pub state_machine: String,
    pub table: String,
    /// Whether the Admin API was just asked which workspaces have a key
    /// (the list, or a file's batch read back): then the table is not read
    /// again for each before it starts — at a thousand workspaces, a
    /// thousand reads in the way of the pace.
    pub checked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Attached,
    AlreadyAttached,
    Failed(String),
}

/// Workspace ids from a file: one per line; blank lines and `#` comments skipped.
pub fn read_ids(text: &str) -> anyhow::Result<Vec<WorkspaceId>> {
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let id: WorkspaceId = line.parse().with_context(|| format!("line {}", n + 1))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// What the Admin API says of a batch before anything starts: workspaces
/// attached already (by this tool or any other), archived, or not in the
/// organization get their outcome here; the rest are returned to start.
/// One list call per 100 ids instead of an execution (and its calls) each.
pub async fn preflight(
    admin: &AdminApiClient,
    ids: Vec<WorkspaceId>,
) -> anyhow::Result<(Vec<WorkspaceId>, BTreeMap<String, Outcome>)> {
    let found = admin
        .workspaces_by_id(&ids)
        .await
        .context("reading the batch's workspaces (GET /v1/organizations/workspaces?id[]=…)")?;
    let mut decided = BTreeMap::new();
    let mut start = Vec::new();
    for id in ids {
        match found.iter().find(|w| w.id == id.as_str()) {
            None => {
                decided.insert(
                    id.to_string(),
                    Outcome::Failed(format!(
                        "WorkspaceNotFound: {id} is not a workspace of this organization"
                    )),
                );
            }
            Some(w) if w.is_archived() => {
                decided.insert(
                    id.to_string(),
                    Outcome::Failed(format!("WorkspaceArchived: {id} is archived")),
                );
            }
            Some(w) if w.external_key_id.is_some() => {
                decided.insert(id.to_string(), Outcome::AlreadyAttached);
            }
            Some(_) => start.push(id),
        }
    }
    Ok((start, decided))
}

/// Counters shared by the batch's tasks.
#[derive(Debug, Default)]
struct Tally {
    in_flight: AtomicUsize,
    rate_limited: AtomicU64,
}

pub async fn run(
    json_out: bool,
    plan: Plan,
    decided: BTreeMap<String, Outcome>,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<i32> {
    if plan.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &plan.table));
    let pacer = Arc::new(Mutex::new(Pacer::new(plan.rpm, plan.concurrency)));
    let tally = Arc::new(Tally::default());
    let run_id = format!("{:x}", time::OffsetDateTime::now_utc().unix_timestamp());
    let t0 = Instant::now();
    let mut progress = Progress::new(Style::detect(json_out));
    let total = plan.workspaces.len() + decided.len();
    let mut results = BTreeMap::new();
    for (ws, outcome) in decided {
        report(json_out, &mut progress, t0, &ws, &outcome);
        results.insert(ws, outcome);
    }
    let snapshot = |results: &BTreeMap<String, Outcome>, pacer: &Pacer| {
        let count = |f: fn(&Outcome) -> bool| results.values().filter(|o| f(o)).count();
        Snapshot {
            total,
            attached: count(|o| *o == Outcome::Attached),
            already: count(|o| *o == Outcome::AlreadyAttached),
            failed: count(|o| matches!(o, Outcome::Failed(_))),
            in_flight: tally.in_flight.load(Ordering::Relaxed),
            rate_rpm: pacer.rate_rpm(),
            rate_limited: tally.rate_limited.load(Ordering::Relaxed),
            elapsed: t0.elapsed(),
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut queue = plan.workspaces.iter().cloned();
    let mut next = queue.next();
    // Whether `next` was looked up in the table already (once, not per wait).
    let mut checked = false;
    while next.is_some() || !tasks.is_empty() {
        // Collect what ended, then start what the pacer allows.
        while let Some(done) = tasks.try_join_next() {
            let (ws, outcome): (WorkspaceId, Outcome) = done?;
            report(json_out, &mut progress, t0, ws.as_str(), &outcome);
            results.insert(ws.to_string(), outcome);
        }
        progress.show(&snapshot(&results, &lock(&pacer)));
        let Some(ws) = next.clone() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        // Already attached by an earlier run: nothing to start.
        if !plan.checked
            && !std::mem::replace(&mut checked, true)
            && let Some(rec) = store.load(&ws).await?
            && rec.status == Status::Attached
        {
            report(
                json_out,
                &mut progress,
                t0,
                ws.as_str(),
                &Outcome::AlreadyAttached,
            );
            results.insert(ws.to_string(), Outcome::AlreadyAttached);
            (next, checked) = (queue.next(), false);
            continue;
        }
        let now = t0.elapsed().as_secs_f64();
        let at = lock(&pacer).next_start(now, tally.in_flight.load(Ordering::Relaxed));
        match at {
            Some(at) if at <= now => {}
            Some(at) => {
                tokio::time::sleep(Duration::from_secs_f64((at - now).min(0.2))).await;
                continue;
            }
            None => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        lock(&pacer).started(now);
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        (next, checked) = (queue.next(), false);
        let (sfn, store, pacer, tally) = (sfn.clone(), store.clone(), pacer.clone(), tally.clone());
        let (machine, run_id) = (plan.state_machine.clone(), run_id.clone());
        tasks.spawn(async move {
            let follow = Follow {
                pacer: &pacer,
                tally: &tally,
                t0,
                started_at: now,
            };
            let outcome = provision_one(&sfn, &*store, &machine, &run_id, &ws, &follow).await;
            tally.in_flight.fetch_sub(1, Ordering::Relaxed);
            (ws, outcome.unwrap_or_else(|e| Outcome::Failed(format!("{e:#}"))))
        });
    }
    let last = snapshot(&results, &lock(&pacer));
    progress.finish(&last);
    summarize(json_out, &results, t0.elapsed(), &lock(&pacer), &last);
    let failed = results.values().any(|o| matches!(o, Outcome::Failed(_)));
    Ok(if failed { 1 } else { 0 })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What following one execution feeds back.
struct Follow<'a> {
    pacer: &'a Mutex<Pacer>,
    tally: &'a Tally,
    t0: Instant,
    started_at: f64,
}

impl Follow<'_> {
    fn rate_limited(&self, count: u64, retry_after: Option<f64>) {
        self.tally.rate_limited.fetch_add(count, Ordering::Relaxed);
        let now = self.t0.elapsed().as_secs_f64();
        lock(self.pacer).rate_limited(now, self.started_at, retry_after);
    }
}

async fn provision_one(
    sfn: &aws_sdk_sfn::Client,
    store: &dyn WorkflowStore,
    machine: &str,
    run_id: &str,
    ws: &WorkspaceId,
    follow: &Follow<'_>,
) -> anyhow::Result<Outcome> {
    let input = json!({"workspaceId": ws, "trigger": {"source": "manual", "tool": "cmekctl onboard", "run": run_id,
                       "user": std::env::var("USER").unwrap_or_default()}});
    // Named by workspace and run, so the history shows which batch started it.
    let name = format!("onboard-{ws}-{run_id}");
    let arn = match sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(&name)
        .input(input.to_string())
        .send()
        .await
    {
        Ok(out) => out.execution_arn().to_owned(),
        Err(e) => {
            lock(follow.pacer).finished(follow.started_at, false);
            return Ok(Outcome::Failed(format!("StartExecution: {}", aws_error(&e))));
        }
    };
    let mut seen = 0i64;
    let mut met_limit = false;
    let mut last_failure: Option<String> = None;
    let mut unread = 0;
    loop {
        tokio::time::sleep(POLL).await;
        // A history that cannot be read now (Step Functions throttling the
        // reads, say) is read again at the next poll: the execution runs on
        // whatever happens here, and calling it failed would be untrue.
        let events = match new_events(sfn, &arn, seen).await {
            Ok(events) => {
                unread = 0;
                events
            }
            Err(_) if unread < MAX_UNREAD_POLLS => {
                unread += 1;
                continue;
            }
            Err(e) => {
                return Ok(Outcome::Failed(format!(
                    "lost track of {arn}, which may still be running ({e:#}): see `cmekctl status {ws}`"
                )));
            }
        };
        for e in events {
            seen = seen.max(e.id());
            if let Some((count, retry_after)) = rate_limit_met(&e) {
                met_limit = true;
                follow.rate_limited(count, retry_after);
            }
            if let Some(d) = e.lambda_function_failed_event_details() {
                last_failure = Some(step_failure(d.error(), d.cause()));
            }
            let ended = match e.r#type() {
                HistoryEventType::ExecutionSucceeded => {
                    let output: Value = e
                        .execution_succeeded_event_details()
                        .and_then(|d| d.output())
                        .and_then(|o| serde_json::from_str(o).ok())
                        .unwrap_or_default();
                    Some(if output["status"] == "ATTACHED" && output["error"].is_null() {
                        Outcome::Attached
                    } else {
                        Outcome::Failed(format!("unexpected output {output}"))
                    })
                }
                HistoryEventType::ExecutionFailed
                | HistoryEventType::ExecutionTimedOut
                | HistoryEventType::ExecutionAborted => {
                    let why = match last_failure.take() {
                        Some(why) => why,
                        None => store
                            .load(ws)
                            .await?
                            .and_then(|r| r.last_error)
                            .unwrap_or_else(|| {
                                format!(
                                    "execution {}: {}",
                                    e.r#type().as_str(),
                                    e.execution_failed_event_details()
                                        .and_then(|d| d.error())
                                        .unwrap_or_default()
                                )
                            }),
                    };
                    Some(Outcome::Failed(why))
                }
                _ => None,
            };
            if let Some(outcome) = ended {
                lock(follow.pacer).finished(follow.started_at, !met_limit);
                return Ok(outcome);
            }
        }
    }
}

/// The execution's events after `seen`, oldest first: newest-first pages
/// until one reaches an event already seen (one short page a poll, however
/// long the history grows). Whatever order the pages come in, the events
/// are kept by id: moto answers oldest first whatever `reverseOrder` says.
async fn new_events(sfn: &aws_sdk_sfn::Client, arn: &str, seen: i64) -> anyhow::Result<Vec<HistoryEvent>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(arn)
            .reverse_order(true)
            .max_results(50)
            .set_next_token(token)
            .send()
            .await
            .with_context(|| format!("reading the history of {arn}"))?;
        let reached_seen = page.events().iter().any(|e| e.id() <= seen);
        out.extend(page.events().iter().filter(|e| e.id() > seen).cloned());
        match page.next_token() {
            Some(t) if !reached_seen => token = Some(t.to_owned()),
            _ => {
                out.sort_by_key(HistoryEvent::id);
                return Ok(out);
            }
        }
    }
}

/// The rate limit a step met, if it did: the 429s its Admin API client
/// absorbed (`adminApiRetries` in its output, or at the end of a failed
/// step's message) and the longest retry-after among them.
fn rate_limit_met(e: &HistoryEvent) -> Option<(u64, Option<f64>)> {
    if let Some(d) = e.lambda_function_succeeded_event_details() {
        let output: Value = serde_json::from_str(d.output()?).ok()?;
        let retries = output.get("adminApiRetries")?;
        return met(retries);
    }
    let failed = e.lambda_function_failed_event_details()?;
    // A step that gave up says what it absorbed before it did
    // (`cmek::runtime::Failed`): every 429 counts, not one per failure.
    let message = failed
        .cause()
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let (_, tail) = message.rsplit_once(cmek::runtime::RETRIES_MARKER)?;
    let retries = serde_json::from_str::<Value>(tail.strip_suffix(']').unwrap_or(tail)).ok()?;
    met(&retries)
}

/// The 429s one step's `adminApiRetries` says it met (retried, and the last
/// of a call given up on), and the longest retry-after.
fn met(retries: &Value) -> Option<(u64, Option<f64>)> {
    let count = retries["byStatus"]["429"].as_u64().unwrap_or(0)
        + retries["gaveUpByStatus"]["429"].as_u64().unwrap_or(0);
    (count > 0).then(|| (count, retries["retryAfterSecs"].as_f64()))
}

/// `Error: message` of a failed step.
fn step_failure(error: Option<&str>, cause: Option<&str>) -> String {
    let message = cause
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{}: {message}", error.unwrap_or("Unknown"))
}

fn aws_error<E: std::error::Error>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn report(json_out: bool, progress: &mut Progress, t0: Instant, ws: &str, outcome: &Outcome) {
    if json_out {
        return;
    }
    let at = t0.elapsed().as_secs_f64();
    progress.println(&match outcome {
        Outcome::Attached => format!("[{at:7.1}s] ✓ {ws} attached"),
        Outcome::AlreadyAttached => format!("[{at:7.1}s] · {ws} already attached"),
        Outcome::Failed(e) => format!("[{at:7.1}s] ✗ {ws} {e}"),
    });
}

fn summarize(
    json_out: bool,
    results: &BTreeMap<String, Outcome>,
    elapsed: Duration,
    pacer: &Pacer,
    last: &Snapshot,
) {
    let failed: Vec<(&String, &String)> = results
        .iter()
        .filter_map(|(ws, o)| match o {
            Outcome::Failed(e) => Some((ws, e)),
            _ => None,
        })
        .collect();
    if json_out {
        println!(
            "{}",
            json!({
                "total": results.len(), "attached": last.attached, "alreadyAttached": last.already,
                "failed": failed.iter().map(|(ws, e)| json!({"workspace": ws, "error": e})).collect::<Vec<_>>(),
                "seconds": elapsed.as_secs_f64(),
                "rateLimited": last.rate_limited,
                "pacing": {"finalRpm": pacer.rate_rpm(), "cuts": pacer.decreases},
            })
        );
        return;
    }
    println!(
        "\n{} workspaces in {}: {} attached, {} already attached, {} failed; the limit was met {} time(s) ({} × 429), last pace {:.0} requests/minute",
        results.len(),
        crate::progress::clock(elapsed),
        last.attached,
        last.already,
        failed.len(),
        pacer.decreases,
        last.rate_limited,
        pacer.rate_rpm()
    );
    for (ws, e) in &failed {
        println!("  ✗ {ws}: {e}");
    }
    if !failed.is_empty() {
        println!(
            "(`cmekctl status <workspace>` shows each audit trail; re-running onboard retries only what is not attached)"
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_file_skips_comments_blank_lines_and_duplicates() {
        let ids = read_ids("# prod\nwrkspc_01A\n\nwrkspc_01B  # second\nwrkspc_01A\n").unwrap();
        assert_eq!(
            ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            ["wrkspc_01A", "wrkspc_01B"]
        );
        let err = read_ids("wrkspc_01A\nnot-an-id\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
