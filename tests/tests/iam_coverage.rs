//! What moto cannot see: IAM. Every AWS call a function made anywhere in the
//! end-to-end suite (recorded by the local stack's AWS proxy, with the
//! resource ARNs and condition keys IAM would check) is evaluated against
//! that function's role exactly as `sam deploy` would create it — the AWS
//! SAM translator's output, the template's managed policies included. Also
//! checked from the translation: the state machine's role may invoke every
//! Lambda its definition names, every rule may reach its target, every
//! function may write to its failure destination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};

use cmek_e2e::aws_data::ServiceData;
use cmek_e2e::iam::{self, Decision, Effect};
use cmek_e2e::sam::{logical, template_text, translate};
use sandbox::iam_request::Authorization;
use sandbox::stack::{RecordedCalls, aws_calls_dir, repo_root};
use sandbox::template::{Bindings, Template};
use serde_json::Value;

/// Bindings for checks that need no recorded stack: every resource's `Ref`
/// is its logical id and its `Arn` a fixed ARN built from it.
fn static_bindings(translated: &Value) -> Bindings {
    let t = Template::load(&repo_root().join("template.yaml")).unwrap();
    let mut b = Bindings {
        parameters: t.parameter_defaults(),
        ..Default::default()
    };
    for (k, v) in [
        ("AWS::AccountId", "123456789012"),
        ("AWS::Region", "us-east-2"),
        ("AWS::Partition", "aws"),
        ("AWS::StackName", "cmek-provisioner"),
    ] {
        b.refs.insert(k.into(), v.into());
    }
    for (id, res) in translated["Resources"].as_object().unwrap() {
        let service = res["Type"]
            .as_str()
            .unwrap()
            .split("::")
            .nth(1)
            .unwrap()
            .to_lowercase();
        let arn = match res["Type"].as_str().unwrap() {
            "AWS::Lambda::Function" => format!("arn:aws:lambda:us-east-2:123456789012:function:{id}"),
            _ => format!("arn:aws:{service}:us-east-2:123456789012:{id}"),
        };
        b.refs.insert(id.clone(), id.clone());
        b.attrs.insert(format!("{id}.Arn"), arn);
    }
    b
}

struct Coverage {
    stacks: usize,
    calls: usize,
    authorizations: usize,
    /// (function, action) pairs seen.
    pairs: BTreeSet<(String, String)>,
    /// (function, statement origin, action pattern) that allowed something.
    used: BTreeSet<(String, String, String)>,
    /// Every allowed authorization as `cmekctl preflight`'s manifest names it.
    manifest: BTreeMap<ManifestKey, (BTreeSet<String>, bool)>,
    problems: Vec<String>,
}

/// (function, action, resource, context), with the stack's own names as
/// placeholders.
type ManifestKey = (String, String, String, BTreeMap<String, Vec<String>>);

fn evaluate(translated: &Value, recorded: &[RecordedCalls]) -> Coverage {
    let function_roles = iam::function_roles(translated);
    let mut c = Coverage {
        stacks: recorded.len(),
        calls: 0,
        authorizations: 0,
        pairs: BTreeSet::new(),
        used: BTreeSet::new(),
        manifest: BTreeMap::new(),
        problems: Vec::new(),
    };
    for rec in recorded {
        let roles = iam::roles(translated, &rec.bindings).unwrap();
        let resource_policies = resource_policies(translated, &rec.bindings);
        for call in &rec.calls {
            c.calls += 1;
            let Some(role) = function_roles.get(&call.function).and_then(|r| roles.get(r)) else {
                c.problems.push(format!(
                    "{} ({}): no such function in the translated template",
                    call.function, rec.label
                ));
                continue;
            };
            if call.authorizations.is_empty() {
                c.problems.push(format!(
                    "{} {}: the proxy recorded no authorization",
                    call.function, call.action
                ));
            }
            let principal = principal_arn(&function_roles[&call.function], &rec.bindings);
            for a in &call.authorizations {
                c.authorizations += 1;
                c.pairs.insert((call.function.clone(), a.action.clone()));
                // A resource's own policy may deny what the role allows.
                let mut with_principal = a.clone();
                with_principal
                    .context
                    .insert("aws:PrincipalArn".into(), vec![principal.clone()]);
                if let Ok(Decision::Denied(by)) =
                    iam::decide_resource_policy(&resource_policies, &principal, &with_principal)
                {
                    c.problems.push(format!(
                        "{}: {} on {} {:?} is DENIED by the resource policy {by} (stack {})",
                        call.function, a.action, a.resource, a.context, rec.label
                    ));
                    continue;
                }
                // KMS decides on the key's own policy first.
                let decision = match &call.key_policy {
                    Some(policy) if call.service == "kms" && a.resource.contains(":key/") => {
                        iam::decide_kms(role, policy, &principal, a)
                    }
                    _ => role.decide(a),
                };
                match decision {
                    Ok(Decision::Allowed(origins)) => {
                        let by_role = origins.iter().any(|o| role.statements.iter().any(|s| &s.origin == o));
                        let platform = rec
                            .bindings
                            .parameters
                            .get("Platform")
                            .cloned()
                            .unwrap_or_else(|| "claude-platform".into());
                        let entry = c
                            .manifest
                            .entry(manifest_key(&rec.bindings, &call.function, a))
                            .or_insert_with(|| (BTreeSet::new(), false));
                        entry.0.insert(platform);
                        entry.1 |= by_role;
                        // The role's statements that allowed it (a key
                        // policy's grant is no permission of the role).
                        for origin in origins {
                            let Some(s) = role.statements.iter().find(|s| s.origin == origin) else {
                                continue;
                            };
                            for p in s.actions.iter().filter(|p| iam::action_matches(p, &a.action)) {
                                c.used.insert((call.function.clone(), origin.clone(), p.clone()));
                            }
                        }
                    }
                    Ok(Decision::Denied(by)) => c.problems.push(format!(
                        "{}: {} on {} is DENIED by {by} (stack {})",
                        call.function, a.action, a.resource, rec.label
                    )),
                    Ok(Decision::NotAllowed) => c.problems.push(format!(
                        "{}: {} on {} {:?} is allowed by no statement of its role: add it to the function's Policies in template.yaml (stack {})",
                        call.function, a.action, a.resource, a.context, rec.label
                    )),
                    Err(e) => c.problems.push(format!("{}: {}: {e:#}", call.function, a.action)),
                }
            }
        }
    }
    c.problems.sort();
    c.problems.dedup();
    c
}

/// A recorded authorization with this stack's own names replaced by the
/// placeholders `cmekctl preflight` fills in from the deployed stack
/// (`cli/src/preflight/manifest.rs`).
fn manifest_key(b: &Bindings, function: &str, a: &Authorization) -> ManifestKey {
    let mut names: Vec<(String, &str)> = Vec::new();
    // Whole ARNs first: a name may be part of another (the local table and
    // bus may share one).
    for (value, placeholder) in [
        (
            b.attrs.get("ResultBus.Arn"),
            "arn:${Partition}:events:${Region}:${Account}:event-bus/${ResultBus}",
        ),
        (
            b.attrs.get("WorkflowTable.Arn"),
            "arn:${Partition}:dynamodb:${Region}:${Account}:table/${WorkflowTable}",
        ),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            names.push((v.clone(), placeholder));
        }
    }
    for (value, placeholder) in [
        (b.parameters.get("AdminKeySecretArn"), "${AdminKeySecretArn}"),
        (b.refs.get("AlertTopic"), "${AlertTopic}"),
        (
            b.refs.get(sandbox::stack::STATE_MACHINE),
            "${ProvisionStateMachine}",
        ),
        (
            b.attrs.get("FailedInvocationsQueue.Arn"),
            "${FailedInvocationsQueue}",
        ),
        (b.refs.get("WorkflowTable"), "${WorkflowTable}"),
        (b.refs.get("ResultBus"), "${ResultBus}"),
        (b.parameters.get("AliasPrefix"), "${AliasPrefix}"),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            names.push((v.clone(), placeholder));
        }
    }
    let generic = |s: &str| -> String {
        let mut s = s.to_owned();
        for (value, placeholder) in &names {
            s = s.replace(value.as_str(), placeholder);
        }
        s = s
            .replace(&format!(":{}:", sandbox::stack::REGION), ":${Region}:")
            .replace(&format!(":{}:", sandbox::stack::ACCOUNT), ":${Account}:")
            .replace("arn:aws:", "arn:${Partition}:");
        // A key's id and a workspace's id: whichever the call named.
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find("key/").map(|i| i + 4).or_else(|| rest.find("wrkspc_")) {
            let (head, tail) = rest.split_at(i);
            out.push_str(head);
            if head.ends_with("key/") {
                let end = tail
                    .find(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
                    .unwrap_or(tail.len());
                if end == 0 {
                    rest = tail;
                    continue;
                }
                out.push_str("${AnyKey}");
                rest = &tail[end..];
            } else {
                let end = tail
                    .char_indices()
                    .skip(7)
                    .find(|(_, c)| !c.is_ascii_alphanumeric())
                    .map_or(tail.len(), |(i, _)| i);
                out.push_str("${Workspace}");
                rest = &tail[end..];
            }
        }
        out.push_str(rest);
        // A creation token (`n-` and 32 hex digits, CreationToken::for_name
        // and ::derived): a new workspace's key is tagged and aliased with it.
        let token = regex::Regex::new(r"\bn-[0-9a-f]{32}\b").unwrap();
        token
            .replace_all(&out, regex::NoExpand("${CreationToken}"))
            .into_owned()
    };
    (
        function.to_owned(),
        a.action.clone(),
        generic(&a.resource),
        a.context
            .iter()
            .map(|(k, vs)| (k.clone(), vs.iter().map(|v| generic(v)).collect()))
            .collect(),
    )
}

/// The manifest `cmekctl preflight` embeds, as this run recorded it.
fn manifest_json(c: &Coverage) -> Value {
    let calls: Vec<Value> = c
        .manifest
        .iter()
        .map(|((function, action, resource, context), (platforms, by_role))| {
            let mut call = serde_json::json!({
                "function": function,
                "action": action,
                "resource": resource,
                "platforms": platforms,
                "grantedBy": if *by_role { "role" } else { "key-policy" },
            });
            if !context.is_empty() {
                call["context"] = serde_json::json!(context);
            }
            call
        })
        .collect();
    serde_json::json!({
        "about": "Every AWS call the functions make, as IAM authorizes it, with the stack's own names as ${placeholders}: written by tests/tests/iam_coverage.rs from the calls the whole end-to-end suite recorded (CMEK_WRITE_PREFLIGHT_MANIFEST=1 ./scripts/test rewrites it; the test fails while it is stale). cmekctl preflight asks IAM's policy simulator about each against the deployed roles.",
        "calls": calls,
    })
}

/// The role ARN a function's calls are made as (`aws:PrincipalArn`).
fn principal_arn(role: &str, bindings: &Bindings) -> String {
    bindings
        .attrs
        .get(&format!("{role}.Arn"))
        .cloned()
        .unwrap_or_else(|| format!("<unbound {role}.Arn>"))
}

/// The statements of the resource policies the stack attaches to its own
/// resources where AWS evaluates them for the functions' calls (the event
/// bus's policy).
fn resource_policies(translated: &Value, bindings: &Bindings) -> Vec<iam::Statement> {
    translated["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Events::EventBusPolicy")
        .flat_map(|(id, _)| iam::resource_policy(translated, bindings, id).unwrap())
        .collect()
}

fn recorded_calls() -> Vec<RecordedCalls> {
    let dir = aws_calls_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let text = std::fs::read(entry.path()).unwrap();
        out.push(serde_json::from_slice::<RecordedCalls>(&text).unwrap());
    }
    out
}

/// Statements of the functions' roles that allowed no recorded call: the
/// least-privilege report (`function: origin action`). Each stack's roles
/// are resolved with its own parameters (a statement that exists only on
/// one platform is judged by the stacks of that platform), and a permission
/// counts as used when a call of any stack used it.
fn unused(translated: &Value, recorded: &[RecordedCalls], c: &Coverage) -> Vec<String> {
    let mut out = BTreeSet::new();
    for rec in recorded {
        let roles = iam::roles(translated, &rec.bindings).unwrap();
        for (function, role_id) in iam::function_roles(translated) {
            let role = &roles[&role_id];
            for s in role.statements.iter().filter(|s| s.effect == Effect::Allow) {
                for p in &s.actions {
                    if !c.used.contains(&(function.clone(), s.origin.clone(), p.clone())) {
                        out.insert(format!("{function}: {} {p}", s.origin));
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Permissions AWS exercises with the function's role rather than through
/// its SDK calls, so no recorded call can show them used: Secrets Manager
/// decrypting a secret encrypted with a customer-managed key (`kms:ViaService`),
/// SNS encrypting what the guardian publishes to the encrypted alert topic,
/// and Lambda delivering a failed asynchronous event to its destination
/// ("Lambda uses the function's execution role", Lambda developer guide,
/// "Configuring destinations for asynchronous invocation").
fn used_on_the_functions_behalf(permission: &str) -> bool {
    let (_, rest) = permission.split_once(": ").unwrap_or(("", permission));
    let (origin, action) = rest.rsplit_once(' ').unwrap_or((rest, ""));
    matches!(
        (origin, action),
        (
            "ReadAdminKeyPolicy/AdminKeyEncryptedWithACustomerManagedKey",
            "kms:Decrypt"
        )
    ) || (origin.ends_with("/AlertTopicKey") && matches!(action, "kms:GenerateDataKey" | "kms:Decrypt"))
        || (origin.ends_with("EventInvokeConfigOnFailureSQSPolicy/0") && action == "sqs:SendMessage")
}

#[test]
#[ignore = "evaluates the AWS calls the whole end-to-end suite recorded: ./scripts/test runs it after the suite"]
fn every_aws_call_of_the_end_to_end_suite_is_allowed_by_the_deployed_role() {
    let recorded = recorded_calls();
    assert!(
        !recorded.is_empty(),
        "no recorded AWS calls in {}: run the end-to-end suite first (./scripts/test does)",
        aws_calls_dir().display()
    );
    // Stacks of both platforms were recorded and are judged (each with its
    // own parameters): a statement that exists on one platform only is
    // otherwise never exercised.
    let platforms: BTreeSet<String> = recorded
        .iter()
        .map(|r| {
            r.bindings
                .parameters
                .get("Platform")
                .cloned()
                .unwrap_or_else(|| "claude-platform".into())
        })
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from(["claude-platform".to_owned(), "claude-platform-on-aws".to_owned()]),
        "the suite must record stacks of both platforms"
    );
    // Every action a call was recorded as exists in AWS's own data with the
    // scope AWS gives it: the recorder is not where a name may come from.
    let data = ServiceData::load().unwrap();
    let mut unknown = BTreeSet::new();
    for call in recorded.iter().flat_map(|r| &r.calls) {
        for a in &call.authorizations {
            match data.action(&a.action) {
                None => {
                    unknown.insert(format!(
                        "{}: {} is not an IAM action AWS has",
                        call.function, a.action
                    ));
                }
                Some(d) if d.account_scoped() && a.resource != "*" => {
                    unknown.insert(format!(
                        "{}: {} is account-scoped, recorded on {}",
                        call.function, a.action, a.resource
                    ));
                }
                Some(_) => {}
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the recorder named calls AWS would not authorize that way:\n{}",
        unknown.into_iter().collect::<Vec<_>>().join("\n")
    );
    let translated = translate(&template_text());
    let c = evaluate(&translated, &recorded);
    assert!(
        c.problems.is_empty(),
        "{} of the recorded calls would fail in AWS:\n{}",
        c.problems.len(),
        c.problems.join("\n")
    );

    // The check can fail: without the permissions the issue found missing
    // (Finish's Query on the audit trail; Begin's on the key index), the
    // same calls are reported.
    for (function, remove) in [
        ("FinishFunction", "dynamodb:PutItem, dynamodb:Query]"),
        ("BeginFunction", "- { Sid: WorkspacesOnAdoptedKey"),
    ] {
        let text = template_text();
        let broken = match remove {
            r if r.starts_with("- ") => {
                let start = text.find(r).unwrap();
                let end = start + text[start..].find('\n').unwrap();
                format!("{}{}", &text[..start], &text[end + 1..])
            }
            r => text.replacen(r, "dynamodb:PutItem]", 1),
        };
        assert_ne!(
            broken, text,
            "{function}: the control did not change the template"
        );
        let control = evaluate(&translate(&broken), &recorded);
        assert!(
            control
                .problems
                .iter()
                .any(|p| p.starts_with(&format!("{function}: dynamodb:Query"))),
            "{function}: the suite never exercised the permission the control removed; the control found: {:?}",
            control.problems
        );
    }

    // Least privilege: a permission no call of the suite used is either one
    // AWS uses on the function's behalf (which no local call can show) or
    // one to remove.
    let unused = unused(&translated, &recorded, &c);
    let unexplained: Vec<&String> = unused
        .iter()
        .filter(|u| !used_on_the_functions_behalf(u))
        .collect();
    assert!(
        unexplained.is_empty(),
        "permissions no call of the end-to-end suite used — remove them, or add the test that needs them:\n{}",
        unexplained
            .iter()
            .map(|u| u.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // cmekctl preflight's manifest is these calls: committed, and stale when
    // this run made a call it lacks, or it names a (function, action) this
    // run never made.
    let recorded = manifest_json(&c);
    let path = repo_root().join("cli/preflight-manifest.json");
    if std::env::var("CMEK_WRITE_PREFLIGHT_MANIFEST").is_ok_and(|v| v == "1") {
        std::fs::write(&path, serde_json::to_string_pretty(&recorded).unwrap() + "\n").unwrap();
    }
    let written = repo_root().join(".local/preflight-manifest.json");
    std::fs::write(&written, serde_json::to_string_pretty(&recorded).unwrap() + "\n").unwrap();
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let key = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("platforms");
        v.to_string()
    };
    let committed_calls: BTreeSet<String> = committed["calls"].as_array().unwrap().iter().map(key).collect();
    let missing: Vec<String> = recorded["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .filter(|k| !committed_calls.contains(k))
        .collect();
    let pair = |v: &Value| {
        (
            v["function"].as_str().unwrap().to_owned(),
            v["action"].as_str().unwrap().to_owned(),
        )
    };
    let gone: Vec<(String, String)> = committed["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(pair)
        .filter(|p| !c.pairs.contains(p))
        .collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "{} is stale: {} calls it lacks, {:?} it names that no function made; this run's is {} (CMEK_WRITE_PREFLIGHT_MANIFEST=1 ./scripts/test rewrites it):\n{}",
        path.display(),
        missing.len(),
        gone,
        written.display(),
        missing.join("\n")
    );

    let functions: BTreeSet<&str> = c.pairs.iter().map(|(f, _)| f.as_str()).collect();
    let text = format!(
        "IAM COVERAGE: {} AWS calls by {} functions in {} stacks: {} IAM authorizations, {} distinct (function, action) pairs, all allowed by the roles SAM deploys; {} permissions used only by AWS on the functions' behalf:\n  {}\n",
        c.calls,
        functions.len(),
        c.stacks,
        c.authorizations,
        c.pairs.len(),
        unused.len(),
        unused.join("\n  ")
    );
    cmek_e2e::figure("iam-coverage", &text);
}

#[test]
fn the_state_machine_may_invoke_every_function_its_definition_names() {
    let translated = translate(&template_text());
    let b = static_bindings(&translated);
    let t = Template::load(&repo_root().join("template.yaml")).unwrap();
    let definition: Value =
        serde_json::from_str(&t.state_machine_definition("ProvisionStateMachine", &b).unwrap()).unwrap();
    let mut lambdas = BTreeSet::new();
    collect_resources(&definition, &mut lambdas);
    assert!(lambdas.len() >= 7, "found only {lambdas:?}");
    let roles = iam::roles(&translated, &b).unwrap();
    let role = &roles["ProvisionStateMachineRole"];
    for arn in lambdas {
        let a = Authorization {
            action: "lambda:InvokeFunction".into(),
            resource: arn.clone(),
            context: BTreeMap::new(),
        };
        assert!(
            matches!(role.decide(&a).unwrap(), Decision::Allowed(_)),
            "the state machine's role may not invoke {arn}"
        );
    }
    // And nothing else: a Task naming a function of another stack would be refused.
    let stranger = Authorization {
        action: "lambda:InvokeFunction".into(),
        resource: "arn:aws:lambda:us-east-2:123456789012:function:SomeoneElses".into(),
        context: BTreeMap::new(),
    };
    assert_eq!(role.decide(&stranger).unwrap(), Decision::NotAllowed);
}

fn collect_resources(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                match (k.as_str(), inner) {
                    ("Resource", Value::String(s)) => {
                        out.insert(s.clone());
                    }
                    _ => collect_resources(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_resources(i, out)),
        _ => {}
    }
}

#[test]
fn every_rule_may_reach_its_targets() {
    let translated = translate(&template_text());
    let resources = translated["Resources"].as_object().unwrap();
    let of_type = |t: &str| -> Vec<(String, Value)> {
        resources
            .iter()
            .filter(|(_, v)| v["Type"] == t)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut checked = 0;
    for (rule, r) in of_type("AWS::Events::Rule") {
        for target in r["Properties"]["Targets"].as_array().unwrap() {
            let id = logical(&target["Arn"])
                .unwrap_or_else(|| panic!("{rule}: target is not a resource of the stack"));
            checked += 1;
            match resources[&id]["Type"].as_str().unwrap() {
                "AWS::Lambda::Function" => {
                    let permitted = of_type("AWS::Lambda::Permission").into_iter().any(|(_, p)| {
                        let p = &p["Properties"];
                        logical(&p["FunctionName"]).as_deref() == Some(id.as_str())
                            && p["Action"] == "lambda:InvokeFunction"
                            && p["Principal"] == "events.amazonaws.com"
                            && logical(&p["SourceArn"]).as_deref() == Some(rule.as_str())
                    });
                    assert!(
                        permitted,
                        "rule {rule} may not invoke {id}: no Lambda permission for it"
                    );
                }
                "AWS::SNS::Topic" => {
                    let permitted = of_type("AWS::SNS::TopicPolicy").into_iter().any(|(_, p)| {
                        let p = &p["Properties"];
                        p["Topics"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|t| logical(t).as_deref() == Some(id.as_str()))
                            && p["PolicyDocument"]["Statement"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|s| {
                                    s["Effect"] == "Allow"
                                        && s["Principal"]["Service"] == "events.amazonaws.com"
                                        && s["Action"] == "sns:Publish"
                                        && logical(&s["Condition"]["ArnEquals"]["aws:SourceArn"]).as_deref()
                                            == Some(rule.as_str())
                                })
                    });
                    assert!(
                        permitted,
                        "rule {rule} may not publish to {id}: no topic policy for it"
                    );
                }
                other => panic!("rule {rule} targets a {other}: teach this test how it is authorized"),
            }
        }
    }
    assert!(checked >= 6, "only {checked} rule targets found");
}

#[test]
fn every_function_may_write_to_its_failure_destination() {
    let translated = translate(&template_text());
    let b = static_bindings(&translated);
    let roles = iam::roles(&translated, &b).unwrap();
    let function_roles = iam::function_roles(&translated);
    let mut checked = 0;
    for (id, v) in translated["Resources"].as_object().unwrap() {
        if v["Type"] != "AWS::Lambda::EventInvokeConfig" {
            continue;
        }
        let p = &v["Properties"];
        let function = logical(&p["FunctionName"]).unwrap();
        let queue = logical(&p["DestinationConfig"]["OnFailure"]["Destination"]).unwrap();
        assert_eq!(
            translated["Resources"][&queue]["Type"], "AWS::SQS::Queue",
            "{id}: the destination is not a queue"
        );
        let a = Authorization {
            action: "sqs:SendMessage".into(),
            resource: b.attrs[&format!("{queue}.Arn")].clone(),
            context: BTreeMap::new(),
        };
        let role = &roles[&function_roles[&function]];
        assert!(
            matches!(role.decide(&a).unwrap(), Decision::Allowed(_)),
            "{function} may not send its failed events to {queue}"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "the four asynchronously invoked functions");
}

/// An account-wide `events:PutEvents` (a common grant) must not start an
/// irreversible attach: the bus policy's explicit Deny stops everyone but
/// the discovery function's role and the principals named in
/// `TrustedEventPublishers` from putting a "Workspace Discovered" event,
/// whatever their own IAM policies allow; other events pass.
#[test]
fn only_discovery_and_trusted_tooling_may_announce_a_workspace() {
    let vending = "arn:aws:iam::123456789012:role/workspace-vending";
    let admin = "arn:aws:iam::123456789012:role/admin-with-put-events-on-star";
    let decide = |template: &str, principal: &str, detail_type: &str| -> Decision {
        let translated = translate(template);
        let mut b = static_bindings(&translated);
        b.parameters
            .insert("TrustedEventPublishers".into(), vending.into());
        let bus = b.attrs["ResultBus.Arn"].clone();
        let mut a = Authorization {
            action: "events:PutEvents".into(),
            resource: bus,
            context: BTreeMap::from([
                ("events:source".into(), vec!["cmek-provisioner".into()]),
                ("events:detail-type".into(), vec![detail_type.into()]),
            ]),
        };
        a.context
            .insert("aws:PrincipalArn".into(), vec![principal.into()]);
        // Every principal here may put events anywhere by its IAM policies.
        let everywhere = iam::Role {
            statements: vec![iam::Statement {
                origin: "identity/PutEventsAnywhere".into(),
                effect: Effect::Allow,
                actions: vec!["events:PutEvents".into()],
                resources: vec!["*".into()],
                conditions: vec![],
                principals: vec![],
            }],
            aws_managed: vec![],
        };
        match iam::decide_resource_policy(&resource_policies(&translated, &b), principal, &a).unwrap() {
            Decision::Denied(by) => Decision::Denied(by),
            _ => everywhere.decide(&a).unwrap(),
        }
    };
    let text = template_text();
    let translated = translate(&text);
    let b = static_bindings(&translated);
    let discovery = b.attrs["DiscoverWorkspacesFunctionRole.Arn"].clone();
    let finish = b.attrs["FinishFunctionRole.Arn"].clone();
    for (who, principal, allowed) in [
        ("the discovery function", discovery.as_str(), true),
        ("the named vending tooling", vending, true),
        ("Finish", finish.as_str(), false),
        ("an administrator with events:PutEvents on *", admin, false),
    ] {
        let d = decide(&text, principal, "Workspace Discovered");
        assert_eq!(
            matches!(d, Decision::Allowed(_)),
            allowed,
            "{who} putting Workspace Discovered: {d:?}"
        );
    }
    // Other events are not this policy's business.
    assert!(matches!(
        decide(&text, &finish, "CMEK Provisioning Succeeded"),
        Decision::Allowed(_)
    ));
    // Control: without the bus policy (as this stack once was), the
    // administrator's account-wide grant starts a provisioning.
    let start = text.find("  ResultBusPolicy:\n").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let without = format!("{}{}", &text[..start], &text[end + 2..]);
    assert!(matches!(
        decide(&without, admin, "Workspace Discovered"),
        Decision::Allowed(_)
    ));

    // And with no one to announce a workspace (AutoProvision off, no
    // trusted publishers: the defaults), the rule that starts provisionings
    // is off.
    let rule = &translated["Resources"]["StartFromEventFunctionWorkspaceDiscovered"]["Properties"];
    assert_eq!(
        rule["State"],
        serde_json::json!({"Fn::If": ["AnnouncesWorkspaces", "ENABLED", "DISABLED"]})
    );
    let r = iam::Resolver {
        bindings: &b,
        conditions: translated["Conditions"].as_object().unwrap(),
    };
    assert_eq!(r.string(&rule["State"]).unwrap(), "DISABLED");
}

/// The tag `cmek:managed-by=cmek-provisioner` confers rights (CreateKey may
/// rewrite the policy, the guardian may undo a deletion, AttachKey may use
/// the key on Claude Platform on AWS), so CreateKey's role may put it only on
/// keys it created: its IAM policy may tag no key, and only the policy of a
/// key it created lets it tag that key. Nor may it change the policy of a
/// key that does not carry the tag (the owner's consent for an adopted key).
#[test]
fn create_key_may_neither_tag_nor_rewrite_a_key_it_did_not_create() {
    let decide = |template: &str,
                  action: &str,
                  key_policy: &str,
                  tags: &[(&str, &str)],
                  request: &[(&str, &[&str])]| {
        let translated = translate(template);
        let b = static_bindings(&translated);
        let roles = iam::roles(&translated, &b).unwrap();
        let role = &roles["CreateKeyFunctionRole"];
        let principal = b.attrs["CreateKeyFunctionRole.Arn"].clone();
        let mut context: BTreeMap<String, Vec<String>> = tags
            .iter()
            .map(|(k, v)| (format!("aws:ResourceTag/{k}"), vec![(*v).to_owned()]))
            .collect();
        for (k, vs) in request {
            context.insert((*k).to_owned(), vs.iter().map(|v| (*v).to_owned()).collect());
        }
        let a = Authorization {
            action: action.into(),
            resource: "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            context,
        };
        (
            iam::decide_kms(role, key_policy, &principal, &a).unwrap(),
            principal,
        )
    };
    let text = template_text();
    // A key of someone else's, with the default key policy (IAM decides).
    let default_policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"}]})
    .to_string();
    let ours = [
        ("aws:RequestTag/cmek:managed-by", &["cmek-provisioner"][..]),
        ("aws:TagKeys", &["cmek:managed-by", "cmek:workspace-id"][..]),
    ];
    let (tagging_foreign, _) = decide(&text, "kms:TagResource", &default_policy, &[], &ours);
    assert_eq!(tagging_foreign, Decision::NotAllowed, "tagging a foreign key");
    let (rewriting_foreign, _) = decide(
        &text,
        "kms:PutKeyPolicy",
        &default_policy,
        &[],
        &[("kms:BypassPolicyLockoutSafetyCheck", &["false"])],
    );
    assert_eq!(
        rewriting_foreign,
        Decision::NotAllowed,
        "rewriting an untagged key's policy"
    );
    // A key its owner tagged for adoption: its policy may be merged.
    let (rewriting_adopted, _) = decide(
        &text,
        "kms:PutKeyPolicy",
        &default_policy,
        &[("cmek:managed-by", "cmek-provisioner")],
        &[("kms:BypassPolicyLockoutSafetyCheck", &["false"])],
    );
    assert!(
        matches!(rewriting_adopted, Decision::Allowed(_)),
        "{rewriting_adopted:?}"
    );
    // A key it created: the key's own policy lets it tag that key, and only
    // with the project's tags.
    let translated = translate(&text);
    let creator = static_bindings(&translated).attrs["CreateKeyFunctionRole.Arn"].clone();
    let mut created = serde_json::from_str::<serde_json::Value>(&default_policy).unwrap();
    created["Statement"]
        .as_array_mut()
        .unwrap()
        .extend(cmek::workflow::creator_statements(&creator));
    let created = created.to_string();
    let (tagging_own, _) = decide(&text, "kms:TagResource", &created, &[], &ours);
    assert!(
        matches!(&tagging_own, Decision::Allowed(by) if by.iter().any(|o| o.contains(cmek::workflow::CREATOR_TAGS_SID))),
        "{tagging_own:?}"
    );
    let (other_tag, _) = decide(
        &text,
        "kms:TagResource",
        &created,
        &[],
        &[("aws:RequestTag/owner", &["me"]), ("aws:TagKeys", &["owner"])],
    );
    assert_eq!(other_tag, Decision::NotAllowed, "another tag on its own key");

    // Control: the role as it was (tagging on every key under the request's
    // tag, PutKeyPolicy on every key of the account) let both through.
    let before = text
        .replacen(
            "            - Sid: ReadWorkspaceKeys\n",
            "            - { Sid: TagOnCreate, Effect: Allow, Action: kms:TagResource, Resource: \"*\", Condition: { StringEquals: { aws:RequestTag/cmek:managed-by: cmek-provisioner } } }\n            - { Sid: AddCompartmentToPolicy, Effect: Allow, Action: kms:PutKeyPolicy, Resource: !Sub \"arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*\" }\n            - Sid: ReadWorkspaceKeys\n",
            1,
        );
    assert_ne!(before, text);
    assert!(matches!(
        decide(&before, "kms:TagResource", &default_policy, &[], &ours).0,
        Decision::Allowed(_)
    ));
    assert!(matches!(
        decide(
            &before,
            "kms:PutKeyPolicy",
            &default_policy,
            &[],
            &[("kms:BypassPolicyLockoutSafetyCheck", &["false"])]
        )
        .0,
        Decision::Allowed(_)
    ));
}
