//! Every parser of outside input, fed arbitrary JSON: errors are fine,
//! panics are not. `PROPTEST_CASES` sets the budget (the test command's
//! default is small; see the README for the long run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use cmek::geo::Geo;
use cmek::policy::{AnalysisTarget, analyse};
use cmek::workflow::{ProvisionRequest, StepInput};
use proptest::prelude::*;
use serde_json::json;

#[path = "support/arbitrary_json.rs"]
mod arbitrary_json;
use arbitrary_json::json_value;

fn target() -> AnalysisTarget<'static> {
    AnalysisTarget {
        geo: Geo::Us,
        compartment: "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f".parse().unwrap(),
        org: None,
        key_account: None,
    }
}

fn merge(policy: &str, protected: &[cmek::ids::CompartmentId]) {
    let org: cmek::ids::OrgUuid = "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13".parse().unwrap();
    let m = cmek::policy::Merge {
        geo: Geo::Us,
        org: &org,
        compartment: "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f".parse().unwrap(),
        restrict_to_workspaces: true,
        protected,
    };
    let _ = cmek::policy::merge(policy, &m);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512), ..ProptestConfig::default() })]

    #[test]
    fn request_parsers_never_panic(v in json_value()) {
        let _ = ProvisionRequest::from_value(&v);
        let _ = StepInput::from_value(&v);
        let _ = StepInput::from_value(&json!({"request": v, "execution": "x"}));
        let _ = serde_json::from_value::<cmek::cloudformation::Envelope>(v.clone());
        let _ = cmek::inbound::eventbridge::<cmek::inbound::KmsCall>(v.clone());
        if let Ok(e) = cmek::inbound::eventbridge::<cmek::inbound::KmsCall>(json!({"detail-type": "x", "source": "aws.kms", "detail": v})) {
            let _ = (e.detail.actor(), e.detail.key_arn(), e.detail.key_id_parameter(), e.detail.deletion_date());
        }
    }

    #[test]
    fn policy_analysis_and_merge_never_panic(v in json_value(), statements in prop::collection::vec(json_value(), 0..5)) {
        let text = v.to_string();
        let _ = analyse(&text, target());
        merge(&text, &[]);
        let policy = json!({"Version": "2012-10-17", "Statement": statements}).to_string();
        let _ = analyse(&policy, target());
        merge(&policy, &[cmek::ids::CompartmentId::VALIDATION]);
    }

    #[test]
    fn raw_text_never_panics(s in ".*") {
        let _ = analyse(&s, target());
        let _ = s.parse::<cmek::ids::KeyArn>();
        let _ = s.parse::<cmek::ids::WorkspaceId>();
        let _ = s.parse::<cmek::ids::CompartmentId>();
        let _ = s.parse::<cmek::ids::OrgUuid>();
        let _ = cmek::policy::glob_match(&s, &s, true);
    }
}
