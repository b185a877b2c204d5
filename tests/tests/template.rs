//! The template, the state machine and the code agree, and the IAM
//! guardrails are in place.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

fn root() -> std::path::PathBuf {
    sandbox::stack::repo_root()
}

fn template() -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(root().join("template.yaml")).unwrap()).unwrap()
}

fn functions(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

fn tag_arg(v: &Value) -> Option<(String, Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), t.value.clone())),
        _ => None,
    }
}

/// Every value an item can take: both branches of an `!If` (recursively),
/// none for `!Ref AWS::NoValue`.
fn branches(v: &Value) -> Vec<Value> {
    match tag_arg(v) {
        Some((tag, arg)) if tag == "!If" => arg
            .as_sequence()
            .map(|parts| parts.iter().skip(1).flat_map(branches).collect())
            .unwrap_or_default(),
        Some((tag, arg)) if tag == "!Ref" && arg.as_str() == Some("AWS::NoValue") => vec![],
        _ => vec![v.clone()],
    }
}

/// One binary serves every function: each function deploys it (one build
/// definition for `sam build`: the same CodeUri, runtime and Metadata), and
/// names by its `Handler` a handler the binary serves, one function each.
#[test]
fn every_function_runs_the_one_binary_under_a_handler_it_serves() {
    let t = template();
    let crates: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(crates, BTreeSet::from(["cmek-lambda".to_owned()]));
    assert!(
        t["Globals"]["Function"].get("Handler").is_none(),
        "a global Handler would let a function run whatever the global names"
    );
    let mut handlers = BTreeSet::new();
    for (id, f) in functions(&t) {
        assert_eq!(
            f["Metadata"],
            serde_yaml_ng::from_str::<Value>(
                "{ BuildMethod: rust-cargolambda, BuildProperties: { Binary: cmek-lambda } }"
            )
            .unwrap(),
            "{id}: every function deploys the one binary, with the same Metadata (one sam build definition)"
        );
        assert!(
            f["Properties"].get("CodeUri").is_none(),
            "{id}: CodeUri is the global one"
        );
        let handler = f["Properties"]["Handler"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: no Handler"))
            .to_owned();
        assert!(
            cmek::runtime::HANDLERS.contains(&handler.as_str()),
            "{id}: Handler {handler:?} is not one the binary serves ({:?})",
            cmek::runtime::HANDLERS
        );
        assert!(
            handlers.insert(handler.clone()),
            "{id}: Handler {handler:?} is taken twice"
        );
    }
    let served: BTreeSet<String> = cmek::runtime::HANDLERS.iter().map(|h| (*h).to_owned()).collect();
    assert_eq!(
        handlers, served,
        "a handler the binary serves that no function runs, or the reverse"
    );
}

/// A function whose Handler names nothing the binary serves stops at init
/// with an error naming the handler and the ones it knows, before it takes
/// an event (Lambda reports it as an init error).
#[test]
fn the_binary_refuses_a_handler_it_does_not_serve() {
    let bin = sandbox::stack::target_dir().join("debug/cmek-lambda");
    assert!(bin.exists(), "build the functions first: {}", bin.display());
    let out = std::process::Command::new(&bin)
        .env_clear()
        .env("_HANDLER", "begn")
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown handler must not run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(r#"unknown handler "begn""#), "{text}");
    assert!(text.contains("begin, create-key"), "{text}");
}

#[test]
fn every_lambda_in_the_state_machine_is_a_template_function() {
    let t = template();
    let asl = std::fs::read_to_string(root().join("statemachine/provision.asl.json")).unwrap();
    let subs = t["Resources"]["ProvisionStateMachine"]["Properties"]["DefinitionSubstitutions"]
        .as_mapping()
        .unwrap();
    let function_ids: BTreeSet<String> = functions(&t).into_iter().map(|(id, _)| id).collect();
    let mut placeholders = BTreeSet::new();
    let mut rest = asl.as_str();
    while let Some(i) = rest.find("${") {
        let end = rest[i..].find('}').unwrap() + i;
        placeholders.insert(rest[i + 2..end].to_owned());
        rest = &rest[end..];
    }
    for p in &placeholders {
        let value = subs
            .get(p.as_str())
            .unwrap_or_else(|| panic!("${{{p}}} has no DefinitionSubstitution"));
        if p.ends_with("FunctionArn") {
            let (tag, arg) = tag_arg(value).unwrap();
            assert_eq!(tag, "!GetAtt");
            let target = arg.as_str().unwrap().trim_end_matches(".Arn").to_owned();
            assert!(function_ids.contains(&target), "{p} → {target} is not a function");
        }
    }
    let invoked: BTreeSet<String> = placeholders
        .iter()
        .filter(|p| p.ends_with("FunctionArn"))
        .map(|p| p.trim_end_matches("Arn").to_owned())
        .collect();
    // Every function is a state of the workflow, or one of the triggers that start it.
    let triggers: BTreeSet<String> = [
        "CustomResourceFunction",
        "DiscoverWorkspacesFunction",
        "StartFromEventFunction",
        "KeyGuardianFunction",
    ]
    .map(String::from)
    .into();
    assert!(invoked.is_disjoint(&triggers));
    let all: BTreeSet<String> = invoked.union(&triggers).cloned().collect();
    assert_eq!(all, function_ids);
}

/// Every error name a state's `Retry` rules match.
fn retried_errors(state: &serde_json::Value) -> BTreeSet<&str> {
    state["Retry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r["ErrorEquals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap())
        })
        .collect()
}

#[test]
fn every_error_the_state_machine_matches_is_one_the_code_emits() {
    // The definition as deployed: template defaults substituted.
    let t = sandbox::template::Template::load(&root().join("template.yaml")).unwrap();
    let mut b = sandbox::template::Bindings {
        parameters: t.parameter_defaults(),
        ..Default::default()
    };
    for (id, _) in t.resources_of_type("AWS::Serverless::Function") {
        b.attrs.insert(
            format!("{id}.Arn"),
            format!("arn:aws:lambda:us-east-2:123456789012:function:{id}"),
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&t.state_machine_definition("ProvisionStateMachine", &b).unwrap()).unwrap();
    let mut names = BTreeSet::new();
    for state in v["States"].as_object().unwrap().values() {
        for key in ["Retry", "Catch"] {
            for rule in state[key].as_array().into_iter().flatten() {
                for e in rule["ErrorEquals"].as_array().unwrap() {
                    names.insert(e.as_str().unwrap().to_owned());
                }
            }
        }
    }
    let platform =
        |n: &str| n.starts_with("States.") || n.starts_with("Lambda.") || n.starts_with("Runtime.");
    for n in &names {
        assert!(
            platform(n) || cmek::error::ERROR_TYPES.contains(&n.as_str()),
            "the ASL matches {n}, which no function emits"
        );
    }
    for must in ["ValidationFailed", "Throttled", "AdminApiUnavailable"] {
        assert!(names.contains(must), "the ASL must handle {must}");
    }
    // Every Task retries every error the code calls transient (one list:
    // cmek::error::TRANSIENT_ERROR_TYPES), so a new transient error cannot
    // fail a workflow on its first occurrence.
    for (name, state) in v["States"].as_object().unwrap() {
        if state["Type"] != "Task" {
            continue;
        }
        let retried = retried_errors(state);
        for t in cmek::error::TRANSIENT_ERROR_TYPES {
            assert!(
                retried.contains(t),
                "{name} does not retry the transient error {t}"
            );
        }
    }
    // Every Task catches everything to Finish (or, for Finish, to a Fail state).
    for (name, state) in v["States"].as_object().unwrap() {
        if state["Type"] == "Task" {
            let all = state["Catch"].as_array().unwrap().iter().any(|c| {
                c["ErrorEquals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e == "States.ALL")
            });
            assert!(all, "{name} has no States.ALL catch");
        }
    }
}

#[test]
fn no_function_role_can_delete_or_disable_a_key() {
    let t = template();
    let deny = &t["Resources"]["NeverDestroyKeysPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    let denied: Vec<&str> = deny["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for a in ["kms:ScheduleKeyDeletion", "kms:DisableKey"] {
        assert!(denied.contains(&a), "{a} must be denied");
    }
    assert_eq!(deny["Resource"], "*");
    // Any action pattern that would match one of these is forbidden in an Allow.
    const DESTRUCTIVE: [&str; 4] = [
        "kms:ScheduleKeyDeletion",
        "kms:DisableKey",
        "kms:DeleteImportedKeyMaterial",
        "kms:DisableKeyRotation",
    ];
    let forbidden = |pattern: &str| {
        DESTRUCTIVE
            .iter()
            .any(|a| cmek::policy::glob_match(pattern, a, true))
    };
    // The check itself must be able to fail.
    for p in [
        "kms:*",
        "*",
        "kms:Schedule*",
        "kms:Disable*",
        "KMS:disablekey",
        "kms:?isableKey",
    ] {
        assert!(forbidden(p), "{p} must count as forbidden");
    }
    assert!(!forbidden("kms:DescribeKey") && !forbidden("kms:CancelKeyDeletion"));
    for (id, f) in functions(&t) {
        let policies = f["Properties"]["Policies"].as_sequence().unwrap();
        let has_deny = policies
            .iter()
            .any(|p| tag_arg(p).is_some_and(|(tag, arg)| tag == "!Ref" && arg == "NeverDestroyKeysPolicy"));
        assert!(has_deny, "{id} lacks the explicit Deny");
        // A conditional policy (`!If`) is checked in every branch it can take.
        for p in policies.iter().flat_map(branches) {
            let p = &p;
            if tag_arg(p).is_some_and(|(tag, arg)| tag == "!Ref" && arg == "NeverDestroyKeysPolicy") {
                continue;
            }
            // A managed policy of this template is read from its document;
            // anything else must be an inline policy this test can read (a
            // SAM policy template or an outside policy would go unchecked).
            let document = match tag_arg(p) {
                Some((tag, arg)) if tag == "!Ref" => {
                    let name = arg.as_str().unwrap_or_default().to_owned();
                    let res = &t["Resources"][name.as_str()];
                    assert_eq!(res["Type"], "AWS::IAM::ManagedPolicy", "{id}: !Ref {name}");
                    res["Properties"]["PolicyDocument"].clone()
                }
                _ => p.clone(),
            };
            let statements: Vec<Value> = document["Statement"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{id}: a policy without a Statement list: {p:?}"))
                .iter()
                .flat_map(branches)
                .collect();
            for s in &statements {
                if s["Effect"] != "Allow" {
                    continue;
                }
                assert!(
                    s.get("NotAction").is_none(),
                    "{id}: an Allow with NotAction allows every other action"
                );
                let actions: Vec<String> = match &s["Action"] {
                    Value::String(a) => vec![a.clone()],
                    Value::Sequence(list) => list.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
                    other => panic!("{id}: unexpected Action {other:?}"),
                };
                for a in actions {
                    assert!(!forbidden(&a), "{id} is allowed {a}");
                }
            }
        }
    }
}

#[test]
fn the_table_keeps_its_data() {
    let t = template();
    let table = &t["Resources"]["WorkflowTable"];
    assert_eq!(table["DeletionPolicy"], "Retain");
    assert_eq!(table["Properties"]["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(table["Properties"]["DeletionProtectionEnabled"], true);
    assert_eq!(
        table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(table["Properties"]["SSESpecification"]["SSEEnabled"], true);
}

#[test]
fn the_guardian_may_only_cancel_deletions_of_its_own_tagged_keys() {
    let t = template();
    let guardian = &t["Resources"]["KeyGuardianFunction"]["Properties"]["Policies"];
    let mut found = false;
    for p in guardian.as_sequence().unwrap() {
        for s in p["Statement"].as_sequence().into_iter().flatten() {
            let actions: Vec<String> = match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Sequence(l) => l.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
                _ => vec![],
            };
            if actions
                .iter()
                .any(|a| a == "kms:CancelKeyDeletion" || a == "kms:EnableKey")
            {
                found = true;
                assert_eq!(
                    s["Condition"]["StringEquals"]["aws:ResourceTag/cmek:managed-by"], "cmek-provisioner",
                    "{s:?}"
                );
            }
        }
    }
    assert!(found, "the guardian's cancel permission is expected");
    for (id, f) in functions(&t) {
        if id == "KeyGuardianFunction" {
            continue;
        }
        for p in f["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(branches)
        {
            for st in p["Statement"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(branches)
            {
                let actions: Vec<String> = match &st["Action"] {
                    Value::String(a) => vec![a.clone()],
                    Value::Sequence(l) => l.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
                    _ => vec![],
                };
                for a in actions {
                    assert!(
                        a != "kms:CancelKeyDeletion" && a != "kms:EnableKey",
                        "{id} must not re-enable keys"
                    );
                }
            }
        }
    }
}

#[test]
fn no_deployed_function_is_armed_with_crash_points() {
    // The hook is compiled out of release builds; the template must not try
    // to switch it on either.
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    assert!(
        !text.contains("CMEK_CRASH_"),
        "template.yaml sets a crash-point variable"
    );
    let profile = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(
        !profile.contains("debug-assertions = true"),
        "a release profile with debug assertions would compile the crash hook in"
    );
}

#[test]
fn the_functions_link_one_http_and_tls_stack_and_it_is_ring() {
    // aws-lc comes back with any SDK crate's `default-https-client` feature
    // or reqwest's `rustls` feature, and costs about 2 MB of each binary.
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let packages: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    assert!(packages.contains(&"ring"), "ring is the crypto provider");
    for unwanted in ["aws-lc-rs", "aws-lc-sys", "openssl", "native-tls"] {
        assert!(
            !packages.contains(&unwanted),
            "{unwanted} is in Cargo.lock: a dependency's features brought a second TLS stack back"
        );
    }
    // The SDK's own HTTP client (hyper, its TLS connector, HTTP/2) comes back
    // with any SDK crate's default features; the SDK talks through reqwest
    // (cmek::sdk_http), and the second stack cost 1.1 MB of the binary.
    assert!(
        !packages.contains(&"aws-smithy-http-client"),
        "aws-smithy-http-client is in Cargo.lock: a second HTTP stack came back"
    );
}

#[test]
fn result_events_reach_the_result_topic_and_only_the_rule_may_publish() {
    let t = template();
    let rule = &t["Resources"]["ResultRule"]["Properties"];
    let pattern = &rule["EventPattern"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(strings(&pattern["source"]), vec![cmek::events::SOURCE]);
    assert_eq!(
        strings(&pattern["detail-type"]),
        vec![
            cmek::events::DETAIL_SUCCEEDED,
            cmek::events::DETAIL_FAILED,
            cmek::events::DETAIL_PREFLIGHT
        ],
        "the rule must match the detail types Finish publishes, and preflight's test event"
    );
    assert_eq!(
        tag_arg(&rule["EventBusName"]),
        Some(("!Ref".into(), Value::from("ResultBus")))
    );
    assert_eq!(
        tag_arg(&rule["Targets"][0]["Arn"]),
        Some(("!Ref".into(), Value::from("ResultTopic")))
    );
    let statement = &t["Resources"]["ResultTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(statement["Action"], "sns:Publish");
    assert_eq!(
        tag_arg(&statement["Condition"]["ArnEquals"]["aws:SourceArn"]),
        Some(("!GetAtt".into(), Value::from("ResultRule.Arn")))
    );
}

/// The default monitoring level emits only the essential metrics: every
/// alarm on the project's namespace must watch one of them, or it would
/// never fire on a default stack; the dashboard (detailed metrics) exists
/// only with DetailedMonitoring=true, which the functions read.
#[test]
fn every_alarm_pages_on_a_metric_the_default_stack_emits() {
    let t = template();
    let mut ours = 0;
    for (id, alarm) in t["Resources"].as_mapping().unwrap() {
        if alarm["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let p = &alarm["Properties"];
        assert!(
            p.get("Metrics").is_none(),
            "{id:?}: a metric-math alarm is not checked here"
        );
        if p["Namespace"] != cmek::metrics::NAMESPACE {
            continue;
        }
        ours += 1;
        let name = p["MetricName"].as_str().unwrap();
        let metric = cmek::metrics::Metric::ALL
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{id:?} watches {name}, which nothing emits"));
        assert!(
            metric.is_essential(),
            "{id:?} watches {name}, which a default stack does not emit (DetailedMonitoring=false)"
        );
    }
    assert!(
        ours >= 1,
        "the guardian's findings alarm is on the project's namespace"
    );
    assert_eq!(t["Resources"]["Dashboard"]["Condition"], "Detailed");
    assert_eq!(t["Outputs"]["DashboardUrl"]["Condition"], "Detailed");
    let (tag, arg) =
        tag_arg(&t["Globals"]["Function"]["Environment"]["Variables"][cmek::metrics::DETAILED_ENV]).unwrap();
    assert_eq!((tag.as_str(), arg.as_str()), ("!Ref", Some("DetailedMonitoring")));
    assert_eq!(t["Parameters"]["DetailedMonitoring"]["Default"], "false");
}

#[test]
fn the_dashboard_is_valid_json_and_shows_only_metrics_the_code_emits() {
    let t = template();
    let (tag, body) = tag_arg(&t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]).unwrap();
    assert_eq!(tag, "!Sub");
    // What CloudFormation substitutes, with stand-ins.
    let body = body
        .as_str()
        .unwrap()
        .replace("${AWS::Region}", "us-east-2")
        .replace(
            "${ProvisionStateMachine}",
            "arn:aws:states:us-east-2:1:stateMachine:x",
        );
    assert!(
        !body.contains("${"),
        "an unresolved substitution in the dashboard"
    );
    let dashboard: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Every metric the code can emit (a closed enum), not a hand-kept list.
    let emitted: Vec<&str> = cmek::metrics::Metric::ALL.iter().map(|m| m.name()).collect();
    let widgets = dashboard["widgets"].as_array().unwrap();
    assert!(widgets.len() >= 6);
    let text = body.as_str();
    for name in &emitted {
        assert!(
            text.contains(&format!("\"{name}\"")) || text.contains(&format!("MetricName=\\\"{name}\\\"")),
            "the dashboard does not show {name}"
        );
    }
    for w in widgets {
        for m in w["properties"]["metrics"].as_array().unwrap() {
            let row = m.as_array().unwrap();
            if row[0] == "CmekProvisioner" {
                let name = row[1].as_str().unwrap();
                assert!(
                    emitted.contains(&name),
                    "the dashboard shows {name}, which nothing emits"
                );
            }
        }
    }
}

#[test]
fn every_wildcard_resource_says_why() {
    // YAML drops comments, so this reads the text: each `Resource: "*"` must
    // have a comment above it in its statement (no other Resource between).
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut wildcards = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.contains("Resource: \"*\"") {
            continue;
        }
        wildcards += 1;
        let explained = lines[i.saturating_sub(16)..i]
            .iter()
            .rev()
            .take_while(|l| !l.contains("Resource:"))
            .any(|l| l.trim_start().starts_with('#'));
        assert!(
            explained,
            "template.yaml line {}: Resource \"*\" without a comment saying why",
            i + 1
        );
    }
    assert!(wildcards >= 1, "the check found the wildcards");
}

#[test]
fn the_validation_sweep_schedule_sends_what_the_guardian_reads() {
    let t = template();
    let sweep =
        &t["Resources"]["KeyGuardianFunction"]["Properties"]["Events"]["ValidationSweep"]["Properties"];
    let input: serde_json::Value = serde_json::from_str(sweep["Input"].as_str().unwrap()).unwrap();
    assert_eq!(input["sweep"], cmek::guardian::VALIDATION_SWEEP_INPUT);
    // "off" disables the schedule rather than leaving a rule that never fires.
    assert!(
        tag_arg(&sweep["State"]).is_some_and(|(tag, _)| tag == "!If"),
        "{:?}",
        sweep["State"]
    );
}

#[test]
fn the_workspace_restriction_reaches_every_function() {
    let t = template();
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    let (tag, arg) = tag_arg(&vars[cmek::config::RESTRICT_TO_WORKSPACES]).unwrap();
    assert_eq!(
        (tag.as_str(), arg.as_str()),
        ("!Ref", Some("RestrictToWorkspaces"))
    );
    assert_eq!(
        t["Parameters"]["RestrictToWorkspaces"]["Default"].as_str(),
        Some("true")
    );
}

/// The README and the docs/ pages it links to.
fn readme() -> String {
    cmek_e2e::documentation()
}

/// The README's error table names exactly the errors the code emits, and
/// says "yes" (retried) for exactly the transient ones.
#[test]
fn the_readmes_error_table_is_the_codes() {
    let text = readme();
    let section = text
        .split("### Error names (`errorType`)")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .unwrap();
    let mut named = BTreeSet::new();
    let mut retried = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for name in cells[1].split(" / ") {
            let name = name.trim_matches('`').to_owned();
            // Retried by their own schedule (the validation one), not as transient.
            if cells[3].starts_with("yes")
                && !matches!(
                    name.as_str(),
                    "StateConflict" | "ValidationFailed" | "AttachNotYetAccepted" | "CreationOutcomeUnknown"
                )
            {
                retried.insert(name.clone());
            }
            named.insert(name);
        }
    }
    let emitted: BTreeSet<String> = cmek::error::ERROR_TYPES.iter().map(|s| s.to_string()).collect();
    assert_eq!(named, emitted, "README error table vs cmek::error::ERROR_TYPES");
    let transient: BTreeSet<String> = cmek::error::TRANSIENT_ERROR_TYPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        retried, transient,
        "README 'retried' column vs TRANSIENT_ERROR_TYPES"
    );
}

#[test]
fn the_readme_lists_exactly_the_environment_variables_the_template_sets() {
    let t = template();
    let mut set = BTreeSet::new();
    let mut add = |vars: &Value| {
        for k in vars.as_mapping().into_iter().flat_map(|m| m.keys()) {
            set.insert(k.as_str().unwrap().to_owned());
        }
    };
    add(&t["Globals"]["Function"]["Environment"]["Variables"]);
    for (_, f) in functions(&t) {
        add(&f["Properties"]["Environment"]["Variables"]);
    }
    let text = readme();
    let start = text.find("The functions read their configuration").unwrap();
    let end = start + text[start..].find("naming it.").unwrap();
    let listed: BTreeSet<String> = text[start..end]
        .split('`')
        .filter(|w| w.starts_with("CMEK_"))
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, set, "README's list vs template.yaml");
}

#[test]
fn the_readme_states_the_worst_case_of_validation_probes_for_the_default_schedule() {
    let t = template();
    // CloudFormation parameters of type String (so a pattern can bound them).
    let retries: u64 = t["Parameters"]["ValidationMaxAttempts"]["Default"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("ValidationMaxAttempts has a numeric default");
    // Four access-denied events per validation: the first call, each retry, and the attach.
    let worst = 4 * (1 + retries + 1);
    let text = readme();
    assert!(
        text.contains(&format!("Worst case with the default schedule: {worst}")),
        "README must state {worst}"
    );
    assert!(text.contains(&format!("`ValidationMaxAttempts` = {retries} retries")));
}

#[test]
fn every_task_retries_every_crash_and_service_error_lambda_documents() {
    // AWS Step Functions, "Handle Lambda service exceptions": the service
    // errors to retry, and "unhandled errors in Lambda are reported as
    // Lambda.Unknown … out-of-memory errors and function timeouts"; Lambda
    // reports a runtime that exits as Runtime.ExitError (or Runtime.Unknown).
    // Every step is idempotent, so each is retried.
    const DOCUMENTED: [&str; 8] = [
        "Lambda.ClientExecutionTimeoutException",
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "Lambda.Unknown",
        "Runtime.ExitError",
        "Runtime.Unknown",
    ];
    let t = sandbox::template::Template::load(&root().join("template.yaml")).unwrap();
    let mut b = sandbox::template::Bindings {
        parameters: t.parameter_defaults(),
        ..Default::default()
    };
    for (id, _) in t.resources_of_type("AWS::Serverless::Function") {
        b.attrs.insert(
            format!("{id}.Arn"),
            format!("arn:aws:lambda:us-east-2:123456789012:function:{id}"),
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&t.state_machine_definition("ProvisionStateMachine", &b).unwrap()).unwrap();
    let mut tasks = 0;
    for (name, state) in v["States"].as_object().unwrap() {
        if state["Type"] != "Task" {
            continue;
        }
        tasks += 1;
        let retried = retried_errors(state);
        for e in DOCUMENTED {
            assert!(retried.contains(e), "{name} does not retry {e}");
        }
    }
    assert_eq!(tasks, 9);
}

/// The resource a `!Ref`/`!GetAtt` names, if any.
fn referenced(v: &Value) -> Option<String> {
    let (tag, arg) = tag_arg(v)?;
    match tag.as_str() {
        "!Ref" => arg.as_str().map(str::to_owned),
        "!GetAtt" => arg.as_str().and_then(|a| a.split('.').next()).map(str::to_owned),
        _ => None,
    }
}

// Alarms and rules reaching their encrypted topics, and every rule target
// and asynchronously invoked function keeping its failures: tests/aws_rules.rs
// (on the SAM-translated template, each rule with its AWS document).

#[test]
fn every_log_group_keeps_logs_as_long_as_the_parameter_says() {
    let t = template();
    let mut groups = 0;
    for (id, res) in t["Resources"].as_mapping().unwrap() {
        if res["Type"] != "AWS::Logs::LogGroup" {
            continue;
        }
        groups += 1;
        assert_eq!(
            referenced(&res["Properties"]["RetentionInDays"]).as_deref(),
            Some("LogRetentionDays"),
            "{id:?}"
        );
    }
    // Every function logs to one of them, so none gets an unretained default group.
    for (id, f) in functions(&t) {
        assert!(
            referenced(&f["Properties"]["LoggingConfig"]["LogGroup"]).is_some(),
            "{id}"
        );
    }
    assert!(groups >= 12);
    let sm = &t["Resources"]["StateMachineLogGroup"]["Properties"]["LogGroupName"];
    assert!(
        format!("{sm:?}").contains("/aws/vendedlogs/states/"),
        "Step Functions logs belong under /aws/vendedlogs/states/: {sm:?}"
    );
}

#[test]
fn no_account_wide_name_collides_across_regions() {
    let t = template();
    // Names that are global to the account: dashboards, IAM roles and policies.
    for (id, res) in t["Resources"].as_mapping().unwrap() {
        let name = match res["Type"].as_str() {
            Some("AWS::CloudWatch::Dashboard") => &res["Properties"]["DashboardName"],
            Some("AWS::IAM::Role") => &res["Properties"]["RoleName"],
            Some("AWS::IAM::ManagedPolicy") => &res["Properties"]["ManagedPolicyName"],
            _ => continue,
        };
        if name.is_null() {
            continue; // CloudFormation generates a unique one
        }
        assert!(
            format!("{name:?}").contains("${AWS::Region}"),
            "{id:?}: {name:?} is global to the account and must include the Region"
        );
    }
}

#[test]
fn the_deployment_is_refused_where_it_could_not_work() {
    let t = template();
    let rules = format!("{:?}", t["Rules"]);
    for region in ["us-east-1", "us-east-2", "us-west-1", "us-west-2"] {
        assert!(rules.contains(region), "{region}");
    }
    assert!(
        rules.contains("KeyRegion") && rules.contains("AWS::Region"),
        "{rules}"
    );
    // Parameters the state machine takes as whole numbers accept nothing else.
    for p in [
        "ValidationIntervalSeconds",
        "ValidationMaxDelaySeconds",
        "ValidationMaxAttempts",
        "TransientIntervalSeconds",
    ] {
        let pattern = t["Parameters"][p]["AllowedPattern"].as_str().unwrap();
        let re = |v: &str| {
            // The patterns are simple: check the two cases that matter.
            v.chars().all(|c| c.is_ascii_digit()) && !v.starts_with('0') && !v.is_empty()
        };
        assert_eq!(pattern, "^[1-9][0-9]{0,5}$", "{p}");
        assert!(re("5") && !re("1.5") && !re("0"));
    }
    let prefix = t["Parameters"]["AliasPrefix"]["AllowedPattern"].as_str().unwrap();
    assert!(
        prefix.contains("(?!aws(/|$))") && prefix.ends_with("(/[a-zA-Z0-9_-]+)*$"),
        "{prefix}"
    );
    // Discovery does not poll while auto-provisioning is off.
    let state =
        &t["Resources"]["DiscoverWorkspacesFunction"]["Properties"]["Events"]["Poll"]["Properties"]["State"];
    assert!(format!("{state:?}").contains("AutoProvisioning"), "{state:?}");
}

#[test]
fn metrics_flow_at_every_log_level() {
    let t = template();
    let levels: Vec<String> = t["Parameters"]["LogLevel"]["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let rank = |l: &str| {
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
            .iter()
            .position(|x| *x == l)
            .unwrap()
    };
    let logging = &t["Globals"]["Function"]["LoggingConfig"];
    let (tag, arg) =
        tag_arg(&logging["ApplicationLogLevel"]).expect("ApplicationLogLevel is chosen per LogLevel");
    assert_eq!(tag, "!If");
    let verbose = &t["Conditions"]["VerboseLogs"];
    for level in &levels {
        // What Lambda filters at for this LogLevel.
        let is_verbose = format!("{verbose:?}").contains(&format!("\"{level}\""));
        let applied = if is_verbose {
            level.clone()
        } else {
            arg[2].as_str().unwrap().to_owned()
        };
        // EMF lines carry no level: Lambda treats them as INFO.
        assert!(
            rank(&applied) <= rank("INFO"),
            "{level}: Lambda would drop the metrics at {applied}"
        );
        // The functions' own lines at `level` pass Lambda's filter.
        assert!(
            rank(&applied) <= rank(level),
            "{level}: Lambda would drop the function's own lines"
        );
    }
    let (tag, arg) =
        tag_arg(&t["Globals"]["Function"]["Environment"]["Variables"]["CMEK_LOG_LEVEL"]).unwrap();
    assert_eq!((tag.as_str(), arg.as_str()), ("!Ref", Some("LogLevel")));
}

/// The validation schedule's worst case, from the template's defaults: every
/// retry's wait (Step Functions: `IntervalSeconds × BackoffRate^(n-1)`,
/// capped at `MaxDelaySeconds`) plus every attempt at the Admin API client's
/// validate timeout. Returns (waits, attempts, total) in whole seconds.
fn validation_worst_case(t: &Value) -> (u64, u64, u64) {
    let param = |name: &str| -> f64 {
        t["Parameters"][name]["Default"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("{name} has a numeric default"))
    };
    let (interval, rate) = (param("ValidationIntervalSeconds"), param("ValidationBackoffRate"));
    let (cap, retries) = (
        param("ValidationMaxDelaySeconds"),
        param("ValidationMaxAttempts") as u32,
    );
    let waits: f64 = (0..retries)
        .map(|n| (interval * rate.powi(n as i32)).min(cap))
        .sum();
    let attempts = u64::from(retries) + 1;
    let per_attempt = cmek::admin_api::ClientOptions::default()
        .validate_timeout
        .as_secs();
    let waits = waits.ceil() as u64;
    (waits, attempts, waits + attempts * per_attempt)
}

#[test]
fn the_example_stack_waits_out_the_validation_schedule() {
    let t = template();
    let (waits, attempts, total) = validation_worst_case(&t);
    // Both examples: a new workspace's key waits out the same schedule.
    let mut timeout = 0;
    for (file, resource) in [
        ("workspace-key.yaml", "WorkspaceKey"),
        ("cmek-workspace.yaml", "TeamWorkspace"),
    ] {
        let example: Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(root().join("examples/cloudformation").join(file)).unwrap(),
        )
        .unwrap();
        timeout = example["Resources"][resource]["Properties"]["ServiceTimeout"]
            .as_u64()
            .unwrap_or_else(|| panic!("{file} sets ServiceTimeout"));
        // CloudFormation's ceiling for a custom resource's ServiceTimeout.
        assert!(
            timeout <= 3600,
            "{file}: ServiceTimeout {timeout} is above CloudFormation's 3600 s"
        );
        assert!(
            timeout >= total,
            "{file}: ServiceTimeout {timeout} s would give up before the validation schedule ({total} s)"
        );
    }
    let text = readme();
    let stated = format!("{waits} s of waits + {attempts} attempts × 60 s = {total} s");
    assert!(text.contains(&stated), "README must state: {stated}");
    assert!(
        text.contains(&format!("ServiceTimeout: {timeout}")),
        "README's snippet"
    );
}

#[test]
fn the_readmes_put_events_examples_match_the_discovery_rule() {
    let t = template();
    let pattern = &t["Resources"]["StartFromEventFunction"]["Properties"]["Events"]["WorkspaceDiscovered"]["Properties"]
        ["Pattern"];
    let sources: Vec<String> = serde_yaml_ng::from_value(pattern["source"].clone()).unwrap();
    let types: Vec<String> = serde_yaml_ng::from_value(pattern["detail-type"].clone()).unwrap();
    let text = readme();
    let start = text.find("### New workspaces (EventBridge)").unwrap();
    // The section runs to the end of its page (docs/triggers.md).
    let end = text[start..].find("<!-- docs/").unwrap_or(text.len() - start);
    let section = &text[start..start + end];
    let mut examples = 0;
    for quoted in ["\"Source\": \"", "\"Source\":\""] {
        for (i, _) in section.match_indices(quoted) {
            let rest = &section[i + quoted.len()..];
            let source = &rest[..rest.find('"').unwrap()];
            assert!(
                sources.iter().any(|s| s == source),
                "the README puts source {source:?}; the rule matches {sources:?}"
            );
            examples += 1;
        }
    }
    assert_eq!(examples, 2, "the JSON and the CLI example");
    for t in &types {
        assert!(section.contains(&format!("\"DetailType\": \"{t}\"")), "{t}");
    }
}
