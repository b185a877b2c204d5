//! Anthropic's typed error codes (`error.details.error_code`), each on the
//! routes it can occur on, through the stand-in and the real functions:
//! retried (and then attached once), refused by name (nothing attached, the
//! call made once), or sent to Diagnose (which names the cause). The codes'
//! meanings come from the SDKs' error classes and the CMEK troubleshooting
//! page (see `cmek::admin_api::error_code`); the stand-in sends them, on the
//! routes given, from a script.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::store::Status;
use cmek_e2e::*;
use sandbox::admin_api::{ContractConfig, Faults, MissingKey, Scripted, UserProfileBinding};
use sandbox::stack::LocalStack;
use serde_json::{Value, json};

/// What must become of a workflow whose route answered the code.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Sent again: the workspace ends attached, exactly once.
    Retried,
    /// Stopped with this errorType, without Diagnose; nothing attached.
    Refused(&'static str),
    /// Sent to Diagnose, which names this cause; nothing attached.
    Diagnosed(&'static str),
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Register,
    Validate,
    Attach,
}

struct Case {
    code: &'static str,
    status: u16,
    route: Route,
    times: u32,
    outcome: Outcome,
}

const fn case(code: &'static str, status: u16, route: Route, outcome: Outcome) -> Case {
    Case {
        code,
        status,
        route,
        times: 1,
        outcome,
    }
}

fn script(c: &Case, ws: &str) -> Scripted {
    let path_suffix = match c.route {
        Route::Register => "/external_keys".to_owned(),
        Route::Validate => "/validate".to_owned(),
        Route::Attach => format!("/workspaces/{ws}"),
    };
    Scripted {
        method: "POST".into(),
        path_suffix,
        status: c.status,
        times: c.times,
        after_effect: false,
        // The message does not name the code: the client must read it from
        // `error.details.error_code`.
        message: Some("refused (scripted)".into()),
        retry_after_secs: None,
        error_code: Some(c.code.into()),
    }
}

/// The requests the stand-in received since `from` (an index into its log)
/// on the case's route, whatever they were answered.
fn sent_on_route(
    stack: &LocalStack,
    from: usize,
    c: &Case,
    ws: &str,
) -> Vec<sandbox::admin_api::RecordedRequest> {
    let suffix = script(c, ws).path_suffix;
    stack
        .admin
        .requests()
        .into_iter()
        .skip(from)
        .filter(|r| r.method == "POST" && r.path.ends_with(&suffix))
        .collect()
}

/// Run one workspace through the case and check its outcome.
async fn check(stack: &LocalStack, ws_json: &Value, c: &Case) {
    let ws = workspace_id(ws_json);
    let label = format!("{} on {:?}", c.code, c.route);
    let from = stack.admin.requests().len();
    stack.admin.set_faults(Faults {
        scripted: vec![script(c, ws.as_str())],
        ..Faults::default()
    });
    let result = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    let sent = sent_on_route(stack, from, c, ws.as_str());
    let fired = sent
        .iter()
        .filter(|r| r.fault.as_deref() == Some(&format!("scripted {}", c.status)))
        .count();
    assert_eq!(fired as u32, c.times, "{label}: the scripted answers sent");
    let states = stack.states_entered(&result.arn).await.unwrap();
    let attached = stack
        .admin_client()
        .get_workspace(&ws)
        .await
        .unwrap()
        .external_key_id;
    let rec = record(stack, &ws).await;
    match c.outcome {
        Outcome::Retried => {
            assert_eq!(result.status, "SUCCEEDED", "{label}: {result:?}");
            assert_eq!(rec.status, Status::Attached, "{label}");
            assert_eq!(attached.as_deref(), rec.external_key_id.as_deref(), "{label}");
            assert!(sent.len() > fired, "{label}: sent again after the refusal");
            // Exactly one registration of the key, whatever was sent again.
            let arn = rec.key_arn.clone().unwrap();
            let registrations = effects(stack, "registered")
                .iter()
                .filter(|e| e.ends_with(arn.as_str()))
                .count();
            assert_eq!(registrations, 1, "{label}");
        }
        Outcome::Refused(error) => {
            assert_eq!(result.status, "FAILED", "{label}: {result:?}");
            assert_eq!(result.error.as_deref(), Some(error), "{label}: {result:?}");
            assert!(
                !states.iter().any(|s| s == "Diagnose"),
                "{label}: a permanent refusal is not diagnosed: {states:?}"
            );
            assert_eq!(attached, None, "{label}: nothing attached");
            assert!(
                result.cause.as_deref().unwrap_or_default().contains(c.code),
                "{label}: the cause names the code: {result:?}"
            );
            // The refused call was made once: a permanent refusal is not retried.
            assert_eq!(sent.len(), 1, "{label}: sent {} times", sent.len());
        }
        Outcome::Diagnosed(cause) => {
            assert_eq!(result.status, "FAILED", "{label}: {result:?}");
            assert!(states.iter().any(|s| s == "Diagnose"), "{label}: {states:?}");
            assert_eq!(attached, None, "{label}: nothing attached");
            assert_eq!(sent.len(), 1, "{label}: a refusal of the key is not sent again");
            let diagnosis = rec.diagnosis.clone().unwrap_or_default();
            assert_eq!(diagnosis["cause"], cause, "{label}: {diagnosis}");
        }
    }
    stack.admin.set_faults(Faults::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_code_on_claude_platform_is_retried_refused_or_diagnosed() {
    use Outcome::*;
    use Route::*;
    let cases = [
        case("external_key_validation_timed_out", 400, Register, Retried),
        case("external_key_validation_timed_out", 400, Attach, Retried),
        case("external_key_changed", 409, Attach, Retried),
        case("external_key_changed", 409, Validate, Retried),
        case("cmek_key_unreachable", 503, Attach, Retried),
        case(
            "external_key_provider_mismatch",
            400,
            Register,
            Refused("KeyProviderMismatch"),
        ),
        case(
            "external_key_provider_mismatch",
            400,
            Attach,
            Refused("KeyProviderMismatch"),
        ),
        case("key_profile_mismatch", 400, Attach, Refused("KeyProfileMismatch")),
        case(
            "external_key_not_found",
            400,
            Validate,
            Refused("ExternalKeyNotFound"),
        ),
        case(
            "external_key_validation_failed",
            400,
            Attach,
            Diagnosed("LIKELY_RCP_OR_PROPAGATION"),
        ),
        case(
            "cmek_key_disabled",
            400,
            Attach,
            Diagnosed("LIKELY_RCP_OR_PROPAGATION"),
        ),
        case(
            "cmek_key_network_blocked",
            400,
            Attach,
            Diagnosed("NETWORK_CONDITION"),
        ),
        // A code this version does not know: routed by its status (a 400 at
        // attach is a refusal of the key, as before the codes), and logged.
        case(
            "external_key_frobnicated",
            400,
            Attach,
            Diagnosed("LIKELY_RCP_OR_PROPAGATION"),
        ),
    ];
    let stack = stack("error-codes", |o| o.sandbox.orgs[0].workspaces = cases.len()).await;
    let all = workspaces(&stack);
    for (c, ws) in cases.iter().zip(&all) {
        check(&stack, ws, c).await;
    }
    assert!(
        stack.function_logs().contains("external_key_frobnicated"),
        "an unknown code is logged with the code"
    );
}

/// On Claude Platform on AWS the attach is the validation: only a
/// validation refusal (with a policy that analyses clean) waits for KMS to
/// propagate; every other code takes its own route at once.
#[tokio::test(flavor = "multi_thread")]
async fn on_claude_platform_on_aws_only_a_validation_refusal_waits_for_propagation() {
    use Outcome::*;
    use Route::*;
    let cases = [
        Case {
            times: 2,
            ..case("external_key_validation_failed", 400, Attach, Retried)
        },
        case("external_key_validation_timed_out", 400, Attach, Retried),
        case(
            "external_key_provider_mismatch",
            400,
            Attach,
            Refused("KeyProviderMismatch"),
        ),
        case("key_profile_mismatch", 400, Attach, Refused("KeyProfileMismatch")),
        case(
            "cmek_key_network_blocked",
            400,
            Attach,
            Diagnosed("NETWORK_CONDITION"),
        ),
        case(
            "cmek_key_disabled",
            400,
            Attach,
            Diagnosed("LIKELY_RCP_OR_PROPAGATION"),
        ),
    ];
    let stack = stack("error-codes-on-aws", |o| {
        *o = std::mem::take(o).on_aws();
        o.sandbox.orgs[0].workspaces = cases.len() + 2;
    })
    .await;
    let all = workspaces(&stack);
    for (c, ws) in cases.iter().zip(&all) {
        check(&stack, ws, c).await;
    }
    // The API before the codes: a bare 400 at attach is still a validation
    // refusal that waits for propagation (both readings of the contract).
    stack.admin.set_contract(ContractConfig {
        error_codes: false,
        ..ContractConfig::default()
    });
    check(
        &stack,
        &all[cases.len()],
        &Case {
            times: 2,
            ..case("external_key_validation_failed", 400, Attach, Retried)
        },
    )
    .await;

    // An unregistered key answered as the beta endpoints document (400
    // external_key_not_found) rather than 404: RegisterKey's lookup by ARN
    // still reads it as "not registered" and registers once.
    stack.admin.set_contract(ContractConfig {
        missing_key: MissingKey::ExternalKeyNotFound400,
        ..ContractConfig::default()
    });
    let ws = workspace_id(&all[cases.len() + 1]);
    let result = stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap();
    assert_eq!(result.status, "SUCCEEDED", "{result:?}");
    assert!(
        stack
            .admin
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.status == 400 && r.path.contains("/external_keys/")),
        "the lookup was answered 400 external_key_not_found"
    );
}

/// A workspace or a reused registration with a user profile: refused before
/// the irreversible call, by name ("a key and its Workspace must have the
/// same user profile, or both have none").
#[tokio::test(flavor = "multi_thread")]
async fn a_user_profile_mismatch_is_refused_before_anything_is_attached() {
    let stack = stack("error-codes-profile", |o| {
        *o = std::mem::take(o).on_aws();
        o.sandbox.orgs[0].workspaces = 3;
        o.sandbox.orgs[0].default_workspace = true;
    })
    .await;
    // On this platform too, the Default Workspace (only a GET finds it;
    // the list without it does not) is refused without the opt-in.
    let default = workspaces(&stack)
        .into_iter()
        .find(|w| w["is_default"] == true)
        .unwrap();
    let result = stack
        .run(&json!({"workspaceId": workspace_id(&default)}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        result.error.as_deref(),
        Some("DefaultWorkspaceNotOptedIn"),
        "{result:?}"
    );
    let all: Vec<Value> = workspaces(&stack)
        .into_iter()
        .filter(|w| w["is_default"] != true)
        .collect();
    let (a, b, c) = (
        workspace_id(&all[0]),
        workspace_id(&all[1]),
        workspace_id(&all[2]),
    );

    // A workspace of a user profile: Begin refuses, nothing is created.
    stack
        .admin
        .bind_user_profile(UserProfileBinding {
            org: None,
            workspace: Some(c.to_string()),
            external_key: None,
            user_profile_id: "uprof_01seed".into(),
        })
        .unwrap();
    let keys_before = all_keys(&stack).await.len();
    let result = stack.run(&json!({"workspaceId": c}), TIMEOUT).await.unwrap();
    assert_eq!(result.error.as_deref(), Some("KeyProfileMismatch"), "{result:?}");
    assert_eq!(all_keys(&stack).await.len(), keys_before, "no key created");

    // A key shared with a workspace already attached; its registration is
    // then bound to a user profile. Reusing it for another workspace stops
    // at RegisterKey, before the attach.
    let first = stack.run(&json!({"workspaceId": a}), TIMEOUT).await.unwrap();
    assert_eq!(first.status, "SUCCEEDED", "{first:?}");
    let arn = record(&stack, &a).await.key_arn.unwrap().to_string();
    stack
        .admin
        .bind_user_profile(UserProfileBinding {
            org: None,
            workspace: None,
            external_key: Some(arn.clone()),
            user_profile_id: "uprof_01seed".into(),
        })
        .unwrap();
    let result = stack
        .run(&json!({"workspaceId": b, "keyArn": arn}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(result.error.as_deref(), Some("KeyProfileMismatch"), "{result:?}");
    assert_eq!(
        calls(&stack, "POST", &format!("/workspaces/{b}")),
        0,
        "no attach sent"
    );
    let ws_b = stack.admin_client().get_workspace(&b).await.unwrap();
    assert_eq!(ws_b.external_key_id, None);
}

/// Cause 4 of cmek_key_disabled: Anthropic's grant under an IP condition.
/// The stand-in's evaluator denies Anthropic's requests (they do not come
/// from the listed addresses); Diagnose names the network condition.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_policy_with_an_ip_condition_is_diagnosed_by_name() {
    let stack = stack("error-codes-ip", |_| {}).await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let compartment = workspaces(&stack)[0]["compartment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", sandbox::stack::ACCOUNT)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": role}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:org_uuid": [org_uuid(&stack).to_string()]},
                       "StringEqualsIfExists": {"kms:EncryptionContext:anthropic:compartment_uuid": [compartment, "00000000-0000-0000-0000-000000000000"]},
                       "IpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}}},
        {"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:DescribeKey", "Resource": "*"}
    ]});
    let arn = key_made_by_hand(&stack, Some(&policy.to_string())).await;
    let input = json!({"workspaceId": ws, "keyArn": arn, "manageKeyPolicy": false});
    let result = stack.run(&input, TIMEOUT).await.unwrap();
    assert_eq!(result.status, "FAILED", "{result:?}");
    let rec = record(&stack, &ws).await;
    let diagnosis = rec.diagnosis.unwrap();
    assert_eq!(diagnosis["cause"], "NETWORK_CONDITION", "{diagnosis}");
    assert!(
        diagnosis["summary"].as_str().unwrap().contains("aws:SourceIp"),
        "{diagnosis}"
    );
    assert_eq!(
        stack
            .admin_client()
            .get_workspace(&ws)
            .await
            .unwrap()
            .external_key_id,
        None
    );
}
