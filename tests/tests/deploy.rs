//! Deploying as a new user would (README, "Deploy"): `sam build && sam
//! deploy` with the committed `samconfig.toml` and one parameter. What no
//! local stack exercises is checked here against the files: the stack name
//! the examples import from, every parameter described, and every value
//! CloudFormation would take but the deployment would then choke on refused
//! by the parameter's own pattern before anything is created.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use sandbox::stack::repo_root;
use serde_yaml_ng::Value;

fn template() -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap()).unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

/// `samconfig.toml`'s `key = value` lines by `[section]` (the little TOML it uses).
fn samconfig() -> std::collections::BTreeMap<(String, String), String> {
    let mut out = std::collections::BTreeMap::new();
    let mut section = String::new();
    for line in read("samconfig.toml").lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.insert(
                (section.clone(), k.trim().to_owned()),
                v.trim().trim_matches('"').to_owned(),
            );
        }
    }
    out
}

#[test]
fn the_committed_samconfig_names_the_stack_the_examples_import_from() {
    let config = samconfig();
    let get = |section: &str, key: &str| {
        config
            .get(&(section.to_owned(), key.to_owned()))
            .map(String::as_str)
    };
    let stack = get("default.global.parameters", "stack_name").unwrap();
    let example: Value =
        serde_yaml_ng::from_str(&read("examples/cloudformation/workspace-key.yaml")).unwrap();
    assert_eq!(
        example["Parameters"]["ProvisionerStackName"]["Default"].as_str(),
        Some(stack)
    );
    assert!(
        cmek_e2e::documentation().contains(&format!("{stack}-ServiceToken")),
        "the docs' custom resource snippet imports from the stack samconfig.toml deploys"
    );
    assert_eq!(
        get("default.deploy.parameters", "capabilities"),
        Some("CAPABILITY_IAM")
    );
    assert_eq!(get("default.deploy.parameters", "resolve_s3"), Some("true"));
    assert_eq!(
        get("default.build.parameters", "beta_features"),
        Some("true"),
        "cargo-lambda builds are a beta feature of sam build"
    );
    // Nothing else is needed on Claude Platform: every other parameter has a
    // default (the rule AdminKeyOnClaudePlatform asks for the secret).
    let t = template();
    let without_default: Vec<&str> = t["Parameters"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, p)| p.get("Default").is_none())
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert!(without_default.is_empty(), "{without_default:?}");
}

#[test]
fn every_parameter_says_what_it_is() {
    let t = template();
    for (name, p) in t["Parameters"].as_mapping().unwrap() {
        let d = p["Description"].as_str().unwrap_or_default();
        assert!(d.len() > 20, "{name:?} has no description");
    }
}

fn pattern(name: &str) -> regex::Regex {
    let t = template();
    let p = t["Parameters"][name]["AllowedPattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no AllowedPattern"));
    regex::Regex::new(p).unwrap()
}

/// Values CloudFormation would take and the deployment or the first run
/// would then fail on (and roll back, or deny): refused up front.
#[test]
fn parameters_refuse_what_would_fail_after_the_stack_deployed() {
    let t = template();
    // Every default passes its own pattern.
    for (name, p) in t["Parameters"].as_mapping().unwrap() {
        if let (Some(re), Some(d)) = (p["AllowedPattern"].as_str(), p.get("Default")) {
            let d = match d {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
            };
            // CloudFormation's patterns are Java's; AliasPrefix's look-ahead
            // is beyond the regex crate (template.rs checks that one).
            let Ok(re) = regex::Regex::new(re) else { continue };
            assert!(re.is_match(&d), "{name:?}: default {d:?}");
        }
    }
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            // The IAM grant names the exact ARN: one without Secrets
            // Manager's six-character suffix is denied at the first read.
            "AdminKeySecretArn",
            &[
                "",
                "arn:aws:secretsmanager:us-east-2:123456789012:secret:cmek-provisioner/admin-api-key-AbC123",
            ],
            &[
                "arn:aws:secretsmanager:us-east-2:123456789012:secret:cmek-provisioner/admin-api-key",
                "cmek-provisioner/admin-api-key",
                "arn:aws:secretsmanager:us-east-2:123456789012:secret:",
            ],
        ),
        (
            "AlertEmail",
            &["", "oncall@example.com", "a.b+cmek@sub.example.org"],
            &[
                "oncall",
                "oncall@example",
                "a@b.c d@e.f",
                "one@example.com,two@example.com",
            ],
        ),
        (
            "ResultEmail",
            &["", "tickets@example.com"],
            &["tickets example.com"],
        ),
        (
            // EventBridge: singular unit for 1, plural above.
            "DiscoverySchedule",
            &["rate(15 minutes)", "rate(1 hour)", "cron(0/15 * * * ? *)"],
            &[
                "rate(15 minute)",
                "rate(1 hours)",
                "rate(0 minutes)",
                "every 15 minutes",
                "cron(0 * * *)",
            ],
        ),
        (
            "SweepSchedule",
            &["rate(1 day)", "rate(12 hours)"],
            &["rate(1 days)", "daily"],
        ),
        (
            "ValidationSweepSchedule",
            &["off", "rate(7 days)", "cron(0 6 ? * MON *)"],
            &["rate(7 day)", "weekly", "Off"],
        ),
        (
            "TrustedEventPublishers",
            &[
                "",
                "arn:aws:iam::123456789012:role/vending",
                "arn:aws:iam::123456789012:role/a,arn:aws:iam::123456789012:user/b",
            ],
            &[
                "arn:aws:iam::123456789012:role/a, arn:aws:iam::123456789012:role/b",
                "vending",
                "arn:aws:sts::123456789012:assumed-role/a/b",
            ],
        ),
    ];
    for (name, good, bad) in cases {
        let re = pattern(name);
        for g in *good {
            assert!(re.is_match(g), "{name} refuses {g:?}");
        }
        for b in *bad {
            assert!(!re.is_match(b), "{name} takes {b:?}");
        }
    }
}
