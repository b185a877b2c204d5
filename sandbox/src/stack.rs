//! The whole AWS side on loopback: moto (with Step Functions execution on),
//! the real function binaries behind [`LambdaHost`], and the Admin API
//! stand-in — built from `template.yaml` and `statemachine/`, the same
//! definitions that deploy to AWS. One call brings it up; dropping it tears
//! everything down.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::admin_api::{OrgSeed, SandboxApi, SandboxConfig};
use crate::lambda_host::{FunctionSpec, LambdaHost};
use crate::template::{Bindings, Template};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-2";
pub const STATE_MACHINE: &str = "ProvisionStateMachine";
/// Who puts "Workspace Discovered" events in the local stack besides
/// discovery (the tests and the demo, as workspace-vending tooling): named in
/// `TrustedEventPublishers`, as a deployment names its own tooling.
pub const LOCAL_TOOLING_ROLE: &str = "arn:aws:iam::123456789012:role/local-workspace-vending";

/// How to bring the stack up.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Template parameter overrides, e.g. a short validation schedule for tests.
    pub parameters: HashMap<String, String>,
    /// The Admin API stand-in's organizations and faults (its KMS endpoint is set here).
    pub sandbox: SandboxConfig,
    /// A label for the log folder (`.local/logs/stack-<label>-<port>/`).
    pub label: String,
    /// Deliver the template's bus rules to their target functions (moto's
    /// EventBridge cannot invoke Lambda: rules go to SQS, a pump invokes).
    pub bus_rules: bool,
    /// Extra environment for every function (e.g. the crash-point switches).
    pub function_env: Vec<(String, String)>,
    /// Route the functions' AWS calls through the Lambda host (recorded per
    /// function, faults on demand) rather than straight to moto. On by
    /// default; the benchmarks turn it off to time what Lambda would.
    pub aws_proxy: bool,
    /// Random AWS-side faults on the functions' calls (through the proxy).
    pub aws_faults: Option<crate::aws_proxy::AwsFaultRate>,
    /// Which Anthropic platform the stack and the stand-in play. On Claude
    /// Platform on AWS no admin key secret is created at all, the stand-in
    /// verifies SigV4, and each function signs with its own access key id
    /// (its logical id), so the stand-in knows which role made each call.
    pub platform: cmek::platform::Platform,
    /// The template to deploy, when not `template.yaml` (a deliberately
    /// broken copy, for a control).
    pub template_text: Option<String>,
    /// Also make what `sam deploy` makes for `cmekctl preflight` to look at:
    /// the IAM roles, the topics' key, the result rule, a trail (see
    /// [`crate::deployment`]). Needs the SAM translator (the test command
    /// installs it).
    pub preflight: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            parameters: HashMap::new(),
            sandbox: SandboxConfig {
                orgs: vec![OrgSeed {
                    name: "demo-org".into(),
                    admin_key: DEMO_ADMIN_KEY.into(),
                    workspaces: 3,
                    ..OrgSeed::default()
                }],
                ..SandboxConfig::default()
            },
            label: "stack".into(),
            bus_rules: true,
            function_env: Vec::new(),
            aws_proxy: true,
            aws_faults: None,
            platform: cmek::platform::Platform::ClaudePlatform,
            template_text: None,
            preflight: false,
        }
    }
}

/// The fake admin key the local stack stores in Secrets Manager.
pub const DEMO_ADMIN_KEY: &str = "sk-ant-admin01-LOCAL-SANDBOX-KEY-not-a-real-secret-000000";

impl StackOptions {
    /// Validation and transient retries in seconds rather than minutes.
    pub fn fast_retries(mut self) -> Self {
        for (k, v) in [
            ("ValidationIntervalSeconds", "1"),
            ("ValidationBackoffRate", "1"),
            ("ValidationMaxDelaySeconds", "1"),
            ("ValidationMaxAttempts", "4"),
            ("TransientIntervalSeconds", "1"),
        ] {
            self.parameters.entry(k.into()).or_insert_with(|| v.into());
        }
        self
    }

    /// Play Claude Platform on AWS.
    pub fn on_aws(mut self) -> Self {
        self.platform = cmek::platform::Platform::ClaudePlatformOnAws;
        self
    }

    pub fn admin_key(&self) -> &str {
        self.sandbox
            .orgs
            .first()
            .map(|o| o.admin_key.as_str())
            .unwrap_or(DEMO_ADMIN_KEY)
    }
}

/// A running local stack.
pub struct LocalStack {
    pub moto_url: String,
    pub host: LambdaHost,
    pub admin: SandboxApi,
    pub sdk: aws_config::SdkConfig,
    pub state_machine_arn: String,
    pub table_name: String,
    pub bus_name: String,
    pub secret_arn: String,
    pub log_dir: PathBuf,
    pub admin_key: String,
    pub platform: cmek::platform::Platform,
    pub alert_topic_arn: String,
    /// What the template's `Ref`s and `GetAtt`s resolve to in this stack.
    pub bindings: Bindings,
    /// The stack description `cmekctl preflight --resources` reads (with
    /// [`StackOptions::preflight`]).
    pub resources_file: Option<PathBuf>,
    label: String,
    moto: tokio::process::Child,
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for LocalStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStack")
            .field("moto_url", &self.moto_url)
            .field("state_machine_arn", &self.state_machine_arn)
            .finish()
    }
}

/// The repository root (this crate lives in `sandbox/`).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the repository.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The outcome of one execution.
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    pub arn: String,
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let root = repo_root();
        let python = root.join(".local/venv-moto/bin/python");
        if !python.exists() {
            bail!(
                "moto is not installed at {}: run ./scripts/test or ./scripts/demo once to set it up",
                python.display()
            );
        }
        let profile = std::env::var("CMEK_FUNCTION_PROFILE").unwrap_or_else(|_| "debug".into());
        let bin_dir = target_dir().join(&profile);

        // The Lambda endpoint's port must be known before moto starts: moto's
        // Step Functions sends Lambda invokes to localhost:$MOTO_PORT.
        let host_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Lambda endpoint")?;
        let host_port = host_listener.local_addr()?.port();
        let log_dir = root
            .join(".local/logs")
            .join(format!("{}-{host_port}", options.label));
        std::fs::create_dir_all(&log_dir)?;

        let (moto, moto_url) = start_moto(&root, &python, host_port, &log_dir).await?;
        let sdk = crate_sdk_config(&moto_url).await;
        let http = cmek::tls::http_client()?;
        http.post(format!("{moto_url}/moto-api/config"))
            .json(&json!({"stepfunctions": {"execute_state_machine": true}}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("moto: turning on Step Functions execution")?;

        let on_aws = options.platform.is_on_aws();
        let mut sandbox = options.sandbox.clone();
        sandbox.kms_endpoint = Some(moto_url.clone());
        if on_aws {
            sandbox.aws_platform = Some(crate::admin_api::on_aws::AwsPlatform {
                account_id: ACCOUNT.into(),
                region: REGION.into(),
                ..Default::default()
            });
        }
        let admin = SandboxApi::start(sandbox, "127.0.0.1:0".parse()?)
            .await
            .context("starting the Admin API stand-in")?;

        let admin_key = options.admin_key().to_owned();
        // Claude Platform on AWS has no secret: none is created.
        let secret_arn = if on_aws {
            String::new()
        } else {
            aws_sdk_secretsmanager::Client::new(&sdk)
                .create_secret()
                .name("cmek-provisioner/admin-api-key")
                .secret_string(&admin_key)
                .send()
                .await
                .context("moto: creating the admin key secret")?
                .arn()
                .ok_or_else(|| anyhow!("moto returned no secret ARN"))?
                .to_owned()
        };

        let template_text = match &options.template_text {
            Some(text) => text.clone(),
            None => std::fs::read_to_string(root.join("template.yaml")).context("reading template.yaml")?,
        };
        let template = Template::parse(&template_text, &root).context("parsing the template")?;
        let table_name = "cmek-provisioner-local".to_owned();
        let bus_name = "cmek-provisioner-local".to_owned();
        let mut bindings = Bindings {
            parameters: template.parameter_defaults(),
            ..Bindings::default()
        };
        bindings
            .parameters
            .insert("AdminKeySecretArn".into(), secret_arn.clone());
        bindings
            .parameters
            .insert("AdminApiBaseUrl".into(), admin.url.clone());
        bindings
            .parameters
            .insert("Platform".into(), options.platform.as_str().into());
        // The tests and the demo put "Workspace Discovered" events as
        // workspace-vending tooling would: named, as a deployment names its own.
        bindings
            .parameters
            .insert("TrustedEventPublishers".into(), LOCAL_TOOLING_ROLE.into());
        bindings.parameters.extend(options.parameters.clone());
        for (k, v) in [
            ("AWS::AccountId", ACCOUNT),
            ("AWS::Region", REGION),
            ("AWS::StackName", "local"),
            ("AWS::Partition", "aws"),
        ] {
            bindings.refs.insert(k.into(), v.into());
        }
        bindings.refs.insert("WorkflowTable".into(), table_name.clone());
        bindings.refs.insert("ResultBus".into(), bus_name.clone());
        // Known before it exists: moto names state machines predictably.
        bindings.refs.insert(
            STATE_MACHINE.into(),
            format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ProvisionWorkspaceKey"),
        );
        bindings.attrs.insert(
            "WorkflowTable.Arn".into(),
            format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name}"),
        );
        bindings.attrs.insert(
            "ResultBus.Arn".into(),
            format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus_name}"),
        );
        for (id, _) in template.resources_of_type("AWS::Serverless::Function") {
            bindings.refs.insert(id.clone(), id.clone());
            bindings.attrs.insert(
                format!("{id}.Arn"),
                format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{id}"),
            );
            // The role SAM creates for it (`<Function>Role`), as a bus or key
            // policy names it.
            bindings.attrs.insert(
                format!("{id}Role.Arn"),
                format!("arn:aws:iam::{ACCOUNT}:role/local-{id}Role"),
            );
        }

        let topic = aws_sdk_sns::Client::new(&sdk)
            .create_topic()
            .name("cmek-provisioner-alerts")
            .send()
            .await
            .context("moto: creating the alert topic")?
            .topic_arn()
            .unwrap_or_default()
            .to_owned();
        bindings.refs.insert("AlertTopic".into(), topic.clone());

        create_table(&sdk, &template, &table_name).await?;
        aws_sdk_eventbridge::Client::new(&sdk)
            .create_event_bus()
            .name(&bus_name)
            .send()
            .await
            .context("moto: creating the event bus")?;

        let log_level = bindings
            .parameters
            .get("LogLevel")
            .cloned()
            .unwrap_or_else(|| "INFO".into());
        let mut specs = Vec::new();
        for f in template.functions(&bindings)? {
            let binary = bin_dir.join(&f.binary);
            if !binary.exists() {
                bail!(
                    "function binary {} not found: build the functions first (cargo build --workspace --bins)",
                    binary.display()
                );
            }
            let mut env: Vec<(String, String)> = f.env.into_iter().collect();
            let endpoint = if options.aws_proxy {
                format!("http://127.0.0.1:{host_port}/_aws/{}", f.logical_id)
            } else {
                moto_url.clone()
            };
            // On Claude Platform on AWS each function signs as itself.
            let access_key_id = if on_aws { f.logical_id.as_str() } else { "testing" };
            env.extend(
                [
                    ("AWS_ENDPOINT_URL", endpoint.as_str()),
                    ("AWS_ACCESS_KEY_ID", access_key_id),
                    ("AWS_SECRET_ACCESS_KEY", "testing"),
                    ("AWS_REGION", REGION),
                    ("AWS_DEFAULT_REGION", REGION),
                    ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
                    ("AWS_LAMBDA_LOG_LEVEL", log_level.as_str()),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            env.extend(options.function_env.iter().cloned());
            specs.push(FunctionSpec {
                name: f.logical_id,
                binary,
                handler: f.handler,
                env,
                timeout: Duration::from_secs(f.timeout_secs),
            });
        }
        let host =
            LambdaHost::start(host_listener, specs, REGION, ACCOUNT, log_dir.join("functions")).await?;
        host.set_moto(&moto_url);
        if let Some(rate) = options.aws_faults {
            if !options.aws_proxy {
                bail!("AWS faults need the AWS proxy (StackOptions.aws_proxy)");
            }
            host.set_random_aws_faults(Some(rate));
        }

        let definition = template.state_machine_definition(STATE_MACHINE, &bindings)?;
        let state_machine_arn = aws_sdk_sfn::Client::new(&sdk)
            .create_state_machine()
            .name("ProvisionWorkspaceKey")
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/cmek-provisioner-local"))
            .send()
            .await
            .context("moto: creating the state machine")?
            .state_machine_arn()
            .to_owned();

        let mut pumps = Vec::new();
        let mut resources_file = None;
        if options.preflight {
            let names = crate::deployment::Names {
                account: ACCOUNT,
                region: REGION,
                table: &table_name,
                bus: &bus_name,
                alert_topic: &topic,
                state_machine: &state_machine_arn,
                moto_url: &moto_url,
            };
            let made = crate::deployment::create(&sdk, &template_text, &mut bindings, &names, &log_dir)
                .await
                .context("making what sam deploy makes, for preflight")?;
            host.set_iam_roles(made.roles);
            pumps.push(made.pump);
            resources_file = Some(made.resources_file);
        }
        if options.bus_rules {
            for (function, bus, pattern) in template.bus_rules(&bindings)? {
                pumps.push(bus_rule_pump(&sdk, &host.url, &function, &bus, &pattern).await?);
            }
        }

        Ok(Self {
            moto_url,
            host,
            admin,
            sdk,
            state_machine_arn,
            table_name,
            bus_name,
            secret_arn,
            log_dir,
            admin_key,
            platform: options.platform,
            alert_topic_arn: topic,
            bindings,
            resources_file,
            label: options.label.clone(),
            moto,
            pumps,
        })
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.sdk)
    }

    pub fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk)
    }

    pub fn store(&self) -> cmek::store::DynamoStore {
        cmek::store::DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), &self.table_name)
    }

    /// An Admin API client for the stand-in, as the functions see it (on
    /// Claude Platform on AWS, signing as `access_key_id` "LocalTest").
    pub fn admin_client(&self) -> cmek::admin_api::AdminApiClient {
        let client = if self.platform.is_on_aws() {
            let credentials =
                aws_credential_types::Credentials::new("LocalTest", "testing", None, None, "local");
            cmek::admin_api::AdminApiClient::new_sigv4(
                &self.admin.url,
                cmek::admin_api::SigV4Signer::new(
                    aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
                    REGION,
                ),
                cmek::admin_api::ClientOptions::default(),
            )
        } else {
            cmek::admin_api::AdminApiClient::new(
                &self.admin.url,
                cmek::admin_api::AdminKey::new(self.admin_key.clone()),
                cmek::admin_api::ClientOptions::default(),
            )
        };
        client.unwrap_or_else(|e| unreachable!("the sandbox URL is loopback http: {e}"))
    }

    /// Start an execution (named, so moto accepts a second one).
    pub async fn start_execution(&self, input: &Value, name: Option<&str>) -> anyhow::Result<String> {
        let name = name
            .map(str::to_owned)
            .unwrap_or_else(|| format!("run-{}", uuid::Uuid::new_v4().simple()));
        let out = self
            .sfn()
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .context("StartExecution")?;
        Ok(out.execution_arn().to_owned())
    }

    pub async fn wait(&self, execution_arn: &str, timeout: Duration) -> anyhow::Result<ExecutionResult> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self
                .sfn()
                .describe_execution()
                .execution_arn(execution_arn)
                .send()
                .await?;
            if *d.status() != ExecutionStatus::Running {
                return Ok(ExecutionResult {
                    arn: execution_arn.to_owned(),
                    status: d.status().as_str().to_owned(),
                    output: d.output().and_then(|o| serde_json::from_str(o).ok()),
                    error: d.error().map(str::to_owned),
                    cause: d.cause().map(str::to_owned),
                });
            }
            if Instant::now() > deadline {
                bail!(
                    "execution {execution_arn} still running after {timeout:?} (logs: {})",
                    self.log_dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn run(&self, input: &Value, timeout: Duration) -> anyhow::Result<ExecutionResult> {
        let arn = self.start_execution(input, None).await?;
        self.wait(&arn, timeout).await
    }

    /// Every execution of the state machine, all pages: (ARN, name, status).
    pub async fn executions(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .sfn()
                .list_executions()
                .state_machine_arn(&self.state_machine_arn)
                .set_next_token(token)
                .send()
                .await?;
            out.extend(page.executions().iter().map(|e| {
                (
                    e.execution_arn().to_owned(),
                    e.name().to_owned(),
                    e.status().as_str().to_owned(),
                )
            }));
            match page.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// Invoke a function through the local Lambda endpoint, as CloudFormation
    /// or EventBridge would: (function error type if any, payload).
    pub async fn invoke(&self, function: &str, event: &Value) -> anyhow::Result<(Option<String>, Value)> {
        let resp = cmek::tls::http_client()?
            .post(format!(
                "{}/2015-03-31/functions/{function}/invocations",
                self.host.url
            ))
            .body(event.to_string())
            .send()
            .await?;
        let failed = resp.headers().contains_key("X-Amz-Function-Error");
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let error = failed.then(|| body["errorType"].as_str().unwrap_or("?").to_owned());
        Ok((error, body))
    }

    /// The names of the states an execution entered, in order.
    pub async fn states_entered(&self, execution_arn: &str) -> anyhow::Result<Vec<String>> {
        let events = cmek::aws::execution_history(&self.sfn(), execution_arn).await?;
        Ok(events
            .iter()
            .filter_map(|e| e.state_entered_event_details())
            .map(|d| d.name().to_owned())
            .collect())
    }

    /// The environment a client (cmekctl, the AWS CLI) needs to use this stack.
    pub fn client_env(&self) -> Vec<(String, String)> {
        // A stack playing a deployment answers what moto cannot (the policy
        // simulator, Access Analyzer) on the host's AWS route; it forwards
        // the rest to moto.
        let endpoint = if self.resources_file.is_some() {
            format!("{}/_aws/cmekctl", self.host.url)
        } else {
            self.moto_url.clone()
        };
        [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("CMEK_TABLE_NAME", self.table_name.as_str()),
            ("CMEK_STATE_MACHINE_ARN", self.state_machine_arn.as_str()),
            ("CMEK_ADMIN_API_BASE_URL", self.admin.url.as_str()),
            ("ANTHROPIC_ADMIN_KEY", self.admin_key.as_str()),
            ("CMEK_PLATFORM", self.platform.as_str()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into_iter()
        // Claude Platform on AWS has no admin key: the CLI signs with SigV4.
        .filter(|(k, _)| !(self.platform.is_on_aws() && k == "ANTHROPIC_ADMIN_KEY"))
        .collect()
    }

    /// moto's process id (for the teardown test).
    pub fn moto_pid(&self) -> Option<u32> {
        self.moto.id()
    }

    /// Everything the functions logged so far.
    pub fn function_logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.log_dir.join("functions")) {
            for e in entries.flatten() {
                all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        all
    }
}

/// Where every stack leaves the AWS calls its functions made, for the IAM
/// coverage test (`tests/tests/iam_coverage.rs`); the test command empties it
/// before a run.
pub fn aws_calls_dir() -> PathBuf {
    repo_root().join(".local/aws-calls")
}

/// One stack's recorded calls and the bindings to resolve its policies with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecordedCalls {
    pub label: String,
    pub bindings: Bindings,
    pub calls: Vec<crate::aws_proxy::AwsCall>,
}

impl LocalStack {
    fn save_aws_calls(&self) -> anyhow::Result<()> {
        // Only the functions' calls: cmekctl's own (preflight's) are no role's.
        let mut calls: Vec<_> = self
            .host
            .aws_calls()
            .into_iter()
            .filter(|c| self.bindings.attrs.contains_key(&format!("{}.Arn", c.function)))
            .collect();
        // Claude Platform on AWS: the signed Admin API calls, and the KMS
        // access each attach checked, by the function that made them.
        // (Only the functions': a test's or cmekctl's own signed calls are no role's.)
        calls.extend(
            self.admin
                .aws_calls()
                .into_iter()
                .filter(|c| self.bindings.attrs.contains_key(&format!("{}.Arn", c.function))),
        );
        if calls.is_empty() {
            return Ok(());
        }
        let dir = aws_calls_dir();
        std::fs::create_dir_all(&dir)?;
        let record = RecordedCalls {
            label: self.label.clone(),
            bindings: self.bindings.clone(),
            calls,
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = dir.join(format!(
            "{}-{}-{}-{stamp}.json",
            self.label,
            self.host.port,
            std::process::id()
        ));
        std::fs::write(path, serde_json::to_vec(&record)?)?;
        Ok(())
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        for p in &self.pumps {
            p.abort();
        }
        if let Err(e) = self.save_aws_calls() {
            eprintln!("could not save the stack's AWS calls for the IAM coverage test: {e:#}");
        }
        // kill_on_drop covers moto; say so explicitly for readers of the logs.
        let _ = self.moto.start_kill();
    }
}

async fn start_moto(
    root: &Path,
    python: &Path,
    lambda_port: u16,
    log_dir: &Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    // moto binds a free port itself and says which: choosing one here and
    // handing it over would race with every other process (another stack's
    // moto could take it, and this stack would talk to that one).
    let port_file = log_dir.join("moto.port");
    let _ = std::fs::remove_file(&port_file);
    let log = std::fs::File::create(log_dir.join("moto.log"))?;
    let mut child = tokio::process::Command::new(python)
        .arg(root.join("tools/moto_server.py"))
        .args(["-H", "127.0.0.1", "-p", "0", "--port-file"])
        .arg(&port_file)
        .env("MOTO_PORT", lambda_port.to_string())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", REGION)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting moto")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Ok(port) = text.trim().parse()
        {
            break port;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "moto exited during start-up ({status}; log: {})",
                log_dir.join("moto.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "moto did not start within 30 s (log: {})",
                log_dir.join("moto.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = format!("http://127.0.0.1:{port}");
    let http = cmek::tls::http_client()?;
    // Listening already (the port file is written after binding); this
    // waits for the first request to be served.
    loop {
        if http.get(format!("{url}/moto-api/")).send().await.is_ok() {
            return Ok((child, url));
        }
        if Instant::now() > deadline {
            bail!(
                "moto did not answer within 30 s (log: {})",
                log_dir.join("moto.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn crate_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let creds = aws_sdk_sfn::config::Credentials::new("testing", "testing", None, None, "local-stack");
    cmek::aws::config_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(creds)
        .load()
        .await
}

async fn create_table(sdk: &aws_config::SdkConfig, template: &Template, name: &str) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let props = template
        .properties("WorkflowTable")
        .ok_or_else(|| anyhow!("template has no WorkflowTable"))?;
    let mut req = aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in props
        .get("AttributeDefinitions")
        .and_then(|v| v.as_sequence())
        .into_iter()
        .flatten()
    {
        let n = a
            .get("AttributeName")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let t = a.get("AttributeType").and_then(|v| v.as_str()).unwrap_or("S");
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::from(t))
                .build()?,
        );
    }
    for k in props
        .get("KeySchema")
        .and_then(|v| v.as_sequence())
        .into_iter()
        .flatten()
    {
        let n = k
            .get("AttributeName")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let t = k.get("KeyType").and_then(|v| v.as_str()).unwrap_or("HASH");
        req = req.key_schema(
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(KeyType::from(t))
                .build()?,
        );
    }
    for index in props
        .get("GlobalSecondaryIndexes")
        .and_then(|v| v.as_sequence())
        .into_iter()
        .flatten()
    {
        let mut gsi = aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder().index_name(
            index
                .get("IndexName")
                .and_then(|v| v.as_str())
                .unwrap_or_default(),
        );
        for k in index
            .get("KeySchema")
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
        {
            gsi = gsi.key_schema(
                KeySchemaElement::builder()
                    .attribute_name(
                        k.get("AttributeName")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default(),
                    )
                    .key_type(KeyType::from(
                        k.get("KeyType").and_then(|v| v.as_str()).unwrap_or("HASH"),
                    ))
                    .build()?,
            );
        }
        let projection = index
            .get("Projection")
            .and_then(|p| p.get("ProjectionType"))
            .and_then(|v| v.as_str())
            .unwrap_or("ALL");
        gsi = gsi.projection(
            aws_sdk_dynamodb::types::Projection::builder()
                .projection_type(aws_sdk_dynamodb::types::ProjectionType::from(projection))
                .build(),
        );
        req = req.global_secondary_indexes(gsi.build()?);
    }
    req.send()
        .await
        .context("moto: creating the workflow table from template.yaml")?;
    Ok(())
}

/// Create the rule in moto with an SQS target, and a task that hands each
/// delivered event to the rule's function, as EventBridge's Lambda target would.
async fn bus_rule_pump(
    sdk: &aws_config::SdkConfig,
    lambda_url: &str,
    function: &str,
    bus: &str,
    pattern: &Value,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = format!("cmek-local-rule-{function}");
    let url = sqs
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .context("moto: creating a rule queue")?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}");
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let rule = format!("local-{function}");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .context("moto: creating the bus rule")?;
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("local-sqs")
                .arn(queue_arn)
                .build()?,
        )
        .send()
        .await
        .context("moto: adding the rule target")?;
    let invoke_url = format!("{lambda_url}/2015-03-31/functions/{function}/invocations");
    let function = function.to_owned();
    let http = cmek::tls::http_client()?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok(out) = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
            else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            for m in out.messages() {
                let body = m.body().unwrap_or_default().to_owned();
                match http.post(&invoke_url).body(body).send().await {
                    Ok(r) if r.headers().get("X-Amz-Function-Error").is_some() => {
                        tracing::warn!(function = %function, "rule target failed: {}", r.text().await.unwrap_or_default());
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(function = %function, "rule target unreachable: {e}"),
                }
                if let Some(h) = m.receipt_handle() {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(h)
                        .send()
                        .await;
                }
            }
        }
    }))
}
