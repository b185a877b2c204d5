use std::net::IpAddr;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

use super::error::{AdminApiError, ApiFailure};
use super::secret::AdminKey;
use super::sigv4::SigV4Signer;
use super::types::*;
use crate::geo::Geo;
use crate::ids::{ExternalKeyId, KeyArn, OrgUuid, WorkspaceId};

pub const DEFAULT_BASE_URL: &str = crate::platform::CLAUDE_PLATFORM_URL;
const API_VERSION: &str = "2023-06-01";
/// The largest page each list allows: external keys 100, workspaces 1,000.
const KEY_PAGE_LIMIT: u32 = 100;
const WORKSPACE_PAGE_LIMIT: u32 = 1000;
/// A guard against a server that keeps saying `has_more` forever.
const MAX_PAGES: usize = 10_000;
/// Ids per call of the list's `id` filter ("at most 100", the API reference).
const ID_FILTER_LIMIT: usize = 100;

/// Retries as Anthropic's SDKs do them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A `retry-after` longer than this is ignored in favour of our own backoff.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    pub timeout: Duration,
    /// Validate runs a KMS round trip on Anthropic's side and can take ~30 s.
    pub validate_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(20),
            validate_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("Admin API base URL {0:?} is not a URL")]
    NotAUrl(String),
    #[error("Admin API base URL {0:?} must use https (plain http is allowed only for a loopback sandbox)")]
    InsecureScheme(String),
    #[error("Admin API base URL {0:?} must not carry credentials, a query or a fragment")]
    Unexpected(String),
    #[error(transparent)]
    HttpClient(#[from] crate::tls::HttpClientError),
}

/// Parse and vet a base URL: https anywhere, http only to loopback (the local sandbox).
pub fn parse_base_url(raw: &str) -> Result<Url, BaseUrlError> {
    let shown = crate::ids::shown(raw);
    let url = Url::parse(raw).map_err(|_| BaseUrlError::NotAUrl(shown.clone()))?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(BaseUrlError::Unexpected(shown));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(BaseUrlError::InsecureScheme(shown)),
    }
}

/// Like [`parse_base_url`], for URLs that carry a query (pre-signed URLs).
pub fn parse_base_url_allowing_query(raw: &str) -> Result<Url, BaseUrlError> {
    let shown = crate::ids::shown(raw);
    let url = Url::parse(raw).map_err(|_| BaseUrlError::NotAUrl(shown.clone()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BaseUrlError::Unexpected(shown));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(BaseUrlError::InsecureScheme(shown)),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Claude Platform: the organization's Admin API key, as `x-api-key`.
    ApiKey(AdminKey),
    /// Claude Platform on AWS: SigV4 with the caller's AWS credentials; no secret.
    SigV4(SigV4Signer),
}

/// A client for one organization. Cheap to clone (clones share the
/// organization UUID once read).
#[derive(Debug, Clone)]
pub struct AdminApiClient {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    options: ClientOptions,
    retries: super::RetryCounter,
    org: std::sync::Arc<tokio::sync::OnceCell<OrgUuid>>,
}

/// Whether repeating a request after an unknown outcome could duplicate its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Safe,
    /// Create has no idempotency key: repeat only when the request provably
    /// did not take effect (connection refused, 429, 529).
    OnlyIfRejected,
}

struct Request<'a> {
    method: Method,
    path: String,
    query: Vec<(&'a str, String)>,
    body: Option<Value>,
    timeout: Duration,
    replay: Replay,
    /// Whether a 409 may be retried. The SDKs retry it (a lock conflict);
    /// attaching must not: a 409 there may be the write-once refusal.
    retry_conflict: bool,
}

/// One failed attempt, with what the response said about retrying it.
#[derive(Debug)]
struct Attempt {
    error: AdminApiError,
    should_retry_header: Option<bool>,
    retry_after: Option<Duration>,
    /// The request never reached the server.
    not_sent: bool,
}

impl Attempt {
    fn retryable(&self, replay: Replay, retry_conflict: bool) -> bool {
        if !retry_conflict && self.error.status() == Some(409) {
            return false;
        }
        if let Some(forced) = self.should_retry_header {
            return forced && (replay == Replay::Safe || self.rejected_unprocessed());
        }
        if self.not_sent {
            return true;
        }
        match replay {
            Replay::OnlyIfRejected => self.rejected_unprocessed(),
            Replay::Safe => match &self.error {
                // As the SDKs do: a 429 is retried with or without retry-after,
                // a bounded number of times (a spend cap then surfaces as Throttled).
                AdminApiError::RateLimited { .. } => true,
                AdminApiError::Transport(_) | AdminApiError::ClientTimeout(_) => true,
                e => matches!(e.status(), Some(408 | 409 | 500..=599)),
            },
        }
    }

    /// Answers that say the request was not processed, so even a create
    /// without an idempotency key may be sent again.
    fn rejected_unprocessed(&self) -> bool {
        matches!(
            self.error,
            AdminApiError::RateLimited { .. } | AdminApiError::Overloaded(_)
        )
    }
}

impl AdminApiClient {
    /// A client for Claude Platform, authenticated by the Admin API key.
    pub fn new(base_url: &str, key: AdminKey, options: ClientOptions) -> Result<Self, BaseUrlError> {
        Self::with_auth(base_url, Auth::ApiKey(key), options)
    }

    /// A client for Claude Platform on AWS: every request SigV4-signed.
    pub fn new_sigv4(
        base_url: &str,
        signer: SigV4Signer,
        options: ClientOptions,
    ) -> Result<Self, BaseUrlError> {
        Self::with_auth(base_url, Auth::SigV4(signer), options)
    }

    pub fn with_auth(base_url: &str, auth: Auth, options: ClientOptions) -> Result<Self, BaseUrlError> {
        let base = parse_base_url(base_url)?;
        let http = crate::tls::http_client()?;
        Ok(Self {
            http,
            base,
            auth,
            options,
            retries: Default::default(),
            org: Default::default(),
        })
    }

    /// Retries made since the last drain, by status (for the metrics).
    pub fn retries(&self) -> &super::RetryCounter {
        &self.retries
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Whether requests are SigV4-signed (Claude Platform on AWS).
    pub fn signs_with_sigv4(&self) -> bool {
        matches!(self.auth, Auth::SigV4(_))
    }

    fn scrub(&self, text: &str) -> String {
        match &self.auth {
            Auth::ApiKey(key) => key.scrub(text),
            // Nothing secret is sent in a header's clear text but the
            // signature and session token, which no answer echoes.
            Auth::SigV4(_) => text.to_owned(),
        }
    }

    // ---- organization ----

    /// `GET /v1/organizations/me`, as answered.
    pub async fn get_organization(&self) -> Result<Organization, AdminApiError> {
        self.call(self.req(Method::GET, "/v1/organizations/me".into()))
            .await
    }

    /// The organization's bare UUID (what the key policy's org condition
    /// needs), read once per client and cached: an organization's id never
    /// changes. An answer that is not a bare UUID is an error, never a guess.
    pub async fn organization_uuid(&self) -> Result<OrgUuid, AdminApiError> {
        self.org
            .get_or_try_init(|| async {
                let org = self.get_organization().await?;
                org.id.parse::<OrgUuid>().map_err(|e| {
                    AdminApiError::Decode(format!(
                        "GET /v1/organizations/me answered an id that is not a bare organization UUID: {e}"
                    ))
                })
            })
            .await
            .copied()
    }

    // ---- workspaces ----

    pub async fn get_workspace(&self, id: &WorkspaceId) -> Result<Workspace, AdminApiError> {
        self.call(self.req(Method::GET, format!("/v1/organizations/workspaces/{id}")))
            .await
    }

    /// One page of the organization's workspaces, the Default Workspace
    /// included if asked (the API omits it otherwise).
    pub async fn list_workspaces_page(
        &self,
        after_id: Option<&str>,
        include_archived: bool,
        include_default: bool,
    ) -> Result<WorkspacePage, AdminApiError> {
        let mut req = self.req(Method::GET, "/v1/organizations/workspaces".into());
        req.query.push(("limit", WORKSPACE_PAGE_LIMIT.to_string()));
        req.query.push(("include_archived", include_archived.to_string()));
        req.query.push(("include_default", include_default.to_string()));
        if let Some(after) = after_id {
            req.query.push(("after_id", after.to_owned()));
        }
        self.call(req).await
    }

    /// Every workspace of the organization, following `has_more`/`last_id`.
    pub async fn list_workspaces(
        &self,
        include_archived: bool,
        include_default: bool,
    ) -> Result<Vec<Workspace>, AdminApiError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .list_workspaces_page(after.as_deref(), include_archived, include_default)
                .await?;
            out.extend(page.data);
            if !page.has_more {
                return Ok(out);
            }
            match page.last_id {
                Some(last) if after.as_deref() != Some(last.as_str()) => after = Some(last),
                _ => {
                    return Err(AdminApiError::Decode(
                        "list workspaces said has_more without a new last_id".into(),
                    ));
                }
            }
        }
        Err(AdminApiError::Decode(format!(
            "list workspaces did not end after {MAX_PAGES} pages"
        )))
    }

    /// The workspace, read through the list's id filter without the Default
    /// Workspace (archived ones included): `None` when the list does not
    /// have it, which for a workspace a `GET` finds means it is the
    /// organization's Default Workspace (the workspace object has no field
    /// that says so; the list omits it unless `include_default=true`). One
    /// call, the same as a `GET`, on the common path.
    pub async fn workspace_unless_default(
        &self,
        id: &WorkspaceId,
    ) -> Result<Option<Workspace>, AdminApiError> {
        let mut req = self.req(Method::GET, "/v1/organizations/workspaces".into());
        req.query.push(("limit", "1".into()));
        req.query.push(("include_archived", "true".into()));
        req.query.push(("include_default", "false".into()));
        req.query.push(("id[]", id.to_string()));
        let page: WorkspacePage = self.call(req).await?;
        match page.data.into_iter().next() {
            Some(w) if w.id == id.as_str() => Ok(Some(w)),
            Some(w) => Err(AdminApiError::Decode(format!(
                "list workspaces answered {} to an id filter that did not name it: the filter was ignored",
                w.id
            ))),
            None => Ok(None),
        }
    }

    /// The workspaces with these ids, 100 ids a call (the list's `id` filter,
    /// sent as the SDKs send arrays: `id[]=…`; Anthropic's Python SDK builds
    /// its query strings with `array_format="brackets"`). Archived workspaces
    /// are included; ids the organization does not have are absent from the
    /// answer. A server that ignored the filter would answer with workspaces
    /// nobody asked for: that is refused as `Decode`, never taken as an answer.
    pub async fn workspaces_by_id(&self, ids: &[WorkspaceId]) -> Result<Vec<Workspace>, AdminApiError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ID_FILTER_LIMIT) {
            let mut req = self.req(Method::GET, "/v1/organizations/workspaces".into());
            req.query.push(("limit", ID_FILTER_LIMIT.to_string()));
            req.query.push(("include_archived", "true".into()));
            req.query.push(("include_default", "true".into()));
            for id in chunk {
                req.query.push(("id[]", id.to_string()));
            }
            let page: WorkspacePage = self.call(req).await?;
            if let Some(stranger) = page
                .data
                .iter()
                .find(|w| !chunk.iter().any(|id| id.as_str() == w.id))
            {
                return Err(AdminApiError::Decode(format!(
                    "list workspaces answered {} to an id filter that did not name it: the filter was ignored",
                    stranger.id
                )));
            }
            out.extend(page.data);
        }
        Ok(out)
    }

    /// Set the workspace's `external_key_id`. Irreversible on Anthropic's side:
    /// callers must have validated the key and checked the workspace first.
    pub async fn attach_key(
        &self,
        workspace: &WorkspaceId,
        key: &ExternalKeyId,
    ) -> Result<Workspace, AdminApiError> {
        let mut req = self.req(Method::POST, format!("/v1/organizations/workspaces/{workspace}"));
        req.body = Some(json!({"external_key_id": key.as_str()}));
        req.retry_conflict = false;
        self.call(req).await
    }

    /// Create a workspace encrypted with `body.external_key_id` from its first
    /// byte ("Create Workspace"). Not idempotent — the API has no idempotency
    /// key — so, like a registration, it is replayed only when refused before
    /// taking effect; after an unknown outcome, find it by its tags
    /// (in [`Self::list_workspaces`]) before creating again.
    pub async fn create_workspace(&self, body: &CreateWorkspace<'_>) -> Result<Workspace, AdminApiError> {
        let mut req = self.req(Method::POST, "/v1/organizations/workspaces".into());
        req.replay = Replay::OnlyIfRejected;
        req.retry_conflict = false;
        req.body = Some(serde_json::to_value(body).map_err(|e| AdminApiError::Decode(e.to_string()))?);
        self.call(req).await
    }

    /// Change what Update Workspace lets change after creation and this
    /// project manages: the name and the display colour. Never the key.
    pub async fn rename_workspace(
        &self,
        workspace: &WorkspaceId,
        name: Option<&str>,
        display_color: Option<&str>,
    ) -> Result<Workspace, AdminApiError> {
        let mut req = self.req(Method::POST, format!("/v1/organizations/workspaces/{workspace}"));
        let mut body = serde_json::Map::new();
        if let Some(n) = name {
            body.insert("name".into(), json!(n));
        }
        if let Some(c) = display_color {
            body.insert("display_color".into(), json!(c));
        }
        req.body = Some(Value::Object(body));
        self.call(req).await
    }

    /// `POST /v1/organizations/workspaces/{id}/archive`: the customer's
    /// choice when a custom resource that asked for it is deleted. The key
    /// stays, and so does the data it protects.
    pub async fn archive_workspace(&self, workspace: &WorkspaceId) -> Result<Workspace, AdminApiError> {
        self.call(self.req(
            Method::POST,
            format!("/v1/organizations/workspaces/{workspace}/archive"),
        ))
        .await
    }

    // ---- external keys ----

    /// Register a KMS key. Not idempotent: look the key up by ARN first
    /// ([`Self::find_external_key_by_arn`]) when an earlier outcome is unknown.
    pub async fn create_external_key(
        &self,
        display_name: &str,
        geo: Geo,
        kms_arn: &KeyArn,
    ) -> Result<ExternalKey, AdminApiError> {
        let mut req = self.req(Method::POST, "/v1/organizations/external_keys".into());
        req.replay = Replay::OnlyIfRejected;
        // No role_arn: deprecated and ignored; the role is Anthropic's, per geo.
        let body = CreateExternalKey {
            display_name,
            geo,
            provider_config: CreateAwsProvider {
                kind: "aws",
                kms_arn: kms_arn.as_str(),
            },
        };
        req.body = Some(serde_json::to_value(body).map_err(|e| AdminApiError::Decode(e.to_string()))?);
        self.call(req).await
    }

    pub async fn list_external_keys_page(
        &self,
        page: Option<&str>,
    ) -> Result<ExternalKeyPage, AdminApiError> {
        let mut req = self.req(Method::GET, "/v1/organizations/external_keys".into());
        req.query.push(("limit", KEY_PAGE_LIMIT.to_string()));
        if let Some(p) = page {
            req.query.push(("page", p.to_owned()));
        }
        self.call(req).await
    }

    /// Every registered external key, following `next_page`.
    pub async fn list_external_keys(&self) -> Result<Vec<ExternalKey>, AdminApiError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let p = self.list_external_keys_page(page.as_deref()).await?;
            out.extend(p.data);
            match p.next_page {
                None => return Ok(out),
                Some(next) if page.as_deref() == Some(next.as_str()) => {
                    return Err(AdminApiError::Decode(
                        "list external keys returned the same next_page twice".into(),
                    ));
                }
                Some(next) => page = Some(next),
            }
        }
        Err(AdminApiError::Decode(format!(
            "list external keys did not end after {MAX_PAGES} pages"
        )))
    }

    /// The registration of `kms_arn`, if there is one (how a retried
    /// registration finds the key an earlier attempt created).
    pub async fn find_external_key_by_arn(
        &self,
        kms_arn: &KeyArn,
    ) -> Result<Option<ExternalKey>, AdminApiError> {
        let keys = self.list_external_keys().await?;
        Ok(keys.into_iter().find(|k| k.kms_arn() == Some(kms_arn.as_str())))
    }

    pub async fn get_external_key(&self, id: &ExternalKeyId) -> Result<ExternalKey, AdminApiError> {
        self.call(self.req(
            Method::GET,
            format!("/v1/organizations/external_keys/{}", id.path_segment()),
        ))
        .await
    }

    pub async fn update_external_key_display_name(
        &self,
        id: &ExternalKeyId,
        display_name: &str,
    ) -> Result<ExternalKey, AdminApiError> {
        let mut req = self.req(
            Method::POST,
            format!("/v1/organizations/external_keys/{}", id.path_segment()),
        );
        req.body = Some(json!({"display_name": display_name}));
        self.call(req).await
    }

    /// Ask Anthropic to run an encrypt/decrypt round trip with the key.
    /// HTTP 200 either way: the verdict is in [`Validation::status`].
    pub async fn validate_external_key(&self, id: &ExternalKeyId) -> Result<Validation, AdminApiError> {
        let mut req = self.req(
            Method::POST,
            format!("/v1/organizations/external_keys/{}/validate", id.path_segment()),
        );
        req.body = Some(json!({}));
        req.timeout = self.options.validate_timeout;
        self.call(req).await
    }

    // ---- transport ----

    fn req(&self, method: Method, path: String) -> Request<'static> {
        Request {
            method,
            path,
            query: Vec::new(),
            body: None,
            timeout: self.options.timeout,
            replay: Replay::Safe,
            retry_conflict: true,
        }
    }

    async fn call<T: DeserializeOwned>(&self, req: Request<'_>) -> Result<T, AdminApiError> {
        let policy = self.options.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.initial_backoff)
            .with_max_delay(policy.max_backoff)
            .with_max_times(policy.max_retries)
            .with_jitter();
        let (replay, retry_conflict) = (req.replay, req.retry_conflict);
        let result = (|| self.attempt::<T>(&req))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|a: &Attempt| a.retryable(replay, retry_conflict))
            // A usable retry-after replaces our backoff, but never extends the
            // number of attempts (None means attempts are exhausted).
            .adjust(|a: &Attempt, next| {
                next.map(|d| {
                    a.retry_after
                        .filter(|r| *r <= policy.max_retry_after)
                        .unwrap_or(d)
                })
            })
            .notify(|a: &Attempt, after| {
                self.retries.record(a.error.status(), a.retry_after);
                tracing::warn!(
                    method = %req.method,
                    path = %req.path,
                    status = a.error.status(),
                    request_id = a.error.request_id(),
                    retry_in_ms = after.as_millis() as u64,
                    "Admin API call failed; retrying: {}",
                    a.error
                );
            })
            .await;
        result.map_err(|a| {
            // A 429 (or another answer worth retrying) the call gave up on is
            // met too: counted apart from the retries (`Retries::gave_up_by_status`).
            if a.retryable(Replay::Safe, true) {
                self.retries.record_gave_up(a.error.status());
            }
            a.error
        })
    }

    async fn attempt<T: DeserializeOwned>(&self, req: &Request<'_>) -> Result<T, Attempt> {
        let url = self
            .base
            .join(req.path.trim_start_matches('/'))
            .map_err(|e| Attempt {
                error: AdminApiError::Transport(format!("bad request path: {e}")),
                should_retry_header: Some(false),
                retry_after: None,
                not_sent: false,
            })?;
        let mut builder = self
            .http
            .request(req.method.clone(), url)
            .timeout(req.timeout)
            .header("anthropic-version", API_VERSION);
        if let Auth::ApiKey(key) = &self.auth {
            builder = builder.header("x-api-key", key.expose());
        }
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let mut request = builder
            .build()
            .map_err(|e| self.transport_error(e, req.timeout))?;
        if let Auth::SigV4(signer) = &self.auth {
            signer.sign(&mut request).await.map_err(|error| Attempt {
                error,
                should_retry_header: Some(false),
                retry_after: None,
                not_sent: false,
            })?;
        }
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| self.transport_error(e, req.timeout))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e, req.timeout))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| Attempt {
                error: AdminApiError::Decode(format!("{} {}: {e}", req.method, req.path)),
                should_retry_header: Some(false),
                retry_after: None,
                not_sent: false,
            });
        }
        Err(self.error_attempt(status, &headers, &bytes))
    }

    fn transport_error(&self, e: reqwest::Error, timeout: Duration) -> Attempt {
        // reqwest errors can include the URL but never headers; scrub anyway.
        let error = if e.is_timeout() {
            AdminApiError::ClientTimeout(timeout)
        } else {
            AdminApiError::Transport(self.scrub(&without_url(&e)))
        };
        Attempt {
            error,
            should_retry_header: None,
            retry_after: None,
            not_sent: e.is_connect(),
        }
    }

    fn error_attempt(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Attempt {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let error_type = parsed
            .as_ref()
            .and_then(|v| v.pointer("/error/type"))
            .and_then(Value::as_str);
        let message = parsed
            .as_ref()
            .and_then(|v| v.pointer("/error/message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let reason = status.canonical_reason().unwrap_or("error");
                if text.trim().is_empty() {
                    reason.to_owned()
                } else {
                    crate::ids::shown(&text)
                }
            });
        let request_id = parsed
            .as_ref()
            .and_then(|v| v.get("request_id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| header("request-id"));
        let retry_after = retry_after(headers);
        let error_code = parsed
            .as_ref()
            .and_then(|v| v.pointer("/error/details/error_code"))
            .and_then(Value::as_str)
            .map(|c| super::ErrorCode::parse(&crate::ids::shown(c)));
        let failure = ApiFailure {
            status: status.as_u16(),
            message: self.scrub(&message),
            request_id,
            error_code,
        };
        // An AWS front door names a refused signature in x-amzn-ErrorType;
        // retrying the same request cannot change that verdict.
        let signature_refused = self.signs_with_sigv4()
            && status == StatusCode::FORBIDDEN
            && header("x-amzn-errortype").is_some_and(|t| is_signature_error(&t));
        let error = if signature_refused {
            AdminApiError::SignatureRejected(failure)
        } else {
            AdminApiError::from_response(status.as_u16(), error_type, failure, retry_after)
        };
        let should_retry_header = match header("x-should-retry").as_deref() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        Attempt {
            error,
            should_retry_header,
            retry_after,
            not_sent: false,
        }
    }
}

/// `retry-after-ms` (milliseconds, may be fractional) wins over `retry-after`,
/// which is seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past
/// means "now".
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let seconds = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    if let Some(ms) = get("retry-after-ms").and_then(seconds) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?;
    if let Some(s) = seconds(value) {
        return Some(Duration::from_secs_f64(s));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The error types AWS answers for a signature it does not accept
/// (`x-amzn-ErrorType` may carry a `:`-suffix with the error's URL).
fn is_signature_error(error_type: &str) -> bool {
    let name = error_type.split(':').next().unwrap_or_default().trim();
    matches!(
        name,
        "InvalidSignatureException"
            | "IncompleteSignatureException"
            | "SignatureDoesNotMatch"
            | "MissingAuthenticationTokenException"
            | "UnrecognizedClientException"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
    )
}

fn without_url(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    if let Some(url) = e.url() {
        out = out.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
