//! Unknown outcomes, started through CloudFormation: for each effect — KMS
//! CreateKey, CreateAlias, the Admin API create, the attach, CloudFormation's
//! answer — once the real function binary dies right after it (a crash
//! point, in debug builds only), once the effect happens and its caller is
//! answered 500. Each must still end with exactly one key, one alias, one
//! registration, one attachment and one CloudFormation answer.
//!
//! The oracles are independent of the code under test: every key in KMS in
//! any state (`ListKeys`), what each Admin API request changed according to
//! the stand-in's own log (5xx answers included), every PUT the
//! CloudFormation stand-in received.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

use cmek::platform::Platform;
use cmek::store::Status;
use cmek_e2e::*;
use sandbox::admin_api::{Faults, Scripted};
use sandbox::aws_proxy::AwsFault;
use sandbox::stack::LocalStack;
use serde_json::{Value, json};

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

/// Create `WorkspaceKey` for `ws` through the custom resource, and wait for
/// its execution to end and CloudFormation's answer to arrive.
async fn create_through_cloudformation(
    stack: &LocalStack,
    catcher: &ResponseCatcher,
    ws: &cmek::ids::WorkspaceId,
    request_id: &str,
) -> Value {
    let event = json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:us-east-2:123456789012:function:CustomResourceFunction",
        "ResponseURL": catcher.url_for(request_id),
        "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/app/1",
        "RequestId": request_id,
        "LogicalResourceId": "WorkspaceKey",
        "ResourceType": "Custom::AnthropicCmek",
        "ResourceProperties": {"WorkspaceId": ws.to_string(), "DisplayName": "crashy"},
    });
    let (err, out) = invoke(stack, "CustomResourceFunction", &event).await;
    assert_eq!(err, None, "{out}");
    let answer = catcher.wait(request_id, TIMEOUT).await;
    // Every execution has ended (Finish answers before it releases the record).
    let deadline = Instant::now() + TIMEOUT;
    while executions(stack)
        .await
        .iter()
        .any(|(_, _, status)| status == "RUNNING")
    {
        assert!(Instant::now() < deadline, "{}", dump_on_failure(stack));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    answer
}

/// The exactly-once oracles for one workspace provisioned through CloudFormation.
async fn exactly_once(
    stack: &LocalStack,
    catcher: &ResponseCatcher,
    ws: &cmek::ids::WorkspaceId,
    request_id: &str,
) {
    let ctx = dump_on_failure(stack);
    let keys = keys_for(stack, ws).await;
    assert_eq!(
        keys.len(),
        1,
        "exactly one key for {ws} (any state): {keys:?} — {ctx}"
    );
    let rec = record(stack, ws).await;
    assert_eq!(rec.status, Status::Attached, "{ctx}");
    assert_eq!(rec.lease, None);
    assert_eq!(rec.key_arn.as_deref(), Some(keys[0].as_str()));
    let key_id = keys[0].rsplit('/').next().unwrap();
    let aliases = stack.kms().list_aliases().key_id(key_id).send().await.unwrap();
    let names: Vec<&str> = aliases.aliases().iter().filter_map(|a| a.alias_name()).collect();
    assert_eq!(names, vec![rec.alias.as_deref().unwrap()], "exactly one alias");
    let registered: Vec<String> = effects(stack, "registered")
        .into_iter()
        .filter(|e| e.ends_with(keys[0].as_str()))
        .collect();
    assert_eq!(
        registered.len(),
        1,
        "exactly one registration took effect: {registered:?} — {ctx}"
    );
    let attached: Vec<String> = effects(stack, "attached")
        .into_iter()
        .filter(|e| e.ends_with(ws.as_str()))
        .collect();
    assert_eq!(
        attached.len(),
        1,
        "exactly one attachment took effect: {attached:?}"
    );
    assert_eq!(
        stack
            .admin_client()
            .get_workspace(ws)
            .await
            .unwrap()
            .external_key_id
            .as_deref(),
        rec.external_key_id.as_deref()
    );
    // One answer: every PUT to the pre-signed URL carries the same body, a
    // success. A PUT is repeated only when its outcome was unknown (a 500, a
    // crash right after it); it overwrites the same S3 object with the same
    // content, so CloudFormation reads one answer.
    let answers = catcher.responses(request_id);
    assert!(!answers.is_empty());
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0]["Status"], "SUCCESS", "{}", answers[0]);
    let finishes: Vec<String> = events(stack, ws)
        .await
        .iter()
        .filter(|e| e.step == "Finish")
        .map(|e| e.outcome.clone())
        .collect();
    assert_eq!(finishes, vec!["succeeded".to_owned()], "one recorded finish");
}

#[tokio::test(flavor = "multi_thread")]
async fn dying_after_every_effect_still_ends_with_one_of_each() {
    dying_after_every_effect(Platform::ClaudePlatform).await;
}

/// The same on Claude Platform on AWS, where the attach is the validation.
#[tokio::test(flavor = "multi_thread")]
async fn dying_after_every_effect_on_claude_platform_on_aws_still_ends_with_one_of_each() {
    dying_after_every_effect(Platform::ClaudePlatformOnAws).await;
}

async fn dying_after_every_effect(platform: Platform) {
    let label = format!("all-{platform}");
    let markers = marker_dir(&label);
    let stack = stack(&format!("crash-points-{platform}"), |o| {
        o.platform = platform;
        o.function_env = vec![
            ("CMEK_CRASH_POINTS".into(), "*".into()),
            ("CMEK_CRASH_MARKER_DIR".into(), markers.display().to_string()),
        ];
    })
    .await;
    let catcher = ResponseCatcher::start().await;
    let ws = workspace_id(&workspaces(&stack)[0]);
    create_through_cloudformation(&stack, &catcher, &ws, "all-points").await;
    // Every point fired: the process really died at each one — the point
    // after CloudFormation's answer included, which only a CloudFormation
    // start reaches.
    for point in cmek::crash_point::ALL {
        assert!(
            markers.join(point).exists(),
            "crash point {point} never fired — {}",
            dump_on_failure(&stack)
        );
    }
    assert_eq!(
        stack.function_logs().matches("aborting the process").count(),
        cmek::crash_point::ALL.len(),
        "one abort per crash point"
    );
    exactly_once(&stack, &catcher, &ws, "all-points").await;
    assert_eq!(all_keys(&stack).await.len(), 1, "no other key anywhere");
    effects_precede_their_crash_points(&stack, &catcher, &markers, &ws, "all-points").await;
    figure(
        &format!("crash_points_all_{platform}"),
        &format!(
            "CRASH POINTS ({platform}): {} points, {} process aborts, then 1 key, 1 alias, 1 registration, 1 attachment, {} identical CloudFormation PUT(s)",
            cmek::crash_point::ALL.len(),
            cmek::crash_point::ALL.len(),
            catcher.responses("all-points").len()
        ),
    );
    let _ = std::fs::remove_dir_all(&markers);
}

/// When a crash point fired (ms since the Unix epoch): what its marker
/// says, written just before the process aborted.
fn fired_at(markers: &std::path::Path, point: &str) -> u64 {
    std::fs::read_to_string(markers.join(point))
        .unwrap_or_else(|e| panic!("{point}: no marker: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{point}: an unreadable marker: {e}"))
}

/// Each "after X" point sits after X: by the time the process aborted there,
/// X had happened — by the world's own records, not the code's: the AWS
/// proxy's log of answered calls, the stand-in's log of what each request
/// changed, the PUTs the CloudFormation stand-in stored, each stamped when
/// answered — and the retry that followed did not do X again. (Moving a
/// point above its effect fails here: the marker would predate the effect.)
async fn effects_precede_their_crash_points(
    stack: &LocalStack,
    catcher: &ResponseCatcher,
    markers: &std::path::Path,
    ws: &cmek::ids::WorkspaceId,
    request_id: &str,
) {
    let calls = stack.host.aws_calls();
    let answered = |function: &str, action: &str| -> Vec<u64> {
        calls
            .iter()
            .filter(|c| c.function == function && c.action == action && c.status < 300 && c.fault.is_none())
            .map(|c| c.at_ms)
            .collect()
    };
    let changed = |prefix: &str| -> Vec<u64> {
        stack
            .admin
            .requests()
            .into_iter()
            .filter(|r| r.effect.as_deref().is_some_and(|e| e.starts_with(prefix)))
            .map(|r| r.at_ms)
            .collect()
    };
    // (point, when the effect happened each time, whether a retry may
    // repeat it: only CloudFormation's answer, a PUT of the same body to
    // the same object, which the oracle above checks).
    let effects: Vec<(&str, Vec<u64>, bool)> = vec![
        (
            "create-key.after-kms-create",
            answered("CreateKeyFunction", "kms:CreateKey"),
            false,
        ),
        (
            "create-key.after-tag",
            answered("CreateKeyFunction", "kms:TagResource"),
            false,
        ),
        (
            "create-key.after-alias",
            answered("CreateKeyFunction", "kms:CreateAlias"),
            false,
        ),
        ("register-key.after-create", changed("registered"), false),
        ("attach-key.after-attach", changed("attached"), false),
        ("finish.after-answer", catcher.received_at(request_id), true),
    ];
    for (point, times, repeatable) in effects {
        let fired = fired_at(markers, point);
        assert!(
            times.iter().any(|t| *t <= fired),
            "{point}: the process aborted (at {fired}) before its effect happened ({times:?})"
        );
        if !repeatable {
            assert_eq!(times.len(), 1, "{point}: the retry did it again ({times:?})");
        }
    }
    // The "after the record" points: the step's write to the table had been
    // answered when the process aborted, and the audit trail holds that
    // step's outcome once (the retry did not record it again).
    // (After a crash following the effect, the retry records what it found:
    // a registration found rather than made.)
    let trail = events(stack, ws).await;
    let after_record: [(&str, &str, &str, &[&str]); 4] = [
        (
            "create-key.after-record",
            "CreateKeyFunction",
            "CreateKey",
            &["key_created"],
        ),
        (
            "register-key.after-record",
            "RegisterKeyFunction",
            "RegisterKey",
            &["registered", "registration_found"],
        ),
        (
            "attach-key.after-record",
            "AttachKeyFunction",
            "AttachKey",
            &["attached"],
        ),
        ("finish.after-release", "FinishFunction", "Finish", &["succeeded"]),
    ];
    for (point, function, step, outcomes) in after_record {
        let fired = fired_at(markers, point);
        let wrote: Vec<u64> = ["dynamodb:TransactWriteItems", "dynamodb:PutItem"]
            .iter()
            .flat_map(|a| answered(function, a))
            .collect();
        assert!(
            wrote.iter().any(|t| *t <= fired),
            "{point}: no write of {function} was answered before the process aborted ({wrote:?}, fired {fired})"
        );
        let recorded = trail
            .iter()
            .filter(|e| e.step == step && outcomes.contains(&e.outcome.as_str()))
            .count();
        assert_eq!(
            recorded, 1,
            "{point}: {step} {outcomes:?} recorded {recorded} times"
        );
    }
}

/// One crash right after each effect, each on its own stack; the local
/// Lambda host reports the dead instance under each name Lambda uses for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_right_after_each_effect_under_each_name_lambda_reports_it() {
    let cells = [
        ("create-key.after-kms-create", "Runtime.ExitError"),
        ("create-key.after-tag", "Runtime.Unknown"),
        ("create-key.after-alias", "Lambda.Unknown"),
        ("register-key.after-create", "Runtime.Unknown"),
        ("attach-key.after-attach", "Lambda.Unknown"),
        ("finish.after-answer", "Runtime.ExitError"),
    ];
    for (point, crash_error) in cells {
        let markers = marker_dir(point);
        let stack = stack(&format!("crash-{point}"), |o| {
            o.function_env = vec![
                ("CMEK_CRASH_POINTS".into(), point.into()),
                ("CMEK_CRASH_MARKER_DIR".into(), markers.display().to_string()),
            ];
        })
        .await;
        stack.host.set_crash_error(crash_error);
        let catcher = ResponseCatcher::start().await;
        let ws = workspace_id(&workspaces(&stack)[0]);
        create_through_cloudformation(&stack, &catcher, &ws, point).await;
        assert!(
            markers.join(point).exists(),
            "{point} never fired — {}",
            dump_on_failure(&stack)
        );
        exactly_once(&stack, &catcher, &ws, point).await;
        assert_eq!(all_keys(&stack).await.len(), 1, "{point}: no other key anywhere");
        // The execution retried the step after the host's `crash_error`.
        let execution = &executions(&stack).await[0].0;
        let history = cmek::aws::execution_history(&stack.sfn(), execution)
            .await
            .unwrap();
        let failures: Vec<String> = history
            .iter()
            .filter_map(|e| e.lambda_function_failed_event_details())
            .filter_map(|d| d.error().map(str::to_owned))
            .collect();
        assert_eq!(failures, vec![crash_error.to_owned()], "{point}");
        let _ = std::fs::remove_dir_all(&markers);
    }
    figure(
        "crash_cells",
        &format!(
            "CRASH CELLS: {} effects, each crashed right after once (as Runtime.ExitError, Runtime.Unknown, Lambda.Unknown): one of each every time",
            cells.len()
        ),
    );
}

/// The same effects, each answered 500 after it took effect — KMS through
/// the host's AWS proxy, the Admin API by the stand-in, CloudFormation by
/// its stand-in — one workspace after another on one stack.
#[tokio::test(flavor = "multi_thread")]
async fn a_500_after_each_effect_never_duplicates_it() {
    let stack = stack("unknown-outcomes", |o| o.sandbox.orgs[0].workspaces = 5).await;
    let catcher = ResponseCatcher::start().await;
    let all = workspaces(&stack);
    for (i, cell) in [
        "kms:CreateKey",
        "kms:CreateAlias",
        "admin:create",
        "admin:attach",
        "cloudformation",
    ]
    .into_iter()
    .enumerate()
    {
        let ws = workspace_id(&all[i]);
        let aws = |action: &str| AwsFault {
            action: action.into(),
            function: Some("CreateKeyFunction".into()),
            times: 1,
            after_effect: true,
            status: 500,
            code: "KMSInternalException".into(),
        };
        let admin = |method: &str, path_suffix: String| Faults {
            scripted: vec![Scripted::once(method, &path_suffix, 500, true)],
            ..Faults::default()
        };
        match cell {
            "kms:CreateKey" | "kms:CreateAlias" => stack.host.add_aws_faults([aws(cell)]),
            "admin:create" => stack
                .admin
                .set_faults(admin("POST", "/v1/organizations/external_keys".into())),
            "admin:attach" => stack.admin.set_faults(admin("POST", format!("/workspaces/{ws}"))),
            _ => catcher.fail_next_after_storing(1),
        }
        create_through_cloudformation(&stack, &catcher, &ws, cell).await;
        // The fault really fired, after the effect.
        match cell {
            "kms:CreateKey" | "kms:CreateAlias" => {
                assert!(stack.host.pending_aws_faults().is_empty(), "{cell} never fired");
                assert!(
                    stack.host.aws_calls().iter().any(|c| c.action == cell
                        && c.fault.as_deref().is_some_and(|f| f.contains("after the effect"))),
                    "{cell}"
                );
            }
            "admin:create" | "admin:attach" => {
                let path = if cell == "admin:create" {
                    "/v1/organizations/external_keys".to_owned()
                } else {
                    format!("/v1/organizations/workspaces/{ws}")
                };
                let fired = stack
                    .admin
                    .requests()
                    .into_iter()
                    .filter(|r| r.path == path && r.fault.as_deref() == Some("scripted 500 after the effect"))
                    .count();
                assert_eq!(fired, 1, "{cell}");
                stack.admin.set_faults(Faults::default());
            }
            _ => assert!(
                catcher.responses(cell).len() >= 2,
                "the PUT was retried after its 500"
            ),
        }
        exactly_once(&stack, &catcher, &ws, cell).await;
    }
    assert_eq!(
        all_keys(&stack).await.len(),
        5,
        "one key per workspace, none more"
    );
}
