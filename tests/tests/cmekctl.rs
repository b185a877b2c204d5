//! The operator CLI against the local stack, as a separate process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek_e2e::*;
use sandbox::stack::LocalStack;
use serde_json::{Value, json};

fn cmekctl(stack: &LocalStack, args: &[&str]) -> (i32, String) {
    let out = run_cmekctl(stack, args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_status_list_doctor_and_policy() {
    let stack = stack("cmekctl", |o| o.bus_rules = false).await;
    let all = workspaces(&stack);
    let ws = all[0]["id"].as_str().unwrap().to_owned();
    let compartment = all[0]["compartment_id"].as_str().unwrap().to_owned();

    let (code, out) = cmekctl(
        &stack,
        &["provision", &ws, "--display-name", "from cmekctl", "--yes"],
    );
    assert_eq!(code, 0, "{out}");
    for state in [
        "Begin",
        "CreateKey",
        "RegisterKey",
        "ValidateKey",
        "AttachKey",
        "Finish",
    ] {
        assert!(out.contains(state), "live progress names {state}: {out}");
    }
    let (code, out) = cmekctl(&stack, &["--json", "status", &ws]);
    assert_eq!(code, 0, "{out}");
    let status: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(status["record"]["status"], "ATTACHED");
    let key_arn = status["record"]["key_arn"].as_str().unwrap().to_owned();

    // Guardian findings show in status.
    let event = json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.kms", "id": "x",
        "detail": {"eventName": "DisableKeyRotation", "eventSource": "kms.amazonaws.com", "userIdentity": {"arn": "arn:aws:sts::123456789012:assumed-role/Admin/bob"},
                   "resources": [{"ARN": key_arn}], "requestParameters": {"keyId": key_arn}}});
    let (err, _) = invoke(&stack, "KeyGuardianFunction", &event).await;
    assert_eq!(err, None);
    let (_, out) = cmekctl(&stack, &["status", &ws]);
    assert!(
        out.contains("key guardian:") && out.contains("rotation_disabled"),
        "{out}"
    );

    let (code, out) = cmekctl(&stack, &["list", "--status", "attached"]);
    assert_eq!(code, 0);
    assert!(out.contains(&ws) && out.contains("1 workspace(s)"), "{out}");
    let (_, out) = cmekctl(&stack, &["--json", "list", "--status", "FAILED"]);
    assert_eq!(out.trim(), "[]");

    let (code, out) = cmekctl(
        &stack,
        &["doctor", "--key-arn", &key_arn, "--workspace", &ws, "--validate"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("exactly as documented"), "{out}");
    // Another workspace on the same key: its compartment is missing from the policy.
    let other = all[1]["id"].as_str().unwrap();
    let (code, out) = cmekctl(&stack, &["doctor", "--key-arn", &key_arn, "--workspace", other]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ENCRYPTION_CONTEXT_MISMATCH") && out.contains("ConditionMissesCompartment"),
        "{out}"
    );

    // The policy printed is exactly the one Anthropic documents today
    // (cmek-facts.md, "Step 1"): written out here, not built by the code under test.
    let org = "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13";
    let (code, out) = cmekctl(
        &stack,
        &[
            "policy",
            "--account",
            "123456789012",
            "--org",
            org,
            "--compartment",
            &compartment,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    let role = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
    let golden = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountRootAdmin", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": role},
             "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
             "Condition": {
                 "StringEquals": {"kms:EncryptionContext:anthropic:org_uuid": [org]},
                 "StringEqualsIfExists": {"kms:EncryptionContext:anthropic:compartment_uuid": [compartment.as_str(), "00000000-0000-0000-0000-000000000000"]}
             }},
            {"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": role},
             "Action": "kms:DescribeKey", "Resource": "*"}
        ]
    });
    assert_eq!(printed, golden);
    // Organization binding only: the optional compartment condition is
    // omitted, never the organization condition.
    let (code, out) = cmekctl(
        &stack,
        &["policy", "--account", "123456789012", "--org", org, "--org-only"],
    );
    assert_eq!(code, 0, "{out}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        printed["Statement"][1]["Condition"],
        serde_json::json!({"StringEquals": {"kms:EncryptionContext:anthropic:org_uuid": [org]}})
    );
    // The Console's org_-prefixed form is refused, by name.
    let (code, out) = cmekctl(
        &stack,
        &[
            "policy",
            "--account",
            "123456789012",
            "--org",
            &format!("org_{org}"),
            "--compartment",
            &compartment,
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("bare UUID"), "{out}");

    // Bad input is named and starts nothing.
    let (code, out) = cmekctl(&stack, &["provision", "not-a-workspace"]);
    assert_eq!(code, 2);
    assert!(out.contains("wrkspc_"), "{out}");
    let (code, out) = cmekctl(
        &stack,
        &[
            "policy",
            "--account",
            "12",
            "--org",
            org,
            "--compartment",
            &compartment,
        ],
    );
    assert_eq!(code, 2, "{out}");
}

/// The plan says what an attach locks, and the organization's Default
/// Workspace takes a key only on an explicit opt-in that says what it adds
/// (organization webhooks refused): without it nothing is created.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_workspace_takes_a_key_only_on_an_explicit_opt_in() {
    let stack = stack("cmekctl-default", |o| {
        o.bus_rules = false;
        o.sandbox.orgs[0].default_workspace = true;
    })
    .await;
    let default = workspaces(&stack)
        .into_iter()
        .find(|w| w["is_default"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The batch plan: what attaching locks, and no Default Workspace.
    let (code, out) = cmekctl(&stack, &["onboard", "--all-unattached"]);
    assert_eq!(code, 3, "the plan only: {out}");
    assert!(out.contains(cmek::lifecycle::ATTACH_LOCKS), "{out}");
    assert!(out.contains("3 workspace(s) would be provisioned"), "{out}");
    assert!(!out.contains(&format!("{default}\n")), "{out}");

    // Without the opt-in: refused by name, nothing created or recorded.
    let keys_before = all_keys(&stack).await.len();
    let (code, out) = cmekctl(&stack, &["provision", &default, "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(cmek::lifecycle::ATTACH_LOCKS),
        "said before starting: {out}"
    );
    assert!(
        out.contains("Default Workspace") && out.contains("organization webhooks are refused"),
        "{out}"
    );
    assert_eq!(all_keys(&stack).await.len(), keys_before, "no key created");
    let ran = executions(&stack).await;
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0].2, "FAILED", "{ran:?}");
    let ws: cmek::ids::WorkspaceId = default.parse().unwrap();
    assert!(
        stack.store().load(&ws).await.unwrap().is_none(),
        "nothing recorded"
    );

    // With it: the plan says both, and the Default Workspace is attached.
    let (code, out) = cmekctl(&stack, &["provision", &default, "--default-workspace", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(cmek::lifecycle::DEFAULT_WORKSPACE_LOCKS), "{out}");
    assert_eq!(record(&stack, &ws).await.status, cmek::store::Status::Attached);
}

#[tokio::test(flavor = "multi_thread")]
async fn onboard_paces_bounded_batches_and_one_failure_stops_nothing() {
    let stack = stack("onboard", |o| {
        o.bus_rules = false;
        o.sandbox.orgs[0].workspaces = 8;
    })
    .await;
    let all = workspaces(&stack);
    let (already, _) = attach_directly(&stack, &all[0]).await;

    // Without --yes (and no terminal to ask on): the plan only. Every
    // unattached workspace, nothing started, and an exit code that says so.
    let (code, out) = cmekctl(&stack, &["onboard", "--all-unattached"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("7 workspace(s) would be provisioned") && out.contains("--yes"),
        "{out}"
    );
    assert!(!out.contains(already.as_str()), "{out}");
    assert!(
        executions(&stack).await.is_empty(),
        "a dry run started an execution"
    );

    // A batch: 6 fresh workspaces, one attached already, one that does not
    // exist. The batch is read back from the Admin API first (100 ids a
    // call): the missing one starts no execution.
    let missing = "wrkspc_01NoSuchWorkspaceInThisOrg0";
    let mut file = format!("# batch 1\n{already}\n{missing}\n");
    for w in &all[1..7] {
        file.push_str(&format!("{}\n", w["id"].as_str().unwrap()));
    }
    let path = stack.log_dir.join("onboard.txt");
    std::fs::write(&path, &file).unwrap();
    let path = path.display().to_string();
    let args = [
        "--json",
        "onboard",
        "--workspaces-file",
        &path,
        "--concurrency",
        "3",
        "--rpm",
        "600",
        "--yes",
    ];
    let (code, out) = cmekctl(&stack, &args);
    assert_eq!(code, 1, "one workspace failed: {out}");
    let summary: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(summary["total"], 8, "{summary}");
    assert_eq!(summary["attached"], 6, "{summary}");
    assert_eq!(summary["alreadyAttached"], 1, "{summary}");
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{summary}");
    assert_eq!(failed[0]["workspace"], missing);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("WorkspaceNotFound"),
        "{summary}"
    );
    let reads: Vec<_> = stack
        .admin
        .requests()
        .into_iter()
        // The batch's read (each Begin reads its own workspace by id too,
        // without the Default Workspace, one at a time).
        .filter(|r| {
            let q = r.query.as_deref().unwrap_or_default();
            q.contains("id%5B%5D=") && q.contains("include_default=true")
        })
        .collect();
    assert_eq!(
        reads.len(),
        1,
        "one id-filtered read for the whole batch: {reads:?}"
    );
    assert_eq!(
        reads[0]
            .query
            .as_deref()
            .unwrap_or_default()
            .matches("id%5B%5D=")
            .count(),
        8,
        "{reads:?}"
    );
    // 6 starts paced 0.56 s apart (90 % of 600 requests/minute at 5 per workspace).
    assert!(summary["seconds"].as_f64().unwrap() >= 2.5, "{summary}");
    for w in &all[1..7] {
        let rec = record(&stack, &workspace_id(w)).await;
        assert_eq!(rec.status, cmek::store::Status::Attached);
    }
    let started = executions(&stack).await.len();
    assert_eq!(
        started, 6,
        "nothing started for the workspace already attached, nor for the missing one"
    );
    // Never more than --concurrency in flight.
    let peak = peak_in_flight(&stack).await;
    assert!((1..=3).contains(&peak), "at most 3 in flight: {peak}");

    // Re-running the batch starts only what is not attached.
    let (code, out) = cmekctl(&stack, &args);
    assert_eq!(code, 1, "{out}");
    let summary: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(summary["alreadyAttached"], 7, "{summary}");
    assert_eq!(summary["attached"], 0, "{summary}");
    let started_again = executions(&stack).await.len();
    assert_eq!(started_again, 6, "nothing new started: {summary}");
}

/// `onboard` without `--rpm` finds a limit it is not told, on both readings
/// of Anthropic's rate-limit documentation: a token bucket banking a minute
/// of requests, and the limit enforced per second. Every workspace attached,
/// none failed, the limit heard (from the executions' own histories) and
/// the pace cut, never more than --concurrency in flight.
#[tokio::test(flavor = "multi_thread")]
async fn onboard_finds_an_unknown_rate_limit() {
    // Per second, a limit below about 3 requests a second is met by one
    // provisioning's own steps whatever the pace (README, Onboarding): the
    // per-second side is played at 5 a second.
    for (label, rpm, burst_secs, n) in [("minute", 40u32, 60.0, 10usize), ("second", 300, 1.0, 20)] {
        let stack = stack(&format!("onboard-adaptive-{label}"), |o| {
            o.bus_rules = false;
            o.sandbox.orgs[0].workspaces = n;
            o.sandbox.faults.requests_per_minute = Some(rpm);
            o.sandbox.faults.rate_limit_burst_secs = Some(burst_secs);
        })
        .await;
        let (code, out) = cmekctl(
            &stack,
            &["onboard", "--all-unattached", "--concurrency", "4", "--yes"],
        );
        assert_eq!(code, 0, "{label}: {out}");
        // Not a terminal: plain progress lines (on stderr), no redrawn bar.
        assert!(out.contains("progress ["), "{label}: {out}");
        assert!(!out.contains("\x1b[2K"), "{label}: {out}");
        assert!(out.contains(&format!("{n} attached")), "{label}: {out}");
        // The 429s the stand-in answered the executions' steps. cmekctl's own
        // read of the batch (the id-filtered list with the Default Workspace,
        // `workspaces_by_id`) is not theirs; Begin's read of its workspace is
        // the same path without it (`include_default=false`), and is.
        let answered_429 = stack
            .admin
            .requests()
            .iter()
            .filter(|r| {
                r.status == 429
                    && !(r.path == "/v1/organizations/workspaces"
                        && r.query
                            .as_deref()
                            .is_some_and(|q| q.contains("include_default=true")))
            })
            .count() as u64;
        assert!(answered_429 >= 2, "{label}: the limit was hardly reached: {out}");
        let summary = out
            .lines()
            .find(|l| l.contains("workspaces in"))
            .unwrap_or_else(|| panic!("{label}: no summary: {out}"));
        eprintln!("{label}: {summary} (the stand-in answered {answered_429} × 429)");
        assert!(
            summary.contains(&format!("{n} attached")) && summary.contains(" 0 failed"),
            "{label}: {summary}"
        );
        let cuts: u32 = summary
            .split("the limit was met ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{label}: {summary}"));
        assert!(
            cuts >= 1,
            "{label}: 429s were answered but never heard: {summary}"
        );
        // Every one of them heard, not just the first: the summary's count of
        // 429s met equals the stand-in's count of 429s answered.
        let heard: u64 = summary
            .rsplit_once(" × 429")
            .and_then(|(head, _)| head.rsplit('(').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{label}: {summary}"));
        assert_eq!(
            heard, answered_429,
            "{label}: the stand-in answered {answered_429} × 429 to the executions, cmekctl heard {heard}: {summary}"
        );
        for w in workspaces(&stack) {
            let rec = record(&stack, &workspace_id(&w)).await;
            assert_eq!(rec.status, cmek::store::Status::Attached, "{label}");
        }
        assert!(
            peak_in_flight(&stack).await <= 4,
            "{label}: more than --concurrency in flight"
        );
    }
}

/// The most executions in flight at once, by Step Functions' own start and
/// stop times (not by what cmekctl believes).
async fn peak_in_flight(stack: &LocalStack) -> i32 {
    let listed = stack
        .sfn()
        .list_executions()
        .state_machine_arn(&stack.state_machine_arn)
        .send()
        .await
        .unwrap();
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for e in listed.executions() {
        edges.push((e.start_date().as_secs_f64(), 1));
        edges.push((e.stop_date().expect("every execution ended").as_secs_f64(), -1));
    }
    // At equal times a stop comes first: the next start may reuse the slot.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0, 0);
    for (_, d) in &edges {
        now += d;
        peak = peak.max(now);
    }
    peak
}

fn output_of(cmd: &mut std::process::Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// `provision` prints its plan first; with no terminal to ask on and no
/// `--yes` it starts nothing and exits 3 (a script that forgot `--yes` is
/// not told the workspace is encrypted); `--json` gives the plan as data.
#[tokio::test(flavor = "multi_thread")]
async fn provision_asks_before_the_irreversible_start() {
    let stack = stack("cmekctl-confirm", |o| o.bus_rules = false).await;
    let ws = workspaces(&stack)[0]["id"].as_str().unwrap().to_owned();

    let (code, out) = cmekctl(&stack, &["provision", &ws]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!("Plan: encrypt workspace {ws} with a new KMS key")),
        "{out}"
    );
    assert!(
        out.contains(&stack.state_machine_arn),
        "names the state machine: {out}"
    );
    assert!(out.contains(cmek::lifecycle::ATTACH_LOCKS), "{out}");
    assert!(out.contains("not started") && out.contains("--yes"), "{out}");

    let (code, out) = cmekctl(&stack, &["--json", "provision", &ws]);
    assert_eq!(code, 3, "{out}");
    let plan: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(plan["started"], false);
    assert_eq!(plan["plan"]["workspace"], ws.as_str());
    assert_eq!(plan["plan"]["stateMachine"], stack.state_machine_arn.as_str());

    assert!(
        executions(&stack).await.is_empty(),
        "nothing may start without consent"
    );
    assert!(all_keys(&stack).await.is_empty(), "no key created");
}

/// A deployed user names the stack, or nothing (samconfig.toml's
/// stack_name): the state machine and table come from the stack's outputs
/// in CloudFormation (moto's), the admin key's secret from its parameter.
/// An explicit name still wins; a stack that does not exist is a clear
/// error naming where its name came from.
#[tokio::test(flavor = "multi_thread")]
async fn cmekctl_finds_its_stack_in_cloudformation() {
    let stack = stack("cmekctl-stack", |o| o.bus_rules = false).await;
    let ws = workspaces(&stack)[0]["id"].as_str().unwrap().to_owned();
    let cfn = aws_sdk_cloudformation::Client::new(&stack.sdk);
    // A stack with the outputs the template declares, pointing at the local
    // stack's state machine and table (moto runs no SAM transform).
    let template = json!({
        "Parameters": {"AdminKeySecretArn": {"Type": "String"}},
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "StateMachineArn": {"Value": stack.state_machine_arn},
            "WorkflowTableName": {"Value": stack.table_name},
        }
    });
    cfn.create_stack()
        .stack_name("my-cmek")
        .template_body(template.to_string())
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("AdminKeySecretArn")
                .parameter_value("arn:aws:secretsmanager:us-east-2:123456789012:secret:nope-AbCdEf")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let dir = stack.log_dir.join("deployed-user");
    std::fs::create_dir_all(&dir).unwrap();
    // Only what a deployed user has: credentials and a Region, no names.
    let deployed = |args: &[&str]| {
        let mut cmd = cmekctl_command(&stack);
        cmd.env_remove("CMEK_TABLE_NAME")
            .env_remove("CMEK_STATE_MACHINE_ARN")
            .current_dir(&dir)
            .args(args);
        output_of(&mut cmd)
    };

    // No stack of the default name: the error says which name, from where.
    let (code, out) = deployed(&["list"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cmek-provisioner (the default name)") && out.contains("--stack"),
        "{out}"
    );

    let (code, out) = deployed(&["provision", &ws, "--stack", "my-cmek", "--yes"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = deployed(&["--json", "status", &ws, "--stack", "my-cmek"]);
    assert_eq!(code, 0, "{out}");
    let status: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(status["record"]["status"], "ATTACHED");

    // samconfig.toml's stack_name, as sam deploy --guided saves it.
    std::fs::write(
        dir.join("samconfig.toml"),
        "version = 0.1\n[default.deploy.parameters]\nstack_name = \"my-cmek\"\n",
    )
    .unwrap();
    let (code, out) = deployed(&["list", "--status", "attached"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&ws) && out.contains("1 workspace(s)"), "{out}");

    // The admin key's secret comes from the stack's parameter: without a
    // key in the environment, report reads that secret (which this stack
    // names but moto does not hold), so it fails on that secret by name.
    let mut cmd = cmekctl_command(&stack);
    cmd.env_remove("CMEK_TABLE_NAME")
        .env_remove("CMEK_STATE_MACHINE_ARN")
        .env_remove("ANTHROPIC_ADMIN_KEY")
        .current_dir(&dir)
        .args(["report", "--format", "json"]);
    let (code, out) = output_of(&mut cmd);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nope-AbCdEf"), "the stack's secret was used: {out}");

    // An explicit table wins over the stack's output.
    let (code, out) = deployed(&["list", "--table", "no-such-table"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("no-such-table") || out.contains("ResourceNotFound"),
        "{out}"
    );
}

/// `cmekctl create-workspace`: the plan and consent first (nothing without
/// it), then the run followed state by state, ending in a workspace whose
/// key was there from its creation; the same name again creates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn create_workspace_asks_then_creates_one_workspace_with_its_key() {
    for platform in [
        cmek::platform::Platform::ClaudePlatform,
        cmek::platform::Platform::ClaudePlatformOnAws,
    ] {
        let stack = stack(&format!("cmekctl-create-{platform}"), |o| {
            if platform.is_on_aws() {
                *o = std::mem::take(o).on_aws();
            }
            o.bus_rules = false;
        })
        .await;
        let (code, out) = cmekctl(&stack, &["create-workspace", "ledger"]);
        assert_eq!(code, 3, "{out}");
        assert!(out.contains("Plan: create workspace \"ledger\""), "{out}");
        assert!(out.contains(cmek::lifecycle::ATTACH_LOCKS), "{out}");
        assert!(out.contains("webhooks"), "{out}");
        assert!(
            executions(&stack).await.is_empty(),
            "nothing may start without consent"
        );

        let (code, out) = cmekctl(
            &stack,
            &[
                "create-workspace",
                "ledger",
                "--display-color",
                "#0a0b0c",
                "--yes",
            ],
        );
        assert_eq!(code, 0, "{platform}: {out} — {}", dump_on_failure(&stack));
        for state in [
            "CreateWorkspace",
            "HandOff",
            "Begin",
            "AlreadyAttached",
            "Finish",
            "Provisioned",
        ] {
            assert!(
                out.contains(&format!("] {state}")),
                "{platform}: followed {state}: {out}"
            );
        }
        let created: Vec<Value> = workspaces(&stack)
            .into_iter()
            .filter(|w| w["name"] == "ledger")
            .collect();
        assert_eq!(created.len(), 1, "{created:?}");
        let ws = created[0]["id"].as_str().unwrap();
        assert!(out.contains(&format!("✓ created {ws}")), "{out}");
        assert_eq!(created[0]["display_color"], "#0a0b0c");
        assert!(created[0]["external_key_id"].is_string());

        let (code, out) = cmekctl(&stack, &["create-workspace", "ledger", "--yes"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            workspaces(&stack)
                .into_iter()
                .filter(|w| w["name"] == "ledger")
                .count(),
            1
        );
        assert_eq!(all_keys(&stack).await.len(), 1);

        // Bad input is refused before anything exists, naming the field.
        let (code, out) = cmekctl(
            &stack,
            &["create-workspace", "x", "--data-residency", "eu", "--yes"],
        );
        assert_ne!(code, 0);
        assert!(out.contains("workspaceGeo"), "{out}");
    }
}
