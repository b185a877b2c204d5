//! Rules AWS documents for wiring services together, which no local stack
//! enforces (moto delivers to an encrypted topic whatever its key says, and
//! has no dead-letter queues for rules): checked on the template as
//! CloudFormation receives it (the SAM translator's output), each against
//! the AWS document that states it, each with a control that breaks it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;

use cmek_e2e::sam::{logical, strings, template_text, translate};
use serde_json::Value;

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().unwrap()
}

fn of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    resources(t).iter().filter(|(_, r)| r["Type"] == kind).collect()
}

/// The statements of a key's policy that let `service` use the key to
/// publish to an encrypted SNS topic (`kms:GenerateDataKey*` and `kms:Decrypt`).
fn key_grants<'a>(t: &'a Value, key: &str, service: &str) -> Vec<&'a Value> {
    let res = &t["Resources"][key];
    assert_eq!(
        res["Type"], "AWS::KMS::Key",
        "{key} is not a key of this template"
    );
    res["Properties"]["KeyPolicy"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let actions = strings(&s["Action"]);
            let allows = |a: &str| actions.iter().any(|p| cmek_e2e::iam::action_matches(p, a));
            s["Effect"] == "Allow"
                && strings(&s["Principal"]["Service"]).iter().any(|p| p == service)
                && allows("kms:GenerateDataKey")
                && allows("kms:Decrypt")
        })
        .collect()
}

/// The confused-deputy conditions a service's request to a topic key may or
/// may not carry.
const SOURCE_KEYS: &[&str] = &[
    "aws:SourceAccount",
    "aws:SourceArn",
    "aws:SourceOrgID",
    "aws:SourceOrgPaths",
];

fn condition_keys(s: &Value) -> BTreeSet<String> {
    s["Condition"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, m)| m.as_object().into_iter().flatten().map(|(k, _)| k.to_lowercase()))
        .collect()
}

/// SNS Developer Guide, "Enable compatibility between event sources from AWS
/// services and encrypted topics": a topic encrypted with a customer managed
/// key receives what a service publishes only if the key policy lets that
/// service use the key; CloudWatch alarms need `cloudwatch.amazonaws.com`,
/// and for EventBridge "aws:SourceAccount, aws:SourceArn and aws:SourceOrgID
/// are not supported" on that grant (a grant with them never matches, and
/// every delivery fails, seen only in the rule's FailedInvocations).
fn topic_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let topic_key = |topic: &str| -> Option<String> {
        let res = &t["Resources"][topic];
        assert_eq!(
            res["Type"], "AWS::SNS::Topic",
            "{topic} is not a topic of this template"
        );
        match &res["Properties"]["KmsMasterKeyId"] {
            Value::Null => None,
            v => Some(logical(v).unwrap_or_else(|| {
                // An alias (alias/aws/sns) or a key of another stack: neither
                // service may use the AWS managed key at all.
                format!("<not a key of this template: {v}>")
            })),
        }
    };
    let mut check = |who: &str, topic: &str, service: &str, forbid_source_conditions: bool| {
        let Some(key) = topic_key(topic) else { return };
        if key.starts_with('<') {
            problems.push(format!(
                "{who}: {topic} is encrypted with {key}, which {service} cannot use"
            ));
            return;
        }
        let grants = key_grants(t, &key, service);
        if grants.is_empty() {
            problems.push(format!(
                "{who}: {topic}'s key {key} does not let {service} use it"
            ));
        }
        if forbid_source_conditions {
            for g in grants {
                let bad: Vec<&&str> = SOURCE_KEYS
                    .iter()
                    .filter(|k| condition_keys(g).contains(&k.to_lowercase()))
                    .collect();
                if !bad.is_empty() {
                    problems.push(format!(
                        "{who}: {topic}'s key {key} grants {service} under {bad:?}, which EventBridge's request does not carry: every delivery would fail"
                    ));
                }
            }
        }
    };
    for (id, alarm) in of_type(t, "AWS::CloudWatch::Alarm") {
        for action in alarm["Properties"]["AlarmActions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let topic =
                logical(action).unwrap_or_else(|| panic!("{id}: an alarm action outside the template"));
            check(id, &topic, "cloudwatch.amazonaws.com", false);
        }
    }
    for (id, rule) in of_type(t, "AWS::Events::Rule") {
        for target in rule["Properties"]["Targets"].as_array().into_iter().flatten() {
            if let Some(topic) =
                logical(&target["Arn"]).filter(|r| t["Resources"][r.as_str()]["Type"] == "AWS::SNS::Topic")
            {
                check(id, &topic, "events.amazonaws.com", true);
            }
        }
    }
    problems
}

#[test]
fn alarms_and_rules_can_use_their_topics_keys_as_sns_documents() {
    let t = translate(&template_text());
    let problems = topic_problems(&t);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // What was checked: the result rule's encrypted topic and every alarm's.
    assert!(!of_type(&t, "AWS::CloudWatch::Alarm").is_empty());

    // Controls: the grant EventBridge needs under aws:SourceAccount (as this
    // stack once had it), and the AWS managed SNS key, are each reported.
    let broken = template_text().replacen(
        "          - Sid: RulesPublishToTheTopics\n            Effect: Allow\n            Principal: { Service: events.amazonaws.com }\n            Action: [kms:GenerateDataKey*, kms:Decrypt]\n            # A key policy's Resource is always the key itself.\n            Resource: \"*\"\n",
        "          - Sid: RulesPublishToTheTopics\n            Effect: Allow\n            Principal: { Service: events.amazonaws.com }\n            Action: [kms:GenerateDataKey*, kms:Decrypt]\n            Resource: \"*\"\n            Condition:\n              StringEquals: { aws:SourceAccount: !Ref AWS::AccountId }\n",
        1,
    );
    assert_ne!(broken, template_text(), "the control did not change the template");
    let problems = topic_problems(&translate(&broken));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ResultRule") && p.contains("aws:SourceAccount")),
        "{problems:?}"
    );
    let mut managed = t.clone();
    managed["Resources"]["AlertTopic"]["Properties"]["KmsMasterKeyId"] = Value::from("alias/aws/sns");
    assert!(
        topic_problems(&managed)
            .iter()
            .any(|p| p.contains("AlertTopic is encrypted with <not a key")),
        "the AWS managed key must be refused"
    );
}

/// The queue alarms watch for events and invocations that failed.
fn alarmed_queues(t: &Value) -> BTreeSet<String> {
    of_type(t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| a["Properties"]["Namespace"] == "AWS/SQS")
        .filter(|(_, a)| a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible")
        .flat_map(|(_, a)| {
            a["Properties"]["Dimensions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["Name"] == "QueueName")
                .filter_map(|d| logical(&d["Value"]))
                .collect::<Vec<_>>()
        })
        .filter(|q| {
            // An alarm that pages: its action is a topic of the stack.
            of_type(t, "AWS::CloudWatch::Alarm").iter().any(|(_, a)| {
                a["Properties"]["Dimensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| logical(&d["Value"]).as_deref() == Some(q.as_str()))
                    && !a["Properties"]["AlarmActions"]
                        .as_array()
                        .is_none_or(Vec::is_empty)
            })
        })
        .collect()
}

/// Whether a queue's policy lets EventBridge deliver a rule's dead letters
/// (EventBridge User Guide, "Using dead-letter queues to process undelivered
/// events": the queue needs a resource-based policy granting
/// `events.amazonaws.com` `sqs:SendMessage`, conditioned on the rule).
fn queue_admits_dead_letters_from(t: &Value, queue: &str, rule: &str) -> bool {
    of_type(t, "AWS::SQS::QueuePolicy").into_iter().any(|(_, p)| {
        let p = &p["Properties"];
        p["Queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| logical(q).as_deref() == Some(queue))
            && p["PolicyDocument"]["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| {
                    // The rule itself, or every rule of this account and Region.
                    let names_rule = ["ArnEquals", "ArnLike"].iter().any(|op| {
                        let c = &s["Condition"][op]["aws:SourceArn"];
                        logical(c).as_deref() == Some(rule)
                            || c["Fn::Sub"].as_str().is_some_and(|sub| {
                                sub.ends_with(":rule/*")
                                    && sub.contains("${AWS::AccountId}")
                                    && sub.contains("${AWS::Region}")
                            })
                    });
                    s["Effect"] == "Allow"
                        && strings(&s["Principal"]["Service"])
                            .iter()
                            .any(|x| x == "events.amazonaws.com")
                        && strings(&s["Action"])
                            .iter()
                            .any(|a| cmek_e2e::iam::action_matches(a, "sqs:SendMessage"))
                        && names_rule
                })
    })
}

fn delivery_problems(t: &Value) -> (usize, usize, Vec<String>) {
    let mut problems = Vec::new();
    let alarmed = alarmed_queues(t);
    let mut rules = 0;
    // Every rule target keeps what it could not deliver.
    for (id, rule) in of_type(t, "AWS::Events::Rule") {
        for target in rule["Properties"]["Targets"].as_array().into_iter().flatten() {
            rules += 1;
            match logical(&target["DeadLetterConfig"]["Arn"]) {
                None => problems.push(format!("{id}: target {} has no dead-letter queue", target["Id"])),
                Some(q) => {
                    if !queue_admits_dead_letters_from(t, &q, id) {
                        problems.push(format!(
                            "{id}: {q}'s policy does not let EventBridge deliver dead letters"
                        ));
                    }
                    if !alarmed.contains(&q) {
                        problems.push(format!("{id}: no alarm watches its dead-letter queue {q}"));
                    }
                }
            }
        }
    }
    // Every function invoked asynchronously (by a rule, a schedule, or
    // CloudFormation as a custom resource's ServiceToken — Lambda Developer
    // Guide, "Invoking a Lambda function asynchronously") keeps the events
    // all its attempts failed on.
    let mut asynchronous = BTreeSet::new();
    for (_, rule) in of_type(t, "AWS::Events::Rule") {
        for target in rule["Properties"]["Targets"].as_array().into_iter().flatten() {
            if let Some(f) = logical(&target["Arn"])
                .filter(|f| t["Resources"][f.as_str()]["Type"] == "AWS::Lambda::Function")
            {
                asynchronous.insert(f);
            }
        }
    }
    for (_, output) in t["Outputs"].as_object().into_iter().flatten() {
        if output["Export"]["Name"]["Fn::Sub"]
            .as_str()
            .is_some_and(|n| n.ends_with("-ServiceToken"))
        {
            asynchronous.insert(logical(&output["Value"]).unwrap());
        }
    }
    for f in &asynchronous {
        let config = of_type(t, "AWS::Lambda::EventInvokeConfig")
            .into_iter()
            .find(|(_, c)| logical(&c["Properties"]["FunctionName"]).as_deref() == Some(f.as_str()));
        match config
            .and_then(|(_, c)| logical(&c["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]))
        {
            None => problems.push(format!(
                "{f} is invoked asynchronously without a failure destination"
            )),
            Some(q) if !alarmed.contains(&q) => {
                problems.push(format!("{f}: no alarm watches its failure destination {q}"))
            }
            Some(_) => {}
        }
    }
    (rules, asynchronous.len(), problems)
}

#[test]
fn every_rule_target_and_asynchronous_function_keeps_its_failures_and_an_alarm_says_so() {
    let t = translate(&template_text());
    let (rules, functions, problems) = delivery_problems(&t);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        rules, 6,
        "the result rule, the discovered-workspace rule, the KMS rule and three schedules"
    );
    assert_eq!(
        functions, 4,
        "discovery, start-from-event, the guardian and the custom resource"
    );

    // Controls: the result rule without its dead-letter queue (as it once
    // was), and the custom resource without its failure destination.
    let text = template_text();
    let broken = text.replacen(
        "          DeadLetterConfig: { Arn: !GetAtt FailedInvocationsQueue.Arn }\n\n  ResultEmailSubscription",
        "\n  ResultEmailSubscription",
        1,
    );
    assert_ne!(broken, text);
    let (_, _, problems) = delivery_problems(&translate(&broken));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("ResultRule: target") && p.contains("no dead-letter queue")),
        "{problems:?}"
    );
    let mut no_destination = t.clone();
    let configs: Vec<String> = of_type(&t, "AWS::Lambda::EventInvokeConfig")
        .into_iter()
        .filter(|(_, c)| {
            logical(&c["Properties"]["FunctionName"]).as_deref() == Some("CustomResourceFunction")
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(configs.len(), 1);
    no_destination["Resources"]
        .as_object_mut()
        .unwrap()
        .remove(&configs[0]);
    let (_, _, problems) = delivery_problems(&no_destination);
    assert!(
        problems.contains(
            &"CustomResourceFunction is invoked asynchronously without a failure destination".to_owned()
        ),
        "{problems:?}"
    );
}
