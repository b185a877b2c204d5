//! Every parser of outside input, fed arbitrary JSON: errors are fine,
//! panics are not. `PROPTEST_CASES` sets the budget (the test command's
//! default is small; see the README for the long run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::geo::Geo;
use cmek::policy::{AnalysisTarget, analyse};
use cmek::workflow::{ProvisionRequest, StepInput};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".*".prop_map(Value::String),
        // Values the parsers look for, so the search gets past the first check.
        prop_oneof![
            Just("wrkspc_01ABC"),
            Just("ekey_1"),
            Just("*"),
            Just("Allow"),
            Just("Deny"),
            Just("kms:*"),
            Just("kms:Encrypt"),
            Just("kms:Decrypt"),
            Just("kms:DescribeKey"),
            Just("StringEquals"),
            Just("arn:aws:iam::915198916910:role/anthropic-cmek-client-us"),
            Just("915198916910"),
            Just("kms:EncryptionContext:anthropic:compartment_uuid"),
            Just("00000000-0000-0000-0000-000000000000"),
            Just("arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            Just("Create"),
            Just("Update"),
            Just("Delete"),
            Just("cloudformation"),
            Just("manual"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn keys() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        prop_oneof![
            Just("Statement"),
            Just("Effect"),
            Just("Principal"),
            Just("NotPrincipal"),
            Just("AWS"),
            Just("Action"),
            Just("NotAction"),
            Just("Resource"),
            Just("Condition"),
            Just("Sid"),
            Just("workspaceId"),
            Just("keyArn"),
            Just("displayName"),
            Just("trigger"),
            Just("source"),
            Just("request"),
            Just("execution"),
            Just("acceptFindings"),
            Just("manageKeyPolicy"),
            Just("RequestType"),
            Just("ResponseURL"),
            Just("StackId"),
            Just("RequestId"),
            Just("LogicalResourceId"),
            Just("ResourceProperties"),
        ]
        .prop_map(str::to_owned),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn target() -> AnalysisTarget<'static> {
    AnalysisTarget {
        geo: Geo::Us,
        compartment: "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f".parse().unwrap(),
        key_account: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512), ..ProptestConfig::default() })]

    #[test]
    fn request_parsers_never_panic(v in json_value()) {
        let _ = ProvisionRequest::from_value(&v);
        let _ = StepInput::from_value(&v);
        let _ = StepInput::from_value(&json!({"request": v, "execution": "x"}));
        let _ = serde_json::from_value::<cmek::cloudformation::Envelope>(v.clone());
    }

    #[test]
    fn policy_analysis_and_merge_never_panic(v in json_value(), statements in prop::collection::vec(json_value(), 0..5)) {
        let text = v.to_string();
        let _ = analyse(&text, target());
        let _ = cmek::policy::add_compartment(&text, Geo::Us, "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f".parse().unwrap());
        let policy = json!({"Version": "2012-10-17", "Statement": statements}).to_string();
        let _ = analyse(&policy, target());
        let _ = cmek::policy::add_compartment(&policy, Geo::Us, cmek::ids::CompartmentId::VALIDATION);
    }

    #[test]
    fn raw_text_never_panics(s in ".*") {
        let _ = analyse(&s, target());
        let _ = s.parse::<cmek::ids::KeyArn>();
        let _ = s.parse::<cmek::ids::WorkspaceId>();
        let _ = s.parse::<cmek::ids::CompartmentId>();
        let _ = cmek::policy::glob_match(&s, &s, true);
    }
}
