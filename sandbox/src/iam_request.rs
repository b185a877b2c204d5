//! What IAM authorizes when a function makes an AWS call: the action(s), the
//! resource ARN(s) and the request's condition keys — read from the request
//! the SDK sent, so that a test can evaluate each call against the role the
//! function would have in AWS (moto checks no IAM at all).
//!
//! Sources, per service (AWS Service Authorization Reference, "Actions,
//! resources, and condition keys"):
//! - KMS authorizes on the key's ARN even when the request names an alias or
//!   a key id; `CreateAlias` needs the alias *and* the key; `CreateKey` with
//!   `Tags` needs `kms:TagResource` as well ("To use the Tags parameter, you
//!   must have kms:TagResource permission", KMS API reference, CreateKey).
//! - DynamoDB has no `TransactWriteItems` action: each item is authorized as
//!   the `PutItem`, `UpdateItem`, `DeleteItem` or `ConditionCheckItem` it
//!   performs (DynamoDB developer guide, "Using IAM with DynamoDB
//!   transactions"); a `Query` on an index is authorized on the index ARN.
//!
//! A request this module cannot place gets the resource [`UNKNOWN`], which
//! no policy allows: the coverage test then fails and names the call,
//! instead of passing on a guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The resource of a request this module does not know how to read.
pub const UNKNOWN: &str = "<unknown resource: teach sandbox::iam_request>";

/// One decision IAM makes for a call.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Authorization {
    /// `service:Action`, as IAM names it.
    pub action: String,
    pub resource: String,
    /// The request's condition keys (`kms:KeySpec`, `aws:RequestTag/…`,
    /// `aws:ResourceTag/…`), each with its values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, Vec<String>>,
}

/// Where the call was made.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub account: &'a str,
}

/// What the local stack looked up about the KMS key a request names, just
/// before the call: its ARN (the request may name an alias or an id) and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFacts {
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    /// Its key policy (see [`crate::aws_proxy::AwsCall::key_policy`]).
    pub policy: Option<String>,
}

/// The key a KMS request names (`KeyId`, or `TargetKeyId` for aliases), if
/// it names one and is not `CreateKey`.
pub fn kms_key_named(operation: &str, body: &Value) -> Option<String> {
    if operation == "CreateKey" {
        return None;
    }
    ["KeyId", "TargetKeyId"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// The authorizations one request needs. `body` is the JSON body (JSON
/// protocols) or the form fields as a JSON object (query protocols).
pub fn authorizations(
    service: &str,
    operation: &str,
    body: &Value,
    scope: Scope<'_>,
    key: Option<&KeyFacts>,
) -> Vec<Authorization> {
    let action = format!("{service}:{operation}");
    let plain = |resource: String| {
        vec![Authorization {
            action: action.clone(),
            resource,
            context: BTreeMap::new(),
        }]
    };
    let Scope { region, account } = scope;
    let str_at = |k: &str| body.get(k).and_then(Value::as_str);
    match service {
        "kms" => kms(operation, body, scope, key),
        "dynamodb" => dynamodb(operation, body, scope),
        "states" => plain(
            str_at("stateMachineArn")
                .or_else(|| str_at("executionArn"))
                .unwrap_or(UNKNOWN)
                .to_owned(),
        ),
        // One authorization per bus and event kind: `events:source` and
        // `events:detail-type` are supplied on PutEvents (EventBridge User
        // Guide, "Actions, resources, and condition keys for the Custom Event
        // Bus"), so a bus policy can refuse one kind of event.
        "events" if operation == "PutEvents" => {
            let mut out: Vec<Authorization> = body
                .get("Entries")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| {
                    let bus = e.get("EventBusName").and_then(Value::as_str).unwrap_or("default");
                    let resource = if bus.starts_with("arn:") {
                        bus.to_owned()
                    } else {
                        format!("arn:aws:events:{region}:{account}:event-bus/{bus}")
                    };
                    let mut context = BTreeMap::new();
                    for (field, key) in [("Source", "events:source"), ("DetailType", "events:detail-type")] {
                        if let Some(v) = e.get(field).and_then(Value::as_str) {
                            context.insert(key.to_owned(), vec![v.to_owned()]);
                        }
                    }
                    Authorization {
                        action: action.clone(),
                        resource,
                        context,
                    }
                })
                .collect();
            out.sort();
            out.dedup();
            out
        }
        "sns" => plain(
            str_at("TopicArn")
                .or_else(|| str_at("TargetArn"))
                .unwrap_or(UNKNOWN)
                .to_owned(),
        ),
        "secretsmanager" => plain(match str_at("SecretId") {
            Some(id) if id.starts_with("arn:") => id.to_owned(),
            _ => UNKNOWN.to_owned(),
        }),
        "sqs" => plain(match str_at("QueueUrl").and_then(|u| u.rsplit('/').next()) {
            Some(name) if !name.is_empty() => format!("arn:aws:sqs:{region}:{account}:{name}"),
            _ => UNKNOWN.to_owned(),
        }),
        _ => plain(UNKNOWN.to_owned()),
    }
}

/// Claude Platform on AWS: the IAM action and resource a signed Admin API
/// request is authorized as, from its method and path. Sources: Anthropic's
/// "IAM actions for Claude Platform on AWS" (section "Encryption keys"), and
/// AWS's own service data for `aws-external-anthropic` (the Service
/// Authorization Reference as cfn-lint ships it, which `tests/tests/iam_truth.rs`
/// checks every name and scope of this table against): the only resource
/// type is `workspace`,
/// `arn:aws:aws-external-anthropic:{region}:{account-id}:workspace/{workspace-id}`;
/// `ListWorkspaces`, `CreateWorkspace` and the encryption-key actions have no
/// resource type (account-scoped), so IAM authorizes them on `*`.
///
/// A create carries its `tags` as `aws:RequestTag/<key>` and `aws:TagKeys`,
/// the condition keys the facts list for `CreateWorkspace` (whether the
/// service fills them from the body's `tags` is not documented: README,
/// "Unverified").
pub fn external_anthropic(
    method: &str,
    path: &str,
    body: Option<&Value>,
    scope: Scope<'_>,
) -> Vec<Authorization> {
    let Scope { region, account } = scope;
    let workspace = |id: &str| format!("arn:aws:aws-external-anthropic:{region}:{account}:workspace/{id}");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (action, resource) = match (method, segments.as_slice()) {
        ("GET", ["v1", "organizations", "workspaces"]) => ("ListWorkspaces", "*".to_owned()),
        ("POST", ["v1", "organizations", "workspaces"]) => ("CreateWorkspace", "*".to_owned()),
        ("GET", ["v1", "organizations", "workspaces", id]) => ("GetWorkspace", workspace(id)),
        ("POST", ["v1", "organizations", "workspaces", id]) => ("UpdateWorkspace", workspace(id)),
        ("POST", ["v1", "organizations", "workspaces", id, "archive"]) => ("ArchiveWorkspace", workspace(id)),
        ("GET", ["v1", "organizations", "external_keys"]) => ("ListKeys", "*".to_owned()),
        ("POST", ["v1", "organizations", "external_keys"]) => ("RegisterKey", "*".to_owned()),
        ("GET", ["v1", "organizations", "external_keys", _]) => ("GetKey", "*".to_owned()),
        ("POST", ["v1", "organizations", "external_keys", _]) => ("UpdateKey", "*".to_owned()),
        ("DELETE", ["v1", "organizations", "external_keys", _]) => ("DisableKey", "*".to_owned()),
        _ => ("Unknown", UNKNOWN.to_owned()),
    };
    let mut context = BTreeMap::new();
    if action == "CreateWorkspace"
        && let Some(tags) = body.and_then(|b| b.get("tags")).and_then(Value::as_object)
    {
        for (k, v) in tags {
            if let Some(v) = v.as_str() {
                context.insert(format!("aws:RequestTag/{k}"), vec![v.to_owned()]);
            }
        }
        context.insert("aws:TagKeys".to_owned(), tags.keys().cloned().collect());
    }
    vec![Authorization {
        action: format!("aws-external-anthropic:{action}"),
        resource,
        context,
    }]
}

fn kms(operation: &str, body: &Value, scope: Scope<'_>, key: Option<&KeyFacts>) -> Vec<Authorization> {
    let Scope { region, account } = scope;
    let action = |op: &str| format!("kms:{op}");
    let key_arn = || {
        key.map(|k| k.arn.clone()).unwrap_or_else(|| {
            // No such key (an alias looked up before it exists, say): KMS
            // answers NotFoundException to a caller allowed on the account's
            // keys, so the call is authorized as on a key of the account
            // that no real key matches.
            match kms_key_named(operation, body) {
                Some(id) if id.starts_with("arn:aws:kms:") && id.contains(":key/") => id,
                Some(id) if id.starts_with("arn:aws:kms:") || id.starts_with("alias/") => {
                    let alias = id.rsplit_once(":alias/").map_or(id.as_str(), |(_, a)| a);
                    let alias = alias.trim_start_matches("alias/");
                    format!("arn:aws:kms:{region}:{account}:key/none-for-alias/{alias}")
                }
                Some(id) => format!("arn:aws:kms:{region}:{account}:key/{id}"),
                None => UNKNOWN.to_owned(),
            }
        })
    };
    let resource_tags = || -> BTreeMap<String, Vec<String>> {
        key.map(|k| {
            k.tags
                .iter()
                .map(|(t, v)| (format!("aws:ResourceTag/{t}"), vec![v.clone()]))
                .collect()
        })
        .unwrap_or_default()
    };
    match operation {
        "CreateKey" => {
            let mut context = BTreeMap::new();
            let tags = request_tags(body, &mut context);
            if !tags.is_empty() {
                context.insert(
                    "aws:TagKeys".into(),
                    tags.iter().map(|(k, _)| k.clone()).collect(),
                );
            }
            // Only what the request says: an omitted parameter is no context
            // key, so a policy conditioned on it fails (the strict reading).
            for (param, condition_key) in [
                ("KeySpec", "kms:KeySpec"),
                ("KeyUsage", "kms:KeyUsage"),
                ("Origin", "kms:KeyOrigin"),
                ("MultiRegion", "kms:MultiRegion"),
                (
                    "BypassPolicyLockoutSafetyCheck",
                    "kms:BypassPolicyLockoutSafetyCheck",
                ),
            ] {
                match body.get(param) {
                    Some(Value::String(s)) => {
                        context.insert(condition_key.into(), vec![s.clone()]);
                    }
                    Some(Value::Bool(b)) => {
                        context.insert(condition_key.into(), vec![b.to_string()]);
                    }
                    _ => {}
                }
            }
            let mut out = vec![Authorization {
                action: action("CreateKey"),
                resource: "*".into(),
                context: context.clone(),
            }];
            if !tags.is_empty() {
                out.push(Authorization {
                    action: action("TagResource"),
                    resource: "*".into(),
                    context: context
                        .into_iter()
                        .filter(|(k, _)| k.starts_with("aws:RequestTag/") || k == "aws:TagKeys")
                        .collect(),
                });
            }
            out
        }
        "ListKeys" | "ListAliases" => vec![Authorization {
            action: action(operation),
            resource: "*".into(),
            context: BTreeMap::new(),
        }],
        "CreateAlias" => {
            let alias = body.get("AliasName").and_then(Value::as_str).unwrap_or_default();
            vec![
                Authorization {
                    action: action("CreateAlias"),
                    resource: if alias.starts_with("alias/") {
                        format!("arn:aws:kms:{region}:{account}:{alias}")
                    } else {
                        UNKNOWN.to_owned()
                    },
                    context: BTreeMap::new(),
                },
                Authorization {
                    action: action("CreateAlias"),
                    resource: key_arn(),
                    context: resource_tags(),
                },
            ]
        }
        _ => {
            let mut context = resource_tags();
            // TagResource: the tags the request puts (aws:RequestTag/…, aws:TagKeys).
            if operation == "TagResource" {
                let tags = request_tags(body, &mut context);
                context.insert("aws:TagKeys".into(), tags.into_iter().map(|(k, _)| k).collect());
            }
            if operation == "PutKeyPolicy"
                && let Some(b) = body
                    .get("BypassPolicyLockoutSafetyCheck")
                    .and_then(Value::as_bool)
            {
                context.insert("kms:BypassPolicyLockoutSafetyCheck".into(), vec![b.to_string()]);
            }
            vec![Authorization {
                action: action(operation),
                resource: key_arn(),
                context,
            }]
        }
    }
}

fn dynamodb(operation: &str, body: &Value, scope: Scope<'_>) -> Vec<Authorization> {
    let Scope { region, account } = scope;
    let table = |name: &str| format!("arn:aws:dynamodb:{region}:{account}:table/{name}");
    let one = |action: &str, resource: String| Authorization {
        action: format!("dynamodb:{action}"),
        resource,
        context: BTreeMap::new(),
    };
    match operation {
        "TransactWriteItems" | "TransactGetItems" => {
            let mut out: Vec<Authorization> = body
                .get("TransactItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|item| item.as_object().into_iter().flatten())
                .map(|(kind, inner)| {
                    let action = match kind.as_str() {
                        "Put" => "PutItem",
                        "Update" => "UpdateItem",
                        "Delete" => "DeleteItem",
                        "ConditionCheck" => "ConditionCheckItem",
                        "Get" => "GetItem",
                        _ => "UnknownTransactItem",
                    };
                    let resource = inner
                        .get("TableName")
                        .and_then(Value::as_str)
                        .map_or_else(|| UNKNOWN.to_owned(), table);
                    one(action, resource)
                })
                .collect();
            out.sort();
            out.dedup();
            out
        }
        "BatchGetItem" | "BatchWriteItem" => body
            .get("RequestItems")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, _)| one(operation, table(name)))
            .collect(),
        _ => {
            let resource = match (
                body.get("TableName").and_then(Value::as_str),
                body.get("IndexName").and_then(Value::as_str),
            ) {
                (Some(t), Some(i)) => format!("{}/index/{i}", table(t)),
                (Some(t), None) => table(t),
                (None, _) => UNKNOWN.to_owned(),
            };
            vec![one(operation, resource)]
        }
    }
}

/// The tags a KMS request puts (`Tags`: `TagKey`, `TagValue`), each added
/// to the context as `aws:RequestTag/<key>`; returned for `aws:TagKeys`.
fn request_tags(body: &Value, context: &mut BTreeMap<String, Vec<String>>) -> Vec<(String, String)> {
    let tags: Vec<(String, String)> = body
        .get("Tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t.get("TagKey")?.as_str()?.to_owned(),
                t.get("TagValue")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    for (k, v) in &tags {
        context.insert(format!("aws:RequestTag/{k}"), vec![v.clone()]);
    }
    tags
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SCOPE: Scope<'static> = Scope {
        region: "us-east-2",
        account: "123456789012",
    };

    #[test]
    fn a_transaction_is_authorized_item_by_item() {
        let a = authorizations(
            "dynamodb",
            "TransactWriteItems",
            &json!({"TransactItems": [
                {"Put": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "t"}}, {"Put": {"TableName": "t"}}
            ]}),
            SCOPE,
            None,
        );
        let actions: Vec<&str> = a.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["dynamodb:ConditionCheckItem", "dynamodb:PutItem"]);
        assert!(
            a.iter()
                .all(|a| a.resource == "arn:aws:dynamodb:us-east-2:123456789012:table/t")
        );
    }

    #[test]
    fn a_query_on_an_index_is_authorized_on_the_index() {
        let a = authorizations(
            "dynamodb",
            "Query",
            &json!({"TableName": "t", "IndexName": "by-key"}),
            SCOPE,
            None,
        );
        assert_eq!(
            a[0].resource,
            "arn:aws:dynamodb:us-east-2:123456789012:table/t/index/by-key"
        );
    }

    #[test]
    fn create_key_carries_its_parameters_and_tags_and_needs_tag_resource() {
        let a = authorizations(
            "kms",
            "CreateKey",
            &json!({"KeySpec": "SYMMETRIC_DEFAULT", "MultiRegion": false,
                    "Tags": [{"TagKey": "cmek:managed-by", "TagValue": "cmek-provisioner"}]}),
            SCOPE,
            None,
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].context["kms:KeySpec"], ["SYMMETRIC_DEFAULT"]);
        assert_eq!(a[0].context["kms:MultiRegion"], ["false"]);
        assert!(!a[0].context.contains_key("kms:KeyOrigin"), "not in the request");
        assert_eq!(a[1].action, "kms:TagResource");
        assert_eq!(
            a[1].context["aws:RequestTag/cmek:managed-by"],
            ["cmek-provisioner"]
        );
    }

    #[test]
    fn a_key_named_by_alias_is_authorized_on_its_arn_with_its_tags() {
        let facts = KeyFacts {
            arn: "arn:aws:kms:us-east-2:123456789012:key/k1".into(),
            tags: [("cmek:managed-by".to_owned(), "cmek-provisioner".to_owned())].into(),
            policy: None,
        };
        let body = json!({"KeyId": "alias/x"});
        assert_eq!(kms_key_named("DescribeKey", &body).as_deref(), Some("alias/x"));
        let a = authorizations("kms", "CancelKeyDeletion", &body, SCOPE, Some(&facts));
        assert_eq!(a[0].resource, facts.arn);
        assert_eq!(
            a[0].context["aws:ResourceTag/cmek:managed-by"],
            ["cmek-provisioner"]
        );
        let a = authorizations(
            "kms",
            "CreateAlias",
            &json!({"AliasName": "alias/p/w", "TargetKeyId": "k1"}),
            SCOPE,
            Some(&facts),
        );
        assert_eq!(
            a.iter().map(|a| a.resource.as_str()).collect::<Vec<_>>(),
            ["arn:aws:kms:us-east-2:123456789012:alias/p/w", facts.arn.as_str()]
        );
    }

    #[test]
    fn an_alias_that_names_no_key_is_authorized_as_a_key_of_the_account() {
        let a = authorizations("kms", "DescribeKey", &json!({"KeyId": "alias/p/w"}), SCOPE, None);
        assert_eq!(
            a[0].resource,
            "arn:aws:kms:us-east-2:123456789012:key/none-for-alias/p/w"
        );
    }

    #[test]
    fn what_cannot_be_placed_is_named_unknown() {
        let a = authorizations("kms", "DescribeKey", &json!({}), SCOPE, None);
        assert_eq!(a[0].resource, UNKNOWN);
        let a = authorizations("lambda", "Invoke", &json!({}), SCOPE, None);
        assert_eq!(a[0].resource, UNKNOWN);
        let a = authorizations(
            "secretsmanager",
            "GetSecretValue",
            &json!({"SecretId": "name"}),
            SCOPE,
            None,
        );
        assert_eq!(a[0].resource, UNKNOWN);
    }

    #[test]
    fn put_events_is_authorized_once_per_bus_and_kind_of_event() {
        let a = authorizations(
            "events",
            "PutEvents",
            &json!({"Entries": [
                {"EventBusName": "b", "Source": "s", "DetailType": "One"},
                {"EventBusName": "b", "Source": "s", "DetailType": "One"},
                {"EventBusName": "b", "Source": "s", "DetailType": "Two"},
                {}
            ]}),
            SCOPE,
            None,
        );
        let seen: Vec<(&str, Option<&str>)> = a
            .iter()
            .map(|a| {
                (
                    a.resource.as_str(),
                    a.context.get("events:detail-type").map(|v| v[0].as_str()),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("arn:aws:events:us-east-2:123456789012:event-bus/b", Some("One")),
                ("arn:aws:events:us-east-2:123456789012:event-bus/b", Some("Two")),
                ("arn:aws:events:us-east-2:123456789012:event-bus/default", None),
            ]
        );
    }
}
