//! The workflow handlers themselves — not just their parsers — fed arbitrary
//! JSON with real dependencies: an in-memory store and the Admin API
//! stand-in over HTTP, so a fuzzed request naming a real workspace goes past
//! validation into claiming, reading and recording. Errors are fine; a panic,
//! or a workspace attached or registered by garbage, is not.
//! `PROPTEST_CASES` sets the budget (small in the test command; the README
//! reports a long run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::{Arc, OnceLock};

use cmek::config::Config;
use cmek::store::MemoryStore;
use cmek::workflow::{self, Clock, Deps};
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
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let api = rt
            .block_on(SandboxApi::start(
                SandboxConfig {
                    orgs: vec![OrgSeed {
                        name: "o".into(),
                        admin_key: KEY.into(),
                        workspaces: 1,
                        ..OrgSeed::default()
                    }],
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
            _ => None,
        })
        .unwrap();
        let admin = cmek::admin_api::AdminApiClient::new(
            &api.url,
            cmek::admin_api::AdminKey::new(KEY),
            Default::default(),
        )
        .unwrap();
        let deps = Deps {
            config,
            store: Arc::new(MemoryStore::new()),
            kms: None,
            admin: Some(admin),
            events: None,
            sfn: None,
            http: workflow::http_client(),
            clock: Clock::default(),
        };
        World { rt, api, deps, ws }
    })
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
        w.rt.block_on(async {
            let _ = workflow::begin(d, e.clone()).await;
            let _ = workflow::create_key(d, e.clone()).await;
            let _ = workflow::register_key(d, e.clone()).await;
            let _ = workflow::validate_key(d, e.clone()).await;
            let _ = workflow::attach_key(d, e.clone()).await;
            let _ = workflow::diagnose(d, e.clone()).await;
            let _ = workflow::finish(d, e.clone()).await;
            let _ = cmek::triggers::start_from_event(d, e.clone()).await;
        });
        if std::env::var_os("FUZZ_REPORT").is_some() {
            eprintln!("admin api requests so far: {}", w.api.requests().len());
        }
        let state = w.api.state();
        prop_assert_eq!(&state["orgs"]["o"]["external_keys"], &json!([]));
        prop_assert!(state["orgs"]["o"]["workspaces"][0]["external_key_id"].is_null());
    }
}
