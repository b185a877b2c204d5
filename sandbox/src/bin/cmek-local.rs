//! `cmek-local`: run cmek-provisioner without AWS or Anthropic.
//!
//!   cmek-local demo         provision a demo workspace end to end, live
//!   cmek-local up           bring the local stack up until Ctrl-C
//!   cmek-local admin-api    serve only the Admin API stand-in
//!   cmek-local render-asl   print the state machine as deployed (checks)
//!   cmek-local render-diagram  the state machine as a Mermaid flowchart (docs/)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use sandbox::admin_api::{Faults, OrgSeed, SandboxApi, SandboxConfig};
use sandbox::stack::{LocalStack, StackOptions};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "cmek-local",
    about = "cmek-provisioner's local stack: moto, the real functions, the Admin API stand-in"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision a demo workspace through the real state machine, showing each step.
    Demo {
        /// Seconds during which a new key fails validation, as while KMS propagates.
        #[arg(long, default_value_t = 4.0)]
        propagation_delay: f64,
        /// Use the deployed (minutes-long) retry schedule instead of the demo's short one.
        #[arg(long)]
        production_schedule: bool,
        /// claude-platform (an Admin API key) or claude-platform-on-aws
        /// (SigV4-signed by each function's role, no secret, the attach validates).
        #[arg(long, default_value = "claude-platform")]
        platform: cmek::platform::Platform,
        /// Create a new workspace with this name, encrypted with its key from
        /// its first byte, instead of encrypting the demo organization's workspace.
        #[arg(long, value_name = "NAME")]
        create_workspace: Option<String>,
    },
    /// Bring the local stack up and keep it running until Ctrl-C, SIGTERM or SIGHUP. SIGTERM or SIGHUP.
    Up {
        /// claude-platform or claude-platform-on-aws (see `demo`).
        #[arg(long, default_value = "claude-platform")]
        platform: cmek::platform::Platform,
        /// Also make what `sam deploy` makes (IAM roles, the topics' key, the
        /// result rule, a trail) and write .local/stack-resources.json for
        /// `cmekctl preflight --resources` (needs the SAM translator that
        /// ./scripts/test installs).
        #[arg(long)]
        preflight: bool,
    },
    /// Serve only the Admin API stand-in.
    AdminApi {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// moto endpoint for validate's KMS checks.
        #[arg(long)]
        kms_endpoint: Option<String>,
        /// JSON file: {"orgs": [...], "faults": {...}} (see sandbox/README).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Print the state machine definition with template defaults substituted.
    RenderAsl,
    /// Print the state machine as a Mermaid flowchart (docs/state-machine.md).
    RenderDiagram,
    /// Measure the functions and the workflow (see bench/README.md).
    Bench {
        /// Sections to run: functions (size, init, RSS, vs Python/boto3, happy
        /// path), overshoot, bulk (told the limit), adaptive (not told),
        /// discovery, cost (per workspace and per month).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "functions,overshoot,bulk,adaptive,discovery,cost"
        )]
        only: Vec<String>,
        /// Happy-path provisions (each with a cold Begin).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Propagation delays D for the overshoot section, in seconds.
        #[arg(long, value_delimiter = ',', default_value = "0,30,120,300")]
        delays: Vec<u64>,
        #[arg(long, default_value_t = 1000)]
        bulk_workspaces: usize,
        /// The stand-in's request-per-minute limit for the bulk section.
        #[arg(long, default_value_t = 300)]
        bulk_rpm: u32,
        #[arg(long, default_value_t = 60)]
        bulk_concurrency: usize,
        /// The limits the adaptive section runs against, one run each.
        #[arg(long, value_delimiter = ',', default_value = "60,300,1200")]
        adaptive_rpm: Vec<u32>,
        /// The stand-in's token bucket for bulk and adaptive: seconds of the
        /// rate it holds (60: a minute's burst; 1: the limit enforced per second).
        #[arg(long, default_value_t = 60.0)]
        limit_burst_secs: f64,
        #[arg(long, default_value_t = 10_000)]
        discovery_workspaces: usize,
        /// Workspaces provisioned per run of the cost section.
        #[arg(long, default_value_t = 5)]
        cost_workspaces: usize,
        /// The propagation delay of the cost section's second run, seconds.
        #[arg(long, default_value_t = 120)]
        cost_delay: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    match Cli::parse().command {
        Command::Demo {
            propagation_delay,
            production_schedule,
            platform,
            create_workspace,
        } => {
            stoppable(demo(
                propagation_delay,
                production_schedule,
                platform,
                create_workspace,
            ))
            .await
        }
        Command::Up { platform, preflight } => up(platform, preflight).await,
        Command::AdminApi {
            listen,
            kms_endpoint,
            config,
        } => admin_api(listen, kms_endpoint, config).await,
        Command::RenderAsl => render_asl(),
        Command::RenderDiagram => {
            print!(
                "{}",
                sandbox::diagram::mermaid(&sandbox::diagram::deployed_definition()?)?
            );
            Ok(())
        }
        Command::Bench {
            only,
            runs,
            delays,
            bulk_workspaces,
            bulk_rpm,
            bulk_concurrency,
            adaptive_rpm,
            limit_burst_secs,
            discovery_workspaces,
            cost_workspaces,
            cost_delay,
        } => {
            use sandbox::bench;
            stoppable(async move {
                for section in &only {
                    match section.as_str() {
                        "functions" => bench::functions(runs).await?,
                        "overshoot" => bench::overshoot(&delays).await?,
                        "bulk" => {
                            bench::bulk(bulk_workspaces, bulk_rpm, bulk_concurrency, limit_burst_secs).await?
                        }
                        "adaptive" => {
                            bench::adaptive(
                                bulk_workspaces,
                                &adaptive_rpm,
                                bulk_concurrency,
                                limit_burst_secs,
                            )
                            .await?
                        }
                        "discovery" => bench::discovery(discovery_workspaces).await?,
                        "cost" => bench::cost(cost_workspaces, cost_delay).await?,
                        other => anyhow::bail!("unknown bench section {other:?}"),
                    }
                    println!();
                }
                Ok(())
            })
            .await
        }
    }
}

fn render_asl() -> anyhow::Result<()> {
    println!("{}", sandbox::diagram::deployed_definition_text()?);
    Ok(())
}

async fn admin_api(
    listen: std::net::SocketAddr,
    kms_endpoint: Option<String>,
    config: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let mut cfg: SandboxConfig = match config {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => SandboxConfig {
            orgs: vec![OrgSeed {
                name: "demo-org".into(),
                admin_key: sandbox::stack::DEMO_ADMIN_KEY.into(),
                workspaces: 3,
                ..OrgSeed::default()
            }],
            ..SandboxConfig::default()
        },
    };
    if kms_endpoint.is_some() {
        cfg.kms_endpoint = kms_endpoint;
    }
    let api = SandboxApi::start(cfg, listen).await?;
    println!(
        "Admin API stand-in on {} (inspect: {}/_sandbox/state, {}/_sandbox/requests)",
        api.url, api.url, api.url
    );
    until_stopped().await?;
    Ok(())
}

/// Wait for Ctrl-C, SIGTERM (a process manager, `kill`) or SIGHUP (a closed
/// terminal). Returning lets the stack drop, which ends every process it
/// started; left to the signals' default action, the process would die
/// without that and leave moto and the functions running.
async fn until_stopped() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r?;
            "SIGINT"
        }
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    })
}

/// Run `work` until it ends or a signal stops it; stopped, its future is
/// dropped, and with it any stack it started (ending every process).
async fn stoppable(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        r = work => r,
        s = until_stopped() => Err(anyhow::anyhow!("stopped by {}", s?)),
    }
}

async fn up(platform: cmek::platform::Platform, preflight: bool) -> anyhow::Result<()> {
    let stack = LocalStack::start(StackOptions {
        label: "up".into(),
        platform,
        preflight,
        ..StackOptions::default()
    })
    .await?;
    if let Some(file) = &stack.resources_file {
        let to = sandbox::stack::repo_root().join(".local/stack-resources.json");
        std::fs::copy(file, &to)?;
        println!(
            "stack description for cmekctl preflight --resources: {}",
            to.display()
        );
    }
    let env_file = sandbox::stack::repo_root().join(".local/stack.env");
    let exports: String = stack
        .client_env()
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'\n"))
        .collect();
    std::fs::write(&env_file, exports)?;
    println!(
        "local stack is up (Ctrl-C to stop); for cmekctl and the AWS CLI: source {}",
        env_file.display()
    );
    println!("  AWS endpoint (moto):   {}", stack.moto_url);
    println!("  Lambda endpoint:       {}", stack.host.url);
    println!("  Admin API stand-in:    {}", stack.admin.url);
    println!("  state machine:         {}", stack.state_machine_arn);
    println!("  workflow table:        {}", stack.table_name);
    println!("  logs:                  {}", stack.log_dir.display());
    println!("workspaces:");
    for w in stack.admin.state()["orgs"]["demo-org"]["workspaces"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  {}  {}",
            w["id"].as_str().unwrap_or_default(),
            w["name"].as_str().unwrap_or_default()
        );
    }
    println!(
        "try: AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws --endpoint-url {} --region us-east-2 stepfunctions start-execution --state-machine-arn {} --name run1 --input '{{\"workspaceId\": \"<id above>\"}}'",
        stack.moto_url, stack.state_machine_arn
    );
    let signal = until_stopped().await?;
    println!("stopping ({signal}): ending every process the stack started");
    drop(stack);
    Ok(())
}

const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

async fn demo(
    propagation_delay: f64,
    production_schedule: bool,
    platform: cmek::platform::Platform,
    create_workspace: Option<String>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("{BOLD}cmek-provisioner — local demo ({platform}){RESET}");
    println!(
        "{DIM}Starting moto (KMS, DynamoDB, Step Functions, Secrets Manager, EventBridge), the Admin API stand-in and the function binaries…{RESET}"
    );
    let mut options = StackOptions {
        label: "demo".into(),
        platform,
        ..StackOptions::default()
    };
    options.sandbox.faults = Faults {
        propagation_delay_secs: propagation_delay,
        ..Faults::default()
    };
    if !production_schedule {
        let mut p = HashMap::new();
        for (k, v) in [
            ("ValidationIntervalSeconds", "2"),
            ("ValidationBackoffRate", "1.5"),
            ("ValidationMaxDelaySeconds", "5"),
            ("ValidationMaxAttempts", "10"),
            ("TransientIntervalSeconds", "1"),
        ] {
            p.insert(k.to_owned(), v.to_owned());
        }
        options.parameters = p;
    }
    let stack = LocalStack::start(options).await?;
    let workspace = stack.admin.state()["orgs"]["demo-org"]["workspaces"][0].clone();
    let mut ws = workspace["id"].as_str().unwrap_or_default().to_owned();
    println!(
        "stack up in {:.1}s. State machine: {}",
        started.elapsed().as_secs_f64(),
        stack.state_machine_arn
    );
    let trigger = json!({"source": "manual", "user": "demo"});
    let input = match &create_workspace {
        Some(name) => {
            println!(
                "\n{BOLD}New workspace{RESET} {name:?}, created with its key: encrypted from its first byte"
            );
            json!({"createWorkspace": {"name": name}, "displayName": format!("{name} key"), "trigger": trigger})
        }
        None => {
            println!(
                "\n{BOLD}Workspace{RESET} {ws} ({}), compartment {}",
                workspace["name"].as_str().unwrap_or_default(),
                workspace["compartment_id"].as_str().unwrap_or_default()
            );
            json!({"workspaceId": ws, "displayName": "demo workspace key", "trigger": trigger})
        }
    };
    println!(
        "{DIM}The stand-in makes a new key fail validation for {propagation_delay}s, as KMS propagation does.{RESET}\n"
    );

    let t0 = Instant::now();
    let arn = stack.start_execution(&input, Some("demo")).await?;
    let sfn = stack.sfn();
    let mut seen = 0usize;
    let mut state_started = Instant::now();
    // The production schedule waits out at most about 16 minutes of
    // propagation (README, "ServiceTimeout"): an execution still running
    // after an hour is a bug to report, not to wait for.
    let deadline = t0 + Duration::from_secs(3600);
    loop {
        if Instant::now() > deadline {
            anyhow::bail!("the demo execution {arn} was still running after an hour; see its history");
        }
        let history = cmek::aws::execution_history(&sfn, &arn).await?;
        for e in history.iter().skip(seen) {
            let at = t0.elapsed().as_secs_f64();
            if let Some(d) = e.state_entered_event_details() {
                state_started = Instant::now();
                let name = d.name();
                if !matches!(
                    name,
                    "Prepare"
                        | "NewWorkspace"
                        | "HandOff"
                        | "AlreadyAttached"
                        | "ValidationPath"
                        | "Succeeded?"
                        | "Provisioned"
                        | "ProvisioningFailed"
                ) {
                    println!(
                        "{DIM}[{at:6.1}s]{RESET} ▶ {BOLD}{name}{RESET} {DIM}{}{RESET}",
                        describe(name)
                    );
                }
            } else if let Some(d) = e.lambda_function_failed_event_details() {
                let error = d.error().unwrap_or_default();
                let cause: Value = d
                    .cause()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .unwrap_or_default();
                let msg = cause["errorMessage"].as_str().unwrap_or_default();
                let propagating = matches!(error, "ValidationFailed" | "AttachNotYetAccepted");
                let color = if propagating { YELLOW } else { RED };
                println!(
                    "{DIM}[{at:6.1}s]{RESET}   {color}✗ {error}{RESET}: {}",
                    truncate(msg, 140)
                );
                if propagating {
                    println!(
                        "{DIM}           retrying on the validation schedule (KMS may still be propagating)…{RESET}"
                    );
                }
            } else if e.lambda_function_succeeded_event_details().is_some() {
                println!(
                    "{DIM}[{at:6.1}s]{RESET}   {GREEN}✓ done{RESET} {DIM}({:.1}s){RESET}",
                    state_started.elapsed().as_secs_f64()
                );
            }
        }
        seen = history.len();
        let d = sfn.describe_execution().execution_arn(&arn).send().await?;
        if d.status().as_str() != "RUNNING" {
            let total = t0.elapsed().as_secs_f64();
            println!();
            if create_workspace.is_some() {
                // The workspace exists only now: the run's output names it.
                let out: Value = d
                    .output()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_default();
                match out["workspaceId"].as_str() {
                    Some(id) => ws = id.to_owned(),
                    None => {
                        println!(
                            "{RED}{BOLD}✗ No workspace was created ({}){RESET} after {total:.1}s",
                            d.status().as_str()
                        );
                        if let Some(cause) = d.cause() {
                            println!("  {}", truncate(cause, 400));
                        }
                        println!("  {DIM}logs: {}{RESET}", stack.log_dir.display());
                        anyhow::bail!("creating the workspace failed");
                    }
                }
            }
            return report(&stack, &ws, d.status().as_str(), d.output(), total).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn describe(state: &str) -> &'static str {
    match state {
        "Begin" => "validate input, read the workspace and the organization UUID, claim the workspace",
        "CreateKey" => {
            "create the KMS key with today's documented policy (bound to the organization), alias, rotation"
        }
        "RegisterKey" => "POST /v1/organizations/external_keys (exactly once)",
        "ValidateKey" => "POST …/validate: Anthropic's round trip and its four must-be-denied checks",
        "Diagnose" => "validation (or attach) refused: find the documented cause",
        "AttachKey" => "re-check, then attach (Anthropic validates again; irreversible)",
        "ValidationPath" => "",
        "AttachKeyValidating" => {
            "Claude Platform on AWS: check the policy, then attach — the service's own validation (SigV4-signed; irreversible)"
        }
        "CreateWorkspace" => {
            "new workspace: key (policy for the organization's new workspaces), registration, validation, the workspace created with external_key_id, read back, policy narrowed to it"
        }
        "Finish" => "record the outcome and audit trail, publish the result event",
        "Provisioned" => "",
        _ => "",
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

async fn report(
    stack: &LocalStack,
    ws: &str,
    status: &str,
    output: Option<&str>,
    total: f64,
) -> anyhow::Result<()> {
    use cmek::store::WorkflowStore;
    let id: cmek::ids::WorkspaceId = ws.parse()?;
    let store = stack.store();
    let rec = store.load(&id).await?;
    let out: Value = output
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    if status == "SUCCEEDED" {
        println!("{GREEN}{BOLD}✓ Workspace {ws} is encrypted with its own key{RESET} ({total:.1}s)\n");
    } else {
        println!("{RED}{BOLD}✗ Provisioning failed ({status}){RESET} after {total:.1}s\n");
    }
    if let Some(r) = &rec {
        println!(
            "  organization     {}",
            r.org_uuid.map(|o| o.to_string()).unwrap_or_else(|| "-".into())
        );
        println!("  key ARN          {}", r.key_arn.as_deref().unwrap_or("-"));
        println!("  alias            {}", r.alias.as_deref().unwrap_or("-"));
        println!(
            "  external key id  {}",
            r.external_key_id.as_deref().unwrap_or("-")
        );
        println!("  status           {}", r.status);
        println!("  validation tries {}", r.validation_attempts);
        let attached = stack.admin_client().get_workspace(&id).await?.external_key_id;
        println!(
            "  attached         {}",
            attached.is_some() && attached.as_deref() == r.external_key_id.as_deref()
        );
        if let Some(arn) = &r.key_arn {
            let p = stack
                .kms()
                .get_key_policy()
                .key_id(arn.as_str())
                .policy_name("default")
                .send()
                .await?;
            let pretty: Value = serde_json::from_str(p.policy().unwrap_or("{}")).unwrap_or_default();
            println!(
                "\n{BOLD}Key policy{RESET}\n{}",
                serde_json::to_string_pretty(&pretty)?
            );
        }
        if let Some(d) = &r.diagnosis {
            println!(
                "\n{RED}{BOLD}Diagnosis: {}{RESET}\n  {}\n  fix: {}",
                d["cause"].as_str().unwrap_or("?"),
                d["summary"].as_str().unwrap_or(""),
                d["fix"].as_str().unwrap_or("")
            );
        } else if let Some(e) = &r.last_error {
            println!("\n{RED}last error:{RESET} {e}");
        }
    }
    if status != "SUCCEEDED" && out.is_null() {
        println!(
            "  {DIM}error details: see the audit trail below and {}{RESET}",
            stack.log_dir.display()
        );
    }
    println!("\n{BOLD}Audit trail (DynamoDB){RESET}");
    for e in store.events(&id).await? {
        let detail = if e.detail.is_null() || e.detail == json!({}) {
            String::new()
        } else {
            truncate(&e.detail.to_string(), 110)
        };
        println!(
            "  {}  {:<12} {:<22} {DIM}{detail}{RESET}",
            e.at, e.step, e.outcome
        );
    }
    println!(
        "\n{DIM}Admin API calls for this workspace: {}. Access-denied events Anthropic's validations left in (the stand-in's) CloudTrail: {}, as each validation checks four requests that must be denied. Logs: {}{RESET}",
        stack.admin.requests().len(),
        stack.admin.cloudtrail().len(),
        stack.log_dir.display()
    );
    if status == "SUCCEEDED" {
        Ok(())
    } else {
        anyhow::bail!("provisioning failed")
    }
}
