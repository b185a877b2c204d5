//! The workflow handlers themselves — not just their parsers — fed arbitrary
//! JSON with real dependencies: KMS (moto), an in-memory store and the Admin
//! API stand-in over HTTP, so a fuzzed request naming a real workspace goes
//! past validation into claiming, creating a key, registering and attaching.
//! Every case runs the whole chain, each step after the one before. Errors
//! are fine; a panic is not, and neither is a registration or an attachment
//! (what the stand-in's own log says took effect) caused by input that is not
//! a well-formed request. A control case shows that a well-formed request
//! does register and attach, so the harness would see it if garbage did.
//! `PROPTEST_CASES` sets the budget (small in the test command; the README
//! reports a long run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::{Arc, OnceLock};

use cmek::config::Config;
use cmek::context::{self, Clock, Deps};
use cmek::store::MemoryStore;
use cmek::workflow;
use proptest::prelude::*;
use sandbox::admin_api::{OrgSeed, SandboxApi, SandboxConfig};
use serde_json::{Value, json};

#[path = "../../shared/tests/support/arbitrary_json.rs"]
mod arbitrary_json;
use arbitrary_json::json_value;

const KEY: &str = "sk-ant-admin01-fuzz-0000000000000000000000000000000000000000";

struct World {
    rt: tokio::runtime::Runtime,
    api: SandboxApi,
    deps: Deps,
    ws: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build_world)
}

/// A stand-in, moto's KMS and an in-memory store; its own for each caller
/// (the fuzz cases share one, the control has its own, so that neither sees
/// the other's effects).
fn build_world() -> World {
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let endpoint = std::env::var("CMEK_TEST_AWS_ENDPOINT")
            .expect("run through ./scripts/test (CMEK_TEST_AWS_ENDPOINT)");
        let api = rt
            .block_on(SandboxApi::start(
                SandboxConfig {
                    orgs: vec![OrgSeed {
                        name: "o".into(),
                        admin_key: KEY.into(),
                        // The first for the fuzz cases, the second for the control.
                        workspaces: 2,
                        ..OrgSeed::default()
                    }],
                    kms_endpoint: Some(endpoint.clone()),
                    ..SandboxConfig::default()
                },
                "127.0.0.1:0".parse().unwrap(),
            ))
            .unwrap();
        let ws = api.state()["orgs"]["o"]["workspaces"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let config = Config::from_lookup(|k| match k {
            "CMEK_TABLE_NAME" => Some("unused".into()),
            "CMEK_ACCOUNT_ID" => Some("123456789012".into()),
            "CMEK_KEY_CREATOR_ROLE_ARN" => {
                Some("arn:aws:iam::123456789012:role/fuzz-CreateKeyFunctionRole".into())
            }
            _ => None,
        })
        .unwrap();
        let admin = cmek::admin_api::AdminApiClient::new(
            &api.url,
            cmek::admin_api::AdminKey::new(KEY),
            Default::default(),
        )
        .unwrap();
        let sdk = rt.block_on(cmek::aws::sdk_config_with_endpoint(&endpoint, "us-east-2"));
        let kms = cmek::kms::KeyManager::with_backoff(
            aws_sdk_kms::Client::new(&sdk),
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(50),
            1,
        );
        let deps = Deps {
            config,
            store: Arc::new(MemoryStore::new()),
            kms: Some(kms),
            admin: Some(admin),
            events: None,
            sfn: None,
            sns: None,
            http: context::http_client(),
            clock: Clock::default(),
        };
        World { rt, api, deps, ws }
    }
}

/// Garbage, or a step input around garbage that names the real workspace.
fn event() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        (json_value(), prop_oneof![Just(json!("exec-fuzz")), json_value()]).prop_map(|(extra, execution)| {
            let ws = &world().ws;
            let mut request = json!({"workspaceId": ws});
            if let (Value::Object(r), Value::Object(e)) = (&mut request, extra) {
                r.extend(e);
            }
            json!({"request": request, "execution": execution})
        }),
        json_value().prop_map(|extra| {
            let ws = &world().ws;
            json!({"request": {"workspaceId": ws}, "execution": "exec-fuzz", "error": extra, "diagnosis": null})
        }),
        json_value().prop_map(|detail| json!({"id": "e", "detail-type": "Workspace Discovered", "detail": detail})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_handler_panics_and_garbage_attaches_nothing(e in event()) {
        let w = world();
        let d = &w.deps;
        let before = took_effect(&w.api);
        w.rt.block_on(chain(d, &e));
        if std::env::var_os("FUZZ_REPORT").is_some() {
            eprintln!("admin api requests so far: {}", w.api.requests().len());
        }
        let after = took_effect(&w.api);
        if after > before {
            // Something was registered or attached: only a well-formed step
            // input may have caused it.
            prop_assert!(
                cmek::workflow::StepInput::from_value(&e).is_ok(),
                "not a well-formed request, yet {:?} took effect: {e}",
                &after[before.len()..]
            );
        }
    }
}

/// Every step of the workflow in order, as the state machine runs them, then
/// the trigger that reads events.
async fn chain(d: &Deps, e: &Value) {
    let _ = workflow::begin(d, e.clone()).await;
    let _ = workflow::create_key(d, e.clone()).await;
    let _ = workflow::register_key(d, e.clone()).await;
    let _ = workflow::validate_key(d, e.clone()).await;
    let _ = workflow::attach_key(d, e.clone()).await;
    let _ = workflow::diagnose(d, e.clone()).await;
    let _ = workflow::finish(d, e.clone()).await;
    let _ = cmek::triggers::start_from_event(d, e.clone()).await;
}

/// What the stand-in says took effect (registrations and attachments), in order.
fn took_effect(api: &SandboxApi) -> Vec<String> {
    api.requests().into_iter().filter_map(|r| r.effect).collect()
}

/// The control: the same harness (a world of its own), a well-formed request
/// for the second workspace — and the stand-in shows a registration and
/// exactly one attachment for it.
#[test]
fn a_well_formed_request_registers_and_attaches_so_the_harness_can_see_it() {
    let w = build_world();
    let ws = w.api.state()["orgs"]["o"]["workspaces"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = json!({"request": {"workspaceId": ws}, "execution": "exec-control"});
    w.rt.block_on(chain(&w.deps, &e));
    let effects: Vec<String> = took_effect(&w.api)
        .into_iter()
        .filter(|x| x.starts_with("registered") || x.ends_with(&ws))
        .collect();
    assert!(
        effects.iter().any(|x| x.starts_with("registered"))
            && effects
                .iter()
                .filter(|x| x.starts_with("attached") && x.ends_with(&ws))
                .count()
                == 1,
        "{effects:?}"
    );
    assert!(w.api.state()["orgs"]["o"]["workspaces"][1]["external_key_id"].is_string());
}
