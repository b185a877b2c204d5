//! Building the documented key policy, and adding a workspace to an existing one.

use serde_json::{Value, json};

use super::document::{Actions, Effect, PolicyDocument, PolicyError, Principals};
use crate::geo::{COMPARTMENT_CONDITION_KEY, Geo};
use crate::ids::{AccountId, CompartmentId};

pub const ROOT_ADMIN_SID: &str = "AccountRootAdmin";
pub const CRYPTO_SID: &str = "AllowAnthropicCMEKCrypto";
pub const DESCRIBE_SID: &str = "AllowAnthropicCMEKDescribe";

/// The values the encryption-context condition must list: the all-zeros id
/// (what validation sends under the mid-2026 documentation) first, then each
/// workspace's compartment id (what validation sends under the older
/// documentation, and what live traffic always sends), without duplicates.
pub fn condition_values(compartments: &[CompartmentId]) -> Vec<String> {
    let mut values = vec![CompartmentId::VALIDATION.to_string()];
    for c in compartments {
        let s = c.to_string();
        if !values.contains(&s) {
            values.push(s);
        }
    }
    values
}

fn crypto_statement(geo: Geo, values: Vec<String>) -> Value {
    json!({
        "Sid": CRYPTO_SID,
        "Effect": "Allow",
        "Principal": {"AWS": geo.anthropic_role_arn()},
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {"StringEquals": {COMPARTMENT_CONDITION_KEY: values}}
    })
}

fn describe_statement(geo: Geo) -> Value {
    json!({
        "Sid": DESCRIBE_SID,
        "Effect": "Allow",
        "Principal": {"AWS": geo.anthropic_role_arn()},
        "Action": "kms:DescribeKey",
        "Resource": "*"
    })
}

/// The three-statement key policy of Anthropic's documentation, for the key's
/// own account and the workspaces whose compartments may use it. Anthropic's
/// principal comes from `geo` alone.
pub fn key_policy(account: &AccountId, geo: Geo, compartments: &[CompartmentId]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": ROOT_ADMIN_SID,
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": "kms:*",
                "Resource": "*"
            },
            crypto_statement(geo, condition_values(compartments)),
            describe_statement(geo)
        ]
    })
}

/// What [`add_compartment`] did to a policy.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeOutcome {
    /// The policy already lets the compartment through; nothing to write.
    Unchanged { reason: &'static str },
    /// The new policy to put; every existing statement and value is kept.
    Updated(Value),
}

/// Let `compartment` use a key whose policy is `policy_json`, keeping every
/// other statement and compartment. Anthropic's grants are found by the
/// published role of `geo`; if there are none, the documented statements are
/// appended. A grant without an encryption-context condition already covers
/// every compartment and is left alone: adding a condition there would cut off
/// the workspaces already using the key.
pub fn add_compartment(
    policy_json: &str,
    geo: Geo,
    compartment: CompartmentId,
) -> Result<MergeOutcome, PolicyError> {
    let mut value: Value =
        serde_json::from_str(policy_json).map_err(|e| PolicyError::NotJson(e.to_string()))?;
    let doc = PolicyDocument::from_value(&value)?;
    let role = geo.anthropic_role_arn();
    let names_role = |p: &Principals| match p {
        Principals::Only(entries) => entries.iter().any(|e| e.kind == "AWS" && e.value == role),
        Principals::AllExcept(_) => false,
    };
    let crypto: Vec<usize> = doc
        .statements
        .iter()
        .filter(|s| {
            s.effect == Effect::Allow
                && names_role(&s.principals)
                && matches!(s.actions, Actions::Only(_))
                && s.covers_action("kms:Encrypt")
                && s.covers_action("kms:Decrypt")
        })
        .map(|s| s.index)
        .collect();
    let has_describe = doc.statements.iter().any(|s| {
        s.effect == Effect::Allow
            && names_role(&s.principals)
            && s.covers_action("kms:DescribeKey")
            && !s
                .conditions
                .iter()
                .any(|c| c.key.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY))
    });

    let statements = statements_mut(&mut value)?;
    let mut changed = false;
    if crypto.is_empty() {
        statements.push(crypto_statement(geo, condition_values(&[compartment])));
        changed = true;
    } else {
        for i in crypto {
            // An unconditioned grant already covers the compartment: see the doc comment.
            if let ConditionEdit::Added = add_to_condition(&mut statements[i], compartment) {
                changed = true;
            }
        }
    }
    if !has_describe {
        statements.push(describe_statement(geo));
        changed = true;
    }
    Ok(if changed {
        MergeOutcome::Updated(value)
    } else {
        MergeOutcome::Unchanged {
            reason: "the policy already grants Anthropic's role this compartment",
        }
    })
}

enum ConditionEdit {
    NoCondition,
    AlreadyListed,
    Added,
}

fn statements_mut(value: &mut Value) -> Result<&mut Vec<Value>, PolicyError> {
    let obj = value
        .as_object_mut()
        .ok_or_else(|| PolicyError::Malformed("the policy must be a JSON object".into()))?;
    let stmt = obj
        .get_mut("Statement")
        .ok_or_else(|| PolicyError::Malformed("the policy has no \"Statement\"".into()))?;
    if stmt.is_object() {
        // A single statement object must become a list before we can append.
        let single = stmt.take();
        *stmt = Value::Array(vec![single]);
    }
    stmt.as_array_mut()
        .ok_or_else(|| PolicyError::Malformed("\"Statement\" must be a list".into()))
}

/// Add the compartment (and the all-zeros id) to every compartment condition
/// of one statement, turning a single string value into a list.
fn add_to_condition(statement: &mut Value, compartment: CompartmentId) -> ConditionEdit {
    let Some(cond) = statement.get_mut("Condition").and_then(Value::as_object_mut) else {
        return ConditionEdit::NoCondition;
    };
    let mut found = false;
    let mut added = false;
    for (operator, block) in cond.iter_mut() {
        let Some(block) = block.as_object_mut() else {
            continue;
        };
        let negated = operator.contains("Not");
        for (key, values) in block.iter_mut() {
            if !key.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY) || negated {
                continue;
            }
            found = true;
            added |= push_values(values, &condition_values(&[compartment]));
        }
    }
    match (found, added) {
        (false, _) => ConditionEdit::NoCondition,
        (true, false) => ConditionEdit::AlreadyListed,
        (true, true) => ConditionEdit::Added,
    }
}

fn push_values(values: &mut Value, wanted: &[String]) -> bool {
    let mut list: Vec<Value> = match values.take() {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut added = false;
    for w in wanted {
        if !list.iter().any(|v| v.as_str() == Some(w.as_str())) {
            list.push(Value::String(w.clone()));
            added = true;
        }
    }
    *values = Value::Array(list);
    added
}

/// The policy as KMS wants it: compact JSON.
pub fn to_policy_string(policy: &Value) -> String {
    policy.to_string()
}
