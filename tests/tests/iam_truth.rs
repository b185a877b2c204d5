//! IAM names and scopes judged by AWS's own data, not by the project's.
//!
//! IAM accepts any action name: a misspelled or invented one deploys and then
//! denies every call. The stand-in's recorder, the project's IAM evaluator and
//! the template were once all written from the same guess (four
//! `aws-external-anthropic` actions that do not exist), and every test agreed
//! with it. Here every action named anywhere — each statement of the
//! SAM-translated template in every branch of its conditions (roles, the
//! Deny guard, key, topic, queue and bus policies), the stand-in recorder's
//! table, the README — is looked up in the AWS Service Authorization
//! Reference as cfn-lint ships it (`cmek_e2e::aws_data`), and an action AWS
//! gives no resource type (account-scoped) must be granted on `*`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek_e2e::aws_data::ServiceData;
use cmek_e2e::iam::wildcard;
use cmek_e2e::sam::{self, strings};
use sandbox::iam_request::{Scope, external_anthropic};
use sandbox::stack::repo_root;
use serde_json::Value;

/// What is wrong with one statement's actions and scope, by AWS's data.
fn judge_statement(data: &ServiceData, origin: &str, s: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let resources = strings(&s["Resource"]);
    // A pattern grants an account-scoped action only if it matches the
    // literal resource "*" that IAM evaluates such an action against.
    let on_star = resources.iter().any(|r| wildcard(r, "*")) || s.get("NotResource").is_some();
    let principal_policy = s.get("Principal").is_some();
    for pattern in strings(&s["Action"])
        .iter()
        .chain(strings(&s["NotAction"]).iter())
    {
        if pattern == "*" {
            continue;
        }
        let Some((service, _)) = pattern.split_once(':') else {
            problems.push(format!("{origin}: {pattern} is not service:Action"));
            continue;
        };
        if !data.has_service(service) {
            problems.push(format!(
                "{origin}: no AWS service has the prefix {service} ({pattern})"
            ));
            continue;
        }
        let actions = data.expand(pattern);
        if actions.is_empty() {
            problems.push(format!(
                "{origin}: {pattern} is not an action of {service} (AWS Service Authorization Reference)"
            ));
            continue;
        }
        // Resource policies (key, topic, bus policies) name the resource
        // they are attached to, whatever Resource says.
        if s["Effect"] == "Allow" && !principal_policy && !on_star {
            for a in actions.iter().filter(|a| a.account_scoped()) {
                // The template's spelling where it names one action.
                let name = if pattern.contains(['*', '?']) {
                    &a.name
                } else {
                    pattern
                };
                problems.push(format!(
                    "{origin}: {name} has no resource type (account-scoped): only Resource \"*\" grants it, not {resources:?}"
                ));
            }
        }
    }
    problems
}

fn judge_template(data: &ServiceData, translated: &Value) -> (usize, Vec<String>) {
    let statements = sam::statements(translated);
    let problems = statements
        .iter()
        .flat_map(|(origin, s)| judge_statement(data, origin, s))
        .collect();
    (statements.len(), problems)
}

#[test]
fn every_action_the_template_names_exists_and_account_scoped_ones_are_granted_on_star() {
    let data = ServiceData::load().unwrap();
    assert!(
        data.len() > 10_000,
        "AWS's data is incomplete: {} actions",
        data.len()
    );
    let translated = sam::translate(&sam::template_text());
    let (checked, problems) = judge_template(&data, &translated);
    assert!(checked >= 60, "only {checked} statements found");
    assert!(
        problems.is_empty(),
        "the template names IAM actions AWS does not have, or scopes them as AWS does not ({}):\n{}",
        data.source.display(),
        problems.join("\n")
    );
    // Both platforms' statements were read: the Claude Platform on AWS ones
    // exist only in one branch of their conditions.
    let text = serde_json::to_string(&sam::statements(&translated)).unwrap();
    for action in [
        "aws-external-anthropic:RegisterKey",
        "aws-external-anthropic:ListWorkspaces",
        "secretsmanager:GetSecretValue",
    ] {
        assert!(text.contains(action), "no statement names {action}");
    }
}

#[test]
fn the_check_fails_on_invented_names_and_on_account_scoped_actions_granted_on_arns() {
    let data = ServiceData::load().unwrap();
    let text = sam::template_text();
    // The four names this project once guessed, and ListWorkspaces on
    // workspace ARNs: each must be reported.
    let broken = text
        .replacen(
            "aws-external-anthropic:RegisterKey",
            "aws-external-anthropic:CreateExternalKey",
            1,
        )
        .replacen(
            "Action: [aws-external-anthropic:GetWorkspace]",
            "Action: [aws-external-anthropic:GetWorkspace, aws-external-anthropic:ListWorkspaces]",
            1,
        );
    assert_ne!(broken, text, "the control did not change the template");
    let (_, problems) = judge_template(&data, &sam::translate(&broken));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("aws-external-anthropic:CreateExternalKey is not an action")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("aws-external-anthropic:ListWorkspaces has no resource type")),
        "{problems:?}"
    );
}

/// Every route the project calls on Claude Platform on AWS, as the stand-in's
/// recorder names its IAM action: the recorder must not be where a name is
/// invented.
#[test]
fn the_stand_ins_recorder_names_only_actions_aws_has_with_their_scope() {
    let data = ServiceData::load().unwrap();
    let scope = Scope {
        region: "us-east-2",
        account: "123456789012",
    };
    let key = "arn%3Aaws%3Akms%3Aus-east-2%3A123456789012%3Akey%2F1234abcd-12ab-34cd-56ef-1234567890ab";
    let routes = [
        ("GET", "/v1/organizations/workspaces".to_owned()),
        ("POST", "/v1/organizations/workspaces".to_owned()),
        ("GET", "/v1/organizations/workspaces/wrkspc_01".to_owned()),
        ("POST", "/v1/organizations/workspaces/wrkspc_01".to_owned()),
        (
            "POST",
            "/v1/organizations/workspaces/wrkspc_01/archive".to_owned(),
        ),
        ("GET", "/v1/organizations/external_keys".to_owned()),
        ("POST", "/v1/organizations/external_keys".to_owned()),
        ("GET", format!("/v1/organizations/external_keys/{key}")),
        ("POST", format!("/v1/organizations/external_keys/{key}")),
    ];
    for (method, path) in routes {
        let auths = external_anthropic(method, &path, None, scope);
        assert_eq!(auths.len(), 1, "{method} {path}");
        let a = &auths[0];
        let known = data.action(&a.action).unwrap_or_else(|| {
            panic!(
                "{method} {path}: the recorder names {}, which AWS does not have",
                a.action
            )
        });
        if known.account_scoped() {
            assert_eq!(a.resource, "*", "{method} {path}: {} is account-scoped", a.action);
        } else {
            assert!(
                a.resource
                    .starts_with("arn:aws:aws-external-anthropic:us-east-2:123456789012:workspace/"),
                "{method} {path}: {} on {}",
                a.action,
                a.resource
            );
        }
    }
}

/// Action names written in the README (`service:Action` in backticks), so
/// that a reader is never told to grant what does not exist.
#[test]
fn every_action_the_readme_names_exists() {
    let data = ServiceData::load().unwrap();
    let mut docs = vec![repo_root().join("README.md")];
    if let Ok(dir) = std::fs::read_dir(repo_root().join("docs")) {
        docs.extend(
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "md")),
        );
    }
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for token in text.split('`').skip(1).step_by(2) {
            let Some((service, name)) = token.split_once(':') else {
                continue;
            };
            // An action: a known service's prefix and a capitalised name
            // (condition keys such as aws:SourceArn, kms:ViaService or
            // kms:EncryptionContext:… are not actions).
            let is_action_like = data.has_service(service)
                && service != "aws"
                && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '*');
            if !is_action_like || CONDITION_KEYS.contains(&token) {
                continue;
            }
            checked += 1;
            if data.expand(token).is_empty() {
                problems.push(format!("{}: `{token}` is not an IAM action", doc.display()));
            }
        }
    }
    assert!(checked >= 15, "only {checked} action names found in the docs");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Condition keys the docs name with an action-like spelling (IAM User
/// Guide and KMS Developer Guide, "Condition keys for AWS KMS").
const CONDITION_KEYS: &[&str] = &[
    "kms:ViaService",
    "kms:CallerAccount",
    "kms:KeySpec",
    "kms:KeyUsage",
    "kms:KeyOrigin",
    "kms:MultiRegion",
    "kms:BypassPolicyLockoutSafetyCheck",
    "kms:ResourceAliases",
    // Claude Platform on AWS's key condition key (published 2026-09-25).
    "aws-external-anthropic:KeyArn",
];
