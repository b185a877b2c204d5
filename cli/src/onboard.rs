//! `cmekctl onboard`: provision many existing workspaces, one execution each,
//! paced so the Admin API's rate limit holds, with a bounded number in
//! flight. One workspace failing does not stop the others; the summary at
//! the end names every failure with its error.
//!
//! Pacing: a provisioning makes 5 Admin API calls on its happy path, so
//! starting at most `0.9 · rpm / 5` executions a minute keeps the
//! organization under `rpm` requests a minute with room for retries (the
//! client still honours 429s if the budget is shared). Attaching is irreversible, so nothing starts without
//! `--yes`: the default is to print the plan.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cmek::ids::WorkspaceId;
use cmek::store::{DynamoStore, Status, WorkflowStore};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Admin API calls one provisioning makes on its happy path (measured by the
/// bench). Begin also reads the organization once per cold start of its
/// function: across a batch, a handful of calls the headroom below absorbs.
pub const CALLS_PER_WORKSPACE: f64 = 5.0;

/// The share of `--rpm` the starts are paced to. Paced at exactly the budget,
/// every burst and every retry overflows it: 1,000 workspaces at R = 300 drew
/// over 10,000 429s and Step Functions backoffs. The rest is headroom.
pub const BUDGET_SHARE: f64 = 0.9;

#[derive(Debug, Clone)]
pub struct Plan {
    pub workspaces: Vec<WorkspaceId>,
    pub concurrency: usize,
    /// The organization's Admin API budget, requests per minute.
    pub rpm: Option<u32>,
    pub state_machine: String,
    pub table: String,
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

/// Time between execution starts for a budget of `rpm` requests a minute.
pub fn start_interval(rpm: Option<u32>) -> Duration {
    match rpm {
        Some(r) if r > 0 => {
            Duration::from_secs_f64(60.0 * CALLS_PER_WORKSPACE / (BUDGET_SHARE * f64::from(r)))
        }
        _ => Duration::ZERO,
    }
}

pub async fn run(json_out: bool, plan: Plan, sdk: &aws_config::SdkConfig) -> anyhow::Result<i32> {
    if plan.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &plan.table));
    let gate = Arc::new(Semaphore::new(plan.concurrency));
    let interval = start_interval(plan.rpm);
    let run_id = format!("{:x}", time::OffsetDateTime::now_utc().unix_timestamp());
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut results = BTreeMap::new();
    let mut next_start = Instant::now();
    for ws in plan.workspaces.iter().cloned() {
        // Already attached by an earlier run: nothing to start.
        if let Some(rec) = store.load(&ws).await?
            && rec.status == Status::Attached
        {
            report(json_out, t0, &ws, &Outcome::AlreadyAttached);
            results.insert(ws.to_string(), Outcome::AlreadyAttached);
            continue;
        }
        let permit = gate.clone().acquire_owned().await?;
        tokio::time::sleep_until(next_start.into()).await;
        next_start = Instant::now() + interval;
        let (sfn, store) = (sfn.clone(), store.clone());
        let (machine, run_id) = (plan.state_machine.clone(), run_id.clone());
        tasks.spawn(async move {
            let outcome = provision_one(&sfn, &*store, &machine, &run_id, &ws).await;
            drop(permit);
            let outcome = outcome.unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
            report(json_out, t0, &ws, &outcome);
            (ws, outcome)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (ws, outcome) = done?;
        results.insert(ws.to_string(), outcome);
    }
    summarize(json_out, &results, t0.elapsed());
    let failed = results.values().any(|o| matches!(o, Outcome::Failed(_)));
    Ok(if failed { 1 } else { 0 })
}

async fn provision_one(
    sfn: &aws_sdk_sfn::Client,
    store: &dyn WorkflowStore,
    machine: &str,
    run_id: &str,
    ws: &WorkspaceId,
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
        Err(e) => return Ok(Outcome::Failed(format!("StartExecution: {}", aws_error(&e)))),
    };
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let d = sfn.describe_execution().execution_arn(&arn).send().await?;
        match d.status().as_str() {
            "RUNNING" => continue,
            "SUCCEEDED" => {
                let output: Value = d
                    .output()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_default();
                return Ok(if output["status"] == "ATTACHED" && output["error"].is_null() {
                    Outcome::Attached
                } else {
                    Outcome::Failed(format!("unexpected output {output}"))
                });
            }
            other => {
                let why = match last_step_failure(sfn, &arn).await? {
                    Some(why) => why,
                    None => store
                        .load(ws)
                        .await?
                        .and_then(|r| r.last_error)
                        .unwrap_or_else(|| format!("execution {other}: {}", d.error().unwrap_or_default())),
                };
                return Ok(Outcome::Failed(why));
            }
        }
    }
}

/// The last step error of an execution (`Error: message`), from its history.
async fn last_step_failure(sfn: &aws_sdk_sfn::Client, arn: &str) -> anyhow::Result<Option<String>> {
    let history = sfn
        .get_execution_history()
        .execution_arn(arn)
        .reverse_order(true)
        .send()
        .await?;
    Ok(history.events().iter().find_map(|e| {
        let d = e.lambda_function_failed_event_details()?;
        let message = d
            .cause()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Some(format!("{}: {message}", d.error().unwrap_or("Unknown")))
    }))
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

fn report(json_out: bool, t0: Instant, ws: &WorkspaceId, outcome: &Outcome) {
    if json_out {
        return;
    }
    let at = t0.elapsed().as_secs_f64();
    match outcome {
        Outcome::Attached => println!("[{at:7.1}s] ✓ {ws} attached"),
        Outcome::AlreadyAttached => println!("[{at:7.1}s] · {ws} already attached"),
        Outcome::Failed(e) => println!("[{at:7.1}s] ✗ {ws} {e}"),
    }
}

fn summarize(json_out: bool, results: &BTreeMap<String, Outcome>, elapsed: Duration) {
    let count = |f: fn(&Outcome) -> bool| results.values().filter(|o| f(o)).count();
    let attached = count(|o| *o == Outcome::Attached);
    let already = count(|o| *o == Outcome::AlreadyAttached);
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
                "total": results.len(), "attached": attached, "alreadyAttached": already,
                "failed": failed.iter().map(|(ws, e)| json!({"workspace": ws, "error": e})).collect::<Vec<_>>(),
                "seconds": elapsed.as_secs_f64(),
            })
        );
        return;
    }
    println!(
        "\n{} workspaces in {:.1}s: {attached} attached, {already} already attached, {} failed",
        results.len(),
        elapsed.as_secs_f64(),
        failed.len()
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

    #[test]
    fn pacing_keeps_five_calls_per_workspace_under_the_budget() {
        let per_minute = |rpm: u32| 60.0 / start_interval(Some(rpm)).as_secs_f64() * CALLS_PER_WORKSPACE;
        assert!((per_minute(300) - 270.0).abs() < 1e-6, "{}", per_minute(300));
        assert!((per_minute(60) - 54.0).abs() < 1e-6);
        assert_eq!(start_interval(None), Duration::ZERO);
        assert_eq!(start_interval(Some(0)), Duration::ZERO);
    }
}
