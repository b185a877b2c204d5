//! IAM policy evaluation for the IAM coverage test and the local stack's
//! stand-in for IAM's policy simulator: the roles exactly as `sam deploy`
//! would create them (the SAM translator's output, intrinsics resolved with
//! a local stack's bindings), resource policies (bus and key policies), and a
//! strict evaluator of the policy grammar they use.
//!
//! Written apart from the production key-policy analysis in `cmek::policy`
//! on purpose: a check must not share the code it checks.
//!
//! Semantics (IAM User Guide, "Policy evaluation logic" and "Condition
//! operators"): an explicit Deny wins; otherwise an Allow is needed; actions
//! match case-insensitively with `*`/`?`; resources match with `*`/`?`; a
//! condition key absent from the request makes a condition false, except
//! with `…IfExists` (true) and `Null`. An operator or element this module
//! does not know is an error, never a silent allow.

use std::collections::{BTreeMap, HashMap};

use crate::iam_request::Authorization;
use crate::template::Bindings;
use anyhow::{Context, anyhow, bail};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One condition: `operator` (`StringEquals`, `ForAnyValue:StringLike`,
/// `BoolIfExists`…) on `key` with `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

/// A statement, resolved, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `<policy name>/<Sid or index>`.
    pub origin: String,
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub conditions: Vec<Condition>,
    /// A resource policy's `Principal`: `*`, AWS principals (ARNs, or an
    /// account as `arn:aws:iam::<account>:root`) and `service:<name>`.
    /// Empty in identity policies.
    pub principals: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Role {
    pub statements: Vec<Statement>,
    /// AWS managed policies attached by SAM (logs, X-Ray): used by the
    /// Lambda service itself, not by the functions' SDK calls.
    pub aws_managed: Vec<String>,
}

/// The outcome for one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by these statements (by origin).
    Allowed(Vec<String>),
    /// Denied explicitly by this statement.
    Denied(String),
    /// No statement allows it.
    NotAllowed,
}

impl Role {
    pub fn decide(&self, a: &Authorization) -> anyhow::Result<Decision> {
        decide_among(self.statements.iter(), a)
    }
}

/// `*` and `?` wildcards; case-sensitive (resources, condition values).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    go(&p, &t)
}

/// Actions match case-insensitively.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

fn conditions_hold(
    conditions: &[Condition],
    context: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<bool> {
    for c in conditions {
        if !condition_holds(c, context)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn condition_holds(c: &Condition, context: &BTreeMap<String, Vec<String>>) -> anyhow::Result<bool> {
    let (set, op) = match c.operator.split_once(':') {
        Some((set, op)) => (Some(set), op),
        None => (None, c.operator.as_str()),
    };
    // Condition keys are case-insensitive.
    let present = context
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&c.key))
        .map(|(_, v)| v.as_slice());
    if op == "Null" {
        let want_absent = match c.values.as_slice() {
            [v] if v == "true" => true,
            [v] if v == "false" => false,
            _ => bail!("Null takes \"true\" or \"false\""),
        };
        return Ok(present.is_none() == want_absent);
    }
    let (op, if_exists) = match op.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (op, false),
    };
    // The negated operators: true when the key is absent, or when no value
    // matches any pattern (IAM User Guide, "Condition operators").
    if let Some(positive) = match op {
        "StringNotEquals" => Some("StringEquals"),
        "StringNotLike" => Some("StringLike"),
        "ArnNotEquals" => Some("ArnEquals"),
        "ArnNotLike" => Some("ArnLike"),
        _ => None,
    } {
        if set.is_some() {
            bail!("set operators on {op} are not supported by the coverage test");
        }
        let Some(values) = present else {
            return Ok(true);
        };
        let matcher: fn(&str, &str) -> bool = if positive.ends_with("Like") {
            wildcard
        } else {
            |p, v| p == v
        };
        return Ok(!values.iter().any(|v| c.values.iter().any(|p| matcher(p, v))));
    }
    let matches_one: fn(&str, &str) -> bool = match op {
        "StringEquals" | "ArnEquals" => |p, v| p == v,
        "StringLike" | "ArnLike" => wildcard,
        "Bool" => |p, v| p.eq_ignore_ascii_case(v),
        other => bail!("condition operator {other} is not supported by the coverage test: add it"),
    };
    let Some(values) = present else {
        return Ok(if_exists);
    };
    let any = |v: &String| c.values.iter().any(|p| matches_one(p, v));
    Ok(match set {
        // A single-valued key: one value, and it must match.
        None => values.len() == 1 && any(&values[0]),
        Some("ForAnyValue") => values.iter().any(any),
        Some("ForAllValues") => values.iter().all(any),
        Some(other) => bail!("set operator {other} is not supported"),
    })
}

/// Resolves the SAM translator's long-form intrinsics with a stack's
/// bindings; a logical id the stack did not bind resolves to a placeholder
/// that no recorded call can name.
#[derive(Debug)]
pub struct Resolver<'a> {
    pub bindings: &'a Bindings,
    pub conditions: &'a serde_json::Map<String, Value>,
}

impl Resolver<'_> {
    pub fn string(&self, v: &Value) -> anyhow::Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Object(m) if m.len() == 1 => {
                let (name, arg) = m.iter().next().unwrap_or_else(|| unreachable!());
                match name.as_str() {
                    "Ref" => Ok(self.reference(arg.as_str().ok_or_else(|| anyhow!("Ref needs a name"))?)),
                    "Fn::GetAtt" => {
                        let key = match arg {
                            Value::Array(parts) => parts
                                .iter()
                                .map(|p| p.as_str().unwrap_or_default())
                                .collect::<Vec<_>>()
                                .join("."),
                            Value::String(s) => s.clone(),
                            _ => bail!("GetAtt needs [resource, attribute]"),
                        };
                        Ok(self.attribute(&key))
                    }
                    "Fn::Sub" => {
                        let (text, vars) = match arg {
                            Value::String(s) => (s.clone(), serde_json::Map::new()),
                            Value::Array(parts) => (
                                parts
                                    .first()
                                    .and_then(Value::as_str)
                                    .ok_or_else(|| anyhow!("Sub needs a string"))?
                                    .to_owned(),
                                parts
                                    .get(1)
                                    .and_then(Value::as_object)
                                    .cloned()
                                    .unwrap_or_default(),
                            ),
                            _ => bail!("Sub needs a string or [string, variables]"),
                        };
                        self.sub(&text, &vars)
                    }
                    "Fn::If" => {
                        let parts = arg.as_array().ok_or_else(|| anyhow!("If needs a list"))?;
                        let [cond, then, otherwise] = parts.as_slice() else {
                            bail!("If needs three items")
                        };
                        let name = cond
                            .as_str()
                            .ok_or_else(|| anyhow!("If needs a condition name"))?;
                        if self.condition(name)? {
                            self.string(then)
                        } else {
                            self.string(otherwise)
                        }
                    }
                    "Fn::Join" => {
                        let parts = arg.as_array().ok_or_else(|| anyhow!("Join needs a list"))?;
                        let sep = parts.first().and_then(Value::as_str).unwrap_or_default();
                        let items = parts
                            .get(1)
                            .and_then(Value::as_array)
                            .ok_or_else(|| anyhow!("Join needs items"))?;
                        Ok(items
                            .iter()
                            .map(|i| self.string(i))
                            .collect::<anyhow::Result<Vec<_>>>()?
                            .join(sep))
                    }
                    other => bail!("intrinsic {other} is not supported by the coverage test"),
                }
            }
            other => bail!("cannot resolve {other} to a string"),
        }
    }

    /// Strings or lists of strings (an `Action`, a `Resource`).
    pub fn strings(&self, v: &Value) -> anyhow::Result<Vec<String>> {
        if let Some(Value::Array(parts)) = v.get("Fn::Split") {
            let [sep, text] = parts.as_slice() else {
                bail!("Split needs [delimiter, string]")
            };
            let sep = sep.as_str().ok_or_else(|| anyhow!("Split needs a delimiter"))?;
            return Ok(self.string(text)?.split(sep).map(str::to_owned).collect());
        }
        if v.get("Fn::If").is_some() {
            return match self.item(v)? {
                Some(chosen) => self.strings(&chosen),
                None => Ok(Vec::new()),
            };
        }
        match v {
            Value::Array(items) => items.iter().map(|i| self.string(i)).collect(),
            other => Ok(vec![self.string(other)?]),
        }
    }

    fn reference(&self, id: &str) -> String {
        self.bindings
            .parameters
            .get(id)
            .or_else(|| self.bindings.refs.get(id))
            .cloned()
            .unwrap_or_else(|| format!("<unbound {id}>"))
    }

    fn attribute(&self, key: &str) -> String {
        self.bindings
            .attrs
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("<unbound {key}>"))
    }

    fn sub(&self, text: &str, vars: &serde_json::Map<String, Value>) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| anyhow!("unclosed ${{ in Sub"))?
                + start;
            let name = &rest[start + 2..end];
            let value = match vars.get(name) {
                Some(v) => self.string(v)?,
                None if name.contains('.') => self.attribute(name),
                None => self.reference(name),
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Whether a template condition holds in this stack.
    pub fn condition(&self, name: &str) -> anyhow::Result<bool> {
        let expr = self
            .conditions
            .get(name)
            .ok_or_else(|| anyhow!("unknown condition {name}"))?;
        self.truth(expr)
    }

    fn truth(&self, v: &Value) -> anyhow::Result<bool> {
        let m = v
            .as_object()
            .filter(|m| m.len() == 1)
            .ok_or_else(|| anyhow!("a condition is one intrinsic"))?;
        let (name, arg) = m.iter().next().unwrap_or_else(|| unreachable!());
        let items = || arg.as_array().cloned().unwrap_or_default();
        match name.as_str() {
            "Fn::Equals" => {
                let [a, b] = items()
                    .try_into()
                    .map_err(|_| anyhow!("Equals needs two items"))?;
                Ok(self.string(&a)? == self.string(&b)?)
            }
            "Fn::Not" => Ok(!self.truth(items().first().ok_or_else(|| anyhow!("Not needs one item"))?)?),
            "Fn::Or" => Ok(items()
                .iter()
                .map(|i| self.truth(i))
                .collect::<anyhow::Result<Vec<_>>>()?
                .into_iter()
                .any(|b| b)),
            "Fn::And" => Ok(items()
                .iter()
                .map(|i| self.truth(i))
                .collect::<anyhow::Result<Vec<_>>>()?
                .into_iter()
                .all(|b| b)),
            "Condition" => self.condition(arg.as_str().unwrap_or_default()),
            other => bail!("condition function {other} is not supported"),
        }
    }
}

impl Resolver<'_> {
    /// A whole value as CloudFormation would deploy it (a policy document,
    /// a key policy): every intrinsic resolved, `Fn::If` branches chosen,
    /// `AWS::NoValue` items and members dropped.
    pub fn value(&self, v: &Value) -> anyhow::Result<Value> {
        Ok(match v {
            Value::Object(m) if m.len() == 1 && m.keys().all(|k| k == "Ref" || k.starts_with("Fn::")) => {
                if m.contains_key("Fn::If") {
                    return match self.item(v)? {
                        Some(chosen) => self.value(&chosen),
                        None => Ok(Value::Null),
                    };
                }
                if m.contains_key("Fn::Split") {
                    return Ok(Value::from(self.strings(v)?));
                }
                Value::String(self.string(v)?)
            }
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, inner) in m {
                    if self.item(inner)?.is_none() {
                        continue;
                    }
                    out.insert(k.clone(), self.value(inner)?);
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                for i in items {
                    if let Some(kept) = self.item(i)? {
                        out.push(self.value(&kept)?);
                    }
                }
                Value::Array(out)
            }
            other => other.clone(),
        })
    }

    /// A list item as CloudFormation keeps it: an `Fn::If` becomes the
    /// branch its condition selects, and `AWS::NoValue` removes the item.
    pub fn item(&self, v: &Value) -> anyhow::Result<Option<Value>> {
        if v.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") {
            return Ok(None);
        }
        match v.get("Fn::If").and_then(Value::as_array).map(Vec::as_slice) {
            Some([cond, then, otherwise]) => {
                let name = cond
                    .as_str()
                    .ok_or_else(|| anyhow!("If needs a condition name"))?;
                self.item(if self.condition(name)? { then } else { otherwise })
            }
            Some(_) => bail!("If needs three items"),
            None => Ok(Some(v.clone())),
        }
    }
}

/// The statements of one policy document.
pub fn statements(doc: &Value, policy: &str, r: &Resolver<'_>) -> anyhow::Result<Vec<Statement>> {
    let Some(listed) = cmek::policy::statement_items(&doc["Statement"]) else {
        bail!("{policy}: no Statement");
    };
    let mut list = Vec::new();
    for item in listed {
        list.extend(r.item(item)?);
    }
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let sid = s["Sid"].as_str().map_or_else(|| i.to_string(), str::to_owned);
        let origin = format!("{policy}/{sid}");
        for unsupported in ["NotAction", "NotResource", "NotPrincipal"] {
            if s.get(unsupported).is_some() {
                bail!("{origin}: {unsupported} is not supported by the coverage test");
            }
        }
        let effect = match s["Effect"].as_str() {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => bail!("{origin}: Effect must be Allow or Deny"),
        };
        let mut conditions = Vec::new();
        for (operator, keys) in s
            .get("Condition")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            for (key, values) in keys
                .as_object()
                .ok_or_else(|| anyhow!("{origin}: bad Condition"))?
            {
                conditions.push(Condition {
                    operator: operator.clone(),
                    key: key.clone(),
                    values: r.strings(values).with_context(|| origin.clone())?,
                });
            }
        }
        let principals = match &s["Principal"] {
            Value::Null => Vec::new(),
            Value::String(star) if star == "*" => vec!["*".to_owned()],
            Value::Object(kinds) => {
                let mut out = Vec::new();
                for (kind, who) in kinds {
                    for p in r.strings(who).with_context(|| origin.clone())? {
                        out.push(match kind.as_str() {
                            "AWS" if p == "*" => "*".to_owned(),
                            // A bare account id is the account (its root).
                            "AWS" if p.len() == 12 && p.chars().all(|c| c.is_ascii_digit()) => {
                                format!("arn:aws:iam::{p}:root")
                            }
                            "AWS" => p,
                            "Service" => format!("service:{p}"),
                            other => bail!("{origin}: principal kind {other} is not supported"),
                        });
                    }
                }
                out
            }
            other => bail!("{origin}: unreadable Principal {other}"),
        };
        out.push(Statement {
            effect,
            actions: r.strings(&s["Action"]).with_context(|| origin.clone())?,
            resources: r.strings(&s["Resource"]).with_context(|| origin.clone())?,
            conditions,
            principals,
            origin,
        });
    }
    Ok(out)
}

/// Every IAM role of the translated template, by logical id, with its
/// inline policies and the template's own managed policies resolved.
pub fn roles(translated: &Value, bindings: &Bindings) -> anyhow::Result<HashMap<String, Role>> {
    let resources = translated["Resources"]
        .as_object()
        .ok_or_else(|| anyhow!("no Resources"))?;
    let empty = serde_json::Map::new();
    let r = Resolver {
        bindings,
        conditions: translated["Conditions"].as_object().unwrap_or(&empty),
    };
    let mut out = HashMap::new();
    for (id, res) in resources {
        if res["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let props = &res["Properties"];
        let mut role = Role::default();
        for p in props["Policies"].as_array().into_iter().flatten() {
            let name = p["PolicyName"].as_str().unwrap_or("inline");
            role.statements
                .extend(statements(&p["PolicyDocument"], name, &r)?);
        }
        for listed in props["ManagedPolicyArns"].as_array().into_iter().flatten() {
            let Some(m) = r.item(listed)? else {
                continue;
            };
            let m = &m;
            match m.get("Ref").and_then(Value::as_str) {
                Some(policy) => {
                    let doc = &resources
                        .get(policy)
                        .ok_or_else(|| anyhow!("{id}: managed policy {policy} is not in the template"))?["Properties"]
                        ["PolicyDocument"];
                    role.statements.extend(statements(doc, policy, &r)?);
                }
                None => role.aws_managed.push(r.string(m)?),
            }
        }
        out.insert(id.clone(), role);
    }
    Ok(out)
}

/// A resource's own policy in the translated template (an event bus
/// policy, a key policy, a topic or queue policy), resolved.
pub fn resource_policy(translated: &Value, bindings: &Bindings, id: &str) -> anyhow::Result<Vec<Statement>> {
    let empty = serde_json::Map::new();
    let r = Resolver {
        bindings,
        conditions: translated["Conditions"].as_object().unwrap_or(&empty),
    };
    let res = &translated["Resources"][id];
    let props = &res["Properties"];
    let doc = match res["Type"].as_str() {
        Some("AWS::Events::EventBusPolicy") => serde_json::json!({"Statement": props["Statement"]}),
        Some("AWS::KMS::Key") => props["KeyPolicy"].clone(),
        Some("AWS::SNS::TopicPolicy" | "AWS::SQS::QueuePolicy") => props["PolicyDocument"].clone(),
        other => bail!("{id}: {other:?} has no resource policy this module reads"),
    };
    statements(&doc, id, &r)
}

/// A principal's request under a resource policy of its own account: an
/// explicit Deny there applies whatever the principal's IAM policies say
/// (IAM User Guide, "Policy evaluation logic": an explicit deny in any
/// applicable policy wins); an Allow naming the principal grants the request
/// as the identity policy would.
pub fn decide_resource_policy(
    statements: &[Statement],
    principal: &str,
    a: &Authorization,
) -> anyhow::Result<Decision> {
    let naming = statements
        .iter()
        .filter(|s| s.principals.iter().any(|p| p == "*" || p == principal));
    decide_among(naming, a)
}

/// The decision of these statements on a request: an explicit Deny that
/// matches wins, else the matching Allows, else not allowed.
fn decide_among<'s>(
    statements: impl Iterator<Item = &'s Statement>,
    a: &Authorization,
) -> anyhow::Result<Decision> {
    let mut allowed = Vec::new();
    for s in statements {
        if !s.actions.iter().any(|p| action_matches(p, &a.action))
            || !s.resources.iter().any(|p| wildcard(p, &a.resource))
        {
            continue;
        }
        if !conditions_hold(&s.conditions, &a.context).with_context(|| s.origin.clone())? {
            continue;
        }
        match s.effect {
            Effect::Deny => return Ok(Decision::Denied(s.origin.clone())),
            Effect::Allow => allowed.push(s.origin.clone()),
        }
    }
    Ok(if allowed.is_empty() {
        Decision::NotAllowed
    } else {
        Decision::Allowed(allowed)
    })
}

/// A KMS request on a key: KMS reads the key policy first ("Key policies in
/// AWS KMS": no principal has access to a key unless the key policy allows
/// it, directly or by letting the account's IAM policies grant it through the
/// account principal `arn:aws:iam::<account>:root`). So: an explicit Deny in
/// either policy wins; an Allow naming the principal grants directly; an
/// Allow naming the account delegates to the role's own policies. Allowed
/// origins are the key policy's (`key policy/<sid>`) and, where delegated,
/// the role's.
pub fn decide_kms(
    role: &Role,
    key_policy: &str,
    principal: &str,
    a: &Authorization,
) -> anyhow::Result<Decision> {
    let mut doc: Value = serde_json::from_str(key_policy).context("the key policy is not JSON")?;
    let account = principal.split(':').nth(4).unwrap_or_default();
    let root = format!("arn:aws:iam::{account}:root");
    // Only statements that name this principal, its account or everyone can
    // decide (the rest, Anthropic's grants and the tests' odd ones, are not
    // read); a NotPrincipal statement is outside this model and skipped.
    if let Some(list) = doc["Statement"].as_array_mut() {
        list.retain(|s| {
            let p = &s["Principal"];
            let named = |v: &Value| match v {
                Value::String(x) => x == "*" || x == principal || x == &root || x == account,
                Value::Array(xs) => xs
                    .iter()
                    .any(|x| x == "*" || x == principal || x == &root || x == account),
                _ => false,
            };
            s.get("NotPrincipal").is_none() && (p == "*" || named(&p["AWS"]))
        });
    }
    let bindings = Bindings::default();
    let empty = serde_json::Map::new();
    let r = Resolver {
        bindings: &bindings,
        conditions: &empty,
    };
    let key_statements = statements(&doc, "key policy", &r)?;
    let mut direct = Vec::new();
    let mut delegates = false;
    for s in &key_statements {
        let to_principal = s.principals.iter().any(|p| p == "*" || p == principal);
        let to_account = s.principals.iter().any(|p| p == &root);
        if !(to_principal || to_account)
            || !s.actions.iter().any(|p| action_matches(p, &a.action))
            || !s
                .resources
                .iter()
                .any(|p| wildcard(p, "*") || wildcard(p, &a.resource))
        {
            continue;
        }
        if !conditions_hold(&s.conditions, &a.context).with_context(|| s.origin.clone())? {
            continue;
        }
        match s.effect {
            Effect::Deny => return Ok(Decision::Denied(s.origin.clone())),
            Effect::Allow if to_principal => direct.push(s.origin.clone()),
            Effect::Allow => delegates = true,
        }
    }
    let identity = role.decide(a)?;
    if let Decision::Denied(by) = identity {
        return Ok(Decision::Denied(by));
    }
    let mut allowed = direct;
    if delegates && let Decision::Allowed(origins) = identity {
        allowed.extend(origins);
    }
    Ok(if allowed.is_empty() {
        Decision::NotAllowed
    } else {
        Decision::Allowed(allowed)
    })
}

/// The role of each function, by the function's logical id.
pub fn function_roles(translated: &Value) -> BTreeMap<String, String> {
    translated["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v["Type"] == "AWS::Lambda::Function")
        .filter_map(|(id, v)| {
            let role = v["Properties"]["Role"]["Fn::GetAtt"][0].as_str()?;
            Some((id.clone(), role.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role(doc: Value) -> Role {
        let b = Bindings::default();
        let conditions = serde_json::Map::new();
        let r = Resolver {
            bindings: &b,
            conditions: &conditions,
        };
        Role {
            statements: statements(&doc, "p", &r).unwrap(),
            aws_managed: vec![],
        }
    }

    fn auth(action: &str, resource: &str, context: &[(&str, &str)]) -> Authorization {
        Authorization {
            action: action.into(),
            resource: resource.into(),
            context: context
                .iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
                .collect(),
        }
    }

    #[test]
    fn deny_wins_and_nothing_is_allowed_by_default() {
        let r = role(json!({"Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "kms:*", "Resource": "*"},
            {"Sid": "D", "Effect": "Deny", "Action": ["kms:ScheduleKeyDeletion"], "Resource": "*"}
        ]}));
        assert_eq!(
            r.decide(&auth("kms:ScheduleKeyDeletion", "arn:k", &[])).unwrap(),
            Decision::Denied("p/D".into())
        );
        assert_eq!(
            r.decide(&auth("KMS:describekey", "arn:k", &[])).unwrap(),
            Decision::Allowed(vec!["p/A".into()])
        );
        assert_eq!(
            r.decide(&auth("dynamodb:Query", "arn:t", &[])).unwrap(),
            Decision::NotAllowed
        );
    }

    #[test]
    fn resources_match_by_wildcard_and_an_index_is_not_its_table() {
        let r = role(json!({"Statement": [
            {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "arn:aws:dynamodb:r:a:table/t"}
        ]}));
        assert!(matches!(
            r.decide(&auth("dynamodb:Query", "arn:aws:dynamodb:r:a:table/t", &[]))
                .unwrap(),
            Decision::Allowed(_)
        ));
        assert_eq!(
            r.decide(&auth(
                "dynamodb:Query",
                "arn:aws:dynamodb:r:a:table/t/index/by-key",
                &[]
            ))
            .unwrap(),
            Decision::NotAllowed
        );
        assert!(wildcard(
            "arn:aws:kms:*:1:key/*",
            "arn:aws:kms:us-east-2:1:key/abc"
        ));
        assert!(!wildcard(
            "arn:aws:kms:*:1:key/*",
            "arn:aws:kms:us-east-2:1:alias/abc"
        ));
    }

    #[test]
    fn a_missing_condition_key_fails_unless_if_exists_and_null_tests_presence() {
        let r = role(json!({"Statement": [
            {"Sid": "Tagged", "Effect": "Allow", "Action": "kms:EnableKey", "Resource": "*",
             "Condition": {"StringEquals": {"aws:ResourceTag/owner": "me"}}},
            {"Sid": "Maybe", "Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*",
             "Condition": {"BoolIfExists": {"kms:MultiRegion": "false"}}},
            {"Sid": "Untagged", "Effect": "Allow", "Action": "kms:TagResource", "Resource": "*",
             "Condition": {"Null": {"aws:RequestTag/owner": "true"}}}
        ]}));
        assert_eq!(
            r.decide(&auth("kms:EnableKey", "k", &[])).unwrap(),
            Decision::NotAllowed
        );
        assert!(matches!(
            r.decide(&auth("kms:EnableKey", "k", &[("aws:ResourceTag/owner", "me")]))
                .unwrap(),
            Decision::Allowed(_)
        ));
        assert_eq!(
            r.decide(&auth("kms:EnableKey", "k", &[("aws:ResourceTag/owner", "you")]))
                .unwrap(),
            Decision::NotAllowed
        );
        assert!(matches!(
            r.decide(&auth("kms:DescribeKey", "k", &[])).unwrap(),
            Decision::Allowed(_)
        ));
        assert_eq!(
            r.decide(&auth("kms:DescribeKey", "k", &[("kms:MultiRegion", "true")]))
                .unwrap(),
            Decision::NotAllowed
        );
        assert!(matches!(
            r.decide(&auth("kms:TagResource", "k", &[])).unwrap(),
            Decision::Allowed(_)
        ));
        assert_eq!(
            r.decide(&auth("kms:TagResource", "k", &[("aws:RequestTag/owner", "x")]))
                .unwrap(),
            Decision::NotAllowed
        );
    }

    #[test]
    fn an_unknown_operator_is_an_error_not_an_allow() {
        let r = role(json!({"Statement": [
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*",
             "Condition": {"NumericLessThan": {"kms:x": "1"}}}
        ]}));
        assert!(
            r.decide(&auth("kms:DescribeKey", "k", &[("kms:x", "0")]))
                .is_err()
        );
        let b = Bindings::default();
        let conditions = serde_json::Map::new();
        let res = Resolver {
            bindings: &b,
            conditions: &conditions,
        };
        assert!(
            statements(
                &json!({"Statement": [{"Effect": "Allow", "NotAction": "x", "Resource": "*"}]}),
                "p",
                &res
            )
            .is_err()
        );
    }

    #[test]
    fn intrinsics_resolve_with_bindings_and_unbound_ids_match_nothing() {
        let mut b = Bindings::default();
        b.refs.insert("AWS::AccountId".into(), "123".into());
        b.refs.insert("Fn".into(), "Fn".into());
        b.attrs.insert("T.Arn".into(), "arn:t".into());
        b.parameters.insert("P".into(), "alias/x".into());
        let conditions = serde_json::Map::from_iter([(
            "C".to_owned(),
            json!({"Fn::Or": [{"Fn::Equals": [{"Ref": "P"}, "no"]}, {"Fn::Not": [{"Fn::Equals": ["a", "b"]}]}]}),
        )]);
        let r = Resolver {
            bindings: &b,
            conditions: &conditions,
        };
        assert_eq!(
            r.string(&json!({"Fn::Sub": ["arn:${AWS::AccountId}:${P}/${f}*", {"f": {"Ref": "Fn"}}]}))
                .unwrap(),
            "arn:123:alias/x/Fn*"
        );
        assert_eq!(
            r.string(&json!({"Fn::Sub": "${T.Arn}/index/i"})).unwrap(),
            "arn:t/index/i"
        );
        assert_eq!(r.string(&json!({"Fn::If": ["C", "yes", "no"]})).unwrap(), "yes");
        assert_eq!(r.string(&json!({"Ref": "Nope"})).unwrap(), "<unbound Nope>");
    }
}
