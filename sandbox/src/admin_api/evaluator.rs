//! KMS key-policy evaluation as Anthropic's side experiences it: would a
//! request by Anthropic's role for an action, with an encryption context, be
//! allowed? Written independently of `cmek::policy` on purpose: this plays
//! the other side, and a shared evaluator would let one bug pass every test.
//!
//! The model: an explicit Deny that matches wins; otherwise some Allow must
//! match; otherwise denied. Cross-account access exists only through the key
//! policy, so grants made through IAM in the customer's account count for
//! nothing here (as in KMS). A grant to Anthropic's whole account is honoured
//! (Anthropic's own IAM lets its role through).

use serde_json::Value;

pub const ANTHROPIC_ACCOUNT: &str = "915198916910";

/// A request as KMS sees it.
#[derive(Debug, Clone)]
pub struct KmsRequest<'a> {
    pub principal_arn: &'a str,
    /// The key the request is for: a statement's `Resource` must match it
    /// (`"*"` in a key policy means this key).
    pub key_arn: &'a str,
    pub action: &'a str,
    /// `anthropic:compartment_uuid` → value, for Encrypt/Decrypt; empty for DescribeKey.
    pub encryption_context: &'a [(&'a str, &'a str)],
    /// A service principal making the request (`aws-external-anthropic.amazonaws.com`
    /// on Claude Platform on AWS) instead of `principal_arn`'s role.
    pub service: Option<&'a str>,
    /// `aws:SourceArn` and `aws:SourceAccount`: the resource a service acts for.
    pub source_arn: Option<&'a str>,
    pub source_account: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Why, as a KMS-ish message.
    Denied(String),
}

pub fn evaluate(policy: &str, req: &KmsRequest<'_>) -> Decision {
    let Ok(doc) = serde_json::from_str::<Value>(policy) else {
        return Decision::Denied("key policy is not valid JSON".into());
    };
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => return Decision::Denied("key policy has no statements".into()),
    };
    let mut allowed = false;
    for s in statements {
        if !applies(s, req) {
            continue;
        }
        match s.get("Effect").and_then(Value::as_str) {
            Some("Deny") => {
                return Decision::Denied(format!(
                    "AccessDeniedException: {} is explicitly denied by the key policy{}",
                    req.action,
                    s.get("Sid")
                        .and_then(Value::as_str)
                        .map(|sid| format!(" (statement {sid})"))
                        .unwrap_or_default()
                ));
            }
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::Denied(format!(
            "AccessDeniedException: User: {} is not authorized to perform: {} on this key because no resource-based policy allows the {} action",
            req.principal_arn, req.action, req.action
        ))
    }
}

/// Whether a grant that lets `principal_arn` encrypt restricts the
/// compartment (so that a foreign compartment must be denied).
pub fn encrypt_grant_lists_compartments(policy: &str, principal_arn: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<Value>(policy) else {
        return false;
    };
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => return false,
    };
    statements.into_iter().any(|s| {
        let allows = s.get("Effect").and_then(Value::as_str) == Some("Allow");
        let principal = s
            .get("Principal")
            .is_some_and(|p| principal_matches(p, principal_arn));
        let encrypts = strings(s.get("Action"))
            .iter()
            .any(|a| wildcard(a, "kms:Encrypt", true));
        let lists = s.get("Condition").and_then(Value::as_object).is_some_and(|ops| {
            ops.values().filter_map(Value::as_object).any(|keys| {
                keys.keys()
                    .any(|k| k.eq_ignore_ascii_case("kms:EncryptionContext:anthropic:compartment_uuid"))
            })
        });
        allows && principal && encrypts && lists
    })
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(scalar_string).collect(),
        _ => vec![],
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn applies(s: &Value, req: &KmsRequest<'_>) -> bool {
    let principal_ok = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(p), None) => principal_applies(p, req),
        (None, Some(p)) => !principal_applies(p, req),
        _ => false,
    };
    let action_ok = match (s.get("Action"), s.get("NotAction")) {
        (Some(a), None) => strings(Some(a)).iter().any(|p| wildcard(p, req.action, true)),
        (None, Some(a)) => !strings(Some(a)).iter().any(|p| wildcard(p, req.action, true)),
        _ => false,
    };
    let resource_ok = match (s.get("Resource"), s.get("NotResource")) {
        (Some(r), None) => strings(Some(r)).iter().any(|p| wildcard(p, req.key_arn, false)),
        (None, Some(r)) => !strings(Some(r)).iter().any(|p| wildcard(p, req.key_arn, false)),
        _ => false,
    };
    principal_ok && action_ok && resource_ok && conditions_hold(s.get("Condition"), req)
}

fn principal_applies(p: &Value, req: &KmsRequest<'_>) -> bool {
    match req.service {
        None => principal_matches(p, req.principal_arn),
        // A service principal is named as {"Service": "<name>"}; "*" (bare
        // or as AWS) reaches every principal, services included.
        Some(service) => match p {
            Value::String(s) => s == "*",
            Value::Object(m) => {
                m.get("Service")
                    .is_some_and(|v| strings(Some(v)).iter().any(|x| x == service))
                    || m.get("AWS")
                        .is_some_and(|v| strings(Some(v)).iter().any(|x| x == "*"))
            }
            _ => false,
        },
    }
}

fn principal_matches(p: &Value, arn: &str) -> bool {
    let account_root = format!("arn:aws:iam::{ANTHROPIC_ACCOUNT}:root");
    let matches_one = |v: &str| v == "*" || v == arn || v == ANTHROPIC_ACCOUNT || v == account_root;
    match p {
        Value::String(s) => s == "*",
        Value::Object(m) => m
            .get("AWS")
            .map(|v| strings(Some(v)).iter().any(|x| matches_one(x)))
            .unwrap_or(false),
        _ => false,
    }
}

fn context_value<'a>(key: &str, req: &'a KmsRequest<'a>) -> Option<Vec<String>> {
    let k = key.to_ascii_lowercase();
    if let Some(ctx_key) = k.strip_prefix("kms:encryptioncontext:") {
        return req
            .encryption_context
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(ctx_key))
            .map(|(_, v)| vec![(*v).to_owned()]);
    }
    match k.as_str() {
        "kms:encryptioncontextkeys" if !req.encryption_context.is_empty() => Some(
            req.encryption_context
                .iter()
                .map(|(n, _)| (*n).to_owned())
                .collect(),
        ),
        "aws:sourcearn" => req.source_arn.map(|a| vec![a.to_owned()]),
        "aws:sourceaccount" => req.source_account.map(|a| vec![a.to_owned()]),
        _ if req.service.is_some() => None,
        "aws:principalarn" => Some(vec![req.principal_arn.to_owned()]),
        "aws:principalaccount" | "kms:calleraccount" => Some(vec![ANTHROPIC_ACCOUNT.to_owned()]),
        "aws:principaltype" => Some(vec!["AssumedRole".to_owned()]),
        "aws:securetransport" => Some(vec!["true".to_owned()]),
        // Anthropic's role is not in the customer's organization.
        _ => None,
    }
}

fn conditions_hold(cond: Option<&Value>, req: &KmsRequest<'_>) -> bool {
    let Some(Value::Object(ops)) = cond else {
        return cond.is_none();
    };
    ops.iter().all(|(op, block)| {
        let Value::Object(keys) = block else { return false };
        keys.iter()
            .all(|(key, wanted)| operator_holds(op, context_value(key, req), &strings(Some(wanted))))
    })
}

fn operator_holds(op: &str, actual: Option<Vec<String>>, wanted: &[String]) -> bool {
    let (set_op, rest) = if let Some(r) = op.strip_prefix("ForAnyValue:") {
        (Some(true), r)
    } else if let Some(r) = op.strip_prefix("ForAllValues:") {
        (Some(false), r)
    } else {
        (None, op)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    if base == "Null" {
        let want_null = wanted.first().map(|w| w == "true").unwrap_or(false);
        return actual.is_none() == want_null;
    }
    let negated = base.contains("Not");
    let Some(actual) = actual else {
        return if_exists || negated || set_op == Some(false);
    };
    let one = |a: &String| -> bool {
        let hit = wanted.iter().any(|w| match base {
            "StringEquals" | "StringNotEquals" | "ArnEquals" | "ArnNotEquals" => w == a,
            "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => w.eq_ignore_ascii_case(a),
            "StringLike" | "StringNotLike" | "ArnLike" | "ArnNotLike" => wildcard(w, a, false),
            "Bool" => w.eq_ignore_ascii_case(a),
            _ => false,
        });
        if negated { !hit } else { hit }
    };
    match set_op {
        Some(false) => actual.iter().all(one),
        _ => actual.iter().any(one),
    }
}

fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t) = if ignore_case {
        (pattern.to_ascii_lowercase(), text.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), text.to_owned())
    };
    // Dynamic programming over bytes: patterns here are short.
    let (p, t) = (p.as_bytes(), t.as_bytes());
    let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
    dp[0][0] = true;
    for i in 1..=p.len() {
        if p[i - 1] == b'*' {
            dp[i][0] = dp[i - 1][0];
        }
        for j in 1..=t.len() {
            dp[i][j] = match p[i - 1] {
                b'*' => dp[i - 1][j] || dp[i][j - 1],
                b'?' => dp[i - 1][j - 1],
                c => dp[i - 1][j - 1] && c == t[j - 1],
            };
        }
    }
    dp[p.len()][t.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
    const ZEROS: &str = "00000000-0000-0000-0000-000000000000";

    const KEY: &str = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn req<'a>(action: &'a str, ctx: &'a [(&'a str, &'a str)]) -> KmsRequest<'a> {
        KmsRequest {
            principal_arn: ROLE,
            key_arn: KEY,
            action,
            encryption_context: ctx,
            service: None,
            source_arn: None,
            source_account: None,
        }
    }

    fn allowed(policy: &serde_json::Value, action: &str, ctx: &[(&str, &str)]) -> bool {
        evaluate(&policy.to_string(), &req(action, ctx)) == Decision::Allowed
    }

    fn grant(extra: serde_json::Value) -> serde_json::Value {
        let mut s = serde_json::json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"});
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::json!({"Statement": [s]})
    }

    #[test]
    fn if_exists_holds_without_the_key_and_checks_it_with() {
        let p = grant(serde_json::json!({"Condition": {
            "StringEquals": {"kms:EncryptionContext:anthropic:org_uuid": "o1"},
            "StringEqualsIfExists": {"kms:EncryptionContext:anthropic:compartment_uuid": ["c1"]}}}));
        assert!(allowed(&p, "kms:Encrypt", &[("anthropic:org_uuid", "o1")]));
        assert!(allowed(
            &p,
            "kms:Encrypt",
            &[("anthropic:org_uuid", "o1"), ("anthropic:compartment_uuid", "c1")]
        ));
        assert!(!allowed(
            &p,
            "kms:Encrypt",
            &[("anthropic:org_uuid", "o1"), ("anthropic:compartment_uuid", "c2")]
        ));
        assert!(!allowed(
            &p,
            "kms:Encrypt",
            &[("anthropic:compartment_uuid", "c1")]
        ));
        assert!(!allowed(&p, "kms:Encrypt", &[]));
    }

    #[test]
    fn set_operators_on_the_context_keys() {
        // ForAllValues: every key in the context must be listed (holds for none).
        let all = grant(serde_json::json!({"Condition": {"ForAllValues:StringEquals": {
            "kms:EncryptionContextKeys": ["anthropic:org_uuid", "anthropic:compartment_uuid"]}}}));
        assert!(allowed(&all, "kms:Encrypt", &[("anthropic:org_uuid", "o1")]));
        assert!(!allowed(
            &all,
            "kms:Encrypt",
            &[("anthropic:org_uuid", "o1"), ("other", "x")]
        ));
        // ForAnyValue: at least one listed key present.
        let any = grant(serde_json::json!({"Condition": {"ForAnyValue:StringEquals": {
            "kms:EncryptionContextKeys": ["anthropic:org_uuid"]}}}));
        assert!(allowed(
            &any,
            "kms:Encrypt",
            &[("other", "x"), ("anthropic:org_uuid", "o1")]
        ));
        assert!(!allowed(&any, "kms:Encrypt", &[("other", "x")]));
        assert!(!allowed(&any, "kms:Encrypt", &[]));
    }

    #[test]
    fn not_action_and_resource() {
        let not_action = serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ROLE},
            "NotAction": ["kms:Decrypt"], "Resource": "*"}]});
        assert!(allowed(&not_action, "kms:Encrypt", &[]));
        assert!(allowed(&not_action, "kms:GenerateDataKey", &[]));
        assert!(!allowed(&not_action, "kms:Decrypt", &[]));
        // A statement for another key does not apply to this one.
        let other_key = grant(
            serde_json::json!({"Resource": "arn:aws:kms:us-east-2:111122223333:key/ffffffff-ffff-ffff-ffff-ffffffffffff"}),
        );
        assert!(!allowed(&other_key, "kms:Encrypt", &[]));
        let this_key = grant(serde_json::json!({"Resource": ["arn:aws:kms:us-east-2:111122223333:key/*"]}));
        assert!(allowed(&this_key, "kms:Encrypt", &[]));
        let not_this = grant(serde_json::json!({"Resource": null}));
        assert!(
            !allowed(&not_this, "kms:Encrypt", &[]),
            "a statement without Resource applies to nothing"
        );
        let mut not_resource = grant(serde_json::json!({}));
        let st = not_resource["Statement"][0].as_object_mut().unwrap();
        st.remove("Resource");
        st.insert("NotResource".into(), serde_json::json!(KEY));
        assert!(!allowed(&not_resource, "kms:Encrypt", &[]));
    }

    #[test]
    fn documented_policy() {
        let p = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:compartment_uuid": [ZEROS, "c1"]}}},
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:DescribeKey", "Resource": "*"}
        ]})
        .to_string();
        assert_eq!(evaluate(&p, &req("kms:DescribeKey", &[])), Decision::Allowed);
        assert_eq!(
            evaluate(&p, &req("kms:Encrypt", &[("anthropic:compartment_uuid", ZEROS)])),
            Decision::Allowed
        );
        assert_eq!(
            evaluate(&p, &req("kms:Decrypt", &[("anthropic:compartment_uuid", "c1")])),
            Decision::Allowed
        );
        assert!(matches!(
            evaluate(&p, &req("kms:Decrypt", &[("anthropic:compartment_uuid", "c2")])),
            Decision::Denied(_)
        ));
        assert!(matches!(
            evaluate(
                &p,
                &req("kms:ReEncryptFrom", &[("anthropic:compartment_uuid", "c1")])
            ),
            Decision::Denied(_)
        ));
    }

    #[test]
    fn iam_only_and_deny() {
        let root_only = r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]}"#;
        assert!(matches!(
            evaluate(root_only, &req("kms:Encrypt", &[])),
            Decision::Denied(_)
        ));
        let org_guard = r#"{"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "915198916910"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-1"}}}]}"#;
        assert!(
            matches!(evaluate(org_guard, &req("kms:Encrypt", &[])), Decision::Denied(m) if m.contains("explicitly denied"))
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("kms:*", "kms:encrypt", true));
        assert!(wildcard("a?c*", "abcdef", false));
        assert!(!wildcard("a?c", "ac", false));
    }

    /// The service principal of Claude Platform on AWS: reached by its own
    /// `Service` entry (or `*`), never by a grant to Anthropic's role, and
    /// bound by `aws:SourceArn`.
    #[test]
    fn a_service_principal_is_judged_by_its_own_grant_and_source_arn() {
        const SERVICE: &str = "aws-external-anthropic.amazonaws.com";
        const WS: &str = "arn:aws:aws-external-anthropic:us-east-2:111122223333:workspace/wrkspc_1";
        let policy = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Service": SERVICE}, "Action": ["kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*",
             "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:aws-external-anthropic:*:111122223333:workspace/*"}}},
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*"}
        ]})
        .to_string();
        let ask = |action: &str, source: &str| {
            evaluate(
                &policy,
                &KmsRequest {
                    principal_arn: SERVICE,
                    key_arn: KEY,
                    action,
                    encryption_context: &[],
                    service: Some(SERVICE),
                    source_arn: Some(source),
                    source_account: Some("111122223333"),
                },
            ) == Decision::Allowed
        };
        assert!(ask("kms:GenerateDataKey", WS));
        assert!(!ask(
            "kms:GenerateDataKey",
            "arn:aws:aws-external-anthropic:us-east-2:999999999999:workspace/wrkspc_1"
        ));
        assert!(
            !ask("kms:Decrypt", WS),
            "a grant to Anthropic's role does not reach the service"
        );
        // And the service's grant does not reach the role.
        assert!(!allowed(
            &serde_json::from_str(&policy).unwrap_or_default(),
            "kms:Encrypt",
            &[]
        ));
    }
}
