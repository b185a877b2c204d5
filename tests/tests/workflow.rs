//! The provisioning workflow end to end: the real state machine definition,
//! run by moto's Step Functions, invoking the real function binaries, against
//! the Admin API stand-in and moto's KMS and DynamoDB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::store::Status;
use cmek_e2e::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_provisions_a_workspace() {
    // Detailed monitoring on, for the metrics below (the default emits only
    // what an alarm pages on: see rerunning_a_provisioned_workspace_creates_nothing).
    let stack = stack("happy", |o| {
        o.parameters.insert("DetailedMonitoring".into(), "true".into());
    })
    .await;
    let w = &workspaces(&stack)[0];
    let ws = workspace_id(w);
    let result = stack
        .run(&json!({"workspaceId": ws, "displayName": "prod"}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        result.status,
        "SUCCEEDED",
        "{result:?} — {}",
        dump_on_failure(&stack)
    );
    let out = result.output.unwrap();
    assert_eq!(out["outcome"], "SUCCEEDED");
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Attached);
    assert_eq!(rec.lease, None);
    let key_arn = rec.key_arn.clone().unwrap().to_string();
    assert_eq!(out["keyArn"], key_arn.as_str());

    // The key policy is the documented one for this workspace.
    let policy = stack
        .kms()
        .get_key_policy()
        .key_id(&key_arn)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    // Anthropic's current documentation: organization required, the
    // workspace (and the all-zeros id unattached keys are validated with)
    // under StringEqualsIfExists. Written out, not built by the code under test.
    let compartment = w["compartment_id"].as_str().unwrap();
    let org = org_uuid(&stack).to_string();
    let role = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
    let expected = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", sandbox::stack::ACCOUNT)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": role}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:org_uuid": [org]},
                       "StringEqualsIfExists": {"kms:EncryptionContext:anthropic:compartment_uuid": [compartment, "00000000-0000-0000-0000-000000000000"]}}},
        {"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:DescribeKey", "Resource": "*"}
    ]});
    // Anthropic's documented policy, and the creator role's two statements.
    assert_eq!(documented_part(&stack, &policy), expected);
    assert_eq!(
        record(&stack, &ws).await.org_uuid.map(|o| o.to_string()),
        Some(org)
    );

    // Registered once, attached, and the audit trail tells the story.
    let keys = external_keys(&stack);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["provider_config"]["kms_arn"], key_arn.as_str());
    assert_eq!(keys[0]["display_name"], "prod");
    let ws_now = stack.admin_client().get_workspace(&ws).await.unwrap();
    assert_eq!(ws_now.external_key_id.as_deref(), rec.external_key_id.as_deref());
    let outcomes: Vec<String> = events(&stack, &ws)
        .await
        .iter()
        .map(|e| format!("{}:{}", e.step, e.outcome))
        .collect();
    for expected in [
        "Begin:claimed",
        "CreateKey:key_created",
        "RegisterKey:registered",
        "ValidateKey:validated",
        "AttachKey:attached",
        "Finish:succeeded",
    ] {
        assert!(
            outcomes.iter().any(|o| o == expected),
            "missing {expected} in {outcomes:?}"
        );
    }
    assert_eq!(keys_for(&stack, &ws).await, vec![key_arn.clone()]);
    // The admin key appears in no function log, no DynamoDB item, no output.
    let logs = stack.function_logs();
    assert!(logs.contains("key attached"), "the logs were captured");
    assert!(
        !logs.contains(&stack.admin_key),
        "the admin key leaked into a function log"
    );
    let items = aws_sdk_dynamodb::Client::new(&stack.sdk)
        .scan()
        .table_name(&stack.table_name)
        .send()
        .await
        .unwrap();
    assert!(
        !format!("{:?}", items.items()).contains(&stack.admin_key),
        "the admin key leaked into DynamoDB"
    );
    assert!(!out.to_string().contains(&stack.admin_key));
    // No attachment the stand-in considers broken for live traffic.
    assert_eq!(stack.admin.state()["attach_warnings"], json!([]));
    // Anthropic validated twice (ValidateKey, then attach), each time
    // checking four requests that must be denied: eight access-denied
    // events on this key, none of them from anything of ours.
    let denied = denied_probes(&stack);
    assert_eq!(denied.len(), 8, "{denied:?}");
    assert!(
        denied.iter().all(|e| e["resources"][0]["ARN"] == key_arn.as_str()
            && e["userIdentity"]["accountId"] == "915198916910")
    );

    // Metrics: every step reported its latency, the outcome and validation counted.
    let metrics = emf_metrics(&stack);
    for step in [
        "Begin",
        "CreateKey",
        "RegisterKey",
        "ValidateKey",
        "AttachKey",
        "Finish",
    ] {
        assert!(
            metrics
                .iter()
                .any(|(d, n, v)| d == step && n == "Latency" && *v > 0.0),
            "no Latency for {step}: {metrics:?}"
        );
    }
    let total = |name: &str| -> f64 {
        metrics
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    };
    assert_eq!(total("ProvisioningSucceeded"), 1.0);
    assert_eq!(total("ProvisioningFailed"), 0.0);
    assert_eq!(total("ValidationAttempts"), 1.0);
    assert_eq!(total("AttemptsToValidate"), 1.0);
    assert_eq!(total("Errors"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_fails_while_kms_propagates_then_succeeds() {
    let stack = stack("propagation", |o| {
        o.sandbox.faults.propagation_delay_secs = 2.5;
        o.parameters.insert("ValidationMaxAttempts".into(), "8".into());
    })
    .await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let result = stack
        .run(&json!({"workspaceId": ws}), TIMEOUT)
        .await
        .map_err(|e| format!("{e:#}"))
        .unwrap();
    assert_eq!(
        result.status,
        "SUCCEEDED",
        "{result:?} — {}",
        dump_on_failure(&stack)
    );
    let rec = record(&stack, &ws).await;
    assert!(
        rec.validation_attempts >= 2,
        "validation should have failed first: {}",
        rec.validation_attempts
    );
    let failures = events(&stack, &ws)
        .await
        .iter()
        .filter(|e| e.outcome == "validation_failed")
        .count();
    assert_eq!(failures as u32, rec.validation_attempts - 1);
    assert_eq!(
        calls(&stack, "POST", "/external_keys"),
        1,
        "registered once despite retries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_compartment_in_an_adopted_key_is_diagnosed_and_never_attached() {
    let stack = stack("wrong-compartment", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    // A key whose policy names another workspace's compartment only, managed
    // elsewhere (manageKeyPolicy false), so the workflow must not fix it.
    let policy = documented_policy(
        &org_uuid(&stack).to_string(),
        &["9d1c7a3b-2e4f-4a5b-8c6d-7e8f9a0b1c2d"],
    );
    let key = stack.kms().create_key().policy(&policy).send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    let result = stack
        .run(
            &json!({"workspaceId": ws, "keyArn": arn, "manageKeyPolicy": false}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(result.status, "FAILED");
    // The execution itself says what went wrong, where operators look first.
    assert_eq!(result.error.as_deref(), Some("KeyPolicyRejected"), "{result:?}");
    let cause = result.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("CONDITION_MISSES_COMPARTMENT")
            && cause.contains("Fix:")
            && cause.contains("cmekctl status"),
        "{cause}"
    );
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Failed);
    // Refused at CreateKey by the policy analysis, before registering: the
    // error names the mismatch and the fix.
    let err = rec.last_error.clone().unwrap_or_default();
    assert!(err.contains("CONDITION_MISSES_COMPARTMENT"), "{err}");
    assert!(
        err.contains(&w_compartment(&stack)),
        "fix names the workspace's compartment: {err}"
    );
    assert_eq!(calls(&stack, "POST", "/external_keys"), 0);
    assert!(
        stack
            .admin_client()
            .get_workspace(&ws)
            .await
            .unwrap()
            .external_key_id
            .is_none(),
        "nothing attached"
    );
    // The customer's policy was left as it was.
    let after = stack
        .kms()
        .get_key_policy()
        .key_id(&arn)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    assert_eq!(after.policy().unwrap(), policy);
}

/// Anthropic's documented policy (current contract) for these compartments
/// only, written out: what a customer managing the key elsewhere would have.
fn documented_policy(org: &str, compartments: &[&str]) -> String {
    let role = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", sandbox::stack::ACCOUNT)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": role}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:org_uuid": [org]},
                       "StringEqualsIfExists": {"kms:EncryptionContext:anthropic:compartment_uuid": compartments}}},
        {"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:DescribeKey", "Resource": "*"}
    ]})
    .to_string()
}

fn w_compartment(stack: &sandbox::stack::LocalStack) -> String {
    workspaces(stack)[0]["compartment_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_that_never_succeeds_goes_to_diagnose() {
    let stack = stack("diagnose", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    // The policy admits the workspace's compartment but not the all-zeros id
    // validation sends; managed elsewhere, so validation keeps failing.
    // (The stand-in's default reading: an unattached key is validated with
    // the all-zeros id; the other reading is covered in contract.rs.)
    let policy = documented_policy(&org_uuid(&stack).to_string(), &[&w_compartment(&stack)]);
    let key = stack.kms().create_key().policy(&policy).send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    let input = json!({"workspaceId": ws, "keyArn": arn, "manageKeyPolicy": false, "acceptFindings": ["CONDITION_MISSES_VALIDATION_ID"]});
    let result = stack.run(&input, TIMEOUT).await.unwrap();
    assert_eq!(result.status, "FAILED");
    assert_eq!(result.error.as_deref(), Some("ValidationFailed"), "{result:?}");
    assert!(
        result
            .cause
            .as_deref()
            .unwrap_or_default()
            .contains("Diagnosis ENCRYPTION_CONTEXT_MISMATCH"),
        "{result:?}"
    );
    let exec_states = stack.states_entered(&result.arn).await.unwrap();
    assert!(exec_states.contains(&"Diagnose".to_owned()), "{exec_states:?}");
    assert!(!exec_states.contains(&"AttachKey".to_owned()));
    let rec = record(&stack, &ws).await;
    let diagnosis = rec.diagnosis.clone().unwrap();
    assert_eq!(diagnosis["cause"], "ENCRYPTION_CONTEXT_MISMATCH", "{diagnosis}");
    assert!(
        diagnosis["fix"]
            .as_str()
            .unwrap()
            .contains("00000000-0000-0000-0000-000000000000")
    );
    assert_eq!(
        rec.validation_attempts, 5,
        "1 try + 4 retries of the test schedule"
    );
    assert!(
        stack
            .admin_client()
            .get_workspace(&ws)
            .await
            .unwrap()
            .external_key_id
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_attached_to_another_key_is_refused_before_any_key_is_created() {
    let stack = stack("attached-elsewhere", |o| o.sandbox.orgs[0].attached = 1).await;
    let attached = workspaces(&stack)
        .into_iter()
        .find(|w| !w["external_key_id"].is_null())
        .unwrap();
    let ws = workspace_id(&attached);
    let result = stack
        .run(&json!({"workspaceId": ws}), TIMEOUT)
        .await
        .map_err(|e| format!("{e:#}"))
        .unwrap();
    assert_eq!(result.status, "FAILED");
    let rec = record(&stack, &ws).await;
    assert!(
        rec.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("already attached"),
        "{:?}",
        rec.last_error
    );
    assert!(keys_for(&stack, &ws).await.is_empty(), "no key was created");
    assert_eq!(calls(&stack, "POST", "/external_keys"), 0);
    assert_eq!(
        stack
            .admin_client()
            .get_workspace(&ws)
            .await
            .unwrap()
            .external_key_id
            .as_deref(),
        attached["external_key_id"].as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_a_provisioned_workspace_creates_nothing() {
    let stack = stack("rerun", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let first = stack
        .run(&json!({"workspaceId": ws}), TIMEOUT)
        .await
        .map_err(|e| format!("{e:#}"))
        .unwrap();
    assert_eq!(first.status, "SUCCEEDED", "{first:?}");
    let key = record(&stack, &ws).await.key_arn.unwrap().to_string();
    let before = stack.admin.requests().len();
    let second = stack
        .run(&json!({"workspaceId": ws}), TIMEOUT)
        .await
        .map_err(|e| format!("{e:#}"))
        .unwrap();
    assert_eq!(second.status, "SUCCEEDED", "{second:?}");
    let states = stack.states_entered(&second.arn).await.unwrap();
    assert!(
        !states.contains(&"CreateKey".to_owned()),
        "already attached to our key: straight to Finish ({states:?})"
    );
    assert_eq!(keys_for(&stack, &ws).await, vec![key]);
    assert_eq!(external_keys(&stack).len(), 1);
    // The organization is read once per cold start of Begin: a warm
    // instance asks nothing more.
    let new_calls: Vec<String> = stack.admin.requests()[before..]
        .iter()
        .map(|r| {
            format!(
                "{} {}?{}",
                r.method,
                r.path,
                r.query.as_deref().unwrap_or_default()
            )
        })
        .filter(|c| !c.starts_with("GET /v1/organizations/me?"))
        .collect();
    // Read through the list's id filter, without the Default Workspace.
    assert_eq!(
        new_calls,
        vec![format!(
            "GET /v1/organizations/workspaces?limit=1&include_archived=true&include_default=false&id%5B%5D={ws}"
        )],
        "a re-run only reads the workspace"
    );
    // Template defaults: no custom metric but the ones an alarm pages on
    // (two provisionings ran, every step reported nothing to CloudWatch).
    let metrics = emf_metrics(&stack);
    assert!(
        metrics.iter().all(|(_, name, _)| cmek::metrics::Metric::ALL
            .iter()
            .any(|m| m.name() == name && m.is_essential())),
        "{metrics:?}"
    );
    assert!(
        !stack.function_logs().contains("\"Latency\""),
        "per-invocation metrics are detailed monitoring's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn intermittent_admin_api_errors_still_provision_exactly_once() {
    let stack = stack("faults", |o| {
        // The retries are counted from the detailed metrics.
        o.parameters.insert("DetailedMonitoring".into(), "true".into());
        o.sandbox.faults = sandbox::admin_api::Faults {
            rate_429: 0.1,
            rate_429_no_retry_after: 0.05,
            rate_500: 0.1,
            rate_500_after_effect: 0.1,
            rate_529: 0.1,
            retry_after_secs: Some(1.0),
            latency_jitter_ms: 50,
            ..Default::default()
        };
        o.parameters.insert("ValidationMaxAttempts".into(), "10".into());
    })
    .await;
    let all = workspaces(&stack);
    // Random faults may or may not land on the calls that matter; these do:
    // each kind once on the create path and once on the attach path.
    let kinds: [(u16, bool, Option<u64>); 5] = [
        (429, false, Some(1)),
        (429, false, None),
        (500, false, None),
        (500, true, None),
        (529, false, None),
    ];
    let mut scripted = Vec::new();
    for (status, after_effect, retry_after_secs) in kinds {
        for path_suffix in [
            "/v1/organizations/external_keys".to_owned(),
            format!("/workspaces/{}", all[0]["id"].as_str().unwrap()),
        ] {
            scripted.push(sandbox::admin_api::Scripted {
                method: "POST".into(),
                path_suffix,
                status,
                times: 1,
                after_effect,
                message: None,
                retry_after_secs,
                error_code: None,
            });
        }
    }
    let mut with_scripted = stack.admin.faults();
    with_scripted.scripted = scripted;
    stack.admin.set_faults(with_scripted);
    let mut runs = Vec::new();
    for w in &all {
        let input = json!({"workspaceId": w["id"]});
        runs.push(stack.start_execution(&input, None).await.unwrap());
    }
    for arn in &runs {
        let r = stack.wait(arn, TIMEOUT).await.unwrap();
        assert_eq!(r.status, "SUCCEEDED", "{r:?} — {}", dump_on_failure(&stack));
    }
    // Every scripted fault fired, on both paths.
    let log = stack.admin.requests();
    for (status, after_effect, retry_after) in kinds {
        let name = if after_effect {
            format!("scripted {status} after the effect")
        } else {
            format!("scripted {status}")
        };
        for path in ["/external_keys", "/workspaces/"] {
            let fired = log
                .iter()
                .filter(|r| {
                    r.method == "POST" && r.path.contains(path) && r.fault.as_deref() == Some(name.as_str())
                })
                .count();
            assert!(
                fired >= 1,
                "{name} (retry-after {retry_after:?}) never hit {path}"
            );
        }
    }
    // Check with the faults off: the checks themselves are not under test.
    stack.admin.set_faults(Default::default());
    let keys = external_keys(&stack);
    assert_eq!(
        keys.len(),
        all.len(),
        "one registration per workspace despite 500s after the effect"
    );
    assert_eq!(
        effects(&stack, "registered").len(),
        all.len(),
        "{}",
        dump_on_failure(&stack)
    );
    assert_eq!(effects(&stack, "attached").len(), all.len());
    assert_eq!(
        all_keys(&stack).await.len(),
        all.len(),
        "one key per workspace, none more"
    );
    for w in &all {
        let ws = workspace_id(w);
        let rec = record(&stack, &ws).await;
        assert_eq!(rec.status, Status::Attached);
        assert_eq!(keys_for(&stack, &ws).await.len(), 1);
        assert_eq!(
            stack
                .admin_client()
                .get_workspace(&ws)
                .await
                .unwrap()
                .external_key_id
                .as_deref(),
            rec.external_key_id.as_deref()
        );
    }
    assert!(
        stack.admin.requests().iter().any(|r| r.fault.is_some()),
        "faults were injected"
    );
    // Each retry was reported by status; as many as the stand-in saw fail
    // with a retryable status (a 429 without retry-after is not retried
    // in-process, and a retry after the budget runs out is the state machine's).
    let metrics = emf_metrics(&stack);
    let reported: f64 = metrics
        .iter()
        .filter(|(_, n, _)| n == "AdminApiRetries")
        .map(|(_, _, v)| v)
        .sum();
    assert!(reported >= 1.0, "no AdminApiRetries reported: {metrics:?}");
    assert!(
        metrics
            .iter()
            .any(|(d, n, _)| n == "AdminApiRetries" && ["429", "500", "529"].iter().any(|s| d.ends_with(s))),
        "retries carry their status: {metrics:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_executions_at_once_make_one_key_and_one_registration() {
    let stack = stack("concurrent", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let a = stack
        .start_execution(&json!({"workspaceId": ws}), Some("first"))
        .await
        .unwrap();
    let b = stack
        .start_execution(&json!({"workspaceId": ws}), Some("second"))
        .await
        .unwrap();
    let (ra, rb) = (
        stack.wait(&a, TIMEOUT).await.unwrap(),
        stack.wait(&b, TIMEOUT).await.unwrap(),
    );
    let statuses = [ra.status.as_str(), rb.status.as_str()];
    assert!(statuses.contains(&"SUCCEEDED"), "{ra:?} {rb:?}");
    assert_eq!(keys_for(&stack, &ws).await.len(), 1);
    assert_eq!(external_keys(&stack).len(), 1);
    assert_eq!(
        calls(&stack, "POST", &format!("/workspaces/{ws}")),
        1,
        "attached once"
    );
    // The loser either ended with ConcurrentExecution or found the work done.
    let refused = events(&stack, &ws)
        .await
        .iter()
        .filter(|e| e.outcome == "not_run")
        .count();
    let both_succeeded = statuses == ["SUCCEEDED", "SUCCEEDED"];
    assert!(
        refused == 1 || both_succeeded,
        "refused={refused} statuses={statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reusing_a_key_for_a_second_workspace_keeps_the_first() {
    let stack = stack("reuse", |_| {}).await;
    let all = workspaces(&stack);
    let (w1, w2) = (workspace_id(&all[0]), workspace_id(&all[1]));
    let first = stack.run(&json!({"workspaceId": w1}), TIMEOUT).await.unwrap();
    assert_eq!(first.status, "SUCCEEDED");
    let arn = record(&stack, &w1).await.key_arn.unwrap().to_string();
    let second = stack
        .run(&json!({"workspaceId": w2, "keyArn": arn}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(second.status, "SUCCEEDED", "{second:?}");
    let policy = stack
        .kms()
        .get_key_policy()
        .key_id(&arn)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    let policy = policy.policy().unwrap().to_owned();
    let org = org_uuid(&stack);
    for w in [&all[0], &all[1]] {
        let target = cmek::policy::AnalysisTarget {
            geo: cmek::geo::Geo::Us,
            compartment: w["compartment_id"].as_str().unwrap().parse().unwrap(),
            org: Some(&org),
            key_account: None,
        };
        assert_eq!(
            cmek::policy::analyse(&policy, target).unwrap(),
            vec![],
            "policy admits {}",
            w["id"]
        );
    }
    // The key already protected the first workspace's data: the existing-data
    // statement lists it, and its traffic is still allowed.
    let doc: serde_json::Value = serde_json::from_str(&policy).unwrap();
    let existing = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "AllowAnthropicCMEKDecryptExistingData")
        .expect("existing-data statement");
    assert_eq!(
        existing["Condition"]["StringEquals"]["kms:EncryptionContext:anthropic:compartment_uuid"],
        json!([all[0]["compartment_id"]])
    );
    assert_eq!(stack.admin.live_traffic(w1.as_str()).await, Ok(()));
    assert_eq!(stack.admin.live_traffic(w2.as_str()).await, Ok(()));
    let r2 = record(&stack, &w2).await;
    assert!(r2.key_adopted);
    assert_eq!(r2.key_arn.as_deref(), Some(arn.as_str()));
    assert!(
        keys_for(&stack, &w2).await.is_empty(),
        "no key created for the second workspace"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_permissive_key_is_registered_only_when_the_operator_accepts_it() {
    let stack = stack("over-permissive", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    // The documented policy, plus a second role in Anthropic's account that
    // Anthropic never published: works (validation does not probe that
    // role), but grants more than documented.
    let mut doc: serde_json::Value = serde_json::from_str(&documented_policy(
        &org_uuid(&stack).to_string(),
        &[&w_compartment(&stack), "00000000-0000-0000-0000-000000000000"],
    ))
    .unwrap();
    doc["Statement"][1]["Principal"]["AWS"] = json!([
        "arn:aws:iam::915198916910:role/anthropic-cmek-client-us",
        "arn:aws:iam::915198916910:role/cmek-helper"
    ]);
    let arn = key_made_by_hand(&stack, Some(&doc.to_string())).await;

    let refused = stack
        .run(
            &json!({"workspaceId": ws, "keyArn": arn, "manageKeyPolicy": false}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(refused.status, "FAILED");
    let err = record(&stack, &ws).await.last_error.unwrap_or_default();
    assert!(
        err.contains("UNPUBLISHED_ANTHROPIC_PRINCIPAL") && err.contains("acceptFindings"),
        "{err}"
    );
    assert_eq!(calls(&stack, "POST", "/external_keys"), 0, "not registered");

    let input = json!({"workspaceId": ws, "keyArn": arn, "manageKeyPolicy": false,
                       "acceptFindings": ["UNPUBLISHED_ANTHROPIC_PRINCIPAL"]});
    let accepted = stack.run(&input, TIMEOUT).await.unwrap();
    assert_eq!(accepted.status, "SUCCEEDED", "{accepted:?}");
    let adopted = events(&stack, &ws)
        .await
        .into_iter()
        .find(|e| e.outcome == "key_adopted")
        .unwrap();
    let codes: Vec<&str> = adopted.detail["accepted_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["UNPUBLISHED_ANTHROPIC_PRINCIPAL"]);
    assert_eq!(
        record(&stack, &ws).await.accepted_findings,
        ["UNPUBLISHED_ANTHROPIC_PRINCIPAL"],
        "stored in the same spelling as the request's"
    );
    assert!(
        adopted.execution.is_some(),
        "the acceptance is tied to the execution that made it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_secrets_manager_at_cold_start_is_waited_out() {
    let stack = stack("secret-throttled", |o| o.bus_rules = false).await;
    // More refusals than the SDK's own three attempts: a cold start that
    // gave up here would fail the invocation with an error the state
    // machine does not retry.
    stack.host.add_aws_faults([sandbox::aws_proxy::AwsFault {
        action: "secretsmanager:GetSecretValue".into(),
        function: Some("BeginFunction".into()),
        times: 5,
        after_effect: false,
        status: 400,
        code: "ThrottlingException".into(),
    }]);
    let ws = workspace_id(&workspaces(&stack)[0]);
    let r = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(r.status, "SUCCEEDED", "{r:?} — {}", dump_on_failure(&stack));
    assert!(stack.host.pending_aws_faults().is_empty(), "the faults fired");
    let reads = stack
        .host
        .aws_calls()
        .iter()
        .filter(|c| c.function == "BeginFunction" && c.action == "secretsmanager:GetSecretValue")
        .count();
    assert_eq!(reads, 6, "five refusals, then the read");
    // Waited out inside the cold start, which did not fail (a failed init
    // reaches the state machine as an error of the runtime's choosing).
    assert!(
        !stack.function_logs().contains("cold start failed"),
        "{}",
        dump_on_failure(&stack)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_errors_that_outlast_every_retry_reach_the_workflow_classified_and_retried() {
    use sandbox::aws_proxy::AwsFault;
    // Errors by type are detailed monitoring's metrics.
    let stack = stack("aws-errors-classified", |o| {
        o.bus_rules = false;
        o.parameters.insert("DetailedMonitoring".into(), "true".into());
    })
    .await;
    let fault = |action: &str, function: &str, times: u32, status: u16, code: &str| AwsFault {
        action: action.into(),
        function: Some(function.into()),
        times,
        after_effect: false,
        status,
        code: code.into(),
    };
    stack.host.add_aws_faults([
        // CreateKey runs without the SDK's retries; the key manager retries
        // a throttle five times: the sixth reaches the workflow.
        fault(
            "kms:CreateKey",
            "CreateKeyFunction",
            6,
            400,
            "ThrottlingException",
        ),
        // A 500 on CreateKey is an unknown outcome: not retried in place.
        fault(
            "kms:CreateKey",
            "CreateKeyFunction",
            1,
            500,
            "KMSInternalException",
        ),
        // The SDK tries a 500 three times.
        fault(
            "dynamodb:TransactWriteItems",
            "RegisterKeyFunction",
            3,
            500,
            "InternalServerError",
        ),
    ]);
    let ws = workspace_id(&workspaces(&stack)[0]);
    let r = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(r.status, "SUCCEEDED", "{r:?} — {}", dump_on_failure(&stack));
    assert!(stack.host.pending_aws_faults().is_empty(), "every fault fired");
    let errors: Vec<(String, String)> = emf_metrics(&stack)
        .into_iter()
        .filter(|(dims, name, _)| name == "Errors" && dims.contains('/'))
        .map(|(dims, _, _)| {
            let (function, kind) = dims.split_once('/').unwrap();
            (function.to_owned(), kind.to_owned())
        })
        .collect();
    for expected in [
        ("CreateKey", "Throttled"),
        ("CreateKey", "KmsUnavailable"),
        ("RegisterKey", "StoreUnavailable"),
    ] {
        assert!(
            errors.iter().any(|(f, k)| (f.as_str(), k.as_str()) == expected),
            "{expected:?} not reported: {errors:?}"
        );
    }
    // The same facts in the logs, which every monitoring level keeps.
    let logs = stack.function_logs();
    assert!(
        logs.contains("\"error_type\":\"Throttled\"") && logs.contains("retries absorbed"),
        "failures and absorbed retries are logged"
    );
    assert_eq!(
        all_keys(&stack).await.len(),
        1,
        "one key, whatever failed on the way"
    );
    assert_eq!(external_keys(&stack).len(), 1, "one registration");
}

/// When Finish itself fails, the execution still fails with the workflow's
/// own error (what describe-execution and the console show first), the cause
/// saying the outcome was not recorded — not with a bare FinishFailed.
#[tokio::test(flavor = "multi_thread")]
async fn a_finish_that_fails_does_not_hide_the_workflows_error() {
    use sandbox::aws_proxy::AwsFault;
    let stack = stack("finish-fails", |o| o.bus_rules = false).await;
    // Finish may not read the record at all (a role without the permission):
    // AccessDenied is not retried, so Finish fails for good.
    stack.host.add_aws_faults([AwsFault {
        action: "dynamodb:GetItem".into(),
        function: Some("FinishFunction".into()),
        times: 50,
        after_effect: false,
        status: 400,
        code: "AccessDeniedException".into(),
    }]);
    let r = stack
        .run(
            &json!({"workspaceId": "wrkspc_01JNoSuchWorkspace0000000"}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.status, "FAILED", "{r:?}");
    assert_eq!(
        r.error.as_deref(),
        Some("WorkspaceNotFound"),
        "{r:?} — {}",
        dump_on_failure(&stack)
    );
    let cause = r.cause.unwrap_or_default();
    assert!(
        cause.contains("could NOT be recorded") && cause.contains("AccessDenied"),
        "{cause}"
    );
    assert!(
        stack
            .host
            .aws_calls()
            .iter()
            .any(|c| c.function == "FinishFunction" && c.fault.is_some()),
        "Finish ran and was refused"
    );
}
