//! Storms and load: many triggers for one workspace at once, and many
//! workspaces against an Admin API having a bad day.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmek::store::Status;
use cmek_e2e::*;
use sandbox::stack::LocalStack;
use serde_json::{Value, json};

/// Every execution of the state machine, once none is running: (ARN, status).
async fn settled_executions(stack: &LocalStack, expected: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let all = executions(stack).await;
        let running = all.iter().filter(|(_, _, s)| s == "RUNNING").count();
        if all.len() >= expected && running == 0 {
            return all.into_iter().map(|(arn, _, status)| (arn, status)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} executions started, {running} still running — {}",
            all.len(),
            dump_on_failure(stack)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn cfn_create(catcher: &ResponseCatcher, request_id: &str, ws: &str) -> Value {
    json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:us-east-2:123456789012:function:CustomResourceFunction",
        "ResponseURL": catcher.url_for(request_id),
        "StackId": format!("arn:aws:cloudformation:us-east-2:123456789012:stack/app-{request_id}/1"),
        "RequestId": request_id,
        "LogicalResourceId": "WorkspaceKey",
        "ResourceType": "Custom::AnthropicCmek",
        "ResourceProperties": {"ServiceToken": "x", "WorkspaceId": ws},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_mixed_triggers_at_once_make_one_key_one_registration_one_attachment() {
    storm(cmek::platform::Platform::ClaudePlatform).await;
}

/// The same storm on Claude Platform on AWS.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_mixed_triggers_on_claude_platform_on_aws_make_one_of_each() {
    storm(cmek::platform::Platform::ClaudePlatformOnAws).await;
}

async fn storm(platform: cmek::platform::Platform) {
    let stack = Arc::new(stack(&format!("storm-{platform}"), |o| o.platform = platform).await);
    let catcher = Arc::new(ResponseCatcher::start().await);
    let ws = workspace_id(&workspaces(&stack)[0]).to_string();
    let (manual, eventbridge, cloudformation) = (7, 7, 6);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..manual {
        let (stack, ws) = (stack.clone(), ws.clone());
        tasks.spawn(async move {
            stack
                .start_execution(&json!({"workspaceId": ws}), None)
                .await
                .unwrap();
        });
    }
    for i in 0..eventbridge {
        let (stack, ws) = (stack.clone(), ws.clone());
        tasks.spawn(async move {
            let out = aws_sdk_eventbridge::Client::new(&stack.sdk)
                .put_events()
                .entries(
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .event_bus_name(&stack.bus_name)
                        .source("cmek-provisioner")
                        .detail_type("Workspace Discovered")
                        .detail(json!({"workspaceId": ws, "displayName": format!("storm-{i}")}).to_string())
                        .build(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(out.failed_entry_count(), 0);
        });
    }
    for i in 0..cloudformation {
        let (stack, ws, catcher) = (stack.clone(), ws.clone(), catcher.clone());
        tasks.spawn(async move {
            let (err, body) = invoke(
                &stack,
                "CustomResourceFunction",
                &cfn_create(&catcher, &format!("storm-{i}"), &ws),
            )
            .await;
            assert_eq!(err, None, "{body}");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }

    let triggers = manual + eventbridge + cloudformation;
    let executions = settled_executions(&stack, triggers).await;
    assert_eq!(executions.len(), triggers, "one execution per trigger");

    let ws: cmek::ids::WorkspaceId = ws.parse().unwrap();
    assert_eq!(keys_for(&stack, &ws).await.len(), 1, "one key");
    assert_eq!(external_keys(&stack).len(), 1, "one registration");
    assert_eq!(
        calls(&stack, "POST", &format!("/workspaces/{ws}")),
        1,
        "one attachment"
    );
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Attached);
    assert_eq!(rec.lease, None);

    // Every other execution either found the work done (a no-op success) or
    // was refused with ConcurrentExecution, recorded against its own ARN.
    let trail = events(&stack, &ws).await;
    let refused: HashMap<String, String> = trail
        .iter()
        .filter(|e| e.step == "Finish" && e.outcome == "not_run")
        .map(|e| {
            (
                e.execution.clone().unwrap_or_default(),
                e.detail["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut succeeded = 0;
    for (arn, status) in &executions {
        match status.as_str() {
            "SUCCEEDED" => succeeded += 1,
            "FAILED" => assert_eq!(
                refused.get(arn).map(String::as_str),
                Some("ConcurrentExecution"),
                "{arn} failed for another reason; refusals: {refused:?}"
            ),
            other => panic!("{arn} ended {other}"),
        }
    }
    assert!(succeeded >= 1);
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.step == "AttachKey" && e.outcome == "attached")
            .count(),
        1
    );

    // Every CloudFormation request was answered, SUCCESS with the key or
    // FAILED naming the concurrent execution.
    for i in 0..cloudformation {
        let answer = catcher.wait(&format!("storm-{i}"), TIMEOUT).await;
        match answer["Status"].as_str() {
            Some("SUCCESS") => assert_eq!(answer["Data"]["KeyArn"], rec.key_arn.as_deref().unwrap()),
            Some("FAILED") => assert!(
                answer["Reason"].as_str().unwrap().contains("ConcurrentExecution"),
                "{answer}"
            ),
            _ => panic!("storm-{i}: {answer}"),
        }
    }
    figure(
        &format!("storm_{platform}"),
        &format!(
            "STORM ({platform}): {triggers} triggers → {succeeded} succeeded, {} refused with ConcurrentExecution; 1 key, 1 registration, 1 attachment",
            triggers - succeeded
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_workspaces_with_thirty_percent_faults_are_all_attached_after_validation() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    // Overridable to probe the stack's throughput; the proof is the default.
    let (workspaces_n, in_flight) = (env("CMEK_LOAD_WORKSPACES", 200), env("CMEK_LOAD_IN_FLIGHT", 40));
    let fault_scale = if std::env::var("CMEK_LOAD_NO_FAULTS").is_ok() {
        0.0
    } else {
        1.0
    };
    let stack = stack("load-faults", |o| {
        o.sandbox.orgs[0].workspaces = workspaces_n;
        o.sandbox.faults = sandbox::admin_api::Faults {
            rate_429: 0.08 * fault_scale,
            rate_429_no_retry_after: 0.04 * fault_scale,
            rate_500: 0.06 * fault_scale,
            rate_500_after_effect: 0.04 * fault_scale,
            rate_529: 0.08 * fault_scale,
            retry_after_secs: Some(1.0),
            latency_ms: 5,
            latency_jitter_ms: 250,
            ..Default::default()
        };
    })
    .await;
    let all = workspaces(&stack);
    assert_eq!(all.len(), workspaces_n);
    let started = Instant::now();
    let mut running: VecDeque<String> = VecDeque::new();
    let mut results = Vec::new();
    for w in &all {
        if running.len() == in_flight {
            let arn = running.pop_front().unwrap();
            results.push(stack.wait(&arn, TIMEOUT).await.unwrap());
        }
        running.push_back(
            stack
                .start_execution(&json!({"workspaceId": w["id"]}), None)
                .await
                .unwrap(),
        );
    }
    for arn in running {
        results.push(stack.wait(&arn, TIMEOUT).await.unwrap());
    }
    let elapsed = started.elapsed();
    let failed: Vec<_> = results.iter().filter(|r| r.status != "SUCCEEDED").collect();
    assert!(failed.is_empty(), "{failed:?} — {}", dump_on_failure(&stack));

    // Inspect with the faults off: the checks themselves are not under test.
    stack.admin.set_faults(Default::default());
    let requests = stack.admin.requests();
    let faulted = requests.iter().filter(|r| r.fault.is_some()).count();
    let state = stack.admin.state();
    assert_eq!(
        state["unvalidated_attachments"],
        json!([]),
        "a key was attached without a successful validation"
    );
    // Every kind of fault really hit both the create and the attach path
    // (drawn at random from a seed: printed, with the rest, on failure).
    let kinds: &[&str] = if fault_scale > 0.0 {
        &[
            "429 retry_after=Some(1)",
            "429 retry_after=None",
            "500",
            "500_after_effect",
            "529",
        ]
    } else {
        &[]
    };
    for kind in kinds {
        for (method, path) in [
            ("POST", "/v1/organizations/external_keys"),
            ("POST", "/v1/organizations/workspaces/"),
        ] {
            assert!(
                requests.iter().any(|r| r.method == method
                    && r.path.starts_with(path)
                    && r.fault.as_deref() == Some(kind)),
                "no {kind} on {method} {path} — {}",
                dump_on_failure(&stack)
            );
        }
    }
    let registrations = external_keys(&stack);
    assert_eq!(
        registrations.len(),
        workspaces_n,
        "one registration per workspace"
    );
    assert_eq!(
        effects(&stack, "registered").len(),
        workspaces_n,
        "registrations that took effect, 5xx included"
    );
    assert_eq!(effects(&stack, "attached").len(), workspaces_n);
    assert_eq!(
        all_keys(&stack).await.len(),
        workspaces_n,
        "one key per workspace, none more"
    );
    let by_id: HashMap<&str, &str> = registrations
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap(),
                k["provider_config"]["kms_arn"].as_str().unwrap(),
            )
        })
        .collect();
    let store = stack.store();
    for w in state["orgs"]["demo-org"]["workspaces"].as_array().unwrap() {
        let ws = workspace_id(w);
        let rec = cmek::store::WorkflowStore::load(&store, &ws)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, Status::Attached, "{ws}");
        let attached = w["external_key_id"].as_str().expect("attached");
        assert_eq!(Some(attached), rec.external_key_id.as_deref());
        assert_eq!(
            by_id[attached],
            rec.key_arn.as_deref().unwrap(),
            "{ws}: attached to its own key"
        );
    }
    // Retries stay bounded: the happy path is 5 calls per workspace; every
    // injected fault costs one more, plus the lookups after unknown outcomes.
    let per_workspace = requests.len() as f64 / workspaces_n as f64;
    assert!(
        per_workspace < 12.0,
        "{} Admin API requests for {workspaces_n} workspaces",
        requests.len()
    );
    figure(
        "load",
        &format!(
            "LOAD: {workspaces_n} workspaces at 30% faults attached in {:.1}s: {} Admin API requests ({per_workspace:.2}/workspace), {faulted} faults injected and retried",
            elapsed.as_secs_f64(),
            requests.len()
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_whose_execution_died_is_taken_over_after_expiry_not_before() {
    let stack = stack("dead-lease", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    // An execution that claimed the workspace and then died: its lease stays.
    // The lease is long, so no wall-clock window decides the first half
    // however loaded the machine; expiry is then made to have happened.
    let dead = "arn:aws:states:us-east-2:123456789012:execution:ProvisionWorkspaceKey:died";
    let store = stack.store();
    let claimed = cmek::store::claim(
        &store,
        &ws,
        dead,
        None,
        time::OffsetDateTime::now_utc(),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();

    // Before expiry: refused, and the lease is untouched.
    let early = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(early.status, "FAILED");
    let refused = events(&stack, &ws)
        .await
        .into_iter()
        .any(|e| e.outcome == "not_run" && e.detail["error"] == "ConcurrentExecution");
    assert!(refused, "refused with ConcurrentExecution");
    let held = record(&stack, &ws).await;
    assert_eq!(held.lease_owner(), Some(dead));
    assert_eq!(held.version, claimed.version, "the refused run changed nothing");
    assert!(keys_for(&stack, &ws).await.is_empty(), "nothing was created");

    // The lease runs out (written as a store write would leave it, an
    // instant in the past), and a new run takes it over.
    let mut expired = held.clone();
    expired.version += 1;
    if let Some(lease) = expired.lease.as_mut() {
        lease.expires_at = time::OffsetDateTime::now_utc().unix_timestamp() - 1;
    }
    let note = cmek::store::AuditEvent::new("Test", "lease_expired", Some(dead), json!({}));
    store
        .save(
            Some(cmek::store::Expected {
                version: held.version,
                status: held.status,
            }),
            &expired,
            &note,
        )
        .await
        .unwrap();
    let late = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(late.status, "SUCCEEDED", "{late:?} — {}", dump_on_failure(&stack));
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Attached);
    assert_eq!(rec.lease, None);
    assert_eq!(keys_for(&stack, &ws).await.len(), 1);
}

/// Start one execution per workspace, `in_flight` at a time, and wait for all.
async fn run_all(
    stack: &LocalStack,
    all: &[Value],
    in_flight: usize,
) -> Vec<sandbox::stack::ExecutionResult> {
    let mut running: VecDeque<String> = VecDeque::new();
    let mut results = Vec::new();
    for w in all {
        if running.len() == in_flight {
            let arn = running.pop_front().unwrap();
            results.push(stack.wait(&arn, TIMEOUT).await.unwrap());
        }
        running.push_back(
            stack
                .start_execution(&json!({"workspaceId": w["id"]}), None)
                .await
                .unwrap(),
        );
    }
    for arn in running {
        results.push(stack.wait(&arn, TIMEOUT).await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_workspaces_with_aws_and_admin_api_faults_are_all_attached_exactly_once() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (workspaces_n, in_flight) = (env("CMEK_LOAD_WORKSPACES", 200), env("CMEK_LOAD_IN_FLIGHT", 40));
    let stack = stack("aws-faults", |o| {
        // Errors by type and the SDK's retries are detailed monitoring's metrics.
        o.parameters.insert("DetailedMonitoring".into(), "true".into());
        o.sandbox.orgs[0].workspaces = workspaces_n;
        // 10 % of Admin API requests fail…
        o.sandbox.faults = sandbox::admin_api::Faults {
            rate_429: 0.03,
            rate_500: 0.03,
            rate_500_after_effect: 0.02,
            rate_529: 0.02,
            retry_after_secs: Some(1.0),
            ..Default::default()
        };
        // …and 10 % of the functions' AWS calls, a quarter of the server
        // errors after the call took effect.
        o.aws_faults = Some(sandbox::aws_proxy::AwsFaultRate {
            rate: 0.10,
            after_effect_share: 0.25,
            seed: None,
        });
    })
    .await;
    let all = workspaces(&stack);
    assert_eq!(all.len(), workspaces_n);
    let started = Instant::now();
    let results = run_all(&stack, &all, in_flight).await;
    let elapsed = started.elapsed();
    let failed: Vec<_> = results.iter().filter(|r| r.status != "SUCCEEDED").collect();
    assert!(failed.is_empty(), "{failed:?} — {}", dump_on_failure(&stack));

    // Inspect with the faults off.
    stack.host.set_random_aws_faults(None);
    stack.admin.set_faults(Default::default());

    // Nothing duplicated, nothing attached unvalidated.
    let state = stack.admin.state();
    assert_eq!(state["unvalidated_attachments"], json!([]));
    assert_eq!(
        external_keys(&stack).len(),
        workspaces_n,
        "one registration per workspace"
    );
    assert_eq!(effects(&stack, "registered").len(), workspaces_n);
    assert_eq!(effects(&stack, "attached").len(), workspaces_n);
    assert_eq!(
        all_keys(&stack).await.len(),
        workspaces_n,
        "one key per workspace"
    );
    let store = stack.store();
    for w in &all {
        let rec = cmek::store::WorkflowStore::load(&store, &workspace_id(w))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, Status::Attached);
    }

    // The faults really happened, of every kind the workflow's services answer.
    let calls = stack.host.aws_calls();
    let mut injected: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for c in &calls {
        if let Some(f) = c.fault.as_deref().filter(|f| !f.starts_with("repeated")) {
            let code = f.split_whitespace().nth(1).unwrap_or_default().to_owned();
            *injected.entry((c.service.clone(), code)).or_default() += 1;
        }
    }
    for service in ["kms", "dynamodb", "events"] {
        for (_, code, _) in sandbox::aws_proxy::catalogue(service, "") {
            assert!(
                injected.contains_key(&(service.to_owned(), (*code).to_owned())),
                "no {service} {code} injected: {injected:?} — {}",
                dump_on_failure(&stack)
            );
        }
    }
    let faults: usize = injected.values().sum();
    let after_effect = calls
        .iter()
        .filter(|c| {
            c.fault
                .as_deref()
                .is_some_and(|f| f.ends_with("after the effect"))
        })
        .count();
    assert!(after_effect > 0, "some faults came after the effect");

    // Every error that reached the workflow is one it classifies and retries
    // (ValidationFailed is the normal wait for KMS propagation).
    let metrics = emf_metrics(&stack);
    let mut errors: std::collections::BTreeMap<String, f64> = Default::default();
    for (dims, name, value) in &metrics {
        if let (Some((_, kind)), "Errors") = (dims.split_once('/'), name.as_str()) {
            *errors.entry(kind.to_owned()).or_default() += value;
        }
    }
    // What the state machine retries: the transient errors, plus the lost
    // race and the validation schedule.
    let classified = |k: &str| {
        cmek::error::TRANSIENT_ERROR_TYPES.contains(&k) || ["StateConflict", "ValidationFailed"].contains(&k)
    };
    for kind in errors.keys() {
        assert!(classified(kind), "unclassified error {kind}: {errors:?}");
    }
    // Which classes surface is up to the draw (the SDK's and the key
    // manager's own retries absorb most faults); that each is named and
    // retried is `workflow.rs::aws_errors_that_outlast_every_retry_…`.
    assert!(
        errors.keys().any(|k| k != "ValidationFailed"),
        "no AWS or Admin API error reached the workflow: {errors:?} — {}",
        dump_on_failure(&stack)
    );
    // The retries the SDK absorbed are visible, by service.
    let mut retries: std::collections::BTreeMap<String, f64> = Default::default();
    for (dims, name, value) in &metrics {
        if name == "AwsRetries" {
            let service = dims.rsplit('/').next().unwrap().to_owned();
            *retries.entry(service).or_default() += value;
        }
    }
    for service in ["kms", "dynamodb"] {
        assert!(
            retries.get(service).is_some_and(|n| *n > 0.0),
            "no AwsRetries for {service}: {retries:?}"
        );
    }
    figure(
        "aws-faults",
        &format!(
            "AWS FAULTS: {workspaces_n} workspaces with 10% AWS and 10% Admin API faults attached in {:.1}s, one key/registration/attachment each: {} AWS calls, {faults} faults injected ({after_effect} after the effect) {injected:?}; errors that reached the workflow {errors:?}; SDK retries {retries:?}\n",
            elapsed.as_secs_f64(),
            calls.len()
        ),
    );
}
