//! `Custom::AnthropicCmek` against the local stack, with CloudFormation's
//! side played for real: a local HTTP server stands in for the pre-signed S3
//! URL and records what is PUT.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

use cmek::store::Status;
use cmek_e2e::*;
use serde_json::{Value, json};

const FN: &str = "CustomResourceFunction";

fn request(kind: &str, catcher: &ResponseCatcher, request_id: &str, props: Value) -> Value {
    catcher.request("Custom::AnthropicCmek", "WorkspaceKey", kind, request_id, props)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_answers_success_with_data_after_the_workflow_and_update_and_delete_touch_nothing() {
    create_update_delete(cmek::platform::Platform::ClaudePlatform).await;
}

/// The same on Claude Platform on AWS (the rename is SigV4-signed, the
/// registration's id is the key's ARN).
#[tokio::test(flavor = "multi_thread")]
async fn on_claude_platform_on_aws_create_answers_success_and_update_renames_by_arn() {
    create_update_delete(cmek::platform::Platform::ClaudePlatformOnAws).await;
}

async fn create_update_delete(platform: cmek::platform::Platform) {
    let stack = stack(&format!("cfn-create-{platform}"), |o| o.platform = platform).await;
    let catcher = ResponseCatcher::start().await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let props =
        json!({"ServiceToken": "x", "WorkspaceId": ws, "DisplayName": "app key", "ServiceTimeout": "1800"});
    let (err, out) = invoke(
        &stack,
        FN,
        &request("Create", &catcher, "create-1", props.clone()),
    )
    .await;
    assert_eq!(err, None, "{out}");
    assert_eq!(out["answered"], false, "Finish answers Create");
    let resp = catcher.wait("create-1", TIMEOUT).await;
    assert_eq!(resp["Status"], "SUCCESS", "{resp}");
    assert_eq!(resp["PhysicalResourceId"], format!("cmek:{ws}"));
    assert_eq!(resp["RequestId"], "create-1");
    assert_eq!(resp["LogicalResourceId"], "WorkspaceKey");
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Attached);
    let key_arn = rec.key_arn.clone().unwrap();
    assert_eq!(resp["Data"]["KeyArn"], key_arn.as_str());
    assert_eq!(resp["Data"]["KeyId"], key_arn.rsplit('/').next().unwrap());
    assert_eq!(resp["Data"]["AliasName"], rec.alias.clone().unwrap().as_str());
    assert_eq!(
        resp["Data"]["ExternalKeyId"],
        rec.external_key_id.clone().unwrap().as_str()
    );
    assert_eq!(
        resp["Data"]["CompartmentId"],
        rec.compartment_id.unwrap().to_string()
    );

    // Update, same workspace: answered at once, nothing created; the new display name is applied.
    let before = executions(&stack).await.len();
    let mut update = request(
        "Update",
        &catcher,
        "update-1",
        json!({"WorkspaceId": ws, "DisplayName": "renamed"}),
    );
    update["PhysicalResourceId"] = json!(format!("cmek:{ws}"));
    update["OldResourceProperties"] = props.clone();
    let (err, out) = invoke(&stack, FN, &update).await;
    assert_eq!(err, None, "{out}");
    let resp = catcher.wait("update-1", Duration::from_secs(5)).await;
    assert_eq!(resp["Status"], "SUCCESS", "{resp}");
    assert_eq!(resp["PhysicalResourceId"], format!("cmek:{ws}"));
    assert_eq!(resp["Data"]["KeyArn"], key_arn.as_str());
    assert_eq!(executions(&stack).await.len(), before, "no new execution");
    assert_eq!(external_keys(&stack)[0]["display_name"], "renamed");
    assert_eq!(external_keys(&stack).len(), 1);

    // The organization's Workspace Policy lists the key: whether a rename
    // is "reconfiguring" it is not documented, so both readings. Refused,
    // the update still succeeds, keeps the old name and says why.
    let id = rec.external_key_id.clone().unwrap().to_string();
    stack
        .admin
        .set_workspace_policy(sandbox::admin_api::WorkspacePolicy {
            org: None,
            allowed_keys: vec![id.clone()],
        })
        .unwrap();
    for (blocks, new_name, kept) in [
        (true, "renamed again", "renamed"),
        (false, "renamed again", "renamed again"),
    ] {
        stack.admin.set_contract(sandbox::admin_api::ContractConfig {
            workspace_policy_blocks_rename: blocks,
            ..stack.admin.contract()
        });
        let rid = format!("update-policy-{blocks}");
        let mut update = request(
            "Update",
            &catcher,
            &rid,
            json!({"WorkspaceId": ws, "DisplayName": new_name}),
        );
        update["PhysicalResourceId"] = json!(format!("cmek:{ws}"));
        update["OldResourceProperties"] = json!({"WorkspaceId": ws, "DisplayName": "renamed"});
        let (err, out) = invoke(&stack, FN, &update).await;
        assert_eq!(err, None, "{out}");
        let resp = catcher.wait(&rid, Duration::from_secs(5)).await;
        assert_eq!(resp["Status"], "SUCCESS", "{resp}");
        assert_eq!(
            external_keys(&stack)[0]["display_name"],
            kept,
            "blocks_rename={blocks}"
        );
        // One refusal on the trail, from the refused rename only.
        let refused = events(&stack, &ws)
            .await
            .into_iter()
            .filter(|e| e.outcome == "rename_refused")
            .count();
        assert_eq!(refused, 1, "audit trail, blocks_rename={blocks}");
        if blocks {
            let reason = resp["Reason"].as_str().unwrap();
            assert!(
                reason.contains("external_key_in_workspace_policy") && reason.contains("kept"),
                "{reason}"
            );
            assert!(stack.function_logs().contains("rename refused, old name kept"));
        }
    }

    // Delete: SUCCESS, and the key stays enabled and attached.
    let mut delete = request("Delete", &catcher, "delete-1", json!({"WorkspaceId": ws}));
    delete["PhysicalResourceId"] = json!(format!("cmek:{ws}"));
    let (err, _) = invoke(&stack, FN, &delete).await;
    assert_eq!(err, None);
    let resp = catcher.wait("delete-1", Duration::from_secs(5)).await;
    assert_eq!(resp["Status"], "SUCCESS");
    let key = stack
        .kms()
        .describe_key()
        .key_id(key_arn.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        key.key_metadata().unwrap().key_state().unwrap().as_str(),
        "Enabled"
    );
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
    assert!(
        events(&stack, &ws)
            .await
            .iter()
            .any(|e| e.outcome == "delete_ignored")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_properties_fail_within_seconds_and_create_nothing() {
    let stack = stack("cfn-bad", |_| {}).await;
    let catcher = ResponseCatcher::start().await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    for (id, props, needle) in [
        ("bad-1", json!({"WorkspaceId": ws, "Colour": "blue"}), "Colour"),
        ("bad-2", json!({"WorkspaceId": "ws-123"}), "wrkspc_"),
        (
            "bad-3",
            json!({"WorkspaceId": ws, "KeyArn": "arn:aws:kms:us-east-2:123456789012:alias/x"}),
            "alias",
        ),
        (
            "bad-4",
            json!({"WorkspaceId": ws, "ManageKeyPolicy": "maybe"}),
            "ManageKeyPolicy",
        ),
        ("bad-5", json!({"DisplayName": "no workspace"}), "WorkspaceId"),
    ] {
        let started = Instant::now();
        let (err, _) = invoke(&stack, FN, &request("Create", &catcher, id, props)).await;
        assert_eq!(err, None, "the function answers; it does not fail");
        let resp = catcher.wait(id, Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(resp["Status"], "FAILED", "{resp}");
        assert_eq!(resp["PhysicalResourceId"], format!("cmek-failed:{id}"));
        let reason = resp["Reason"].as_str().unwrap();
        assert!(
            reason.contains("InvalidInput") && reason.contains(needle),
            "{id}: {reason}"
        );
    }
    assert_eq!(executions(&stack).await.len(), 0);
    assert!(stack.store().load(&ws).await.unwrap().is_none());
    assert!(stack.admin.requests().is_empty());
    assert!(keys_for(&stack, &ws).await.is_empty());

    // The rollback Delete of a failed Create is answered at once.
    let mut delete = request(
        "Delete",
        &catcher,
        "rollback-1",
        json!({"WorkspaceId": ws, "Colour": "blue"}),
    );
    delete["PhysicalResourceId"] = json!("cmek-failed:bad-1");
    invoke(&stack, FN, &delete).await;
    let resp = catcher.wait("rollback-1", Duration::from_secs(5)).await;
    assert_eq!(resp["Status"], "SUCCESS");
    assert_eq!(resp["PhysicalResourceId"], "cmek-failed:bad-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_workflow_answers_failed_with_the_reason() {
    let stack = stack("cfn-fail", |o| o.sandbox.orgs[0].attached = 1).await;
    let catcher = ResponseCatcher::start().await;
    let attached = workspaces(&stack)
        .into_iter()
        .find(|w| !w["external_key_id"].is_null())
        .unwrap();
    let (err, _) = invoke(
        &stack,
        FN,
        &request(
            "Create",
            &catcher,
            "fail-1",
            json!({"WorkspaceId": attached["id"]}),
        ),
    )
    .await;
    assert_eq!(err, None);
    let resp = catcher.wait("fail-1", TIMEOUT).await;
    assert_eq!(resp["Status"], "FAILED", "{resp}");
    assert_eq!(resp["PhysicalResourceId"], "cmek-failed:fail-1");
    let reason = resp["Reason"].as_str().unwrap();
    assert!(
        reason.contains("WorkspaceAlreadyAttached") && reason.contains("permanent"),
        "{reason}"
    );
    assert_eq!(catcher.responses("fail-1").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_delivery_starts_one_execution() {
    let stack = stack("cfn-dup", |_| {}).await;
    let catcher = ResponseCatcher::start().await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let event = request("Create", &catcher, "dup-1", json!({"WorkspaceId": ws}));
    let (a, b) = tokio::join!(invoke(&stack, FN, &event), invoke(&stack, FN, &event));
    assert_eq!((a.0, b.0), (None, None));
    let resp = catcher.wait("dup-1", TIMEOUT).await;
    assert_eq!(resp["Status"], "SUCCESS", "{resp}");
    assert_eq!(executions(&stack).await.len(), 1);
    assert_eq!(external_keys(&stack).len(), 1);
    assert_eq!(keys_for(&stack, &ws).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_a_response_url_is_an_error_not_a_hang() {
    let stack = stack("cfn-nourl", |_| {}).await;
    let (err, body) = invoke(
        &stack,
        FN,
        &json!({"RequestType": "Create", "ResourceProperties": {}}),
    )
    .await;
    assert_eq!(err.as_deref(), Some("InvalidInput"), "{body}");
    let evil = json!({"RequestType": "Create", "ResponseURL": "http://10.0.0.1/steal", "StackId": "s", "RequestId": "r", "LogicalResourceId": "l", "ResourceProperties": {}});
    let (err, _) = invoke(&stack, FN, &evil).await;
    assert_eq!(
        err.as_deref(),
        Some("InvalidInput"),
        "plain http outside loopback is refused"
    );
    let _: Value = Value::Null;
}
