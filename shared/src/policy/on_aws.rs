//! The key policy for Claude Platform on AWS: built, merged and analysed.
//!
//! Anthropic's "Configure AWS KMS for CMEK" (section "Set up CMEK on Claude
//! Platform on AWS"): the service principal `aws-external-anthropic.amazonaws.com`
//! gets `kms:Encrypt`, `kms:Decrypt` and `kms:GenerateDataKey`, optionally
//! bound to the workspaces' compartments (`StringEquals`, no all-zeros entry:
//! there is no separate validation that would send it) and to the account's
//! workspaces (`ArnLike aws:SourceArn
//! arn:aws:aws-external-anthropic:*:<account>:workspace/*`); `kms:DescribeKey`
//! in a statement of its own; no organization condition. Attaching does the
//! service's round trip with the workspace's compartment as the caller's
//! workspace, which is what [`analyse`] asks of the policy.

use serde_json::{Map, Value, json};

use super::analysis::{Finding, FindingCode, check_root_admin, finding};
use super::build::ROOT_ADMIN_SID;
use super::document::{Effect, PolicyDocument, PolicyError, Principals, Statement};
use super::eval::{Request, Truth, context_key, decide_for, evaluate};
use crate::geo::{COMPARTMENT_CONDITION_KEY, COMPARTMENT_CONTEXT_KEY};
use crate::ids::{AccountId, CompartmentId};
use crate::platform::{SERVICE_PRINCIPAL, SOURCE_ARN_CONDITION_KEY};

/// The documented statement ids ("Set up CMEK on Claude Platform on AWS",
/// capital "AWS"). A statement is recognised by its id whatever its case:
/// keys this project wrote before used `…OnAws…`, and a policy written from
/// the docs must be merged into, never given a second grant.
pub const SERVICE_CRYPTO_SID: &str = "AllowClaudePlatformOnAWSCrypto";
pub const SERVICE_DESCRIBE_SID: &str = "AllowClaudePlatformOnAWSDescribe";

/// The actions the service uses on the key's data keys (envelope encryption).
pub const SERVICE_CRYPTO_ACTIONS: [&str; 3] = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"];

/// What a key policy on Claude Platform on AWS grants, for building and merging.
#[derive(Debug, Clone, Copy)]
pub struct OnAwsGrant<'a> {
    pub account: &'a AccountId,
    /// Compartments the crypto grant lists; `None` binds no compartment
    /// (any workspace the source ARN admits).
    pub compartments: Option<&'a [CompartmentId]>,
    /// The `aws:SourceArn` values: the account-wide pattern, or exact workspace ARNs.
    pub source_arns: &'a [String],
}

fn crypto_statement(grant: &OnAwsGrant<'_>) -> Value {
    let mut condition = Map::new();
    if let Some(compartments) = grant.compartments {
        let values: Vec<String> = compartments
            .iter()
            .filter(|c| !c.is_validation())
            .map(ToString::to_string)
            .collect();
        condition.insert("StringEquals".into(), json!({COMPARTMENT_CONDITION_KEY: values}));
    }
    condition.insert(
        "ArnLike".into(),
        json!({SOURCE_ARN_CONDITION_KEY: grant.source_arns}),
    );
    json!({
        "Sid": SERVICE_CRYPTO_SID,
        "Effect": "Allow",
        "Principal": {"Service": SERVICE_PRINCIPAL},
        "Action": SERVICE_CRYPTO_ACTIONS,
        "Resource": "*",
        "Condition": condition
    })
}

fn describe_statement() -> Value {
    json!({
        "Sid": SERVICE_DESCRIBE_SID,
        "Effect": "Allow",
        "Principal": {"Service": SERVICE_PRINCIPAL},
        "Action": "kms:DescribeKey",
        "Resource": "*"
    })
}

/// The documented policy for Claude Platform on AWS.
pub fn key_policy(grant: &OnAwsGrant<'_>) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": ROOT_ADMIN_SID,
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{}:root", grant.account)},
                "Action": "kms:*",
                "Resource": "*"
            },
            crypto_statement(grant),
            describe_statement()
        ]
    })
}

/// Bring an existing policy to admit one more workspace on Claude Platform
/// on AWS, taking nothing away: the workspace's compartment and (when the
/// grant lists exact workspace ARNs) its ARN are added to our crypto
/// statement, and missing statements of ours are appended. `None` when the
/// policy already admits it as written.
pub fn merge(
    policy_json: &str,
    grant: &OnAwsGrant<'_>,
    compartment: CompartmentId,
    workspace_arn: &str,
) -> Result<Option<(Value, Vec<String>)>, PolicyError> {
    // Parsed once to refuse what is not a policy at all.
    PolicyDocument::parse(policy_json)?;
    let mut doc: Value =
        serde_json::from_str(policy_json).map_err(|e| PolicyError::NotJson(e.to_string()))?;
    let mut changes = Vec::new();
    let statements = match doc.get_mut("Statement") {
        Some(Value::Array(a)) => a,
        _ => {
            return Err(PolicyError::Malformed(
                "the policy's Statement must be a list to be merged".into(),
            ));
        }
    };
    let is = |s: &Value, sid: &str| {
        s.get("Sid")
            .and_then(Value::as_str)
            .is_some_and(|x| x.eq_ignore_ascii_case(sid))
    };
    match statements.iter_mut().find(|s| is(s, SERVICE_CRYPTO_SID)) {
        Some(crypto) => {
            if let Some(list) =
                crypto.pointer_mut(&format!("/Condition/StringEquals/{COMPARTMENT_CONDITION_KEY}"))
                && add_value(list, &compartment.to_string())
            {
                changes.push(format!("added compartment {compartment} to {SERVICE_CRYPTO_SID}"));
            }
            if let Some(list) = crypto.pointer_mut(&format!("/Condition/ArnLike/{SOURCE_ARN_CONDITION_KEY}"))
                && !admits(list, workspace_arn)
                && add_value(list, workspace_arn)
            {
                changes.push(format!(
                    "added {workspace_arn} to {SERVICE_CRYPTO_SID}'s aws:SourceArn"
                ));
            }
        }
        None => {
            statements.push(crypto_statement(grant));
            changes.push(format!("added statement {SERVICE_CRYPTO_SID}"));
        }
    }
    if !statements.iter().any(|s| is(s, SERVICE_DESCRIBE_SID)) {
        statements.push(describe_statement());
        changes.push(format!("added statement {SERVICE_DESCRIBE_SID}"));
    }
    Ok((!changes.is_empty()).then_some((doc, changes)))
}

/// Add `value` to a condition's value (a string or a list); false when it was there.
fn add_value(list: &mut Value, value: &str) -> bool {
    match list {
        Value::Array(a) => {
            if a.iter().any(|v| v.as_str() == Some(value)) {
                return false;
            }
            a.push(json!(value));
            true
        }
        Value::String(s) if s == value => false,
        Value::String(s) => {
            *list = json!([s.clone(), value]);
            true
        }
        _ => false,
    }
}

fn admits(list: &Value, arn: &str) -> bool {
    let patterns: Vec<&str> = match list {
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => vec![],
    };
    patterns.iter().any(|p| super::glob_match(p, arn, false))
}

/// The workspace a policy is analysed for on Claude Platform on AWS.
#[derive(Debug, Clone, Copy)]
pub struct OnAwsTarget<'a> {
    pub compartment: CompartmentId,
    /// The workspace's ARN (the service's `aws:SourceArn` when it acts for it).
    pub workspace_arn: &'a str,
    pub key_account: Option<&'a AccountId>,
}

fn reaches_service(s: &Statement) -> bool {
    let is_service = |kind: &str, value: &str| {
        kind == "*" || (kind == "AWS" && value == "*") || (kind == "Service" && value == SERVICE_PRINCIPAL)
    };
    match &s.principals {
        Principals::Only(entries) => entries.iter().any(|e| is_service(&e.kind, &e.value)),
        Principals::AllExcept(entries) => !entries
            .iter()
            .any(|e| e.kind == "Service" && e.value == SERVICE_PRINCIPAL),
    }
}

/// Whether every condition this analysis cannot evaluate for `req`, on the
/// statements that apply to the service principal, is a network condition
/// (judged by `super::network` instead).
fn only_network_unknown(doc: &PolicyDocument, req: &Request<'_>) -> bool {
    let unknown: Vec<&str> = doc
        .statements
        .iter()
        .filter(|s| reaches_service(s) && s.covers_action(req.action))
        .flat_map(|s| s.conditions.iter())
        .filter(|c| evaluate(c, req) == Truth::Unknown)
        .map(|c| c.key.as_str())
        .collect();
    !unknown.is_empty() && unknown.iter().all(|k| super::network::is_network_key(k))
}

/// The findings for a policy on Claude Platform on AWS, most severe first:
/// would the service, acting for this workspace, be allowed the round trip
/// that attaching performs, and DescribeKey?
pub fn analyse(policy_json: &str, target: OnAwsTarget<'_>) -> Result<Vec<Finding>, PolicyError> {
    let doc = PolicyDocument::parse(policy_json)?;
    Ok(analyse_document(&doc, target))
}

pub fn analyse_document(doc: &PolicyDocument, target: OnAwsTarget<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let compartment = target.compartment.to_string();
    let account = target.key_account.map(AccountId::as_str).unwrap_or_default();
    let crypto_ctx = [
        (COMPARTMENT_CONTEXT_KEY, compartment.as_str()),
        (SOURCE_ARN_CONDITION_KEY, target.workspace_arn),
        ("aws:SourceAccount", account),
    ];
    let grants: Vec<&Statement> = doc
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow && reaches_service(s))
        .collect();
    let covering = |action: &str| grants.iter().any(|s| s.covers_action(action));

    let uncovered: Vec<&str> = SERVICE_CRYPTO_ACTIONS
        .into_iter()
        .filter(|a| !covering(a))
        .collect();
    if uncovered.len() == SERVICE_CRYPTO_ACTIONS.len() {
        out.push(finding(
            FindingCode::NoServiceGrant,
            format!("no statement allows {SERVICE_PRINCIPAL} kms:Encrypt, kms:Decrypt or kms:GenerateDataKey; attaching will be refused"),
            format!("Add statement {SERVICE_CRYPTO_SID}: Principal {{\"Service\": \"{SERVICE_PRINCIPAL}\"}}, Action [kms:Encrypt, kms:Decrypt, kms:GenerateDataKey]."),
        ));
    } else if !uncovered.is_empty() {
        out.push(finding(
            FindingCode::MissingServiceAction,
            format!("{SERVICE_PRINCIPAL} is not allowed {}; the service needs all of kms:Encrypt, kms:Decrypt and kms:GenerateDataKey", uncovered.join(", ")),
            format!("Add {} to the Action list of the statement for {SERVICE_PRINCIPAL}.", uncovered.join(", ")),
        ));
    }
    for action in SERVICE_CRYPTO_ACTIONS.into_iter().filter(|a| covering(a)) {
        let req = Request {
            action,
            context: &crypto_ctx,
        };
        match decide_for(doc, reaches_service, &req) {
            Truth::True => {}
            // Network conditions have findings of their own (below).
            Truth::Unknown if only_network_unknown(doc, &req) => {}
            Truth::Unknown => out.push(finding(
                FindingCode::UnrecognisedCondition,
                format!("whether {SERVICE_PRINCIPAL} may {action} for this workspace depends on a condition this analysis cannot evaluate"),
                "Check the conditions on the statements that apply to the service principal.",
            )),
            Truth::False => out.push(why_denied(&grants, action, &req, &target)),
        }
    }
    let mut network_actions = SERVICE_CRYPTO_ACTIONS.to_vec();
    network_actions.push("kms:DescribeKey");
    super::network::check(
        doc,
        reaches_service,
        &network_actions,
        SERVICE_PRINCIPAL,
        &mut out,
    );
    let describe_ctx = [
        (SOURCE_ARN_CONDITION_KEY, target.workspace_arn),
        ("aws:SourceAccount", account),
    ];
    let describe = Request {
        action: "kms:DescribeKey",
        context: &describe_ctx,
    };
    if decide_for(doc, reaches_service, &describe) == Truth::False {
        out.push(finding(
            FindingCode::NoDescribeGrant,
            format!("{SERVICE_PRINCIPAL} may not kms:DescribeKey the key; attaching checks it"),
            format!("Add statement {SERVICE_DESCRIBE_SID}: Principal {{\"Service\": \"{SERVICE_PRINCIPAL}\"}}, Action kms:DescribeKey, no condition."),
        ));
    }
    for s in &grants {
        let zeros = s.conditions.iter().any(|c| {
            context_key(&c.key).is_some_and(|k| k.eq_ignore_ascii_case(COMPARTMENT_CONTEXT_KEY))
                && c.values
                    .iter()
                    .any(|v| v == &CompartmentId::VALIDATION.to_string())
        });
        if zeros {
            out.push(finding(
                FindingCode::ValidationIdOnAws,
                format!("{} lists the all-zeros compartment id, which Claude Platform on AWS never sends (there is no separate validation)", s.label()),
                "Remove 00000000-0000-0000-0000-000000000000 from the compartment list.",
            ));
        }
    }
    let bound = grants
        .iter()
        .filter(|s| SERVICE_CRYPTO_ACTIONS.iter().any(|a| s.covers_action(a)))
        .all(|s| {
            s.conditions
                .iter()
                .any(|c| c.key.eq_ignore_ascii_case(SOURCE_ARN_CONDITION_KEY) && !c.operator.contains("Not"))
        });
    if !grants.is_empty() && !bound {
        out.push(finding(
            FindingCode::NoSourceArnCondition,
            format!("a grant to {SERVICE_PRINCIPAL} has no aws:SourceArn condition: the service may use the key for workspaces of any account (the confused-deputy risk)"),
            "Add ArnLike aws:SourceArn arn:aws:aws-external-anthropic:*:<your-account>:workspace/* (or the exact workspace ARNs).",
        ));
    }
    check_root_admin(doc, target.key_account, &mut out);
    out.sort_by_key(|f| (f.severity, f.code));
    out
}

/// Name the condition that denies `action` for this workspace.
fn why_denied(grants: &[&Statement], action: &str, req: &Request<'_>, target: &OnAwsTarget<'_>) -> Finding {
    let failing: Vec<&super::document::Condition> = grants
        .iter()
        .filter(|s| s.covers_action(action))
        .flat_map(|s| s.conditions.iter())
        .filter(|c| evaluate(c, req) == Truth::False)
        .collect();
    if failing
        .iter()
        .any(|c| c.key.eq_ignore_ascii_case(SOURCE_ARN_CONDITION_KEY))
    {
        return finding(
            FindingCode::SourceArnExcludesWorkspace,
            format!(
                "the aws:SourceArn condition on {SERVICE_PRINCIPAL}'s grant does not admit the workspace {}; attaching will be refused",
                target.workspace_arn
            ),
            "Use ArnLike aws:SourceArn arn:aws:aws-external-anthropic:*:<your-account>:workspace/* (the key's own account), or list this workspace's ARN.",
        );
    }
    if failing
        .iter()
        .any(|c| context_key(&c.key).is_some_and(|k| k.eq_ignore_ascii_case(COMPARTMENT_CONTEXT_KEY)))
    {
        return finding(
            FindingCode::ConditionMissesCompartment,
            format!(
                "the compartment condition on {SERVICE_PRINCIPAL}'s grant does not list this workspace's compartment {}",
                target.compartment
            ),
            format!(
                "Add {} to the StringEquals list of kms:EncryptionContext:anthropic:compartment_uuid.",
                target.compartment
            ),
        );
    }
    finding(
        FindingCode::NoServiceGrant,
        format!("{SERVICE_PRINCIPAL} is denied {action} for this workspace by the key policy"),
        "Remove the Deny or the condition that excludes the service principal.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{account_workspaces_pattern, workspace_arn};

    const C1: &str = "6f1c1f2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f";
    const C2: &str = "7a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d";

    struct Fixture {
        account: AccountId,
        c1: CompartmentId,
        arn1: String,
    }

    fn fixture() -> Fixture {
        let account: AccountId = "123456789012".parse().unwrap_or_else(|e| panic!("{e}"));
        let region = "us-east-2".parse().unwrap_or_else(|e| panic!("{e}"));
        let ws = "wrkspc_01one".parse().unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            arn1: workspace_arn(&region, &account, &ws),
            c1: C1.parse().unwrap_or_else(|e| panic!("{e}")),
            account,
        }
    }

    fn built(f: &Fixture) -> Value {
        let compartments = [f.c1];
        key_policy(&OnAwsGrant {
            account: &f.account,
            compartments: Some(&compartments),
            source_arns: &[account_workspaces_pattern(&f.account)],
        })
    }

    fn codes(policy: &Value, f: &Fixture, compartment: &str) -> Vec<FindingCode> {
        let target = OnAwsTarget {
            compartment: compartment.parse().unwrap_or_else(|e| panic!("{e}")),
            workspace_arn: &f.arn1,
            key_account: Some(&f.account),
        };
        analyse(&policy.to_string(), target)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|x| x.code)
            .collect()
    }

    #[test]
    fn a_vpc_condition_on_the_service_principal_is_named() {
        let f = fixture();
        let mut p = built(&f);
        p["Statement"][1]["Condition"]["StringEquals"] = json!({"aws:SourceVpce": "vpce-0a1b2c3d"});
        let c = codes(&p, &f, C1);
        assert!(c.contains(&FindingCode::NetworkConditionBlocksAnthropic), "{c:?}");
        assert!(!c.contains(&FindingCode::UnrecognisedCondition), "{c:?}");
    }

    #[test]
    fn the_built_policy_is_the_documented_one_and_analyses_clean() {
        let f = fixture();
        let p = built(&f);
        assert_eq!(codes(&p, &f, C1), vec![]);
        let crypto = &p["Statement"][1];
        assert_eq!(
            crypto["Principal"],
            json!({"Service": "aws-external-anthropic.amazonaws.com"})
        );
        assert_eq!(
            crypto["Action"],
            json!(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"])
        );
        assert_eq!(
            crypto["Condition"]["ArnLike"]["aws:SourceArn"],
            json!(["arn:aws:aws-external-anthropic:*:123456789012:workspace/*"])
        );
        assert!(
            p.to_string().find("org_uuid").is_none(),
            "no organization condition on this platform"
        );
        assert_eq!(p["Statement"][2]["Action"], json!("kms:DescribeKey"));
        assert!(p["Statement"][2].get("Condition").is_none());
        // Another workspace's compartment is not admitted.
        assert_eq!(
            codes(&p, &f, C2),
            vec![FindingCode::ConditionMissesCompartment; 3]
        );
    }

    /// A key policy written from Anthropic's page — its statement ids, and
    /// `aws:SourceArn` on both service statements, as the page allows — and
    /// one this project wrote before (`…OnAws…`): each analyses clean and is
    /// merged into, never given a second grant.
    #[test]
    fn policies_written_from_the_docs_or_by_an_earlier_version_are_merged_not_duplicated() {
        let f = fixture();
        let mut from_docs = built(&f);
        from_docs["Statement"][1]["Sid"] = json!("AllowClaudePlatformOnAWSCrypto");
        from_docs["Statement"][2]["Sid"] = json!("AllowClaudePlatformOnAWSDescribe");
        from_docs["Statement"][2]["Condition"] = json!({"ArnLike": {"aws:SourceArn":
            ["arn:aws:aws-external-anthropic:*:123456789012:workspace/*"]}});
        let mut earlier = built(&f);
        earlier["Statement"][1]["Sid"] = json!("AllowClaudePlatformOnAwsCrypto");
        earlier["Statement"][2]["Sid"] = json!("AllowClaudePlatformOnAwsDescribe");
        for p in [from_docs, earlier] {
            assert_eq!(codes(&p, &f, C1), vec![], "{p}");
            let sources = [account_workspaces_pattern(&f.account)];
            let listed = [f.c1];
            let grant = OnAwsGrant {
                account: &f.account,
                compartments: Some(&listed),
                source_arns: &sources,
            };
            let c2: CompartmentId = C2.parse().unwrap_or_else(|e| panic!("{e}"));
            let merged = merge(
                &p.to_string(),
                &grant,
                c2,
                "arn:aws:aws-external-anthropic:us-east-2:123456789012:workspace/wrkspc_2",
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .map_or_else(|| p.clone(), |(v, _)| v);
            let count = merged["Statement"].as_array().map_or(0, Vec::len);
            assert_eq!(count, 3, "no second grant: {merged}");
            assert_eq!(
                merged["Statement"][1]["Condition"]["StringEquals"][COMPARTMENT_CONDITION_KEY],
                json!([C1, C2]),
                "{merged}"
            );
        }
        // What this project writes now is the documented spelling.
        assert_eq!(built(&f)["Statement"][1]["Sid"], "AllowClaudePlatformOnAWSCrypto");
    }

    #[test]
    fn a_missing_generate_data_key_or_a_foreign_source_arn_is_named() {
        let f = fixture();
        let mut p = built(&f);
        p["Statement"][1]["Action"] = json!(["kms:Encrypt", "kms:Decrypt"]);
        assert_eq!(codes(&p, &f, C1), vec![FindingCode::MissingServiceAction]);

        let mut p = built(&f);
        p["Statement"][1]["Condition"]["ArnLike"]["aws:SourceArn"] =
            json!("arn:aws:aws-external-anthropic:*:999999999999:workspace/*");
        assert_eq!(
            codes(&p, &f, C1),
            vec![FindingCode::SourceArnExcludesWorkspace; 3]
        );

        let mut p = built(&f);
        p["Statement"].as_array_mut().map(|s| s.remove(2));
        assert_eq!(codes(&p, &f, C1), vec![FindingCode::NoDescribeGrant]);

        // The Claude Platform role's policy grants the service nothing.
        let org = "11111111-2222-4333-8444-555555555555"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let role_policy = crate::policy::key_policy(
            &f.account,
            crate::geo::Geo::Us,
            &org,
            crate::policy::Scope::Organization,
        );
        assert_eq!(
            codes(&role_policy, &f, C1),
            vec![FindingCode::NoDescribeGrant, FindingCode::NoServiceGrant]
        );
    }

    #[test]
    fn warnings_for_the_zeros_and_an_unbound_grant() {
        let f = fixture();
        let mut p = built(&f);
        p["Statement"][1]["Condition"]["StringEquals"][COMPARTMENT_CONDITION_KEY] =
            json!([C1, "00000000-0000-0000-0000-000000000000"]);
        assert_eq!(codes(&p, &f, C1), vec![FindingCode::ValidationIdOnAws]);
        let mut p = built(&f);
        p["Statement"][1]["Condition"]
            .as_object_mut()
            .map(|c| c.remove("ArnLike"));
        assert_eq!(codes(&p, &f, C1), vec![FindingCode::NoSourceArnCondition]);
    }

    #[test]
    fn merge_adds_the_workspace_and_takes_nothing_away() {
        let f = fixture();
        let p = built(&f);
        let c2: CompartmentId = C2.parse().unwrap_or_else(|e| panic!("{e}"));
        let only = [c2];
        let pattern = [account_workspaces_pattern(&f.account)];
        let grant = OnAwsGrant {
            account: &f.account,
            compartments: Some(&only),
            source_arns: &pattern,
        };
        let (merged, changes) = merge(&p.to_string(), &grant, c2, &f.arn1)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a new compartment must change the policy"));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            merged["Statement"][1]["Condition"]["StringEquals"][COMPARTMENT_CONDITION_KEY],
            json!([C1, C2])
        );
        assert_eq!(codes(&merged, &f, C1), vec![]);
        assert_eq!(codes(&merged, &f, C2), vec![]);
        // Already admitted: nothing to do.
        assert!(
            merge(&merged.to_string(), &grant, c2, &f.arn1)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        // A policy without our statements gets them appended, the rest kept.
        let bare = json!({"Version": "2012-10-17", "Statement": [p["Statement"][0].clone()]});
        let (merged, _) = merge(&bare.to_string(), &grant, c2, &f.arn1)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("statements must be added"));
        assert_eq!(merged["Statement"].as_array().map(Vec::len), Some(3));
        assert_eq!(merged["Statement"][0], p["Statement"][0]);
    }
}
