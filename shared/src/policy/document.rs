//! A faithful reading of IAM policy JSON: `Statement` as an object or a list,
//! `Action`/`Principal`/`Resource` as a string or a list, `NotAction` and
//! `NotPrincipal`, and `Condition` blocks with any operator. Values that IAM
//! accepts as booleans or numbers are kept as their string form.

use serde_json::Value;

/// The policy JSON could not be read as an IAM policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is not valid JSON: {0}")]
    NotJson(String),
    #[error("policy is malformed: {0}")]
    Malformed(String),
    /// A merge would have taken access away from a workspace the key protects.
    #[error("refusing to rewrite the key policy: {0}")]
    WouldDropAccess(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One entry of a `Principal` block, e.g. `{"AWS": "arn:…"}` or `"*"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalEntry {
    /// `AWS`, `Service`, `Federated`, `CanonicalUser`, or `*` for the bare wildcard.
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// `Principal`: the statement applies to these.
    Only(Vec<PrincipalEntry>),
    /// `NotPrincipal`: the statement applies to everyone except these.
    AllExcept(Vec<PrincipalEntry>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actions {
    Only(Vec<String>),
    AllExcept(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// As written, e.g. `ForAnyValue:StringEqualsIgnoreCase` or `StringLikeIfExists`.
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub index: usize,
    pub sid: Option<String>,
    pub effect: Effect,
    pub principals: Principals,
    pub actions: Actions,
    pub conditions: Vec<Condition>,
}

impl Statement {
    /// How a finding points at this statement: its Sid, else its position.
    pub fn label(&self) -> String {
        match &self.sid {
            Some(sid) if !sid.is_empty() => format!("statement {:?}", crate::ids::shown(sid)),
            _ => format!("statement #{}", self.index + 1),
        }
    }

    pub fn covers_action(&self, action: &str) -> bool {
        match &self.actions {
            Actions::Only(patterns) => patterns.iter().any(|p| glob_match(p, action, true)),
            Actions::AllExcept(patterns) => !patterns.iter().any(|p| glob_match(p, action, true)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_str(json).map_err(|e| PolicyError::NotJson(e.to_string()))?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, PolicyError> {
        let obj = value
            .as_object()
            .ok_or_else(|| malformed("the policy must be a JSON object"))?;
        // Element names are case-sensitive in IAM's grammar, as KMS enforces.
        let raw = obj
            .get("Statement")
            .ok_or_else(|| malformed("the policy has no \"Statement\""))?;
        let items = statement_items(raw)
            .ok_or_else(|| malformed("\"Statement\" must be an object or a list of objects"))?;
        let statements = items
            .into_iter()
            .enumerate()
            .map(|(i, v)| parse_statement(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { statements })
    }
}

/// A `Statement` element as IAM writes it: one statement object, or a list
/// of them. `None` when it is neither (or absent).
pub fn statement_items(statement: &Value) -> Option<Vec<&Value>> {
    match statement {
        Value::Array(list) => Some(list.iter().collect()),
        Value::Object(_) => Some(vec![statement]),
        _ => None,
    }
}

/// An element IAM writes as a string or a list of strings (`Action`,
/// `Resource`, a principal kind), read leniently: its strings, and none for
/// anything else. The parser above refuses what this skips.
pub fn string_values(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => vec![],
    }
}

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

fn parse_statement(index: usize, v: &Value) -> Result<Statement, PolicyError> {
    let at = |m: &str| malformed(format!("Statement[{index}]: {m}"));
    let obj = v.as_object().ok_or_else(|| at("must be an object"))?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(at(&format!("unknown element {:?}", crate::ids::shown(key))));
        }
    }
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(at("\"Sid\" must be a string")),
    };
    let effect = match obj.get("Effect") {
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(_) => return Err(at("\"Effect\" must be \"Allow\" or \"Deny\"")),
        None => return Err(at("has no \"Effect\"")),
    };
    let principals = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(p), None) => Principals::Only(parse_principal(p).map_err(|m| at(&format!("Principal {m}")))?),
        (None, Some(p)) => {
            Principals::AllExcept(parse_principal(p).map_err(|m| at(&format!("NotPrincipal {m}")))?)
        }
        (Some(_), Some(_)) => return Err(at("has both \"Principal\" and \"NotPrincipal\"")),
        // A key policy statement must name a principal; KMS rejects one without.
        (None, None) => return Err(at("has no \"Principal\" (every key policy statement needs one)")),
    };
    let actions = match (obj.get("Action"), obj.get("NotAction")) {
        (Some(a), None) => Actions::Only(string_or_list(a).map_err(|m| at(&format!("Action {m}")))?),
        (None, Some(a)) => Actions::AllExcept(string_or_list(a).map_err(|m| at(&format!("NotAction {m}")))?),
        (Some(_), Some(_)) => return Err(at("has both \"Action\" and \"NotAction\"")),
        (None, None) => return Err(at("has no \"Action\"")),
    };
    match (obj.get("Resource"), obj.get("NotResource")) {
        (Some(r), None) | (None, Some(r)) => {
            string_or_list(r).map_err(|m| at(&format!("Resource {m}")))?;
        }
        (Some(_), Some(_)) => return Err(at("has both \"Resource\" and \"NotResource\"")),
        (None, None) => return Err(at("has no \"Resource\"")),
    }
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c).map_err(|m| at(&format!("Condition {m}")))?,
    };
    Ok(Statement {
        index,
        sid,
        effect,
        principals,
        actions,
        conditions,
    })
}

fn parse_principal(v: &Value) -> Result<Vec<PrincipalEntry>, String> {
    match v {
        Value::String(s) if s == "*" => Ok(vec![PrincipalEntry {
            kind: "*".into(),
            value: "*".into(),
        }]),
        Value::String(_) => Err("must be \"*\" or an object such as {\"AWS\": \"arn:…\"}".into()),
        Value::Object(map) => {
            let mut out = Vec::new();
            for (kind, values) in map {
                for value in string_or_list(values).map_err(|m| format!("{kind:?} {m}"))? {
                    out.push(PrincipalEntry {
                        kind: kind.clone(),
                        value,
                    });
                }
            }
            if out.is_empty() {
                return Err("names no principal".into());
            }
            Ok(out)
        }
        _ => Err("must be \"*\" or an object".into()),
    }
}

fn string_or_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "must list only strings".to_string())
            })
            .collect(),
        Value::Array(_) => Err("must not be an empty list".into()),
        _ => Err("must be a string or a list of strings".into()),
    }
}

fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err("values must be strings, booleans or numbers".into()),
    }
}

fn parse_conditions(v: &Value) -> Result<Vec<Condition>, String> {
    let ops = v.as_object().ok_or("must be an object of operators")?;
    let mut out = Vec::new();
    for (operator, block) in ops {
        let keys = block
            .as_object()
            .ok_or_else(|| format!("{operator:?} must map condition keys to values"))?;
        for (key, values) in keys {
            let values = match values {
                Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
                other => vec![scalar(other)?],
            };
            out.push(Condition {
                operator: operator.clone(),
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

/// IAM wildcard matching: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let norm = |s: &str| {
        if ignore_case {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    let (p, v): (Vec<char>, Vec<char>) = (norm(pattern).chars().collect(), norm(value).chars().collect());
    // Iterative matcher with single-star backtracking: linear-ish, no recursion
    // depth to blow on hostile input.
    let (mut pi, mut vi) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("kms:*", "kms:Encrypt", true));
        assert!(glob_match("KMS:encrypt", "kms:Encrypt", true));
        assert!(glob_match("kms:ReEncrypt*", "kms:ReEncryptFrom", true));
        assert!(!glob_match("kms:ReEncrypt*", "kms:Encrypt", true));
        assert!(glob_match("kms:?ncrypt", "kms:Encrypt", true));
        assert!(glob_match("*", "", false));
        assert!(!glob_match("a*b*c", "aXbY", false));
    }

    #[test]
    fn statement_as_object_and_scalar_shapes() {
        let doc = PolicyDocument::parse(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": true}}}}"#,
        )
        .unwrap();
        assert_eq!(doc.statements.len(), 1);
        assert_eq!(doc.statements[0].conditions[0].values, vec!["true"]);
    }

    #[test]
    fn malformed_documents_are_named() {
        for (json, needle) in [
            ("nope", "not valid JSON"),
            ("[]", "JSON object"),
            ("{}", "no \"Statement\""),
            (r#"{"Statement": 3}"#, "object or a list"),
            (
                r#"{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "kms:*", "Resource": "*"}]}"#,
                "Effect",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}"#,
                "no \"Principal\"",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": [], "Resource": "*"}]}"#,
                "empty list",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": [1], "Resource": "*"}]}"#,
                "only strings",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": []}]}"#,
                "Condition",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Bogus": 1}]}"#,
                "unknown element",
            ),
        ] {
            let err = PolicyDocument::parse(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
