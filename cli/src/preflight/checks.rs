//! The checks, each asking AWS (or Anthropic) itself rather than a model of
//! it written here: IAM's policy simulator, IAM Access Analyzer, the topics'
//! key policies as KMS stores them, a real event through the result rule,
//! CloudTrail's trails, the Admin API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use aws_sdk_accessanalyzer::types::{PolicyType, ValidatePolicyFindingType, ValidatePolicyResourceType};
use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};
use serde::Serialize;
use serde_json::Value;

use super::manifest::{Manifest, ManifestCall, placeholders, render};
use super::stack::DeployedStack;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

/// One line of preflight's table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub check: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    /// What answered instead of AWS, on the local stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stand_in: Option<String>,
}

impl Line {
    pub fn new(check: &'static str, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            check,
            outcome,
            detail: detail.into(),
            stand_in: None,
        }
    }

    fn answered_by(mut self, stack: &DeployedStack, api: &str) -> Self {
        self.stand_in = stack.stand_ins.get(api).cloned();
        self
    }
}

fn sdk_error<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    e: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> anyhow::Error {
    anyhow!("{}", aws_smithy_types::error::display::DisplayErrorContext(e))
}

/// The type IAM's simulator needs for a condition key's values.
fn context_type(key: &str, values: &[String]) -> ContextKeyTypeEnum {
    if values.iter().all(|v| v == "true" || v == "false") && !values.is_empty() {
        if values.len() == 1 {
            ContextKeyTypeEnum::Boolean
        } else {
            ContextKeyTypeEnum::BooleanList
        }
    } else if values.len() > 1 || key.eq_ignore_ascii_case("aws:TagKeys") {
        ContextKeyTypeEnum::StringList
    } else {
        ContextKeyTypeEnum::String
    }
}

/// One request to the simulator: (function, resource, context).
type Simulation = (String, String, BTreeMap<String, Vec<String>>);

/// Every (function, action, resource, context) the functions call, asked of
/// IAM's policy simulator (`iam:SimulatePrincipalPolicy`) against each
/// deployed role: what AWS itself decides, not what this project's
/// evaluator thinks. Calls a key's own policy grants (written when the key
/// was created) are not the role's to allow and are only counted.
pub async fn iam_simulation(
    iam: &aws_sdk_iam::Client,
    stack: &DeployedStack,
    manifest: &Manifest,
) -> Vec<Line> {
    let check = "IAM (simulated)";
    let platform = match stack.platform() {
        Ok(p) => p.as_str().to_owned(),
        Err(e) => return vec![Line::new(check, Outcome::Fail, format!("{e:#}"))],
    };
    let values = match placeholders(stack) {
        Ok(v) => v,
        Err(e) => return vec![Line::new(check, Outcome::Fail, format!("{e:#}"))],
    };
    let calls: Vec<&ManifestCall> = manifest
        .calls
        .iter()
        .filter(|c| c.platforms.contains(&platform))
        .collect();
    // One simulation per role, resource and context: the actions together.
    let mut groups: BTreeMap<Simulation, Vec<String>> = BTreeMap::new();
    let mut by_key_policy = 0;
    let mut lines = Vec::new();
    for c in &calls {
        if c.granted_by != "role" {
            by_key_policy += 1;
            continue;
        }
        let rendered = render(&c.resource, &values).and_then(|resource| {
            let context = c
                .context
                .iter()
                .map(|(k, vs)| {
                    Ok((
                        k.clone(),
                        vs.iter()
                            .map(|v| render(v, &values))
                            .collect::<anyhow::Result<Vec<_>>>()?,
                    ))
                })
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
            Ok((resource, context))
        });
        match rendered {
            Ok((resource, context)) => groups
                .entry((c.function.clone(), resource, context))
                .or_default()
                .push(c.action.clone()),
            Err(e) => lines.push(Line::new(check, Outcome::Fail, format!("{}: {e:#}", c.function))),
        }
    }
    let mut allowed = 0;
    let mut functions = std::collections::BTreeSet::new();
    for ((function, resource, context), actions) in groups {
        functions.insert(function.clone());
        let role = match stack.role_arn(&function) {
            Ok(r) => r,
            Err(e) => {
                lines.push(Line::new(check, Outcome::Fail, format!("{e:#}")));
                continue;
            }
        };
        match simulate(iam, &role, &actions, &resource, &context).await {
            Ok(decisions) => {
                for (action, decision) in decisions {
                    if decision == PolicyEvaluationDecisionType::Allowed {
                        allowed += 1;
                    } else {
                        lines.push(
                            Line::new(
                                check,
                                Outcome::Fail,
                                format!(
                                    "{function}: {action} on {resource}{} is {} for its role {role}",
                                    if context.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" with {context:?}")
                                    },
                                    decision.as_str()
                                ),
                            )
                            .answered_by(stack, "iam:SimulatePrincipalPolicy"),
                        );
                    }
                }
            }
            Err(e) => lines.push(
                Line::new(check, Outcome::Fail, format!("{function} ({role}): {e:#}"))
                    .answered_by(stack, "iam:SimulatePrincipalPolicy"),
            ),
        }
    }
    if lines.is_empty() {
        lines.push(
            Line::new(
                check,
                Outcome::Pass,
                format!(
                    "{allowed} calls of {} functions allowed by their roles ({by_key_policy} more granted by the keys' own policies)",
                    functions.len()
                ),
            )
            .answered_by(stack, "iam:SimulatePrincipalPolicy"),
        );
    }
    lines
}

async fn simulate(
    iam: &aws_sdk_iam::Client,
    role: &str,
    actions: &[String],
    resource: &str,
    context: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<Vec<(String, PolicyEvaluationDecisionType)>> {
    let entries: Vec<ContextEntry> = context
        .iter()
        .map(|(k, vs)| {
            ContextEntry::builder()
                .context_key_name(k)
                .context_key_type(context_type(k, vs))
                .set_context_key_values(Some(vs.clone()))
                .build()
        })
        .collect();
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut req = iam
            .simulate_principal_policy()
            .policy_source_arn(role)
            .set_action_names(Some(actions.to_vec()))
            .set_context_entries(Some(entries.clone()))
            .set_marker(marker.clone());
        // An account-scoped action is evaluated against "*", the default.
        if resource != "*" {
            req = req.resource_arns(resource);
        }
        let page = req.send().await.map_err(sdk_error)?;
        for r in page.evaluation_results() {
            out.push((r.eval_action_name().to_owned(), r.eval_decision().clone()));
        }
        match page.marker() {
            Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// IAM documents URL-encode the policies they return.
fn decoded(document: &str) -> String {
    percent_encoding::percent_decode_str(document)
        .decode_utf8_lossy()
        .into_owned()
}

/// Every policy of the stack checked by IAM Access Analyzer's
/// `ValidatePolicy`: the roles' inline and managed policies, the topics'
/// key policy, and the policies of keys the stack wrote. An ERROR (an action
/// that does not exist, say) or a SECURITY_WARNING fails; WARNING and
/// SUGGESTION findings are shown.
pub async fn policy_validation(
    iam: &aws_sdk_iam::Client,
    analyzer: &aws_sdk_accessanalyzer::Client,
    kms: &aws_sdk_kms::Client,
    stack: &DeployedStack,
    written_keys: &[String],
) -> Vec<Line> {
    let check = "Policies (Access Analyzer)";
    let mut documents: Vec<(String, String, PolicyType, Option<ValidatePolicyResourceType>)> = Vec::new();
    let mut lines = Vec::new();
    let mut managed_seen = std::collections::BTreeSet::new();
    for function in stack.functions() {
        let Ok(role_name) = stack.resource(&format!("{function}Role")).map(str::to_owned) else {
            continue;
        };
        let role_name = role_name.rsplit('/').next().unwrap_or_default().to_owned();
        match role_documents(iam, &role_name, &mut managed_seen).await {
            Ok(docs) => documents.extend(docs.into_iter().map(|(name, doc)| {
                (
                    format!("{function} {name}"),
                    doc,
                    PolicyType::IdentityPolicy,
                    None,
                )
            })),
            Err(e) => lines.push(Line::new(
                check,
                Outcome::Fail,
                format!("reading {function}'s role: {e:#}"),
            )),
        }
    }
    let mut keys = Vec::new();
    if let Ok(key) = stack.resource("TopicsKey") {
        keys.push(("TopicsKey".to_owned(), key.to_owned()));
    }
    keys.extend(written_keys.iter().map(|k| (format!("key {k}"), k.clone())));
    for (name, key) in keys {
        match kms
            .get_key_policy()
            .key_id(&key)
            .policy_name("default")
            .send()
            .await
        {
            Ok(p) => documents.push((
                format!("{name} key policy"),
                p.policy().unwrap_or_default().to_owned(),
                PolicyType::ResourcePolicy,
                None,
            )),
            Err(e) => lines.push(Line::new(
                check,
                Outcome::Fail,
                format!("{name}: {}", sdk_error(e)),
            )),
        }
    }
    let mut failing = 0;
    for (name, document, kind, resource_type) in &documents {
        match validate(analyzer, document, kind.clone(), resource_type.clone()).await {
            Ok(findings) => {
                for (kind, code, detail) in findings {
                    let bad = matches!(
                        kind,
                        ValidatePolicyFindingType::Error | ValidatePolicyFindingType::SecurityWarning
                    );
                    failing += usize::from(bad);
                    lines.push(
                        Line::new(
                            check,
                            if bad { Outcome::Fail } else { Outcome::Warn },
                            format!("{name}: {} {code}: {detail}", kind.as_str()),
                        )
                        .answered_by(stack, "access-analyzer:ValidatePolicy"),
                    );
                }
            }
            Err(e) => {
                failing += 1;
                lines.push(
                    Line::new(check, Outcome::Fail, format!("{name}: {e:#}"))
                        .answered_by(stack, "access-analyzer:ValidatePolicy"),
                );
            }
        }
    }
    if failing == 0 && lines.iter().all(|l| l.outcome != Outcome::Fail) {
        lines.insert(
            0,
            Line::new(
                check,
                Outcome::Pass,
                format!("{} policies without errors or security warnings", documents.len()),
            )
            .answered_by(stack, "access-analyzer:ValidatePolicy"),
        );
    }
    lines
}

/// A role's inline policies and the customer-managed policies attached to
/// it (AWS managed ones are AWS's to keep valid), each once.
async fn role_documents(
    iam: &aws_sdk_iam::Client,
    role: &str,
    managed_seen: &mut std::collections::BTreeSet<String>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let inline = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(sdk_error)?;
    for name in inline.policy_names() {
        let p = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(sdk_error)?;
        out.push((format!("inline {name}"), decoded(p.policy_document())));
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(sdk_error)?;
    for p in attached.attached_policies() {
        let Some(arn) = p.policy_arn() else { continue };
        if arn.contains(":iam::aws:policy/") || !managed_seen.insert(arn.to_owned()) {
            continue;
        }
        let policy = iam.get_policy().policy_arn(arn).send().await.map_err(sdk_error)?;
        let version = policy
            .policy()
            .and_then(|p| p.default_version_id())
            .context("a managed policy without a default version")?;
        let v = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(sdk_error)?;
        let doc = v
            .policy_version()
            .and_then(|v| v.document())
            .context("a policy version without a document")?;
        out.push((
            format!("managed {}", p.policy_name().unwrap_or(arn)),
            decoded(doc),
        ));
    }
    Ok(out)
}

async fn validate(
    analyzer: &aws_sdk_accessanalyzer::Client,
    document: &str,
    kind: PolicyType,
    resource_type: Option<ValidatePolicyResourceType>,
) -> anyhow::Result<Vec<(ValidatePolicyFindingType, String, String)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = analyzer
            .validate_policy()
            .policy_document(document)
            .policy_type(kind.clone())
            .set_validate_policy_resource_type(resource_type.clone())
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(sdk_error)?;
        for f in page.findings() {
            out.push((
                f.finding_type().clone(),
                f.issue_code().to_owned(),
                f.finding_details().to_owned(),
            ));
        }
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(out),
        }
    }
}

/// Whether a key policy lets `service` use the key for an encrypted topic
/// (`kms:GenerateDataKey*` and `kms:Decrypt`), and the condition keys it
/// requires to do so.
fn service_grant(policy: &Value, service: &str) -> Option<Vec<String>> {
    use cmek::policy::{glob_match, statement_items, string_values as strings};
    let statements = statement_items(&policy["Statement"])?;
    let allows = |actions: &[String], action: &str| actions.iter().any(|p| glob_match(p, action, true));
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .filter(|s| strings(&s["Principal"]["Service"]).iter().any(|p| p == service))
        .filter(|s| {
            let actions = strings(&s["Action"]);
            allows(&actions, "kms:GenerateDataKey") && allows(&actions, "kms:Decrypt")
        })
        .map(|s| {
            s["Condition"]
                .as_object()
                .into_iter()
                .flatten()
                .flat_map(|(_, keys)| keys.as_object().into_iter().flatten().map(|(k, _)| k.clone()))
                .collect::<Vec<String>>()
        })
        // The grant with the fewest conditions is the one that may apply.
        .min_by_key(Vec::len)
}

/// The topics' keys as KMS holds them: CloudWatch may use the alert topic's
/// key, and EventBridge the result topic's, without `aws:SourceAccount` or
/// `aws:SourceArn`, which the SNS Developer Guide says EventBridge's request
/// does not carry ("Enable compatibility between event sources from AWS
/// services and encrypted topics"): with them, every result is dropped.
pub async fn topic_keys(
    sns: &aws_sdk_sns::Client,
    kms: &aws_sdk_kms::Client,
    stack: &DeployedStack,
) -> Vec<Line> {
    let check = "Topics' keys";
    let mut lines = Vec::new();
    for (topic_id, service, forbid_source) in [
        ("AlertTopic", "cloudwatch.amazonaws.com", false),
        ("ResultTopic", "events.amazonaws.com", true),
    ] {
        let result: anyhow::Result<Line> = async {
            let topic = stack.resource(topic_id)?;
            let attrs = sns
                .get_topic_attributes()
                .topic_arn(topic)
                .send()
                .await
                .map_err(sdk_error)?;
            let Some(key) = attrs.attributes().and_then(|a| a.get("KmsMasterKeyId")).filter(|k| !k.is_empty())
            else {
                return Ok(Line::new(check, Outcome::Pass, format!("{topic_id} is not encrypted")));
            };
            if key.contains("alias/aws/sns") {
                return Ok(Line::new(
                    check,
                    Outcome::Fail,
                    format!("{topic_id} is encrypted with the AWS managed key {key}, which {service} cannot use"),
                ));
            }
            let policy = kms
                .get_key_policy()
                .key_id(key)
                .policy_name("default")
                .send()
                .await
                .map_err(sdk_error)?;
            let policy: Value = serde_json::from_str(policy.policy().unwrap_or_default())?;
            Ok(match service_grant(&policy, service) {
                None => Line::new(
                    check,
                    Outcome::Fail,
                    format!("{topic_id}'s key {key} does not let {service} use it: nothing is delivered to it"),
                ),
                Some(conditions) if forbid_source && conditions.iter().any(|k| k.to_lowercase().starts_with("aws:source")) => {
                    Line::new(
                        check,
                        Outcome::Fail,
                        format!(
                            "{topic_id}'s key {key} lets {service} in only under {conditions:?}, which EventBridge's request does not carry (SNS Developer Guide): every result would be dropped"
                        ),
                    )
                }
                Some(_) => Line::new(check, Outcome::Pass, format!("{topic_id}'s key lets {service} encrypt")),
            })
        }
        .await;
        lines.push(result.unwrap_or_else(|e| Line::new(check, Outcome::Fail, format!("{topic_id}: {e:#}"))));
    }
    lines
}

/// One `CMEK Preflight` event put on the stack's bus, seen arriving through
/// the result rule and the result topic at a temporary SQS queue that
/// preflight subscribes and removes again.
pub async fn result_delivery(
    events: &aws_sdk_eventbridge::Client,
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    stack: &DeployedStack,
    timeout: Duration,
) -> Line {
    let check = "Result delivery";
    let id = format!("{:016x}", rand_id());
    let queue_name = format!("cmek-preflight-{id}");
    let mut cleanup: (Option<String>, Option<String>) = (None, None);
    let result: anyhow::Result<Line> = async {
        let topic = stack.resource("ResultTopic")?.to_owned();
        let bus = stack.resource("ResultBus")?.to_owned();
        let url = sqs
            .create_queue()
            .queue_name(&queue_name)
            .send()
            .await
            .map_err(sdk_error)?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        cleanup.0 = Some(url.clone());
        let queue_arn = stack.queue_arn_from_url(&url)?;
        let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]});
        sqs.set_queue_attributes()
            .queue_url(&url)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(sdk_error)?;
        let sub = sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .attributes("RawMessageDelivery", "true")
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(sdk_error)?;
        cleanup.1 = sub.subscription_arn().map(str::to_owned);
        let started = Instant::now();
        let put = events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(cmek::events::SOURCE)
                    .detail_type(cmek::events::DETAIL_PREFLIGHT)
                    .event_bus_name(&bus)
                    .detail(serde_json::json!({"preflight": id}).to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error)?;
        if put.failed_entry_count() > 0 {
            let why = put
                .entries()
                .iter()
                .filter_map(|e| e.error_message())
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(Line::new(check, Outcome::Fail, format!("the bus refused the test event: {why}")));
        }
        while started.elapsed() < timeout {
            let got = sqs
                .receive_message()
                .queue_url(&url)
                .wait_time_seconds(5)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(sdk_error)?;
            if got.messages().iter().any(|m| m.body().is_some_and(|b| b.contains(&id))) {
                return Ok(Line::new(
                    check,
                    Outcome::Pass,
                    format!(
                        "a {} event went through the result rule and the encrypted result topic in {:.1} s",
                        cmek::events::DETAIL_PREFLIGHT,
                        started.elapsed().as_secs_f64()
                    ),
                ));
            }
        }
        Ok(Line::new(
            check,
            Outcome::Fail,
            format!(
                "the test event did not reach the result topic within {} s: look at the result rule's FailedInvocations metric and the FailedInvocationsQueue",
                timeout.as_secs()
            ),
        ))
    }
    .await;
    // What preflight made goes again, whatever happened.
    if let Some(sub) = &cleanup.1 {
        let _ = sns.unsubscribe().subscription_arn(sub).send().await;
    }
    if let Some(url) = &cleanup.0 {
        let _ = sqs.delete_queue().queue_url(url).send().await;
    }
    result.unwrap_or_else(|e| Line::new(check, Outcome::Fail, format!("{e:#}")))
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// The key guardian hears of KMS changes only through CloudTrail: a trail
/// that logs management events (KMS's included) in this Region must exist
/// and be logging.
pub async fn cloudtrail(trails: &aws_sdk_cloudtrail::Client, stack: &DeployedStack) -> Line {
    let check = "CloudTrail";
    let result: anyhow::Result<Line> = async {
        let described = trails
            .describe_trails()
            .include_shadow_trails(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut seen = Vec::new();
        for t in described.trail_list() {
            let here = t.is_multi_region_trail().unwrap_or(false) || t.home_region() == Some(stack.region.as_str());
            let Some(arn) = t.trail_arn().or(t.name()) else { continue };
            if !here {
                continue;
            }
            let logging = trails
                .get_trail_status()
                .name(arn)
                .send()
                .await
                .map_err(sdk_error)?
                .is_logging()
                .unwrap_or(false);
            let selectors = trails
                .get_event_selectors()
                .trail_name(arn)
                .send()
                .await
                .map_err(sdk_error)?;
            let basic = selectors.event_selectors().iter().any(|s| {
                s.include_management_events().unwrap_or(true)
                    && !matches!(s.read_write_type(), Some(aws_sdk_cloudtrail::types::ReadWriteType::ReadOnly))
                    && !s.exclude_management_event_sources().iter().any(|x| x == "kms.amazonaws.com")
            });
            let advanced = selectors.advanced_event_selectors().iter().any(|s| {
                let fields = s.field_selectors();
                let equals = |field: &str, value: &str| {
                    fields
                        .iter()
                        .any(|f| f.field() == field && f.equals().iter().any(|v| v == value))
                };
                equals("eventCategory", "Management")
                    && !equals("readOnly", "true")
                    && !fields
                        .iter()
                        .any(|f| f.field() == "eventSource" && f.not_equals().iter().any(|v| v == "kms.amazonaws.com"))
            });
            let name = t.name().unwrap_or(arn).to_owned();
            if logging && (basic || advanced) {
                return Ok(Line::new(
                    check,
                    Outcome::Pass,
                    format!("trail {name} logs KMS management events in {}", stack.region),
                ));
            }
            seen.push(format!(
                "{name} ({})",
                if logging { "no write management events" } else { "not logging" }
            ));
        }
        Ok(Line::new(
            check,
            Outcome::Fail,
            format!(
                "no trail logs KMS management events in {}{}: the key guardian hears nothing (create one, or turn management events on)",
                stack.region,
                if seen.is_empty() { String::new() } else { format!(" (seen: {})", seen.join(", ")) }
            ),
        ))
    }
    .await;
    result.unwrap_or_else(|e| Line::new(check, Outcome::Fail, format!("{e:#}")))
}

/// The Admin API answers the stack's credentials: the admin key in the
/// secret (read with your credentials) on Claude Platform; a SigV4-signed
/// request with your credentials on Claude Platform on AWS.
pub async fn admin_api(sdk: &aws_config::SdkConfig, stack: &DeployedStack) -> Line {
    let check = "Admin API";
    let result: anyhow::Result<Line> = async {
        let platform = stack.platform()?;
        let base = stack.parameter("AdminApiBaseUrl");
        if platform.is_on_aws() {
            let region: cmek::ids::Region = stack.region.parse()?;
            let url = if base.is_empty() {
                platform.endpoint(&region)
            } else {
                base.to_owned()
            };
            let credentials = sdk
                .credentials_provider()
                .context("no AWS credentials to sign Claude Platform on AWS requests with")?;
            let client = cmek::admin_api::AdminApiClient::new_sigv4(
                &url,
                cmek::admin_api::SigV4Signer::new(credentials, region.to_string()),
                cmek::admin_api::ClientOptions::default(),
            )?;
            let page = client.list_workspaces_page(None, false, true).await?;
            return Ok(Line::new(
                check,
                Outcome::Pass,
                format!(
                    "{url} answered a SigV4-signed ListWorkspaces ({} workspaces on the first page)",
                    page.data.len()
                ),
            ));
        }
        let secret = stack.parameter("AdminKeySecretArn");
        if secret.is_empty() {
            return Ok(Line::new(
                check,
                Outcome::Fail,
                "AdminKeySecretArn is empty on claude-platform",
            ));
        }
        let key = cmek::aws::read_admin_key(&cmek::aws::secrets_client_for(sdk, secret), secret)
            .await
            .with_context(|| format!("reading the admin key from {secret} (with your credentials)"))?;
        let url = if base.is_empty() {
            cmek::admin_api::DEFAULT_BASE_URL
        } else {
            base
        };
        let client =
            cmek::admin_api::AdminApiClient::new(url, key, cmek::admin_api::ClientOptions::default())?;
        let org = client.get_organization().await?;
        Ok(Line::new(
            check,
            Outcome::Pass,
            format!(
                "{url}: GET /v1/organizations/me answered organization {} ({})",
                org.id,
                org.name.as_deref().unwrap_or("unnamed")
            ),
        ))
    }
    .await;
    result.unwrap_or_else(|e| Line::new(check, Outcome::Fail, format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_service_grant_is_found_with_its_conditions() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
             "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceAccount": "1"}}},
            {"Effect": "Allow", "Principal": {"Service": ["events.amazonaws.com"]},
             "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"}]});
        assert_eq!(
            service_grant(&policy, "cloudwatch.amazonaws.com"),
            Some(vec!["aws:SourceAccount".to_owned()])
        );
        assert_eq!(service_grant(&policy, "events.amazonaws.com"), Some(vec![]));
        assert_eq!(service_grant(&policy, "sns.amazonaws.com"), None);
    }

    #[test]
    fn context_types_are_what_iam_expects() {
        assert_eq!(
            context_type("kms:MultiRegion", &["false".into()]),
            ContextKeyTypeEnum::Boolean
        );
        assert_eq!(
            context_type("aws:TagKeys", &["a".into()]),
            ContextKeyTypeEnum::StringList
        );
        assert_eq!(
            context_type("kms:KeySpec", &["SYMMETRIC_DEFAULT".into()]),
            ContextKeyTypeEnum::String
        );
    }

    #[test]
    fn iam_documents_are_url_decoded() {
        assert_eq!(decoded("%7B%22a%22%3A%201%7D"), "{\"a\": 1}");
        assert_eq!(decoded("{\"a+b\": 1}"), "{\"a+b\": 1}");
    }
}
