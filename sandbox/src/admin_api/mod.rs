//! A local stand-in for Anthropic's Admin API (the workspace and external-key
//! endpoints), faithful to the documented contract: headers, error bodies with
//! `request-id`, pagination, write-once attach, validate's HTTP 200 verdict —
//! plus faults on demand and an inspection API under `/_sandbox/`.

mod contract;
mod evaluator;
mod faults;
pub mod on_aws;
mod state;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use contract::{
    ANTHROPIC_ROLE_US, ASSOCIATED_DATA_VALUE, Contract, ContractConfig, MissingKey, UnattachedValidation,
    VALIDATION_COMPARTMENT,
};
pub use evaluator::{Decision, KmsRequest, evaluate};
pub use faults::{Faults, Injected, RateLimiterKind, Scripted};
use state::{Org, World, random_suffix};
pub use state::{OrgSeed, WorkspaceRec};
pub use validate::{Check, Validator};

/// How to start the stand-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    pub orgs: Vec<OrgSeed>,
    pub faults: Faults,
    /// moto's endpoint, for validate's KMS checks.
    pub kms_endpoint: Option<String>,
    pub serving_regions: Vec<String>,
    /// Which documentation generation to play, and the ambiguous points.
    pub contract: ContractConfig,
    /// Play Claude Platform on AWS (SigV4, the service principal,
    /// attach-time validation) for the first organization instead of
    /// Claude Platform.
    pub aws_platform: Option<on_aws::AwsPlatform>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            orgs: Vec::new(),
            faults: Faults::default(),
            contract: ContractConfig::default(),
            aws_platform: None,
            kms_endpoint: None,
            serving_regions: ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// One request as received (the API key is never recorded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub org: Option<String>,
    pub status: u16,
    pub request_id: String,
    pub fault: Option<String>,
    pub body: Option<Value>,
    /// What the request changed, whatever it was answered: `registered
    /// <ekey> <arn>` or `attached <ekey> to <workspace>`. The oracle for
    /// exactly-once, independent of what the client saw.
    #[serde(default)]
    pub effect: Option<String>,
    /// When it was answered (milliseconds since the Unix epoch): its effect,
    /// if any, had happened by then.
    #[serde(default)]
    pub at_ms: u64,
}

#[derive(Debug)]
pub struct Shared {
    world: Mutex<World>,
    faults: Mutex<Faults>,
    requests: Mutex<Vec<RecordedRequest>>,
    limiters: Mutex<HashMap<String, faults::Limiter>>,
    attach_warnings: Mutex<Vec<Value>>,
    /// Attachments of keys no validate call had succeeded for (the real API
    /// allows them; this product must never make one).
    unvalidated_attachments: Mutex<Vec<Value>>,
    /// The access-denied events validation's negative checks left, as
    /// CloudTrail would record them (four per validation under the current contract).
    cloudtrail: Mutex<Vec<Value>>,
    contract: Mutex<ContractConfig>,
    /// The random draws' generator and the seed it started from.
    rng: Mutex<(u64, rand::rngs::StdRng)>,
    validator: Validator,
    aws_platform: Option<on_aws::AwsPlatform>,
    /// Claude Platform on AWS: the organization the account's signed requests act for.
    aws_org_key: Option<String>,
    /// Claude Platform on AWS: what IAM authorized for each signed request,
    /// and the caller's own KMS access the attach checked, by caller (the
    /// access key id, which the local stack makes the function's name).
    aws_calls: Mutex<Vec<crate::aws_proxy::AwsCall>>,
}

fn seeded(seed: Option<u64>) -> (u64, rand::rngs::StdRng) {
    use rand::{Rng, SeedableRng};
    let seed = seed.unwrap_or_else(|| rand::rng().random());
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
}

/// A running stand-in; dropping it stops the server.
#[derive(Debug)]
pub struct SandboxApi {
    pub url: String,
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SandboxApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SandboxApi {
    /// Serve on `addr` (port 0 picks a free one).
    pub async fn start(config: SandboxConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        let mut world = World::default();
        for org in &config.orgs {
            world.seed(org);
        }
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            faults: Mutex::new(config.faults.clone()),
            requests: Mutex::new(Vec::new()),
            limiters: Mutex::new(HashMap::new()),
            attach_warnings: Mutex::new(Vec::new()),
            unvalidated_attachments: Mutex::new(Vec::new()),
            cloudtrail: Mutex::new(Vec::new()),
            contract: Mutex::new(config.contract),
            rng: Mutex::new(seeded(config.faults.seed)),
            validator: Validator::new(config.kms_endpoint.clone(), config.serving_regions.clone()),
            aws_platform: config.aws_platform.clone(),
            aws_org_key: config.orgs.first().map(|o| o.admin_key.clone()),
            aws_calls: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("sandbox Admin API stopped: {e}");
            }
        });
        Ok(Self { url, shared, task })
    }

    // Direct access for tests in the same process.

    pub fn seed(&self, seed: &OrgSeed) -> Vec<WorkspaceRec> {
        lock(&self.shared.world).seed(seed)
    }

    pub fn set_faults(&self, faults: Faults) {
        if faults.seed.is_some() {
            *lock(&self.shared.rng) = seeded(faults.seed);
        }
        *lock(&self.shared.faults) = faults;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).clone()
    }

    /// The seed the random faults were drawn from.
    pub fn fault_seed(&self) -> u64 {
        lock(&self.shared.rng).0
    }

    /// The keys the organization's Workspace Policy lists as allowed.
    pub fn set_workspace_policy(&self, policy: WorkspacePolicy) -> Result<(), String> {
        set_workspace_policy(&self.shared, policy).map(|_| ())
    }

    /// Bind a workspace and/or a registration to a user profile.
    pub fn bind_user_profile(&self, binding: UserProfileBinding) -> Result<(), String> {
        bind_user_profile(&self.shared, binding).map(|_| ())
    }

    pub fn set_contract(&self, contract: ContractConfig) {
        *lock(&self.shared.contract) = contract;
    }

    pub fn contract(&self) -> ContractConfig {
        *lock(&self.shared.contract)
    }

    /// The access-denied events validation's negative checks left so far.
    pub fn cloudtrail(&self) -> Vec<Value> {
        lock(&self.shared.cloudtrail).clone()
    }

    /// Whether Anthropic's traffic for an attached workspace would be
    /// allowed by its key's policy now (see [`Validator::live_traffic_allowed`]).
    pub async fn live_traffic(&self, workspace: &str) -> Result<(), String> {
        live_traffic(&self.shared, workspace).await
    }

    /// Claude Platform on AWS: the IAM authorizations of the signed requests
    /// (for the IAM coverage test).
    pub fn aws_calls(&self) -> Vec<crate::aws_proxy::AwsCall> {
        lock(&self.shared.aws_calls).clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    pub fn state(&self) -> Value {
        state_json(&self.shared)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a handler panicked mid-update; the sandbox's data
    // is still the best view we have, so keep serving it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u64>,
    /// Claude Platform on AWS: the AWS error type of a refused signature (`x-amzn-ErrorType`).
    aws_type: Option<&'static str>,
    /// The typed `error.details.error_code` (see `contract::ErrorCodes`).
    code: Option<String>,
}

fn api_error(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        kind,
        message: message.into(),
        retry_after: None,
        aws_type: None,
        code: None,
    }
}

/// A 400 carrying one of the documented typed codes.
fn coded(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    let kind = if status == StatusCode::CONFLICT {
        "conflict_error"
    } else {
        "invalid_request_error"
    };
    ApiError {
        code: Some(code.to_owned()),
        ..api_error(status, kind, message)
    }
}

fn not_found(what: &str) -> ApiError {
    api_error(
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!("{what} not found"),
    )
}

/// An external key id that is not registered, answered as the contract's
/// `missing_key` reading says.
fn missing_key(shared: &Shared) -> ApiError {
    match lock(&shared.contract).missing_key {
        MissingKey::NotFound404 => not_found("external key"),
        MissingKey::ExternalKeyNotFound400 => coded(
            StatusCode::BAD_REQUEST,
            "external_key_not_found",
            "External key not found",
        ),
    }
}

fn in_workspace_policy() -> ApiError {
    coded(
        StatusCode::BAD_REQUEST,
        "external_key_in_workspace_policy",
        "The External Key can't be deleted or reconfigured while the organization's Workspace Policy lists it as an allowed key.",
    )
}

/// A validation refusal at attach time (the documented typed code).
fn validation_failed(reason: &str) -> ApiError {
    coded(
        StatusCode::BAD_REQUEST,
        "external_key_validation_failed",
        format!("external_key_id: the key failed validation and was not attached: {reason}"),
    )
}

fn invalid(message: impl Into<String>) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

fn respond(status: StatusCode, body: Value, request_id: &str, retry_after: Option<u64>) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("request-id", v);
    }
    if let Some(s) = retry_after {
        resp.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    resp
}

fn error_response(e: &ApiError, request_id: &str, codes: bool) -> Response {
    let mut body =
        json!({"type": "error", "error": {"type": e.kind, "message": e.message}, "request_id": request_id});
    if let Some(code) = e.code.as_ref().filter(|_| codes) {
        body["error"]["details"] = json!({"error_code": code});
    }
    let mut resp = respond(e.status, body, request_id, e.retry_after);
    if let Some(t) = e.aws_type {
        resp.headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(t));
    }
    resp
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if let Some(ws) = path.strip_prefix("/_sandbox/live-traffic/") {
        let verdict = live_traffic(&shared, ws).await;
        return axum::Json(json!({"allowed": verdict.is_ok(), "reason": verdict.err()})).into_response();
    }
    if let Some(rest) = path.strip_prefix("/_sandbox/") {
        return inspect(&shared, &method, rest, &body);
    }
    let request_id = format!("req_{}", random_suffix(24));
    let faults = lock(&shared.faults).clone();
    let latency = faults.latency(&mut lock(&shared.rng).1);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // Claude Platform on AWS: the signature is the credential. A verified
    // request acts for the first organization (the one of this account).
    let mut signed_by: Option<Result<on_aws::Caller, on_aws::Refusal>> = None;
    let key = match &shared.aws_platform {
        None => headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        Some(aws) => {
            let tampered = {
                let mut f = lock(&shared.faults);
                let t = f.tamper_in_transit > 0;
                f.tamper_in_transit = f.tamper_in_transit.saturating_sub(1);
                t
            };
            let mut body_seen = body.to_vec();
            if tampered {
                // One byte changed after signing, as a proxy in the path might.
                body_seen.push(b' ');
            }
            let verdict = on_aws::verify(
                aws,
                &method,
                &uri,
                &headers,
                &body_seen,
                std::time::SystemTime::now(),
            );
            signed_by = Some(verdict);
            shared.aws_org_key.clone()
        }
    };
    let org_name = key
        .as_ref()
        .and_then(|k| lock(&shared.world).orgs.get(k).map(|o| o.name.clone()));
    let body_json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut record = RecordedRequest {
        seq: 0,
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        org: org_name.clone(),
        status: 0,
        request_id: request_id.clone(),
        fault: None,
        body: body_json.clone(),
        effect: None,
        at_ms: 0,
    };
    // Who signed (Claude Platform on AWS), once the signature verified.
    let caller: Result<Option<on_aws::Caller>, ApiError> = match signed_by {
        Some(Err(refusal)) => {
            record.fault = Some(format!("signature refused: {}", refusal.aws_type));
            Err(ApiError {
                aws_type: Some(refusal.aws_type),
                ..api_error(StatusCode::FORBIDDEN, "permission_error", refusal.message)
            })
        }
        Some(Ok(caller)) => {
            if let Some(aws) = &shared.aws_platform {
                let scope = crate::iam_request::Scope {
                    region: &aws.region,
                    account: &aws.account_id,
                };
                let body_json: Option<Value> = serde_json::from_slice(&body).ok();
                let authorizations =
                    crate::iam_request::external_anthropic(method.as_str(), &path, body_json.as_ref(), scope);
                lock(&shared.aws_calls).push(crate::aws_proxy::AwsCall {
                    function: caller.access_key_id.clone(),
                    service: on_aws::SIGNING_NAME.into(),
                    action: authorizations
                        .first()
                        .map(|a| a.action.clone())
                        .unwrap_or_default(),
                    resource: authorizations.first().map(|a| a.resource.clone()),
                    status: 0,
                    fault: None,
                    authorizations,
                    key_policy: None,
                    at_ms: crate::aws_proxy::now_ms(),
                });
            }
            Ok(Some(caller))
        }
        None => Ok(None),
    };
    let outcome = match caller {
        Err(refused) => Err(refused),
        Ok(caller) => {
            process(
                &shared,
                &faults,
                &method,
                &uri,
                &headers,
                key,
                body_json,
                &mut record,
                caller.as_ref(),
            )
            .await
        }
    };
    let (status, response) = match outcome {
        Ok((status, value)) => (status, respond(status, value, &request_id, None)),
        Err(e) => {
            let codes = lock(&shared.contract).error_codes;
            (e.status, error_response(&e, &request_id, codes))
        }
    };
    record.status = status.as_u16();
    record.at_ms = crate::aws_proxy::now_ms();
    let mut log = lock(&shared.requests);
    record.seq = log.len() as u64 + 1;
    log.push(record);
    response
}

#[allow(clippy::too_many_arguments)]
async fn process(
    shared: &Shared,
    faults: &Faults,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    key: Option<String>,
    body: Option<Value>,
    record: &mut RecordedRequest,
    caller: Option<&on_aws::Caller>,
) -> Result<(StatusCode, Value), ApiError> {
    let key = key.ok_or_else(|| {
        api_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        )
    })?;
    if !lock(&shared.world).orgs.contains_key(&key) {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        ));
    }
    if headers.get("anthropic-version").is_none() {
        return Err(invalid("anthropic-version header is required"));
    }
    if let Some(limit) = faults.requests_per_minute {
        let now = Instant::now();
        let admitted = lock(&shared.limiters)
            .entry(key.clone())
            .or_insert_with(|| faults::Limiter::new(faults, now))
            .admit(limit, now);
        if let Err(wait) = admitted {
            record.fault = Some("requests_per_minute".into());
            return Err(ApiError {
                retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
                ..api_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "Number of requests has exceeded your per-minute rate limit",
                )
            });
        }
    }
    let path = uri.path();
    let scripted = lock(&shared.faults).take_scripted(method.as_str(), path);
    if let Some(f) = scripted.as_ref().filter(|f| !f.after_effect) {
        record.fault = Some(format!("scripted {}", f.status));
        return Err(scripted_error(f));
    }
    // A scripted fault is this request's only fault: a random one drawn on
    // top would answer first and the scripted one would never be seen.
    let injected = if scripted.is_none() && faults.applies_to(path) {
        faults.draw(&mut lock(&shared.rng).1)
    } else {
        None
    };
    match injected {
        Some(Injected::RateLimited { retry_after }) => {
            record.fault = Some(format!("429 retry_after={retry_after:?}"));
            return Err(ApiError {
                retry_after,
                ..api_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "Rate limited (injected)",
                )
            });
        }
        Some(Injected::ServerError) => {
            record.fault = Some("500".into());
            return Err(api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal server error (injected)",
            ));
        }
        Some(Injected::Overloaded) => {
            record.fault = Some("529".into());
            return Err(api_error(
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "overloaded_error",
                "Overloaded (injected)",
            ));
        }
        Some(Injected::ServerErrorAfterEffect) | None => {}
    }
    let query: HashMap<String, String> = uri.query().map(url_decode_pairs).unwrap_or_default();
    let result = route(
        shared,
        method,
        path,
        &query,
        &key,
        body,
        faults,
        &mut record.effect,
        caller,
    )
    .await;
    if let Some(f) = scripted.filter(|f| f.after_effect)
        && result.is_ok()
    {
        record.fault = Some(format!("scripted {} after the effect", f.status));
        return Err(scripted_error(&f));
    }
    if matches!(injected, Some(Injected::ServerErrorAfterEffect)) && result.is_ok() {
        record.fault = Some("500_after_effect".into());
        return Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error (injected after the request took effect)",
        ));
    }
    result
}

fn scripted_error(f: &faults::Scripted) -> ApiError {
    ApiError {
        retry_after: f.retry_after_secs,
        code: f.error_code.clone(),
        ..api_error(
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            f.error_type(),
            f.message
                .clone()
                .unwrap_or_else(|| format!("scripted {} (sandbox)", f.status)),
        )
    }
}

/// The query's parameters. A repeated `id[]` (the workspaces list's id
/// filter, an array sent as Anthropic's SDKs send arrays: `id[]=a&id[]=b`)
/// keeps every value, joined with commas (no id contains one).
fn url_decode_pairs(q: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()).into_owned() {
        match out.get_mut(&k) {
            Some(all) if k == "id[]" => {
                all.push(',');
                all.push_str(&v);
            }
            _ => {
                out.insert(k, v);
            }
        }
    }
    out
}

/// At most this many ids in one list call (the API reference: "at most 100").
const MAX_ID_FILTER: usize = 100;

fn parse_limit(query: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(invalid(format!("limit: must be an integer between 1 and {max}"))),
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    key: &str,
    body: Option<Value>,
    faults: &Faults,
    effect: &mut Option<String>,
    caller: Option<&on_aws::Caller>,
) -> Result<(StatusCode, Value), ApiError> {
    // An external key id may be an ARN, sent as one percent-encoded segment.
    let decoded: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(on_aws::decode_segment)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["v1", "organizations", "me"]) => {
            if let Some(body) = faults.organization_response.clone() {
                return Ok((StatusCode::OK, body));
            }
            let world = lock(&shared.world);
            let org = &world.orgs[key];
            Ok((
                StatusCode::OK,
                json!({"type": "organization", "id": org.uuid, "name": org.name}),
            ))
        }
        (Method::GET, ["v1", "organizations", "workspaces"]) => list_workspaces(shared, key, query),
        (Method::GET, ["v1", "organizations", "workspaces", id]) => {
            let world = lock(&shared.world);
            let org = &world.orgs[key];
            org.workspaces
                .get(*id)
                .map(|w| (StatusCode::OK, w.to_json()))
                .ok_or_else(|| not_found("workspace"))
        }
        (Method::POST, ["v1", "organizations", "workspaces"]) => {
            create_workspace(shared, key, body, effect, caller).await
        }
        (Method::POST, ["v1", "organizations", "workspaces", id]) => {
            update_workspace(shared, key, id, body, effect, caller).await
        }
        (Method::POST, ["v1", "organizations", "workspaces", id, "archive"]) => {
            let mut world = lock(&shared.world);
            let org = world.orgs.get_mut(key).ok_or_else(|| not_found("organization"))?;
            let ws = org
                .workspaces
                .get_mut(*id)
                .ok_or_else(|| not_found("workspace"))?;
            if ws.is_default {
                return Err(invalid("the Default Workspace cannot be archived"));
            }
            if ws.archived_at.is_none() {
                ws.archived_at = Some(state::now_rfc3339());
                *effect = Some(format!("archived {}", ws.id));
            }
            Ok((StatusCode::OK, ws.to_json()))
        }
        (Method::GET, ["v1", "organizations", "external_keys"]) => list_keys(shared, key, query),
        (Method::POST, ["v1", "organizations", "external_keys"]) => {
            create_key(shared, key, body, faults, effect)
        }
        (Method::GET, ["v1", "organizations", "external_keys", id]) => {
            let world = lock(&shared.world);
            let org = &world.orgs[key];
            org.keys
                .get(*id)
                .map(|k| (StatusCode::OK, org.key_json(k)))
                .ok_or_else(|| missing_key(shared))
        }
        (Method::POST, ["v1", "organizations", "external_keys", id]) => update_key(shared, key, id, body),
        (Method::DELETE, ["v1", "organizations", "external_keys", id]) => {
            let mut world = lock(&shared.world);
            let org = world.orgs.get_mut(key).ok_or_else(|| not_found("organization"))?;
            if !org.keys.contains_key(*id) {
                return Err(missing_key(shared));
            }
            if org.workspace_policy_keys.contains(*id) {
                return Err(in_workspace_policy());
            }
            if org.is_attached(id) {
                return Err(invalid(
                    "external key is attached to a workspace and cannot be deleted",
                ));
            }
            org.keys.remove(*id);
            Ok((StatusCode::OK, json!({"type": "external_key_deleted", "id": id})))
        }
        // Claude Platform on AWS has no separate validation: attaching does it.
        (Method::POST, ["v1", "organizations", "external_keys", _, "validate"])
            if shared.aws_platform.is_some() =>
        {
            Err(not_found("route"))
        }
        (Method::POST, ["v1", "organizations", "external_keys", id, "validate"]) => {
            validate(shared, key, id).await
        }
        _ => Err(not_found("route")),
    }
}

fn list_workspaces(
    shared: &Shared,
    key: &str,
    query: &HashMap<String, String>,
) -> Result<(StatusCode, Value), ApiError> {
    let limit = parse_limit(query, 20, 1000)?;
    let flag = |name: &str| match query.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(invalid(format!("{name}: must be true or false"))),
    };
    let include_archived = flag("include_archived")?;
    let include_default = flag("include_default")?;
    if query.contains_key("after_id") && query.contains_key("before_id") {
        return Err(invalid("after_id and before_id cannot both be set"));
    }
    // Only the workspaces with these ids; `include_archived` and
    // `include_default` still apply, and unknown ids are left out.
    let ids: Option<Vec<&str>> = query.get("id[]").map(|v| v.split(',').collect());
    if let Some(ids) = &ids
        && (ids.len() > MAX_ID_FILTER || ids.iter().any(|i| i.is_empty()))
    {
        return Err(invalid(format!(
            "id: at most {MAX_ID_FILTER} non-empty workspace ids"
        )));
    }
    let world = lock(&shared.world);
    let org = &world.orgs[key];
    let all: Vec<&WorkspaceRec> = org
        .workspaces_in_order()
        .into_iter()
        .filter(|w| include_archived || w.archived_at.is_none())
        .filter(|w| include_default || !w.is_default)
        .filter(|w| ids.as_ref().is_none_or(|ids| ids.contains(&w.id.as_str())))
        .collect();
    let position = |id: &str| all.iter().position(|w| w.id == id);
    let (start, end) = if let Some(after) = query.get("after_id") {
        let p = position(after).ok_or_else(|| invalid("after_id: no such workspace"))?;
        (p + 1, (p + 1 + limit).min(all.len()))
    } else if let Some(before) = query.get("before_id") {
        let p = position(before).ok_or_else(|| invalid("before_id: no such workspace"))?;
        (p.saturating_sub(limit), p)
    } else {
        (0, limit.min(all.len()))
    };
    let page = &all[start..end];
    let has_more = if query.contains_key("before_id") {
        start > 0
    } else {
        end < all.len()
    };
    Ok((
        StatusCode::OK,
        json!({
            "data": page.iter().map(|w| w.to_json()).collect::<Vec<_>>(),
            "has_more": has_more,
            "first_id": page.first().map(|w| w.id.clone()),
            "last_id": page.last().map(|w| w.id.clone()),
        }),
    ))
}

async fn update_workspace(
    shared: &Shared,
    key: &str,
    id: &str,
    body: Option<Value>,
    effect: &mut Option<String>,
    caller: Option<&on_aws::Caller>,
) -> Result<(StatusCode, Value), ApiError> {
    let body = body.ok_or_else(|| invalid("body must be a JSON object"))?;
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body must be a JSON object"))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "name" | "external_key_id" | "display_color" | "tags") {
            return Err(invalid(format!("{k}: Extra inputs are not permitted")));
        }
    }
    // Every field is checked before anything changes.
    let tags = workspace_tags(obj.get("tags"))?;
    let display_color = match obj.get("display_color") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if is_hex_color(c) => Some(c.clone()),
        Some(_) => return Err(invalid("display_color: must match ^#[0-9A-Fa-f]{6}$")),
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if (1..=255).contains(&n.chars().count()) => Some(n.clone()),
        Some(_) => return Err(invalid("name: must be 1-255 characters")),
    };
    let contract = *lock(&shared.contract);
    // First pass, without changing anything: is this an attach, and may it happen?
    let attach = {
        let world = lock(&shared.world);
        let org = world.orgs.get(key).ok_or_else(|| not_found("organization"))?;
        let ws = org.workspaces.get(id).ok_or_else(|| not_found("workspace"))?;
        match obj.get("external_key_id") {
            None => None,
            Some(v) => {
                let ekey = v
                    .as_str()
                    .ok_or_else(|| invalid("external_key_id: must be a string"))?;
                let k = org
                    .keys
                    .get(ekey)
                    .ok_or_else(|| invalid(format!("external_key_id: external key {ekey} not found")))?;
                if ws.archived_at.is_some() {
                    return Err(invalid("cannot attach an external key to an archived workspace"));
                }
                match &ws.external_key_id {
                    Some(existing) if existing == ekey => None,
                    Some(_) => {
                        let status = StatusCode::from_u16(contract.write_once_status)
                            .unwrap_or(StatusCode::BAD_REQUEST);
                        let kind = if status == StatusCode::CONFLICT {
                            "conflict_error"
                        } else {
                            "invalid_request_error"
                        };
                        return Err(api_error(
                            status,
                            kind,
                            "external_key_id cannot be changed once set: a workspace's external key is permanent",
                        ));
                    }
                    None => {
                        attachable(shared, k, ws.user_profile_id.as_deref())?;
                        Some((k.clone(), ws.compartment_id.clone(), org.uuid.clone()))
                    }
                }
            }
        }
    };
    if let Some((k, compartment, org_uuid)) = &attach {
        attach_verdict(shared, key, k, compartment, id, org_uuid, caller).await?;
    }
    let (response, check) = {
        let mut world = lock(&shared.world);
        let org: &mut Org = world.orgs.get_mut(key).ok_or_else(|| not_found("organization"))?;
        let org_uuid = org.uuid.clone();
        // Validated by this very request (Claude Platform on AWS).
        let validated_now = attach
            .as_ref()
            .is_some_and(|(k, _, _)| org.keys.get(&k.id).is_some_and(|x| x.validated));
        let ws = org.workspaces.get_mut(id).ok_or_else(|| not_found("workspace"))?;
        let mut check = None;
        if let Some((k, _, _)) = &attach {
            match &ws.external_key_id {
                // Attached by a concurrent request meanwhile: write-once still holds.
                Some(existing) if existing != &k.id => {
                    return Err(invalid(
                        "external_key_id cannot be changed once set: a workspace's external key is permanent",
                    ));
                }
                Some(_) => {}
                None => {
                    ws.external_key_id = Some(k.id.clone());
                    ws.attached_under = Some(contract.contract);
                    *effect = Some(format!("attached {} to {}", k.id, ws.id));
                    check = Some((
                        k.kms_arn.clone(),
                        ws.compartment_id.clone(),
                        ws.id.clone(),
                        org_uuid,
                    ));
                    if !(k.validated || validated_now) {
                        lock(&shared.unvalidated_attachments)
                            .push(json!({"workspace": ws.id, "external_key_id": k.id}));
                    }
                }
            }
        }
        if let Some(tags) = tags {
            ws.tags = tags;
        }
        if let Some(c) = display_color {
            ws.display_color = c;
        }
        if let Some(n) = name {
            ws.name = n;
        }
        (ws.to_json(), check)
    };
    // After attaching, Anthropic's live traffic uses the workspace's own
    // compartment. Record whether that traffic would be allowed, so tests can
    // see attachments that validation alone would not catch.
    if let Some((arn, compartment, workspace, org_uuid)) = check.filter(|_| shared.aws_platform.is_none()) {
        let verdict = shared
            .validator
            .live_traffic_allowed(&arn, &org_uuid, &compartment, Some(contract.contract))
            .await;
        if let Err(reason) = verdict {
            lock(&shared.attach_warnings)
                .push(json!({"workspace": workspace, "kms_arn": arn, "reason": reason}));
        }
    }
    Ok((StatusCode::OK, response))
}

/// `POST /v1/organizations/workspaces` ("Create Workspace"): `name` (1-255),
/// optional `data_residency`, `display_color` (`^#[0-9A-Fa-f]{6}$`),
/// `tags` (string to string; keys may not begin with "anthropic") and
/// `external_key_id`. With a key, the key is checked against the new
/// workspace (its user profile, provider) and validated as an attach is,
/// before the workspace exists: a refusal creates nothing. Like the real
/// API, it has no idempotency key: the same request twice makes two
/// workspaces. Sources: platform.claude.com/docs/en/api/organization/workspaces/create
/// and …/retrieve (the Workspace object with `tags` and `data_residency`).
async fn create_workspace(
    shared: &Shared,
    key: &str,
    body: Option<Value>,
    effect: &mut Option<String>,
    caller: Option<&on_aws::Caller>,
) -> Result<(StatusCode, Value), ApiError> {
    let body = body.ok_or_else(|| invalid("body must be a JSON object"))?;
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body must be a JSON object"))?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "name" | "data_residency" | "display_color" | "external_key_id" | "tags"
        ) {
            return Err(invalid(format!("{k}: Extra inputs are not permitted")));
        }
    }
    let name = match obj.get("name") {
        Some(Value::String(n)) if (1..=255).contains(&n.chars().count()) => n.clone(),
        Some(_) => return Err(invalid("name: must be 1-255 characters")),
        None => return Err(invalid("name: Field required")),
    };
    let display_color = match obj.get("display_color") {
        None | Some(Value::Null) => "#6C5BB9".to_owned(),
        Some(Value::String(c)) if is_hex_color(c) => c.clone(),
        Some(_) => return Err(invalid("display_color: must match ^#[0-9A-Fa-f]{6}$")),
    };
    let tags = workspace_tags(obj.get("tags"))?.unwrap_or_default();
    let data_residency = match obj.get("data_residency") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => {
            for k in d.keys() {
                if !matches!(
                    k.as_str(),
                    "workspace_geo" | "allowed_inference_geos" | "default_inference_geo"
                ) {
                    return Err(invalid(format!(
                        "data_residency.{k}: Extra inputs are not permitted"
                    )));
                }
            }
            match d.get("workspace_geo") {
                None | Some(Value::Null) => {}
                Some(Value::String(g)) if g == "us" => {}
                Some(other) => {
                    return Err(invalid(format!(
                        "data_residency.workspace_geo: {other} is not a supported geo ('us')"
                    )));
                }
            }
            let mut merged = state::default_data_residency();
            for (k, v) in d.iter().filter(|(_, v)| !v.is_null()) {
                merged[k] = v.clone();
            }
            Some(merged)
        }
        Some(_) => return Err(invalid("data_residency: must be an object")),
    };
    let id = format!("wrkspc_{}", random_suffix(24));
    let compartment = uuid::Uuid::new_v4().hyphenated().to_string();
    // The key, checked against the workspace-to-be before anything exists.
    let attach = match obj.get("external_key_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(ekey)) => {
            let (k, org_uuid) = {
                let world = lock(&shared.world);
                let org = world.orgs.get(key).ok_or_else(|| not_found("organization"))?;
                let k = org
                    .keys
                    .get(ekey.as_str())
                    .ok_or_else(|| invalid(format!("external_key_id: external key {ekey} not found")))?;
                (k.clone(), org.uuid.clone())
            };
            attachable(shared, &k, None)?;
            if shared.aws_platform.is_some() || lock(&shared.contract).create_validates_key {
                attach_verdict(shared, key, &k, &compartment, &id, &org_uuid, caller).await?;
            }
            Some(k)
        }
        Some(_) => return Err(invalid("external_key_id: must be a string")),
    };
    let contract = lock(&shared.contract).contract;
    let mut world = lock(&shared.world);
    let org = world.orgs.get_mut(key).ok_or_else(|| not_found("organization"))?;
    let mut w = org.add_workspace(&name, false, None);
    org.workspaces.remove(&w.id);
    w.id = id;
    w.compartment_id = compartment;
    w.display_color = display_color;
    w.tags = tags;
    w.data_residency = data_residency;
    if let Some(k) = &attach {
        w.external_key_id = Some(k.id.clone());
        w.attached_under = Some(contract);
        if !k.validated && !org.keys.get(&k.id).is_some_and(|x| x.validated) {
            lock(&shared.unvalidated_attachments).push(json!({"workspace": w.id, "external_key_id": k.id}));
        }
    }
    org.workspaces.insert(w.id.clone(), w.clone());
    *effect = Some(match &attach {
        Some(k) => format!("created {} with {}", w.id, k.id),
        None => format!("created {}", w.id),
    });
    Ok((StatusCode::OK, w.to_json()))
}

fn is_hex_color(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|x| x.is_ascii_hexdigit())
}

/// `tags`: "User-defined tags as string key-value pairs. Keys may not begin
/// with anthropic." (the Update Workspace reference).
fn workspace_tags(v: Option<&Value>) -> Result<Option<std::collections::BTreeMap<String, String>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                if k.to_ascii_lowercase().starts_with("anthropic") {
                    return Err(invalid(format!("tags.{k}: keys may not begin with 'anthropic'")));
                }
                match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(invalid(format!("tags.{k}: must be a string"))),
                }
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(invalid("tags: must be an object of strings")),
    }
}

/// What makes a registration unfit for a workspace before any KMS check:
/// the user profile binding and, on Claude Platform on AWS, the provider.
fn attachable(shared: &Shared, k: &state::KeyRec, workspace_profile: Option<&str>) -> Result<(), ApiError> {
    // "A key and its Workspace must have the same user profile, or both
    // have none" (key_profile_mismatch).
    if k.user_profile_id.as_deref() != workspace_profile {
        return Err(coded(
            StatusCode::BAD_REQUEST,
            "key_profile_mismatch",
            "After this request, the External Key and the Workspace would not have the same user profile.",
        ));
    }
    // Claude Platform on AWS takes AWS KMS keys only.
    if shared.aws_platform.is_some() && k.provider != "aws" {
        return Err(coded(
            StatusCode::BAD_REQUEST,
            "external_key_provider_mismatch",
            format!(
                "external_key_id: this endpoint takes AWS KMS keys (provider_config.type 'aws'), not {}",
                k.provider
            ),
        ));
    }
    Ok(())
}

/// The validation Anthropic makes when a key is attached to a workspace
/// (an update's `external_key_id`, or a create's): on Claude Platform on
/// AWS the only validation, as the service principal acting for this
/// workspace and of the caller's own access; on Claude Platform (current
/// contract) a second one, with this workspace's compartment, negative
/// checks included. A refusal is `external_key_validation_failed`.
async fn attach_verdict(
    shared: &Shared,
    org_key: &str,
    k: &state::KeyRec,
    compartment: &str,
    workspace: &str,
    org_uuid: &str,
    caller: Option<&on_aws::Caller>,
) -> Result<(), ApiError> {
    let contract = *lock(&shared.contract);
    if let Some(aws) = &shared.aws_platform {
        let verdict = if k.propagates_at.is_some_and(|t| Instant::now() < t) {
            Err(format!(
                "AccessDeniedException: {} is not authorized to perform kms:GenerateDataKey on this key (the key policy has not propagated yet)",
                on_aws::SERVICE_PRINCIPAL
            ))
        } else {
            let caller = caller.map(|c| c.access_key_id.as_str()).unwrap_or_default();
            aws_attach_check(shared, aws, &k.kms_arn, compartment, workspace, caller).await
        };
        if let Err(reason) = verdict {
            return Err(validation_failed(&reason));
        }
        if let Some(stored) = lock(&shared.world)
            .orgs
            .get_mut(org_key)
            .and_then(|o| o.keys.get_mut(&k.id))
        {
            stored.validated = true;
        }
        return Ok(());
    }
    if contract.contract != Contract::Current {
        return Ok(());
    }
    let verdict = if k.provider != "aws" {
        Err(format!(
            "the stand-in validates AWS keys only, not {} keys",
            k.provider
        ))
    } else if k.propagates_at.is_some_and(|t| Instant::now() < t) {
        Err("AccessDeniedException: kms:Encrypt was denied for the Anthropic role on this key".to_owned())
    } else {
        let check = Check {
            contract: contract.contract,
            org_uuid: org_uuid.to_owned(),
            compartments: vec![Some(compartment.to_owned())],
            any_compartment: false,
        };
        let outcome = shared.validator.validate(&k.kms_arn, &k.geo, &check).await;
        lock(&shared.cloudtrail).extend(outcome.denied);
        outcome.verdict
    };
    verdict.map_err(|reason| validation_failed(&reason))
}

/// The live-traffic check for one attached workspace, now.
async fn live_traffic(shared: &Shared, workspace: &str) -> Result<(), String> {
    let (arn, org_uuid, compartment, attached_under) = {
        let world = lock(&shared.world);
        let (org, ws) = world
            .orgs
            .values()
            .find_map(|o| o.workspaces.get(workspace).map(|w| (o, w)))
            .ok_or_else(|| format!("no workspace {workspace}"))?;
        let ekey = ws
            .external_key_id
            .as_deref()
            .ok_or_else(|| format!("workspace {workspace} is not attached"))?;
        let k = org.keys.get(ekey).ok_or_else(|| format!("no key {ekey}"))?;
        (
            k.kms_arn.clone(),
            org.uuid.clone(),
            ws.compartment_id.clone(),
            ws.attached_under,
        )
    };
    if let Some(aws) = &shared.aws_platform {
        let kms = shared.validator.client(&aws.region).await?;
        let policy = validate::key_policy(&kms, &arn).await?;
        return service_may_use(aws, &policy, &arn, &compartment, workspace);
    }
    shared
        .validator
        .live_traffic_allowed(&arn, &org_uuid, &compartment, attached_under)
        .await
}

fn list_keys(
    shared: &Shared,
    key: &str,
    query: &HashMap<String, String>,
) -> Result<(StatusCode, Value), ApiError> {
    let limit = parse_limit(query, 20, 100)?;
    let start = match query.get("page") {
        None => 0,
        Some(token) => token
            .strip_prefix("page_")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| invalid("page: invalid page token"))?,
    };
    let world = lock(&shared.world);
    let org = &world.orgs[key];
    let all = org.keys_newest_first();
    let end = (start + limit).min(all.len());
    let data: Vec<Value> = all
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|k| org.key_json(k))
        .collect();
    let next_page = (end < all.len()).then(|| format!("page_{end}"));
    Ok((StatusCode::OK, json!({"data": data, "next_page": next_page})))
}

fn create_key(
    shared: &Shared,
    key: &str,
    body: Option<Value>,
    faults: &Faults,
    effect: &mut Option<String>,
) -> Result<(StatusCode, Value), ApiError> {
    let body = body.ok_or_else(|| invalid("body must be a JSON object"))?;
    let display_name = match body.get("display_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Some(s.as_str()),
        Some(_) => return Err(invalid("display_name: must be null or 1-255 characters")),
    };
    let geo = body
        .get("geo")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("geo: Field required"))?;
    if geo != "us" {
        return Err(invalid(format!("geo: '{geo}' is not a supported geo")));
    }
    let pc = body
        .get("provider_config")
        .ok_or_else(|| invalid("provider_config: Field required"))?;
    // The stand-in registers AWS keys (the only kind this project makes);
    // GCP and Azure keys exist only as seeds.
    if pc.get("type").and_then(Value::as_str) != Some("aws") {
        return Err(invalid(
            "provider_config.type: the stand-in accepts 'aws' keys only",
        ));
    }
    let kms_arn = pc
        .get("kms_arn")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("provider_config.kms_arn: Field required"))?;
    let parts: Vec<&str> = kms_arn.split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "kms" || !parts[5].starts_with("key/") {
        return Err(invalid("provider_config.kms_arn: must be a KMS key ARN"));
    }
    if let Some(aws) = &shared.aws_platform
        && let Some(why) = on_aws::registration_refusal(aws, kms_arn)
    {
        return Err(invalid(why));
    }
    // Deprecated and ignored (kept only to show it back, as the API does).
    let role_arn = pc.get("role_arn").and_then(Value::as_str).map(str::to_owned);
    let mut world = lock(&shared.world);
    let org = world.orgs.get_mut(key).ok_or_else(|| not_found("organization"))?;
    // Claude Platform on AWS knows a registration by its ARN: there can be one.
    if shared.aws_platform.is_some() {
        if org.keys.contains_key(kms_arn) {
            return Err(api_error(
                StatusCode::CONFLICT,
                "conflict_error",
                format!("an external key for {kms_arn} is already registered"),
            ));
        }
        let mut k = org.add_key(display_name, geo, kms_arn, role_arn);
        org.keys.remove(&k.id);
        k.id = kms_arn.to_owned();
        if faults.propagation_delay_secs > 0.0 {
            k.propagates_at = Some(Instant::now() + Duration::from_secs_f64(faults.propagation_delay_secs));
        }
        org.keys.insert(k.id.clone(), k.clone());
        *effect = Some(format!("registered {} {kms_arn}", k.id));
        return Ok((StatusCode::OK, org.key_json(&k)));
    }
    // Like the real API, create has no idempotency key: a second call makes a
    // second registration. Callers must look the ARN up before retrying.
    let mut k = org.add_key(display_name, geo, kms_arn, role_arn);
    *effect = Some(format!("registered {} {kms_arn}", k.id));
    if faults.propagation_delay_secs > 0.0 {
        let at = Instant::now() + Duration::from_secs_f64(faults.propagation_delay_secs);
        k.propagates_at = Some(at);
        if let Some(stored) = org.keys.get_mut(&k.id) {
            stored.propagates_at = Some(at);
        }
    }
    Ok((StatusCode::OK, org.key_json(&k)))
}

fn update_key(
    shared: &Shared,
    key: &str,
    id: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), ApiError> {
    let body = body.ok_or_else(|| invalid("body must be a JSON object"))?;
    let mut world = lock(&shared.world);
    let org = world.orgs.get_mut(key).ok_or_else(|| not_found("organization"))?;
    let attached = org.is_attached(id);
    let listed = org.workspace_policy_keys.contains(id);
    let k = org.keys.get_mut(id).ok_or_else(|| missing_key(shared))?;
    let reconfigures = body.get("geo").is_some()
        || body.get("provider_config").is_some()
        || (body.get("display_name").is_some() && lock(&shared.contract).workspace_policy_blocks_rename);
    if listed && reconfigures {
        return Err(in_workspace_policy());
    }
    if (body.get("geo").is_some() || body.get("provider_config").is_some()) && attached {
        return Err(invalid(
            "geo and provider_config cannot be changed while the key is attached",
        ));
    }
    match body.get("display_name") {
        None => {}
        Some(Value::Null) => k.display_name = None,
        Some(Value::String(name)) => k.display_name = Some(name.clone()),
        Some(_) => return Err(invalid("display_name: must be a string or null")),
    }
    if let Some(arn) = body.pointer("/provider_config/kms_arn").and_then(Value::as_str) {
        k.kms_arn = arn.to_owned();
    }
    k.updated_at = state::now_rfc3339();
    let k = k.clone();
    Ok((StatusCode::OK, org.key_json(&k)))
}

async fn validate(shared: &Shared, key: &str, id: &str) -> Result<(StatusCode, Value), ApiError> {
    let contract = *lock(&shared.contract);
    let (k, check) = {
        let world = lock(&shared.world);
        let org = &world.orgs[key];
        let k = org.keys.get(id).ok_or_else(|| not_found("external key"))?.clone();
        // An attached key is validated with the compartment of each workspace
        // it protects; an unattached one as the contract (and its ambiguity) says.
        let attached: Vec<Option<String>> = org
            .workspaces_in_order()
            .into_iter()
            .filter(|w| w.external_key_id.as_deref() == Some(id))
            .map(|w| Some(w.compartment_id.clone()))
            .collect();
        let (compartments, any_compartment) = if !attached.is_empty() {
            (attached, false)
        } else {
            match contract.contract {
                Contract::Current => match contract.unattached_validation {
                    UnattachedValidation::Zeros => (vec![validate::zeros()], false),
                    UnattachedValidation::OrgOnly => (vec![None], false),
                },
                Contract::August2026 => (vec![validate::zeros()], false),
                // The July documentation validated with the workspace's
                // compartment: any workspace of the organization will do.
                Contract::July2026 => (
                    org.workspaces_in_order()
                        .iter()
                        .filter(|w| w.external_key_id.is_none())
                        .map(|w| Some(w.compartment_id.clone()))
                        .collect(),
                    true,
                ),
            }
        };
        let check = Check {
            contract: contract.contract,
            org_uuid: org.uuid.clone(),
            compartments,
            any_compartment,
        };
        (k, check)
    };
    let verdict = if k.provider != "aws" {
        Err(format!(
            "the stand-in validates AWS keys only, not {} keys",
            k.provider
        ))
    } else if k.propagates_at.is_some_and(|t| Instant::now() < t) {
        // What a not-yet-propagated key or policy looks like from Anthropic's side.
        Err("AccessDeniedException: kms:Encrypt was denied for the Anthropic role on this key".to_owned())
    } else {
        let outcome = shared.validator.validate(&k.kms_arn, &k.geo, &check).await;
        lock(&shared.cloudtrail).extend(outcome.denied);
        outcome.verdict
    };
    if verdict.is_ok()
        && let Some(k) = lock(&shared.world)
            .orgs
            .get_mut(key)
            .and_then(|o| o.keys.get_mut(id))
    {
        k.validated = true;
    }
    let body = match verdict {
        Ok(()) => json!({"type": "external_key_validation", "status": "success", "error": null}),
        Err(reason) => json!({"type": "external_key_validation", "status": "failure", "error": reason}),
    };
    Ok((StatusCode::OK, body))
}

fn state_json(shared: &Shared) -> Value {
    let world = lock(&shared.world);
    let orgs: serde_json::Map<String, Value> = world
        .orgs
        .values()
        .map(|o| {
            (
                o.name.clone(),
                json!({
                    "uuid": o.uuid,
                    "workspaces": o.workspaces_in_order().iter().map(|w| {
                        let mut j = w.to_json();
                        j["is_default"] = json!(w.is_default);
                        j
                    }).collect::<Vec<_>>(),
                    "external_keys": o.keys_in_order().iter().map(|k| o.key_json(k)).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    json!({
        "orgs": orgs,
        "contract": *lock(&shared.contract),
        "fault_seed": lock(&shared.rng).0,
        "attach_warnings": *lock(&shared.attach_warnings),
        "unvalidated_attachments": *lock(&shared.unvalidated_attachments),
    })
}

/// `/_sandbox/…`: inspection and control, for tests and the demo.
/// `POST /_sandbox/workspace-policy`: the keys the organization's Workspace
/// Policy lists as allowed (the organization: its admin key, or the first).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePolicy {
    #[serde(default)]
    pub org: Option<String>,
    pub allowed_keys: Vec<String>,
}

/// `POST /_sandbox/user-profile`: bind a workspace and/or a registration to
/// a user profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserProfileBinding {
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub external_key: Option<String>,
    pub user_profile_id: String,
}

/// The organization a sandbox request names (its admin key), else the one
/// Claude Platform on AWS acts for, else the first.
fn org_of(shared: &Shared, named: Option<&str>) -> String {
    named
        .map(str::to_owned)
        .or_else(|| shared.aws_org_key.clone())
        .or_else(|| lock(&shared.world).orgs.keys().next().cloned())
        .unwrap_or_default()
}

fn set_workspace_policy(shared: &Shared, p: WorkspacePolicy) -> Result<Value, String> {
    let name = org_of(shared, p.org.as_deref());
    let mut world = lock(&shared.world);
    let org = world.orgs.get_mut(&name).ok_or("no such organization")?;
    org.workspace_policy_keys = p.allowed_keys.into_iter().collect();
    Ok(json!({"allowed_keys": org.workspace_policy_keys}))
}

fn bind_user_profile(shared: &Shared, b: UserProfileBinding) -> Result<Value, String> {
    let name = org_of(shared, b.org.as_deref());
    let mut world = lock(&shared.world);
    let org = world.orgs.get_mut(&name).ok_or("no such organization")?;
    if let Some(ws) = &b.workspace {
        let w = org.workspaces.get_mut(ws).ok_or(format!("no workspace {ws}"))?;
        w.user_profile_id = Some(b.user_profile_id.clone());
    }
    if let Some(k) = &b.external_key {
        let k = org.keys.get_mut(k).ok_or(format!("no external key {k}"))?;
        k.user_profile_id = Some(b.user_profile_id.clone());
    }
    Ok(json!({"user_profile_id": b.user_profile_id}))
}

fn inspect(shared: &Shared, method: &Method, rest: &str, body: &Bytes) -> Response {
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    let bad = |m: String| (StatusCode::BAD_REQUEST, axum::Json(json!({"error": m}))).into_response();
    match (method.clone(), rest) {
        (Method::GET, "requests") => ok(serde_json::to_value(&*lock(&shared.requests)).unwrap_or_default()),
        (Method::DELETE, "requests") => {
            lock(&shared.requests).clear();
            ok(json!({}))
        }
        (Method::GET, "state") => ok(state_json(shared)),
        (Method::GET, "cloudtrail") => ok(Value::Array(lock(&shared.cloudtrail).clone())),
        (Method::DELETE, "cloudtrail") => {
            lock(&shared.cloudtrail).clear();
            ok(json!({}))
        }
        (Method::GET, "contract") => ok(serde_json::to_value(*lock(&shared.contract)).unwrap_or_default()),
        (Method::POST, "contract") => match serde_json::from_slice::<ContractConfig>(body) {
            Ok(c) => {
                *lock(&shared.contract) = c;
                ok(serde_json::to_value(c).unwrap_or_default())
            }
            Err(e) => bad(format!("bad contract: {e}")),
        },
        (Method::GET, "faults") => ok(serde_json::to_value(&*lock(&shared.faults)).unwrap_or_default()),
        (Method::POST, "faults") => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                if f.seed.is_some() {
                    *lock(&shared.rng) = seeded(f.seed);
                }
                *lock(&shared.faults) = f.clone();
                ok(serde_json::to_value(f).unwrap_or_default())
            }
            Err(e) => bad(format!("bad faults: {e}")),
        },
        (Method::POST, "workspace-policy") => match serde_json::from_slice::<WorkspacePolicy>(body) {
            Ok(p) => match set_workspace_policy(shared, p) {
                Ok(v) => ok(v),
                Err(m) => bad(m),
            },
            Err(e) => bad(format!("bad workspace policy: {e}")),
        },
        (Method::POST, "user-profile") => match serde_json::from_slice::<UserProfileBinding>(body) {
            Ok(b) => match bind_user_profile(shared, b) {
                Ok(v) => ok(v),
                Err(m) => bad(m),
            },
            Err(e) => bad(format!("bad binding: {e}")),
        },
        (Method::POST, "seed") => match serde_json::from_slice::<OrgSeed>(body) {
            Ok(seed) => ok(json!({"workspaces": lock(&shared.world).seed(&seed)})),
            Err(e) => bad(format!("bad seed: {e}")),
        },
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such sandbox endpoint"})),
        )
            .into_response(),
    }
}

/// Claude Platform on AWS, at attach: the caller's own access to the key
/// (DescribeKey, Encrypt, Decrypt, recorded as the caller's KMS calls for the
/// IAM coverage test and performed against moto), then the service's round
/// trip as `aws-external-anthropic.amazonaws.com` acting for the workspace:
/// DescribeKey, GenerateDataKey, Encrypt and Decrypt with its compartment,
/// judged by the evaluator on the key's policy and performed against moto.
/// Claude Platform on AWS: whether the key policy lets the service
/// principal, acting for `workspace` (its `aws:SourceArn`) with its
/// compartment in the encryption context, describe the key and make data
/// keys with it — what the attach checks, and what every request of the
/// workspace needs afterwards.
fn service_may_use(
    aws: &on_aws::AwsPlatform,
    policy: &str,
    kms_arn: &str,
    compartment: &str,
    workspace: &str,
) -> Result<(), String> {
    let source_arn = on_aws::workspace_arn(aws, workspace);
    let context = [("anthropic:compartment_uuid", compartment)];
    for (action, ctx) in [
        ("kms:DescribeKey", &[][..]),
        ("kms:GenerateDataKey", &context[..]),
        ("kms:Encrypt", &context[..]),
        ("kms:Decrypt", &context[..]),
    ] {
        let req = KmsRequest {
            principal_arn: on_aws::SERVICE_PRINCIPAL,
            key_arn: kms_arn,
            action,
            encryption_context: ctx,
            service: Some(on_aws::SERVICE_PRINCIPAL),
            source_arn: Some(&source_arn),
            source_account: Some(&aws.account_id),
        };
        if let Decision::Denied(why) = evaluate(policy, &req) {
            return Err(why);
        }
    }
    Ok(())
}

async fn aws_attach_check(
    shared: &Shared,
    aws: &on_aws::AwsPlatform,
    kms_arn: &str,
    compartment: &str,
    workspace: &str,
    caller: &str,
) -> Result<(), String> {
    if let Some(why) = on_aws::registration_refusal(aws, kms_arn) {
        return Err(why);
    }
    let kms = shared.validator.client(&aws.region).await?;
    let described = kms.describe_key().key_id(kms_arn).send().await.map_err(|e| {
        format!(
            "NotFoundException: {kms_arn} could not be described ({})",
            aws_sdk_kms::error::DisplayErrorContext(&e)
        )
    })?;
    match described
        .key_metadata()
        .and_then(|m| m.key_state())
        .map(|s| s.as_str())
    {
        Some("Enabled") => {}
        other => {
            return Err(format!(
                "KMSInvalidStateException: {kms_arn} is {}",
                other.unwrap_or("in an unknown state")
            ));
        }
    }
    let policy = validate::key_policy(&kms, kms_arn).await?;
    // The caller's own access, as IAM would authorize it (moto checks none).
    let tags: std::collections::BTreeMap<String, String> = kms
        .list_resource_tags()
        .key_id(kms_arn)
        .send()
        .await
        .map(|t| {
            t.tags()
                .iter()
                .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let facts = crate::iam_request::KeyFacts {
        arn: kms_arn.to_owned(),
        tags,
        policy: Some(policy.clone()),
    };
    let scope = crate::iam_request::Scope {
        region: &aws.region,
        account: &aws.account_id,
    };
    for op in ["DescribeKey", "Encrypt", "Decrypt"] {
        let body = json!({"KeyId": kms_arn});
        let authorizations = crate::iam_request::authorizations("kms", op, &body, scope, Some(&facts));
        lock(&shared.aws_calls).push(crate::aws_proxy::AwsCall {
            function: caller.to_owned(),
            service: "kms".into(),
            action: format!("kms:{op}"),
            resource: Some(kms_arn.to_owned()),
            status: 200,
            fault: None,
            authorizations,
            key_policy: facts.policy.clone(),
            at_ms: crate::aws_proxy::now_ms(),
        });
    }
    service_may_use(aws, &policy, kms_arn, compartment, workspace)?;
    let map: HashMap<String, String> =
        HashMap::from([("anthropic:compartment_uuid".to_owned(), compartment.to_owned())]);
    let data_key = kms
        .generate_data_key()
        .key_id(kms_arn)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .set_encryption_context(Some(map.clone()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "GenerateDataKey failed: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            )
        })?;
    let wrapped = data_key
        .ciphertext_blob()
        .cloned()
        .ok_or("GenerateDataKey returned no ciphertext")?;
    let key = data_key.plaintext().map(|b| b.as_ref()).unwrap_or_default();
    validate::decrypts_to(&kms, wrapped, &map, key).await?;
    validate::encrypt_then_decrypt(&kms, kms_arn, &map).await?;
    Ok(())
}
