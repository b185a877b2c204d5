//! The provisioning workflow end to end: the real state machine definition,
//! run by moto's Step Functions, invoking the real function binaries, against
//! the Admin API stand-in and moto's KMS and DynamoDB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::store::Status;
use cmek_e2e::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_provisions_a_workspace() {
    let stack = stack("happy", |_| {}).await;
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
    let key_arn = rec.key_arn.clone().unwrap();
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
    let compartment: cmek::ids::CompartmentId = w["compartment_id"].as_str().unwrap().parse().unwrap();
    let expected = cmek::policy::key_policy(
        &sandbox::stack::ACCOUNT.parse().unwrap(),
        cmek::geo::Geo::Us,
        &[compartment],
    );
    assert_eq!(policy, expected);

    // Registered once, attached, and the audit trail tells the story.
    let keys = external_keys(&stack);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["provider_config"]["kms_arn"], key_arn.as_str());
    assert_eq!(keys[0]["display_name"], "prod");
    let ws_now = stack.admin_client().get_workspace(&ws).await.unwrap();
    assert_eq!(ws_now.external_key_id, rec.external_key_id);
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
    assert_eq!(keys_for(&stack, &ws).await, vec![key_arn]);
    // No attachment the stand-in considers broken for live traffic.
    assert_eq!(stack.admin.state()["attach_warnings"], json!([]));
}
