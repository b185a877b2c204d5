//! Arbitrary JSON for the no-panic tests: any shape, seeded with the keys and
//! values the parsers look for so the search gets past their first checks.
//! Shared by `shared/tests/no_panics.rs` and `tests/tests/fuzz_handlers.rs`.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

pub fn scalar() -> impl Strategy<Value = Value> {
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

pub fn keys() -> impl Strategy<Value = String> {
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

pub fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}
