//! `cmekctl preflight` against the local stack playing a deployment (IAM
//! roles in moto as SAM would create them, the topics' key, the result rule,
//! a trail): it passes on the template as it is, names which checks a
//! stand-in answered, and fails with the right line on each broken deploy
//! the issue found (a misspelled action, ListWorkspaces on workspace ARNs,
//! aws:SourceAccount on the topics' key's EventBridge grant, a role without
//! the admin key's secret).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::platform::Platform;
use cmek_e2e::*;
use serde_json::Value;

async fn deployed(label: &str, platform: Platform, template: Option<String>) -> sandbox::stack::LocalStack {
    stack(label, |o| {
        o.platform = platform;
        o.preflight = true;
        o.template_text = template;
        o.bus_rules = false;
    })
    .await
}

/// Preflight's exit code and its JSON report.
fn preflight(stack: &sandbox::stack::LocalStack) -> (i32, Value) {
    let file = stack
        .resources_file
        .as_ref()
        .expect("a stack playing a deployment");
    let out = run_cmekctl(
        stack,
        &[
            "preflight",
            "--resources",
            file.to_str().unwrap(),
            "--delivery-timeout",
            "30",
            "--json",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn lines<'a>(report: &'a Value, outcome: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["outcome"] == outcome)
        .collect()
}

fn has_failure(report: &Value, check: &str, needles: &[&str]) -> bool {
    lines(report, "FAIL").iter().any(|l| {
        l["check"] == check
            && needles
                .iter()
                .all(|n| l["detail"].as_str().unwrap_or_default().contains(n))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_passes_on_the_stack_as_deployed_on_both_platforms() {
    for platform in [Platform::ClaudePlatform, Platform::ClaudePlatformOnAws] {
        let stack = deployed(&format!("preflight-{platform}"), platform, None).await;
        let (code, report) = preflight(&stack);
        assert!(
            lines(&report, "FAIL").is_empty() && code == 0,
            "{platform}: {report:#}\n{}",
            dump_on_failure(&stack)
        );
        let checks: std::collections::BTreeSet<&str> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["check"].as_str().unwrap())
            .collect();
        for check in [
            "IAM (simulated)",
            "Policies (Access Analyzer)",
            "Admin API",
            "Topics' keys",
            "Result delivery",
            "CloudTrail",
        ] {
            assert!(
                checks.contains(check),
                "{platform}: no {check} line in {report:#}"
            );
        }
        // What a stand-in answered is said, line by line.
        for check in ["IAM (simulated)", "Policies (Access Analyzer)"] {
            let l = lines(&report, "PASS")
                .into_iter()
                .find(|l| l["check"] == check)
                .unwrap();
            assert!(
                l["standIn"].as_str().is_some_and(|s| s.contains("moto has no")),
                "{l}"
            );
        }
        let iam = lines(&report, "PASS")
            .into_iter()
            .find(|l| l["check"] == "IAM (simulated)")
            .unwrap();
        let detail = iam["detail"].as_str().unwrap();
        let simulated: usize = detail.split(' ').next().unwrap().parse().unwrap();
        assert!(
            detail.contains("functions allowed by their roles") && simulated >= 50,
            "every call of the manifest simulated: {iam}"
        );
        figure(
            &format!("preflight-{platform}"),
            &format!(
                "PREFLIGHT ({platform}, local stack): {}",
                iam["detail"].as_str().unwrap()
            ),
        );
        // The test event's queue is gone again.
        let queues = aws_sdk_sqs::Client::new(&stack.sdk)
            .list_queues()
            .send()
            .await
            .unwrap();
        assert!(
            !queues.queue_urls().iter().any(|q| q.contains("cmek-preflight-")),
            "{:?}",
            queues.queue_urls()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_names_each_broken_deploy() {
    let text = sam::template_text();

    // Claude Platform on AWS: an action that does not exist, and
    // ListWorkspaces granted on workspace ARNs (which grants nothing).
    let broken = text
        .replacen(
            "Action: [aws-external-anthropic:GetKey, aws-external-anthropic:RegisterKey]",
            "Action: [aws-external-anthropic:GetKey, aws-external-anthropic:CreateExternalKey]",
            1,
        )
        .replacen(
            "{ Sid: ClaudePlatformOnAwsListWorkspaces, Effect: Allow, Action: [aws-external-anthropic:ListWorkspaces], Resource: \"*\" }",
            "{ Sid: ClaudePlatformOnAwsListWorkspaces, Effect: Allow, Action: [aws-external-anthropic:ListWorkspaces], Resource: !Sub \"arn:${AWS::Partition}:aws-external-anthropic:${AWS::Region}:${AWS::AccountId}:workspace/*\" }",
            1,
        );
    assert_eq!(broken.matches("CreateExternalKey").count(), 1);
    assert!(broken.contains("[aws-external-anthropic:ListWorkspaces], Resource: !Sub"));
    let stack = deployed(
        "preflight-broken-aws",
        Platform::ClaudePlatformOnAws,
        Some(broken),
    )
    .await;
    let (code, report) = preflight(&stack);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        has_failure(
            &report,
            "IAM (simulated)",
            &[
                "RegisterKeyFunction: aws-external-anthropic:RegisterKey",
                "implicitDeny"
            ]
        ),
        "{report:#}"
    );
    assert!(
        has_failure(
            &report,
            "Policies (Access Analyzer)",
            &["INVALID_ACTION", "CreateExternalKey"]
        ),
        "{report:#}"
    );
    assert!(
        has_failure(
            &report,
            "IAM (simulated)",
            &[
                "DiscoverWorkspacesFunction: aws-external-anthropic:ListWorkspaces on *",
                "implicitDeny"
            ]
        ),
        "{report:#}"
    );
    drop(stack);

    // Claude Platform: the topics' key grants EventBridge only under
    // aws:SourceAccount, and Begin's role lost the admin key's secret.
    let broken = text
        .replacen(
            "          - Sid: RulesPublishToTheTopics\n            Effect: Allow\n            Principal: { Service: events.amazonaws.com }\n            Action: [kms:GenerateDataKey*, kms:Decrypt]\n            # A key policy's Resource is always the key itself.\n            Resource: \"*\"\n",
            "          - Sid: RulesPublishToTheTopics\n            Effect: Allow\n            Principal: { Service: events.amazonaws.com }\n            Action: [kms:GenerateDataKey*, kms:Decrypt]\n            Resource: \"*\"\n            Condition:\n              StringEquals: { aws:SourceAccount: !Ref AWS::AccountId }\n",
            1,
        )
        .replacen(
            "      LoggingConfig: { LogGroup: !Ref BeginLogGroup }\n      Policies:\n        - !Ref NeverDestroyKeysPolicy\n        - !If [UsesAdminKey, !Ref ReadAdminKeyPolicy, !Ref AWS::NoValue]\n",
            "      LoggingConfig: { LogGroup: !Ref BeginLogGroup }\n      Policies:\n        - !Ref NeverDestroyKeysPolicy\n",
            1,
        );
    assert_eq!(
        broken.matches("aws:SourceAccount: !Ref AWS::AccountId").count(),
        text.matches("aws:SourceAccount: !Ref AWS::AccountId").count() + 1,
        "the key control applied"
    );
    assert_ne!(
        broken
            .matches("!If [UsesAdminKey, !Ref ReadAdminKeyPolicy")
            .count(),
        text.matches("!If [UsesAdminKey, !Ref ReadAdminKeyPolicy").count(),
        "the secret control applied"
    );
    let stack = deployed("preflight-broken-cp", Platform::ClaudePlatform, Some(broken)).await;
    let (code, report) = preflight(&stack);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        has_failure(&report, "Topics' keys", &["ResultTopic", "aws:SourceAccount"]),
        "{report:#}"
    );
    assert!(
        has_failure(
            &report,
            "IAM (simulated)",
            &["BeginFunction: secretsmanager:GetSecretValue"]
        ),
        "{report:#}"
    );
    // Nothing else was blamed: the other roles still read the secret.
    assert!(
        !has_failure(
            &report,
            "IAM (simulated)",
            &["RegisterKeyFunction: secretsmanager"]
        ),
        "{report:#}"
    );
}
