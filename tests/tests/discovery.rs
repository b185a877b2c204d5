//! New workspaces: scheduled discovery, the bus, and the rule that starts
//! provisioning — against the local stack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cmek::store::Status;
use cmek_e2e::*;
use sandbox::admin_api::OrgSeed;
use serde_json::{Value, json};

const DISCOVER: &str = "DiscoverWorkspacesFunction";

fn scheduled_event() -> Value {
    json!({"version": "0", "id": "sched-1", "detail-type": "Scheduled Event", "source": "aws.events",
           "account": "123456789012", "time": "2026-11-28T00:00:00Z", "region": "us-east-2", "resources": [], "detail": {}})
}

#[tokio::test(flavor = "multi_thread")]
async fn only_opted_in_unattached_workspaces_are_announced_once() {
    let stack = stack("discovery-2500", |o| {
        o.bus_rules = false;
        o.sandbox.orgs[0].workspaces = 2500;
        o.sandbox.orgs[0].archived = 12;
        o.sandbox.orgs[0].attached = 12;
        o.parameters.insert("AutoProvision".into(), "true".into());
        o.parameters
            .insert("AutoProvisionNamePattern".into(), "workspace-*0001?".into());
    })
    .await;
    let (sqs, queue) = capture(&stack, json!({"detail-type": ["Workspace Discovered"]})).await;
    let (err, report) = invoke(&stack, DISCOVER, &scheduled_event()).await;
    assert_eq!(err, None, "{report}");
    assert_eq!(report["listed"], 2512, "archived workspaces are not listed");
    assert_eq!(report["attached"], 12);
    let state = stack.admin.state();
    let by_id: std::collections::HashMap<String, String> = state["orgs"]["demo-org"]["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().to_owned(),
                w["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let discovered: BTreeSet<String> = report["discovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| by_id[v.as_str().unwrap()].clone())
        .collect();
    let expected: BTreeSet<String> = (10..20).map(|i| format!("workspace-{i:05}")).collect();
    assert_eq!(
        discovered, expected,
        "exactly the opted-in, unattached, unarchived ones"
    );
    let pages = stack
        .admin
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/organizations/workspaces")
        .count();
    assert_eq!(pages, 3, "2512 workspaces in pages of 1,000");
    let events = drain(&sqs, &queue).await;
    assert_eq!(events.len(), expected.len(), "each announced exactly once");
    let announced: BTreeSet<String> = events
        .iter()
        .map(|e| by_id[e["detail"]["workspaceId"].as_str().unwrap()].clone())
        .collect();
    assert_eq!(announced, expected);
    for e in &events {
        assert_eq!(e["source"], "cmek-provisioner");
        assert_eq!(e["detail-type"], "Workspace Discovered");
    }

    // A second poll announces nothing new.
    let (_, again) = invoke(&stack, DISCOVER, &scheduled_event()).await;
    assert_eq!(again["discovered"], json!([]));
    assert_eq!(again["known"], 10);
    assert!(drain(&sqs, &queue).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_workspace_is_never_discovered_even_when_a_rule_names_it() {
    // The Default Workspace takes a key only on an explicit opt-in that says
    // what it locks (organization webhooks): discovery lists without it
    // (the API omits it unless include_default=true), so no name pattern
    // can announce it.
    let stack = stack("discovery-default", |o| {
        o.bus_rules = false;
        o.sandbox.orgs[0].default_workspace = true;
        o.sandbox.orgs[0].unnamed_keys = 1;
        o.sandbox.orgs[0].gcp_keys = 1;
        o.sandbox.orgs[0].azure_keys = 1;
        o.parameters.insert("AutoProvision".into(), "true".into());
        o.parameters
            .insert("AutoProvisionNamePattern".into(), "Default Workspace".into());
    })
    .await;
    let (err, report) = invoke(&stack, DISCOVER, &scheduled_event()).await;
    assert_eq!(err, None, "{report}");
    assert_eq!(
        report["listed"], 3,
        "three workspaces, the Default Workspace not listed"
    );
    assert_eq!(report["discovered"], json!([]));
    assert_eq!(report["notOptedIn"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_is_off_by_default() {
    let stack = stack("discovery-off", |o| o.bus_rules = false).await;
    let (sqs, queue) = capture(&stack, json!({"detail-type": ["Workspace Discovered"]})).await;
    let (err, report) = invoke(&stack, DISCOVER, &scheduled_event()).await;
    assert_eq!(err, None, "{report}");
    assert_eq!(report["discovered"], json!([]));
    assert_eq!(report["notOptedIn"], 3);
    assert!(drain(&sqs, &queue).await.is_empty());
    assert!(
        stack.store().list(None).await.unwrap().is_empty(),
        "nothing recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_workspace_is_discovered_and_provisioned_through_the_bus_rule() {
    let stack = stack("discovery-e2e", |o| {
        o.parameters.insert("AutoProvision".into(), "true".into());
        o.parameters
            .insert("AutoProvisionNamePattern".into(), "new-*".into());
    })
    .await;
    let (_, first) = invoke(&stack, DISCOVER, &scheduled_event()).await;
    assert_eq!(
        first["discovered"],
        json!([]),
        "the seeded workspaces are not opted in"
    );
    let added = stack.admin.seed(&OrgSeed {
        name: "demo-org".into(),
        admin_key: stack.admin_key.clone(),
        workspaces: 1,
        name_prefix: Some("new".into()),
        ..OrgSeed::default()
    });
    let ws: cmek::ids::WorkspaceId = added[0].id.parse().unwrap();
    let (_, second) = invoke(&stack, DISCOVER, &scheduled_event()).await;
    assert_eq!(second["discovered"], json!([ws.to_string()]));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let rec = stack.store().load(&ws).await.unwrap();
        if rec
            .as_ref()
            .is_some_and(|r| r.status == Status::Attached && r.lease.is_none())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not provisioned: {rec:?} — {}",
            dump_on_failure(&stack)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let execs = executions(&stack).await;
    let names: Vec<&str> = execs.iter().map(|(_, name, _)| name.as_str()).collect();
    assert_eq!(names.len(), 1);
    assert!(names[0].starts_with("eb-"), "{names:?}");
    let trigger = record(&stack, &ws).await.trigger.unwrap();
    assert_eq!(trigger["source"], "eventbridge");
    assert!(trigger["eventId"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_event_starts_nothing_new_and_bad_events_are_named() {
    let stack = stack("from-event", |o| o.bus_rules = false).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let event = json!({"version": "0", "id": "evt-1", "detail-type": "Workspace Discovered", "source": "my-vending-tool",
                       "account": "123456789012", "time": "2026-11-28T00:00:00Z", "region": "us-east-2", "resources": [],
                       "detail": {"workspaceId": ws, "displayName": "vended"}});
    let (err, first) = invoke(&stack, "StartFromEventFunction", &event).await;
    assert_eq!(err, None, "{first}");
    assert!(first["started"].is_string());
    let (err, second) = invoke(&stack, "StartFromEventFunction", &event).await;
    assert_eq!(err, None);
    // Step Functions answers a repeated name either with the same execution
    // (same input, still running) or ExecutionAlreadyExists: never a new one.
    assert!(
        second["started"] == first["started"] || second["duplicate"].is_string(),
        "{second}"
    );
    assert_eq!(executions(&stack).await.len(), 1);
    let r = stack
        .wait(first["started"].as_str().unwrap(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.status, "SUCCEEDED");
    for bad in [
        json!({"id": "e", "detail-type": "Something Else", "detail": {}}),
        json!({"id": "e", "detail-type": "Workspace Discovered", "detail": {"workspaceId": "nope"}}),
        json!({"id": "e", "detail-type": "Workspace Discovered", "detail": {}}),
    ] {
        let (err, body) = invoke(&stack, "StartFromEventFunction", &bad).await;
        assert_eq!(err.as_deref(), Some("InvalidInput"), "{bad} → {body}");
    }
}
