//! The operator CLI against the local stack, as a separate process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

use cmek_e2e::*;
use sandbox::stack::LocalStack;
use serde_json::{Value, json};

fn cmekctl(stack: &LocalStack, args: &[&str]) -> (i32, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| sandbox::stack::repo_root().join("target"));
    let bin = target.join("debug/cmekctl");
    let out = Command::new(&bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(stack.client_env())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --workspace --bins)", bin.display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_status_list_doctor_and_policy() {
    let stack = stack("cmekctl", |o| o.bus_rules = false).await;
    let all = workspaces(&stack);
    let ws = all[0]["id"].as_str().unwrap().to_owned();
    let compartment = all[0]["compartment_id"].as_str().unwrap().to_owned();

    let (code, out) = cmekctl(&stack, &["provision", &ws, "--display-name", "from cmekctl"]);
    assert_eq!(code, 0, "{out}");
    for state in [
        "Begin",
        "CreateKey",
        "RegisterKey",
        "ValidateKey",
        "AttachKey",
        "Finish",
    ] {
        assert!(out.contains(state), "live progress names {state}: {out}");
    }
    let (code, out) = cmekctl(&stack, &["--json", "status", &ws]);
    assert_eq!(code, 0, "{out}");
    let status: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(status["record"]["status"], "ATTACHED");
    let key_arn = status["record"]["key_arn"].as_str().unwrap().to_owned();

    // Guardian findings show in status.
    let event = json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.kms", "id": "x",
        "detail": {"eventName": "DisableKeyRotation", "eventSource": "kms.amazonaws.com", "userIdentity": {"arn": "arn:aws:sts::123456789012:assumed-role/Admin/bob"},
                   "resources": [{"ARN": key_arn}], "requestParameters": {"keyId": key_arn}}});
    let (err, _) = invoke(&stack, "KeyGuardianFunction", &event).await;
    assert_eq!(err, None);
    let (_, out) = cmekctl(&stack, &["status", &ws]);
    assert!(
        out.contains("key guardian:") && out.contains("rotation_disabled"),
        "{out}"
    );

    let (code, out) = cmekctl(&stack, &["list", "--status", "attached"]);
    assert_eq!(code, 0);
    assert!(out.contains(&ws) && out.contains("1 workspace(s)"), "{out}");
    let (_, out) = cmekctl(&stack, &["--json", "list", "--status", "FAILED"]);
    assert_eq!(out.trim(), "[]");

    let (code, out) = cmekctl(
        &stack,
        &["doctor", "--key-arn", &key_arn, "--workspace", &ws, "--validate"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("exactly as documented"), "{out}");
    // Another workspace on the same key: its compartment is missing from the policy.
    let other = all[1]["id"].as_str().unwrap();
    let (code, out) = cmekctl(&stack, &["doctor", "--key-arn", &key_arn, "--workspace", other]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ENCRYPTION_CONTEXT_MISMATCH") && out.contains("ConditionMissesCompartment"),
        "{out}"
    );

    let (code, out) = cmekctl(
        &stack,
        &[
            "policy",
            "--account",
            "123456789012",
            "--compartment",
            &compartment,
        ],
    );
    assert_eq!(code, 0);
    let printed: Value = serde_json::from_str(&out).unwrap();
    let expected = cmek::policy::key_policy(
        &"123456789012".parse().unwrap(),
        cmek::geo::Geo::Us,
        &[compartment.parse().unwrap()],
    );
    assert_eq!(printed, expected);

    // Bad input is named and starts nothing.
    let (code, out) = cmekctl(&stack, &["provision", "not-a-workspace"]);
    assert_eq!(code, 2);
    assert!(out.contains("wrkspc_"), "{out}");
    let (code, out) = cmekctl(
        &stack,
        &["policy", "--account", "12", "--compartment", &compartment],
    );
    assert_eq!(code, 2, "{out}");
}
