//! The Admin API stand-in's contract, exercised through the project's real
//! client and raw HTTP, with validate checked against keys in moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use cmek::admin_api::{AdminApiClient, AdminApiError, AdminKey, ClientOptions, RetryPolicy};
use cmek::geo::Geo;
use cmek::ids::{CompartmentId, KeyArn, WorkspaceId};
use sandbox::admin_api::{
    Contract, ContractConfig, Faults, OrgSeed, SandboxApi, SandboxConfig, UnattachedValidation,
};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-admin01-sandbox-test-key";

fn moto_endpoint() -> String {
    std::env::var("CMEK_TEST_AWS_ENDPOINT").expect("run through ./scripts/test (CMEK_TEST_AWS_ENDPOINT)")
}

/// The organization every test org answers as (`GET /v1/organizations/me`).
const ORG: &str = "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13";
const OTHER_ORG: &str = "0a8d2c4e-6b1f-4e3a-9c5d-7f2b8e1a3c6d";
const ZEROS: &str = "00000000-0000-0000-0000-000000000000";
const ROLE: &str = "arn:aws:iam::915198916910:role/anthropic-cmek-client-us";

fn seed(workspaces: usize, archived: usize, attached: usize) -> OrgSeed {
    OrgSeed {
        name: "acme".into(),
        admin_key: KEY.into(),
        workspaces,
        archived,
        attached,
        org_uuid: Some(ORG.into()),
        ..OrgSeed::default()
    }
}

async fn sandbox(workspaces: usize, archived: usize, attached: usize) -> SandboxApi {
    start(SandboxConfig {
        orgs: vec![seed(workspaces, archived, attached)],
        ..SandboxConfig::default()
    })
    .await
}

async fn start(config: SandboxConfig) -> SandboxApi {
    let config = SandboxConfig {
        kms_endpoint: Some(moto_endpoint()),
        ..config
    };
    SandboxApi::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client(api: &SandboxApi) -> AdminApiClient {
    let options = ClientOptions {
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        ..ClientOptions::default()
    };
    AdminApiClient::new(&api.url, AdminKey::new(KEY), options).unwrap()
}

async fn kms(region: &str) -> aws_sdk_kms::Client {
    let creds = aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "test");
    let conf = cmek::aws::config_loader()
        .endpoint_url(moto_endpoint())
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(creds)
        .load()
        .await;
    aws_sdk_kms::Client::new(&conf)
}

async fn key_with_policy(region: &str, policy: &str) -> KeyArn {
    let out = kms(region)
        .await
        .create_key()
        .policy(policy)
        .send()
        .await
        .unwrap();
    out.key_metadata().unwrap().arn().unwrap().parse().unwrap()
}

fn root() -> Value {
    json!({"Sid": "AccountRootAdmin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"})
}

fn describe() -> Value {
    json!({"Sid": "AllowAnthropicCMEKDescribe", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:DescribeKey", "Resource": "*"})
}

/// The key policy of Anthropic's current documentation ("Configure AWS KMS
/// for CMEK", September 2026, as in cmek-facts.md), written out here rather
/// than built by the client under test. `None`: organization binding only.
fn documented_policy(org: &str, compartments: Option<&[&str]>) -> String {
    let mut condition = json!({"StringEquals": {"kms:EncryptionContext:anthropic:org_uuid": [org]}});
    if let Some(c) = compartments {
        condition["StringEqualsIfExists"] = json!({"kms:EncryptionContext:anthropic:compartment_uuid": c});
    }
    json!({"Version": "2012-10-17", "Statement": [
        root(),
        {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*", "Condition": condition},
        describe()
    ]})
    .to_string()
}

/// The July/August 2026 documentation's policy: compartments under
/// StringEquals (August added the all-zeros id), no organization condition.
fn legacy_policy(compartments: &[&str]) -> String {
    json!({"Version": "2012-10-17", "Statement": [
        root(),
        {"Sid": "AllowAnthropicCMEKCrypto", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:anthropic:compartment_uuid": compartments}}},
        describe()
    ]})
    .to_string()
}

fn first_workspace(api: &SandboxApi) -> Value {
    api.state()["orgs"]["acme"]["workspaces"][0].clone()
}

#[tokio::test]
async fn requires_api_key_and_version_and_answers_documented_errors() {
    let api = sandbox(1, 0, 0).await;
    let http = cmek::tls::http_client().unwrap();
    let url = format!("{}/v1/organizations/workspaces", api.url);
    let cases = [
        (vec![], 401, "authentication_error"),
        (vec![("x-api-key", "wrong")], 401, "authentication_error"),
        (vec![("x-api-key", KEY)], 400, "invalid_request_error"),
    ];
    for (headers, status, kind) in cases {
        let mut req = http.get(&url);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let rid = resp
            .headers()
            .get("request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(rid.starts_with("req_"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], kind);
        assert_eq!(body["request_id"], rid);
    }
    // The recorded requests never hold the key.
    assert!(!serde_json::to_string(&api.requests()).unwrap().contains(KEY));
}

#[tokio::test]
async fn workspaces_get_and_list_with_both_cursors() {
    let api = sandbox(45, 5, 0).await;
    let c = client(&api);
    let all = c.list_workspaces(false, true).await.unwrap();
    assert_eq!(all.len(), 45);
    assert_eq!(c.list_workspaces(true, true).await.unwrap().len(), 50);
    // Ids and compartments in the documented forms.
    for w in &all {
        w.id.parse::<WorkspaceId>().unwrap();
        w.compartment_id
            .as_deref()
            .unwrap()
            .parse::<CompartmentId>()
            .unwrap();
    }
    let one = c.get_workspace(&all[3].id.parse().unwrap()).await.unwrap();
    assert_eq!(one, all[3]);
    // Raw paging: limit, after_id, before_id, has_more, first_id, last_id.
    let http = cmek::tls::http_client().unwrap();
    let get = |q: String| {
        let http = http.clone();
        let url = format!("{}/v1/organizations/workspaces?{q}", api.url);
        async move {
            http.get(url)
                .header("x-api-key", KEY)
                .header("anthropic-version", "2023-06-01")
                .send()
                .await
                .unwrap()
        }
    };
    let page: Value = get("limit=10".into()).await.json().await.unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 10);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], all[0].id.as_str());
    assert_eq!(page["last_id"], all[9].id.as_str());
    let before: Value = get(format!("limit=5&before_id={}", all[9].id))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = before["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, all[4..9].iter().map(|w| w.id.as_str()).collect::<Vec<_>>());
    assert_eq!(get("limit=0".into()).await.status(), 400);
    assert_eq!(get("limit=1001".into()).await.status(), 400);
    let err = c
        .get_workspace(&"wrkspc_doesnotexist".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminApiError::NotFound(_)));
}

#[tokio::test]
async fn external_keys_create_list_get_update_delete() {
    let api = sandbox(2, 0, 0).await;
    let c = client(&api);
    let arns: Vec<KeyArn> = (0..25)
        .map(|i| {
            format!("arn:aws:kms:us-east-2:123456789012:key/00000000-0000-4000-8000-{i:012}")
                .parse()
                .unwrap()
        })
        .collect();
    for (i, arn) in arns.iter().enumerate() {
        let k = c
            .create_external_key(&format!("key {i}"), Geo::Us, arn)
            .await
            .unwrap();
        assert!(k.id.starts_with("ekey_"));
        assert_eq!(k.kms_arn(), Some(arn.as_str()));
        assert!(!k.is_attached());
    }
    // 25 keys over pages of 20: list follows next_page.
    let all = c.list_external_keys().await.unwrap();
    assert_eq!(all.len(), 25);
    // Listed newest first, as the API does.
    assert_eq!(all[0].kms_arn(), Some(arns[24].as_str()));
    assert_eq!(all[24].kms_arn(), Some(arns[0].as_str()));
    let found = c.find_external_key_by_arn(&arns[22]).await.unwrap().unwrap();
    assert_eq!(found.display_name.as_deref(), Some("key 22"));
    let id = found.id.parse().unwrap();
    let renamed = c.update_external_key_display_name(&id, "renamed").await.unwrap();
    assert_eq!(renamed.display_name.as_deref(), Some("renamed"));
    assert_eq!(
        c.get_external_key(&id).await.unwrap().display_name.as_deref(),
        Some("renamed")
    );
    // Bad bodies are named.
    let http = cmek::tls::http_client().unwrap();
    let resp = http
        .post(format!("{}/v1/organizations/external_keys", api.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"display_name": "x", "geo": "us", "provider_config": {"type": "aws", "kms_arn": "arn:aws:kms:us-east-2:1:alias/x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Delete: allowed while unattached, refused while attached. (These ARNs
    // name no key in KMS, so attach's own validation is off for this part.)
    api.set_contract(ContractConfig {
        contract: Contract::August2026,
        ..ContractConfig::default()
    });
    let ws: WorkspaceId = first_workspace(&api)["id"].as_str().unwrap().parse().unwrap();
    c.attach_key(&ws, &id).await.unwrap();
    let del = |id: String| {
        let http = http.clone();
        let url = format!("{}/v1/organizations/external_keys/{id}", api.url);
        async move {
            http.delete(url)
                .header("x-api-key", KEY)
                .header("anthropic-version", "2023-06-01")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(del(found.id.clone()).await.status(), 400);
    assert!(c.get_external_key(&id).await.unwrap().is_attached());
    assert_eq!(del(all[0].id.clone()).await.status(), 200);
    assert_eq!(c.list_external_keys().await.unwrap().len(), 24);
}

#[tokio::test]
async fn attach_is_write_once_and_the_refusal_status_is_a_switch() {
    for status in [400, 409] {
        attach_is_write_once(status).await;
    }
}

async fn attach_is_write_once(write_once_status: u16) {
    let api = sandbox(1, 1, 0).await;
    // Fake ARNs: attach's own validation is the subject of another test.
    api.set_contract(ContractConfig {
        contract: Contract::August2026,
        write_once_status,
        ..ContractConfig::default()
    });
    let c = client(&api);
    let a = c
        .create_external_key(
            "a",
            Geo::Us,
            &"arn:aws:kms:us-east-2:123456789012:key/00000000-0000-4000-8000-00000000000a"
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let b = c
        .create_external_key(
            "b",
            Geo::Us,
            &"arn:aws:kms:us-east-2:123456789012:key/00000000-0000-4000-8000-00000000000b"
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let ws: WorkspaceId = first_workspace(&api)["id"].as_str().unwrap().parse().unwrap();
    let attached = c.attach_key(&ws, &a.id.parse().unwrap()).await.unwrap();
    assert_eq!(attached.external_key_id.as_deref(), Some(a.id.as_str()));
    // The same id again: a no-op.
    c.attach_key(&ws, &a.id.parse().unwrap()).await.unwrap();
    // Another id: refused with the configured status, nothing changed.
    let err = c.attach_key(&ws, &b.id.parse().unwrap()).await.unwrap_err();
    match write_once_status {
        409 => assert!(matches!(err, AdminApiError::Conflict(_)), "{err:?}"),
        _ => assert!(matches!(err, AdminApiError::InvalidRequest(_)), "{err:?}"),
    }
    assert_eq!(
        c.get_workspace(&ws).await.unwrap().external_key_id.as_deref(),
        Some(a.id.as_str())
    );
    // An archived workspace cannot be attached.
    let archived = api.state()["orgs"]["acme"]["workspaces"][1]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(c.attach_key(&archived, &b.id.parse().unwrap()).await.is_err());
}

async fn verdict(api: &SandboxApi, arn: &KeyArn) -> (bool, Option<String>) {
    let c = client(api);
    let k = c.create_external_key("k", Geo::Us, arn).await.unwrap();
    let v = c.validate_external_key(&k.id.parse().unwrap()).await.unwrap();
    (v.succeeded(), v.error_text())
}

/// The denied events left since the last call, by probe name.
fn probes_since(api: &SandboxApi, before: usize) -> Vec<String> {
    api.cloudtrail()[before..]
        .iter()
        .map(|e| e["sandboxProbe"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn organizations_me_answers_the_bare_uuid() {
    let api = sandbox(1, 0, 0).await;
    let c = client(&api);
    let org = c.get_organization().await.unwrap();
    assert_eq!(org.id, ORG);
    assert_eq!(org.kind.as_deref(), Some("organization"));
    assert_eq!(c.organization_uuid().await.unwrap().to_string(), ORG);
    // A garbage answer is refused by the client, by name.
    api.set_faults(Faults {
        organization_response: Some(json!({"id": format!("org_{ORG}"), "type": "organization"})),
        ..Faults::default()
    });
    let err = client(&api).organization_uuid().await.unwrap_err();
    assert!(err.to_string().contains("bare UUID"), "{err}");
}

#[tokio::test]
async fn validate_plays_the_current_contract() {
    let api = sandbox(1, 0, 0).await;
    let compartment = "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f";

    // The documented policy validates, and each validation checks four
    // requests that must be denied: four access-denied events, findable by
    // the documented three-field filter.
    let good = key_with_policy("us-east-2", &documented_policy(ORG, Some(&[compartment, ZEROS]))).await;
    let before = api.cloudtrail().len();
    assert_eq!(verdict(&api, &good).await, (true, None));
    let events = &api.cloudtrail()[before..];
    assert_eq!(events.len(), 4, "{events:?}");
    for e in events {
        assert_eq!(e["errorCode"], "AccessDenied");
        assert_eq!(e["userIdentity"]["accountId"], "915198916910");
        assert_eq!(e["resources"][0]["ARN"], good.as_str());
        assert_eq!(
            e["requestParameters"]["encryptionContext"]["associatedData"], "Y21lay12YWxpZGF0aW9u",
            "{e}"
        );
    }
    let mut names = probes_since(&api, before);
    names.sort();
    assert_eq!(
        names,
        ["extra_action", "foreign_compartment", "foreign_org", "no_context"]
    );

    // Organization binding only: still four denials (a re-encryption instead
    // of a foreign compartment, which such a key admits).
    let org_only = key_with_policy("us-east-2", &documented_policy(ORG, None)).await;
    let before = api.cloudtrail().len();
    assert_eq!(verdict(&api, &org_only).await, (true, None));
    assert_eq!(probes_since(&api, before).len(), 4);

    // The August 2026 policy (no organization condition) is refused now.
    let august = key_with_policy("us-east-2", &legacy_policy(&[ZEROS, compartment])).await;
    let (ok, error) = verdict(&api, &august).await;
    assert!(!ok);
    assert!(error.unwrap().contains("anthropic:org_uuid"));
    // So is the July 2026 one (it does not even admit the all-zeros id).
    let july = key_with_policy("us-east-2", &legacy_policy(&[compartment])).await;
    assert!(!verdict(&api, &july).await.0);
    // Another organization's key.
    let theirs = key_with_policy(
        "us-east-2",
        &documented_policy(OTHER_ORG, Some(&[compartment, ZEROS])),
    )
    .await;
    assert!(!verdict(&api, &theirs).await.0);

    // The console wizard's account-wide grant: refused now (its extra
    // actions and the missing organization condition are both probed).
    let wizard = key_with_policy(
        "us-east-2",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::915198916910:root"},"Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"*"}]}"#,
    )
    .await;
    let (ok, error) = verdict(&api, &wizard).await;
    assert!(!ok);
    assert!(error.unwrap().contains("anthropic:org_uuid"));

    // Disabled key (the test disables it; project code never can).
    let disabled = key_with_policy("us-east-2", &documented_policy(ORG, Some(&[compartment, ZEROS]))).await;
    // moto wants the key id here, not the ARN.
    kms("us-east-2")
        .await
        .disable_key()
        .key_id(disabled.key_id())
        .send()
        .await
        .unwrap();
    let (ok, error) = verdict(&api, &disabled).await;
    assert!(!ok);
    assert!(error.unwrap().contains("disabled"));

    // A key in a Region Anthropic does not serve for the geo.
    let elsewhere = key_with_policy("eu-west-1", &documented_policy(ORG, Some(&[compartment, ZEROS]))).await;
    let (ok, error) = verdict(&api, &elsewhere).await;
    assert!(!ok);
    assert!(error.unwrap().contains("Region mismatch"));

    // Access granted only through IAM: the key policy has the root statement only.
    let iam_only = key_with_policy(
        "us-east-2",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"AccountRootAdmin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#,
    )
    .await;
    let (ok, error) = verdict(&api, &iam_only).await;
    assert!(!ok);
    assert!(error.unwrap().contains("no resource-based policy allows"));
}

#[tokio::test]
async fn what_an_unattached_key_is_validated_with_is_a_switch() {
    let compartment = "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f";
    // The workspace's compartment alone, without the all-zeros id.
    let without_zeros = documented_policy(ORG, Some(&[compartment]));
    let with_zeros = documented_policy(ORG, Some(&[compartment, ZEROS]));
    for (reading, without_zeros_validates) in [
        (UnattachedValidation::Zeros, false),
        (UnattachedValidation::OrgOnly, true),
    ] {
        let api = start(SandboxConfig {
            orgs: vec![seed(1, 0, 0)],
            contract: ContractConfig {
                unattached_validation: reading,
                ..ContractConfig::default()
            },
            ..SandboxConfig::default()
        })
        .await;
        let a = key_with_policy("us-east-2", &with_zeros).await;
        assert_eq!(verdict(&api, &a).await, (true, None), "{reading:?}");
        let b = key_with_policy("us-east-2", &without_zeros).await;
        assert_eq!(verdict(&api, &b).await.0, without_zeros_validates, "{reading:?}");
    }
}

#[tokio::test]
async fn older_contracts_stay_behind_the_switch() {
    let compartment = "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f";
    let api = sandbox(1, 0, 0).await;
    api.set_contract(ContractConfig {
        contract: Contract::August2026,
        ..ContractConfig::default()
    });
    let august = key_with_policy("us-east-2", &legacy_policy(&[ZEROS, compartment])).await;
    let before = api.cloudtrail().len();
    assert_eq!(verdict(&api, &august).await, (true, None));
    assert_eq!(
        api.cloudtrail().len(),
        before,
        "no negative checks before September 2026"
    );
    let july_policy = key_with_policy("us-east-2", &legacy_policy(&[compartment])).await;
    assert!(
        !verdict(&api, &july_policy).await.0,
        "August validates with the all-zeros id"
    );

    // July 2026: the workspace's own compartment.
    api.set_contract(ContractConfig {
        contract: Contract::July2026,
        ..ContractConfig::default()
    });
    let ws_compartment = first_workspace(&api)["compartment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let july = key_with_policy("us-east-2", &legacy_policy(&[&ws_compartment])).await;
    assert_eq!(verdict(&api, &july).await, (true, None));
}

#[tokio::test]
async fn attach_validates_the_key_again_with_the_workspace_compartment() {
    let api = sandbox(2, 0, 0).await;
    let c = client(&api);
    let workspaces = api.state()["orgs"]["acme"]["workspaces"].clone();
    let (w0, w1) = (&workspaces[0], &workspaces[1]);
    let c0 = w0["compartment_id"].as_str().unwrap();
    // Validates (the all-zeros id is listed) but admits only workspace 0.
    let arn = key_with_policy("us-east-2", &documented_policy(ORG, Some(&[c0, ZEROS]))).await;
    let k = c.create_external_key("k", Geo::Us, &arn).await.unwrap();
    let id = k.id.parse().unwrap();
    assert!(c.validate_external_key(&id).await.unwrap().succeeded());
    let ws1: WorkspaceId = w1["id"].as_str().unwrap().parse().unwrap();
    let before = api.cloudtrail().len();
    let err = c.attach_key(&ws1, &id).await.unwrap_err();
    assert!(matches!(err, AdminApiError::InvalidRequest(_)), "{err:?}");
    assert!(err.to_string().contains("failed validation"), "{err}");
    assert!(c.get_workspace(&ws1).await.unwrap().external_key_id.is_none());
    assert_eq!(
        api.cloudtrail().len(),
        before,
        "refused at the round trip, before the negative checks"
    );
    // Workspace 0: validated again with its compartment, four more denials, attached.
    let ws0: WorkspaceId = w0["id"].as_str().unwrap().parse().unwrap();
    c.attach_key(&ws0, &id).await.unwrap();
    assert_eq!(probes_since(&api, before).len(), 4);
    assert_eq!(api.live_traffic(ws0.as_str()).await, Ok(()));
}

#[tokio::test]
async fn lists_hold_unnamed_and_other_provider_keys_and_hide_the_default_workspace() {
    let api = start(SandboxConfig {
        orgs: vec![OrgSeed {
            default_workspace: true,
            unnamed_keys: 2,
            gcp_keys: 1,
            azure_keys: 1,
            ..seed(2_500, 3, 0)
        }],
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&api);
    let keys = c.list_external_keys().await.unwrap();
    assert_eq!(keys.len(), 4);
    assert_eq!(keys.iter().filter(|k| k.display_name.is_none()).count(), 2);
    let mut providers: Vec<&str> = keys.iter().map(|k| k.provider()).collect();
    providers.sort();
    assert_eq!(providers, ["aws", "aws", "azure", "gcp"]);
    assert_eq!(keys.iter().filter(|k| k.kms_arn().is_some()).count(), 2);
    // The client pages by 1,000 and always asks for the Default Workspace.
    let all = c.list_workspaces(false, true).await.unwrap();
    assert_eq!(all.len(), 2_501);
    assert!(all.iter().any(|w| w.name == "Default Workspace"));
    let lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/organizations/workspaces")
        .collect();
    assert_eq!(lists.len(), 3, "2,501 workspaces in pages of 1,000");
    assert!(lists.iter().all(|r| {
        r.query
            .as_deref()
            .unwrap_or_default()
            .contains("include_default=true")
    }));
    // Without include_default the API hides it.
    let http = cmek::tls::http_client().unwrap();
    let page: Value = http
        .get(format!("{}/v1/organizations/workspaces?limit=1000", api.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["name"] != "Default Workspace")
    );
}

#[tokio::test]
async fn faults_and_propagation_delay() {
    let api = sandbox(1, 0, 0).await;
    let c = client(&api);
    api.set_faults(Faults {
        rate_529: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        c.list_workspaces(false, true).await,
        Err(AdminApiError::Overloaded(_))
    ));
    api.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: Some(7.0),
        ..Faults::default()
    });
    let err = c.list_workspaces(false, true).await.unwrap_err();
    assert!(
        matches!(err, AdminApiError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{err:?}"
    );
    api.set_faults(Faults {
        rate_429_no_retry_after: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        c.list_workspaces(false, true).await,
        Err(AdminApiError::RateLimited {
            retry_after: None,
            ..
        })
    ));
    api.set_faults(Faults {
        rate_500: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        c.list_workspaces(false, true).await,
        Err(AdminApiError::Internal(_))
    ));

    // 500 after the effect: the key exists although the caller saw an error.
    api.set_faults(Faults {
        rate_500_after_effect: 1.0,
        only_paths: Some(vec!["/v1/organizations/external_keys".into()]),
        ..Faults::default()
    });
    let arn: KeyArn = key_with_policy(
        "us-east-2",
        &documented_policy(ORG, Some(&["4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f", ZEROS])),
    )
    .await;
    assert!(c.create_external_key("k", Geo::Us, &arn).await.is_err());
    api.set_faults(Faults::default());
    assert!(c.find_external_key_by_arn(&arn).await.unwrap().is_some());

    // Requests per minute.
    api.set_faults(Faults {
        requests_per_minute: Some(2),
        ..Faults::default()
    });
    c.list_workspaces(false, true).await.unwrap();
    c.list_workspaces(false, true).await.unwrap();
    assert!(matches!(
        c.list_workspaces(false, true).await,
        Err(AdminApiError::RateLimited {
            retry_after: Some(_),
            ..
        })
    ));

    // Propagation delay: validation fails until it passes.
    api.set_faults(Faults {
        propagation_delay_secs: 1.5,
        ..Faults::default()
    });
    let k = c.create_external_key("slow", Geo::Us, &arn).await.unwrap();
    let id = k.id.parse().unwrap();
    assert!(!c.validate_external_key(&id).await.unwrap().succeeded());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(c.validate_external_key(&id).await.unwrap().succeeded());

    // Every request was recorded, faults included.
    let log = api.requests();
    assert!(log.iter().any(|r| r.fault.as_deref() == Some("529")));
    assert!(log.iter().any(|r| r.fault.as_deref() == Some("500_after_effect")));
    assert!(
        log.iter()
            .any(|r| r.fault.as_deref() == Some("requests_per_minute"))
    );
}

/// The stand-in's safety detectors see what they claim to: an attachment of
/// a key no validate succeeded for, and one whose live traffic would be denied.
#[tokio::test]
async fn the_safety_detectors_report_what_they_watch_for() {
    let api = sandbox(2, 0, 0).await;
    // Under the August 2026 contract attach does not validate, so a careless
    // client could attach anything; the detectors are what would catch it.
    api.set_contract(ContractConfig {
        contract: Contract::August2026,
        ..ContractConfig::default()
    });
    let c = client(&api);
    let workspaces = api.state()["orgs"]["acme"]["workspaces"].clone();
    let (w0, w1) = (&workspaces[0], &workspaces[1]);
    assert_eq!(api.state()["unvalidated_attachments"], json!([]));
    assert_eq!(api.state()["attach_warnings"], json!([]));

    // Never validated, and its policy admits only another workspace.
    let arn = key_with_policy(
        "us-east-2",
        &legacy_policy(&[ZEROS, w1["compartment_id"].as_str().unwrap()]),
    )
    .await;
    let k = c.create_external_key("careless", Geo::Us, &arn).await.unwrap();
    let ws0: WorkspaceId = w0["id"].as_str().unwrap().parse().unwrap();
    c.attach_key(&ws0, &k.id.parse().unwrap()).await.unwrap();
    let state = api.state();
    assert_eq!(
        state["unvalidated_attachments"],
        json!([{"workspace": ws0.as_str(), "external_key_id": k.id}])
    );
    let warnings = state["attach_warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["workspace"], ws0.as_str());
    assert!(warnings[0]["reason"].as_str().unwrap().contains("AccessDenied"));
    assert!(api.live_traffic(ws0.as_str()).await.is_err());

    // Validated first, and admitting its workspace: neither detector fires.
    let ws1: WorkspaceId = w1["id"].as_str().unwrap().parse().unwrap();
    let arn = key_with_policy(
        "us-east-2",
        &legacy_policy(&[ZEROS, w1["compartment_id"].as_str().unwrap()]),
    )
    .await;
    let k = c.create_external_key("careful", Geo::Us, &arn).await.unwrap();
    let id = k.id.parse().unwrap();
    assert!(c.validate_external_key(&id).await.unwrap().succeeded());
    c.attach_key(&ws1, &id).await.unwrap();
    let state = api.state();
    assert_eq!(state["unvalidated_attachments"].as_array().unwrap().len(), 1);
    assert_eq!(state["attach_warnings"].as_array().unwrap().len(), 1);
}

/// Create Workspace with `external_key_id`: the key checked against the new
/// workspace where the create validates (documented on Claude Platform on
/// AWS; on Claude Platform a switch, since the documentation does not say),
/// the workspace's first answer already carrying the key, and nothing
/// created when the check refuses.
#[tokio::test]
async fn creating_a_workspace_with_its_key_validates_it_where_the_switch_says() {
    for create_validates_key in [true, false] {
        let api = start(SandboxConfig {
            orgs: vec![seed(0, 0, 0)],
            contract: ContractConfig {
                create_validates_key,
                ..ContractConfig::default()
            },
            ..SandboxConfig::default()
        })
        .await;
        let c = client(&api);
        let tags = std::collections::BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        // Validates (the all-zeros id is listed) but admits only one other compartment.
        let other = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
        let narrow = key_with_policy("us-east-2", &documented_policy(ORG, Some(&[other, ZEROS]))).await;
        let k = c.create_external_key("narrow", Geo::Us, &narrow).await.unwrap();
        assert!(
            c.validate_external_key(&k.id.parse().unwrap())
                .await
                .unwrap()
                .succeeded()
        );
        let body = |name, id| cmek::admin_api::CreateWorkspace {
            name,
            external_key_id: id,
            tags: &tags,
            display_color: None,
            data_residency: None,
        };
        let refused = c.create_workspace(&body("narrow", &k.id)).await;
        if create_validates_key {
            let err = refused.unwrap_err();
            assert!(matches!(err, AdminApiError::InvalidRequest(_)), "{err:?}");
            assert!(err.to_string().contains("failed validation"), "{err}");
            assert!(
                c.list_workspaces(true, false).await.unwrap().is_empty(),
                "nothing created"
            );
        } else {
            let w = refused.unwrap();
            assert_eq!(w.external_key_id.as_deref(), Some(k.id.as_str()));
        }
        // A key that admits the organization's workspaces: created with it.
        let wide = key_with_policy("us-east-2", &documented_policy(ORG, None)).await;
        let k = c.create_external_key("wide", Geo::Us, &wide).await.unwrap();
        assert!(
            c.validate_external_key(&k.id.parse().unwrap())
                .await
                .unwrap()
                .succeeded()
        );
        let w = c.create_workspace(&body("wide", &k.id)).await.unwrap();
        assert_eq!(
            w.external_key_id.as_deref(),
            Some(k.id.as_str()),
            "its first answer"
        );
        assert_eq!(w.tags, tags);
        assert_eq!(api.live_traffic(&w.id).await, Ok(()));
    }
}
