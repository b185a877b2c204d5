//! Step handlers called directly (no state machine) for the recovery paths
//! that need a precise starting state: a crash between an external effect
//! and recording it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::time::Duration;

use cmek::config::Config;
use cmek::context::{self, Clock, Deps};
use cmek::ids::WorkspaceId;
use cmek::kms::KeyManager;
use cmek::store::{self, AuditEvent, MemoryStore, Status};
use cmek::workflow;
use sandbox::admin_api::{OrgSeed, SandboxApi, SandboxConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-admin01-handler-tests-000000000000";

async fn moto() -> aws_config::SdkConfig {
    let endpoint =
        std::env::var("CMEK_TEST_AWS_ENDPOINT").expect("run through ./scripts/test (CMEK_TEST_AWS_ENDPOINT)");
    cmek::aws::sdk_config_with_endpoint(&endpoint, "us-east-2").await
}

struct World {
    deps: Deps,
    api: SandboxApi,
    ws: WorkspaceId,
}

async fn world() -> World {
    let endpoint = std::env::var("CMEK_TEST_AWS_ENDPOINT").unwrap();
    let api = SandboxApi::start(
        SandboxConfig {
            orgs: vec![OrgSeed {
                name: "o".into(),
                admin_key: KEY.into(),
                workspaces: 1,
                ..OrgSeed::default()
            }],
            kms_endpoint: Some(endpoint),
            ..SandboxConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let ws: WorkspaceId = api.state()["orgs"]["o"]["workspaces"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let config = Config::from_lookup(|k| match k {
        "CMEK_TABLE_NAME" => Some("unused".into()),
        "CMEK_ACCOUNT_ID" => Some("123456789012".into()),
        "CMEK_KEY_CREATOR_ROLE_ARN" => Some(CREATOR.into()),
        _ => None,
    })
    .unwrap();
    let sdk = moto().await;
    let kms = KeyManager::with_backoff(
        aws_sdk_kms::Client::new(&sdk),
        Duration::from_millis(10),
        Duration::from_millis(50),
        2,
    );
    let admin = cmek::admin_api::AdminApiClient::new(
        &api.url,
        cmek::admin_api::AdminKey::new(KEY),
        Default::default(),
    )
    .unwrap();
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
    World { deps, api, ws }
}

/// CreateKey's role in these tests (the key policies it writes name it).
const CREATOR: &str = "arn:aws:iam::123456789012:role/test-CreateKeyFunctionRole";

fn step(ws: &WorkspaceId, execution: &str) -> Value {
    json!({"request": {"workspaceId": ws}, "execution": execution})
}

#[tokio::test]
async fn a_key_created_before_a_crash_is_reused_not_duplicated() {
    let w = world().await;
    workflow::begin(&w.deps, step(&w.ws, "exec-1")).await.unwrap();
    // Simulate CreateKey dying right after KMS made the key: the intent marker
    // is recorded, the key exists (untagged: tagging is the next call, which
    // the key's own policy allows), nothing else was recorded.
    let rec = w.deps.store.load(&w.ws).await.unwrap().unwrap();
    let rec = store::advance(
        &*w.deps.store,
        &rec,
        "exec-1",
        Status::Pending,
        AuditEvent::new("CreateKey", "key_creation_started", None, json!({})),
        w.deps.now(),
        |r| r.key_creation_started = true,
    )
    .await
    .unwrap();
    let kms = w.deps.kms().unwrap();
    let compartment = rec.compartment_id.unwrap();
    let mut policy = cmek::policy::key_policy(
        &"123456789012".parse().unwrap(),
        cmek::geo::Geo::Us,
        &rec.org_uuid.unwrap(),
        cmek::policy::Scope::Workspaces(&[compartment]),
    );
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .extend(workflow::creator_statements(CREATOR));
    // A stranger's key with the same description but no grant to the
    // creator role is not ours, and must not be taken for it.
    kms.create_key("{}", &workflow::key_description(&w.ws))
        .await
        .unwrap();
    let orphan = kms
        .create_key(&policy.to_string(), &workflow::key_description(&w.ws))
        .await
        .unwrap();
    assert!(kms.find_tagged_keys(&w.ws).await.unwrap().is_empty());
    assert!(rec.key_arn.is_none());
    // The retry finds and adopts the orphan.
    let out = workflow::create_key(&w.deps, step(&w.ws, "exec-1"))
        .await
        .unwrap();
    assert_eq!(out.key_arn.as_deref(), Some(orphan.arn.as_str()));
    assert_eq!(
        kms.find_tagged_keys(&w.ws).await.unwrap().len(),
        1,
        "no second key"
    );
    // Its alias and policy were completed on the way.
    let alias = cmek::kms::alias_for("alias/anthropic-cmek", &w.ws);
    assert_eq!(kms.describe(&alias).await.unwrap().unwrap().key_id, orphan.key_id);
    let policy = kms.get_policy(&orphan.arn).await.unwrap();
    assert!(policy.contains("AllowAnthropicCMEKCrypto"), "{policy}");
}

#[tokio::test]
async fn a_registration_whose_answer_was_lost_is_found_by_arn() {
    let w = world().await;
    workflow::begin(&w.deps, step(&w.ws, "exec-1")).await.unwrap();
    workflow::create_key(&w.deps, step(&w.ws, "exec-1"))
        .await
        .unwrap();
    let rec = w.deps.store.load(&w.ws).await.unwrap().unwrap();
    // RegisterKey reached the API (the marker), then died before recording.
    let rec = store::advance(
        &*w.deps.store,
        &rec,
        "exec-1",
        rec.status,
        AuditEvent::new("RegisterKey", "registration_started", None, json!({})),
        w.deps.now(),
        |r| r.registration_started = true,
    )
    .await
    .unwrap();
    let arn: cmek::ids::KeyArn = rec.key_arn.clone().unwrap().parse().unwrap();
    let made = w
        .deps
        .admin()
        .unwrap()
        .create_external_key("x", cmek::geo::Geo::Us, &arn)
        .await
        .unwrap();
    let out = workflow::register_key(&w.deps, step(&w.ws, "exec-1"))
        .await
        .unwrap();
    assert_eq!(out.external_key_id.as_deref(), Some(made.id.as_str()));
    assert_eq!(
        w.api.state()["orgs"]["o"]["external_keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn attach_refuses_without_a_validation_in_this_execution() {
    let w = world().await;
    for s in ["begin", "create", "register", "validate"] {
        let e = step(&w.ws, "exec-1");
        match s {
            "begin" => drop(workflow::begin(&w.deps, e).await.unwrap()),
            "create" => drop(workflow::create_key(&w.deps, e).await.unwrap()),
            "register" => drop(workflow::register_key(&w.deps, e).await.unwrap()),
            _ => drop(workflow::validate_key(&w.deps, e).await.unwrap()),
        }
    }
    // exec-1 dies; after its lease expires exec-2 takes over. exec-1's
    // validation does not count for exec-2.
    let later = Deps {
        clock: Clock::shifted(Duration::from_secs(3600)),
        ..w.deps.clone()
    };
    workflow::begin(&later, step(&w.ws, "exec-2")).await.unwrap();
    let err = workflow::attach_key(&later, step(&w.ws, "exec-2"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NotValidated", "{err}");
    // The old execution cannot act any more either.
    let err = workflow::attach_key(&later, step(&w.ws, "exec-1"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "StateConflict", "{err}");
    assert!(
        w.deps
            .admin()
            .unwrap()
            .get_workspace(&w.ws)
            .await
            .unwrap()
            .external_key_id
            .is_none()
    );
    // Once exec-2 validates, it attaches.
    workflow::validate_key(&later, step(&w.ws, "exec-2"))
        .await
        .unwrap();
    let out = workflow::attach_key(&later, step(&w.ws, "exec-2")).await.unwrap();
    assert_eq!(out.status, Status::Attached);
}

#[tokio::test]
async fn a_create_whose_state_machine_is_unreachable_is_answered_failed_at_once() {
    let w = world().await;
    let catcher = cmek_e2e::ResponseCatcher::start().await;
    let mut deps = w.deps.clone();
    deps.sfn = Some(aws_sdk_sfn::Client::new(&moto().await));
    deps.config.state_machine_arn =
        Some("arn:aws:states:us-east-2:123456789012:stateMachine:DoesNotExist".into());
    let event = json!({
        "RequestType": "Create", "ResponseURL": catcher.url_for("nosm"), "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/s/1",
        "RequestId": "nosm", "LogicalResourceId": "WorkspaceKey", "ResourceType": "Custom::AnthropicCmek",
        "ResourceProperties": {"WorkspaceId": w.ws.to_string()}
    });
    let started = std::time::Instant::now();
    let out = cmek::triggers::custom_resource::custom_resource(&deps, event)
        .await
        .unwrap();
    assert_eq!(out["answered"], true);
    let resp = catcher.wait("nosm", Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(resp["Status"], "FAILED");
    assert_eq!(resp["PhysicalResourceId"], "cmek-failed:nosm");
    assert!(
        resp["Reason"]
            .as_str()
            .unwrap()
            .contains("could not start the provisioning state machine"),
        "{resp}"
    );
}

/// Begin..Validate for `execution`, leaving the record VALIDATED by it.
async fn validated(w: &World, execution: &str) {
    workflow::begin(&w.deps, step(&w.ws, execution)).await.unwrap();
    workflow::create_key(&w.deps, step(&w.ws, execution))
        .await
        .unwrap();
    workflow::register_key(&w.deps, step(&w.ws, execution))
        .await
        .unwrap();
    workflow::validate_key(&w.deps, step(&w.ws, execution))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_organization_endpoint_that_fails_leaves_nothing_behind() {
    let w = world().await;
    // Every read of the organization fails (retried in-process, then given up).
    w.api.set_faults(sandbox::admin_api::Faults {
        rate_500: 1.0,
        only_paths: Some(vec!["/v1/organizations/me".into()]),
        ..Default::default()
    });
    let err = workflow::begin(&w.deps, step(&w.ws, "exec-1")).await.unwrap_err();
    assert_eq!(err.error_type(), "AdminApiUnavailable", "{err}");
    assert!(err.to_string().contains("500"), "{err}");
    assert!(w.deps.store.load(&w.ws).await.unwrap().is_none(), "no record");
    assert!(w.deps.store.list(None).await.unwrap().is_empty());
    // Garbage instead of an id: named, and still nothing written.
    w.api.set_faults(sandbox::admin_api::Faults {
        organization_response: Some(json!({"id": "org_01HXYZ", "type": "organization"})),
        ..Default::default()
    });
    let err = workflow::begin(&w.deps, step(&w.ws, "exec-1")).await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidOrganization", "{err}");
    assert!(err.to_string().contains("org_-prefixed"), "{err}");
    assert!(w.deps.store.load(&w.ws).await.unwrap().is_none(), "no record");
}

#[tokio::test]
async fn attach_refused_by_anthropic_is_named_recorded_and_nothing_is_attached() {
    let w = world().await;
    validated(&w, "exec-1").await;
    // After validation, someone adds an organization guard that denies every
    // principal outside their AWS organization (as a resource control policy
    // would). Our analysis can only say it *may* block Anthropic (a warning);
    // Anthropic's check at attach time finds it does.
    let rec = w.deps.store.load(&w.ws).await.unwrap().unwrap();
    let arn = rec.key_arn.clone().unwrap();
    let kms = w.deps.kms().unwrap();
    let mut policy: Value = serde_json::from_str(&kms.get_policy(&arn).await.unwrap()).unwrap();
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "DenyOutsideOrg", "Effect": "Deny", "Principal": "*", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-abc123"},
                      "ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:*"}}}));
    kms.put_policy(&arn, &policy.to_string()).await.unwrap();
    let err = workflow::attach_key(&w.deps, step(&w.ws, "exec-1"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "AttachRefused", "{err}");
    assert!(err.to_string().contains("explicitly denied"), "{err}");
    let rec = w.deps.store.load(&w.ws).await.unwrap().unwrap();
    assert_eq!(
        rec.status,
        Status::Validated,
        "not attached, not failed yet (Diagnose and Finish decide)"
    );
    assert!(rec.last_error.unwrap_or_default().contains("explicitly denied"));
    assert!(
        w.deps
            .admin()
            .unwrap()
            .get_workspace(&w.ws)
            .await
            .unwrap()
            .external_key_id
            .is_none(),
        "nothing attached"
    );
    // Diagnose names it (the Deny statement), from what attach recorded.
    let d = workflow::diagnose(&w.deps, step(&w.ws, "exec-1")).await.unwrap();
    assert_eq!(d.cause, "DENY_STATEMENT", "{d:?}");
    assert!(
        d.last_validation_error
            .unwrap_or_default()
            .contains("explicitly denied")
    );
}

#[tokio::test]
async fn a_write_once_refusal_is_looked_into_not_retried_whatever_its_status() {
    for status in [400, 409] {
        let w = world().await;
        w.api.set_contract(sandbox::admin_api::ContractConfig {
            write_once_status: status,
            ..Default::default()
        });
        validated(&w, "exec-1").await;
        // Someone else attaches another key to the workspace between our
        // validation and our attach.
        let admin = w.deps.admin().unwrap();
        let rec = w.deps.store.load(&w.ws).await.unwrap().unwrap();
        let theirs = admin
            .create_external_key(
                "theirs",
                cmek::geo::Geo::Us,
                &rec.key_arn.clone().unwrap().parse().unwrap(),
            )
            .await
            .unwrap();
        admin
            .attach_key(&w.ws, &theirs.id.parse().unwrap())
            .await
            .unwrap();
        let before = w.api.requests().len();
        let err = workflow::attach_key(&w.deps, step(&w.ws, "exec-1"))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "WorkspaceAlreadyAttached", "{status}: {err}");
        assert!(err.to_string().contains(&theirs.id), "{err}");
        let attaches: Vec<u16> = w.api.requests()[before..]
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(w.ws.as_str()))
            .map(|r| r.status)
            .collect();
        assert_eq!(
            attaches,
            vec![status],
            "one attempt, answered {status}, not retried"
        );
        assert_eq!(
            admin
                .get_workspace(&w.ws)
                .await
                .unwrap()
                .external_key_id
                .as_deref(),
            Some(theirs.id.as_str()),
            "their attachment stands"
        );
    }
}

/// Captures what discovery would put on the bus.
#[derive(Default)]
struct Bus(std::sync::Mutex<Vec<Value>>);

#[async_trait::async_trait]
impl cmek::triggers::discovery::EventSink for Bus {
    async fn put(&self, details: &[Value]) -> Result<Vec<bool>, cmek::error::CmekError> {
        self.0.lock().unwrap().extend(details.iter().cloned());
        Ok(vec![true; details.len()])
    }
}

#[tokio::test]
async fn a_discovered_workspace_whose_event_was_lost_is_announced_again() {
    use cmek::config::OptIn;
    use cmek::triggers::discovery::{REANNOUNCE_AFTER, discover};
    let w = world().await;
    let opt_in = OptIn::from_lookup(|k| match k {
        OptIn::ENABLED => Some("true".into()),
        OptIn::IDS => Some(w.ws.to_string()),
        _ => None,
    })
    .unwrap();
    let bus = Bus::default();
    let first = discover(&w.deps, &opt_in, &bus).await.unwrap();
    assert_eq!(first.discovered, vec![w.ws.to_string()]);
    // The event is lost: nothing ever claims the workspace. Soon after, the
    // next poll leaves it alone (EventBridge and Lambda may still be retrying)…
    let soon = discover(&w.deps, &opt_in, &bus).await.unwrap();
    assert!(
        soon.discovered.is_empty() && soon.reannounced.is_empty(),
        "{soon:?}"
    );
    // …past the deadline, it is announced again, once, and that is recorded.
    let later = Deps {
        clock: Clock::shifted(REANNOUNCE_AFTER + Duration::from_secs(60)),
        ..w.deps.clone()
    };
    let again = discover(&later, &opt_in, &bus).await.unwrap();
    assert_eq!(again.reannounced, vec![w.ws.to_string()], "{again:?}");
    assert!(again.discovered.is_empty());
    assert_eq!(bus.0.lock().unwrap().len(), 2, "announced twice in all");
    let events = w.deps.store.events(&w.ws).await.unwrap();
    assert!(events.iter().any(|e| e.outcome == "reannounced"));
    // Once claimed by an execution, it is never re-announced.
    workflow::begin(&later, step(&w.ws, "exec-1")).await.unwrap();
    let much_later = Deps {
        clock: Clock::shifted(REANNOUNCE_AFTER * 3),
        ..w.deps.clone()
    };
    let after_claim = discover(&much_later, &opt_in, &bus).await.unwrap();
    assert!(after_claim.reannounced.is_empty(), "{after_claim:?}");
}

/// Claude Platform on AWS: AttachKey attaches only a registered key, only
/// after its own analysis of the policy passed, and only through the attach
/// call, which is the service's validation. A policy that fails the analysis
/// never reaches the API.
#[tokio::test]
async fn on_claude_platform_on_aws_attach_goes_only_through_the_services_validation() {
    let endpoint = std::env::var("CMEK_TEST_AWS_ENDPOINT").unwrap();
    let api = SandboxApi::start(
        SandboxConfig {
            orgs: vec![OrgSeed {
                name: "o".into(),
                admin_key: KEY.into(),
                workspaces: 1,
                ..OrgSeed::default()
            }],
            kms_endpoint: Some(endpoint),
            aws_platform: Some(sandbox::admin_api::on_aws::AwsPlatform::default()),
            ..SandboxConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let ws: WorkspaceId = api.state()["orgs"]["o"]["workspaces"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let config = Config::from_lookup(|k| match k {
        "CMEK_TABLE_NAME" => Some("unused".into()),
        "CMEK_ACCOUNT_ID" => Some("123456789012".into()),
        "CMEK_KEY_CREATOR_ROLE_ARN" => Some(CREATOR.into()),
        "CMEK_PLATFORM" => Some("claude-platform-on-aws".into()),
        "AWS_REGION" => Some("us-east-2".into()),
        _ => None,
    })
    .unwrap();
    let sdk = moto().await;
    let credentials =
        aws_credential_types::Credentials::new("AttachKeyFunction", "testing", None, None, "test");
    let admin = cmek::admin_api::AdminApiClient::new_sigv4(
        &api.url,
        cmek::admin_api::SigV4Signer::new(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            "us-east-2",
        ),
        Default::default(),
    )
    .unwrap();
    let deps = Deps {
        config,
        store: Arc::new(MemoryStore::new()),
        kms: Some(KeyManager::new(aws_sdk_kms::Client::new(&sdk))),
        admin: Some(admin),
        events: None,
        sfn: None,
        sns: None,
        http: context::http_client(),
        clock: Clock::default(),
    };
    let attaches = |api: &SandboxApi| {
        api.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(ws.as_str()))
            .count()
    };
    workflow::begin(&deps, step(&ws, "exec-1")).await.unwrap();
    workflow::create_key(&deps, step(&ws, "exec-1")).await.unwrap();
    // Not registered yet: refused before any call.
    let err = workflow::attach_key(&deps, step(&ws, "exec-1"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NotValidated", "{err}");
    assert_eq!(attaches(&api), 0);
    workflow::register_key(&deps, step(&ws, "exec-1")).await.unwrap();

    // A policy this project's analysis refuses never reaches the API.
    let arn = deps
        .store
        .load(&ws)
        .await
        .unwrap()
        .unwrap()
        .key_arn
        .unwrap()
        .to_string();
    let kms = deps.kms().unwrap();
    let good = kms.get_policy(&arn).await.unwrap();
    let mut broken: Value = serde_json::from_str(&good).unwrap();
    broken["Statement"][1]["Action"] = json!(["kms:Encrypt", "kms:Decrypt"]);
    kms.put_policy(&arn, &broken.to_string()).await.unwrap();
    let err = workflow::attach_key(&deps, step(&ws, "exec-1"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "KeyPolicyRejected", "{err}");
    assert!(err.to_string().contains("MISSING_SERVICE_ACTION"), "{err}");
    assert_eq!(attaches(&api), 0, "the attach was never sent");

    // Restored: the attach (the service's validation) passes, once.
    kms.put_policy(&arn, &good).await.unwrap();
    let out = workflow::attach_key(&deps, step(&ws, "exec-1")).await.unwrap();
    assert_eq!(out.status, Status::Attached);
    assert_eq!(attaches(&api), 1);
    assert_eq!(api.state()["unvalidated_attachments"], json!([]));
    // Again: a no-op, nothing sent.
    workflow::attach_key(&deps, step(&ws, "exec-1")).await.unwrap();
    assert_eq!(attaches(&api), 1);
}

/// A workspace's tags are its users' to edit (Update Workspace takes
/// `tags`): a create whose answer was lost, and whose workspace then lost
/// its creation tag, is still found — by the key this creation made and
/// registered for it — and never made twice.
#[tokio::test]
async fn a_created_workspace_whose_tag_was_removed_is_found_by_its_key() {
    use sandbox::admin_api::{Faults, Scripted};
    let w = world().await;
    w.api.set_faults(Faults {
        scripted: vec![Scripted::once("POST", "/v1/organizations/workspaces", 500, true)],
        ..Faults::default()
    });
    let input = json!({"request": {"createWorkspace": {"name": "retagged"}}, "execution": "exec-1"});
    let lost = workflow::create_workspace(&w.deps, input.clone()).await;
    assert!(lost.is_err(), "the create's answer was a 500: {lost:?}");
    let named = |api: &SandboxApi| -> Vec<Value> {
        api.state()["orgs"]["o"]["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["name"] == "retagged")
            .cloned()
            .collect()
    };
    let made = named(&w.api);
    assert_eq!(made.len(), 1, "the create took effect");
    let id = made[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        made[0]["tags"][workflow::TAG_CREATION].as_str(),
        Some(cmek::ids::CreationToken::for_name("retagged").as_str())
    );
    // Someone clears the workspace's tags before the retry.
    let cleared = cmek::tls::http_client()
        .unwrap()
        .post(format!("{}/v1/organizations/workspaces/{id}", w.api.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"tags": {}}))
        .send()
        .await
        .unwrap();
    assert!(cleared.status().is_success(), "{}", cleared.text().await.unwrap());
    assert_eq!(named(&w.api)[0]["tags"], json!({}));
    let out = workflow::create_workspace(&w.deps, input).await.unwrap();
    assert_eq!(out.workspace_id.as_str(), id);
    assert_eq!(named(&w.api).len(), 1, "no second workspace");
    assert_eq!(
        w.api.state()["orgs"]["o"]["external_keys"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no second registration"
    );
}
