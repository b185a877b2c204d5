//! What a workspace costs to provision, and what the deployed stack costs a
//! month, from a real run on the local stack priced at AWS's published
//! on-demand rates — never estimated by hand.
//!
//! Counted from the run: Step Functions state transitions (each state
//! entered, and each retry of a task, from the executions' histories),
//! Lambda invocations and GB-seconds (each invocation's measured duration,
//! rounded up to the millisecond as Lambda bills, plus each instance's
//! measured init, billed for custom runtimes, × the template's memory), and
//! every AWS request the functions made (the local host's proxy records
//! them): KMS, DynamoDB (read and write request units), EventBridge, SNS,
//! Secrets Manager.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::admin_api::Faults;
use crate::stack::{LocalStack, StackOptions, repo_root};

/// The rates, us-east-2, on-demand, USD, as AWS's pricing pages published
/// them when this was written. Prices change: check them before relying on
/// the totals (https://aws.amazon.com/<service>/pricing/).
pub mod rates {
    /// The date the rates below were written down.
    pub const AS_OF: &str = "2026-11-30";
    /// Step Functions Standard: $0.025 per 1,000 state transitions.
    pub const STATE_TRANSITION: f64 = 0.025 / 1000.0;
    /// Lambda on arm64 (the template's architecture): per GB-second.
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// Lambda: $0.20 per million requests.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// KMS: $0.03 per 10,000 requests (symmetric keys).
    pub const KMS_REQUEST: f64 = 0.03 / 10_000.0;
    /// KMS: $1 per customer managed key a month (prorated hourly).
    pub const KMS_KEY_MONTH: f64 = 1.0;
    /// DynamoDB on-demand: $0.625 per million write request units.
    pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand: $0.125 per million read request units.
    pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
    /// EventBridge: $1.00 per million custom events put.
    pub const EVENTBRIDGE_EVENT: f64 = 1.0 / 1e6;
    /// SNS: $0.50 per million publishes (deliveries to e-mail: $2 per 100,000).
    pub const SNS_PUBLISH: f64 = 0.50 / 1e6;
    /// Secrets Manager: $0.05 per 10,000 API calls.
    pub const SECRETS_REQUEST: f64 = 0.05 / 10_000.0;
    /// Secrets Manager: $0.40 per secret a month.
    pub const SECRET_MONTH: f64 = 0.40;
    /// CloudWatch: $0.10 per standard-resolution alarm metric a month.
    pub const ALARM_MONTH: f64 = 0.10;
    /// CloudWatch: $3.00 per dashboard a month (an account's first three are free).
    pub const DASHBOARD_MONTH: f64 = 3.0;
    /// CloudWatch: $0.30 per custom metric a month (the first 10,000).
    pub const METRIC_MONTH: f64 = 0.30;
    /// CloudWatch Logs: $0.50 per GB ingested.
    pub const LOG_GB: f64 = 0.50;
}

/// The target for the stack's own monthly cost, keys aside.
const FIXED_TARGET: f64 = 4.0;

/// The template's memory for every function, in GB.
fn memory_gb() -> anyhow::Result<f64> {
    let template = crate::template::Template::load(&repo_root().join("template.yaml"))?;
    let mb = template.doc()["Globals"]["Function"]["MemorySize"]
        .as_f64()
        .context("template.yaml: Globals.Function.MemorySize")?;
    Ok(mb / 1024.0)
}

/// What one run consumed.
#[derive(Debug, Default)]
struct Usage {
    transitions: usize,
    lambda_invocations: usize,
    /// Billed milliseconds: invocations rounded up, plus inits.
    billed_ms: f64,
    cold_starts: usize,
    kms: usize,
    rru: f64,
    wru: f64,
    events: usize,
    sns: usize,
    secrets: usize,
    log_bytes: usize,
}

impl Usage {
    fn dollars(&self, gb: f64) -> BTreeMap<&'static str, f64> {
        BTreeMap::from([
            (
                "Step Functions",
                self.transitions as f64 * rates::STATE_TRANSITION,
            ),
            (
                "Lambda",
                self.billed_ms / 1000.0 * gb * rates::LAMBDA_GB_SECOND
                    + self.lambda_invocations as f64 * rates::LAMBDA_REQUEST,
            ),
            ("KMS requests", self.kms as f64 * rates::KMS_REQUEST),
            (
                "DynamoDB",
                self.rru * rates::DYNAMODB_RRU + self.wru * rates::DYNAMODB_WRU,
            ),
            ("EventBridge", self.events as f64 * rates::EVENTBRIDGE_EVENT),
            ("SNS", self.sns as f64 * rates::SNS_PUBLISH),
            ("Secrets Manager", self.secrets as f64 * rates::SECRETS_REQUEST),
            ("CloudWatch Logs", self.log_bytes as f64 / 1e9 * rates::LOG_GB),
        ])
    }
}

/// One execution's state transitions: every state entered, plus every
/// retry of a task (a retry is billed as a transition).
fn transitions(history: &[aws_sdk_sfn::types::HistoryEvent]) -> (usize, usize) {
    let kind = |e: &aws_sdk_sfn::types::HistoryEvent| e.r#type().as_str().to_owned();
    let entered = history
        .iter()
        .filter(|e| kind(e).ends_with("StateEntered"))
        .count();
    let tasks = history.iter().filter(|e| kind(e) == "TaskStateEntered").count();
    let invoked = history
        .iter()
        .filter(|e| kind(e) == "LambdaFunctionScheduled")
        .count();
    (entered + invoked.saturating_sub(tasks), invoked)
}

/// Each invocation's duration (milliseconds) as the local Lambda host
/// measured it — from handing the event to the binary to its answer, what
/// Lambda bills — by function, in the order they were answered.
fn invocation_ms(stack: &LocalStack) -> BTreeMap<String, Vec<f64>> {
    stack.host.durations_ms()
}

/// Each instance's measured init, by (function, instance).
fn inits(stack: &LocalStack) -> BTreeMap<(String, u64), f64> {
    stack
        .host
        .stats_history()
        .into_iter()
        .filter_map(|s| Some(((s.function, s.instance), s.init_ms?)))
        .collect()
}

/// The distinct metric series the functions emitted (name and dimensions).
fn metric_series(logs: &str) -> usize {
    let mut series = std::collections::BTreeSet::new();
    for doc in logs
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
    {
        let spec = &doc["_aws"]["CloudWatchMetrics"][0];
        let dims: Vec<String> = spec["Dimensions"][0]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .filter_map(|d| d.as_str())
                    .map(|d| format!("{d}={}", doc[d].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        for m in spec["Metrics"].as_array().into_iter().flatten() {
            series.insert(format!("{}{:?}", m["Name"].as_str().unwrap_or(""), dims));
        }
    }
    series.len()
}

/// Everything a stack's functions did so far, from `since` on.
fn usage(stack: &LocalStack, since: &Snapshot) -> Usage {
    let mut u = Usage::default();
    let calls = stack.host.aws_calls();
    for c in &calls[since.calls.min(calls.len())..] {
        match (c.service.as_str(), c.action.as_str()) {
            ("kms", _) => u.kms += 1,
            ("dynamodb", "dynamodb:GetItem" | "dynamodb:Query" | "dynamodb:Scan") => u.rru += 1.0,
            ("dynamodb", "dynamodb:PutItem" | "dynamodb:UpdateItem" | "dynamodb:DeleteItem") => u.wru += 1.0,
            // The store's transactions put the record and an audit item:
            // two items, at twice a write's units each.
            ("dynamodb", "dynamodb:TransactWriteItems") => u.wru += 4.0,
            ("dynamodb", _) => u.rru += 1.0,
            ("events", _) => u.events += 1,
            ("sns", _) => u.sns += 1,
            ("secretsmanager", _) => u.secrets += 1,
            _ => {}
        }
    }
    let logs = stack.function_logs();
    // Each function's durations are in the order they were answered: what
    // is new is what lies past where that function's list stood.
    for (function, ms) in invocation_ms(stack) {
        let seen = since.invocations.get(&function).map_or(0, Vec::len);
        u.billed_ms += ms.iter().skip(seen).map(|m| m.ceil()).sum::<f64>();
    }
    u.log_bytes = logs.len().saturating_sub(since.log_bytes);
    for (instance, ms) in inits(stack) {
        if !since.inits.contains_key(&instance) {
            u.cold_starts += 1;
            u.billed_ms += ms.ceil();
        }
    }
    u
}

/// Where the counters stood (to count one phase of a run).
#[derive(Debug, Default)]
struct Snapshot {
    /// The proxy records calls in the order they were made.
    calls: usize,
    invocations: BTreeMap<String, Vec<f64>>,
    log_bytes: usize,
    inits: BTreeMap<(String, u64), f64>,
}

fn snapshot(stack: &LocalStack) -> Snapshot {
    let logs = stack.function_logs();
    Snapshot {
        calls: stack.host.aws_calls().len(),
        invocations: invocation_ms(stack),
        log_bytes: logs.len(),
        inits: inits(stack),
    }
}

fn money(d: f64) -> String {
    if d >= 0.01 {
        format!("${d:.2}")
    } else {
        format!("${d:.6}")
    }
}

/// Cost per workspace (happy path, and with `delay` s of KMS propagation),
/// then the stack's monthly fixed cost.
pub async fn cost(workspaces: usize, delay: u64) -> anyhow::Result<()> {
    let gb = memory_gb()?;
    println!(
        "## Cost per workspace (us-east-2 on-demand rates of {}, in `sandbox/src/bench/cost.rs`; {workspaces} workspaces per run, production retry schedule, {:.0} MB functions)\n",
        rates::AS_OF,
        gb * 1024.0
    );
    println!(
        "| run | state transitions | Lambda invocations | billed GB-s (cold starts) | KMS | DynamoDB RRU / WRU | EventBridge | SNS | Secrets Manager | total per workspace |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut monthly_inputs = None;
    let mut detailed_series = None;
    let scheduled: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("events/scheduled-event.json"),
    )?)?;
    for d in [0, delay] {
        let mut options = StackOptions {
            label: format!("bench-cost-{d}"),
            ..StackOptions::default()
        };
        // The happy path on the template's defaults; the propagation run
        // with DetailedMonitoring=true, to count what it adds.
        let detailed = d != 0;
        if detailed {
            options
                .parameters
                .insert("DetailedMonitoring".into(), "true".into());
        }
        options.sandbox.orgs[0].workspaces = workspaces;
        options.sandbox.faults = Faults {
            propagation_delay_secs: d as f64,
            ..Faults::default()
        };
        let stack = LocalStack::start(options).await?;
        let start = snapshot(&stack);
        let mut runs = Vec::new();
        for ws in super::workspace_ids(&stack) {
            runs.push(stack.start_execution(&json!({"workspaceId": ws}), None).await?);
        }
        let (mut transitions_total, mut invoked_total) = (0, 0);
        for arn in &runs {
            let r = stack.wait(arn, Duration::from_secs(d + 900)).await?;
            ensure!(r.status == "SUCCEEDED", "cost run failed: {r:?}");
            let history = cmek::aws::execution_history(&stack.sfn(), arn).await?;
            let (t, i) = transitions(&history);
            transitions_total += t;
            invoked_total += i;
        }
        let mut u = usage(&stack, &start);
        u.transitions = transitions_total;
        u.lambda_invocations = invoked_total;
        let n = runs.len() as f64;
        let total: f64 = u.dollars(gb).values().sum();
        println!(
            "| {} | {:.1} {} | {:.1} | {:.3} ({}) | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            if d == 0 {
                "happy path".to_owned()
            } else {
                format!("D = {d} s of propagation (DetailedMonitoring=true)")
            },
            u.transitions as f64 / n,
            if d == 0 {
                if u.transitions as f64 / n <= 15.0 {
                    "✓ (target ≤ 15)"
                } else {
                    "✗ (target ≤ 15)"
                }
            } else {
                ""
            },
            u.lambda_invocations as f64 / n,
            u.billed_ms / 1000.0 * gb / n,
            u.cold_starts,
            u.kms as f64 / n,
            u.rru / n,
            u.wru / n,
            u.events as f64 / n,
            u.sns as f64 / n,
            u.secrets as f64 / n,
            money(total / n),
        );
        if d == 0 {
            // The scheduled work, measured on this stack once its keys exist.
            let before = snapshot(&stack);
            let (err, _) = stack.invoke("DiscoverWorkspacesFunction", &scheduled).await?;
            ensure!(err.is_none(), "discovery failed: {err:?}");
            let discovery = usage(&stack, &before);
            let before = snapshot(&stack);
            let (err, _) = stack.invoke("KeyGuardianFunction", &scheduled).await?;
            ensure!(err.is_none(), "sweep failed: {err:?}");
            let sweep = usage(&stack, &before);
            let series = metric_series(&stack.function_logs());
            monthly_inputs = Some((discovery, sweep, series));
        }
        if detailed {
            // The scheduled work too, so that every series it emits is seen.
            for function in ["DiscoverWorkspacesFunction", "KeyGuardianFunction"] {
                let (err, _) = stack.invoke(function, &scheduled).await?;
                ensure!(err.is_none(), "{function} failed: {err:?}");
            }
            detailed_series = Some(metric_series(&stack.function_logs()));
        }
    }
    let Some((discovery, sweep, series)) = monthly_inputs else {
        return Ok(());
    };
    let template = crate::template::Template::load(&repo_root().join("template.yaml"))?;
    let alarms = template.resources_of_type("AWS::CloudWatch::Alarm").len();
    // A conditional dashboard exists only with DetailedMonitoring=true.
    let all_dashboards = template.resources_of_type("AWS::CloudWatch::Dashboard");
    let dashboards = all_dashboards
        .iter()
        .filter(|(_, r)| r.get("Condition").is_none())
        .count();
    let detailed_dashboards = all_dashboards.len();
    let stack_keys = template.resources_of_type("AWS::KMS::Key").len();
    // The template's default schedules: discovery every 15 minutes, the
    // sweep daily, the validation sweep weekly (here measured without the
    // Admin API validations, which cost nothing on AWS's bill).
    let month_hours = 730.0;
    let discovery_runs = month_hours * 4.0;
    let sweep_runs = 30.4 + 4.35;
    let line = |what: &str, how: String, dollars: f64| println!("| {what} | {how} | {} |", money(dollars));
    println!(
        "\n## Monthly fixed cost of the deployed stack (template defaults, rates of {})\n",
        rates::AS_OF
    );
    println!("| item | how many | per month |");
    println!("|---|---|---:|");
    line(
        "KMS key per workspace",
        "1 per workspace".into(),
        rates::KMS_KEY_MONTH,
    );
    line(
        "the stack's own KMS keys (topics)",
        format!("{stack_keys}"),
        stack_keys as f64 * rates::KMS_KEY_MONTH,
    );
    line(
        "admin key secret (Secrets Manager)",
        "1".into(),
        rates::SECRET_MONTH,
    );
    line(
        "CloudWatch alarms",
        format!("{alarms}"),
        alarms as f64 * rates::ALARM_MONTH,
    );
    line(
        "CloudWatch dashboard",
        format!("{dashboards} (DetailedMonitoring=false)"),
        dashboards as f64 * rates::DASHBOARD_MONTH,
    );
    line(
        "custom metrics (EMF series seen in this run, DetailedMonitoring=false)",
        format!("{series}"),
        series as f64 * rates::METRIC_MONTH,
    );
    // One invocation's measured usage, plus its request, × runs a month.
    let scheduled =
        |u: &Usage, runs: f64| (u.dollars(gb).values().sum::<f64>() + rates::LAMBDA_REQUEST) * runs;
    line(
        "discovery every 15 min (measured run × 2,920)",
        format!(
            "{:.1} ms, {} AWS requests a run",
            discovery.billed_ms,
            discovery.kms + discovery.rru as usize + discovery.wru as usize
        ),
        scheduled(&discovery, discovery_runs),
    );
    line(
        &format!("key guardian sweeps (daily + weekly, {workspaces} workspaces)"),
        format!("{:.1} ms, {} KMS requests a run", sweep.billed_ms, sweep.kms),
        scheduled(&sweep, sweep_runs),
    );
    let fixed = stack_keys as f64 * rates::KMS_KEY_MONTH
        + rates::SECRET_MONTH
        + alarms as f64 * rates::ALARM_MONTH
        + dashboards as f64 * rates::DASHBOARD_MONTH
        + series as f64 * rates::METRIC_MONTH
        + scheduled(&discovery, discovery_runs)
        + scheduled(&sweep, sweep_runs);
    println!(
        "| **total** | the stack, plus $1.00 per workspace's key | **{} + $1.00 × workspaces** {} |",
        money(fixed),
        if fixed <= FIXED_TARGET {
            "✓ (target ≤ $4)"
        } else {
            "✗ (target ≤ $4)"
        }
    );
    if let Some(detailed) = detailed_series {
        let added = (detailed as f64 - series as f64).max(0.0) * rates::METRIC_MONTH
            + (detailed_dashboards - dashboards) as f64 * rates::DASHBOARD_MONTH;
        println!(
            "\n### What DetailedMonitoring=true adds (measured on the propagation run, scheduled work included)\n"
        );
        println!("| DetailedMonitoring | custom metric series | dashboards | fixed cost per month |");
        println!("|---|---:|---:|---:|");
        println!("| false (default) | {series} | {dashboards} | {} |", money(fixed));
        println!(
            "| true | {detailed} | {detailed_dashboards} (free while the account has fewer than 3) | {} |",
            money(fixed + added)
        );
    }
    Ok(())
}
