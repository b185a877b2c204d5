//! Anthropic's current CMEK contract (September 2026), end to end: the real
//! state machine and binaries against the stand-in playing that contract —
//! both readings of what an unattached key is validated with, keys made under
//! the July/August 2026 contracts upgraded without cutting anyone off, keys
//! validation would refuse never registered, and an organization endpoint
//! that answers garbage creating nothing anywhere. Policies are written out
//! from the documentation here, never built by the code under test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::store::Status;
use cmek_e2e::*;
use sandbox::admin_api::{Contract, ContractConfig, Faults, UnattachedValidation};
use sandbox::stack::LocalStack;
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
const ZEROS: &str = "00000000-0000-0000-0000-000000000000";
const ORG_KEY: &str = "kms:EncryptionContext:anthropic:org_uuid";
const COMP_KEY: &str = "kms:EncryptionContext:anthropic:compartment_uuid";
const EXISTING_DATA: &str = "AllowAnthropicCMEKDecryptExistingData";

fn root() -> Value {
    json!({"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", sandbox::stack::ACCOUNT)}, "Action": "kms:*", "Resource": "*"})
}

fn describe() -> Value {
    json!({"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:DescribeKey", "Resource": "*"})
}

/// The August 2026 documentation's policy: StringEquals on the compartment,
/// listing the all-zeros id and the workspaces; no organization condition.
fn august_policy(compartments: &[&str]) -> String {
    let mut values = vec![ZEROS];
    values.extend_from_slice(compartments);
    json!({"Version": "2012-10-17", "Statement": [root(),
        {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {COMP_KEY: values}}},
        describe()]})
    .to_string()
}

/// The current documentation's policy, for `org` and these compartments.
fn current_policy(org: &str, compartments: &[&str]) -> String {
    json!({"Version": "2012-10-17", "Statement": [root(),
        {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {ORG_KEY: [org]}, "StringEqualsIfExists": {COMP_KEY: compartments}}},
        describe()]})
    .to_string()
}

async fn policy_of(stack: &LocalStack, arn: &str) -> Value {
    let out = stack
        .kms()
        .get_key_policy()
        .key_id(arn)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    serde_json::from_str(out.policy().unwrap()).unwrap()
}

fn compartment(w: &Value) -> &str {
    w["compartment_id"].as_str().unwrap()
}

/// Every key in moto, any state (an oracle independent of the code under test).
async fn all_keys(stack: &LocalStack) -> usize {
    stack
        .kms()
        .list_keys()
        .limit(1000)
        .send()
        .await
        .unwrap()
        .keys()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn both_readings_of_unattached_validation_provision_with_the_documented_policy() {
    for reading in [UnattachedValidation::Zeros, UnattachedValidation::OrgOnly] {
        let stack = stack(&format!("contract-{reading:?}"), |o| {
            o.sandbox.contract = ContractConfig {
                unattached_validation: reading,
                ..ContractConfig::default()
            };
        })
        .await;
        let w = &workspaces(&stack)[0];
        let ws = workspace_id(w);
        let result = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
        assert_eq!(
            result.status,
            "SUCCEEDED",
            "{reading:?}: {result:?} — {}",
            dump_on_failure(&stack)
        );
        let rec = record(&stack, &ws).await;
        let arn = rec.key_arn.clone().unwrap();
        let org = org_uuid(&stack).to_string();
        assert_eq!(
            documented_part(&stack, &policy_of(&stack, &arn).await).to_string(),
            serde_json::from_str::<Value>(&current_policy(&org, &[compartment(w), ZEROS]))
                .unwrap()
                .to_string()
        );
        // Validated once (no propagation delay here) and again on attach:
        // four denied probes each, all findable by the documented filter.
        assert_eq!(rec.validation_attempts, 1);
        let denied = denied_probes(&stack);
        assert_eq!(denied.len(), 8, "{reading:?}: {denied:?}");
        assert!(denied.iter().all(|e| {
            e["requestParameters"]["encryptionContext"]["associatedData"] == "Y21lay12YWxpZGF0aW9u"
                && e["userIdentity"]["accountId"] == "915198916910"
                && e["resources"][0]["ARN"] == arn.as_str()
        }));
        assert_eq!(stack.admin.live_traffic(ws.as_str()).await, Ok(()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_august_key_that_protects_data_is_upgraded_when_adopted_and_nobody_loses_access() {
    let stack = stack("contract-upgrade", |o| {
        o.sandbox.orgs[0].workspaces = 4;
        o.sandbox.contract = ContractConfig {
            contract: Contract::August2026,
            ..ContractConfig::default()
        };
    })
    .await;
    let all = workspaces(&stack);
    let (a, b, a2) = (&all[0], &all[1], &all[2]);
    let (ws_a, ws_b, ws_a2) = (workspace_id(a), workspace_id(b), workspace_id(a2));
    let admin = stack.admin_client();
    // Under the August 2026 contract: a key set up by hand for workspace A,
    // validated and attached; A's data is written under it. A second one,
    // the same way, for A2 (the negative control below).
    let mut keys = Vec::new();
    for (w, ws) in [(a, &ws_a), (a2, &ws_a2)] {
        // Tagged: its owner lets the provisioner manage its policy later.
        let arn = key_tagged_for_adoption(&stack, Some(&august_policy(&[compartment(w)]))).await;
        let reg = admin
            .create_external_key("by hand", cmek::geo::Geo::Us, &arn.parse().unwrap())
            .await
            .unwrap();
        let id = reg.id.parse().unwrap();
        assert!(admin.validate_external_key(&id).await.unwrap().succeeded());
        admin.attach_key(ws, &id).await.unwrap();
        keys.push(arn);
    }
    let (arn, control) = (&keys[0], &keys[1]);

    // Anthropic's documentation moves on.
    stack.admin.set_contract(ContractConfig::default());
    let org = org_uuid(&stack).to_string();
    assert_eq!(stack.admin.live_traffic(ws_a.as_str()).await, Ok(()));

    // Negative control: rewriting the policy to today's documented form for
    // both workspaces, without the existing-data statement, would cut A2 off
    // from the data it wrote before. The check can see that.
    stack
        .kms()
        .put_key_policy()
        .key_id(control)
        .policy_name("default")
        .policy(current_policy(&org, &[compartment(a2), compartment(b), ZEROS]))
        .send()
        .await
        .unwrap();
    let cut_off = stack.admin.live_traffic(ws_a2.as_str()).await.unwrap_err();
    assert!(cut_off.contains("before the organization condition"), "{cut_off}");

    // Adopt the key for B: it validates and attaches, and A keeps everything.
    let result = stack
        .run(&json!({"workspaceId": ws_b, "keyArn": arn}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        result.status,
        "SUCCEEDED",
        "{result:?} — {}",
        dump_on_failure(&stack)
    );
    assert_eq!(stack.admin.live_traffic(ws_a.as_str()).await, Ok(()));
    assert_eq!(stack.admin.live_traffic(ws_b.as_str()).await, Ok(()));
    assert_eq!(stack.admin.state()["attach_warnings"], json!([]));
    let policy = policy_of(&stack, arn).await;
    let crypto = &policy["Statement"][1];
    assert_eq!(crypto["Condition"]["StringEquals"][ORG_KEY], json!([org]));
    assert_eq!(
        crypto["Condition"]["StringEqualsIfExists"][COMP_KEY],
        json!([ZEROS, compartment(a), compartment(b)])
    );
    assert!(crypto["Condition"]["StringEquals"].get(COMP_KEY).is_none());
    let existing = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == EXISTING_DATA)
        .expect("existing-data statement");
    assert_eq!(existing["Action"], "kms:Decrypt");
    assert_eq!(
        existing["Condition"]["StringEquals"][COMP_KEY],
        json!([compartment(a)])
    );
    // What changed, and why, is in B's audit trail; A's record is untouched.
    let rec = record(&stack, &ws_b).await;
    assert_eq!(rec.key_protects, vec![compartment(a).parse().unwrap()]);
    let updated = events(&stack, &ws_b)
        .await
        .into_iter()
        .find(|e| e.outcome == "policy_updated")
        .unwrap();
    assert!(
        updated.detail["changes"].to_string().contains(EXISTING_DATA),
        "{}",
        updated.detail
    );
    assert_eq!(
        admin
            .get_workspace(&ws_a)
            .await
            .unwrap()
            .external_key_id
            .as_deref(),
        Some(
            external_keys(&stack)
                .iter()
                .find(|k| k["provider_config"]["kms_arn"] == arn.as_str())
                .unwrap()["id"]
                .as_str()
                .unwrap()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_without_the_org_condition_is_refused_unless_its_policy_is_managed() {
    let stack = stack("contract-no-org", |_| {}).await;
    let w = &workspaces(&stack)[0];
    let ws = workspace_id(w);
    let original = august_policy(&[compartment(w)]);
    let arn = key_made_by_hand(&stack, Some(&original)).await;

    // Managed elsewhere: refused before registration, policy untouched.
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
        err.contains("NO_ORG_CONDITION") && err.contains("validation refuses"),
        "{err}"
    );
    assert_eq!(
        calls(&stack, "POST", "/external_keys"),
        0,
        "never registered as is"
    );
    assert_eq!(
        policy_of(&stack, &arn).await,
        serde_json::from_str::<Value>(&original).unwrap()
    );

    // Managed (the default) needs the owner's consent, the project's tag:
    // without it, refused before anything is written.
    let untagged = stack
        .run(&json!({"workspaceId": ws, "keyArn": arn}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(untagged.status, "FAILED");
    assert_eq!(untagged.error.as_deref(), Some("KeyNotUsable"), "{untagged:?}");
    assert!(
        untagged
            .cause
            .as_deref()
            .unwrap_or_default()
            .contains("tag the key cmek:managed-by=cmek-provisioner"),
        "{untagged:?}"
    );
    assert_eq!(
        policy_of(&stack, &arn).await,
        serde_json::from_str::<Value>(&original).unwrap()
    );
    tag_for_adoption(&stack, &arn).await;

    // Managed, tagged: upgraded, then validated and attached.
    let upgraded = stack
        .run(&json!({"workspaceId": ws, "keyArn": arn}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        upgraded.status,
        "SUCCEEDED",
        "{upgraded:?} — {}",
        dump_on_failure(&stack)
    );
    let policy = policy_of(&stack, &arn).await;
    assert_eq!(
        policy["Statement"][1]["Condition"]["StringEquals"][ORG_KEY],
        json!([org_uuid(&stack).to_string()])
    );
    assert_eq!(record(&stack, &ws).await.status, Status::Attached);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_wizard_key_is_refused_before_anything_is_registered() {
    let stack = stack("contract-wizard", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    // What the console's "Other AWS accounts" field produces.
    let wizard = json!({"Version": "2012-10-17", "Statement": [root(),
        {"Sid": "Allow use of the key", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::915198916910:root"},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*"}]});
    let arn = key_tagged_for_adoption(&stack, Some(&wizard.to_string())).await;

    // Even with the policy managed: the workflow would add its statements,
    // but the wizard's grant would remain, and validation refuses it. The
    // policy is judged before it is written, so the key is left as it was.
    let refused = stack
        .run(&json!({"workspaceId": ws, "keyArn": arn}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(refused.status, "FAILED");
    let err = record(&stack, &ws).await.last_error.unwrap_or_default();
    assert!(
        err.contains("ACCOUNT_WIDE_PRINCIPAL") && err.contains("EXTRA_ACTIONS"),
        "{err}"
    );
    assert!(!err.contains("acceptFindings"), "no longer acceptable: {err}");
    assert_eq!(policy_of(&stack, &arn).await, wizard);

    // Accepting it is refused as bad input, by name.
    let accepted = stack
        .run(
            &json!({"workspaceId": ws, "keyArn": arn, "acceptFindings": ["ACCOUNT_WIDE_PRINCIPAL", "EXTRA_ACTIONS"]}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(accepted.status, "FAILED");
    let states = stack.states_entered(&accepted.arn).await.unwrap();
    assert!(!states.contains(&"CreateKey".to_owned()), "{states:?}");
    assert!(
        stack
            .function_logs()
            .contains("acceptFindings: ACCOUNT_WIDE_PRINCIPAL cannot be accepted"),
        "{}",
        dump_on_failure(&stack)
    );
    // The stand-in's raw log, failed answers included: no registration was even attempted.
    assert!(
        stack
            .admin
            .requests()
            .iter()
            .all(|r| !(r.method == "POST" && r.path == "/v1/organizations/external_keys"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organization_endpoint_answering_garbage_creates_nothing_anywhere() {
    for garbage in [
        json!({"type": "organization", "id": "org_6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13"}),
        json!({"type": "organization", "id": "<html>maintenance</html>"}),
        json!({"type": "organization"}),
    ] {
        let stack = stack("contract-org-garbage", |o| {
            o.sandbox.faults = Faults {
                organization_response: Some(garbage.clone()),
                ..Faults::default()
            };
        })
        .await;
        let ws = workspace_id(&workspaces(&stack)[0]);
        let result = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
        assert_eq!(result.status, "FAILED", "{garbage}");
        let states = stack.states_entered(&result.arn).await.unwrap();
        assert_eq!(
            states.iter().filter(|s| *s == "CreateKey").count(),
            0,
            "{states:?}"
        );
        // The named error reaches the result event and the logs; nothing exists.
        assert!(
            stack.function_logs().contains("InvalidOrganization"),
            "{garbage}: {}",
            dump_on_failure(&stack)
        );
        assert_eq!(all_keys(&stack).await, 0, "{garbage}");
        assert!(
            stack.admin.requests().iter().all(|r| r.method == "GET"),
            "{garbage}"
        );
        assert!(
            stack.store().load(&ws).await.unwrap().is_none(),
            "{garbage}: no record"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attach_anthropic_refuses_goes_to_diagnose_and_attaches_nothing() {
    let stack = stack("contract-attach-refused", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    // Anthropic's own check at attach time refuses the key (scripted: the
    // stand-in's real check passes for a key this workflow made).
    stack.admin.set_faults(Faults {
        scripted: vec![sandbox::admin_api::Scripted {
            method: "POST".into(),
            path_suffix: format!("/workspaces/{ws}"),
            status: 400,
            times: 1,
            after_effect: false,
            message: Some(
                "external_key_id: the key failed validation and was not attached: AccessDeniedException (scripted)".into(),
            ),
            retry_after_secs: None,
            error_code: Some("external_key_validation_failed".into()),
        }],
        ..Faults::default()
    });
    let result = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(result.status, "FAILED", "{result:?}");
    let states = stack.states_entered(&result.arn).await.unwrap();
    let tail: Vec<&str> = states
        .iter()
        .map(String::as_str)
        .skip_while(|s| *s != "AttachKey")
        .collect();
    assert_eq!(&tail[..3], ["AttachKey", "Diagnose", "Finish"], "{states:?}");
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Failed);
    assert!(
        rec.last_error
            .unwrap_or_default()
            .contains("failed validation and was not attached")
    );
    assert!(rec.diagnosis.is_some(), "Diagnose recorded its finding");
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
    // Exactly one attach was sent: a refusal is not retried.
    let attaches = stack
        .admin
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(ws.as_str()))
        .count();
    assert_eq!(attaches, 1);
}
