//! The key guardian fed real-shaped CloudTrail events (from `events/`) and
//! the sweep schedule, with KMS, DynamoDB and SNS in moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;

use cmek_e2e::*;
use sandbox::stack::LocalStack;
use serde_json::{Value, json};

const FN: &str = "KeyGuardianFunction";

fn cloudtrail(file: &str, key_arn: &str) -> Value {
    let path = sandbox::stack::repo_root().join("events").join(file);
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text.replace(
        "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        key_arn,
    ))
    .unwrap()
}

fn key_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

async fn key_state(stack: &LocalStack, arn: &str) -> String {
    let d = stack.kms().describe_key().key_id(arn).send().await.unwrap();
    d.key_metadata().unwrap().key_state().unwrap().as_str().to_owned()
}

/// An SQS queue subscribed to the alert topic, to read what SNS published.
async fn alert_inbox(stack: &LocalStack) -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let url = sqs
        .create_queue()
        .queue_name("alerts")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    aws_sdk_sns::Client::new(&stack.sdk)
        .subscribe()
        .topic_arn(&stack.alert_topic_arn)
        .protocol("sqs")
        .endpoint("arn:aws:sqs:us-east-2:123456789012:alerts")
        .send()
        .await
        .unwrap();
    (sqs, url)
}

async fn inbox(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let got = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    got.messages()
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            body["Message"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_deletion_of_an_attached_key_is_cancelled_and_announced() {
    let stack = stack("guardian-delete", |o| o.bus_rules = false).await;
    let (sqs, url) = alert_inbox(&stack).await;
    let (ws, arn) = attach_directly(&stack, &workspaces(&stack)[0]).await;
    // Someone schedules the deletion (the test may; project code never can).
    stack
        .kms()
        .schedule_key_deletion()
        .key_id(key_id(&arn))
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(key_state(&stack, &arn).await, "PendingDeletion");
    let (err, alert) = invoke(
        &stack,
        FN,
        &cloudtrail("cloudtrail-schedule-key-deletion.json", &arn),
    )
    .await;
    assert_eq!(err, None, "{alert}");
    assert_eq!(alert["severity"], "CRITICAL");
    assert_eq!(alert["code"], "KEY_DELETION_SCHEDULED");
    assert!(
        alert["message"].as_str().unwrap().contains("unrecoverable"),
        "{alert}"
    );
    assert_eq!(alert["workspaces"], json!([ws.to_string()]));
    assert_eq!(alert["detail"]["cancelled"], true);
    assert_eq!(
        key_state(&stack, &arn).await,
        "Enabled",
        "cancelled and enabled again"
    );
    let messages = inbox(&sqs, &url).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains(ws.as_str()) && messages[0].contains("Dec 5, 2026"),
        "{}",
        messages[0]
    );
    let trail = events(&stack, &ws).await;
    assert!(
        trail
            .iter()
            .any(|e| e.step == "Guardian" && e.outcome == "deletion_scheduled")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_was_disabled_stays_disabled_after_cancelling_and_disable_is_never_undone() {
    let stack = stack("guardian-disable", |o| o.bus_rules = false).await;
    let (ws, arn) = attach_directly(&stack, &workspaces(&stack)[0]).await;
    stack
        .kms()
        .disable_key()
        .key_id(key_id(&arn))
        .send()
        .await
        .unwrap();
    let (err, alert) = invoke(&stack, FN, &cloudtrail("cloudtrail-disable-key.json", &arn)).await;
    assert_eq!(err, None, "{alert}");
    assert_eq!(alert["code"], "KEY_DISABLED");
    assert_eq!(alert["severity"], "HIGH");
    // In the key lifecycle page's words: when it applies, and the two
    // limits of undoing it.
    let message = alert["message"].as_str().unwrap();
    assert!(message.contains(cmek::lifecycle::DISABLE_APPLIES), "{message}");
    assert!(message.contains(cmek::lifecycle::REENABLE_LIMITS), "{message}");
    assert_eq!(alert["workspaces"], json!([ws.to_string()]));
    assert_eq!(
        key_state(&stack, &arn).await,
        "Disabled",
        "the customer's revocation is never undone"
    );
    // Then a deletion is scheduled: cancelled, but the key stays disabled as it was.
    stack
        .kms()
        .schedule_key_deletion()
        .key_id(key_id(&arn))
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let (_, alert) = invoke(
        &stack,
        FN,
        &cloudtrail("cloudtrail-schedule-key-deletion.json", &arn),
    )
    .await;
    assert_eq!(alert["detail"]["cancelled"], true);
    assert_eq!(key_state(&stack, &arn).await, "Disabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn unmanaged_and_adopted_keys() {
    let stack = stack("guardian-unmanaged", |o| o.bus_rules = false).await;
    // A key no workflow record names: ignored, its deletion left alone.
    let other = key_made_by_hand(&stack, None).await;
    stack
        .kms()
        .schedule_key_deletion()
        .key_id(key_id(&other))
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let (err, out) = invoke(
        &stack,
        FN,
        &cloudtrail("cloudtrail-schedule-key-deletion.json", &other),
    )
    .await;
    assert_eq!(err, None);
    assert_eq!(out["ignored"], true, "{out}");
    assert_eq!(key_state(&stack, &other).await, "PendingDeletion");

    // An adopted key whose policy is managed elsewhere (no tag of ours)
    // attached to a workspace: alert, but the guardian may not cancel.
    let w = &workspaces(&stack)[1];
    let ws = workspace_id(w);
    let compartment: cmek::ids::CompartmentId = w["compartment_id"].as_str().unwrap().parse().unwrap();
    let policy = cmek::policy::key_policy(
        &sandbox::stack::ACCOUNT.parse().unwrap(),
        cmek::geo::Geo::Us,
        &org_uuid(&stack),
        cmek::policy::Scope::Workspaces(&[compartment]),
    );
    let adopted = key_made_by_hand(&stack, Some(&policy.to_string())).await;
    let r = stack
        .run(
            &json!({"workspaceId": ws, "keyArn": adopted, "manageKeyPolicy": false}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.status, "SUCCEEDED", "{r:?}");
    stack
        .kms()
        .schedule_key_deletion()
        .key_id(key_id(&adopted))
        .pending_window_in_days(30)
        .send()
        .await
        .unwrap();
    let (_, alert) = invoke(
        &stack,
        FN,
        &cloudtrail("cloudtrail-schedule-key-deletion.json", &adopted),
    )
    .await;
    assert_eq!(alert["code"], "KEY_DELETION_SCHEDULED");
    assert_eq!(alert["detail"]["cancelled"], false);
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("not created by cmek-provisioner"),
        "{alert}"
    );
    assert_eq!(key_state(&stack, &adopted).await, "PendingDeletion");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_that_drops_the_compartment_names_the_workspace() {
    let stack = stack("guardian-policy", |o| o.bus_rules = false).await;
    let (ws, arn) = attach_directly(&stack, &workspaces(&stack)[0]).await;
    let other: cmek::ids::CompartmentId = "9d1c7a3b-2e4f-4a5b-8c6d-7e8f9a0b1c2d".parse().unwrap();
    let broken = cmek::policy::key_policy(
        &sandbox::stack::ACCOUNT.parse().unwrap(),
        cmek::geo::Geo::Us,
        &org_uuid(&stack),
        cmek::policy::Scope::Workspaces(&[other]),
    );
    stack
        .kms()
        .put_key_policy()
        .key_id(key_id(&arn))
        .policy_name("default")
        .policy(broken.to_string())
        .send()
        .await
        .unwrap();
    let (err, alert) = invoke(&stack, FN, &cloudtrail("cloudtrail-put-key-policy.json", &arn)).await;
    assert_eq!(err, None, "{alert}");
    assert_eq!(alert["code"], "POLICY_BROKEN");
    assert_eq!(alert["workspaces"], json!([ws.to_string()]));
    assert!(alert["message"].as_str().unwrap().contains(ws.as_str()));
    let findings = &alert["detail"]["findings"][ws.as_str()];
    assert!(
        findings.to_string().contains("CONDITION_MISSES_COMPARTMENT"),
        "{findings}"
    );
    assert!(
        events(&stack, &ws)
            .await
            .iter()
            .any(|e| e.outcome == "policy_broken")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_reports_exactly_the_broken_workspaces() {
    let stack = stack("guardian-sweep", |o| {
        o.bus_rules = false;
        o.sandbox.orgs[0].workspaces = 100;
    })
    .await;
    let all = workspaces(&stack);
    let mut attached = Vec::new();
    for chunk in all.chunks(10) {
        let futures = chunk.iter().map(|w| attach_directly(&stack, w));
        attached.extend(futures_join(futures).await);
    }
    assert_eq!(attached.len(), 100);
    let kms = stack.kms();
    let (disabled, _) = &attached[7];
    kms.disable_key()
        .key_id(key_id(&attached[7].1))
        .send()
        .await
        .unwrap();
    let other: cmek::ids::CompartmentId = "9d1c7a3b-2e4f-4a5b-8c6d-7e8f9a0b1c2d".parse().unwrap();
    let broken = cmek::policy::key_policy(
        &sandbox::stack::ACCOUNT.parse().unwrap(),
        cmek::geo::Geo::Us,
        &org_uuid(&stack),
        cmek::policy::Scope::Workspaces(&[other]),
    );
    kms.put_key_policy()
        .key_id(key_id(&attached[42].1))
        .policy_name("default")
        .policy(broken.to_string())
        .send()
        .await
        .unwrap();
    kms.schedule_key_deletion()
        .key_id(key_id(&attached[99].1))
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    // A key still on the August 2026 policy (no organization condition):
    // works today, but Anthropic's next validation of it fails.
    let w13 = all.iter().find(|w| w["id"] == attached[13].0.as_str()).unwrap();
    let august = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::915198916910:role/anthropic-cmek-client-us"},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:compartment_uuid": ["00000000-0000-0000-0000-000000000000", w13["compartment_id"]]}}},
        {"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::915198916910:role/anthropic-cmek-client-us"}, "Action": "kms:DescribeKey", "Resource": "*"}]});
    kms.put_key_policy()
        .key_id(key_id(&attached[13].1))
        .policy_name("default")
        .policy(august.to_string())
        .send()
        .await
        .unwrap();

    let sweep = serde_json::from_str::<Value>(
        &std::fs::read_to_string(sandbox::stack::repo_root().join("events/scheduled-event.json")).unwrap(),
    )
    .unwrap();
    let (err, report) = invoke(&stack, FN, &sweep).await;
    assert_eq!(err, None, "{report}");
    assert_eq!(report["checked"], 100);
    assert_eq!(report["validated"], 0, "the daily sweep asks Anthropic nothing");
    let found: BTreeSet<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["workspaceId"].as_str().unwrap().to_owned(),
                f["codes"][0].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        (disabled.to_string(), "KEY_NOT_ENABLED".to_owned()),
        (attached[42].0.to_string(), "POLICY_BROKEN".to_owned()),
        (attached[99].0.to_string(), "KEY_PENDING_DELETION".to_owned()),
        (
            attached[13].0.to_string(),
            "POLICY_MISSING_ORG_CONDITION".to_owned(),
        ),
    ]
    .into();
    assert_eq!(found, expected);
    // The sweep tells a revocation (reversible) from a deletion (not).
    let message_of = |ws: &str| -> String {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["workspaceId"] == ws)
            .map(|f| f["messages"][0].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert!(message_of(disabled.as_str()).contains(": reversible"));
    assert!(message_of(attached[42].0.as_str()).contains("revoked, which is reversible"));
    assert!(message_of(attached[99].0.as_str()).contains("not reversible"));
    assert!(
        events(&stack, disabled)
            .await
            .iter()
            .any(|e| e.outcome == "sweep_findings")
    );
    assert!(
        !events(&stack, &attached[0].0)
            .await
            .iter()
            .any(|e| e.outcome == "sweep_findings")
    );
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let all: Vec<F> = futures.collect();
    let mut handles = Vec::new();
    for f in all {
        handles.push(f);
    }
    // Sequential awaits of already-created futures still overlap their I/O
    // only when polled together; join them pairwise.
    let mut iter = handles.into_iter();
    while let Some(a) = iter.next() {
        match iter.next() {
            Some(b) => {
                let (x, y) = tokio::join!(a, b);
                out.push(x);
                out.push(y);
            }
            None => out.push(a.await),
        }
    }
    out
}

/// The guardian rule's pattern, as the template deploys it.
fn guardian_rule_pattern() -> Value {
    let t: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(sandbox::stack::repo_root().join("template.yaml")).unwrap(),
    )
    .unwrap();
    let pattern =
        &t["Resources"]["KeyGuardianFunction"]["Properties"]["Events"]["KmsChanges"]["Properties"]["Pattern"];
    serde_json::to_value(pattern).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_probes_are_not_the_guardians_business() {
    let stack = stack("guardian-probes", |o| o.bus_rules = false).await;
    // A real provisioning: Anthropic's validations leave their access-denied events.
    let ws = workspace_id(&workspaces(&stack)[0]);
    let r = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(r.status, "SUCCEEDED", "{r:?}");
    let probes = denied_probes(&stack);
    assert_eq!(probes.len(), 8);
    let trail_before = events(&stack, &ws).await.len();
    let (sqs, queue) = capture(&stack, json!({"detail-type": ["CMEK Key Alert"]})).await;
    // The template's rule, on the default bus where CloudTrail's events
    // arrive, delivering to a queue: moto applies the pattern for real
    // (its TestEventPattern answers nothing at all, so it cannot be the oracle).
    let eb = aws_sdk_eventbridge::Client::new(&stack.sdk);
    let rule_sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let rule_queue = rule_sqs
        .create_queue()
        .queue_name("guardian-rule")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    eb.put_rule()
        .name("guardian-rule")
        .event_pattern(guardian_rule_pattern().to_string())
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("guardian-rule")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn("arn:aws:sqs:us-east-2:123456789012:guardian-rule")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let put = |event: &Value| {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(event["source"].as_str().unwrap())
            .detail_type(event["detail-type"].as_str().unwrap())
            .detail(event["detail"].to_string())
            .build();
        let eb = eb.clone();
        async move {
            let out = eb.put_events().entries(entry).send().await.unwrap();
            assert_eq!(out.failed_entry_count(), 0);
        }
    };
    for probe in &probes {
        // As CloudTrail hands it to EventBridge.
        let event = json!({"version": "0", "id": "probe", "detail-type": "AWS API Call via CloudTrail", "source": "aws.kms",
                           "account": "123456789012", "time": "2026-11-28T10:00:00Z", "region": "us-east-2",
                           "resources": [], "detail": probe});
        put(&event).await;
        // Had it reached the guardian anyway, the guardian ignores it.
        let (err, out) = invoke(&stack, FN, &event).await;
        assert_eq!(err, None, "{out}");
        assert_eq!(out["ignored"], true, "{out}");
    }
    // Positive control: the rule does deliver a change it watches.
    let change = cloudtrail(
        "cloudtrail-put-key-policy.json",
        &record(&stack, &ws).await.key_arn.unwrap(),
    );
    put(&change).await;
    // Grants: one an application made on the key passes; the routine ones an
    // AWS service makes (`invokedBy`, by the thousand on busy accounts) do not.
    let grant = |invoked_by: Option<&str>| {
        let mut e = change.clone();
        e["detail"]["eventName"] = json!("CreateGrant");
        if let Some(service) = invoked_by {
            e["detail"]["userIdentity"]["invokedBy"] = json!(service);
        }
        e
    };
    put(&grant(None)).await;
    put(&grant(Some("ec2.amazonaws.com"))).await;
    let mut delivered: Vec<(String, Value)> = drain(&rule_sqs, &rule_queue)
        .await
        .iter()
        .map(|e| {
            (
                e["detail"]["eventName"].as_str().unwrap().to_owned(),
                e["detail"]["userIdentity"]["invokedBy"].clone(),
            )
        })
        .collect();
    delivered.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        delivered,
        [
            ("CreateGrant".to_owned(), Value::Null),
            ("PutKeyPolicy".to_owned(), Value::Null)
        ],
        "only the watched changes pass the rule"
    );
    assert_eq!(events(&stack, &ws).await.len(), trail_before, "nothing recorded");
    assert!(drain(&sqs, &queue).await.is_empty(), "no alert");
    // And the template's rule lists exactly the events the guardian handles.
    let names: Vec<String> = guardian_rule_pattern()["detail"]["$or"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|branch| serde_json::from_value::<Vec<String>>(branch["eventName"].clone()).unwrap())
        .collect();
    assert_eq!(names, cmek::guardian::WATCHED_EVENTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_validation_sweep_finds_what_only_anthropic_can_see() {
    let stack = stack("guardian-validation-sweep", |o| o.bus_rules = false).await;
    let all = workspaces(&stack);
    let mut attached = Vec::new();
    for w in &all {
        attached.push(attach_directly(&stack, w).await);
    }
    // An organization guard on one key (as an AWS Organizations resource
    // control policy would add): the key policy still names Anthropic's role,
    // so the daily sweep can only call it a risk; Anthropic is denied.
    let (broken_ws, broken_arn) = &attached[1];
    let kms = cmek::kms::KeyManager::new(stack.kms());
    let mut policy: Value = serde_json::from_str(&kms.get_policy(broken_arn).await.unwrap()).unwrap();
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "DenyOutsideOrg", "Effect": "Deny", "Principal": "*", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-abc123"}}}));
    kms.put_policy(broken_arn, &policy.to_string()).await.unwrap();

    let daily = cloudtrail_free_sweep(&stack, false).await;
    assert_eq!(daily["findings"], json!([]), "{daily}");
    let weekly = cloudtrail_free_sweep(&stack, true).await;
    assert_eq!(weekly["validated"], all.len(), "{weekly}");
    let findings = weekly["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{weekly}");
    assert_eq!(findings[0]["workspaceId"], broken_ws.as_str());
    assert_eq!(findings[0]["codes"], json!(["VALIDATION_FAILING"]));
    assert!(
        findings[0]["messages"][0]
            .as_str()
            .unwrap()
            .contains("explicitly denied")
    );
}

/// One sweep, daily (the schedule's event) or with validation (its input).
async fn cloudtrail_free_sweep(stack: &LocalStack, validate: bool) -> Value {
    let event = if validate {
        json!({"sweep": cmek::guardian::VALIDATION_SWEEP_INPUT})
    } else {
        serde_json::from_str(
            &std::fs::read_to_string(sandbox::stack::repo_root().join("events/scheduled-event.json"))
                .unwrap(),
        )
        .unwrap()
    };
    let (err, report) = invoke(stack, FN, &event).await;
    assert_eq!(err, None, "{report}");
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kms_event_costs_at_most_two_reads_however_large_the_table() {
    use cmek::store::WorkflowStore;
    let stack = stack("guardian-reads", |o| o.bus_rules = false).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let r = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(r.status, "SUCCEEDED", "{r:?}");
    let key = record(&stack, &ws).await.key_arn.unwrap();
    let foreign = key_made_by_hand(&stack, None).await;
    let mut grant = cloudtrail("cloudtrail-put-key-policy.json", &key);
    grant["detail"]["eventName"] = json!("CreateGrant");
    let events = [
        ("PutKeyPolicy", cloudtrail("cloudtrail-put-key-policy.json", &key)),
        ("DisableKey", cloudtrail("cloudtrail-disable-key.json", &key)),
        ("CreateGrant", grant),
        (
            "another key",
            cloudtrail("cloudtrail-put-key-policy.json", &foreign),
        ),
    ];
    // The guardian's DynamoDB reads (as the AWS proxy saw them) per event.
    let measure = || async {
        let mut out = Vec::new();
        for (name, event) in &events {
            let before = stack.host.aws_calls().len();
            let (err, body) = invoke(&stack, FN, event).await;
            assert_eq!(err, None, "{name}: {body}");
            let reads: Vec<String> = stack.host.aws_calls()[before..]
                .iter()
                .filter(|c| c.function == FN && c.service == "dynamodb")
                .filter(|c| {
                    ["GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"]
                        .iter()
                        .any(|op| c.action.ends_with(&format!(":{op}")))
                })
                .map(|c| c.action.clone())
                .collect();
            out.push((*name, reads));
        }
        out
    };
    let small = measure().await;

    // 500 more workspaces in the table, half of them with keys of their own.
    let store = stack.store();
    for i in 0..500 {
        let id: cmek::ids::WorkspaceId = format!("wrkspc_bulk{i:04}").parse().unwrap();
        let mut rec = cmek::store::WorkflowRecord::new(id, time::OffsetDateTime::now_utc());
        if i % 2 == 0 {
            rec.key_arn = Some(
                format!("arn:aws:kms:us-east-2:123456789012:key/00000000-0000-4000-8000-{i:012}")
                    .parse()
                    .unwrap(),
            );
        }
        let note = cmek::store::AuditEvent::new("Test", "filler", None, json!({}));
        store.save(None, &rec, &note).await.unwrap();
    }
    let large = measure().await;

    assert_eq!(
        small, large,
        "the reads per event do not depend on the table's size"
    );
    for (name, reads) in &large {
        assert!(reads.len() <= 2, "{name}: {reads:?}");
        assert!(!reads.iter().any(|r| r.ends_with(":Scan")), "{name}: a scan");
        assert!(!reads.is_empty(), "{name}: the guardian must look the key up");
    }
    let table = large
        .iter()
        .map(|(name, reads)| format!("{name}: {} ({})", reads.len(), reads.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    figure(
        "guardian-reads-per-event",
        &format!(
            "key guardian, DynamoDB reads per KMS event, the same with 1 and 501 records in the table: {table}\n"
        ),
    );
}
