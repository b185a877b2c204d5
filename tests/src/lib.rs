//! Helpers shared by the end-to-end tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support

pub use sandbox::{aws_data, iam_eval as iam};
pub mod sam;

use std::time::Duration;

use cmek::ids::WorkspaceId;
use cmek::store::{AuditEvent, WorkflowRecord, WorkflowStore};
use sandbox::stack::{LocalStack, StackOptions};
use serde_json::Value;

pub const TIMEOUT: Duration = Duration::from_secs(180);

/// A stack with short retry schedules, labelled for its log folder.
pub async fn stack(label: &str, tune: impl FnOnce(&mut StackOptions)) -> LocalStack {
    let mut options = StackOptions {
        label: label.into(),
        ..StackOptions::default()
    }
    .fast_retries();
    tune(&mut options);
    LocalStack::start(options).await.expect("local stack")
}

/// The first `n` unattached workspaces of the demo organization.
pub fn workspaces(stack: &LocalStack) -> Vec<Value> {
    stack.admin.state()["orgs"]["demo-org"]["workspaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn workspace_id(w: &Value) -> WorkspaceId {
    w["id"].as_str().unwrap().parse().unwrap()
}

pub async fn record(stack: &LocalStack, ws: &WorkspaceId) -> WorkflowRecord {
    stack.store().load(ws).await.unwrap().expect("workflow record")
}

pub async fn events(stack: &LocalStack, ws: &WorkspaceId) -> Vec<AuditEvent> {
    stack.store().events(ws).await.unwrap()
}

/// The Admin API requests the stand-in answered with success for a path, by
/// method (see [`effects`] for what took effect whatever the answer).
pub fn calls(stack: &LocalStack, method: &str, path_suffix: &str) -> usize {
    stack
        .admin
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(path_suffix) && r.status < 400)
        .count()
}

/// The demo organization's UUID, as `GET /v1/organizations/me` answers it.
pub fn org_uuid(stack: &LocalStack) -> cmek::ids::OrgUuid {
    stack.admin.state()["orgs"]["demo-org"]["uuid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The access-denied events the stand-in's validations left (CloudTrail's view).
pub fn denied_probes(stack: &LocalStack) -> Vec<Value> {
    stack.admin.cloudtrail()
}

pub fn external_keys(stack: &LocalStack) -> Vec<Value> {
    stack.admin.state()["orgs"]["demo-org"]["external_keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every key in moto, in any state (pending deletion and disabled included),
/// read with the SDK directly: the exactly-once oracle, independent of the
/// code under test.
pub async fn all_keys(stack: &LocalStack) -> Vec<String> {
    let kms = stack.kms();
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = kms
            .list_keys()
            .limit(1000)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        out.extend(page.keys().iter().filter_map(|k| k.key_arn().map(str::to_owned)));
        match page.next_marker() {
            Some(m) if page.truncated() => marker = Some(m.to_owned()),
            _ => return out,
        }
    }
}

/// Keys in moto (any state) whose `cmek:workspace-id` tag names the
/// workspace, read with the SDK directly (not `KeyManager::find_tagged_keys`,
/// which skips keys pending deletion).
/// A KMS key made by hand, outside the workflow (none of our tags), with
/// `policy` or KMS's default one: a customer's existing key, or a stranger's.
pub async fn key_made_by_hand(stack: &LocalStack, policy: Option<&str>) -> String {
    stack
        .kms()
        .create_key()
        .set_policy(policy.map(str::to_owned))
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

/// A customer's existing key its owner opts in to adoption: made by hand,
/// then tagged `cmek:managed-by=cmek-provisioner` (the consent that lets the
/// provisioner rewrite its policy).
pub async fn key_tagged_for_adoption(stack: &LocalStack, policy: Option<&str>) -> String {
    let arn = key_made_by_hand(stack, policy).await;
    tag_for_adoption(stack, &arn).await;
    arn
}

/// The owner's opt-in: `cmek:managed-by=cmek-provisioner` on an existing key.
pub async fn tag_for_adoption(stack: &LocalStack, arn: &str) {
    stack
        .kms()
        .tag_resource()
        .key_id(arn)
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key(cmek::kms::TAG_MANAGED_BY)
                .tag_value(cmek::kms::TAG_MANAGED_BY_VALUE)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// A policy CreateKey wrote for a key it created, less the two statements
/// that let CreateKey's own role tag and maintain that key (checked here to
/// be exactly those, naming this stack's role): what is left is Anthropic's
/// documented policy.
pub fn documented_part(stack: &LocalStack, policy: &Value) -> Value {
    let role = &stack.bindings.attrs["CreateKeyFunctionRole.Arn"];
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().expect("a statement list");
    let ours: Vec<Value> = statements
        .iter()
        .filter(|s| {
            s["Sid"] == cmek::workflow::CREATOR_MAINTAINS_SID || s["Sid"] == cmek::workflow::CREATOR_TAGS_SID
        })
        .cloned()
        .collect();
    assert_eq!(
        ours,
        cmek::workflow::creator_statements(role).to_vec(),
        "the creator's statements, naming CreateKey's role"
    );
    statements.retain(|s| !ours.contains(s));
    policy
}

pub async fn keys_for(stack: &LocalStack, ws: &WorkspaceId) -> Vec<String> {
    let kms = stack.kms();
    let mut out = Vec::new();
    for arn in all_keys(stack).await {
        let tags = kms.list_resource_tags().key_id(&arn).send().await.unwrap();
        if tags
            .tags()
            .iter()
            .any(|t| t.tag_key() == cmek::kms::TAG_WORKSPACE && t.tag_value() == ws.as_str())
        {
            out.push(arn);
        }
    }
    out
}

/// What the stand-in's requests changed (`registered …`, `attached …`),
/// whatever they were answered — 5xx after the effect included.
pub fn effects(stack: &LocalStack, prefix: &str) -> Vec<String> {
    stack
        .admin
        .requests()
        .into_iter()
        .filter_map(|r| r.effect)
        .filter(|e| e.starts_with(prefix))
        .collect()
}

/// Record a figure a test measured (`.local/figures/<name>.txt`): the test
/// command prints every figure of its run at the end, which is where the
/// README's Reliability figures come from. Also on stderr, for a lone run.
pub fn figure(name: &str, text: &str) {
    let dir = sandbox::stack::repo_root().join(".local/figures");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), format!("{text}\n"));
    eprintln!("FIGURE {name}: {text}");
}

pub fn dump_on_failure(stack: &LocalStack) -> String {
    let aws = stack.host.aws_fault_seed().map_or_else(String::new, |seed| {
        format!("; the AWS faults with seed {seed} (set `aws_faults.seed`)")
    });
    format!(
        "function logs in {}; the stand-in's faults were drawn with seed {} (set `faults.seed` to repeat them){aws}",
        stack.log_dir.display(),
        stack.admin.fault_seed()
    )
}

pub use cmek::store::WorkflowStore as _;

/// Stands in for CloudFormation's pre-signed S3 URL: records every PUT.
#[derive(Debug)]
pub struct ResponseCatcher {
    pub url: String,
    /// Every PUT: the request id, its body, when it was stored (ms since the epoch).
    bodies: std::sync::Arc<std::sync::Mutex<Vec<(String, Value, u64)>>>,
    /// PUTs still to be answered 500 *after* being stored (the answer
    /// arrived; the caller cannot know).
    fail_after_store: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl ResponseCatcher {
    pub async fn start() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use axum::extract::{Path, State};
        type Store = (
            std::sync::Arc<std::sync::Mutex<Vec<(String, Value, u64)>>>,
            std::sync::Arc<AtomicUsize>,
        );
        let bodies: std::sync::Arc<std::sync::Mutex<Vec<(String, Value, u64)>>> = Default::default();
        let fail_after_store = std::sync::Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route(
                "/cfn/{id}",
                axum::routing::put(
                    |State((s, fail)): State<Store>, Path(id): Path<String>, body: String| async move {
                        let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body.clone()));
                        assert!(
                            body.len() <= 4096,
                            "CloudFormation response over 4096 bytes: {}",
                            body.len()
                        );
                        s.lock().unwrap().push((id, v, sandbox::aws_proxy::now_ms()));
                        let failing = fail
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if failing {
                            (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                "stored, then failed",
                            )
                        } else {
                            (axum::http::StatusCode::OK, "ok")
                        }
                    },
                ),
            )
            .with_state((bodies.clone(), fail_after_store.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            bodies,
            fail_after_store,
            _task: task,
        }
    }

    /// Answer the next `n` PUTs with a 500 after storing them.
    pub fn fail_next_after_storing(&self, n: usize) {
        self.fail_after_store
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url_for(&self, id: &str) -> String {
        format!("{}/cfn/{id}", self.url)
    }

    /// CloudFormation's request to a custom resource of `resource_type`
    /// (logical id `logical_id`, stack `app`), answered to this catcher.
    pub fn request(
        &self,
        resource_type: &str,
        logical_id: &str,
        kind: &str,
        request_id: &str,
        props: Value,
    ) -> Value {
        serde_json::json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:us-east-2:123456789012:function:CustomResourceFunction",
            "ResponseURL": self.url_for(request_id),
            "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/app/1",
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "ResourceType": resource_type,
            "ResourceProperties": props,
        })
    }

    pub fn responses(&self, id: &str) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|(_, v, _)| v.clone())
            .collect()
    }

    /// When each PUT for `id` was stored (ms since the Unix epoch).
    pub fn received_at(&self, id: &str) -> Vec<u64> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|(_, _, at)| *at)
            .collect()
    }

    /// The first response PUT for `id`, waiting up to `timeout`.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(v) = self.responses(id).into_iter().next() {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no CloudFormation response for {id} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Invoke a function through the local Lambda endpoint (see [`LocalStack::invoke`]).
pub async fn invoke(stack: &LocalStack, function: &str, event: &Value) -> (Option<String>, Value) {
    stack.invoke(function, event).await.unwrap()
}

/// Every execution of the state machine: (ARN, name, status).
pub async fn executions(stack: &LocalStack) -> Vec<(String, String, String)> {
    stack.executions().await.unwrap()
}

/// Put a workspace in the state a successful provisioning leaves, directly
/// (key in moto, registration and attachment in the stand-in, ATTACHED
/// record): for tests that need many attached workspaces quickly.
pub async fn attach_directly(stack: &LocalStack, workspace: &Value) -> (WorkspaceId, String) {
    use cmek::store::{AuditEvent, Status};
    let ws = workspace_id(workspace);
    let compartment: cmek::ids::CompartmentId =
        workspace["compartment_id"].as_str().unwrap().parse().unwrap();
    let kms = cmek::kms::KeyManager::new(stack.kms());
    let org = org_uuid(stack);
    let policy = cmek::policy::key_policy(
        &sandbox::stack::ACCOUNT.parse().unwrap(),
        cmek::geo::Geo::Us,
        &org,
        cmek::policy::Scope::Workspaces(&[compartment]),
    );
    let key = kms
        .create_key(&policy.to_string(), &cmek::workflow::key_description(&ws))
        .await
        .unwrap();
    kms.tag_as_ours(&key.key_id, &ws).await.unwrap();
    kms.enable_rotation(&key.key_id).await.unwrap();
    let admin = stack.admin_client();
    let reg = admin
        .create_external_key("direct", cmek::geo::Geo::Us, &key.arn.parse().unwrap())
        .await
        .unwrap();
    admin.attach_key(&ws, &reg.id.parse().unwrap()).await.unwrap();
    let store = stack.store();
    let now = time::OffsetDateTime::now_utc();
    let rec = cmek::store::claim(&store, &ws, "setup", None, now, Duration::from_secs(60))
        .await
        .unwrap();
    let ev = AuditEvent::new("Setup", "attached", None, Value::Null);
    cmek::store::release(&store, &rec, "setup", Status::Attached, ev, now, |r| {
        r.compartment_id = Some(compartment);
        r.org_uuid = Some(org);
        r.key_arn = Some(key.arn.parse().unwrap());
        r.external_key_id = Some(reg.id.parse().unwrap());
    })
    .await
    .unwrap();
    (ws, key.arn)
}

/// The Embedded Metric Format documents the functions printed: (dimension
/// values joined with `/`, metric name, value).
pub fn emf_metrics(stack: &LocalStack) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in stack.function_logs().lines() {
        if !line.contains("\"_aws\"") {
            continue;
        }
        let Ok(doc) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        if doc.get("_aws").is_none() {
            continue;
        }
        let spec = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "CmekProvisioner", "{line}");
        let dims: Vec<String> = spec["Dimensions"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                doc[d.as_str().unwrap()]
                    .as_str()
                    .expect("dimension value")
                    .to_owned()
            })
            .collect();
        for m in spec["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            let value = doc[name].as_f64().expect("metric value");
            out.push((dims.join("/"), name.to_owned(), value));
        }
    }
    out
}

/// A rule of the test's own on the project bus, delivering to a queue, to see every event put.
pub async fn capture(stack: &LocalStack, pattern: Value) -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let url = sqs
        .create_queue()
        .queue_name("capture")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let eb = aws_sdk_eventbridge::Client::new(&stack.sdk);
    eb.put_rule()
        .name("capture")
        .event_bus_name(&stack.bus_name)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("q")
        .arn("arn:aws:sqs:us-east-2:123456789012:capture")
        .build()
        .unwrap();
    eb.put_targets()
        .rule("capture")
        .event_bus_name(&stack.bus_name)
        .targets(target)
        .send()
        .await
        .unwrap();
    (sqs, url)
}

/// Every message in the capture queue so far (as EventBridge events).
pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            return out;
        }
        for m in got.messages() {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// `cmekctl` (the debug build) run as a separate process against the stack,
/// with nothing of this process's environment but `PATH`.
pub fn run_cmekctl(stack: &LocalStack, args: &[&str]) -> std::process::Output {
    cmekctl_command(stack)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cmekctl: {e} (cargo build --workspace --bins)"))
}

/// The built `cmekctl`, with only the local stack's client environment.
pub fn cmekctl_command(stack: &LocalStack) -> std::process::Command {
    let mut cmd = std::process::Command::new(sandbox::stack::target_dir().join("debug/cmekctl"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(stack.client_env());
    cmd
}

/// The project's documentation as a reader gets it: README.md, then every
/// page of docs/ (sorted), each headed by its path.
pub fn documentation() -> String {
    let root = sandbox::stack::repo_root();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("docs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    docs.retain(|p| p.extension().is_some_and(|x| x == "md"));
    docs.sort();
    pages.extend(docs);
    pages
        .iter()
        .map(|p| {
            format!(
                "<!-- {} -->\n{}",
                p.strip_prefix(&root).unwrap_or(p).display(),
                std::fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
