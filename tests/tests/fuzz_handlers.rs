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
                well_formed(&e),
                "not a well-formed request by the README's contract, yet {:?} took effect: {e}",
                &after[before.len()..]
            );
        }
    }
}

/// A well-formed step input, as the README states the input contract
/// ("Triggers", "Manual": the input fields), written here apart from the
/// parser the handlers use, so that the fuzz test does not judge the parser
/// by itself: an object with a non-empty `execution` string and a `request`
/// object whose fields are only the documented ones — `workspaceId`
/// (required: `wrkspc_` and 1–64 ASCII letters or digits), `displayName`
/// (1–255 characters, none a control character, a bidirectional override or
/// a zero-width one), `keyArn` (a single-Region KMS key ARN, no alias),
/// `manageKeyPolicy` and `restrictToWorkspaces` (booleans), `acceptFindings`
/// (with `keyArn` only: finding names), `trigger` (an object whose `source`
/// is manual, eventbridge or cloudformation) — the whole under 32 KiB.
fn well_formed(e: &Value) -> bool {
    let (Some(request), Some(execution)) = (e.get("request"), e.get("execution")) else {
        return false;
    };
    let Some(r) = request.as_object() else {
        return false;
    };
    if execution.as_str().is_none_or(str::is_empty) || request.to_string().len() > 32 * 1024 {
        return false;
    }
    let alnum =
        |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric());
    let invisible = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    let key_arn = |s: &str| {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        matches!(parts.as_slice(), ["arn", p, "kms", region, account, resource]
            if p.starts_with("aws") && !region.is_empty()
            && account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())
            && resource.strip_prefix("key/").is_some_and(|id| !id.is_empty() && !id.starts_with("mrk-") && !id.contains('/')))
    };
    r.iter().all(|(field, v)| match field.as_str() {
        "workspaceId" => v
            .as_str()
            .and_then(|s| s.strip_prefix("wrkspc_"))
            .is_some_and(|rest| alnum(rest, 64)),
        "displayName" => v.as_str().is_some_and(|s| {
            let n = s.chars().count();
            (1..=255).contains(&n) && !s.chars().any(|c| c.is_control() || invisible(c))
        }),
        "keyArn" => v.as_str().is_some_and(key_arn),
        "manageKeyPolicy" | "restrictToWorkspaces" | "defaultWorkspace" => v.is_boolean(),
        "acceptFindings" => {
            r.contains_key("keyArn")
                && v.as_array()
                    .is_some_and(|l| l.iter().all(|f| f.as_str().is_some_and(|s| !s.is_empty())))
        }
        "trigger" => v["source"]
            .as_str()
            .is_some_and(|s| matches!(s, "manual" | "eventbridge" | "cloudformation")),
        _ => false,
    }) && r.contains_key("workspaceId")
}

/// The oracle agrees with the contract on cases written by hand (and so
/// would catch a parser that let any of the bad ones through).
#[test]
fn the_oracle_is_the_readmes_contract() {
    let ws = "wrkspc_01JExample";
    let good = [
        json!({"request": {"workspaceId": ws}, "execution": "x"}),
        json!({"request": {"workspaceId": ws, "displayName": "prod key", "manageKeyPolicy": false,
               "keyArn": "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
               "acceptFindings": ["UNPUBLISHED_ANTHROPIC_PRINCIPAL"], "trigger": {"source": "manual", "user": "a"}},
               "execution": "x", "error": null}),
    ];
    for g in &good {
        assert!(well_formed(g), "{g}");
    }
    let bad = [
        json!({"request": {"workspaceId": ws, "roleArn": "arn:aws:iam::1:role/x"}, "execution": "x"}),
        json!({"request": {"workspaceId": ws, "displayName": "evil\u{202E}gpj"}, "execution": "x"}),
        json!({"request": {"workspaceId": ws, "displayName": ""}, "execution": "x"}),
        json!({"request": {"workspaceId": "wrkspc_../x"}, "execution": "x"}),
        json!({"request": {"workspaceId": ws, "keyArn": "arn:aws:kms:us-east-2:123456789012:alias/x"}, "execution": "x"}),
        json!({"request": {"workspaceId": ws, "keyArn": "arn:aws:kms:us-east-2:123456789012:key/mrk-1"}, "execution": "x"}),
        json!({"request": {"workspaceId": ws, "acceptFindings": ["X"]}, "execution": "x"}),
        json!({"request": {"workspaceId": ws, "manageKeyPolicy": "yes"}, "execution": "x"}),
        json!({"request": {"workspaceId": ws}, "execution": ""}),
        json!({"request": {"displayName": "x"}, "execution": "x"}),
        json!({"workspaceId": ws}),
    ];
    for b in &bad {
        assert!(!well_formed(b), "{b}");
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
