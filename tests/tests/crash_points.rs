//! Crash points: the real function binaries die (abort) right after each
//! external effect and before recording it — and, separately, right after
//! recording — then Step Functions retries the state (`Runtime.ExitError`).
//! The workflow must still end with exactly one key, one alias, one
//! registration and one attachment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::store::Status;
use cmek_e2e::*;
use serde_json::json;

fn marker_dir(label: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = sandbox::stack::repo_root()
        .join(".local/crash-markers")
        .join(format!("{label}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn dying_after_every_effect_still_ends_with_one_key_alias_registration_and_attachment() {
    let markers = marker_dir("all");
    let stack = stack("crash-points", |o| {
        o.function_env = vec![
            ("CMEK_CRASH_POINTS".into(), "*".into()),
            ("CMEK_CRASH_MARKER_DIR".into(), markers.display().to_string()),
        ];
    })
    .await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    let result = stack
        .run(&json!({"workspaceId": ws, "displayName": "crashy"}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        result.status,
        "SUCCEEDED",
        "{result:?} — {}",
        dump_on_failure(&stack)
    );
    assert_eq!(result.output.as_ref().unwrap()["outcome"], "SUCCEEDED");

    // Every point fired: the process really died at each one.
    for point in cmek::crash_point::ALL {
        assert!(
            markers.join(point).exists(),
            "crash point {point} never fired — {}",
            dump_on_failure(&stack)
        );
    }
    let logs = stack.function_logs();
    assert_eq!(
        logs.matches("aborting the process").count(),
        cmek::crash_point::ALL.len(),
        "one abort per crash point"
    );

    // One key, tagged for the workspace, with one alias.
    let keys = keys_for(&stack, &ws).await;
    assert_eq!(keys.len(), 1, "exactly one key: {keys:?}");
    let rec = record(&stack, &ws).await;
    assert_eq!(rec.status, Status::Attached);
    assert_eq!(rec.lease, None);
    assert_eq!(rec.key_arn.as_deref(), Some(keys[0].as_str()));
    let key_id = keys[0].rsplit('/').next().unwrap();
    let aliases = stack.kms().list_aliases().key_id(key_id).send().await.unwrap();
    let names: Vec<&str> = aliases.aliases().iter().filter_map(|a| a.alias_name()).collect();
    assert_eq!(names, vec![rec.alias.as_deref().unwrap()], "exactly one alias");

    // One registration, and the workspace attached to it.
    let registered = external_keys(&stack);
    assert_eq!(registered.len(), 1, "exactly one registration: {registered:?}");
    assert_eq!(registered[0]["provider_config"]["kms_arn"], keys[0].as_str());
    let ws_now = stack.admin_client().get_workspace(&ws).await.unwrap();
    assert_eq!(ws_now.external_key_id, rec.external_key_id);
    assert_eq!(
        calls(&stack, "POST", "/external_keys"),
        1,
        "one successful create call"
    );

    // The audit trail records the finish once, as a success.
    let finishes: Vec<String> = events(&stack, &ws)
        .await
        .iter()
        .filter(|e| e.step == "Finish")
        .map(|e| e.outcome.clone())
        .collect();
    assert_eq!(finishes, vec!["succeeded".to_owned()]);
    let _ = std::fs::remove_dir_all(&markers);
}
