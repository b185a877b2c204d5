//! The client against a real local HTTP server (wiremock).

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::*;
use crate::geo::Geo;

const KEY: &str = "sk-ant-admin01-SECRET-do-not-print-0123456789";

fn fast() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(60),
        },
        timeout: Duration::from_secs(5),
        validate_timeout: Duration::from_secs(5),
    }
}

fn client(server: &MockServer) -> AdminApiClient {
    AdminApiClient::new(&server.uri(), AdminKey::new(KEY), fast()).unwrap()
}

fn ws() -> crate::ids::WorkspaceId {
    "wrkspc_01ABC".parse().unwrap()
}

fn error_body(kind: &str, message: &str) -> serde_json::Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_123"})
}

#[tokio::test]
async fn sends_documented_headers_and_reads_workspace() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organizations/workspaces/wrkspc_01ABC"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "wrkspc_01ABC", "type": "workspace", "name": "prod", "archived_at": null,
            "compartment_id": "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f", "external_key_id": null, "display_color": "#fff"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let w = client(&server).get_workspace(&ws()).await.unwrap();
    assert_eq!(
        w.compartment_id.as_deref(),
        Some("4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f")
    );
    assert!(!w.is_archived());
    assert_eq!(w.external_key_id, None);
}

#[tokio::test]
async fn every_error_type_maps_to_its_variant() {
    type Check = fn(&AdminApiError) -> bool;
    let cases: [(u16, &str, Check); 11] = [
        (400, "invalid_request_error", |e| {
            matches!(e, AdminApiError::InvalidRequest(_))
        }),
        (401, "authentication_error", |e| {
            matches!(e, AdminApiError::Authentication(_))
        }),
        (402, "billing_error", |e| matches!(e, AdminApiError::Billing(_))),
        (403, "permission_error", |e| {
            matches!(e, AdminApiError::Permission(_))
        }),
        (404, "not_found_error", |e| {
            matches!(e, AdminApiError::NotFound(_))
        }),
        (409, "conflict_error", |e| matches!(e, AdminApiError::Conflict(_))),
        (413, "request_too_large", |e| {
            matches!(e, AdminApiError::RequestTooLarge(_))
        }),
        (429, "rate_limit_error", |e| {
            matches!(
                e,
                AdminApiError::RateLimited {
                    retry_after: None,
                    ..
                }
            )
        }),
        (500, "api_error", |e| matches!(e, AdminApiError::Internal(_))),
        (504, "timeout_error", |e| matches!(e, AdminApiError::Timeout(_))),
        (529, "overloaded_error", |e| {
            matches!(e, AdminApiError::Overloaded(_))
        }),
    ];
    for (status, kind, check) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(error_body(kind, "nope"))
                    .insert_header("request-id", "req_hdr")
                    // Keep the test fast: forbid retries so each status is seen once.
                    .insert_header("x-should-retry", "false"),
            )
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server).get_workspace(&ws()).await.unwrap_err();
        assert!(check(&err), "{status} {kind} → {err:?}");
        assert_eq!(err.status(), Some(status));
        assert_eq!(err.request_id(), Some("req_123"), "body request_id wins");
        assert!(err.to_string().contains("nope"));
    }
}

#[tokio::test]
async fn the_typed_error_code_is_read_from_the_details() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "key changed",
                        "details": {"error_code": "external_key_validation_timed_out"}
                    },
                    "request_id": "req_1"
                }))
                .insert_header("x-should-retry", "false"),
        )
        .mount(&server)
        .await;
    let err = client(&server).get_workspace(&ws()).await.unwrap_err();
    assert!(matches!(err, AdminApiError::InvalidRequest(_)), "{err:?}");
    assert_eq!(
        err.error_code(),
        Some(&crate::admin_api::ErrorCode::ValidationTimedOut)
    );
    assert!(
        err.to_string()
            .contains("HTTP 400 external_key_validation_timed_out: key changed"),
        "{err}"
    );
}

#[tokio::test]
async fn request_id_header_is_used_when_body_has_none_and_non_json_body_is_handled() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_string("<html>denied</html>")
                .insert_header("request-id", "req_hdr"),
        )
        .mount(&server)
        .await;
    let err = client(&server).get_workspace(&ws()).await.unwrap_err();
    assert!(matches!(err, AdminApiError::Permission(_)));
    assert_eq!(err.request_id(), Some("req_hdr"));
}

/// Answers the given statuses in order, then 200 with `body`.
struct Sequence {
    responses: Vec<ResponseTemplate>,
    final_response: ResponseTemplate,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.responses
            .get(n)
            .cloned()
            .unwrap_or_else(|| self.final_response.clone())
    }
}

async fn sequenced(
    responses: Vec<ResponseTemplate>,
    final_body: serde_json::Value,
) -> (MockServer, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let server = MockServer::start().await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Mock::given(wiremock::matchers::any())
        .respond_with(Sequence {
            responses,
            final_response: ResponseTemplate::new(200).set_body_json(final_body),
            calls: calls.clone(),
        })
        .mount(&server)
        .await;
    (server, calls)
}

fn workspace_json() -> serde_json::Value {
    json!({"id": "wrkspc_01ABC", "name": "w", "compartment_id": "4f6b2f5e-8a4b-4d3c-9a1e-0b7f3c2d1e0f"})
}

fn calls(c: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> usize {
    c.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn retries_408_409_5xx_and_529_then_succeeds() {
    let statuses = [
        (408, "timeout_error"),
        (409, "conflict_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ];
    let (server, n) = sequenced(
        statuses
            .iter()
            .map(|(s, k)| ResponseTemplate::new(*s).set_body_json(error_body(k, "transient")))
            .collect(),
        workspace_json(),
    )
    .await;
    // 4 failures need 4 retries.
    let mut opts = fast();
    opts.retry.max_retries = 4;
    let c = AdminApiClient::new(&server.uri(), AdminKey::new(KEY), opts).unwrap();
    c.get_workspace(&ws()).await.unwrap();
    assert_eq!(calls(&n), 5);
}

#[tokio::test]
async fn retries_are_bounded() {
    let (server, n) = sequenced(
        vec![ResponseTemplate::new(500).set_body_json(error_body("api_error", "down")); 10],
        workspace_json(),
    )
    .await;
    let err = client(&server).get_workspace(&ws()).await.unwrap_err();
    assert!(matches!(err, AdminApiError::Internal(_)));
    assert_eq!(calls(&n), 4, "1 attempt + max_retries (3)");
}

#[tokio::test]
async fn honours_retry_after_and_retry_after_ms() {
    for (name, value, at_least) in [
        ("retry-after", "1", Duration::from_secs(1)),
        ("retry-after-ms", "700", Duration::from_millis(700)),
    ] {
        let (server, n) = sequenced(
            vec![
                ResponseTemplate::new(429)
                    .set_body_json(error_body("rate_limit_error", "slow down"))
                    .insert_header(name, value),
            ],
            workspace_json(),
        )
        .await;
        let started = Instant::now();
        client(&server).get_workspace(&ws()).await.unwrap();
        assert_eq!(calls(&n), 2);
        assert!(
            started.elapsed() >= at_least,
            "{name}: waited only {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn retry_after_over_60_seconds_falls_back_to_backoff() {
    let (server, n) = sequenced(
        vec![
            ResponseTemplate::new(429)
                .set_body_json(error_body("rate_limit_error", "later"))
                .insert_header("retry-after", "3600"),
        ],
        workspace_json(),
    )
    .await;
    let started = Instant::now();
    client(&server).get_workspace(&ws()).await.unwrap();
    assert_eq!(calls(&n), 2);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "must not wait an hour"
    );
}

#[tokio::test]
async fn rate_limit_without_retry_after_is_retried_a_bounded_number_of_times() {
    // As the SDKs do: retried with the client's own backoff...
    let (server, n) = sequenced(
        vec![ResponseTemplate::new(429).set_body_json(error_body("rate_limit_error", "busy"))],
        workspace_json(),
    )
    .await;
    client(&server).get_workspace(&ws()).await.unwrap();
    assert_eq!(calls(&n), 2);
    // ...and given up on after max_retries: a spend cap surfaces as an error.
    let (server, n) = sequenced(
        vec![ResponseTemplate::new(429).set_body_json(error_body("rate_limit_error", "spend cap")); 10],
        workspace_json(),
    )
    .await;
    let err = client(&server).get_workspace(&ws()).await.unwrap_err();
    assert!(matches!(
        err,
        AdminApiError::RateLimited {
            retry_after: None,
            ..
        }
    ));
    assert_eq!(calls(&n), 4, "1 attempt + max_retries (3)");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    // One second ahead (HTTP dates have whole seconds: up to two seconds).
    let at = std::time::SystemTime::now() + Duration::from_secs(2);
    let (server, n) = sequenced(
        vec![
            ResponseTemplate::new(429)
                .set_body_json(error_body("rate_limit_error", "later"))
                .insert_header("retry-after", httpdate::fmt_http_date(at).as_str()),
        ],
        workspace_json(),
    )
    .await;
    let started = Instant::now();
    client(&server).get_workspace(&ws()).await.unwrap();
    assert_eq!(calls(&n), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited only {:?}",
        started.elapsed()
    );
    // A date in the past means now; a garbage value falls back to the backoff.
    for value in ["Wed, 21 Oct 2015 07:28:00 GMT", "soon"] {
        let (server, n) = sequenced(
            vec![
                ResponseTemplate::new(429)
                    .set_body_json(error_body("rate_limit_error", "later"))
                    .insert_header("retry-after", value),
            ],
            workspace_json(),
        )
        .await;
        let started = Instant::now();
        client(&server).get_workspace(&ws()).await.unwrap();
        assert_eq!(calls(&n), 2, "{value}");
        assert!(started.elapsed() < Duration::from_secs(5), "{value}");
    }
}

#[tokio::test]
async fn a_409_on_attach_is_not_retried() {
    // The write-once refusal may be answered 409; the caller looks and decides.
    let (server, n) = sequenced(
        vec![
            ResponseTemplate::new(409)
                .set_body_json(error_body("conflict_error", "external_key_id is write-once"));
            3
        ],
        workspace_json(),
    )
    .await;
    let err = client(&server)
        .attach_key(&ws(), &"ekey_01XYZ".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminApiError::Conflict(_)), "{err:?}");
    assert_eq!(calls(&n), 1);
}

#[tokio::test]
async fn the_organization_uuid_is_read_once_and_must_be_bare() {
    let (server, n) = sequenced(
        vec![],
        json!({"type": "organization", "id": "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13", "name": "Acme", "extra": {"new": true}}),
    )
    .await;
    let c = client(&server);
    let clone = c.clone();
    assert_eq!(
        c.organization_uuid().await.unwrap().to_string(),
        "6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13"
    );
    clone.organization_uuid().await.unwrap();
    assert_eq!(calls(&n), 1, "cached for the client and its clones");
    for bad in [
        json!({"id": "org_6f1c7a52-3b9e-4d21-8a0f-5c2e9b7d4a13"}),
        json!({"id": "6F1C7A52-3B9E-4D21-8A0F-5C2E9B7D4A13"}),
        json!({"id": "not a uuid"}),
        json!({"name": "no id"}),
    ] {
        let (server, _) = sequenced(vec![], bad.clone()).await;
        let err = client(&server).organization_uuid().await.unwrap_err();
        assert!(matches!(err, AdminApiError::Decode(_)), "{bad}: {err:?}");
    }
}

#[tokio::test]
async fn lists_decode_nullable_names_other_providers_and_unknown_fields() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organizations/external_keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            {"id": "ekey_1", "display_name": null, "provider_config": {"type": "aws", "kms_arn": ARN, "role_arn": null}, "brand_new_field": 1},
            {"id": "ekey_2", "display_name": "g", "provider_config": {"type": "gcp", "key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k"}},
            {"id": "ekey_3", "display_name": "a", "provider_config": {"type": "azure", "key_name": "k", "tenant_id": "t", "vault_uri": "https://v.vault.azure.net/"}},
            {"id": "ekey_4", "provider_config": {"type": "hsm-of-the-future", "slot": 3}},
            {"id": "ekey_5", "provider_config": {"kms_arn": 7}}
        ], "next_page": null})))
        .mount(&server)
        .await;
    let keys = client(&server).list_external_keys().await.unwrap();
    let providers: Vec<&str> = keys.iter().map(|k| k.provider()).collect();
    assert_eq!(providers, ["aws", "gcp", "azure", "other", "other"]);
    assert_eq!(keys[0].display_name, None);
    assert_eq!(keys[0].kms_arn(), Some(ARN));
    assert!(keys[1..].iter().all(|k| k.kms_arn().is_none()));
    assert_eq!(
        client(&server)
            .find_external_key_by_arn(&ARN.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .id,
        "ekey_1"
    );
}

#[tokio::test]
async fn x_should_retry_overrides_status() {
    // false on a 500: give up at once.
    let (server, n) = sequenced(
        vec![
            ResponseTemplate::new(500)
                .set_body_json(error_body("api_error", "x"))
                .insert_header("x-should-retry", "false"),
        ],
        workspace_json(),
    )
    .await;
    client(&server).get_workspace(&ws()).await.unwrap_err();
    assert_eq!(calls(&n), 1);
    // true on a 400: retry.
    let (server, n) = sequenced(
        vec![
            ResponseTemplate::new(400)
                .set_body_json(error_body("invalid_request_error", "x"))
                .insert_header("x-should-retry", "true"),
        ],
        workspace_json(),
    )
    .await;
    client(&server).get_workspace(&ws()).await.unwrap();
    assert_eq!(calls(&n), 2);
}

#[tokio::test]
async fn non_retryable_errors_are_not_retried() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
    ] {
        let (server, n) = sequenced(
            vec![ResponseTemplate::new(status).set_body_json(error_body(kind, "x"))],
            workspace_json(),
        )
        .await;
        client(&server).get_workspace(&ws()).await.unwrap_err();
        assert_eq!(calls(&n), 1, "{status}");
    }
}

fn ekey_json() -> serde_json::Value {
    json!({"type": "external_key", "id": "ekey_01XYZ", "display_name": "k", "geo": "us",
           "provider_config": {"type": "aws", "kms_arn": ARN}, "attachment": {"type": "unattached"}})
}

const ARN: &str = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

#[tokio::test]
async fn create_external_key_is_not_replayed_after_an_unknown_outcome() {
    // A 500 may have created the key: the caller must look it up, not retry blindly.
    let (server, n) = sequenced(
        vec![ResponseTemplate::new(500).set_body_json(error_body("api_error", "x"))],
        ekey_json(),
    )
    .await;
    let err = client(&server)
        .create_external_key("k", Geo::Us, &ARN.parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminApiError::Internal(_)));
    assert_eq!(calls(&n), 1);
    // 529 and a 429 with retry-after were rejected before processing: safe to repeat.
    let (server, n) = sequenced(
        vec![
            ResponseTemplate::new(529).set_body_json(error_body("overloaded_error", "x")),
            ResponseTemplate::new(429)
                .set_body_json(error_body("rate_limit_error", "x"))
                .insert_header("retry-after-ms", "10"),
        ],
        ekey_json(),
    )
    .await;
    let key = client(&server)
        .create_external_key("k", Geo::Us, &ARN.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(key.id, "ekey_01XYZ");
    assert_eq!(calls(&n), 3);
}

#[tokio::test]
async fn create_sends_documented_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/organizations/external_keys"))
        // role_arn is deprecated and ignored by the API: not sent.
        .and(body_json(
            json!({"display_name": "prod key", "geo": "us", "provider_config": {
            "type": "aws", "kms_arn": ARN}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(ekey_json()))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .create_external_key("prod key", Geo::Us, &ARN.parse().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn lists_every_page_of_workspaces() {
    let server = MockServer::start().await;
    let page = |ids: &[&str], more: bool| {
        json!({"data": ids.iter().map(|i| json!({"id": i, "name": i})).collect::<Vec<_>>(),
               "has_more": more, "first_id": ids.first(), "last_id": ids.last()})
    };
    Mock::given(method("GET"))
        .and(path("/v1/organizations/workspaces"))
        .and(query_param("after_id", "wrkspc_2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["wrkspc_3", "wrkspc_4"], true)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/organizations/workspaces"))
        .and(query_param("after_id", "wrkspc_4"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["wrkspc_5"], false)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/organizations/workspaces"))
        .and(query_param("include_archived", "true"))
        .and(query_param("include_default", "true"))
        .and(query_param("limit", "1000"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["wrkspc_1", "wrkspc_2"], true)))
        .expect(1)
        .mount(&server)
        .await;
    let all = client(&server).list_workspaces(true, true).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["wrkspc_1", "wrkspc_2", "wrkspc_3", "wrkspc_4", "wrkspc_5"]);
}

#[tokio::test]
async fn a_page_that_repeats_itself_is_an_error_not_a_loop() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [], "has_more": true, "last_id": "wrkspc_1"})),
        )
        .mount(&server)
        .await;
    assert!(matches!(
        client(&server).list_workspaces(false, true).await,
        Err(AdminApiError::Decode(_))
    ));
}

#[tokio::test]
async fn lists_every_page_of_external_keys_and_finds_by_arn() {
    let server = MockServer::start().await;
    let key = |id: &str, arn: &str| json!({"id": id, "display_name": id, "provider_config": {"type": "aws", "kms_arn": arn}});
    Mock::given(method("GET"))
        .and(path("/v1/organizations/external_keys"))
        .and(query_param("page", "p2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [key("ekey_2", ARN)], "next_page": null})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/v1/organizations/external_keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [key("ekey_1", "arn:aws:kms:us-east-2:111122223333:key/00000000-0000-0000-0000-000000000001")], "next_page": "p2"})))
        .mount(&server).await;
    let c = client(&server);
    assert_eq!(c.list_external_keys().await.unwrap().len(), 2);
    assert_eq!(
        c.find_external_key_by_arn(&ARN.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .id,
        "ekey_2"
    );
    let missing = "arn:aws:kms:us-east-2:111122223333:key/99999999-0000-0000-0000-000000000001"
        .parse()
        .unwrap();
    assert!(c.find_external_key_by_arn(&missing).await.unwrap().is_none());
}

#[tokio::test]
async fn validation_failure_is_data_not_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/organizations/external_keys/ekey_01XYZ/validate"))
        .and(body_json(json!({})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "external_key_validation", "status": "failure", "error": "AccessDeniedException: encryption context mismatch"})))
        .mount(&server)
        .await;
    let v = client(&server)
        .validate_external_key(&"ekey_01XYZ".parse().unwrap())
        .await
        .unwrap();
    assert!(!v.succeeded());
    assert!(v.error_text().unwrap().contains("encryption context"));
}

#[tokio::test]
async fn attach_sends_the_key_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/organizations/workspaces/wrkspc_01ABC"))
        .and(body_json(json!({"external_key_id": "ekey_01XYZ"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "wrkspc_01ABC", "external_key_id": "ekey_01XYZ"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let w = client(&server)
        .attach_key(&ws(), &"ekey_01XYZ".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(w.external_key_id.as_deref(), Some("ekey_01XYZ"));
}

#[tokio::test]
async fn the_admin_key_never_appears_in_errors() {
    // A hostile or buggy server echoes the key back in its message.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(error_body("authentication_error", &format!("bad key {KEY}"))),
        )
        .mount(&server)
        .await;
    let c = client(&server);
    let err = c.get_workspace(&ws()).await.unwrap_err();
    for text in [
        err.to_string(),
        format!("{err:?}"),
        format!("{c:?}"),
        format!("{:?}", AdminKey::new(KEY)),
    ] {
        assert!(!text.contains(KEY), "leaked: {text}");
        assert!(!text.contains("SECRET"), "leaked: {text}");
    }
    // Transport errors too: a listener of our own that hangs up on every
    // connection (not a fixed port that something else may be serving).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let dead = AdminApiClient::new(&format!("http://{addr}"), AdminKey::new(KEY), fast()).unwrap();
    let err = dead.get_workspace(&ws()).await.unwrap_err();
    assert!(matches!(err, AdminApiError::Transport(_)));
    assert!(!format!("{err} {err:?}").contains(KEY));
}

#[tokio::test]
async fn client_timeout_is_named() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(workspace_json())
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let mut opts = fast();
    opts.timeout = Duration::from_millis(200);
    opts.retry.max_retries = 1;
    let c = AdminApiClient::new(&server.uri(), AdminKey::new(KEY), opts).unwrap();
    assert!(matches!(
        c.get_workspace(&ws()).await,
        Err(AdminApiError::ClientTimeout(_))
    ));
}

#[test]
fn plain_http_is_refused_outside_loopback() {
    let key = || AdminKey::new(KEY);
    for ok in [
        "https://api.anthropic.com",
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:80",
    ] {
        assert!(
            AdminApiClient::new(ok, key(), ClientOptions::default()).is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "http://api.anthropic.com",
        "http://10.0.0.1",
        "ftp://x",
        "https://user:pw@api.anthropic.com",
        "not a url",
        "http://127.0.0.1.evil.com",
    ] {
        assert!(
            AdminApiClient::new(bad, key(), ClientOptions::default()).is_err(),
            "{bad}"
        );
    }
}

/// The id filter: 100 ids a call as `id[]`, and a server that ignored the
/// filter (answering with workspaces nobody asked for) is refused, not believed.
#[tokio::test]
async fn workspaces_by_id_sends_100_ids_a_call_and_refuses_an_ignored_filter() {
    struct Echo;
    impl Respond for Echo {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let ids: Vec<String> = req
                .url
                .query_pairs()
                .filter(|(k, _)| k == "id[]")
                .map(|(_, v)| v.into_owned())
                .collect();
            let data: Vec<_> = ids
                .iter()
                .filter(|id| !id.ends_with("MISSING"))
                .map(|id| json!({"id": id, "type": "workspace", "name": id, "archived_at": null}))
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"data": data, "has_more": false}))
        }
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organizations/workspaces"))
        .and(query_param("include_archived", "true"))
        .respond_with(Echo)
        .expect(3)
        .mount(&server)
        .await;
    let mut ids: Vec<crate::ids::WorkspaceId> = (0..250)
        .map(|i| format!("wrkspc_{i:04}").parse().unwrap())
        .collect();
    ids.push("wrkspc_MISSING".parse().unwrap());
    let found = client(&server).workspaces_by_id(&ids).await.unwrap();
    assert_eq!(found.len(), 250, "every id but the unknown one");
    let calls = server.received_requests().await.unwrap();
    let per_call: Vec<usize> = calls
        .iter()
        .map(|r| r.url.query_pairs().filter(|(k, _)| k == "id[]").count())
        .collect();
    assert_eq!(per_call, [100, 100, 51]);

    let ignoring = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            {"id": "wrkspc_0000", "type": "workspace", "name": "a", "archived_at": null},
            {"id": "wrkspc_OTHER", "type": "workspace", "name": "b", "archived_at": null}
        ], "has_more": true})))
        .mount(&ignoring)
        .await;
    let err = client(&ignoring).workspaces_by_id(&ids[..1]).await.unwrap_err();
    assert!(matches!(err, AdminApiError::Decode(_)), "{err:?}");
    assert!(err.to_string().contains("wrkspc_OTHER"), "{err}");
}

fn sigv4_client(server: &MockServer, region: &str) -> AdminApiClient {
    let credentials = aws_credential_types::Credentials::new(
        "AKIDLAMBDAROLE",
        "role-secret",
        Some("session-token".into()),
        None,
        "test",
    );
    AdminApiClient::new_sigv4(
        &server.uri(),
        SigV4Signer::new(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            region,
        ),
        fast(),
    )
    .unwrap()
}

/// Claude Platform on AWS: no `x-api-key`, a SigV4 authorization scoped to
/// the service and Region, the date and the session token; an ARN id is
/// one path segment.
#[tokio::test]
async fn signs_with_sigv4_and_sends_no_api_key() {
    let server = MockServer::start().await;
    let arn = "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    Mock::given(method("GET"))
        .and(path("/v1/organizations/external_keys/arn:aws:kms:us-east-2:123456789012:key%2F1234abcd-12ab-34cd-56ef-1234567890ab"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "external_key", "id": arn, "display_name": null, "geo": "us",
            "provider_config": {"type": "aws", "kms_arn": arn, "region": "us-east-2"},
            "created_at": "2026-11-30T00:00:00Z", "updated_at": "2026-11-30T00:00:00Z"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let key = sigv4_client(&server, "us-east-2")
        .get_external_key(&arn.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(key.kms_arn(), Some(arn));
    let requests = server.received_requests().await.unwrap();
    let h = &requests[0].headers;
    assert!(h.get("x-api-key").is_none(), "no API key on this platform");
    let auth = h.get("authorization").unwrap().to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDLAMBDAROLE/"),
        "{auth}"
    );
    assert!(
        auth.contains("/us-east-2/aws-external-anthropic/aws4_request"),
        "{auth}"
    );
    assert!(
        auth.contains("SignedHeaders=anthropic-version;host;x-amz-date;x-amz-security-token"),
        "{auth}"
    );
    assert!(h.get("x-amz-date").is_some());
    assert_eq!(h.get("x-amz-security-token").unwrap(), "session-token");
    // Nothing about the signature reaches a debug print of the client.
    let shown = format!("{:?}", sigv4_client(&server, "us-east-2"));
    assert!(
        !shown.contains("role-secret") && !shown.contains("session-token"),
        "{shown}"
    );
}

/// A signature AWS refuses is `SignatureRejected`, never retried; a 403
/// without AWS's error type is the API's permission error.
#[tokio::test]
async fn a_refused_signature_is_named_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organizations/workspaces/wrkspc_01ABC"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header(
                    "x-amzn-ErrorType",
                    "InvalidSignatureException:http://internal.amazon.com/coral/",
                )
                .set_body_json(error_body(
                    "permission_error",
                    "The request signature we calculated does not match",
                )),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = sigv4_client(&server, "us-east-2")
        .get_workspace(&ws())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminApiError::SignatureRejected(_)), "{err:?}");
    assert_eq!(
        crate::error::CmekError::from(err).error_type(),
        "RequestSignatureRejected"
    );

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_json(error_body("permission_error", "not allowed")))
        .expect(1)
        .mount(&server)
        .await;
    let err = sigv4_client(&server, "us-east-2")
        .get_workspace(&ws())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminApiError::Permission(_)), "{err:?}");
}
