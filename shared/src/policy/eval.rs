//! How KMS would decide a request by Anthropic's published role against a key
//! policy, as far as the policy alone can tell: the analysis and the merge's
//! no-lost-access guard both ask it. Conditions on keys whose value we cannot
//! know (`aws:PrincipalOrgID`, `aws:SourceIp`, …) evaluate to `Unknown`, never
//! to a guess.

use super::document::{Condition, Effect, PolicyDocument, PrincipalEntry, Principals, Statement, glob_match};
use crate::geo::ANTHROPIC_ACCOUNT_ID;

/// A three-valued answer: definitely, definitely not, or it depends on
/// something outside the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Truth {
    False,
    Unknown,
    True,
}

/// One request by Anthropic's role: an action and its encryption context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub action: &'a str,
    /// `(context key, value)` pairs, e.g. `("anthropic:org_uuid", "…")`.
    pub context: &'a [(&'a str, &'a str)],
}

/// Who a principal entry is, from Anthropic's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    PublishedRole,
    AnthropicAccount,
    OtherAnthropicPrincipal,
    Everyone,
    Other,
}

pub(crate) fn classify(entry: &PrincipalEntry, role: &str) -> Who {
    if entry.kind == "*" || (entry.kind == "AWS" && entry.value == "*") {
        return Who::Everyone;
    }
    if entry.kind != "AWS" {
        return Who::Other;
    }
    let v = entry.value.as_str();
    if v == role {
        Who::PublishedRole
    } else if v == ANTHROPIC_ACCOUNT_ID || v == format!("arn:aws:iam::{ANTHROPIC_ACCOUNT_ID}:root") {
        Who::AnthropicAccount
    } else if v.starts_with(&format!("arn:aws:iam::{ANTHROPIC_ACCOUNT_ID}:"))
        || v.starts_with(&format!("arn:aws:sts::{ANTHROPIC_ACCOUNT_ID}:"))
    {
        Who::OtherAnthropicPrincipal
    } else {
        Who::Other
    }
}

/// Whether a statement's principal block lets Anthropic's published role in
/// (a grant to Anthropic's whole account does: Anthropic's own IAM passes it on).
pub(crate) fn reaches_role(s: &Statement, role: &str) -> bool {
    match &s.principals {
        Principals::Only(entries) => entries.iter().any(|e| {
            matches!(
                classify(e, role),
                Who::PublishedRole | Who::AnthropicAccount | Who::Everyone
            )
        }),
        Principals::AllExcept(entries) => !entries
            .iter()
            .any(|e| matches!(classify(e, role), Who::PublishedRole | Who::AnthropicAccount)),
    }
}

/// Whether a statement names Anthropic's published role itself (the only
/// grants the merge edits; anything broader is the customer's to fix).
pub(crate) fn names_role(s: &Statement, role: &str) -> bool {
    matches!(&s.principals, Principals::Only(entries)
        if entries.iter().any(|e| e.kind == "AWS" && e.value == role))
}

const CONTEXT_PREFIX: &str = "kms:encryptioncontext:";

/// The encryption-context key a condition key reads, if it reads one.
pub(crate) fn context_key(condition_key: &str) -> Option<&str> {
    let lower = condition_key.get(..CONTEXT_PREFIX.len())?;
    lower
        .eq_ignore_ascii_case(CONTEXT_PREFIX)
        .then(|| &condition_key[CONTEXT_PREFIX.len()..])
}

/// One condition against a request.
pub(crate) fn evaluate(c: &Condition, req: &Request<'_>) -> Truth {
    let mut op = c.operator.as_str();
    let set_any = op.starts_with("ForAnyValue:");
    let set_all = op.starts_with("ForAllValues:");
    op = op
        .strip_prefix("ForAnyValue:")
        .or_else(|| op.strip_prefix("ForAllValues:"))
        .unwrap_or(op);
    let if_exists = op.ends_with("IfExists");
    op = op.strip_suffix("IfExists").unwrap_or(op);
    // Encryption-context keys, and the global `aws:` keys a request names
    // (`aws:SourceArn` for a service principal's calls): a key the request
    // does not name stays unknown, never a guess.
    let name = match context_key(&c.key) {
        Some(name) => name,
        None if is_global_key(&c.key) && req.context.iter().any(|(k, _)| k.eq_ignore_ascii_case(&c.key)) => {
            c.key.as_str()
        }
        None => return Truth::Unknown,
    };
    let actual = req
        .context
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v);
    if op == "Null" {
        // `Null: true` holds when the key is absent.
        let want_absent = match c.values.first().map(String::as_str) {
            Some("true") => true,
            Some("false") => false,
            _ => return Truth::Unknown,
        };
        return truth(actual.is_none() == want_absent);
    }
    let negated = op.contains("Not");
    let Some(actual) = actual else {
        // Absent key: IfExists, ForAllValues and negated operators hold;
        // ForAnyValue and plain operators fail.
        return truth(if_exists || set_all || (negated && !set_any));
    };
    let hit = |v: &String| match op {
        "StringEquals" | "StringNotEquals" => v == actual,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => v.eq_ignore_ascii_case(actual),
        // IAM's ArnEquals and ArnLike both take wildcards.
        "StringLike" | "StringNotLike" | "ArnLike" | "ArnNotLike" | "ArnEquals" | "ArnNotEquals" => {
            glob_match(v, actual, false)
        }
        _ => false,
    };
    match op {
        "StringEquals" | "StringEqualsIgnoreCase" | "StringLike" | "ArnLike" | "ArnEquals" => {
            truth(c.values.iter().any(hit))
        }
        "StringNotEquals" | "StringNotEqualsIgnoreCase" | "StringNotLike" | "ArnNotLike" | "ArnNotEquals" => {
            truth(!c.values.iter().any(hit))
        }
        _ => Truth::Unknown,
    }
}

/// A global condition key (`aws:SourceArn`, `aws:SourceAccount`, …), which a
/// request carries beside its encryption context.
fn is_global_key(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

fn truth(b: bool) -> Truth {
    if b { Truth::True } else { Truth::False }
}

/// All conditions of a statement together (they are ANDed).
pub(crate) fn evaluate_all(s: &Statement, req: &Request<'_>) -> Truth {
    s.conditions
        .iter()
        .map(|c| evaluate(c, req))
        .min()
        .unwrap_or(Truth::True)
}

/// The key policy's decision for Anthropic's role: an applicable Deny wins,
/// else some Allow must apply. `Unknown` when it turns on a condition we
/// cannot evaluate.
pub(crate) fn decide(doc: &PolicyDocument, role: &str, req: &Request<'_>) -> Truth {
    decide_for(doc, |s| reaches_role(s, role), req)
}

/// The key policy's decision for whoever `reaches` says a statement applies to.
pub(crate) fn decide_for(
    doc: &PolicyDocument,
    reaches: impl Fn(&Statement) -> bool,
    req: &Request<'_>,
) -> Truth {
    let applicable = |effect: Effect| {
        doc.statements
            .iter()
            .filter(|s| s.effect == effect && reaches(s) && s.covers_action(req.action))
            .map(|s| evaluate_all(s, req))
            .max()
    };
    let denied = applicable(Effect::Deny).unwrap_or(Truth::False);
    let allowed = applicable(Effect::Allow).unwrap_or(Truth::False);
    match denied {
        Truth::True => Truth::False,
        Truth::Unknown => allowed.min(Truth::Unknown),
        Truth::False => allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> PolicyDocument {
        PolicyDocument::parse(json).unwrap()
    }

    const ROLE: &str = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";

    #[test]
    fn if_exists_holds_without_the_key_and_checks_it_with() {
        let d = doc(&format!(
            r#"{{"Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "Action": "kms:Encrypt", "Resource": "*",
                "Condition": {{"StringEquals": {{"kms:EncryptionContext:anthropic:org_uuid": "o1"}},
                               "StringEqualsIfExists": {{"kms:EncryptionContext:anthropic:compartment_uuid": ["c1"]}}}}}}]}}"#
        ));
        let ask = |ctx: &[(&str, &str)]| {
            decide(
                &d,
                ROLE,
                &Request {
                    action: "kms:Encrypt",
                    context: ctx,
                },
            )
        };
        assert_eq!(ask(&[("anthropic:org_uuid", "o1")]), Truth::True);
        assert_eq!(
            ask(&[("anthropic:org_uuid", "o1"), ("anthropic:compartment_uuid", "c1")]),
            Truth::True
        );
        assert_eq!(
            ask(&[("anthropic:org_uuid", "o1"), ("anthropic:compartment_uuid", "c2")]),
            Truth::False
        );
        assert_eq!(ask(&[("anthropic:compartment_uuid", "c1")]), Truth::False);
        assert_eq!(ask(&[]), Truth::False);
    }

    #[test]
    fn deny_wins_and_unknown_conditions_stay_unknown() {
        let d = doc(&format!(
            r#"{{"Statement": [
                {{"Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "Action": "kms:*", "Resource": "*"}},
                {{"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}},
                {{"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
                  "Condition": {{"StringNotEquals": {{"aws:PrincipalOrgID": "o-1"}}}}}}]}}"#
        ));
        let ask = |action| decide(&d, ROLE, &Request { action, context: &[] });
        assert_eq!(ask("kms:Decrypt"), Truth::False);
        assert_eq!(ask("kms:Encrypt"), Truth::Unknown);
        assert_eq!(ask("kms:DescribeKey"), Truth::True);
    }

    #[test]
    fn null_and_set_operators() {
        let c = |operator: &str, values: &[&str]| Condition {
            operator: operator.into(),
            key: "kms:EncryptionContext:anthropic:org_uuid".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let with = [("anthropic:org_uuid", "o1")];
        let req = |context| Request {
            action: "kms:Encrypt",
            context,
        };
        assert_eq!(evaluate(&c("Null", &["false"]), &req(&with)), Truth::True);
        assert_eq!(evaluate(&c("Null", &["false"]), &req(&[])), Truth::False);
        assert_eq!(
            evaluate(&c("ForAnyValue:StringEquals", &["o1"]), &req(&[])),
            Truth::False
        );
        assert_eq!(
            evaluate(&c("ForAllValues:StringEquals", &["o1"]), &req(&[])),
            Truth::True
        );
        assert_eq!(evaluate(&c("StringNotEquals", &["o2"]), &req(&with)), Truth::True);
        assert_eq!(evaluate(&c("StringLike", &["o*"]), &req(&with)), Truth::True);
        assert_eq!(evaluate(&c("NumericEquals", &["1"]), &req(&with)), Truth::Unknown);
    }
}
