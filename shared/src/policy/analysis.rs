//! Reading a key policy the way KMS would for Anthropic's requests, and naming
//! every way it falls short of (or goes beyond) the documented policy, with the fix.
//!
//! The rules follow Anthropic's current documentation (September 2026): the
//! crypto grant must require the organization's UUID in the encryption
//! context (validation refuses a key without it), may restrict the
//! workspaces with `StringEqualsIfExists` on the compartment, and must not
//! grant more than `kms:Encrypt`/`kms:Decrypt`: validation checks that a
//! foreign organization, a missing context and an extra action are denied.

use serde::{Deserialize, Serialize};

use super::document::{Actions, Effect, PolicyDocument, PolicyError, PrincipalEntry, Principals, Statement};
use super::eval::{Request, Truth, Who, classify, context_key, decide, evaluate, reaches_role};
use crate::geo::{
    ANTHROPIC_ACCOUNT_ID, COMPARTMENT_CONDITION_KEY, COMPARTMENT_CONTEXT_KEY, Geo, ORG_CONDITION_KEY,
    ORG_CONTEXT_KEY,
};
use crate::ids::{AccountId, CompartmentId, OrgUuid};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// Anthropic's validation refuses the key, or live traffic fails. Never
    /// acceptable: it must be fixed.
    Error,
    /// Works, but grants more than documented to principals validation does
    /// not probe; proceeds only when the operator accepts it (`acceptFindings`).
    OverPermissive,
    /// Works; a hardening or operability risk.
    Warning,
}

/// Stable names for findings, used in events, the audit trail and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingCode {
    NoCryptoGrant,
    NoOrgCondition,
    OrgConditionMismatch,
    ConditionMissesCompartment,
    PlaceholderInCondition,
    NoDescribeGrant,
    DescribeUnderCondition,
    DenyBlocksAnthropic,
    AccountWidePrincipal,
    ExtraActions,
    EveryonePrincipal,
    UnpublishedAnthropicPrincipal,
    NotPrincipalGrant,
    ConditionMissesValidationId,
    LegacyCompartmentCondition,
    DenyMayBlockAnthropic,
    UnrecognisedCondition,
    NoRootAdmin,
    // Claude Platform on AWS (the service principal's policy).
    NoServiceGrant,
    MissingServiceAction,
    SourceArnExcludesWorkspace,
    ValidationIdOnAws,
    NoSourceArnCondition,
    // Network conditions (both platforms; `super::network`).
    NetworkConditionBlocksAnthropic,
    IpConditionOnAnthropic,
}

impl FindingCode {
    /// The one place that decides how bad each finding is (and so whether it
    /// blocks, and whether an operator may accept it).
    pub const fn severity(self) -> Severity {
        use FindingCode::*;
        match self {
            NoCryptoGrant
            | NoOrgCondition
            | OrgConditionMismatch
            | ConditionMissesCompartment
            | PlaceholderInCondition
            | NoDescribeGrant
            | DescribeUnderCondition
            | DenyBlocksAnthropic
            // Validation refuses the console wizard's account-wide grant and
            // any action beyond Encrypt/Decrypt (its negative checks).
            | AccountWidePrincipal
            | ExtraActions
            | NoServiceGrant
            | MissingServiceAction
            | SourceArnExcludesWorkspace
            | NetworkConditionBlocksAnthropic => Severity::Error,
            EveryonePrincipal | UnpublishedAnthropicPrincipal | NotPrincipalGrant => Severity::OverPermissive,
            ConditionMissesValidationId
            | LegacyCompartmentCondition
            | DenyMayBlockAnthropic
            | UnrecognisedCondition
            | NoRootAdmin
            | ValidationIdOnAws
            | NoSourceArnCondition
            // Holds if the list names Anthropic's published addresses.
            | IpConditionOnAnthropic => Severity::Warning,
        }
    }

    /// Whether an operator may accept this finding and proceed: only what
    /// works as is. A policy validation refuses cannot be accepted into working.
    pub const fn acceptable(self) -> bool {
        !matches!(self.severity(), Severity::Error)
    }

    /// The stable name, as in events and `acceptFindings` (e.g. `EXTRA_ACTIONS`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{self:?}"))
    }

    /// A stored name back: the stable name, or the Rust spelling
    /// (`ExtraActions`) that records written before the stable one hold.
    pub fn from_name(name: &str) -> Option<Self> {
        let parse = |n: String| serde_json::from_value(serde_json::Value::String(n)).ok();
        parse(name.to_owned()).or_else(|| {
            // `ExtraActions` → `EXTRA_ACTIONS`.
            let mut screaming = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    screaming.push('_');
                }
                screaming.push(c.to_ascii_uppercase());
            }
            parse(screaming)
        })
    }
}

impl Finding {
    /// Whether this finding stops the key from being used (CreateKey refuses
    /// it; the guardian alerts on it): an error always, an over-permissive
    /// grant unless the operator accepted its code, a warning never. The one
    /// place that decides, from [`FindingCode::severity`].
    pub fn blocks(&self, accepted: &[FindingCode]) -> bool {
        match self.code.severity() {
            Severity::Error => true,
            Severity::OverPermissive => !accepted.contains(&self.code),
            Severity::Warning => false,
        }
    }
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
    /// The organization the key must be bound to. `None` when unknown (an
    /// old workflow record): then any organization condition is taken as
    /// the intended one and only its absence is a finding.
    pub org: Option<&'a OrgUuid>,
    /// The key's own account, when known, to check the root admin statement.
    pub key_account: Option<&'a AccountId>,
}

/// Which generation of Anthropic's documented policy a key follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContractGeneration {
    /// Up to mid-July 2026: `StringEquals` on the workspace's compartment.
    #[serde(rename = "2026-07")]
    July2026,
    /// Late July to August 2026: `StringEquals` listing the all-zeros id too.
    #[serde(rename = "2026-08")]
    August2026,
    /// From September 2026: `StringEquals` on the organization's UUID.
    #[serde(rename = "current")]
    Current,
    #[serde(rename = "unrecognised")]
    Unrecognised,
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
    check_crypto(doc, role, &target, &mut out);
    check_describe(doc, role, &mut out);
    check_denies(doc, role, &target, &mut out);
    super::network::check(
        doc,
        |s| reaches_role(s, role),
        &DOCUMENTED_ACTIONS,
        role,
        &mut out,
    );
    check_root_admin(doc, target.key_account, &mut out);
    out.sort_by_key(|f| (f.severity, f.code));
    out
}

/// The generation of the documented policy that Anthropic's crypto grant follows.
pub fn generation(doc: &PolicyDocument, geo: Geo) -> ContractGeneration {
    let role = geo.anthropic_role_arn();
    let grants: Vec<&Statement> = crypto_grants(doc, role);
    if grants.is_empty() {
        return ContractGeneration::Unrecognised;
    }
    let on = |s: &Statement, key: &str| {
        s.conditions
            .iter()
            .filter(|c| c.key.eq_ignore_ascii_case(key) && !c.operator.contains("Not"))
            .cloned()
            .collect::<Vec<_>>()
    };
    if grants.iter().any(|s| !on(s, ORG_CONDITION_KEY).is_empty()) {
        return ContractGeneration::Current;
    }
    let compartment: Vec<_> = grants
        .iter()
        .flat_map(|s| on(s, COMPARTMENT_CONDITION_KEY))
        .filter(|c| c.operator == "StringEquals")
        .collect();
    if compartment.is_empty() {
        ContractGeneration::Unrecognised
    } else if compartment.iter().any(|c| {
        c.values
            .iter()
            .any(|v| v == &CompartmentId::VALIDATION.to_string())
    }) {
        ContractGeneration::August2026
    } else {
        ContractGeneration::July2026
    }
}

/// Allow statements that give Anthropic's role Encrypt or Decrypt.
fn crypto_grants<'d>(doc: &'d PolicyDocument, role: &str) -> Vec<&'d Statement> {
    doc.statements
        .iter()
        .filter(|s| {
            s.effect == Effect::Allow
                && reaches_role(s, role)
                && (s.covers_action("kms:Encrypt") || s.covers_action("kms:Decrypt"))
        })
        .collect()
}

pub(crate) fn finding(code: FindingCode, message: String, fix: impl Into<String>) -> Finding {
    Finding {
        code,
        severity: code.severity(),
        message,
        fix: fix.into(),
    }
}

const DOCUMENTED_ACTIONS: [&str; 3] = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"];

/// A UUID no organization or workspace has: what a foreign request carries.
const FOREIGN: &str = "ffffffff-ffff-4fff-bfff-ffffffffffff";

fn check_principals_and_actions(doc: &PolicyDocument, role: &str, out: &mut Vec<Finding>) {
    for s in doc.statements.iter().filter(|s| s.effect == Effect::Allow) {
        let label = s.label();
        match &s.principals {
            Principals::AllExcept(_) => {
                if reaches_role(s, role) {
                    out.push(finding(
                        FindingCode::NotPrincipalGrant,
                        format!("{label} allows everyone except the listed principals (NotPrincipal), Anthropic's role included"),
                        "Replace NotPrincipal with an explicit Principal naming only the principals that need access.",
                    ));
                }
                continue;
            }
            Principals::Only(entries) => {
                let kinds: Vec<Who> = entries.iter().map(|e| classify(e, role)).collect();
                let touches_kms = DOCUMENTED_ACTIONS.iter().any(|a| s.covers_action(a));
                if kinds.contains(&Who::AnthropicAccount) {
                    out.push(finding(
                        FindingCode::AccountWidePrincipal,
                        format!("{label} grants Anthropic's whole AWS account ({ANTHROPIC_ACCOUNT_ID}) instead of its published role (this is what the console's \"Other AWS accounts\" field produces); Anthropic's validation refuses it"),
                        format!("Remove the statement and grant {role} as documented (cmekctl policy prints the policy)."),
                    ));
                }
                if kinds.contains(&Who::Everyone) && touches_kms {
                    out.push(finding(
                        FindingCode::EveryonePrincipal,
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
                format!("{label} grants Anthropic actions beyond kms:Encrypt, kms:Decrypt and kms:DescribeKey ({}); Anthropic's validation checks that they are denied", extra.join(", ")),
                "Grant only kms:Encrypt and kms:Decrypt (with the organization condition) and kms:DescribeKey (without conditions).",
            ));
        }
    }
}

/// The organization UUID the checks send: the target's, else the first one
/// the policy's own condition names (so that the compartment checks still
/// mean something when the organization is not known).
fn org_for_checks(doc: &PolicyDocument, role: &str, target: &AnalysisTarget<'_>) -> Option<String> {
    if let Some(o) = target.org {
        return Some(o.to_string());
    }
    crypto_grants(doc, role)
        .iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.key.eq_ignore_ascii_case(ORG_CONDITION_KEY) && !c.operator.contains("Not"))
        .flat_map(|c| c.values.first().cloned())
        .next()
}

fn check_crypto(doc: &PolicyDocument, role: &str, target: &AnalysisTarget<'_>, out: &mut Vec<Finding>) {
    let grants = crypto_grants(doc, role);
    let missing: Vec<&str> = ["kms:Encrypt", "kms:Decrypt"]
        .into_iter()
        .filter(|a| !grants.iter().any(|s| s.covers_action(a)))
        .collect();
    if !missing.is_empty() {
        out.push(finding(
            FindingCode::NoCryptoGrant,
            format!("the key policy does not grant {role} {}", missing.join(" and ")),
            "Add the AllowAnthropicCMEKCrypto statement to the key policy itself: cross-account KMS access must be granted there, an IAM policy in your account cannot grant it.",
        ));
        return;
    }
    let live = target.compartment.to_string();
    let zeros = CompartmentId::VALIDATION.to_string();
    // With Deny statements (the binding checks: a Deny that stops a foreign
    // organization does its job)...
    let ask = |action: &str, ctx: &[(&str, &str)]| decide(doc, role, &Request { action, context: ctx });
    // ...and without them (the admission checks: a blocking Deny is a finding of its own).
    let granted = |action: &str, ctx: &[(&str, &str)]| {
        grants
            .iter()
            .filter(|s| s.covers_action(action))
            .map(|s| super::eval::evaluate_all(s, &Request { action, context: ctx }))
            .max()
            .unwrap_or(Truth::False)
    };
    let both = |ctx: &[(&str, &str)]| granted("kms:Encrypt", ctx).min(granted("kms:Decrypt", ctx));

    // The organization binding: a request naming another organization, or
    // none at all, must not be able to encrypt (validation checks both).
    let foreign_org = ask(
        "kms:Encrypt",
        &[(ORG_CONTEXT_KEY, FOREIGN), (COMPARTMENT_CONTEXT_KEY, &live)],
    );
    let no_context = ask("kms:Encrypt", &[]);
    let org_values: Vec<&String> = grants
        .iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.key.eq_ignore_ascii_case(ORG_CONDITION_KEY) && !c.operator.contains("Not"))
        .flat_map(|c| c.values.iter())
        .collect();
    if foreign_org == Truth::True || no_context == Truth::True {
        let unbound: Vec<String> = grants
            .iter()
            .filter(|s| {
                s.covers_action("kms:Encrypt")
                    && !s
                        .conditions
                        .iter()
                        .any(|c| c.key.eq_ignore_ascii_case(ORG_CONDITION_KEY) && !c.operator.contains("Not"))
            })
            .map(|s| s.label())
            .collect();
        out.push(finding(
            FindingCode::NoOrgCondition,
            format!(
                "{} lets Anthropic encrypt without requiring your organization's UUID in the encryption context; Anthropic's validation refuses such a key (documentation since September 2026)",
                if unbound.is_empty() { "the key policy".to_owned() } else { unbound.join(", ") }
            ),
            format!(
                "Add \"StringEquals\": {{\"{ORG_CONDITION_KEY}\": [\"{}\"]}} to Anthropic's crypto grant (the workflow does this itself unless manageKeyPolicy is false).",
                target.org.map(ToString::to_string).unwrap_or_else(|| "<organization UUID from GET /v1/organizations/me>".into())
            ),
        ));
    }
    let Some(org) = org_for_checks(doc, role, target) else {
        // No organization condition to satisfy and none known: the
        // compartment checks below would only repeat the finding above.
        return;
    };
    let live_ctx = [
        (ORG_CONTEXT_KEY, org.as_str()),
        (COMPARTMENT_CONTEXT_KEY, live.as_str()),
    ];
    if both(&live_ctx) == Truth::False {
        let org_only = [(ORG_CONTEXT_KEY, org.as_str())];
        let other_org_allowed = !org_values.is_empty() && !org_values.iter().any(|v| **v == org);
        if target.org.is_some() && other_org_allowed && both(&org_only) == Truth::False {
            out.push(finding(
                FindingCode::OrgConditionMismatch,
                format!(
                    "the organization condition on Anthropic's grant lists {}, not your organization {org}",
                    list_or_none(&org_values)
                ),
                format!("Add \"{org}\" to {ORG_CONDITION_KEY} (several organizations may share a key by listing each UUID)."),
            ));
        } else {
            compartment_finding(&grants, &live, out);
        }
    } else if both(&[
        (ORG_CONTEXT_KEY, org.as_str()),
        (COMPARTMENT_CONTEXT_KEY, zeros.as_str()),
    ]) == Truth::False
    {
        out.push(finding(
            FindingCode::ConditionMissesValidationId,
            format!("the compartment condition admits this workspace but not the all-zeros id {zeros}, which Anthropic's validation sends for a key not yet attached to any workspace"),
            format!("Add \"{zeros}\" to {COMPARTMENT_CONDITION_KEY} so that validation passes before the key is attached."),
        ));
    }
    for s in &grants {
        for c in s
            .conditions
            .iter()
            .filter(|c| c.key.eq_ignore_ascii_case(COMPARTMENT_CONDITION_KEY) && c.operator == "StringEquals")
        {
            if s.covers_action("kms:Encrypt") {
                out.push(finding(
                    FindingCode::LegacyCompartmentCondition,
                    format!(
                        "{} restricts the compartment with StringEquals (the July/August 2026 form); the current documentation uses StringEqualsIfExists on {} next to the organization condition",
                        s.label(),
                        c.key
                    ),
                    "Let the workflow upgrade the policy (manageKeyPolicy, the default), or rewrite the statement as `cmekctl policy` prints it.",
                ));
            }
        }
        for c in s.conditions.iter().filter(|c| {
            // Network conditions have findings of their own (`super::network`).
            !super::network::is_network_key(&c.key)
                && evaluate(
                    c,
                    &Request {
                        action: "kms:Encrypt",
                        context: &live_ctx,
                    },
                ) == Truth::Unknown
        }) {
            out.push(finding(
                FindingCode::UnrecognisedCondition,
                format!("{} conditions Anthropic's access on {} {:?}, which Anthropic's requests may not satisfy", s.label(), c.operator, c.key),
                "Remove the condition from Anthropic's grant, or confirm with Anthropic that its requests carry it.",
            ));
        }
    }
}

/// The compartment condition does not admit the workspace: a placeholder
/// left in, or another workspace's id.
fn compartment_finding(grants: &[&Statement], live: &str, out: &mut Vec<Finding>) {
    let values: Vec<&String> = grants
        .iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| context_key(&c.key).is_some_and(|k| k.eq_ignore_ascii_case(COMPARTMENT_CONTEXT_KEY)))
        .flat_map(|c| c.values.iter())
        .collect();
    let placeholders: Vec<&str> = values
        .iter()
        .filter(|v| v.parse::<CompartmentId>().is_err() && !v.contains('*'))
        .map(|v| v.as_str())
        .collect();
    if placeholders.is_empty() {
        out.push(finding(
            FindingCode::ConditionMissesCompartment,
            format!(
                "the compartment condition on Anthropic's grant does not admit this workspace's compartment {live} (it lists {})",
                list_or_none(&values)
            ),
            format!("Add \"{live}\" to {COMPARTMENT_CONDITION_KEY} in the StringEqualsIfExists condition before attaching (KMS otherwise answers an opaque AccessDeniedException)."),
        ));
    } else {
        out.push(finding(
            FindingCode::PlaceholderInCondition,
            format!(
                "the compartment condition still holds a value that is not a compartment id: {}",
                placeholders.join(", ")
            ),
            format!(
                "Replace it with the workspace's compartment id \"{live}\" (Get Workspace → compartment_id)."
            ),
        ));
    }
}

fn check_describe(doc: &PolicyDocument, role: &str, out: &mut Vec<Finding>) {
    let grants: Vec<&Statement> = doc
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow && reaches_role(s, role) && s.covers_action("kms:DescribeKey"))
        .collect();
    if grants.is_empty() {
        out.push(finding(
            FindingCode::NoDescribeGrant,
            format!("the key policy does not grant {role} kms:DescribeKey"),
            "Add the AllowAnthropicCMEKDescribe statement (kms:DescribeKey, no condition): Anthropic reads the key's metadata at start-up.",
        ));
    } else if grants.iter().all(|s| {
        super::eval::evaluate_all(
            s,
            &Request {
                action: "kms:DescribeKey",
                context: &[],
            },
        ) == Truth::False
    }) {
        out.push(finding(
            FindingCode::DescribeUnderCondition,
            "kms:DescribeKey is granted to Anthropic only under an encryption-context condition, which always denies it (DescribeKey carries no encryption context)".into(),
            "Grant kms:DescribeKey in its own statement without the condition (AllowAnthropicCMEKDescribe).",
        ));
    }
}

fn check_denies(doc: &PolicyDocument, role: &str, target: &AnalysisTarget<'_>, out: &mut Vec<Finding>) {
    let live = target.compartment.to_string();
    let org = org_for_checks(doc, role, target).unwrap_or_default();
    let ctx = [
        (ORG_CONTEXT_KEY, org.as_str()),
        (COMPARTMENT_CONTEXT_KEY, live.as_str()),
    ];
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
        let truth = blocked
            .iter()
            .map(|action| {
                let context: &[(&str, &str)] = if *action == "kms:DescribeKey" { &[] } else { &ctx };
                super::eval::evaluate_all(s, &Request { action, context })
            })
            .max()
            .unwrap_or(Truth::False);
        // A Deny that depends only on network conditions is judged by
        // `super::network`, which knows what Anthropic's requests carry.
        let only_network = s
            .conditions
            .iter()
            .all(|c| super::network::is_network_key(&c.key))
            && !s.conditions.is_empty();
        match truth {
            Truth::False => {}
            Truth::Unknown if only_network => {}
            Truth::True => out.push(finding(
                FindingCode::DenyBlocksAnthropic,
                format!("{} denies Anthropic's role {}", s.label(), blocked.join(", ")),
                "Exclude Anthropic's role from the Deny (an explicit Deny overrides every Allow).",
            )),
            Truth::Unknown => out.push(finding(
                FindingCode::DenyMayBlockAnthropic,
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

pub(super) fn check_root_admin(doc: &PolicyDocument, account: Option<&AccountId>, out: &mut Vec<Finding>) {
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
