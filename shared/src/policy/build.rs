//! Building the documented key policy, and merging a workspace (and the
//! current contract) into an existing one without taking anything away.

use serde_json::{Map, Value, json};

use super::document::{Actions, Effect, PolicyDocument, PolicyError};
use super::eval::{Request, decide, names_role};
use crate::geo::{
    COMPARTMENT_CONDITION_KEY, COMPARTMENT_CONTEXT_KEY, Geo, ORG_CONDITION_KEY, ORG_CONTEXT_KEY,
};
use crate::ids::{AccountId, CompartmentId, OrgUuid};

pub const ROOT_ADMIN_SID: &str = "AccountRootAdmin";
pub const CRYPTO_SID: &str = "AllowAnthropicCMEKCrypto";
pub const DESCRIBE_SID: &str = "AllowAnthropicCMEKDescribe";
/// The statement a key that already protects data needs once its crypto
/// grant requires the organization: Decrypt only, for every compartment the
/// key is or was attached to, so data written before the upgrade stays readable.
pub const EXISTING_DATA_SID: &str = "AllowAnthropicCMEKDecryptExistingData";

/// Which of the organization's workspaces may use a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The organization condition plus `StringEqualsIfExists` on the
    /// compartment, listing these workspaces (the default).
    Workspaces(&'a [CompartmentId]),
    /// The organization condition alone: any workspace of the organization.
    Organization,
}

/// The values a workspace-restricted crypto grant lists: each workspace's
/// compartment, then the all-zeros id, without duplicates.
///
/// Why the all-zeros id: Anthropic validates a key that is not attached to
/// any workspace yet (ours, at ValidateKey) with the all-zeros compartment id
/// — the documentation says so for keys whose compartment statement admits
/// it and does not say what else an unattached key would be sent. Listing it
/// passes validation whichever way that reads; it admits no data, because no
/// workspace has that compartment and the organization condition still binds.
pub fn compartment_values(compartments: &[CompartmentId]) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for c in compartments.iter().chain([&CompartmentId::VALIDATION]) {
        let s = c.to_string();
        if !values.contains(&s) {
            values.push(s);
        }
    }
    values
}

fn crypto_statement(geo: Geo, org: &OrgUuid, scope: Scope<'_>) -> Value {
    let mut condition = Map::new();
    condition.insert(
        "StringEquals".into(),
        json!({ORG_CONDITION_KEY: [org.to_string()]}),
    );
    if let Scope::Workspaces(compartments) = scope {
        condition.insert(
            "StringEqualsIfExists".into(),
            json!({COMPARTMENT_CONDITION_KEY: compartment_values(compartments)}),
        );
    }
    json!({
        "Sid": CRYPTO_SID,
        "Effect": "Allow",
        "Principal": {"AWS": geo.anthropic_role_arn()},
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": "*",
        "Condition": condition
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

fn existing_data_statement(geo: Geo, compartments: &[CompartmentId]) -> Value {
    let values: Vec<String> = compartments.iter().map(ToString::to_string).collect();
    json!({
        "Sid": EXISTING_DATA_SID,
        "Effect": "Allow",
        "Principal": {"AWS": geo.anthropic_role_arn()},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {COMPARTMENT_CONDITION_KEY: values}}
    })
}

/// The key policy of Anthropic's current documentation: root admin; Encrypt
/// and Decrypt for Anthropic's role bound to the organization (and, with
/// [`Scope::Workspaces`], to those workspaces); DescribeKey on its own.
/// Anthropic's principal comes from `geo` alone.
pub fn key_policy(account: &AccountId, geo: Geo, org: &OrgUuid, scope: Scope<'_>) -> Value {
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
            crypto_statement(geo, org, scope),
            describe_statement(geo)
        ]
    })
}

/// What a merge must achieve.
#[derive(Debug, Clone, Copy)]
pub struct Merge<'a> {
    pub geo: Geo,
    /// The organization the key must be bound to (added to a list that may
    /// already name others: several organizations may share a key).
    pub org: &'a OrgUuid,
    /// The workspace being given the key.
    pub compartment: CompartmentId,
    /// Whether a crypto grant this merge has to write restricts workspaces.
    /// An existing workspace list is always kept and extended, never dropped.
    pub restrict_to_workspaces: bool,
    /// Every compartment whose workspace the key is or was attached to (from
    /// the Admin API and the workflow table): their data must stay readable.
    pub protected: &'a [CompartmentId],
}

/// What [`merge`] did to a policy.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeOutcome {
    /// The policy already is what the merge asks; nothing to write.
    Unchanged,
    /// The new policy to put, and what changed (for the audit trail). No
    /// statement or value is removed except a compartment list moved from
    /// `StringEquals` to `StringEqualsIfExists`, and no protected workspace
    /// loses an Encrypt or Decrypt it had: [`merge`] checks that itself.
    Updated { policy: Value, changes: Vec<String> },
}

/// Bring a key policy to the current contract for one more workspace:
/// the organization condition on Anthropic's crypto grant (upgrading a
/// July/August-2026 `StringEquals` compartment list to `StringEqualsIfExists`),
/// the workspace's compartment where the grant lists workspaces, the describe
/// statement, and — when the key already protects data — the existing-data
/// statement listing every protected compartment. Every other statement and
/// value is kept.
///
/// The result is checked before it is returned: if any protected workspace
/// could decrypt (with or without the organization in the context) or encrypt
/// (with it) under the old policy and could not under the new one, the merge
/// fails with [`PolicyError::WouldDropAccess`] and nothing is to be written.
pub fn merge(policy_json: &str, m: &Merge<'_>) -> Result<MergeOutcome, PolicyError> {
    let mut value: Value =
        serde_json::from_str(policy_json).map_err(|e| PolicyError::NotJson(e.to_string()))?;
    let before = PolicyDocument::from_value(&value)?;
    let role = m.geo.anthropic_role_arn();
    let crypto: Vec<usize> = before
        .statements
        .iter()
        .filter(|s| {
            s.effect == Effect::Allow
                && names_role(s, role)
                && matches!(s.actions, Actions::Only(_))
                && s.covers_action("kms:Encrypt")
                && s.covers_action("kms:Decrypt")
                && s.sid.as_deref() != Some(EXISTING_DATA_SID)
        })
        .map(|s| s.index)
        .collect();
    let has_describe = before.statements.iter().any(|s| {
        s.effect == Effect::Allow
            && names_role(s, role)
            && s.covers_action("kms:DescribeKey")
            && s.conditions.is_empty()
    });
    let existing_data = before
        .statements
        .iter()
        .find(|s| s.sid.as_deref() == Some(EXISTING_DATA_SID) && s.effect == Effect::Allow)
        .map(|s| s.index);

    let mut changes = Vec::new();
    let statements = statements_mut(&mut value)?;
    if crypto.is_empty() {
        let all = [m.compartment];
        let scope = if m.restrict_to_workspaces {
            Scope::Workspaces(&all)
        } else {
            Scope::Organization
        };
        statements.push(crypto_statement(m.geo, m.org, scope));
        changes.push(format!("added {CRYPTO_SID}"));
    }
    for i in crypto {
        let statement = &mut statements[i];
        let label = statement
            .get("Sid")
            .and_then(Value::as_str)
            .map(|s| format!("statement {s:?}"))
            .unwrap_or_else(|| format!("statement #{}", i + 1));
        let cond = condition_mut(statement)?;
        if add_org(cond, m.org) {
            changes.push(format!("{label}: requires organization {}", m.org));
        }
        if upgrade_compartment_condition(cond) {
            changes.push(format!(
                "{label}: compartment list moved from StringEquals to StringEqualsIfExists (current contract)"
            ));
        }
        // A grant without a compartment condition already admits every
        // workspace of the organization: adding one would cut the others off.
        if add_compartment(cond, m.compartment) {
            changes.push(format!("{label}: admits compartment {}", m.compartment));
        }
    }
    if !has_describe {
        statements.push(describe_statement(m.geo));
        changes.push(format!("added {DESCRIBE_SID}"));
    }
    if !m.protected.is_empty() {
        match existing_data {
            None => {
                statements.push(existing_data_statement(m.geo, m.protected));
                changes.push(format!(
                    "added {EXISTING_DATA_SID} for {}",
                    m.protected
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Some(i) => {
                // Extend its compartment list; a statement without one already
                // admits every compartment, and adding one would narrow it.
                if let Some(values) = statements[i]
                    .get_mut("Condition")
                    .and_then(Value::as_object_mut)
                    .and_then(|cond| find_values(cond, COMPARTMENT_CONDITION_KEY))
                {
                    for c in m.protected {
                        if push_values(values, &[c.to_string()]) {
                            changes.push(format!("{EXISTING_DATA_SID}: added {c}"));
                        }
                    }
                }
            }
        }
    }
    if changes.is_empty() {
        return Ok(MergeOutcome::Unchanged);
    }
    let after = PolicyDocument::from_value(&value)?;
    keeps_access(&before, &after, m)?;
    Ok(MergeOutcome::Updated {
        policy: value,
        changes,
    })
}

/// The guard [`merge`] applies to its own result: no protected workspace
/// loses access it had. The requests are the ones that matter for data:
/// Decrypt of data written before the organization condition (context with
/// the compartment only), and Encrypt/Decrypt of live traffic (organization
/// and compartment).
fn keeps_access(before: &PolicyDocument, after: &PolicyDocument, m: &Merge<'_>) -> Result<(), PolicyError> {
    let role = m.geo.anthropic_role_arn();
    let org = m.org.to_string();
    for c in m.protected {
        let c = c.to_string();
        let old_data = [(COMPARTMENT_CONTEXT_KEY, c.as_str())];
        let live = [
            (ORG_CONTEXT_KEY, org.as_str()),
            (COMPARTMENT_CONTEXT_KEY, c.as_str()),
        ];
        for (action, context) in [
            ("kms:Decrypt", &old_data[..]),
            ("kms:Decrypt", &live[..]),
            ("kms:Encrypt", &live[..]),
        ] {
            let req = Request { action, context };
            let (was, is) = (decide(before, role, &req), decide(after, role, &req));
            if is < was {
                return Err(PolicyError::WouldDropAccess(format!(
                    "the rewritten policy would stop {action} for compartment {c} (context {}); nothing was written",
                    context.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    Ok(())
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

fn condition_mut(statement: &mut Value) -> Result<&mut Map<String, Value>, PolicyError> {
    let obj = statement
        .as_object_mut()
        .ok_or_else(|| PolicyError::Malformed("a statement must be an object".into()))?;
    obj.entry("Condition")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| PolicyError::Malformed("\"Condition\" must be an object".into()))
}

/// Positive operators only: a `…Not…` or `Null` block is never extended.
fn is_positive(operator: &str) -> bool {
    !operator.contains("Not") && !operator.starts_with("Null")
}

/// The values of `key` in the first positive block that has it, if any.
fn find_values<'c>(cond: &'c mut Map<String, Value>, key: &str) -> Option<&'c mut Value> {
    cond.iter_mut()
        .filter(|(op, _)| is_positive(op))
        .filter_map(|(_, block)| block.as_object_mut())
        .find_map(|block| {
            block
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
}

/// Require `org` (added to an existing organization list, or as a new
/// `StringEquals`). True if something changed.
fn add_org(cond: &mut Map<String, Value>, org: &OrgUuid) -> bool {
    if let Some(values) = find_values(cond, ORG_CONDITION_KEY) {
        return push_values(values, &[org.to_string()]);
    }
    let block = cond
        .entry("StringEquals")
        .or_insert_with(|| Value::Object(Map::new()));
    match block.as_object_mut() {
        Some(b) => {
            b.insert(ORG_CONDITION_KEY.into(), json!([org.to_string()]));
            true
        }
        None => false,
    }
}

/// Move a `StringEquals` compartment list (the July/August 2026 form) to
/// `StringEqualsIfExists`, merging with any list already there.
fn upgrade_compartment_condition(cond: &mut Map<String, Value>) -> bool {
    let Some(block) = cond.get_mut("StringEquals").and_then(Value::as_object_mut) else {
        return false;
    };
    let Some(key) = block
        .keys()
        .find(|k| k.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY))
        .cloned()
    else {
        return false;
    };
    let moved = block.remove(&key).unwrap_or(Value::Null);
    if block.is_empty() {
        cond.remove("StringEquals");
    }
    let values: Vec<String> = match moved {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => vec![s],
        _ => Vec::new(),
    };
    match compartment_values_mut(cond, &["StringEqualsIfExists"]) {
        Some(list) => {
            push_values(list, &values);
        }
        // An IfExists block that is not an object: put the list back where it was.
        None => {
            cond.insert("StringEquals".into(), json!({key: values}));
            return false;
        }
    }
    true
}

/// Admit `compartment` (and the all-zeros id) where the grant lists
/// compartments. True if something changed.
fn add_compartment(cond: &mut Map<String, Value>, compartment: CompartmentId) -> bool {
    match find_values(cond, COMPARTMENT_CONDITION_KEY) {
        Some(values) => push_values(values, &compartment_values(&[compartment])),
        None => false,
    }
}

/// The compartment list under the first of `operators` present, created
/// under the first one if none has it. `None` if the condition block under
/// that operator is not an object (a malformed policy the merge leaves alone).
fn compartment_values_mut<'c>(cond: &'c mut Map<String, Value>, operators: &[&str]) -> Option<&'c mut Value> {
    let op = operators
        .iter()
        .find(|op| {
            cond.get(**op).and_then(Value::as_object).is_some_and(|b| {
                b.keys()
                    .any(|k| k.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY))
            })
        })
        .or(operators.first())?;
    let block = cond
        .entry(op.to_string())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    let key = block
        .keys()
        .find(|k| k.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY))
        .cloned()
        .unwrap_or_else(|| COMPARTMENT_CONDITION_KEY.to_owned());
    Some(block.entry(key).or_insert_with(|| json!([])))
}

fn push_values(values: &mut Value, wanted: &[String]) -> bool {
    let mut list: Vec<Value> = match values.take() {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
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
