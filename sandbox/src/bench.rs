//! The benchmarks behind `./bench/run` (see bench/README.md). Each section
//! prints Markdown; numbers are reported, never asserted.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

mod cost;
pub use cost::cost;

use crate::admin_api::{Faults, OrgSeed};
use crate::stack::{LocalStack, StackOptions, repo_root};

fn bin_dir() -> PathBuf {
    let profile = std::env::var("CMEK_FUNCTION_PROFILE").unwrap_or_else(|_| "debug".into());
    crate::stack::target_dir().join(profile)
}

/// The one binary every function runs (`functions/cmek-lambda`).
const BINARY: &str = "cmek-lambda";

fn megabytes(path: &std::path::Path) -> Option<f64> {
    std::fs::metadata(path).ok().map(|m| m.len() as f64 / 1e6)
}

/// Release size of the binary every function deploys: this machine's
/// build, and the arm64 build `sam build` makes when `./bench/run` could
/// make it (`CMEK_BENCH_ARM64_DIR`, cargo lambda's `<dir>/<binary>/bootstrap`).
fn binary_sizes() {
    let arm64 = std::env::var_os("CMEK_BENCH_ARM64_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let host = std::env::consts::ARCH;
    println!("## Release binary size (MB = 10^6 bytes)\n");
    match &arm64 {
        Some(_) => {
            println!(
                "Unzipped, as Lambda runs it. The 6 MB target is for the artifact `sam deploy` uploads, the zip: the `sam build` section sizes it with SAM's own zip function.\n\n| binary | {host} | arm64 (as `sam build` makes it) |"
            )
        }
        None => println!(
            "No arm64 build (bench/run could not add the aarch64 target): {host} only.\n\n| binary | {host} |"
        ),
    }
    println!("|---|---:|{}", if arm64.is_some() { "---:|" } else { "" });
    let show = |mb: Option<f64>| mb.map_or_else(|| "missing".to_owned(), |mb| format!("{mb:.2} MB"));
    let label = format!("{BINARY} (all {} functions)", cmek::runtime::HANDLERS.len());
    let native = show(megabytes(&bin_dir().join(BINARY)));
    match &arm64 {
        Some(dir) => {
            let mb = megabytes(&dir.join(BINARY).join("bootstrap"));
            println!("| {label} | {native} | {} |", show(mb));
        }
        None => println!("| {label} | {native} |"),
    }
    println!();
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn workspace_ids(stack: &LocalStack) -> Vec<String> {
    stack.admin.state()["orgs"]["demo-org"]["workspaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["id"].as_str().map(str::to_owned))
        .collect()
}

/// The workflow functions, their Lambda host ids, and the cold-start work each
/// does, as `bench/python_init.py` arguments: the boto3 clients for the SDK
/// clients it builds, `--read-secret` when it reads the Admin API key.
const WORKFLOW: [(&str, &str, &[&str]); 6] = [
    (
        "BeginFunction",
        "begin",
        &["kms,dynamodb,secretsmanager", "--read-secret"],
    ),
    ("CreateKeyFunction", "create-key", &["kms,dynamodb"]),
    (
        "RegisterKeyFunction",
        "register-key",
        &["dynamodb,secretsmanager", "--read-secret"],
    ),
    (
        "ValidateKeyFunction",
        "validate-key",
        &["dynamodb,secretsmanager", "--read-secret"],
    ),
    (
        "AttachKeyFunction",
        "attach-key",
        &["kms,dynamodb,secretsmanager", "--read-secret"],
    ),
    ("FinishFunction", "finish", &["dynamodb,events"]),
];

/// Binary size; init and peak RSS of every workflow function, cold in every
/// run, side by side with the same cold-start work in Python/boto3; the
/// happy path's Admin API calls and wall time.
pub async fn functions(runs: usize) -> anyhow::Result<()> {
    let runs = runs.max(1);
    let mut options = StackOptions {
        label: "bench".into(),
        // Straight to moto, as the functions would call AWS: no proxy hop in the figures.
        aws_proxy: false,
        ..StackOptions::default()
    };
    options.sandbox.orgs[0].workspaces = runs;
    let stack = LocalStack::start(options).await?;
    let mut walls = Vec::new();
    let mut calls = Vec::new();
    for ws in workspace_ids(&stack) {
        // Every function starts cold in every run, so each init is measured `runs` times.
        for (id, _, _) in WORKFLOW {
            stack.host.kill_function(id);
        }
        let before = stack.admin.requests().len();
        let t = Instant::now();
        let r = stack
            .run(&json!({"workspaceId": ws}), Duration::from_secs(300))
            .await?;
        ensure!(r.status == "SUCCEEDED", "bench run failed: {r:?}");
        walls.push(t.elapsed().as_secs_f64());
        calls.push(stack.admin.requests().len() - before);
    }
    let stats = stack.host.stats_history();
    binary_sizes();

    println!(
        "## Init and memory vs Python/boto3 ({} on this machine)\n",
        std::env::consts::ARCH
    );
    println!(
        "Init is process start until the first poll of the Runtime API; each function against `bench/python_init.py` doing the same cold-start work with boto3 (its clients; reading the admin key from Secrets Manager where the function does), both against moto, {runs} cold starts each; medians, peak RSS the maximum.\n"
    );
    println!(
        "| function | Rust init | Python init, same work | faster | Rust peak RSS | Python peak RSS | Rust / Python memory |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (id, bin, python_args) in WORKFLOW {
        let mine: Vec<_> = stats.iter().filter(|s| s.function == id).collect();
        let inits: Vec<f64> = mine.iter().filter_map(|s| s.init_ms).collect();
        let rss = mine.iter().filter_map(|s| s.peak_rss_kib).max().unwrap_or(0);
        let (py_inits, py_rss) = python_baseline(&stack, runs, python_args).await?;
        let (init, py_init) = (median(inits.clone()), median(py_inits));
        let py_peak = py_rss.iter().copied().max().unwrap_or(0);
        println!(
            "| {bin} | {init:.1} ms (n={}) | {py_init:.0} ms | {:.1}× | {:.1} MB | {:.1} MB | {:.0} % |",
            inits.len(),
            py_init / init,
            rss as f64 / 1024.0,
            py_peak as f64 / 1024.0,
            100.0 * rss as f64 / py_peak.max(1) as f64
        );
    }

    println!("\n## Happy path ({runs} workspaces, one after another, every function cold)\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| Admin API calls per workspace | {} (min {}, max {}) |",
        mean(&calls.iter().map(|c| *c as f64).collect::<Vec<_>>()),
        calls.iter().min().unwrap_or(&0),
        calls.iter().max().unwrap_or(&0)
    );
    println!(
        "| wall time, median (min, max) | {:.2} s ({:.2}, {:.2}) |",
        median(walls.clone()),
        walls.iter().copied().fold(f64::INFINITY, f64::min),
        walls.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}

/// Cold starts of `bench/python_init.py`: (init ms, peak RSS KiB) each.
async fn python_baseline(
    stack: &LocalStack,
    runs: usize,
    args: &[&str],
) -> anyhow::Result<(Vec<f64>, Vec<u64>)> {
    let root = repo_root();
    let python = root.join(".local/venv-moto/bin/python");
    let mut inits = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs.max(3) {
        let t = Instant::now();
        let mut child = tokio::process::Command::new(&python)
            .arg(root.join("bench/python_init.py"))
            .args(args)
            .env_clear()
            .envs(stack.client_env())
            .env("CMEK_ADMIN_KEY_SECRET_ARN", &stack.secret_arn)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the Python baseline")?;
        let stdout = child.stdout.take().context("python stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = lines.next_line().await?.unwrap_or_default();
        ensure!(line == "ready", "python baseline said {line:?}");
        inits.push(t.elapsed().as_secs_f64() * 1000.0);
        if let Some(pid) = child.id() {
            rss.extend(crate::lambda_host::peak_rss_kib(Some(pid)));
        }
        child.kill().await?;
    }
    Ok((inits, rss))
}

/// Validation overshoot: with KMS propagation taking D seconds, how long after
/// D is the workspace attached, on the production retry schedule?
pub async fn overshoot(delays: &[u64]) -> anyhow::Result<()> {
    let runs = delays.iter().map(|&d| async move {
        let mut options = StackOptions {
            label: format!("bench-overshoot-{d}"),
            // Straight to moto, as the functions would call AWS: no proxy hop in the figures.
            aws_proxy: false,
            ..StackOptions::default()
        };
        options.sandbox.faults = Faults {
            propagation_delay_secs: d as f64,
            ..Faults::default()
        };
        let stack = LocalStack::start(options).await?;
        let ws = workspace_ids(&stack).into_iter().next().context("no workspace")?;
        let t = Instant::now();
        let r = stack
            .run(&json!({"workspaceId": ws}), Duration::from_secs(d + 900))
            .await?;
        let elapsed = t.elapsed().as_secs_f64();
        ensure!(r.status == "SUCCEEDED", "D={d}: {r:?}");
        let rec = cmek::store::WorkflowStore::load(&stack.store(), &ws.parse()?)
            .await?
            .context("no record")?;
        anyhow::Ok((d, elapsed, rec.validation_attempts))
    });
    let results = futures_join(runs).await;
    println!("## Validation overshoot (production retry schedule: template defaults)\n");
    println!(
        "| propagation delay D | time to attached | overshoot (minus D) | target 0.1·D + 15 s | validate calls |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for r in results {
        let (d, t, attempts) = r?;
        let over = t - d as f64;
        let target = 0.1 * d as f64 + 15.0;
        println!(
            "| {d} s | {t:.1} s | {over:.1} s | {target:.0} s {} | {attempts} |",
            if over <= target { "✓" } else { "✗" }
        );
    }
    Ok(())
}

/// What one `cmekctl onboard --all-unattached` run against a limited stand-in gave.
struct OnboardRun {
    seconds: f64,
    summary: Value,
    requests: usize,
    limited: usize,
}

/// `cmekctl onboard --all-unattached` (the real bulk path, as a separate
/// process) over `workspaces` workspaces, the stand-in enforcing `limit`
/// requests a minute as a token bucket holding `burst_secs` of it; `--rpm`
/// passed on only if `cli_rpm` is given.
async fn onboard_run(
    label: &str,
    workspaces: usize,
    limit: u32,
    burst_secs: f64,
    cli_rpm: Option<u32>,
    concurrency: usize,
) -> anyhow::Result<OnboardRun> {
    let mut options = StackOptions {
        label: label.into(),
        bus_rules: false,
        // Straight to moto, as the functions would call AWS: no proxy hop in the figures.
        aws_proxy: false,
        ..StackOptions::default()
    };
    options.sandbox.orgs[0].workspaces = workspaces;
    options.sandbox.faults = Faults {
        requests_per_minute: Some(limit),
        rate_limit_burst_secs: Some(burst_secs),
        ..Faults::default()
    };
    let stack = LocalStack::start(options).await?;
    let cmekctl = bin_dir().join("cmekctl");
    let mut args: Vec<String> = ["--json", "onboard", "--all-unattached", "--yes", "--concurrency"]
        .map(String::from)
        .to_vec();
    args.push(concurrency.to_string());
    if let Some(r) = cli_rpm {
        args.extend(["--rpm".to_owned(), r.to_string()]);
    }
    let t = Instant::now();
    let out = tokio::process::Command::new(&cmekctl)
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(stack.client_env())
        .output()
        .await
        .with_context(|| format!("running {}", cmekctl.display()))?;
    let seconds = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("cmekctl onboard printed no summary: {text}"))?;
    let requests = stack.admin.requests();
    Ok(OnboardRun {
        seconds,
        summary,
        requests: requests.len(),
        limited: requests.iter().filter(|r| r.status == 429).count(),
    })
}

/// Bulk onboarding told the limit: `cmekctl onboard --all-unattached --rpm R`
/// with the stand-in enforcing R requests a minute.
pub async fn bulk(workspaces: usize, rpm: u32, concurrency: usize, burst_secs: f64) -> anyhow::Result<()> {
    let run = onboard_run("bench-bulk", workspaces, rpm, burst_secs, Some(rpm), concurrency).await?;
    let lower = 5.0 * workspaces as f64 / f64::from(rpm) * 60.0;
    println!(
        "## Bulk onboarding, `--rpm {rpm}` ({workspaces} workspaces, stand-in limited to {rpm} requests/minute, a token bucket holding {burst_secs} s of it)\n"
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| wall time | {:.0} s |", run.seconds);
    println!("| lower bound 5·N/R | {lower:.0} s |");
    println!("| ratio (target ≤ 1.25) | {:.3} |", run.seconds / lower);
    println!("| attached | {} |", run.summary["attached"]);
    println!(
        "| failed workspaces | {} |",
        run.summary["failed"].as_array().map_or(0, Vec::len)
    );
    println!(
        "| Admin API requests | {} ({:.2} per workspace) |",
        run.requests,
        run.requests as f64 / workspaces as f64
    );
    println!("| answered 429 by the limit | {} |", run.limited);
    Ok(())
}

/// Adaptive onboarding: `cmekctl onboard --all-unattached` without `--rpm`,
/// the stand-in enforcing each R in `rpms`, unknown to the CLI. One row per R,
/// printed as each run ends.
pub async fn adaptive(
    workspaces: usize,
    rpms: &[u32],
    concurrency: usize,
    burst_secs: f64,
) -> anyhow::Result<()> {
    println!(
        "## Adaptive onboarding ({workspaces} workspaces, no `--rpm`: the stand-in's limit R is unknown to cmekctl; a token bucket holding {burst_secs} s of R; `--concurrency {concurrency}`)\n"
    );
    println!(
        "| R (requests/minute) | wall time | 5·N/R | ratio (target ≤ 1.2) | attached | failed | Admin API requests | answered 429 | share (target ≤ 2 %) | limit met (cuts) | last pace |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &rpm in rpms {
        let run = onboard_run(
            &format!("bench-adaptive-{rpm}"),
            workspaces,
            rpm,
            burst_secs,
            None,
            concurrency,
        )
        .await?;
        let lower = 5.0 * workspaces as f64 / f64::from(rpm) * 60.0;
        let ratio = run.seconds / lower;
        let share = run.limited as f64 / run.requests.max(1) as f64;
        let failed = run.summary["failed"].as_array().map_or(0, Vec::len);
        println!(
            "| {rpm} | {:.0} s | {lower:.0} s | {ratio:.3} {} | {} | {failed} {} | {} | {} | {:.2} % {} | {} | {:.0} |",
            run.seconds,
            if ratio <= 1.2 { "✓" } else { "✗" },
            run.summary["attached"],
            if failed == 0 { "✓" } else { "✗" },
            run.requests,
            run.limited,
            share * 100.0,
            if share <= 0.02 { "✓" } else { "✗" },
            run.summary["pacing"]["cuts"],
            run.summary["pacing"]["finalRpm"].as_f64().unwrap_or_default(),
        );
    }
    Ok(())
}

/// Discovery over a large organization: Admin API calls and wall time per poll.
pub async fn discovery(workspaces: usize) -> anyhow::Result<()> {
    let opted_in = (workspaces / 100).max(1);
    let mut options = StackOptions {
        label: "bench-discovery".into(),
        bus_rules: false,
        // Straight to moto, as the functions would call AWS: no proxy hop in the figures.
        aws_proxy: false,
        ..StackOptions::default()
    };
    options.sandbox.orgs[0].workspaces = workspaces - opted_in;
    options.parameters.insert("AutoProvision".into(), "true".into());
    options
        .parameters
        .insert("AutoProvisionNamePattern".into(), "new-*".into());
    let stack = LocalStack::start(options).await?;
    stack.admin.seed(&OrgSeed {
        name: "demo-org".into(),
        admin_key: stack.admin_key.clone(),
        workspaces: opted_in,
        name_prefix: Some("new".into()),
        ..OrgSeed::default()
    });
    let event = json!({"version": "0", "id": "bench", "detail-type": "Scheduled Event", "source": "aws.events",
                       "account": "123456789012", "time": "2026-11-28T00:00:00Z", "region": "us-east-2",
                       "resources": [], "detail": {}});
    println!("## Discovery ({workspaces} workspaces, {opted_in} opted in by name)\n");
    println!("| poll | Admin API calls | wall time | announced |");
    println!("|---|---:|---:|---:|");
    for poll in ["first (all new)", "second (nothing new)"] {
        stack.admin.clear_requests();
        let t = Instant::now();
        let (error, body) = stack.invoke("DiscoverWorkspacesFunction", &event).await?;
        let elapsed = t.elapsed().as_secs_f64();
        ensure!(error.is_none(), "discovery failed: {body}");
        println!(
            "| {poll} | {} | {elapsed:.2} s | {} |",
            stack.admin.requests().len(),
            body["discovered"].as_array().map_or(0, Vec::len)
        );
    }
    Ok(())
}

async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}
