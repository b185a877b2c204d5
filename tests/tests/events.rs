//! `events/` cannot drift: every sample parses into the type its function
//! reads, and a step event drives the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::PathBuf;

use cmek::workflow::{CreationRequest, ProvisionRequest, StepInput};
use serde_json::Value;

fn events_dir() -> PathBuf {
    sandbox::stack::repo_root().join("events")
}

fn load(name: &str) -> Value {
    let path = events_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn execution_inputs_parse_as_requests() {
    for name in [
        "manual-execution.json",
        "reuse-key-execution.json",
        "adopt-key-managed-elsewhere.json",
    ] {
        ProvisionRequest::from_value(&load(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let create = load("create-workspace-execution.json");
    assert!(CreationRequest::is_creation(&create));
    CreationRequest::from_value(&create).unwrap_or_else(|e| panic!("create-workspace-execution.json: {e}"));
    let err = ProvisionRequest::from_value(&load("malformed-execution.json")).unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains("roleArn"), "{err}");
}

#[test]
fn step_inputs_parse() {
    for bin in [
        "begin",
        "create-key",
        "register-key",
        "validate-key",
        "diagnose-key",
        "attach-key",
        "finish",
    ] {
        let v = load(&format!("{bin}.json"));
        StepInput::from_value(&v).unwrap_or_else(|e| panic!("{bin}.json: {e}"));
    }
    let finish = load("finish.json");
    let cause: Value = serde_json::from_str(finish["error"]["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(cause["errorType"], finish["error"]["Error"]);
}

#[test]
fn every_file_in_events_is_covered() {
    let covered = [
        "README.md",
        "manual-execution.json",
        "reuse-key-execution.json",
        "adopt-key-managed-elsewhere.json",
        "malformed-execution.json",
        "begin.json",
        "create-key.json",
        "register-key.json",
        "validate-key.json",
        "diagnose-key.json",
        "attach-key.json",
        "finish.json",
        "custom-resource-create.json",
        "custom-resource-update.json",
        "custom-resource-delete.json",
        "create-workspace-execution.json",
        "custom-resource-workspace-create.json",
        "cloudtrail-schedule-key-deletion.json",
        "cloudtrail-disable-key.json",
        "cloudtrail-put-key-policy.json",
        "cloudtrail-validation-probe.json",
        "scheduled-event.json",
    ];
    for entry in std::fs::read_dir(events_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            covered.contains(&name.as_str()),
            "events/{name} has no test: add it here"
        );
    }
}

#[test]
fn custom_resource_requests_parse() {
    for name in [
        "custom-resource-create.json",
        "custom-resource-update.json",
        "custom-resource-delete.json",
    ] {
        let v = load(name);
        let e: cmek::cloudformation::Envelope =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        cmek::cloudformation::check_response_url(&e.response_url).unwrap();
        assert_eq!(v["ResourceType"], "Custom::AnthropicCmek");
    }
    let v = load("custom-resource-workspace-create.json");
    let e: cmek::cloudformation::Envelope = serde_json::from_value(v.clone()).unwrap();
    cmek::cloudformation::check_response_url(&e.response_url).unwrap();
    assert_eq!(
        v["ResourceType"],
        cmek::triggers::workspace_resource::RESOURCE_TYPE
    );
}

#[test]
fn cloudtrail_and_schedule_events_have_the_shapes_the_functions_read() {
    for name in [
        "cloudtrail-schedule-key-deletion.json",
        "cloudtrail-disable-key.json",
        "cloudtrail-put-key-policy.json",
        "cloudtrail-validation-probe.json",
    ] {
        let v = load(name);
        assert_eq!(v["detail-type"], "AWS API Call via CloudTrail", "{name}");
        assert_eq!(v["source"], "aws.kms");
        assert!(
            v["detail"]["resources"][0]["ARN"]
                .as_str()
                .unwrap()
                .parse::<cmek::ids::KeyArn>()
                .is_ok()
        );
        assert!(v["detail"]["eventName"].is_string());
    }
    // The validation probe matches the documented three-field filter.
    let probe = &load("cloudtrail-validation-probe.json")["detail"];
    assert_eq!(
        probe["requestParameters"]["encryptionContext"]["associatedData"],
        "Y21lay12YWxpZGF0aW9u"
    );
    assert_eq!(probe["userIdentity"]["accountId"], "915198916910");
    assert_eq!(probe["errorCode"], "AccessDenied");
    assert_eq!(load("scheduled-event.json")["detail-type"], "Scheduled Event");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_begin_binary_takes_its_sample_event() {
    // As `cargo lambda invoke begin --data-file events/begin.json` would: by
    // binary name, against the local Lambda endpoint. The sample workspace
    // does not exist in the stand-in, so the real function answers with the
    // named error.
    let stack = cmek_e2e::stack("events", |_| {}).await;
    let resp = cmek::tls::http_client()
        .unwrap()
        .post(format!(
            "{}/2015-03-31/functions/begin/invocations",
            stack.host.url
        ))
        .body(load("begin.json").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("X-Amz-Function-Error").unwrap(), "Unhandled");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorType"], "WorkspaceNotFound", "{body}");
}
