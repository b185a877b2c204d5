use serde_json::{Value, json};

use super::eval::{Request, Truth, decide};
use super::*;
use crate::geo::Geo;
use crate::ids::{AccountId, CompartmentId, OrgUuid};

const ACCOUNT: &str = "111122223333";
const ORG: &str = "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13";
const OTHER_ORG: &str = "0a8d2c4e-6b1f-4e3a-9c5d-7f2b8e1a3c6d";
/// An organization no policy here names.
const STRANGER: &str = "c3d2e1f0-a9b8-4c7d-8e6f-5a4b3c2d1e0f";
const COMPARTMENT: &str = "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f";
const OTHER: &str = "9d1c7a3b-2e4f-4a5b-8c6d-7e8f9a0b1c2d";
const ZEROS: &str = "00000000-0000-0000-0000-000000000000";
const ROLE: &str = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";
const ORG_KEY: &str = "kms:EncryptionContext:anthropic:org_uuid";
const COMP_KEY: &str = "kms:EncryptionContext:anthropic:compartment_uuid";

fn account() -> AccountId {
    ACCOUNT.parse().unwrap()
}
fn org() -> OrgUuid {
    ORG.parse().unwrap()
}
fn compartment() -> CompartmentId {
    COMPARTMENT.parse().unwrap()
}
fn other() -> CompartmentId {
    OTHER.parse().unwrap()
}

fn root() -> Value {
    json!({"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"})
}
/// Anthropic's crypto grant with a condition block as given.
fn crypto_with(condition: Value) -> Value {
    json!({"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": ROLE},
        "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*", "Condition": condition})
}
/// The current contract's crypto grant (documentation since September 2026).
fn current(compartments: Value) -> Value {
    crypto_with(json!({"StringEquals": {ORG_KEY: [ORG]}, "StringEqualsIfExists": {COMP_KEY: compartments}}))
}
/// The July/August 2026 crypto grant: compartments under StringEquals, no organization.
fn legacy(compartments: Value) -> Value {
    crypto_with(json!({"StringEquals": {COMP_KEY: compartments}}))
}
fn describe() -> Value {
    json!({"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:DescribeKey", "Resource": "*"})
}
fn policy(statements: Vec<Value>) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn target<'a>(org: Option<&'a OrgUuid>, acct: &'a AccountId) -> AnalysisTarget<'a> {
    AnalysisTarget {
        geo: Geo::Us,
        compartment: compartment(),
        org,
        key_account: Some(acct),
    }
}

fn codes(policy_json: &str) -> Vec<FindingCode> {
    let (acct, o) = (account(), org());
    let mut c: Vec<FindingCode> = analyse(policy_json, target(Some(&o), &acct))
        .unwrap()
        .into_iter()
        .map(|f| f.code)
        .collect();
    c.sort();
    c.dedup();
    c
}

#[test]
fn built_policy_is_the_documented_policy() {
    // Anthropic's "Configure AWS KMS for CMEK" (current documentation, as in
    // cmek-facts.md): org condition required, compartments optional under
    // StringEqualsIfExists. The list carries the all-zeros id as well (see
    // `compartment_values` for why).
    let golden: Value = serde_json::from_str(&format!(
        r#"{{
  "Version": "2012-10-17",
  "Statement": [
    {{
      "Sid": "AccountRootAdmin",
      "Effect": "Allow",
      "Principal": {{"AWS": "arn:aws:iam::{ACCOUNT}:root"}},
      "Action": "kms:*",
      "Resource": "*"
    }},
    {{
      "Sid": "AllowAnthropicCMEKCrypto",
      "Effect": "Allow",
      "Principal": {{"AWS": "arn:aws:iam::915198916910:role/anthropic-cmek-client-us"}},
      "Action": ["kms:Encrypt", "kms:Decrypt"],
      "Resource": "*",
      "Condition": {{
        "StringEquals": {{"kms:EncryptionContext:anthropic:org_uuid": ["{ORG}"]}},
        "StringEqualsIfExists": {{"kms:EncryptionContext:anthropic:compartment_uuid": ["{COMPARTMENT}", "{ZEROS}"]}}
      }}
    }},
    {{
      "Sid": "AllowAnthropicCMEKDescribe",
      "Effect": "Allow",
      "Principal": {{"AWS": "arn:aws:iam::915198916910:role/anthropic-cmek-client-us"}},
      "Action": "kms:DescribeKey",
      "Resource": "*"
    }}
  ]
}}"#
    ))
    .unwrap();
    let built = key_policy(&account(), Geo::Us, &org(), Scope::Workspaces(&[compartment()]));
    assert_eq!(built, golden);
    assert_eq!(to_policy_string(&built), golden.to_string());
    assert_eq!(codes(&built.to_string()), vec![]);
    assert_eq!(
        generation(&PolicyDocument::from_value(&built).unwrap(), Geo::Us),
        ContractGeneration::Current
    );
}

#[test]
fn organization_scope_binds_the_org_and_nothing_else() {
    let built = key_policy(&account(), Geo::Us, &org(), Scope::Organization);
    let condition = &built["Statement"][1]["Condition"];
    assert_eq!(condition, &json!({"StringEquals": {ORG_KEY: [ORG]}}));
    assert_eq!(codes(&built.to_string()), vec![]);
    // Any workspace of the organization is admitted; another organization is not.
    let doc = PolicyDocument::from_value(&built).unwrap();
    let ask = |o: &str, c: &str| {
        decide(
            &doc,
            ROLE,
            &Request {
                action: "kms:Encrypt",
                context: &[("anthropic:org_uuid", o), ("anthropic:compartment_uuid", c)],
            },
        )
    };
    assert_eq!(ask(ORG, OTHER), Truth::True);
    assert_eq!(ask(OTHER_ORG, COMPARTMENT), Truth::False);
}

#[test]
fn compartments_are_deduplicated_with_the_zeros_id_last() {
    assert_eq!(
        compartment_values(&[compartment(), other(), compartment(), CompartmentId::VALIDATION]),
        vec![COMPARTMENT.to_owned(), OTHER.to_owned(), ZEROS.to_owned()]
    );
}

#[test]
fn analysis_table() {
    use FindingCode::*;
    let wizard = json!({
        "Id": "key-consolepolicy-3",
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "Allow use of the key", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::915198916910:root"},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*"},
            {"Sid": "Allow attachment of persistent resources", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::915198916910:root"},
             "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
             "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
        ]
    })
    .to_string();
    let cases: Vec<(&str, String, Vec<FindingCode>)> = vec![
        ("current contract, restricted", policy(vec![root(), current(json!([COMPARTMENT, ZEROS])), describe()]), vec![]),
        ("current contract, org only", policy(vec![root(), crypto_with(json!({"StringEquals": {ORG_KEY: ORG}})), describe()]), vec![]),
        ("current contract, two organizations share the key", policy(vec![root(), crypto_with(json!({"StringEquals": {ORG_KEY: [OTHER_ORG, ORG]}})), describe()]), vec![]),
        ("current contract without the zeros id", policy(vec![root(), current(json!([COMPARTMENT])), describe()]), vec![ConditionMissesValidationId]),
        ("another organization's key", policy(vec![root(), crypto_with(json!({"StringEquals": {ORG_KEY: [OTHER_ORG]}})), describe()]), vec![OrgConditionMismatch]),
        ("July 2026 key (compartment only)", policy(vec![root(), legacy(json!(COMPARTMENT)), describe()]), vec![ConditionMissesValidationId, LegacyCompartmentCondition, NoOrgCondition]),
        ("August 2026 key (zeros and compartment)", policy(vec![root(), legacy(json!([ZEROS, COMPARTMENT])), describe()]), vec![LegacyCompartmentCondition, NoOrgCondition]),
        ("console wizard output", wizard, vec![AccountWidePrincipal, ExtraActions, NoOrgCondition]),
        ("placeholder left in", policy(vec![root(), current(json!("<compartment-uuid>")), describe()]), vec![PlaceholderInCondition]),
        ("IAM-only setup: no grant in the key policy", policy(vec![root()]), vec![NoCryptoGrant, NoDescribeGrant]),
        ("other workspace's compartment", policy(vec![root(), current(json!([ZEROS, OTHER])), describe()]), vec![ConditionMissesCompartment]),
        ("grant without any condition", policy(vec![root(), json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}), describe()]), vec![NoOrgCondition]),
        ("DescribeKey folded into the conditioned statement", policy(vec![root(), {
            let mut s = current(json!([COMPARTMENT, ZEROS]));
            s["Action"] = json!(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]);
            s
        }]), vec![DescribeUnderCondition]),
        ("no DescribeKey at all", policy(vec![root(), current(json!([COMPARTMENT, ZEROS]))]), vec![NoDescribeGrant]),
        ("a role Anthropic never published, next to the real one", policy(vec![root(), {
            let mut s = current(json!([COMPARTMENT, ZEROS]));
            s["Principal"] = json!({"AWS": [ROLE, "arn:aws:iam::915198916910:role/cmek-helper"]});
            s
        }, describe()]), vec![UnpublishedAnthropicPrincipal]),
        ("only an unpublished role", policy(vec![root(), {
            let mut s = current(json!([COMPARTMENT, ZEROS]));
            s["Principal"] = json!({"AWS": "arn:aws:iam::915198916910:role/anthropic-cmek-client-eu"});
            s
        }, describe()]), vec![NoCryptoGrant, UnpublishedAnthropicPrincipal]),
        ("kms:* to Anthropic's role", policy(vec![root(), {
            let mut s = current(json!([COMPARTMENT, ZEROS]));
            s["Action"] = json!("kms:*");
            s
        }, describe()]), vec![ExtraActions]),
        ("no root admin statement", policy(vec![current(json!([COMPARTMENT, ZEROS])), describe()]), vec![NoRootAdmin]),
        ("single Statement object, case-insensitive operator", json!({"Version": "2012-10-17", "Statement": {
            "Effect": "Allow", "Principal": {"AWS": [ROLE]}, "Action": "kms:*crypt", "Resource": ["*"],
            "Condition": {"ForAnyValue:StringEqualsIgnoreCase": {"kms:encryptioncontext:anthropic:compartment_uuid": [ZEROS, COMPARTMENT.to_uppercase()]}}}}).to_string(),
            vec![ExtraActions, NoDescribeGrant, NoOrgCondition, NoRootAdmin]),
        ("wildcard principal", policy(vec![root(), {
            let mut s = current(json!([COMPARTMENT, ZEROS]));
            s["Principal"] = json!("*");
            s
        }, describe()]), vec![EveryonePrincipal]),
        ("org-ID guard Deny (RCP-like)", policy(vec![root(), current(json!([COMPARTMENT, ZEROS])), describe(),
            json!({"Sid": "DenyOutsideOrg", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
                   "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-abc123"}}})]), vec![DenyMayBlockAnthropic]),
        ("unconditional Deny on Decrypt", policy(vec![root(), current(json!([COMPARTMENT, ZEROS])), describe(),
            json!({"Effect": "Deny", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*"})]), vec![DenyBlocksAnthropic]),
        ("StringLike with a wildcard still admits", policy(vec![root(), crypto_with(
            json!({"StringEquals": {ORG_KEY: ORG}, "StringLike": {COMP_KEY: "*"}})), describe()]), vec![]),
        ("NotPrincipal allow", policy(vec![root(), {
            let mut s = current(json!([COMPARTMENT, ZEROS]));
            s.as_object_mut().unwrap().remove("Principal");
            s["NotPrincipal"] = json!({"AWS": "arn:aws:iam::444455556666:root"});
            s
        }, describe()]), vec![NotPrincipalGrant]),
        ("upgraded key with the existing-data statement", policy(vec![root(), current(json!([OTHER, COMPARTMENT, ZEROS])), describe(),
            json!({"Sid": EXISTING_DATA_SID, "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*",
                   "Condition": {"StringEquals": {COMP_KEY: [OTHER]}}})]), vec![]),
    ];
    assert!(cases.len() >= 20);
    for (name, json, mut expected) in cases {
        expected.sort();
        assert_eq!(codes(&json), expected, "case: {name}");
    }
}

#[test]
fn severity_has_one_source_and_errors_are_never_acceptable() {
    use FindingCode::*;
    for code in [
        NoOrgCondition,
        OrgConditionMismatch,
        AccountWidePrincipal,
        ExtraActions,
        NoCryptoGrant,
    ] {
        assert_eq!(code.severity(), Severity::Error, "{code:?}");
        assert!(!code.acceptable(), "{code:?}");
    }
    for code in [
        EveryonePrincipal,
        UnpublishedAnthropicPrincipal,
        NotPrincipalGrant,
        NoRootAdmin,
    ] {
        assert!(code.acceptable(), "{code:?}");
    }
    assert_eq!(ExtraActions.name(), "EXTRA_ACTIONS");
    // Every finding carries its code's severity.
    let (acct, o) = (account(), org());
    let wizard = policy(vec![
        root(),
        json!({"Effect": "Allow", "Principal": {"AWS": "915198916910"}, "Action": "kms:*", "Resource": "*"}),
    ]);
    for f in analyse(&wizard, target(Some(&o), &acct)).unwrap() {
        assert_eq!(f.severity, f.code.severity(), "{f:?}");
    }
}

#[test]
fn unknown_organization_still_finds_a_missing_condition() {
    let acct = account();
    let legacy_policy = policy(vec![root(), legacy(json!([ZEROS, COMPARTMENT])), describe()]);
    let found: Vec<FindingCode> = analyse(&legacy_policy, target(None, &acct))
        .unwrap()
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert!(found.contains(&FindingCode::NoOrgCondition), "{found:?}");
    // With an org condition present, its value is taken as the intended one.
    let fine = policy(vec![root(), current(json!([COMPARTMENT, ZEROS])), describe()]);
    assert!(analyse(&fine, target(None, &acct)).unwrap().is_empty());
    let wrong_compartment = policy(vec![root(), current(json!([OTHER, ZEROS])), describe()]);
    let found: Vec<FindingCode> = analyse(&wrong_compartment, target(None, &acct))
        .unwrap()
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert_eq!(found, vec![FindingCode::ConditionMissesCompartment]);
}

#[test]
fn generations_are_recognised() {
    let gen_of =
        |statements: Vec<Value>| generation(&PolicyDocument::parse(&policy(statements)).unwrap(), Geo::Us);
    assert_eq!(
        gen_of(vec![root(), legacy(json!(COMPARTMENT)), describe()]),
        ContractGeneration::July2026
    );
    assert_eq!(
        gen_of(vec![root(), legacy(json!([ZEROS, COMPARTMENT])), describe()]),
        ContractGeneration::August2026
    );
    assert_eq!(
        gen_of(vec![root(), current(json!([COMPARTMENT])), describe()]),
        ContractGeneration::Current
    );
    assert_eq!(gen_of(vec![root()]), ContractGeneration::Unrecognised);
    assert_eq!(
        serde_json::to_value(ContractGeneration::August2026).unwrap(),
        json!("2026-08")
    );
}

#[test]
fn findings_carry_the_fix() {
    let (acct, o) = (account(), org());
    let findings = analyse(
        &policy(vec![root(), current(json!([ZEROS, OTHER])), describe()]),
        target(Some(&o), &acct),
    )
    .unwrap();
    let f = &findings[0];
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message.contains(OTHER) && f.message.contains(COMPARTMENT),
        "{}",
        f.message
    );
    assert!(f.fix.contains(COMPARTMENT), "{}", f.fix);
    let legacy_findings = analyse(
        &policy(vec![root(), legacy(json!([ZEROS, COMPARTMENT])), describe()]),
        target(Some(&o), &acct),
    )
    .unwrap();
    let missing = legacy_findings
        .iter()
        .find(|f| f.code == FindingCode::NoOrgCondition)
        .unwrap();
    assert!(
        missing.message.contains("validation refuses"),
        "{}",
        missing.message
    );
    assert!(missing.fix.contains(ORG), "{}", missing.fix);
}

#[test]
fn malformed_policy_is_an_error_not_a_finding() {
    let (acct, o) = (account(), org());
    assert!(matches!(
        analyse("{\"Statement\": [", target(Some(&o), &acct)),
        Err(PolicyError::NotJson(_))
    ));
    assert!(matches!(
        analyse(
            "{\"Statement\": [{\"Effect\": \"Allow\"}]}",
            target(Some(&o), &acct)
        ),
        Err(PolicyError::Malformed(_))
    ));
}

fn merged(policy_json: &str, m: &Merge<'_>) -> Value {
    match merge(policy_json, m).unwrap() {
        MergeOutcome::Updated { policy, .. } => policy,
        MergeOutcome::Unchanged => panic!("expected an update"),
    }
}

fn merge_for<'a>(org: &'a OrgUuid, protected: &'a [CompartmentId]) -> Merge<'a> {
    Merge {
        geo: Geo::Us,
        org,
        compartment: compartment(),
        restrict_to_workspaces: true,
        protected,
    }
}

/// What Anthropic's role may do for a compartment under a policy.
fn can(policy_json: &str, action: &str, org: Option<&str>, compartment: &str) -> Truth {
    let doc = PolicyDocument::parse(policy_json).unwrap();
    let mut ctx = vec![("anthropic:compartment_uuid", compartment)];
    if let Some(o) = org {
        ctx.push(("anthropic:org_uuid", o));
    }
    decide(
        &doc,
        ROLE,
        &Request {
            action,
            context: &ctx,
        },
    )
}

#[test]
fn merge_adds_a_workspace_to_a_current_policy_keeping_everything_else() {
    let extra = json!({"Sid": "AuditorsRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/auditor"}, "Action": "kms:DescribeKey", "Resource": "*"});
    let original = policy(vec![
        root(),
        current(json!([OTHER, ZEROS])),
        describe(),
        extra.clone(),
    ]);
    let o = org();
    let after = merged(&original, &merge_for(&o, &[]));
    let statements = after["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 4);
    assert_eq!(statements[3], extra);
    assert_eq!(
        statements[1]["Condition"],
        json!({"StringEquals": {ORG_KEY: [ORG]}, "StringEqualsIfExists": {COMP_KEY: [OTHER, ZEROS, COMPARTMENT]}})
    );
    assert_eq!(codes(&after.to_string()), vec![]);
    // Merging again changes nothing.
    assert_eq!(
        merge(&after.to_string(), &merge_for(&o, &[])).unwrap(),
        MergeOutcome::Unchanged
    );
}

#[test]
fn merge_upgrades_an_august_2026_key_that_protects_data() {
    // Attached to workspace OTHER under the August contract; now adopted for COMPARTMENT.
    let original = policy(vec![root(), legacy(json!([ZEROS, OTHER])), describe()]);
    let o = org();
    let protected = [other()];
    let MergeOutcome::Updated {
        policy: after,
        changes,
    } = merge(&original, &merge_for(&o, &protected)).unwrap()
    else {
        panic!("expected an update")
    };
    let text = after.to_string();
    assert_eq!(
        after["Statement"][1]["Condition"],
        json!({"StringEquals": {ORG_KEY: [ORG]}, "StringEqualsIfExists": {COMP_KEY: [ZEROS, OTHER, COMPARTMENT]}})
    );
    assert_eq!(
        after["Statement"][3],
        json!({"Sid": EXISTING_DATA_SID, "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt",
               "Resource": "*", "Condition": {"StringEquals": {COMP_KEY: [OTHER]}}})
    );
    assert!(
        changes.iter().any(|c| c.contains(EXISTING_DATA_SID)),
        "{changes:?}"
    );
    // OTHER still decrypts what it wrote before (no organization in that
    // context) and what it writes now; COMPARTMENT is admitted; nothing else is.
    assert_eq!(can(&text, "kms:Decrypt", None, OTHER), Truth::True);
    assert_eq!(can(&text, "kms:Decrypt", Some(ORG), OTHER), Truth::True);
    assert_eq!(can(&text, "kms:Encrypt", Some(ORG), OTHER), Truth::True);
    assert_eq!(can(&text, "kms:Encrypt", Some(ORG), COMPARTMENT), Truth::True);
    assert_eq!(can(&text, "kms:Encrypt", Some(OTHER_ORG), OTHER), Truth::False);
    assert_eq!(can(&text, "kms:Decrypt", None, COMPARTMENT), Truth::False);
    assert_eq!(codes(&text), vec![]);
    // Re-running with the same inputs is a no-op; a second protected
    // workspace extends the existing-data statement.
    assert_eq!(
        merge(&text, &merge_for(&o, &protected)).unwrap(),
        MergeOutcome::Unchanged
    );
    let both = [other(), compartment()];
    let again = merged(&text, &merge_for(&o, &both));
    assert_eq!(
        again["Statement"][3]["Condition"]["StringEquals"][COMP_KEY],
        json!([OTHER, COMPARTMENT])
    );
}

#[test]
fn merge_upgrades_a_july_2026_key_with_a_single_value() {
    let original = policy(vec![root(), legacy(json!(OTHER))]);
    let o = org();
    let after = merged(&original, &merge_for(&o, &[other()]));
    assert_eq!(
        after["Statement"][1]["Condition"]["StringEqualsIfExists"][COMP_KEY],
        json!([OTHER, COMPARTMENT, ZEROS])
    );
    assert_eq!(after["Statement"][2]["Sid"], json!(DESCRIBE_SID));
    assert_eq!(after["Statement"][3]["Sid"], json!(EXISTING_DATA_SID));
    assert_eq!(codes(&after.to_string()), vec![]);
}

#[test]
fn merge_gives_a_default_key_policy_both_statements() {
    let default_policy = json!({"Version": "2012-10-17", "Statement": root()}).to_string();
    let o = org();
    let after = merged(&default_policy, &merge_for(&o, &[]));
    assert_eq!(after["Statement"].as_array().unwrap().len(), 3);
    assert_eq!(codes(&after.to_string()), vec![]);
    let unrestricted = Merge {
        restrict_to_workspaces: false,
        ..merge_for(&o, &[])
    };
    let after = merged(&default_policy, &unrestricted);
    assert_eq!(
        after["Statement"][1]["Condition"],
        json!({"StringEquals": {ORG_KEY: [ORG]}})
    );
}

#[test]
fn merge_never_narrows_an_unrestricted_grant() {
    // An org-only grant already admits every workspace: no compartment list is added.
    let org_only = policy(vec![
        root(),
        crypto_with(json!({"StringEquals": {ORG_KEY: [ORG]}})),
        describe(),
    ]);
    let o = org();
    assert_eq!(
        merge(&org_only, &merge_for(&o, &[])).unwrap(),
        MergeOutcome::Unchanged
    );
    // A legacy grant with no condition at all gains the organization, and the
    // workspaces it protects keep decrypting their old data.
    let open = policy(vec![
        root(),
        json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}),
        describe(),
    ]);
    let after = merged(&open, &merge_for(&o, &[other()])).to_string();
    assert_eq!(can(&after, "kms:Decrypt", None, OTHER), Truth::True);
    assert_eq!(can(&after, "kms:Encrypt", Some(ORG), COMPARTMENT), Truth::True);
    assert_eq!(
        can(&after, "kms:Encrypt", Some(OTHER_ORG), COMPARTMENT),
        Truth::False
    );
}

#[test]
fn merge_adds_a_second_organization_without_removing_the_first() {
    let theirs = policy(vec![
        root(),
        crypto_with(json!({"StringEquals": {ORG_KEY: OTHER_ORG}})),
        describe(),
    ]);
    let o = org();
    let after = merged(&theirs, &merge_for(&o, &[]));
    assert_eq!(
        after["Statement"][1]["Condition"]["StringEquals"][ORG_KEY],
        json!([OTHER_ORG, ORG])
    );
}

#[test]
fn merge_refuses_a_rewrite_that_would_cut_a_workspace_off() {
    // Someone hand-wrote an existing-data statement that also requires the
    // organization: after the upgrade nothing would let OTHER decrypt the
    // data it wrote before the organization condition. The guard refuses.
    let original = policy(vec![
        root(),
        legacy(json!([OTHER])),
        describe(),
        json!({"Sid": EXISTING_DATA_SID, "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*",
               "Condition": {"StringEquals": {COMP_KEY: [OTHER], ORG_KEY: [ORG]}}}),
    ]);
    let o = org();
    let err = merge(&original, &merge_for(&o, &[other()])).unwrap_err();
    assert!(matches!(err, PolicyError::WouldDropAccess(_)), "{err}");
    assert!(err.to_string().contains(OTHER), "{err}");
}

#[test]
fn merge_rejects_malformed_policy() {
    let o = org();
    assert!(merge("not json", &merge_for(&o, &[])).is_err());
    assert!(merge("{\"Statement\": 5}", &merge_for(&o, &[])).is_err());
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn compartments() -> impl Strategy<Value = Vec<&'static str>> {
        proptest::sample::subsequence(
            vec![COMPARTMENT, OTHER, ZEROS, "1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a6b"],
            0..=4,
        )
    }

    /// Key policies of every documented generation and some customer variations.
    fn policies() -> impl Strategy<Value = String> {
        let crypto = prop_oneof![
            compartments().prop_map(|c| legacy(json!(c))),
            compartments().prop_map(|c| current(json!(c))),
            Just(crypto_with(json!({"StringEquals": {ORG_KEY: [OTHER_ORG]}}))),
            Just(
                json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"})
            ),
        ];
        let extras = proptest::collection::vec(
            prop_oneof![
                Just(describe()),
                compartments().prop_map(
                    |c| json!({"Sid": EXISTING_DATA_SID, "Effect": "Allow", "Principal": {"AWS": ROLE},
                    "Action": "kms:Decrypt", "Resource": "*", "Condition": {"StringEquals": {COMP_KEY: c}}})
                ),
                Just(
                    json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/app"}, "Action": "kms:Encrypt", "Resource": "*"})
                ),
            ],
            0..3,
        );
        (proptest::option::of(crypto), extras).prop_map(|(c, extras)| {
            let mut statements = vec![root()];
            statements.extend(c);
            statements.extend(extras);
            policy(statements)
        })
    }

    proptest! {
        /// Whatever the starting policy (any documented generation, with
        /// customer additions) and whichever workspaces the key protects: the
        /// merge admits the new workspace, binds the organization, and takes
        /// away from no protected workspace a Decrypt (old or new data) or an
        /// Encrypt it had.
        #[test]
        fn merge_admits_the_workspace_and_drops_nobody(
            original in policies(),
            protected in compartments(),
            restrict in any::<bool>(),
        ) {
            let o = org();
            let protected: Vec<CompartmentId> = protected.iter().map(|c| c.parse().unwrap()).collect();
            let m = Merge { restrict_to_workspaces: restrict, ..merge_for(&o, &protected) };
            // Every documented generation merges: refusing one would strand it.
            let after = match merge(&original, &m) {
                Ok(MergeOutcome::Updated { policy, .. }) => policy.to_string(),
                Ok(MergeOutcome::Unchanged) => original.clone(),
                Err(e) => return Err(TestCaseError::fail(format!("{e}\n{original}"))),
            };
            prop_assert_eq!(can(&after, "kms:Encrypt", Some(ORG), COMPARTMENT), Truth::True, "{}", after);
            prop_assert_eq!(can(&after, "kms:Decrypt", Some(ORG), COMPARTMENT), Truth::True, "{}", after);
            prop_assert_eq!(can(&after, "kms:Encrypt", Some(STRANGER), COMPARTMENT), Truth::False, "{}", after);
            for c in &protected {
                let c = c.to_string();
                for (action, org) in [("kms:Decrypt", None), ("kms:Decrypt", Some(ORG)), ("kms:Encrypt", Some(ORG))] {
                    let (was, is) = (can(&original, action, org, &c), can(&after, action, org, &c));
                    prop_assert!(is >= was, "{action} {org:?} {c}: {was:?} -> {is:?}\n{original}\n{after}");
                }
                prop_assert_eq!(can(&after, "kms:Decrypt", None, &c), Truth::True, "{}", after);
            }
            // And it is idempotent.
            prop_assert_eq!(merge(&after, &m).unwrap(), MergeOutcome::Unchanged);
        }
    }
}

/// Accepted findings are stored by their stable name; records written
/// before that hold the Rust spelling. Both read back as the same code.
#[test]
fn finding_names_read_back_in_both_spellings() {
    use FindingCode::*;
    for code in [ExtraActions, EveryonePrincipal, NotPrincipalGrant, NoOrgCondition] {
        assert_eq!(FindingCode::from_name(&code.name()), Some(code));
        assert_eq!(FindingCode::from_name(&format!("{code:?}")), Some(code));
    }
    assert_eq!(FindingCode::from_name("EXTRA_ACTION"), None);
    assert_eq!(FindingCode::from_name(""), None);
}

/// Only the finding's code decides whether it blocks.
#[test]
fn what_blocks_is_decided_by_severity_and_acceptance() {
    let finding = |code: FindingCode| Finding {
        code,
        severity: code.severity(),
        message: String::new(),
        fix: String::new(),
    };
    assert!(finding(FindingCode::NoOrgCondition).blocks(&[FindingCode::NoOrgCondition]));
    assert!(finding(FindingCode::EveryonePrincipal).blocks(&[]));
    assert!(!finding(FindingCode::EveryonePrincipal).blocks(&[FindingCode::EveryonePrincipal]));
    assert!(!finding(FindingCode::NoRootAdmin).blocks(&[]));
}

/// Cause 4 of `cmek_key_disabled` (Troubleshoot CMEK): network conditions on
/// Anthropic's access, named by themselves and not as an unknown condition.
#[test]
fn network_conditions_on_anthropics_access_are_named() {
    let with_ip = crypto_with(json!({
        "StringEquals": {ORG_KEY: [ORG]},
        "IpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}
    }));
    let c = codes(&policy(vec![root(), with_ip, describe()]));
    assert!(c.contains(&FindingCode::IpConditionOnAnthropic), "{c:?}");
    assert!(!c.contains(&FindingCode::UnrecognisedCondition), "{c:?}");
    assert_eq!(FindingCode::IpConditionOnAnthropic.severity(), Severity::Warning);

    let with_vpc = crypto_with(json!({
        "StringEquals": {ORG_KEY: [ORG], "aws:SourceVpce": "vpce-0a1b2c3d"}
    }));
    let c = codes(&policy(vec![root(), with_vpc, describe()]));
    assert!(c.contains(&FindingCode::NetworkConditionBlocksAnthropic), "{c:?}");

    // A Deny for every request not through the customer's endpoint applies
    // to Anthropic (the key is absent from its requests).
    let deny = json!({"Sid": "OnlyThroughOurEndpoint", "Effect": "Deny", "Principal": "*", "Action": "kms:*",
        "Resource": "*", "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-0a1b2c3d"}}});
    let c = codes(&policy(vec![
        root(),
        current(json!([COMPARTMENT])),
        describe(),
        deny,
    ]));
    assert!(c.contains(&FindingCode::NetworkConditionBlocksAnthropic), "{c:?}");
    assert!(!c.contains(&FindingCode::DenyMayBlockAnthropic), "{c:?}");

    // `IfExists` on the Allow holds when the key is absent: no finding.
    let lenient = crypto_with(json!({
        "StringEquals": {ORG_KEY: [ORG]},
        "StringEqualsIfExists": {"aws:SourceVpce": "vpce-0a1b2c3d"}
    }));
    let c = codes(&policy(vec![root(), lenient, describe()]));
    assert!(
        !c.contains(&FindingCode::NetworkConditionBlocksAnthropic),
        "{c:?}"
    );
    // The documented policy has none.
    let c = codes(&policy(vec![
        root(),
        current(json!([COMPARTMENT, ZEROS])),
        describe(),
    ]));
    assert!(
        !c.contains(&FindingCode::NetworkConditionBlocksAnthropic)
            && !c.contains(&FindingCode::IpConditionOnAnthropic),
        "{c:?}"
    );
}
