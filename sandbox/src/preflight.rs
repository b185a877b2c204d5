//! What moto does not have and `cmekctl preflight` asks of AWS: IAM's policy
//! simulator (`iam:SimulatePrincipalPolicy`) and IAM Access Analyzer's
//! `ValidatePolicy`. The local stack answers them itself, and says so in the
//! stack description preflight reads, so that its output names every check a
//! stand-in answered:
//!
//! - the simulator from the project's independent IAM evaluator
//!   ([`crate::iam_eval`]) over the roles as `sam deploy` would create them;
//! - `ValidatePolicy` from AWS's own service data ([`crate::aws_data`]): an
//!   action AWS does not have is the ERROR `INVALID_ACTION`, a service prefix
//!   it does not have `INVALID_SERVICE_IN_ACTION` (IAM User Guide, "IAM
//!   policy validation check reference"). Access Analyzer checks much more;
//!   the stand-in checks only these, and says so.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use cmek::policy::{statement_items, string_values};

use crate::aws_data::ServiceData;
use crate::iam_eval::{Decision, Role};
use crate::iam_request::Authorization;

/// What the local stack's description says each stand-in is.
pub const SIMULATOR: &str = "the project's own IAM evaluator (sandbox::iam_eval) over the roles SAM would deploy; moto has no SimulatePrincipalPolicy";
pub const VALIDATOR: &str = "unknown actions and service prefixes only, from AWS's service data in cfn-lint; moto has no Access Analyzer";

/// `SimulatePrincipalPolicy`, from its Query-protocol form, as IAM's XML.
pub fn simulate_principal_policy(form: &[(String, String)], roles: &HashMap<String, Role>) -> (u16, String) {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let members = |prefix: &str| -> Vec<String> {
        let mut items: Vec<(usize, String)> = form
            .iter()
            .filter_map(|(k, v)| {
                let n: usize = k.strip_prefix(prefix)?.parse().ok()?;
                Some((n, v.clone()))
            })
            .collect();
        items.sort();
        items.into_iter().map(|(_, v)| v).collect()
    };
    let Some(source) = get("PolicySourceArn") else {
        return error(400, "ValidationError", "PolicySourceArn is required");
    };
    let Some(role) = roles.get(&source) else {
        return error(
            404,
            "NoSuchEntity",
            &format!("The role with name {source} cannot be found."),
        );
    };
    let actions = members("ActionNames.member.");
    let mut resources = members("ResourceArns.member.");
    if resources.is_empty() {
        resources.push("*".into());
    }
    let mut context: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 1.. {
        let Some(key) = get(&format!("ContextEntries.member.{n}.ContextKeyName")) else {
            break;
        };
        context.insert(
            key,
            members(&format!("ContextEntries.member.{n}.ContextKeyValues.member.")),
        );
    }
    let mut results = String::new();
    for action in &actions {
        for resource in &resources {
            let a = Authorization {
                action: action.clone(),
                resource: resource.clone(),
                context: context.clone(),
            };
            let decision = match role.decide(&a) {
                Ok(Decision::Allowed(_)) => "allowed",
                Ok(Decision::Denied(_)) => "explicitDeny",
                Ok(Decision::NotAllowed) => "implicitDeny",
                Err(e) => return error(400, "InvalidInput", &format!("{e:#}")),
            };
            results.push_str(&format!(
                "<member><EvalActionName>{}</EvalActionName><EvalResourceName>{}</EvalResourceName><EvalDecision>{decision}</EvalDecision><MatchedStatements/><MissingContextValues/></member>",
                xml(action),
                xml(resource)
            ));
        }
    }
    (
        200,
        format!(
            "<SimulatePrincipalPolicyResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>{results}</EvaluationResults></SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>local-stand-in</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>"
        ),
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn error(status: u16, code: &str, message: &str) -> (u16, String) {
    (
        status,
        format!(
            "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>local-stand-in</RequestId></ErrorResponse>",
            xml(message)
        ),
    )
}

/// `ValidatePolicy`'s findings for a policy document (REST-JSON body).
pub fn validate_policy(body: &Value, data: &ServiceData) -> (u16, Value) {
    let Some(document) = body.get("policyDocument").and_then(Value::as_str) else {
        return (400, json!({"message": "policyDocument is required"}));
    };
    let doc: Value = match serde_json::from_str(document) {
        Ok(d) => d,
        Err(e) => {
            return (
                200,
                json!({"findings": [finding("ERROR", "JSON_SYNTAX_ERROR", &format!("The policy is not JSON: {e}"))]}),
            );
        }
    };
    let statements = statement_items(&doc["Statement"]).unwrap_or_default();
    let mut findings = Vec::new();
    for s in &statements {
        for key in ["Action", "NotAction"] {
            let patterns = string_values(&s[key]);
            for p in patterns.iter().filter(|p| p.as_str() != "*") {
                let service = p.split(':').next().unwrap_or_default();
                if !data.has_service(service) {
                    findings.push(finding(
                        "ERROR",
                        "INVALID_SERVICE_IN_ACTION",
                        &format!("The service {service} specified in the action {p} does not exist."),
                    ));
                } else if data.expand(p).is_empty() {
                    findings.push(finding(
                        "ERROR",
                        "INVALID_ACTION",
                        &format!("The action {p} does not exist."),
                    ));
                }
            }
        }
    }
    (200, json!({"findings": findings}))
}

fn finding(kind: &str, code: &str, details: &str) -> Value {
    json!({
        "findingType": kind,
        "issueCode": code,
        "findingDetails": details,
        "learnMoreLink": "https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html",
        "locations": []
    })
}
