//! What `sam deploy` creates besides the functions, the table, the bus and
//! the state machine, made in moto for `cmekctl preflight` to look at: every
//! IAM role with its policies as the SAM translator writes them, the topics'
//! key with its policy, both topics encrypted with it, the result topic's
//! policy, the result rule (moto's EventBridge delivers to SQS but not to
//! SNS: a pump publishes what the rule matched), the failed-invocations
//! queue and a CloudTrail trail logging management events. And the stack
//! description preflight reads (`stack-resources.json`), naming the
//! stand-ins that answer what moto has no API for.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

use crate::iam_eval::{self, Resolver, Role};
use crate::template::Bindings;

/// What was made, for the stack to keep.
#[derive(Debug)]
pub struct Deployment {
    /// The roles by ARN, for the policy simulator's stand-in.
    pub roles: HashMap<String, Role>,
    /// Where the stack description is.
    pub resources_file: PathBuf,
    pub pump: tokio::task::JoinHandle<()>,
}

/// The stack's own names, made before.
#[derive(Debug)]
pub struct Names<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub table: &'a str,
    pub bus: &'a str,
    pub alert_topic: &'a str,
    pub state_machine: &'a str,
    pub moto_url: &'a str,
}

fn sdk_err<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    e: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> anyhow::Error {
    anyhow!("{}", aws_smithy_types::error::display::DisplayErrorContext(e))
}

pub async fn create(
    sdk: &aws_config::SdkConfig,
    template_text: &str,
    bindings: &mut Bindings,
    names: &Names<'_>,
    dir: &std::path::Path,
) -> anyhow::Result<Deployment> {
    let translated = crate::sam::translate(template_text)?;
    let resources = translated["Resources"]
        .as_object()
        .ok_or_else(|| anyhow!("the translation has no Resources"))?
        .clone();
    let empty = serde_json::Map::new();
    let conditions = translated["Conditions"].as_object().unwrap_or(&empty).clone();

    // The topics' key, the result topic (both encrypted with it), the queue.
    let kms = aws_sdk_kms::Client::new(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let resolved = |bindings: &Bindings, v: &Value| -> anyhow::Result<Value> {
        Resolver {
            bindings,
            conditions: &conditions,
        }
        .value(v)
    };
    let key_policy = resolved(bindings, &resources["TopicsKey"]["Properties"]["KeyPolicy"])?;
    let topics_key = kms
        .create_key()
        .policy(key_policy.to_string())
        .description("cmek-provisioner alert and result topics (local)")
        .send()
        .await
        .map_err(sdk_err)?
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .context("no key id")?;
    let result_topic = sns
        .create_topic()
        .name("cmek-provisioner-results")
        .attributes("KmsMasterKeyId", &topics_key)
        .send()
        .await
        .map_err(sdk_err)?
        .topic_arn()
        .unwrap_or_default()
        .to_owned();
    sns.set_topic_attributes()
        .topic_arn(names.alert_topic)
        .attribute_name("KmsMasterKeyId")
        .attribute_value(&topics_key)
        .send()
        .await
        .map_err(sdk_err)?;
    let queue_url = sqs
        .create_queue()
        .queue_name("cmek-provisioner-failed-invocations")
        .send()
        .await
        .map_err(sdk_err)?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let queue_name = queue_url.rsplit('/').next().unwrap_or_default().to_owned();
    let queue_arn = format!("arn:aws:sqs:{}:{}:{queue_name}", names.region, names.account);
    bindings.refs.insert("ResultTopic".into(), result_topic.clone());
    bindings.refs.insert("TopicsKey".into(), topics_key.clone());
    bindings
        .refs
        .insert("FailedInvocationsQueue".into(), queue_url.clone());
    bindings
        .attrs
        .insert("FailedInvocationsQueue.Arn".into(), queue_arn.clone());
    bindings.attrs.insert(
        "TopicsKey.Arn".into(),
        format!("arn:aws:kms:{}:{}:key/{topics_key}", names.region, names.account),
    );
    bindings.attrs.insert(
        "ResultRule.Arn".into(),
        format!(
            "arn:aws:events:{}:{}:rule/{}/ResultRule",
            names.region, names.account, names.bus
        ),
    );
    let topic_policy = resolved(
        bindings,
        &resources["ResultTopicPolicy"]["Properties"]["PolicyDocument"],
    )?;
    sns.set_topic_attributes()
        .topic_arn(&result_topic)
        .attribute_name("Policy")
        .attribute_value(topic_policy.to_string())
        .send()
        .await
        .map_err(sdk_err)?;

    // Every role, with its inline and the template's managed policies.
    let iam = aws_sdk_iam::Client::new(sdk);
    let r = Resolver {
        bindings,
        conditions: &conditions,
    };
    let mut role_names = BTreeMap::new();
    let mut managed: BTreeMap<String, String> = BTreeMap::new();
    for (id, res) in resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::IAM::ManagedPolicy")
    {
        if let Some(c) = res["Condition"].as_str()
            && !r.condition(c)?
        {
            continue;
        }
        let doc = versioned(r.value(&res["Properties"]["PolicyDocument"])?);
        let arn = iam
            .create_policy()
            .policy_name(format!("local-{id}"))
            .policy_document(doc.to_string())
            .send()
            .await
            .map_err(sdk_err)?
            .policy()
            .and_then(|p| p.arn())
            .unwrap_or_default()
            .to_owned();
        managed.insert(id.clone(), arn);
    }
    for (id, res) in resources.iter().filter(|(_, r)| r["Type"] == "AWS::IAM::Role") {
        let name = format!("local-{id}");
        let props = &res["Properties"];
        iam.create_role()
            .role_name(&name)
            .assume_role_policy_document(r.value(&props["AssumeRolePolicyDocument"])?.to_string())
            .send()
            .await
            .map_err(sdk_err)?;
        for p in props["Policies"].as_array().into_iter().flatten() {
            let Some(p) = r.item(p)? else { continue };
            iam.put_role_policy()
                .role_name(&name)
                .policy_name(p["PolicyName"].as_str().unwrap_or("inline"))
                .policy_document(versioned(r.value(&p["PolicyDocument"])?).to_string())
                .send()
                .await
                .map_err(sdk_err)?;
        }
        for listed in props["ManagedPolicyArns"].as_array().into_iter().flatten() {
            let Some(m) = r.item(listed)? else { continue };
            // AWS managed policies (Lambda's logging, X-Ray) are AWS's, and
            // moto has none of them: only the template's own are attached.
            let Some(arn) = m
                .get("Ref")
                .and_then(Value::as_str)
                .and_then(|id| managed.get(id))
            else {
                continue;
            };
            iam.attach_role_policy()
                .role_name(&name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(sdk_err)?;
        }
        role_names.insert(id.clone(), name);
    }
    let roles: HashMap<String, Role> = iam_eval::roles(&translated, bindings)?
        .into_iter()
        .map(|(id, role)| (format!("arn:aws:iam::{}:role/local-{id}", names.account), role))
        .collect();

    // The result rule, delivered to the result topic by a pump.
    let pattern = resolved(bindings, &resources["ResultRule"]["Properties"]["EventPattern"])?;
    let pump = result_rule_pump(sdk, names.bus, &pattern, &result_topic).await?;

    // A trail that logs management events (the key guardian's source).
    cmek::tls::http_client()?
        .put(format!("{}/cmek-local-trail", names.moto_url))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("moto: creating the trail's bucket")?;
    let trails = aws_sdk_cloudtrail::Client::new(sdk);
    trails
        .create_trail()
        .name("cmek-local-management-events")
        .s3_bucket_name("cmek-local-trail")
        .send()
        .await
        .map_err(sdk_err)?;
    trails
        .put_event_selectors()
        .trail_name("cmek-local-management-events")
        .event_selectors(
            aws_sdk_cloudtrail::types::EventSelector::builder()
                .read_write_type(aws_sdk_cloudtrail::types::ReadWriteType::All)
                .include_management_events(true)
                .build(),
        )
        .send()
        .await
        .map_err(sdk_err)?;
    trails
        .start_logging()
        .name("cmek-local-management-events")
        .send()
        .await
        .map_err(sdk_err)?;

    // The stack description, as CloudFormation would give preflight.
    let mut physical: BTreeMap<String, String> = BTreeMap::from([
        ("WorkflowTable".to_owned(), names.table.to_owned()),
        ("ResultBus".to_owned(), names.bus.to_owned()),
        ("AlertTopic".to_owned(), names.alert_topic.to_owned()),
        ("ResultTopic".to_owned(), result_topic),
        ("TopicsKey".to_owned(), topics_key),
        ("ProvisionStateMachine".to_owned(), names.state_machine.to_owned()),
        ("FailedInvocationsQueue".to_owned(), queue_url),
    ]);
    for (id, name) in role_names {
        if let Some(function) = id.strip_suffix("Role")
            && resources
                .get(function)
                .is_some_and(|f| f["Type"] == "AWS::Lambda::Function")
        {
            physical.insert(function.to_owned(), function.to_owned());
        }
        physical.insert(id, name);
    }
    let parameters: BTreeMap<&String, &String> = bindings.parameters.iter().collect();
    let description = json!({
        "name": "local",
        "region": names.region,
        "account": names.account,
        "partition": "aws",
        "parameters": parameters,
        "resources": physical,
        "standIns": {
            "iam:SimulatePrincipalPolicy": crate::preflight::SIMULATOR,
            "access-analyzer:ValidatePolicy": crate::preflight::VALIDATOR,
            "events:the result rule's SNS target": "moto's EventBridge delivers to SQS, not SNS: the local stack publishes what the rule matched to the topic",
        },
    });
    let resources_file = dir.join("stack-resources.json");
    std::fs::write(&resources_file, serde_json::to_vec_pretty(&description)?)?;
    Ok(Deployment {
        roles,
        resources_file,
        pump,
    })
}

/// moto refuses a policy without `Version`; IAM takes it (as the 2008
/// grammar, which these policies do not need to differ from).
fn versioned(mut doc: Value) -> Value {
    if let Some(m) = doc.as_object_mut() {
        m.entry("Version").or_insert_with(|| Value::from("2012-10-17"));
    }
    doc
}

/// The result rule: moto matches the pattern and delivers to an SQS queue;
/// this pump publishes each event to the topic, as EventBridge's SNS target
/// does (the event as the message).
async fn result_rule_pump(
    sdk: &aws_config::SdkConfig,
    bus: &str,
    pattern: &Value,
    topic: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name("cmek-local-result-rule")
        .send()
        .await
        .map_err(sdk_err)?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(sdk_err)?
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    events
        .put_rule()
        .name("ResultRule")
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .map_err(sdk_err)?;
    events
        .put_targets()
        .rule("ResultRule")
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("ResultTopic")
                .arn(arn)
                .build()
                .map_err(|e| anyhow!("{e}"))?,
        )
        .send()
        .await
        .map_err(sdk_err)?;
    let topic = topic.to_owned();
    Ok(tokio::spawn(async move {
        loop {
            let Ok(got) = sqs
                .receive_message()
                .queue_url(&url)
                .wait_time_seconds(1)
                .max_number_of_messages(10)
                .send()
                .await
            else {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            };
            for m in got.messages() {
                if let Some(body) = m.body() {
                    let _ = sns.publish().topic_arn(&topic).message(body).send().await;
                }
                if let Some(handle) = m.receipt_handle() {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
        }
    }))
}
