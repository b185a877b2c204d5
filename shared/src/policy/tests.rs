use serde_json::{Value, json};

use super::*;
use crate::geo::Geo;
use crate::ids::{AccountId, CompartmentId};

const ACCOUNT: &str = "111122223333";
const COMPARTMENT: &str = "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f";
const OTHER: &str = "9d1c7a3b-2e4f-4a5b-8c6d-7e8f9a0b1c2d";
const ZEROS: &str = "00000000-0000-0000-0000-000000000000";
const ROLE: &str = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";

fn account() -> AccountId {
    ACCOUNT.parse().unwrap()
}
fn compartment() -> CompartmentId {
    COMPARTMENT.parse().unwrap()
}

fn root() -> Value {
    json!({"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"})
}
fn crypto(values: Value) -> Value {
    json!({"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": ROLE},
        "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:compartment_uuid": values}}})
}
fn describe() -> Value {
    json!({"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:DescribeKey", "Resource": "*"})
}
fn policy(statements: Vec<Value>) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn codes(policy_json: &str) -> Vec<FindingCode> {
    let acct = account();
    let target = AnalysisTarget {
        geo: Geo::Us,
        compartment: compartment(),
        key_account: Some(&acct),
    };
    let mut c: Vec<FindingCode> = analyse(policy_json, target)
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
    // The documented JSON from Anthropic's "Configure AWS KMS for CMEK", with the
    // condition listing the all-zeros id and the workspace's compartment.
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
        "StringEquals": {{
          "kms:EncryptionContext:anthropic:compartment_uuid": ["{ZEROS}", "{COMPARTMENT}"]
        }}
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
    let built = key_policy(&account(), Geo::Us, &[compartment()]);
    assert_eq!(built, golden);
    // Statement order is part of the contract: compare serialized forms too.
    assert_eq!(to_policy_string(&built), golden.to_string());
}

#[test]
fn built_policy_has_no_findings_and_dedupes_compartments() {
    let built = key_policy(
        &account(),
        Geo::Us,
        &[compartment(), compartment(), CompartmentId::VALIDATION],
    );
    assert_eq!(
        built["Statement"][1]["Condition"]["StringEquals"]["kms:EncryptionContext:anthropic:compartment_uuid"],
        json!([ZEROS, COMPARTMENT])
    );
    assert_eq!(codes(&built.to_string()), vec![]);
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
        ("documented policy (both ids)", policy(vec![root(), crypto(json!([ZEROS, COMPARTMENT])), describe()]), vec![]),
        ("documented policy, compartment only", policy(vec![root(), crypto(json!(COMPARTMENT)), describe()]), vec![ConditionMissesValidationId]),
        ("console wizard output", wizard, vec![AccountWidePrincipal, CryptoGrantWithoutCondition, ExtraActions]),
        ("placeholder left in", policy(vec![root(), crypto(json!("<compartment-uuid>")), describe()]), vec![PlaceholderInCondition]),
        ("IAM-only setup: no grant in the key policy", policy(vec![root()]), vec![NoCryptoGrant, NoDescribeGrant]),
        ("other workspace's compartment", policy(vec![root(), crypto(json!([ZEROS, OTHER])), describe()]), vec![ConditionMissesCompartment]),
        ("grant without condition", policy(vec![root(), json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}), describe()]), vec![CryptoGrantWithoutCondition]),
        ("DescribeKey folded into the conditioned statement", policy(vec![root(), {
            let mut s = crypto(json!([ZEROS, COMPARTMENT]));
            s["Action"] = json!(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]);
            s
        }]), vec![DescribeUnderCondition]),
        ("no DescribeKey at all", policy(vec![root(), crypto(json!([ZEROS, COMPARTMENT]))]), vec![NoDescribeGrant]),
        ("a role Anthropic never published", policy(vec![root(), {
            let mut s = crypto(json!([ZEROS, COMPARTMENT]));
            s["Principal"] = json!({"AWS": [ROLE, "arn:aws:iam::915198916910:role/cmek-helper"]});
            s
        }, describe()]), vec![UnpublishedAnthropicPrincipal]),
        ("only an unpublished role", policy(vec![root(), {
            let mut s = crypto(json!([ZEROS, COMPARTMENT]));
            s["Principal"] = json!({"AWS": "arn:aws:iam::915198916910:role/anthropic-cmek-client-eu"});
            s
        }, describe()]), vec![NoCryptoGrant, UnpublishedAnthropicPrincipal]),
        ("kms:* to Anthropic's role", policy(vec![root(), {
            let mut s = crypto(json!([ZEROS, COMPARTMENT]));
            s["Action"] = json!("kms:*");
            s
        }, describe()]), vec![ExtraActions]),
        ("no root admin statement", policy(vec![crypto(json!([ZEROS, COMPARTMENT])), describe()]), vec![NoRootAdmin]),
        ("single Statement object, lowercase-insensitive operator", json!({"Version": "2012-10-17", "Statement": {
            "Effect": "Allow", "Principal": {"AWS": [ROLE]}, "Action": "kms:*crypt", "Resource": ["*"],
            "Condition": {"ForAnyValue:StringEqualsIgnoreCase": {"kms:encryptioncontext:anthropic:compartment_uuid": [ZEROS, COMPARTMENT.to_uppercase()]}}}}).to_string(),
            vec![ExtraActions, NoDescribeGrant, NoRootAdmin]),
        ("wildcard principal", policy(vec![root(), {
            let mut s = crypto(json!([ZEROS, COMPARTMENT]));
            s["Principal"] = json!("*");
            s
        }, describe()]), vec![EveryonePrincipal]),
        ("org-ID guard Deny (RCP-like)", policy(vec![root(), crypto(json!([ZEROS, COMPARTMENT])), describe(),
            json!({"Sid": "DenyOutsideOrg", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
                   "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-abc123"}}})]), vec![DenyMayBlockAnthropic]),
        ("unconditional Deny on Decrypt", policy(vec![root(), crypto(json!([ZEROS, COMPARTMENT])), describe(),
            json!({"Effect": "Deny", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*"})]), vec![DenyBlocksAnthropic]),
        ("StringLike with a wildcard still admits", policy(vec![root(), {
            let mut s = crypto(json!("*"));
            s["Condition"] = json!({"StringLike": {"kms:EncryptionContext:anthropic:compartment_uuid": "*"}});
            s
        }, describe()]), vec![]),
        ("NotPrincipal allow", policy(vec![root(), json!({"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::444455556666:root"},
            "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:compartment_uuid": [ZEROS, COMPARTMENT]}}}), describe()]),
            vec![NotPrincipalGrant]),
    ];
    assert!(cases.len() >= 12);
    for (name, json, mut expected) in cases {
        expected.sort();
        assert_eq!(codes(&json), expected, "case: {name}");
    }
}

#[test]
fn findings_carry_severity_and_fix() {
    let acct = account();
    let target = AnalysisTarget {
        geo: Geo::Us,
        compartment: compartment(),
        key_account: Some(&acct),
    };
    let findings = analyse(
        &policy(vec![root(), crypto(json!([ZEROS, OTHER])), describe()]),
        target,
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
}

#[test]
fn malformed_policy_is_an_error_not_a_finding() {
    let acct = account();
    let target = AnalysisTarget {
        geo: Geo::Us,
        compartment: compartment(),
        key_account: Some(&acct),
    };
    assert!(matches!(
        analyse("{\"Statement\": [", target),
        Err(PolicyError::NotJson(_))
    ));
    assert!(matches!(
        analyse("{\"Statement\": [{\"Effect\": \"Allow\"}]}", target),
        Err(PolicyError::Malformed(_))
    ));
}

#[test]
fn merge_adds_compartment_keeping_everything_else() {
    let extra = json!({"Sid": "AuditorsRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/auditor"}, "Action": "kms:DescribeKey", "Resource": "*"});
    let original = policy(vec![
        root(),
        crypto(json!([ZEROS, OTHER])),
        describe(),
        extra.clone(),
    ]);
    let MergeOutcome::Updated(merged) = add_compartment(&original, Geo::Us, compartment()).unwrap() else {
        panic!("expected an update");
    };
    let statements = merged["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 4);
    assert_eq!(statements[3], extra);
    assert_eq!(
        statements[1]["Condition"]["StringEquals"]["kms:EncryptionContext:anthropic:compartment_uuid"],
        json!([ZEROS, OTHER, COMPARTMENT])
    );
    // Both workspaces are admitted afterwards.
    assert_eq!(codes(&merged.to_string()), vec![]);
    let acct = account();
    let other = AnalysisTarget {
        geo: Geo::Us,
        compartment: OTHER.parse().unwrap(),
        key_account: Some(&acct),
    };
    assert!(analyse(&merged.to_string(), other).unwrap().is_empty());
    // Adding again changes nothing.
    assert!(matches!(
        add_compartment(&merged.to_string(), Geo::Us, compartment()).unwrap(),
        MergeOutcome::Unchanged { .. }
    ));
}

#[test]
fn merge_turns_single_value_into_list_and_adds_missing_statements() {
    let single = policy(vec![root(), crypto(json!(OTHER))]);
    let MergeOutcome::Updated(merged) = add_compartment(&single, Geo::Us, compartment()).unwrap() else {
        panic!()
    };
    assert_eq!(
        merged["Statement"][1]["Condition"]["StringEquals"]["kms:EncryptionContext:anthropic:compartment_uuid"],
        json!([OTHER, ZEROS, COMPARTMENT])
    );
    assert_eq!(merged["Statement"][2]["Sid"], json!(DESCRIBE_SID));

    // A customer's default policy (root only, Statement as an object) gets both of Anthropic's statements.
    let default_policy = json!({"Version": "2012-10-17", "Statement": root()}).to_string();
    let MergeOutcome::Updated(merged) = add_compartment(&default_policy, Geo::Us, compartment()).unwrap()
    else {
        panic!()
    };
    assert_eq!(merged["Statement"].as_array().unwrap().len(), 3);
    assert_eq!(codes(&merged.to_string()), vec![]);
}

#[test]
fn merge_leaves_an_unconditioned_grant_alone() {
    let open = policy(vec![
        root(),
        json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}),
        describe(),
    ]);
    assert!(matches!(
        add_compartment(&open, Geo::Us, compartment()).unwrap(),
        MergeOutcome::Unchanged { .. }
    ));
}

#[test]
fn merge_rejects_malformed_policy() {
    assert!(add_compartment("not json", Geo::Us, compartment()).is_err());
    assert!(add_compartment("{\"Statement\": 5}", Geo::Us, compartment()).is_err());
}
