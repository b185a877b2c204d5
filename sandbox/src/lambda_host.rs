//! A local Lambda service for the real function binaries.
//!
//! It serves the Lambda Invoke API (by function name or ARN) with Lambda's
//! semantics — a function error is HTTP 200 with `X-Amz-Function-Error` —
//! and, for each function instance, the Lambda Runtime API the binary's
//! `lambda_runtime` polls. Instances are spawned on demand (concurrent
//! invocations get concurrent instances, as in Lambda), and an instance that
//! dies mid-invocation fails it with `Runtime.ExitError`, as Lambda does.
//! Everything that is not a Lambda invoke is proxied to moto, so moto's Step
//! Functions (which sends Lambda calls to `localhost:$MOTO_PORT`) can use this
//! as its endpoint.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

/// One function as the template defines it.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The function name in its ARN (the template's logical id here).
    pub name: String,
    pub binary: PathBuf,
    /// The template's `Handler`, handed to the binary as Lambda does
    /// (`_HANDLER`): which function the one binary serves.
    pub handler: String,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

type Outcome = Result<Bytes, Value>;

struct Invocation {
    id: String,
    payload: Bytes,
    deadline: Instant,
    reply: oneshot::Sender<Outcome>,
}

/// What the host measured about one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStats {
    pub function: String,
    pub instance: u64,
    pub pid: Option<u32>,
    /// Process start until its first `GET /next`: the function's init time.
    pub init_ms: Option<f64>,
    pub invocations: u64,
    /// Peak resident memory so far (`VmHWM`), where /proc has it.
    pub peak_rss_kib: Option<u64>,
}

pub(crate) fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct FunctionState {
    spec: FunctionSpec,
    arn: String,
    queue: Mutex<VecDeque<Invocation>>,
    notify: Notify,
    /// Held while deciding to start an instance: an invoke and a reaper
    /// deciding at once would each start one.
    scaling: Mutex<()>,
    instances: Mutex<Vec<Arc<Instance>>>,
    /// Final figures of instances that have exited (for the benchmarks).
    retired: Mutex<Vec<InstanceStats>>,
    /// Each answered invocation's duration, from its hand-over to the
    /// binary until its answer: what Lambda bills (the cost benchmark).
    durations_ms: Mutex<Vec<f64>>,
}

struct Instance {
    id: u64,
    started: Instant,
    init_ms: Mutex<Option<f64>>,
    /// By request id: where to answer, and when the binary took it.
    in_flight: Mutex<HashMap<String, (oneshot::Sender<Outcome>, Instant)>>,
    invocations: AtomicU64,
    pid: Option<u32>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    /// Waiting in `GET /next`: ready for an invocation.
    waiting: AtomicBool,
    /// Killed or exited. Set before anything else notices, so no invocation
    /// is handed to it (its `GET /next` may outlive the process: axum keeps
    /// serving an accepted connection after its listener task is aborted).
    dead: AtomicBool,
}

impl Instance {
    /// Will take the next queued invocation: waiting for one, or still
    /// starting (it asks as soon as its init is done).
    fn available(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
            && (self.waiting.load(Ordering::SeqCst) || lock(&self.init_ms).is_none())
    }
}

pub struct LambdaHost {
    pub url: String,
    pub port: u16,
    inner: Arc<HostInner>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LambdaHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaHost").field("url", &self.url).finish()
    }
}

struct HostInner {
    functions: HashMap<String, Arc<FunctionState>>,
    moto: Mutex<Option<String>>,
    /// The functions' own AWS calls (see [`crate::aws_proxy`]).
    aws: crate::aws_proxy::AwsProxy,
    /// The error an invocation fails with when its instance dies: Lambda
    /// reports `Runtime.ExitError`, `Runtime.Unknown` or `Lambda.Unknown`
    /// (out of memory, timeouts) depending on how.
    crash_error: Mutex<String>,
    http: reqwest::Client,
    next_instance: AtomicU64,
    max_instances: usize,
    log_dir: PathBuf,
    /// The host was dropped: no more instances start.
    closed: AtomicBool,
    region: String,
    account: String,
    /// The roles as deployed, by ARN, for the policy simulator's stand-in
    /// (set when the stack plays a deployment for `cmekctl preflight`).
    iam_roles: Mutex<HashMap<String, crate::iam_eval::Role>>,
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.task.abort();
        self.kill_all();
    }
}

impl LambdaHost {
    /// Bind the Invoke endpoint (port 0 picks one). Functions start lazily, on first invoke.
    pub async fn start(
        listener: TcpListener,
        functions: Vec<FunctionSpec>,
        region: &str,
        account: &str,
        log_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&log_dir)?;
        let map = functions
            .into_iter()
            .map(|spec| {
                let arn = format!("arn:aws:lambda:{region}:{account}:function:{}", spec.name);
                let state = FunctionState {
                    arn,
                    queue: Mutex::new(VecDeque::new()),
                    notify: Notify::new(),
                    scaling: Mutex::new(()),
                    instances: Mutex::new(Vec::new()),
                    retired: Mutex::new(Vec::new()),
                    durations_ms: Mutex::new(Vec::new()),
                    spec,
                };
                (state.spec.name.clone(), Arc::new(state))
            })
            .collect();
        let inner = Arc::new(HostInner {
            functions: map,
            moto: Mutex::new(None),
            iam_roles: Mutex::new(HashMap::new()),
            aws: Default::default(),
            crash_error: Mutex::new("Runtime.ExitError".into()),
            http: cmek::tls::http_client()?,
            next_instance: AtomicU64::new(1),
            max_instances: 8,
            log_dir,
            closed: AtomicBool::new(false),
            region: region.to_owned(),
            account: account.to_owned(),
        });
        let port = listener.local_addr()?.port();
        let app = Router::new()
            .route("/2015-03-31/functions/{function}/invocations", post(invoke))
            .fallback(proxy)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("lambda host stopped: {e}");
            }
        });
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            inner,
            task,
        })
    }

    /// Where to forward everything that is not a Lambda invoke.
    pub fn set_moto(&self, url: &str) {
        *lock(&self.inner.moto) = Some(url.to_owned());
    }

    /// The AWS endpoint for `function`: its calls pass through the host,
    /// which records them and can answer with faults.
    pub fn aws_endpoint(&self, function: &str) -> String {
        format!("{}/_aws/{function}", self.url)
    }

    /// Every AWS call the functions made through [`Self::aws_endpoint`].
    pub fn aws_calls(&self) -> Vec<crate::aws_proxy::AwsCall> {
        self.inner.aws.calls()
    }

    pub fn add_aws_faults(&self, faults: impl IntoIterator<Item = crate::aws_proxy::AwsFault>) {
        self.inner.aws.add_faults(faults);
    }

    /// Random AWS-side faults on every function's calls (`None` stops them).
    pub fn set_random_aws_faults(&self, rate: Option<crate::aws_proxy::AwsFaultRate>) {
        self.inner.aws.set_random_faults(rate);
    }

    /// The seed of the random AWS faults, if they are on.
    pub fn aws_fault_seed(&self) -> Option<u64> {
        self.inner.aws.random_seed()
    }

    pub fn pending_aws_faults(&self) -> Vec<crate::aws_proxy::AwsFault> {
        self.inner.aws.pending_faults()
    }

    /// The error name a dying instance's invocation fails with (default
    /// `Runtime.ExitError`), so tests can play each name Lambda uses.
    /// The deployed roles the policy simulator's stand-in evaluates.
    pub fn set_iam_roles(&self, roles: HashMap<String, crate::iam_eval::Role>) {
        *lock(&self.inner.iam_roles) = roles;
    }

    pub fn set_crash_error(&self, name: &str) {
        *lock(&self.inner.crash_error) = name.to_owned();
    }

    pub fn function_arn(&self, name: &str) -> Option<String> {
        self.inner.functions.get(name).map(|f| f.arn.clone())
    }

    pub fn stats(&self) -> Vec<InstanceStats> {
        let mut out = Vec::new();
        for f in self.inner.functions.values() {
            for i in lock(&f.instances).iter() {
                out.push(InstanceStats {
                    function: f.spec.name.clone(),
                    instance: i.id,
                    pid: i.pid,
                    init_ms: *lock(&i.init_ms),
                    invocations: i.invocations.load(Ordering::SeqCst),
                    peak_rss_kib: peak_rss_kib(i.pid),
                });
            }
        }
        out.sort_by(|a, b| (a.function.as_str(), a.instance).cmp(&(b.function.as_str(), b.instance)));
        out
    }

    /// [`Self::stats`] plus every instance that has already exited, each once
    /// (an instance being reaped is briefly both live and retired).
    /// Every answered invocation's duration in ms, by function, in the
    /// order they were answered.
    pub fn durations_ms(&self) -> std::collections::BTreeMap<String, Vec<f64>> {
        self.inner
            .functions
            .values()
            .map(|f| (f.spec.name.clone(), lock(&f.durations_ms).clone()))
            .collect()
    }

    pub fn stats_history(&self) -> Vec<InstanceStats> {
        let mut out = Vec::new();
        for f in self.inner.functions.values() {
            out.extend(lock(&f.retired).iter().cloned());
        }
        for live in self.stats() {
            if !out
                .iter()
                .any(|r| r.function == live.function && r.instance == live.instance)
            {
                out.push(live);
            }
        }
        out.sort_by(|a, b| (a.function.as_str(), a.instance).cmp(&(b.function.as_str(), b.instance)));
        out
    }

    /// Kill every instance of `function` (crash tests): in-flight invocations
    /// fail with `Runtime.ExitError`, the next invoke starts a new instance.
    pub fn kill_function(&self, function: &str) {
        if let Some(f) = self.inner.functions.get(function) {
            for i in lock(&f.instances).iter() {
                // Dead at once: an invoke right after this starts a new instance.
                i.dead.store(true, Ordering::SeqCst);
                if let Some(k) = lock(&i.kill).take() {
                    let _ = k.send(());
                }
            }
        }
    }

    fn kill_all(&self) {
        for name in self.inner.functions.keys() {
            self.kill_function(name);
        }
    }

    /// Where a function's logs go.
    pub fn log_path(&self, function: &str) -> PathBuf {
        self.inner.log_dir.join(format!("{function}.log"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn function_name(raw: &str) -> String {
    let decoded = url::form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| raw.to_owned());
    // arn:aws:lambda:region:account:function:NAME[:qualifier]
    let parts: Vec<&str> = decoded.split(':').collect();
    if parts.len() >= 7 && parts[5] == "function" {
        parts[6].to_owned()
    } else {
        decoded
    }
}

async fn invoke(State(host): State<Arc<HostInner>>, Path(function): Path<String>, body: Bytes) -> Response {
    let name = function_name(&function);
    // By function name (as Step Functions calls it) or handler name (`begin`, as one would ask `cargo lambda invoke`).
    let found = host
        .functions
        .get(&name)
        .cloned()
        .or_else(|| host.functions.values().find(|f| f.spec.handler == name).cloned());
    let Some(f) = found else {
        let body = json!({"Type": "User", "message": format!("Function not found: {name}")});
        let mut r = (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        r.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static("ResourceNotFoundException"),
        );
        return r;
    };
    let (tx, rx) = oneshot::channel();
    let id = uuid::Uuid::new_v4().to_string();
    let deadline = Instant::now() + f.spec.timeout;
    lock(&f.queue).push_back(Invocation {
        id: id.clone(),
        payload: body,
        deadline,
        reply: tx,
    });
    if let Err(e) = ensure_instance(&host, &f) {
        return function_error("Runtime.InitError", &format!("could not start {name}: {e}"));
    }
    f.notify.notify_one();
    match tokio::time::timeout(f.spec.timeout + Duration::from_secs(1), rx).await {
        Ok(Ok(Ok(payload))) => {
            let mut r = (StatusCode::OK, payload).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r
        }
        Ok(Ok(Err(error))) => {
            let mut r = (StatusCode::OK, axum::Json(error)).into_response();
            r.headers_mut()
                .insert("X-Amz-Function-Error", HeaderValue::from_static("Unhandled"));
            r
        }
        Ok(Err(_)) => function_error(
            "Runtime.ExitError",
            "the function instance exited before answering",
        ),
        Err(_) => function_error(
            "Sandbox.Timedout",
            &format!("Task timed out after {:?}", f.spec.timeout),
        ),
    }
}

fn function_error(kind: &str, message: &str) -> Response {
    let mut r = (
        StatusCode::OK,
        axum::Json(json!({"errorType": kind, "errorMessage": message})),
    )
        .into_response();
    r.headers_mut()
        .insert("X-Amz-Function-Error", HeaderValue::from_static("Unhandled"));
    r
}

/// Start an instance when more invocations are queued than instances are
/// available for them (as Lambda scales out), up to the host's limit.
fn ensure_instance(host: &Arc<HostInner>, f: &Arc<FunctionState>) -> anyhow::Result<()> {
    let _deciding = lock(&f.scaling);
    let queued = lock(&f.queue).len();
    if host.closed.load(Ordering::SeqCst) || queued == 0 {
        return Ok(());
    }
    let (available, alive) = {
        let instances = lock(&f.instances);
        let alive = instances
            .iter()
            .filter(|i| !i.dead.load(Ordering::SeqCst))
            .count();
        (instances.iter().filter(|i| i.available()).count(), alive)
    };
    if queued <= available || alive >= host.max_instances {
        return Ok(());
    }
    spawn_instance(host, f)
}

/// Synchronous so that the reaper below can start a replacement.
fn spawn_instance(host: &Arc<HostInner>, f: &Arc<FunctionState>) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let port = listener.local_addr()?.port();
    let id = host.next_instance.fetch_add(1, Ordering::SeqCst);
    let log_path = host.log_dir.join(format!("{}.log", f.spec.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = tokio::process::Command::new(&f.spec.binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", &f.spec.name)
        .env("_HANDLER", &f.spec.handler)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("instance-{id}"))
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/local/{}", f.spec.name))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in &f.spec.env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        anyhow::anyhow!(
            "cannot run {}: {e} (build the functions with `cargo build --workspace`)",
            f.spec.binary.display()
        )
    })?;
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let instance = Arc::new(Instance {
        id,
        started,
        init_ms: Mutex::new(None),
        in_flight: Mutex::new(HashMap::new()),
        invocations: AtomicU64::new(0),
        pid: child.id(),
        kill: Mutex::new(Some(kill_tx)),
        waiting: AtomicBool::new(false),
        dead: AtomicBool::new(false),
    });
    lock(&f.instances).push(instance.clone());

    let runtime = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state((host.clone(), f.clone(), instance.clone()));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, runtime).await;
    });

    // Reap the process: when it exits, whatever it held fails as in Lambda,
    // and what is still queued goes to another instance.
    let (host, f) = (host.clone(), f.clone());
    tokio::spawn(async move {
        let mut peak = None;
        tokio::select! {
            _ = child.wait() => {}
            _ = kill_rx => {
                // Read the peak before the process (and its /proc entry) goes.
                peak = peak_rss_kib(instance.pid);
                let _ = child.kill().await;
            }
        }
        instance.dead.store(true, Ordering::SeqCst);
        // Wake its `GET /next` if that still waits, so it lets go.
        f.notify.notify_waiters();
        lock(&f.retired).push(InstanceStats {
            function: f.spec.name.clone(),
            instance: instance.id,
            pid: instance.pid,
            init_ms: *lock(&instance.init_ms),
            invocations: instance.invocations.load(Ordering::SeqCst),
            peak_rss_kib: peak,
        });
        server.abort();
        let pending: Vec<oneshot::Sender<Outcome>> =
            lock(&instance.in_flight).drain().map(|(_, (tx, _))| tx).collect();
        let crash_error = lock(&host.crash_error).clone();
        for tx in pending {
            let _ = tx.send(Err(json!({"errorType": crash_error, "errorMessage": "RequestId: the function instance exited before completing the request"})));
        }
        lock(&f.instances).retain(|i| i.id != instance.id);
        if let Err(e) = ensure_instance(&host, &f) {
            tracing::error!(function = %f.spec.name, "could not replace an exited instance: {e}");
        }
    });
    Ok(())
}

/// Marks an instance ready while it waits in `GET /next`.
struct WaitingGuard<'a>(&'a AtomicBool);

impl<'a> WaitingGuard<'a> {
    fn new(waiting: &'a AtomicBool) -> Self {
        waiting.store(true, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

type RuntimeState = (Arc<HostInner>, Arc<FunctionState>, Arc<Instance>);

async fn next(State((host, f, instance)): State<RuntimeState>) -> Response {
    // Ready while waiting, and no longer once this wait ends — also when
    // this future is dropped mid-wait. Marked before init ends, so the
    // instance never looks unavailable in between (and gets a twin).
    let waiting = WaitingGuard::new(&instance.waiting);
    {
        let mut init = lock(&instance.init_ms);
        if init.is_none() {
            *init = Some(instance.started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let inv = loop {
        if instance.dead.load(Ordering::SeqCst) {
            // Pass on a wake-up that may have been meant for a live instance.
            f.notify.notify_one();
            return StatusCode::GONE.into_response();
        }
        let notified = f.notify.notified();
        let popped = lock(&f.queue).pop_front();
        match popped {
            Some(inv) if inv.reply.is_closed() => continue,
            Some(inv) => break inv,
            None => notified.await,
        }
    };
    drop(waiting);
    // Another waiter may have work too.
    if !lock(&f.queue).is_empty() {
        f.notify.notify_one();
    }
    {
        // Under the lock the reaper drains: either it answers this
        // invocation (killed in flight) or this sees the instance dead
        // and gives the invocation back, never lost in between.
        let mut in_flight = lock(&instance.in_flight);
        if instance.dead.load(Ordering::SeqCst) {
            drop(in_flight);
            lock(&f.queue).push_front(inv);
            if let Err(e) = ensure_instance(&host, &f) {
                tracing::error!(function = %f.spec.name, "could not start an instance: {e}");
            }
            f.notify.notify_one();
            return StatusCode::GONE.into_response();
        }
        in_flight.insert(inv.id.clone(), (inv.reply, Instant::now()));
    }
    instance.invocations.fetch_add(1, Ordering::SeqCst);
    let deadline_ms = (std::time::SystemTime::now() + inv.deadline.saturating_duration_since(Instant::now()))
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut r = (StatusCode::OK, inv.payload).into_response();
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(h, "lambda-runtime-aws-request-id", inv.id);
    set(h, "lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(h, "lambda-runtime-invoked-function-arn", f.arn.clone());
    set(
        h,
        "lambda-runtime-trace-id",
        format!("Root=1-{}", uuid::Uuid::new_v4().simple()),
    );
    set(h, "content-type", "application/json".into());
    r
}

async fn respond(
    State((_, f, instance)): State<RuntimeState>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    if let Some(tx) = answered(&f, &instance, &id) {
        let _ = tx.send(Ok(body));
    }
    StatusCode::ACCEPTED
}

/// Take an in-flight invocation off the instance, recording its duration.
fn answered(f: &FunctionState, instance: &Instance, id: &str) -> Option<oneshot::Sender<Outcome>> {
    let (tx, taken) = lock(&instance.in_flight).remove(id)?;
    lock(&f.durations_ms).push(taken.elapsed().as_secs_f64() * 1000.0);
    Some(tx)
}

async fn fail(
    State((_, f, instance)): State<RuntimeState>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let error: Value = serde_json::from_slice(&body).unwrap_or_else(
        |_| json!({"errorType": "Runtime.Unknown", "errorMessage": String::from_utf8_lossy(&body)}),
    );
    if let Some(tx) = answered(&f, &instance, &id) {
        let _ = tx.send(Err(error));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State((_, f, _)): State<RuntimeState>, body: Bytes) -> StatusCode {
    tracing::error!(function = %f.spec.name, "init error: {}", String::from_utf8_lossy(&body));
    // Fail everything queued: this instance will exit and a new one would fail the same way.
    let queued: Vec<Invocation> = lock(&f.queue).drain(..).collect();
    for inv in queued {
        let _ = inv.reply.send(Err(serde_json::from_slice(&body).unwrap_or_else(
            |_| json!({"errorType": "Runtime.InitError", "errorMessage": String::from_utf8_lossy(&body)}),
        )));
    }
    StatusCode::ACCEPTED
}

/// Everything else goes to moto: a function's own AWS calls (`/_aws/<function>/…`,
/// recorded, with faults where asked) and moto's Step Functions' calls.
async fn proxy(
    State(host): State<Arc<HostInner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Some(rest) = path_and_query.strip_prefix("/_aws/") {
        let (function, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let tail = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        if let Some(answer) = stand_in(&host, &tail, &headers, &body) {
            return answer;
        }
        return aws_call(&host, function, method, &tail, &headers, body).await;
    }
    match forward(&host, method, path_and_query, &headers, body).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

/// What moto has no API for and `cmekctl preflight` asks AWS: IAM's policy
/// simulator and Access Analyzer's ValidatePolicy, answered by
/// [`crate::preflight`]'s stand-ins.
fn stand_in(host: &HostInner, path: &str, headers: &HeaderMap, body: &Bytes) -> Option<Response> {
    let service = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())?
        .split("Credential=")
        .nth(1)?
        .split(['/', ','])
        .nth(3)?
        .to_owned();
    match service.as_str() {
        "iam" => {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
            if !form
                .iter()
                .any(|(k, v)| k == "Action" && v == "SimulatePrincipalPolicy")
            {
                return None;
            }
            let (status, xml) = crate::preflight::simulate_principal_policy(&form, &lock(&host.iam_roles));
            let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), xml).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/xml"));
            Some(r)
        }
        "access-analyzer" if path.starts_with("/policy/validation") => {
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            let (status, answer) = match crate::aws_data::ServiceData::load() {
                Ok(data) => crate::preflight::validate_policy(&request, &data),
                Err(e) => (
                    500,
                    json!({"message": format!("the stand-in has no AWS service data: {e:#}")}),
                ),
            };
            let mut r = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                answer.to_string(),
            )
                .into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            Some(r)
        }
        _ => None,
    }
}

async fn aws_call(
    host: &HostInner,
    function: &str,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    use crate::aws_proxy::{AwsCall, error_response, identify};
    use crate::iam_request::{Scope, authorizations, kms_key_named};
    let id = identify(headers, &body);
    // What IAM would check, read before the call changes anything (a key's
    // tags, for one): moto checks nothing, the coverage test evaluates these.
    let (authorized, key_policy) = match &id {
        Some(i) => {
            let key = match kms_key_named(i.operation(), &i.params) {
                Some(key_id) if i.service == "kms" => kms_key_facts(host, headers, &key_id).await,
                _ => None,
            };
            let scope = Scope {
                region: &host.region,
                account: &host.account,
            };
            (
                authorizations(&i.service, i.operation(), &i.params, scope, key.as_ref()),
                key.and_then(|k| k.policy),
            )
        }
        None => (Vec::new(), None),
    };
    // DynamoDB's idempotent transactions: a repeated token gets the first answer.
    let token = id
        .as_ref()
        .filter(|i| i.action == "dynamodb:TransactWriteItems")
        .and_then(|i| i.params.get("ClientRequestToken").and_then(Value::as_str))
        .map(str::to_owned);
    let record = |status: u16, fault: Option<String>| {
        if let Some(i) = &id {
            host.aws.record(AwsCall {
                function: function.to_owned(),
                service: i.service.clone(),
                action: i.action.clone(),
                resource: i.resource.clone(),
                status,
                fault,
                authorizations: authorized.clone(),
                key_policy: key_policy.clone(),
                at_ms: crate::aws_proxy::now_ms(),
            });
        }
    };
    if let Some((status, body)) = token.as_deref().and_then(|t| host.aws.token_answer(t)) {
        record(
            status,
            Some("repeated ClientRequestToken: the first answer".into()),
        );
        let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        return r;
    }
    let fault = id.as_ref().and_then(|i| {
        host.aws
            .fault_for(function, &i.service, &i.action)
            .map(|f| (i.clone(), f))
    });
    let answer = |i: &crate::aws_proxy::Identified, f: &crate::aws_proxy::AwsFault| {
        let (status, headers, body) = error_response(i, f);
        let mut r = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response();
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    };
    if let Some((i, f)) = fault.as_ref().filter(|(_, f)| !f.after_effect) {
        record(
            f.status,
            Some(format!("{} {} before the effect", f.status, f.code)),
        );
        return answer(i, f);
    }
    let mut response = match forward(host, method, path_and_query, headers, body).await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e).into_response(),
    };
    if let (Some(token), true) = (&token, response.status().is_success()) {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        host.aws
            .remember_token(token, parts.status.as_u16(), bytes.to_vec());
        response = Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    match fault {
        Some((i, f)) if response.status().is_success() => {
            record(
                f.status,
                Some(format!("{} {} after the effect", f.status, f.code)),
            );
            answer(&i, &f)
        }
        _ => {
            record(response.status().as_u16(), None);
            response
        }
    }
}

/// The ARN and tags of the key a KMS request names, asked of moto with the
/// request's own signature headers (moto reads the Region from them).
async fn kms_key_facts(
    host: &HostInner,
    headers: &HeaderMap,
    key_id: &str,
) -> Option<crate::iam_request::KeyFacts> {
    let moto = lock(&host.moto).clone()?;
    let ask = |target: &'static str, body: Value| {
        let mut req = host
            .http
            .post(format!("{moto}/"))
            .header("x-amz-target", format!("TrentService.{target}"))
            .header("content-type", "application/x-amz-json-1.1")
            .body(body.to_string());
        if let Some(auth) = headers.get("authorization") {
            req = req.header("authorization", auth);
        }
        async move {
            let resp = req.send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            resp.json::<Value>().await.ok()
        }
    };
    let described = ask("DescribeKey", json!({"KeyId": key_id})).await?;
    let arn = described.pointer("/KeyMetadata/Arn")?.as_str()?.to_owned();
    let tags = ask("ListResourceTags", json!({"KeyId": arn}))
        .await
        .and_then(|t| t.get("Tags").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some((
                t.get("TagKey")?.as_str()?.to_owned(),
                t.get("TagValue")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    let policy = ask("GetKeyPolicy", json!({"KeyId": arn, "PolicyName": "default"}))
        .await
        .and_then(|p| p.get("Policy").and_then(Value::as_str).map(str::to_owned));
    Some(crate::iam_request::KeyFacts { arn, tags, policy })
}

async fn forward(
    host: &HostInner,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let Some(moto) = lock(&host.moto).clone() else {
        return Err("no moto endpoint configured".into());
    };
    let url = format!("{moto}{path_and_query}");
    let mut req = host.http.request(method, url).body(body);
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.map_err(|e| format!("moto unreachable: {e}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut r = (status, bytes).into_response();
    for (k, v) in headers.iter() {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    Ok(r)
}
