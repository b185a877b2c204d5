//! The malformed-input table: every way a trigger can hand us garbage —
//! wrong types, huge strings, unicode tricks, injection attempts in ids, ARNs
//! of other services or partitions, non-UUID compartments, placeholders — at
//! each entry point (state machine input, EventBridge event, CloudFormation
//! request). Each case must end with a named error, and after each one KMS,
//! the Admin API and DynamoDB are inspected: nothing was created or changed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek_e2e::*;
use sandbox::stack::LocalStack;
use serde_json::{Value, json};

const UUID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

/// Nothing in KMS, no write to the Admin API, nothing in DynamoDB.
async fn assert_nothing_changed(stack: &LocalStack, case: &str) {
    let keys = stack.kms().list_keys().send().await.unwrap();
    assert!(keys.keys().is_empty(), "{case}: a KMS key exists");
    let writes: Vec<String> = stack
        .admin
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "{case}: Admin API writes {writes:?}");
    assert!(external_keys(stack).is_empty(), "{case}: a registration exists");
    assert!(
        workspaces(stack).iter().all(|w| w["external_key_id"].is_null()),
        "{case}: a workspace is attached"
    );
    let items = aws_sdk_dynamodb::Client::new(&stack.sdk)
        .scan()
        .table_name(&stack.table_name)
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 0, "{case}: DynamoDB items {:?}", items.items());
}

/// The error Begin failed with, from the execution history.
async fn begin_error(stack: &LocalStack, arn: &str) -> Option<String> {
    cmek::aws::execution_history(&stack.sfn(), arn)
        .await
        .unwrap()
        .iter()
        .find_map(|e| e.lambda_function_failed_event_details().and_then(|d| d.error()))
        .map(str::to_owned)
}

fn execution_cases(ws: &str) -> Vec<(&'static str, Value, &'static str)> {
    let arn = |s: &str| json!({"workspaceId": ws, "keyArn": s});
    vec![
        // Wrong types and shapes.
        ("not an object", json!("wrkspc_1"), "InvalidInput"),
        ("array", json!([ws]), "InvalidInput"),
        ("null workspace", json!({"workspaceId": null}), "InvalidInput"),
        ("numeric workspace", json!({"workspaceId": 42}), "InvalidInput"),
        (
            "numeric display name",
            json!({"workspaceId": ws, "displayName": 7}),
            "InvalidInput",
        ),
        (
            "string boolean",
            json!({"workspaceId": ws, "manageKeyPolicy": "yes"}),
            "InvalidInput",
        ),
        (
            "list key arn",
            json!({"workspaceId": ws, "keyArn": [UUID]}),
            "InvalidInput",
        ),
        (
            "unknown finding",
            json!({"workspaceId": ws, "keyArn": format!("arn:aws:kms:us-east-2:123456789012:key/{UUID}"), "acceptFindings": ["EVERYTHING"]}),
            "InvalidInput",
        ),
        (
            "accept without key",
            json!({"workspaceId": ws, "acceptFindings": ["ACCOUNT_WIDE_PRINCIPAL"]}),
            "InvalidInput",
        ),
        (
            "accept an error",
            json!({"workspaceId": ws, "keyArn": format!("arn:aws:kms:us-east-2:123456789012:key/{UUID}"), "acceptFindings": ["MISSING_ANTHROPIC_ROLE"]}),
            "InvalidInput",
        ),
        // Fields that must never be taken from input.
        (
            "anthropic role override",
            json!({"workspaceId": ws, "roleArn": "arn:aws:iam::666666666666:role/attacker"}),
            "InvalidInput",
        ),
        (
            "compartment override",
            json!({"workspaceId": ws, "compartmentId": "not-a-uuid"}),
            "InvalidInput",
        ),
        (
            "compartment uuid override",
            json!({"workspaceId": ws, "compartmentId": UUID}),
            "InvalidInput",
        ),
        // Huge strings.
        (
            "long display name",
            json!({"workspaceId": ws, "displayName": "x".repeat(256)}),
            "InvalidInput",
        ),
        (
            "huge input",
            json!({"workspaceId": ws, "displayName": "x".repeat(40_000)}),
            "InvalidInput",
        ),
        (
            "huge workspace id",
            json!({"workspaceId": format!("wrkspc_{}", "a".repeat(5000))}),
            "InvalidInput",
        ),
        // Unicode.
        (
            "unicode workspace id",
            json!({"workspaceId": "wrkspc_ünïcødé"}),
            "InvalidInput",
        ),
        (
            "nul in display name",
            json!({"workspaceId": ws, "displayName": "prod\u{0}"}),
            "InvalidInput",
        ),
        (
            "bidi override in display name",
            json!({"workspaceId": ws, "displayName": "\u{202E}dorp"}),
            "InvalidInput",
        ),
        (
            "zero-width in display name",
            json!({"workspaceId": ws, "displayName": "pr\u{200B}od"}),
            "InvalidInput",
        ),
        (
            "empty display name",
            json!({"workspaceId": ws, "displayName": ""}),
            "InvalidInput",
        ),
        // Injection attempts in ids.
        (
            "path traversal",
            json!({"workspaceId": "wrkspc_../../external_keys"}),
            "InvalidInput",
        ),
        (
            "encoded slash",
            json!({"workspaceId": "wrkspc_1%2Fexternal_keys"}),
            "InvalidInput",
        ),
        (
            "query injection",
            json!({"workspaceId": "wrkspc_1?limit=1000"}),
            "InvalidInput",
        ),
        (
            "quote injection",
            json!({"workspaceId": "wrkspc_1\" OR \"1\"=\"1"}),
            "InvalidInput",
        ),
        (
            "newline",
            json!({"workspaceId": "wrkspc_1\nX-Api-Key: x"}),
            "InvalidInput",
        ),
        (
            "template injection",
            json!({"workspaceId": "wrkspc_{{7*7}}"}),
            "InvalidInput",
        ),
        // ARNs of other services, partitions and key kinds.
        ("s3 arn", arn("arn:aws:s3:::bucket"), "InvalidInput"),
        ("iam arn", arn("arn:aws:iam::123456789012:role/x"), "InvalidInput"),
        (
            "china partition",
            arn(&format!("arn:aws-cn:kms:cn-north-1:123456789012:key/{UUID}")),
            "InvalidInput",
        ),
        (
            "govcloud partition",
            arn(&format!(
                "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/{UUID}"
            )),
            "InvalidInput",
        ),
        (
            "alias arn",
            arn("arn:aws:kms:us-east-2:123456789012:alias/anthropic"),
            "InvalidInput",
        ),
        (
            "multi-region key",
            arn("arn:aws:kms:us-east-2:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"),
            "InvalidInput",
        ),
        ("bare key id", arn(UUID), "InvalidInput"),
        (
            "key id not a uuid",
            arn("arn:aws:kms:us-east-2:123456789012:key/not-a-uuid"),
            "InvalidInput",
        ),
        // Placeholders copied from documentation.
        (
            "angle placeholder",
            json!({"workspaceId": "<workspace-id>"}),
            "InvalidInput",
        ),
        (
            "substitution placeholder",
            json!({"workspaceId": "${WorkspaceId}"}),
            "InvalidInput",
        ),
        (
            "example workspace id",
            json!({"workspaceId": "wrkspc_01JExampleWorkspace000000000"}),
            "WorkspaceNotFound",
        ),
        (
            "xxx workspace id",
            json!({"workspaceId": "wrkspc_XXXXXXXXXXXXXXXXXXXXXXXX"}),
            "WorkspaceNotFound",
        ),
        (
            "documentation key arn",
            arn(&format!("arn:aws:kms:us-east-2:111122223333:key/{UUID}")),
            "KeyNotUsable",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_malformed_input_gets_a_named_error_and_changes_nothing() {
    let stack = stack("bad-input", |o| o.bus_rules = false).await;
    let ws = workspace_id(&workspaces(&stack)[0]).to_string();
    let catcher = ResponseCatcher::start().await;
    let mut checked = 0;

    // State machine input (manual runs; EventBridge and CloudFormation end here too).
    for (case, input, expected) in execution_cases(&ws) {
        let r = stack.run(&input, TIMEOUT).await.unwrap();
        assert_eq!(r.status, "FAILED", "{case}: {r:?}");
        assert_eq!(
            begin_error(&stack, &r.arn).await.as_deref(),
            Some(expected),
            "{case}: {input}"
        );
        assert_nothing_changed(&stack, case).await;
        checked += 1;
    }

    // EventBridge events, straight to the function the rule targets.
    let event = |detail: Value, detail_type: &str| {
        json!({"version": "0", "id": "evt", "detail-type": detail_type, "source": "my-vending-tool",
               "account": "123456789012", "time": "2026-11-28T00:00:00Z", "region": "us-east-2",
               "resources": [], "detail": detail})
    };
    for (case, e) in [
        (
            "wrong detail-type",
            event(json!({"workspaceId": ws}), "Workspace Created"),
        ),
        (
            "no detail",
            json!({"id": "evt", "detail-type": "Workspace Discovered"}),
        ),
        (
            "detail not an object",
            event(json!("wrkspc_1"), "Workspace Discovered"),
        ),
        (
            "injected id",
            event(json!({"workspaceId": "wrkspc_1/../x"}), "Workspace Discovered"),
        ),
        (
            "numeric id",
            event(json!({"workspaceId": 7}), "Workspace Discovered"),
        ),
        (
            "huge name",
            event(
                json!({"workspaceId": ws, "displayName": "é".repeat(10_000)}),
                "Workspace Discovered",
            ),
        ),
        (
            "role override",
            event(
                json!({"workspaceId": ws, "roleArn": "arn:aws:iam::666666666666:role/x"}),
                "Workspace Discovered",
            ),
        ),
        (
            "control chars",
            event(
                json!({"workspaceId": ws, "displayName": "a\u{7}b"}),
                "Workspace Discovered",
            ),
        ),
    ] {
        let (err, body) = invoke(&stack, "StartFromEventFunction", &e).await;
        assert_eq!(err.as_deref(), Some("InvalidInput"), "{case}: {body}");
        assert_nothing_changed(&stack, case).await;
        checked += 1;
    }

    // CloudFormation requests: answered FAILED at once, naming the error.
    for (i, (case, props)) in [
        ("injected id", json!({"WorkspaceId": "wrkspc_1;rm -rf /"})),
        ("other partition", json!({"WorkspaceId": ws, "KeyArn": format!("arn:aws-cn:kms:cn-north-1:123456789012:key/{UUID}")})),
        ("role override", json!({"WorkspaceId": ws, "RoleArn": "arn:aws:iam::666666666666:role/x"})),
        ("compartment override", json!({"WorkspaceId": ws, "CompartmentId": "not-a-uuid"})),
        ("bidi name", json!({"WorkspaceId": ws, "DisplayName": "\u{202E}dorp"})),
        ("list id", json!({"WorkspaceId": [ws]})),
        ("placeholder", json!({"WorkspaceId": "<your-workspace>"})),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bad-{i}");
        let request = json!({
            "RequestType": "Create",
            "ServiceToken": "arn:aws:lambda:us-east-2:123456789012:function:CustomResourceFunction",
            "ResponseURL": catcher.url_for(&id), "RequestId": id,
            "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/app/1",
            "LogicalResourceId": "WorkspaceKey", "ResourceType": "Custom::AnthropicCmek",
            "ResourceProperties": props,
        });
        let (err, body) = invoke(&stack, "CustomResourceFunction", &request).await;
        assert_eq!(err, None, "{case}: {body}");
        let answer = catcher.wait(&id, std::time::Duration::from_secs(10)).await;
        assert_eq!(answer["Status"], "FAILED", "{case}: {answer}");
        assert!(
            answer["Reason"].as_str().unwrap().contains("InvalidInput"),
            "{case}: {answer}"
        );
        assert_nothing_changed(&stack, case).await;
        checked += 1;
    }
    // The request itself malformed (CloudFormation never sends these, a
    // hand-made invoke might): still answered FAILED, naming the field.
    for (i, (case, strip, field)) in [
        ("no ResourceType", "ResourceType", "ResourceType"),
        (
            "no ResourceProperties",
            "ResourceProperties",
            "ResourceProperties",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bad-request-{i}");
        let mut request = json!({
            "RequestType": "Create",
            "ResponseURL": catcher.url_for(&id), "RequestId": id,
            "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/app/1",
            "LogicalResourceId": "WorkspaceKey", "ResourceType": "Custom::AnthropicCmek",
            "ResourceProperties": {"WorkspaceId": ws},
        });
        request.as_object_mut().unwrap().remove(strip);
        let (err, body) = invoke(&stack, "CustomResourceFunction", &request).await;
        assert_eq!(err, None, "{case}: {body}");
        let answer = catcher.wait(&id, std::time::Duration::from_secs(10)).await;
        assert_eq!(answer["Status"], "FAILED", "{case}: {answer}");
        let reason = answer["Reason"].as_str().unwrap();
        assert!(
            reason.contains("InvalidInput") && reason.contains(field),
            "{case}: {answer}"
        );
        assert_nothing_changed(&stack, case).await;
        checked += 1;
    }
    figure(
        "bad_input",
        &format!(
            "BAD INPUT: {checked} cases, each refused with a named error, KMS/Admin API/DynamoDB unchanged"
        ),
    );
}
