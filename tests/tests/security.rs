//! The admin key never leaves its secret: across a run that succeeds, one
//! that fails on a wrong key (401s), one under Admin API faults, and
//! CloudFormation requests for each, the key appears in no function log line,
//! no execution history (inputs, outputs, errors), no event on the bus, no
//! DynamoDB item and no CloudFormation response.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use cmek_e2e::*;
use serde_json::{Value, json};

const WRONG_KEY: &str = "sk-ant-admin01-WRONG-KEY-that-must-not-leak-either-0000000";
const FUNCTIONS_WITH_THE_KEY: &[&str] = &[
    "BeginFunction",
    "RegisterKeyFunction",
    "ValidateKeyFunction",
    "DiagnoseKeyFunction",
    "AttachKeyFunction",
    "CustomResourceFunction",
];

fn cfn(catcher: &ResponseCatcher, id: &str, ws: &str) -> Value {
    json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:us-east-2:123456789012:function:CustomResourceFunction",
        "ResponseURL": catcher.url_for(id), "RequestId": id,
        "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/app/1",
        "LogicalResourceId": "WorkspaceKey", "ResourceType": "Custom::AnthropicCmek",
        "ResourceProperties": {"ServiceToken": "x", "WorkspaceId": ws},
    })
}

async fn set_secret(stack: &sandbox::stack::LocalStack, value: &str) {
    aws_sdk_secretsmanager::Client::new(&stack.sdk)
        .put_secret_value()
        .secret_id(&stack.secret_arn)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    // Functions read the key at cold start: make the next invoke start fresh.
    for f in FUNCTIONS_WITH_THE_KEY {
        stack.host.kill_function(f);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_key_appears_nowhere_after_success_failure_and_faults() {
    let stack = stack("key-leak", |o| o.sandbox.orgs[0].workspaces = 5).await;
    let catcher = ResponseCatcher::start().await;
    let (sqs, queue) = capture(&stack, json!({"source": ["cmek-provisioner"]})).await;
    let all = workspaces(&stack);
    let ids: Vec<String> = all.iter().map(|w| w["id"].as_str().unwrap().to_owned()).collect();

    // 1. A wrong key: every Admin API call is refused with 401.
    set_secret(&stack, WRONG_KEY).await;
    let failed = stack.run(&json!({"workspaceId": ids[0]}), TIMEOUT).await.unwrap();
    assert_eq!(failed.status, "FAILED");
    let (error, out) = invoke(
        &stack,
        "CustomResourceFunction",
        &cfn(&catcher, "wrong-key", &ids[0]),
    )
    .await;
    assert_eq!(error, None, "{out}");
    let answer = catcher.wait("wrong-key", TIMEOUT).await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(
        stack.admin.requests().iter().any(|r| r.status == 401),
        "the wrong key was really used"
    );

    // 2. The right key: a CloudFormation create that succeeds.
    set_secret(&stack, &stack.admin_key).await;
    let (error, out) = invoke(&stack, "CustomResourceFunction", &cfn(&catcher, "ok", &ids[1])).await;
    assert_eq!(error, None, "{out}");
    let answer = catcher.wait("ok", TIMEOUT).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");

    // 3. Faults: errors carrying request ids and messages flow everywhere.
    stack.admin.set_faults(sandbox::admin_api::Faults {
        rate_429: 0.2,
        rate_500: 0.2,
        rate_529: 0.1,
        retry_after_secs: Some(1.0),
        ..Default::default()
    });
    // Faults are drawn per request: one run of five or so requests draws
    // none about 3 % of the time, so run further workspaces until one is.
    let injected =
        |stack: &sandbox::stack::LocalStack| stack.admin.requests().iter().any(|r| r.fault.is_some());
    let mut runs = Vec::new();
    for ws in &ids[2..] {
        runs.push(stack.run(&json!({"workspaceId": ws}), TIMEOUT).await.unwrap());
        if injected(&stack) {
            break;
        }
    }
    stack.admin.set_faults(Default::default());
    assert!(injected(&stack), "no fault was drawn in {} runs", runs.len());
    let faulty = runs.pop().unwrap();

    // Everything that left the functions.
    let mut seen = String::new();
    seen.push_str(&stack.function_logs());
    let sfn = stack.sfn();
    for (arn, _, _) in executions(&stack).await {
        let history = cmek::aws::execution_history(&sfn, &arn).await.unwrap();
        seen.push_str(&format!("{history:?}"));
        let d = sfn.describe_execution().execution_arn(&arn).send().await.unwrap();
        seen.push_str(&format!("{d:?}"));
    }
    let items = aws_sdk_dynamodb::Client::new(&stack.sdk)
        .scan()
        .table_name(&stack.table_name)
        .send()
        .await
        .unwrap();
    seen.push_str(&format!("{:?}", items.items()));
    // Wait for the result event itself, not a fixed time.
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !events
        .iter()
        .any(|e: &serde_json::Value| e["detail-type"] == "CMEK Provisioning Failed")
        && std::time::Instant::now() < deadline
    {
        events.extend(drain(&sqs, &queue).await);
    }
    assert!(
        events
            .iter()
            .any(|e| e["detail-type"] == "CMEK Provisioning Failed"),
        "result events were captured: {events:?}"
    );
    seen.push_str(&serde_json::to_string(&events).unwrap());
    for id in ["wrong-key", "ok"] {
        seen.push_str(&serde_json::to_string(&catcher.responses(id)).unwrap());
    }
    assert!(
        seen.len() > 10_000,
        "the capture is not empty ({} bytes)",
        seen.len()
    );
    assert!(seen.contains("ProvisioningFailed"), "failures were captured");
    let leaked = |text: &str, secret: &str| text.contains(secret) || text.contains(&secret[..24]);
    for (name, secret) in [("admin key", stack.admin_key.as_str()), ("wrong key", WRONG_KEY)] {
        // Nor a recognisable part of it.
        assert!(!leaked(&seen, secret), "the {name} (or a prefix of it) leaked");
    }
    // Positive control: the key written into a function's log (which the
    // capture reads) is found by the same search; the log is then restored.
    let log = stack.log_dir.join("functions/BeginFunction.log");
    let original = std::fs::read(&log).unwrap();
    std::fs::write(
        &log,
        [
            original.as_slice(),
            format!("planted {}\n", stack.admin_key).as_bytes(),
        ]
        .concat(),
    )
    .unwrap();
    let planted = stack.function_logs();
    std::fs::write(&log, &original).unwrap();
    assert!(
        leaked(&planted, &stack.admin_key),
        "the search missed a key planted in a log it reads"
    );
    figure(
        "security",
        &format!(
            "KEY LEAK CHECK: {} bytes of logs, histories, items, {} events and {} CloudFormation responses searched; outcomes {} / {}",
            seen.len(),
            events.len(),
            2,
            failed.status,
            faulty.status
        ),
    );
}
