//! Reading a key policy the way KMS would for Anthropic's requests, and naming
//! every way it falls short of (or goes beyond) the documented policy, with the fix.

use serde::{Deserialize, Serialize};

use super::document::{
    Actions, Condition, Effect, PolicyDocument, PolicyError, PrincipalEntry, Principals, Statement,
};
use crate::geo::{ANTHROPIC_ACCOUNT_ID, COMPARTMENT_CONDITION_KEY, Geo};
use crate::ids::{AccountId, CompartmentId};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// Anthropic's requests will be denied: validation or live traffic fails.
    Error,
    /// Works, but grants Anthropic more than documented; needs explicit acceptance.
    OverPermissive,
    /// Works; a hardening or operability risk.
    Warning,
}

/// Stable names for findings, used in events, the audit trail and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingCode {
    NoCryptoGrant,
    ConditionMissesCompartment,
    PlaceholderInCondition,
    ConditionMissesValidationId,
    CryptoGrantWithoutCondition,
    NoDescribeGrant,
    DescribeUnderCondition,
    AccountWidePrincipal,
    EveryonePrincipal,
    UnpublishedAnthropicPrincipal,
    ExtraActions,
    DenyBlocksAnthropic,
    DenyMayBlockAnthropic,
    UnrecognisedCondition,
    NotPrincipalGrant,
    NoRootAdmin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    /// What is wrong, naming the statement.
    pub message: String,
    /// What to change.
    pub fix: String,
}

/// Whose key and which workspace the policy is analysed for.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisTarget<'a> {
    pub geo: Geo,
    pub compartment: CompartmentId,
    /// The key's own account, when known, to check the root admin statement.
    pub key_account: Option<&'a AccountId>,
}

/// The findings for a policy, most severe first. An empty list means the
/// policy is exactly as strict and as open as the documentation asks.
pub fn analyse(policy_json: &str, target: AnalysisTarget<'_>) -> Result<Vec<Finding>, PolicyError> {
    let doc = PolicyDocument::parse(policy_json)?;
    Ok(analyse_document(&doc, target))
}

pub fn analyse_document(doc: &PolicyDocument, target: AnalysisTarget<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let role = target.geo.anthropic_role_arn();
    check_principals_and_actions(doc, role, &mut out);
    check_crypto(doc, role, target.compartment, &mut out);
    check_describe(doc, role, &mut out);
    check_denies(doc, role, target.compartment, &mut out);
    check_root_admin(doc, target.key_account, &mut out);
    out.sort_by_key(|f| (f.severity, f.code));
    out
}

/// Who a principal entry is, from Anthropic's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    PublishedRole,
    AnthropicAccount,
    OtherAnthropicPrincipal,
    Everyone,
    Other,
}

fn classify(entry: &PrincipalEntry, role: &str) -> Who {
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

/// Whether a statement's principal block lets Anthropic's published role in.
fn reaches_role(s: &Statement, role: &str) -> bool {
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

/// Result of evaluating one condition against a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    /// A key we cannot know the value of (e.g. `aws:PrincipalOrgID`).
    Unknown,
}

/// The request Anthropic makes: its encryption context, if any.
struct Request<'a> {
    compartment: Option<&'a str>,
}

fn evaluate(c: &Condition, req: &Request<'_>) -> Truth {
    let mut op = c.operator.as_str();
    let for_all = op.starts_with("ForAllValues:");
    op = op
        .strip_prefix("ForAnyValue:")
        .or_else(|| op.strip_prefix("ForAllValues:"))
        .unwrap_or(op);
    let if_exists = op.ends_with("IfExists");
    op = op.strip_suffix("IfExists").unwrap_or(op);
    if !c.key.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY) {
        return Truth::Unknown;
    }
    let Some(actual) = req.compartment else {
        // Absent key: IfExists and ForAllValues conditions hold, negated
        // operators hold, everything else fails.
        return if if_exists || for_all || op.contains("Not") {
            Truth::True
        } else {
            Truth::False
        };
    };
    let matches = |v: &String| match op {
        "StringEquals" | "StringNotEquals" => v == actual,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => v.eq_ignore_ascii_case(actual),
        "StringLike" | "StringNotLike" => super::document::glob_match(v, actual, false),
        _ => false,
    };
    match op {
        "StringEquals" | "StringEqualsIgnoreCase" | "StringLike" => {
            if c.values.iter().any(matches) {
                Truth::True
            } else {
                Truth::False
            }
        }
        "StringNotEquals" | "StringNotEqualsIgnoreCase" | "StringNotLike" => {
            if c.values.iter().any(matches) {
                Truth::False
            } else {
                Truth::True
            }
        }
        _ => Truth::Unknown,
    }
}

/// All conditions of a statement together (they are ANDed).
fn evaluate_all(s: &Statement, req: &Request<'_>) -> Truth {
    let mut result = Truth::True;
    for c in &s.conditions {
        match evaluate(c, req) {
            Truth::False => return Truth::False,
            Truth::Unknown => result = Truth::Unknown,
            Truth::True => {}
        }
    }
    result
}

fn has_compartment_condition(s: &Statement) -> bool {
    s.conditions
        .iter()
        .any(|c| c.key.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY))
}

fn allows<'d>(doc: &'d PolicyDocument, role: &str, action: &str) -> Vec<&'d Statement> {
    doc.statements
        .iter()
        .filter(|s| s.effect == Effect::Allow && reaches_role(s, role) && s.covers_action(action))
        .collect()
}

fn finding(code: FindingCode, severity: Severity, message: String, fix: impl Into<String>) -> Finding {
    Finding {
        code,
        severity,
        message,
        fix: fix.into(),
    }
}

const DOCUMENTED_ACTIONS: [&str; 3] = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"];

fn check_principals_and_actions(doc: &PolicyDocument, role: &str, out: &mut Vec<Finding>) {
    for s in doc.statements.iter().filter(|s| s.effect == Effect::Allow) {
        let label = s.label();
        match &s.principals {
            Principals::AllExcept(_) => {
                if reaches_role(s, role) {
                    out.push(finding(
                        FindingCode::NotPrincipalGrant,
                        Severity::OverPermissive,
                        format!("{label} allows everyone except the listed principals (NotPrincipal), Anthropic's role included"),
                        "Replace NotPrincipal with an explicit Principal naming only the principals that need access.",
                    ));
                }
                continue;
            }
            Principals::Only(entries) => {
                let kinds: Vec<Who> = entries.iter().map(|e| classify(e, role)).collect();
                let touches_kms = s.covers_action("kms:Encrypt")
                    || s.covers_action("kms:Decrypt")
                    || s.covers_action("kms:DescribeKey");
                if kinds.contains(&Who::AnthropicAccount) {
                    out.push(finding(
                        FindingCode::AccountWidePrincipal,
                        Severity::OverPermissive,
                        format!("{label} grants Anthropic's whole AWS account ({ANTHROPIC_ACCOUNT_ID}) instead of its published role (this is what the console's \"Other AWS accounts\" field produces)"),
                        format!("Name the principal {role} instead of the account."),
                    ));
                }
                if kinds.contains(&Who::Everyone) && touches_kms {
                    out.push(finding(
                        FindingCode::EveryonePrincipal,
                        Severity::OverPermissive,
                        format!(
                            "{label} grants key use to every principal (\"*\"){}",
                            if s.conditions.is_empty() {
                                ""
                            } else {
                                " subject to its conditions"
                            }
                        ),
                        format!("Grant {role} explicitly and remove the wildcard principal."),
                    ));
                }
                if kinds.contains(&Who::OtherAnthropicPrincipal) {
                    let others: Vec<&str> = entries
                        .iter()
                        .filter(|e| classify(e, role) == Who::OtherAnthropicPrincipal)
                        .map(|e| e.value.as_str())
                        .collect();
                    out.push(finding(
                        FindingCode::UnpublishedAnthropicPrincipal,
                        Severity::OverPermissive,
                        format!(
                            "{label} grants {} in Anthropic's account, which is not the published role",
                            others.join(", ")
                        ),
                        format!("Trust only {role}: never take a role ARN from an email, chat or ticket."),
                    ));
                }
            }
        }
        if !reaches_role(s, role) {
            continue;
        }
        let extra: Vec<String> = match &s.actions {
            Actions::Only(patterns) => patterns
                .iter()
                .filter(|p| !DOCUMENTED_ACTIONS.iter().any(|d| d.eq_ignore_ascii_case(p)))
                .cloned()
                .collect(),
            Actions::AllExcept(patterns) => vec![format!("every action except {}", patterns.join(", "))],
        };
        if !extra.is_empty() {
            out.push(finding(
                FindingCode::ExtraActions,
                Severity::OverPermissive,
                format!("{label} grants Anthropic actions beyond kms:Encrypt, kms:Decrypt and kms:DescribeKey: {}", extra.join(", ")),
                "Grant only kms:Encrypt and kms:Decrypt (with the compartment condition) and kms:DescribeKey (without it).",
            ));
        }
    }
}

fn check_crypto(doc: &PolicyDocument, role: &str, compartment: CompartmentId, out: &mut Vec<Finding>) {
    let live = compartment.to_string();
    let zeros = CompartmentId::VALIDATION.to_string();
    let mut any_missing = Vec::new();
    let mut grants: Vec<&Statement> = Vec::new();
    for action in ["kms:Encrypt", "kms:Decrypt"] {
        let found = allows(doc, role, action);
        if found.is_empty() {
            any_missing.push(action);
        }
        for s in found {
            if !grants.iter().any(|g| g.index == s.index) {
                grants.push(s);
            }
        }
    }
    if !any_missing.is_empty() {
        out.push(finding(
            FindingCode::NoCryptoGrant,
            Severity::Error,
            format!("the key policy does not grant {role} {}", any_missing.join(" and ")),
            "Add the AllowAnthropicCMEKCrypto statement to the key policy itself: cross-account KMS access must be granted there, an IAM policy in your account cannot grant it.",
        ));
        return;
    }
    let allowed_for = |ctx: &str| {
        ["kms:Encrypt", "kms:Decrypt"].iter().all(|action| {
            allows(doc, role, action).iter().any(|s| {
                evaluate_all(
                    s,
                    &Request {
                        compartment: Some(ctx),
                    },
                ) != Truth::False
            })
        })
    };
    let condition_values: Vec<&String> = grants
        .iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.key.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY))
        .flat_map(|c| c.values.iter())
        .collect();
    if !allowed_for(&live) {
        let placeholders: Vec<&str> = condition_values
            .iter()
            .filter(|v| v.parse::<CompartmentId>().is_err() && !v.contains('*'))
            .map(|v| v.as_str())
            .collect();
        if placeholders.is_empty() {
            out.push(finding(
                FindingCode::ConditionMissesCompartment,
                Severity::Error,
                format!(
                    "the encryption-context condition on Anthropic's grant does not admit this workspace's compartment {live} (it lists {})",
                    list_or_none(&condition_values)
                ),
                format!("Add \"{live}\" to {COMPARTMENT_CONDITION_KEY} in the StringEquals condition (KMS otherwise answers an opaque AccessDeniedException)."),
            ));
        } else {
            out.push(finding(
                FindingCode::PlaceholderInCondition,
                Severity::Error,
                format!("the encryption-context condition still holds a value that is not a compartment id: {}", placeholders.join(", ")),
                format!("Replace it with the workspace's compartment id \"{live}\" (Get Workspace → compartment_id)."),
            ));
        }
    } else if !allowed_for(&zeros) {
        out.push(finding(
            FindingCode::ConditionMissesValidationId,
            Severity::Warning,
            format!("the encryption-context condition admits the compartment but not the all-zeros id {zeros}, which validation sends under Anthropic's current documentation"),
            format!("Add \"{zeros}\" to the condition's values so validation passes under both documented rules."),
        ));
    }
    for s in grants.iter().filter(|s| !has_compartment_condition(s)) {
        out.push(finding(
            FindingCode::CryptoGrantWithoutCondition,
            Severity::Warning,
            format!("{} lets Anthropic encrypt and decrypt with no encryption-context condition", s.label()),
            format!("Add a StringEquals condition on {COMPARTMENT_CONDITION_KEY} listing the compartment ids allowed (defence in depth)."),
        ));
    }
    for s in &grants {
        for c in s.conditions.iter().filter(|c| {
            evaluate(
                c,
                &Request {
                    compartment: Some(&live),
                },
            ) == Truth::Unknown
        }) {
            out.push(finding(
                FindingCode::UnrecognisedCondition,
                Severity::Warning,
                format!("{} conditions Anthropic's access on {} {:?}, which Anthropic's requests may not satisfy", s.label(), c.operator, c.key),
                "Remove the condition from Anthropic's grant, or confirm with Anthropic that its requests carry it.",
            ));
        }
    }
}

fn check_describe(doc: &PolicyDocument, role: &str, out: &mut Vec<Finding>) {
    let grants = allows(doc, role, "kms:DescribeKey");
    if grants.is_empty() {
        out.push(finding(
            FindingCode::NoDescribeGrant,
            Severity::Error,
            format!("the key policy does not grant {role} kms:DescribeKey"),
            "Add the AllowAnthropicCMEKDescribe statement (kms:DescribeKey, no condition): Anthropic reads the key's metadata at start-up.",
        ));
    } else if grants
        .iter()
        .all(|s| evaluate_all(s, &Request { compartment: None }) == Truth::False)
    {
        out.push(finding(
            FindingCode::DescribeUnderCondition,
            Severity::Error,
            "kms:DescribeKey is granted to Anthropic only under an encryption-context condition, which always denies it (DescribeKey carries no encryption context)".into(),
            "Grant kms:DescribeKey in its own statement without the condition (AllowAnthropicCMEKDescribe).",
        ));
    }
}

fn check_denies(doc: &PolicyDocument, role: &str, compartment: CompartmentId, out: &mut Vec<Finding>) {
    let live = compartment.to_string();
    for s in doc
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Deny && reaches_role(s, role))
    {
        let blocked: Vec<&str> = DOCUMENTED_ACTIONS
            .iter()
            .copied()
            .filter(|a| s.covers_action(a))
            .collect();
        if blocked.is_empty() {
            continue;
        }
        let ctx = Request {
            compartment: Some(&live),
        };
        match evaluate_all(s, &ctx) {
            Truth::False => {}
            Truth::True => out.push(finding(
                FindingCode::DenyBlocksAnthropic,
                Severity::Error,
                format!("{} denies Anthropic's role {}", s.label(), blocked.join(", ")),
                "Exclude Anthropic's role from the Deny (an explicit Deny overrides every Allow).",
            )),
            Truth::Unknown => out.push(finding(
                FindingCode::DenyMayBlockAnthropic,
                Severity::Warning,
                format!(
                    "{} denies {} under conditions ({}) that Anthropic's cross-account requests may meet, as an organization-ID guard would",
                    s.label(),
                    blocked.join(", "),
                    s.conditions.iter().map(|c| c.key.as_str()).collect::<Vec<_>>().join(", ")
                ),
                format!("Add an exception for {role} to the Deny (the same applies to an AWS Organizations resource control policy)."),
            )),
        }
    }
}

fn check_root_admin(doc: &PolicyDocument, account: Option<&AccountId>, out: &mut Vec<Finding>) {
    let is_root = |e: &PrincipalEntry| {
        e.kind == "AWS"
            && match account {
                Some(a) => e.value == format!("arn:aws:iam::{a}:root") || e.value == a.as_str(),
                None => {
                    (e.value.starts_with("arn:aws:iam::") && e.value.ends_with(":root")
                        || e.value.len() == 12 && e.value.bytes().all(|b| b.is_ascii_digit()))
                        && !e.value.contains(ANTHROPIC_ACCOUNT_ID)
                }
            }
    };
    let admin = doc.statements.iter().any(|s| {
        s.effect == Effect::Allow
            && s.conditions.is_empty()
            && matches!(&s.principals, Principals::Only(entries) if entries.iter().any(is_root))
            && s.covers_action("kms:PutKeyPolicy")
    });
    if !admin {
        out.push(finding(
            FindingCode::NoRootAdmin,
            Severity::Warning,
            "no statement gives your account's root principal full control of the key (kms:*); the key can become unmanageable".into(),
            "Keep the AccountRootAdmin statement (Principal arn:aws:iam::<your-account>:root, Action kms:*).",
        ));
    }
}

fn list_or_none(values: &[&String]) -> String {
    if values.is_empty() {
        "no value".into()
    } else {
        values
            .iter()
            .map(|v| format!("\"{}\"", crate::ids::shown(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
