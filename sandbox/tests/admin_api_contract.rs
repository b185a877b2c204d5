//! The Admin API stand-in's contract, exercised through the project's real
//! client and raw HTTP, with validate checked against keys in moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use cmek::admin_api::{AdminApiClient, AdminApiError, AdminKey, ClientOptions, RetryPolicy};
use cmek::geo::Geo;
use cmek::ids::{AccountId, CompartmentId, KeyArn, WorkspaceId};
use sandbox::admin_api::{Faults, OrgSeed, SandboxApi, SandboxConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-admin01-sandbox-test-key";

fn moto_endpoint() -> String {
    std::env::var("CMEK_TEST_AWS_ENDPOINT").expect("run through ./scripts/test (CMEK_TEST_AWS_ENDPOINT)")
}

async fn sandbox(workspaces: usize, archived: usize, attached: usize) -> SandboxApi {
    let config = SandboxConfig {
        orgs: vec![OrgSeed {
            name: "acme".into(),
            admin_key: KEY.into(),
            workspaces,
            archived,
            attached,
            name_prefix: None,
        }],
        kms_endpoint: Some(moto_endpoint()),
        ..SandboxConfig::default()
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

fn documented_policy(compartments: &[&str]) -> String {
    let account: AccountId = "123456789012".parse().unwrap();
    let ids: Vec<CompartmentId> = compartments.iter().map(|c| c.parse().unwrap()).collect();
    cmek::policy::key_policy(&account, Geo::Us, &ids).to_string()
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
    let all = c.list_workspaces(false).await.unwrap();
    assert_eq!(all.len(), 45);
    assert_eq!(c.list_workspaces(true).await.unwrap().len(), 50);
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
    let found = c.find_external_key_by_arn(&arns[22]).await.unwrap().unwrap();
    assert_eq!(found.display_name, "key 22");
    let id = found.id.parse().unwrap();
    let renamed = c.update_external_key_display_name(&id, "renamed").await.unwrap();
    assert_eq!(renamed.display_name, "renamed");
    assert_eq!(c.get_external_key(&id).await.unwrap().display_name, "renamed");
    // Bad bodies are named.
    let http = cmek::tls::http_client().unwrap();
    let resp = http
        .post(format!("{}/v1/organizations/external_keys", api.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"display_name": "x", "geo": "us", "provider_config": {"type": "aws", "kms_arn": "arn:aws:kms:us-east-2:1:key/x", "role_arn": "arn:aws:iam::666666666666:role/evil"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Delete: allowed while unattached, refused while attached.
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
async fn attach_is_write_once() {
    let api = sandbox(1, 1, 0).await;
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
    // Another id: refused, nothing changed.
    let err = c.attach_key(&ws, &b.id.parse().unwrap()).await.unwrap_err();
    assert!(matches!(err, AdminApiError::InvalidRequest(_)), "{err:?}");
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

#[tokio::test]
async fn validate_checks_the_key_for_real() {
    let api = sandbox(1, 0, 0).await;
    let compartment = "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f";

    let good = key_with_policy("us-east-2", &documented_policy(&[compartment])).await;
    assert_eq!(verdict(&api, &good).await, (true, None));

    // The condition lacks the value validation sends (only the compartment).
    let only_compartment =
        documented_policy(&[compartment]).replace("\"00000000-0000-0000-0000-000000000000\",", "");
    let missing = key_with_policy("us-east-2", &only_compartment).await;
    let (ok, error) = verdict(&api, &missing).await;
    assert!(!ok);
    assert!(error.unwrap().contains("AccessDenied"));

    // Disabled key (the test disables it; project code never can).
    let disabled = key_with_policy("us-east-2", &documented_policy(&[compartment])).await;
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
    let elsewhere = key_with_policy("eu-west-1", &documented_policy(&[compartment])).await;
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

    // The console wizard's account-wide grant: validation succeeds (as documented).
    let wizard = key_with_policy(
        "us-east-2",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::915198916910:root"},"Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"*"}]}"#,
    )
    .await;
    assert_eq!(verdict(&api, &wizard).await, (true, None));
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
        c.list_workspaces(false).await,
        Err(AdminApiError::Overloaded(_))
    ));
    api.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: Some(7.0),
        ..Faults::default()
    });
    let err = c.list_workspaces(false).await.unwrap_err();
    assert!(
        matches!(err, AdminApiError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{err:?}"
    );
    api.set_faults(Faults {
        rate_429_no_retry_after: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        c.list_workspaces(false).await,
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
        c.list_workspaces(false).await,
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
        &documented_policy(&["4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f"]),
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
    c.list_workspaces(false).await.unwrap();
    c.list_workspaces(false).await.unwrap();
    assert!(matches!(
        c.list_workspaces(false).await,
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
