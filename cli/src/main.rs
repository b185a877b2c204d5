//! `cmekctl`: look at and drive cmek-provisioner.
//!
//! Works against AWS with the default credentials chain, or against the local
//! stack: `source .local/stack.env` (written by `cmek-local up`) sets
//! `AWS_ENDPOINT_URL` and the names below. Human output by default, `--json`
//! for scripts.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use cmek::admin_api::{AdminApiClient, AdminKey, ClientOptions};
use cmek::geo::Geo;
use cmek::ids::{AccountId, CompartmentId, KeyArn, OrgUuid, WorkspaceId};
use cmek::platform::Platform;
use cmek::store::{DynamoStore, Status, WorkflowStore};
use deployment::StackArgs;
use serde_json::{Value, json};

mod confirm;
mod create_workspace;
mod deployment;
mod onboard;
mod pacing;
mod preflight;
mod progress;
mod report;

#[derive(Parser)]
#[command(
    name = "cmekctl",
    version,
    about = "Operate cmek-provisioner: key policies, diagnosis, provisioning, bulk onboarding, status, reports"
)]
struct Cli {
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the exact key policy Anthropic documents today for an account,
    /// organization and compartment(s) (for Terraform or the console).
    Policy {
        /// The AWS account that owns the key (12 digits).
        #[arg(long)]
        account: String,
        /// The organization's bare UUID (`id` of GET /v1/organizations/me; not
        /// the org_-prefixed form). Claude Platform only.
        #[arg(long, required_if_eq("platform", "claude-platform"))]
        org: Option<String>,
        /// claude-platform (Anthropic's role, bound to the organization) or
        /// claude-platform-on-aws (the service principal, bound to the account's workspaces).
        #[arg(long, env = "CMEK_PLATFORM", default_value = "claude-platform")]
        platform: Platform,
        /// Claude Platform on AWS: bind aws:SourceArn to these workspace ARNs
        /// instead of every workspace of the account.
        #[arg(long = "workspace-arn")]
        workspace_arns: Vec<String>,
        /// A workspace's compartment id (repeat for a key shared by several workspaces).
        #[arg(long = "compartment", required_unless_present = "org_only")]
        compartments: Vec<String>,
        /// Bind the key to the organization only (no compartment list: any workspace of it may use the key).
        #[arg(long, conflicts_with = "compartments")]
        org_only: bool,
        /// The workspace's data residency geo (us or eu): where Anthropic's role lives.
        #[arg(long, default_value = "us")]
        geo: String,
    },
    /// Check a key against a workspace: state, Region, policy; optionally ask Anthropic to validate.
    Doctor {
        /// The KMS key's ARN (the key to check).
        #[arg(long)]
        key_arn: String,
        /// The workspace id (wrkspc_…) the key is or will be attached to.
        #[arg(long)]
        workspace: String,
        /// Also call the Admin API's validate for the key's registration, if any.
        #[arg(long)]
        validate: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start a provisioning and follow it state by state. Attaching is
    /// permanent: the key can never be removed or replaced, and the
    /// workspace's data-retention setting is locked. Prints the plan, then
    /// asks for confirmation on a terminal; --yes starts without asking.
    Provision {
        /// The workspace to encrypt (wrkspc_…).
        workspace: String,
        /// Use this existing KMS key (its policy must grant Anthropic access;
        /// see `cmekctl policy`) instead of creating one.
        #[arg(long)]
        key_arn: Option<String>,
        /// The name the key is registered under with Anthropic (default: one
        /// naming the workspace).
        #[arg(long)]
        display_name: Option<String>,
        /// The workspace is the organization's Default Workspace, and you
        /// accept that organization webhooks are refused while it uses a key.
        /// Without it, the Default Workspace is refused (nothing is created).
        #[arg(long)]
        default_workspace: bool,
        /// Start without asking (for scripts): attaching is irreversible.
        /// Without it and without a terminal to ask on, only the plan is
        /// printed and the exit code is 3.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        target: StackArgs,
    },
    /// Create a workspace encrypted with its key from its first byte (a new
    /// KMS key, or --key-arn), and follow the run state by state. The key can
    /// never be removed or replaced, and the workspace's data-retention
    /// setting is locked. Prints the plan, then asks for confirmation on a
    /// terminal; --yes starts without asking.
    CreateWorkspace {
        /// The new workspace's name (1-255 characters). The same name twice
        /// is the same request: it makes one workspace.
        name: String,
        /// The workspace's data residency geo (immutable after creation;
        /// CMEK is available for `us` only).
        #[arg(long, default_value = "us")]
        data_residency: String,
        /// The workspace's colour in the console, #RRGGBB.
        #[arg(long)]
        display_color: Option<String>,
        /// Use this existing KMS key, tagged cmek:managed-by=cmek-provisioner by
        /// its owner; its policy must admit the organization's (or account's)
        /// new workspaces, and is left as it is.
        #[arg(long)]
        key_arn: Option<String>,
        /// The name the key is registered under with Anthropic (default: one
        /// naming the workspace).
        #[arg(long)]
        display_name: Option<String>,
        /// What makes two requests the same one (default: derived from the
        /// name). Give another to create a second workspace of the same name.
        #[arg(long)]
        creation_token: Option<String>,
        /// Start without asking (for scripts): the key is permanent. Without
        /// it and without a terminal to ask on, only the plan is printed and
        /// the exit code is 3.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        target: StackArgs,
    },
    /// A workspace's record and audit trail (guardian findings included), or a summary of all.
    Status {
        /// The workspace (wrkspc_…); without it, a count of records by status.
        workspace: Option<String>,
        #[command(flatten)]
        target: StackArgs,
    },
    /// Provision many existing workspaces, paced to the Admin API's rate limit
    /// (found as it goes, or --rpm). Prints the plan, then asks for
    /// confirmation on a terminal; --yes starts without asking: attaching is
    /// irreversible.
    Onboard {
        /// A file of workspace ids, one per line (`#` comments allowed).
        #[arg(
            long,
            conflicts_with = "all_unattached",
            required_unless_present = "all_unattached"
        )]
        workspaces_file: Option<std::path::PathBuf>,
        /// Every unarchived workspace of the organization with no key attached.
        #[arg(long)]
        all_unattached: bool,
        /// Executions in flight at once, at most.
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        /// The organization's Admin API budget in requests per minute, if known:
        /// starts are paced to 90 % of it at 5 calls per workspace, and slower
        /// if the limit is met anyway. Without it the limit is found as the batch
        /// runs (slow start, then additive increase and multiplicative decrease on 429s).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rpm: Option<u32>,
        /// Start without asking (for scripts). Without it and without a
        /// terminal to ask on, only the plan is printed and the exit code is 3.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        target: StackArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The evidence for an audit: every workspace of the organization, its key,
    /// since when, key health and rotation, policy findings, guardian findings
    /// (resolved or not), validations and audit trail; unencrypted workspaces;
    /// keys attached to nothing. Read-only.
    Report {
        /// html (one self-contained page), csv (a row per workspace) or json.
        #[arg(long, value_enum, default_value = "html")]
        format: report::render::Format,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        /// The organization's data residency geo (us or eu), for judging key policies.
        #[arg(long, default_value = "us")]
        geo: String,
        #[command(flatten)]
        target: StackArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// After `sam deploy`: ask the account whether the stack will work. Every
    /// call the functions make is simulated by IAM against the deployed roles,
    /// every policy checked by IAM Access Analyzer, the topics' keys read, one
    /// test event sent through the result rule (a temporary SQS queue watches it
    /// arrive and is removed), the guardian's CloudTrail trail and the Admin API
    /// checked. Read-only apart from that event. Exit 1 when any check fails.
    Preflight {
        /// The deployed stack's name (its resources and parameters are read from CloudFormation).
        #[arg(long, required_unless_present = "resources")]
        stack: Option<String>,
        /// A stack description instead of CloudFormation: the local stack's
        /// (.local/stack-resources.json, written by `cmek-local up`).
        #[arg(long, conflicts_with = "stack")]
        resources: Option<std::path::PathBuf>,
        /// How long to wait for the test event to arrive, in seconds.
        #[arg(long, default_value_t = 60)]
        delivery_timeout: u64,
    },
    /// Every workspace record, optionally of one status.
    List {
        /// Only records of this status (e.g. attached, failed; any case).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        target: StackArgs,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Default: the platform's endpoint.
    #[arg(long, env = "CMEK_ADMIN_API_BASE_URL")]
    admin_api_url: Option<String>,
    /// claude-platform (an admin key) or claude-platform-on-aws (SigV4 with
    /// your AWS credentials, for the SDK's Region; no admin key).
    #[arg(long, env = "CMEK_PLATFORM", default_value = "claude-platform")]
    platform: Platform,
    /// Secrets Manager secret holding the admin key (or set ANTHROPIC_ADMIN_KEY).
    #[arg(long, env = "CMEK_ADMIN_KEY_SECRET_ARN")]
    admin_key_secret_arn: Option<String>,
}

impl AdminArgs {
    /// The admin key's secret from the stack, when none was given.
    fn or_from_stack(&mut self, d: &deployment::Deployment) {
        if self.admin_key_secret_arn.is_none() && !self.platform.is_on_aws() {
            self.admin_key_secret_arn = d.admin_key_secret_arn.clone();
        }
    }

    /// Whether an admin key (or, on Claude Platform on AWS, SigV4) is at hand.
    fn configured(&self) -> bool {
        self.platform.is_on_aws()
            || self.admin_key_secret_arn.is_some()
            || std::env::var("ANTHROPIC_ADMIN_KEY").is_ok_and(|k| !k.is_empty())
    }

    /// The Region of the workspaces on Claude Platform on AWS: the SDK's.
    fn region(sdk: &aws_config::SdkConfig) -> anyhow::Result<cmek::ids::Region> {
        Ok(sdk
            .region()
            .context("no AWS Region configured (AWS_REGION): Claude Platform on AWS is regional")?
            .to_string()
            .parse()?)
    }

    async fn client(&self, sdk: &aws_config::SdkConfig) -> anyhow::Result<AdminApiClient> {
        if self.platform.is_on_aws() {
            let region = Self::region(sdk)?;
            let url = self
                .admin_api_url
                .clone()
                .unwrap_or_else(|| self.platform.endpoint(&region));
            let credentials = sdk
                .credentials_provider()
                .context("no AWS credentials to sign Claude Platform on AWS requests with")?;
            return Ok(AdminApiClient::new_sigv4(
                &url,
                cmek::admin_api::SigV4Signer::new(credentials, region.to_string()),
                ClientOptions::default(),
            )?);
        }
        let key = match (
            std::env::var("ANTHROPIC_ADMIN_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            &self.admin_key_secret_arn,
        ) {
            (Some(k), _) => AdminKey::new(k),
            (None, Some(arn)) => {
                cmek::aws::read_admin_key(&cmek::aws::secrets_client_for(sdk, arn), arn).await?
            }
            (None, None) => bail!("set ANTHROPIC_ADMIN_KEY or --admin-key-secret-arn"),
        };
        Ok(AdminApiClient::new(
            self.admin_api_url
                .as_deref()
                .unwrap_or(cmek::admin_api::DEFAULT_BASE_URL),
            key,
            ClientOptions::default(),
        )?)
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let json_out = cli.json;
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if json_out {
                println!("{}", json!({"error": format!("{e:#}")}));
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::exit(2);
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let json_out = cli.json;
    match cli.command {
        Command::Policy {
            account,
            org,
            platform,
            workspace_arns,
            compartments,
            org_only,
            geo,
        } => {
            let account: AccountId = account.parse()?;
            if platform.is_on_aws() {
                let ids = compartments
                    .iter()
                    .map(|c| c.parse())
                    .collect::<Result<Vec<CompartmentId>, _>>()?;
                let prefix = format!("arn:aws:{}:", cmek::platform::SIGNING_NAME);
                if let Some(bad) = workspace_arns
                    .iter()
                    .find(|a| !a.starts_with(&prefix) || !a.contains(&format!(":{account}:workspace/")))
                {
                    bail!(
                        "--workspace-arn {bad:?} is not a workspace ARN of account {account} ({prefix}<region>:{account}:workspace/<id>)"
                    );
                }
                let sources = if workspace_arns.is_empty() {
                    vec![cmek::platform::account_workspaces_pattern(&account)]
                } else {
                    workspace_arns
                };
                let grant = cmek::policy::on_aws::OnAwsGrant {
                    account: &account,
                    compartments: (!org_only).then_some(ids.as_slice()),
                    source_arns: &sources,
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&cmek::policy::on_aws::key_policy(&grant))?
                );
                return Ok(0);
            }
            let org: OrgUuid = org.context("--org is required on claude-platform")?.parse()?;
            let geo: Geo = geo.parse().map_err(anyhow::Error::msg)?;
            let ids = compartments
                .iter()
                .map(|c| c.parse())
                .collect::<Result<Vec<CompartmentId>, _>>()?;
            let scope = if org_only {
                cmek::policy::Scope::Organization
            } else {
                cmek::policy::Scope::Workspaces(&ids)
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&cmek::policy::key_policy(&account, geo, &org, scope))?
            );
            Ok(0)
        }
        Command::Doctor {
            key_arn,
            workspace,
            validate,
            admin,
        } => doctor(json_out, &key_arn, &workspace, validate, &admin).await,
        Command::Provision {
            workspace,
            key_arn,
            display_name,
            default_workspace,
            yes,
            target,
        } => {
            provision(
                json_out,
                &workspace,
                ProvisionArgs {
                    key_arn,
                    display_name,
                    default_workspace,
                    yes,
                },
                &target,
            )
            .await
        }
        Command::CreateWorkspace {
            name,
            data_residency,
            display_color,
            key_arn,
            display_name,
            creation_token,
            yes,
            target,
        } => {
            let mut ws = json!({"name": name, "workspaceGeo": data_residency});
            if let Some(c) = display_color {
                ws["displayColor"] = json!(c);
            }
            if let Some(t) = creation_token {
                ws["creationToken"] = json!(t);
            }
            let mut input = json!({"createWorkspace": ws, "trigger": manual_trigger()});
            if let Some(k) = key_arn {
                input["keyArn"] = json!(k);
            }
            if let Some(n) = display_name {
                input["displayName"] = json!(n);
            }
            create_workspace::run(json_out, input, yes, &target).await
        }
        Command::Status { workspace, target } => {
            let sdk = sdk().await;
            let d = target.resolve(&sdk, false).await?;
            status(json_out, workspace.as_deref(), d.table()?, &sdk).await
        }
        Command::List { status, target } => {
            // Bad input is refused before any AWS call.
            let filter: Option<Status> = status
                .map(|s| s.to_ascii_uppercase().parse())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let sdk = sdk().await;
            let d = target.resolve(&sdk, false).await?;
            list(json_out, filter, d.table()?, &sdk).await
        }
        Command::Preflight {
            stack,
            resources,
            delivery_timeout,
        } => {
            let opts = preflight::Options {
                stack,
                resources,
                delivery_timeout: Duration::from_secs(delivery_timeout),
            };
            preflight::run(json_out, opts, &sdk().await).await
        }
        Command::Report {
            format,
            output,
            geo,
            target,
            mut admin,
        } => {
            let geo: Geo = geo.parse().map_err(anyhow::Error::msg)?;
            // The report judges policies by Claude Platform's rules and reads
            // the organization: on the other platform it would mislead.
            if admin.platform.is_on_aws() {
                bail!(
                    "cmekctl report does not support claude-platform-on-aws yet; `cmekctl doctor --platform claude-platform-on-aws` checks one key"
                );
            }
            let sdk = sdk().await;
            let d = target.resolve(&sdk, false).await?;
            admin.or_from_stack(&d);
            let table = d.table()?;
            let admin = admin.client(&sdk).await?;
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            let sources = report::Sources {
                sdk: &sdk,
                store: &store,
                table,
                admin: &admin,
                geo,
            };
            let r = report::gather(&sources).await?;
            let text = report::render::render(&r, format)?;
            match &output {
                Some(path) => {
                    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
                    if !json_out {
                        eprintln!(
                            "{}: {} workspaces, {} encrypted, {} not, {} needing attention",
                            path.display(),
                            r.summary.workspaces,
                            r.summary.encrypted,
                            r.summary.not_encrypted,
                            r.summary.needing_attention
                        );
                    }
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        Command::Onboard {
            workspaces_file,
            all_unattached: _, // implied when no file is given (clap enforces one of the two)
            concurrency,
            rpm,
            yes,
            target,
            mut admin,
        } => {
            let sdk = sdk().await;
            let d = target.resolve(&sdk, true).await?;
            admin.or_from_stack(&d);
            let checked = admin.configured();
            let (workspaces, decided) = match workspaces_file {
                Some(path) => {
                    let ids = onboard::read_ids(
                        &std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    )?;
                    if checked {
                        onboard::preflight(&admin.client(&sdk).await?, ids).await?
                    } else {
                        eprintln!(
                            "note: no admin key (ANTHROPIC_ADMIN_KEY or --admin-key-secret-arn): the batch is not read back from the Admin API first; each execution checks its workspace"
                        );
                        (ids, Default::default())
                    }
                }
                None => (
                    admin
                        .client(&sdk)
                        .await?
                        .list_workspaces(false, false)
                        .await?
                        .into_iter()
                        .filter(|w| w.external_key_id.is_none())
                        .map(|w| w.id.parse())
                        .collect::<Result<_, _>>()?,
                    Default::default(),
                ),
            };
            let plan = onboard::Plan {
                workspaces,
                concurrency,
                rpm,
                state_machine: d.state_machine_arn()?.to_owned(),
                table: d.table()?.to_owned(),
                checked,
            };
            if !yes {
                let ids: Vec<String> = plan.workspaces.iter().map(ToString::to_string).collect();
                let skipped: Vec<Value> = decided
                    .iter()
                    .map(|(ws, o)| json!({"workspace": ws, "outcome": format!("{o:?}")}))
                    .collect();
                if json_out {
                    println!(
                        "{}",
                        json!({"plan": ids, "skipped": skipped, "started": false, "attachLocks": cmek::lifecycle::ATTACH_LOCKS})
                    );
                } else {
                    for id in &ids {
                        println!("{id}");
                    }
                    for (ws, o) in &decided {
                        println!("{ws}  skipped: {o:?}");
                    }
                    println!("{}", cmek::lifecycle::ATTACH_LOCKS);
                    println!(
                        "The organization's Default Workspace is never part of a batch: {} Provision it on its own with cmekctl provision <id> --default-workspace.",
                        cmek::lifecycle::DEFAULT_WORKSPACE_LOCKS
                    );
                    println!(
                        "{} workspace(s) would be provisioned ({}); attaching is irreversible",
                        ids.len(),
                        match plan.rpm {
                            Some(r) => format!(
                                "at most {} at a time, paced for {r} requests/minute",
                                plan.concurrency
                            ),
                            None => format!(
                                "at most {} at a time, paced to the Admin API's rate limit as it is found",
                                plan.concurrency
                            ),
                        }
                    );
                }
                if plan.workspaces.is_empty() {
                    return Ok(0);
                }
                if !confirm::confirmed(json_out, "Start these provisionings?")? {
                    return Ok(confirm::NOT_STARTED);
                }
            }
            onboard::run(json_out, plan, decided, &sdk).await
        }
    }
}

async fn sdk() -> aws_config::SdkConfig {
    cmek::aws::sdk_config().await
}

async fn doctor(
    json_out: bool,
    key_arn: &str,
    workspace: &str,
    validate: bool,
    admin: &AdminArgs,
) -> anyhow::Result<i32> {
    let arn: KeyArn = key_arn.parse()?;
    let ws: WorkspaceId = workspace.parse()?;
    let sdk = sdk().await;
    let on_aws = admin.platform.is_on_aws();
    if on_aws && validate {
        bail!(
            "--validate: Claude Platform on AWS has no validate call (attaching validates); the check below is what it asks of the policy"
        );
    }
    let admin = admin.client(&sdk).await?;
    let w = admin.get_workspace(&ws).await.context("reading the workspace")?;
    let compartment: CompartmentId = w
        .compartment_id
        .as_deref()
        .context("the workspace has no compartment_id")?
        .parse()?;
    let kms_conf = aws_sdk_kms::config::Builder::from(&sdk)
        .region(aws_sdk_kms::config::Region::new(arn.region().to_string()))
        .build();
    let kms = cmek::kms::KeyManager::new(aws_sdk_kms::Client::from_conf(kms_conf));
    let mut validation = Value::Null;
    if validate {
        let keys = admin.list_external_keys().await?;
        match keys.iter().find(|k| k.kms_arn() == Some(arn.as_str())) {
            Some(k) => {
                let v = admin.validate_external_key(&k.id.parse()?).await?;
                validation = json!({"externalKeyId": k.id, "status": v.status, "error": v.error_text()});
            }
            None => validation = json!({"status": "not registered"}),
        }
    }
    let last = validation.get("error").and_then(Value::as_str).map(str::to_owned);
    let (org, d) = if on_aws {
        let region = AdminArgs::region(&sdk)?;
        let ws_arn = cmek::platform::workspace_arn(&region, arn.account(), &ws);
        let info = kms.describe(arn.as_str()).await?;
        let d =
            cmek::workflow::diagnose_on_aws(&kms, &arn, info.as_ref(), compartment, &ws_arn, &region, last)
                .await?;
        (None, d)
    } else {
        let org = admin
            .organization_uuid()
            .await
            .context("reading the organization (GET /v1/organizations/me)")?;
        let d = cmek::workflow::diagnose_key(&kms, Geo::Us, &arn, compartment, Some(&org), last).await?;
        (Some(org), d)
    };
    let healthy = d.cause == "LIKELY_RCP_OR_PROPAGATION" && d.findings.is_empty();
    if json_out {
        println!(
            "{}",
            json!({"workspace": ws, "compartmentId": compartment, "orgUuid": org, "attachedTo": w.external_key_id, "diagnosis": d, "validation": validation, "healthy": healthy})
        );
    } else {
        println!(
            "workspace {ws}  compartment {compartment}  attached to {}",
            w.external_key_id.as_deref().unwrap_or("nothing")
        );
        println!("key       {arn}");
        match &org {
            Some(org) => println!("org       {org}"),
            None => println!(
                "platform  Claude Platform on AWS (the service principal, no organization condition)"
            ),
        }
        if let Some(contract) = d.contract {
            println!(
                "policy    follows the {} contract{}",
                serde_json::to_value(contract)?.as_str().unwrap_or("?"),
                if contract == cmek::policy::ContractGeneration::Current {
                    ""
                } else {
                    " (re-run provisioning with manageKeyPolicy to upgrade it, keeping every attached workspace's access)"
                }
            );
        }
        if !validation.is_null() {
            println!("validate  {}", validation);
        }
        if healthy {
            println!(
                "\n✓ the key is enabled, in a served Region, and its policy is exactly as documented for this workspace"
            );
        } else {
            println!("\n{}: {}\n  fix: {}", d.cause, d.summary, d.fix);
        }
        for f in &d.findings {
            println!(
                "\n[{:?}] {:?}\n  {}\n  fix: {}",
                f.severity, f.code, f.message, f.fix
            );
        }
    }
    Ok(if healthy { 0 } else { 1 })
}

/// What `cmekctl provision` asks for besides the workspace.
struct ProvisionArgs {
    key_arn: Option<String>,
    display_name: Option<String>,
    default_workspace: bool,
    yes: bool,
}

async fn provision(
    json_out: bool,
    workspace: &str,
    args: ProvisionArgs,
    target: &StackArgs,
) -> anyhow::Result<i32> {
    let mut input = json!({"workspaceId": workspace, "trigger": manual_trigger()});
    if let Some(k) = args.key_arn {
        input["keyArn"] = json!(k);
    }
    if let Some(n) = args.display_name {
        input["displayName"] = json!(n);
    }
    if args.default_workspace {
        input["defaultWorkspace"] = json!(true);
    }
    // Refuse bad input here too, before any execution exists.
    let request = cmek::workflow::ProvisionRequest::from_value(&input)?;
    let sdk = sdk().await;
    let deployment = target.resolve(&sdk, true).await?;
    let (state_machine, table) = (deployment.state_machine_arn()?, deployment.table()?);
    // The plan, with what the attach at the end will lock, said before it starts.
    let key = match &request.key_arn {
        Some(arn) => format!("the existing key {arn} (its policy is checked first)"),
        None => "a new KMS key, created for this workspace with the documented key policy".to_owned(),
    };
    let locks = if args.default_workspace {
        format!(
            "{} {}",
            cmek::lifecycle::ATTACH_LOCKS,
            cmek::lifecycle::DEFAULT_WORKSPACE_LOCKS
        )
    } else {
        cmek::lifecycle::ATTACH_LOCKS.to_owned()
    };
    if !args.yes {
        if json_out {
            println!(
                "{}",
                json!({"plan": {"workspace": request.workspace_id, "key": key, "stateMachine": state_machine, "attachLocks": locks}, "started": false})
            );
        } else {
            println!("Plan: encrypt workspace {} with {key}", request.workspace_id);
            println!("  through {state_machine}");
            println!("  {locks}");
        }
        if !confirm::confirmed(json_out, "Start this provisioning?")? {
            return Ok(confirm::NOT_STARTED);
        }
    } else if !json_out {
        println!("{locks}");
    }
    let name = format!("cmekctl-{}-{}", request.workspace_id, std::process::id());
    let (d, retries, t0) = start_and_follow(json_out, &sdk, state_machine, &name, &input).await?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let rec = store.load(&request.workspace_id).await?;
    let ok = d.status().as_str() == "SUCCEEDED";
    if json_out {
        println!(
            "{}",
            json!({"execution": d.execution_arn(), "status": d.status().as_str(), "seconds": t0.elapsed().as_secs_f64(), "failedAttempts": retries, "record": rec})
        );
    } else if ok {
        println!(
            "✓ attached in {:.1}s: key {}",
            t0.elapsed().as_secs_f64(),
            rec.as_ref()
                .and_then(|r| r.key_arn.as_ref())
                .map(ToString::to_string)
                .unwrap_or_default()
        );
    } else {
        println!(
            "✗ {} after {:.1}s",
            d.status().as_str(),
            t0.elapsed().as_secs_f64()
        );
        // A request refused before anything was recorded has only
        // the execution's own error and cause to say why.
        if rec.as_ref().is_none_or(|r| r.last_error.is_none())
            && let Some(error) = d.error()
        {
            println!("  {error}: {}", d.cause().unwrap_or_default());
        }
        if let Some(r) = &rec {
            if let Some(e) = &r.last_error {
                println!("  error: {e}");
            }
            if let Some(dg) = &r.diagnosis {
                println!(
                    "  diagnosis {}: {}\n  fix: {}",
                    dg["cause"], dg["summary"], dg["fix"]
                );
            }
        }
    }
    Ok(if ok { 0 } else { 1 })
}

/// Who started an execution by hand, for its record.
fn manual_trigger() -> serde_json::Value {
    json!({"source": "manual", "user": std::env::var("USER").unwrap_or_default(), "tool": "cmekctl"})
}

/// Start an execution named `name` with `input`, say so (unless `--json`),
/// and [`follow`] it to its end.
async fn start_and_follow(
    json_out: bool,
    sdk: &aws_config::SdkConfig,
    state_machine: &str,
    name: &str,
    input: &Value,
) -> anyhow::Result<Followed> {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let arn = sfn
        .start_execution()
        .state_machine_arn(state_machine)
        .name(name)
        .input(input.to_string())
        .send()
        .await?
        .execution_arn()
        .to_owned();
    if !json_out {
        println!("started {arn}");
    }
    follow(json_out, &sfn, &arn).await
}

/// How a followed execution ended: its description, the failed attempts
/// seen, and when following began.
type Followed = (
    aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput,
    u32,
    Instant,
);

/// Print each state an execution enters (and each failed attempt, which a
/// retry or catch follows) until it ends ([`Followed`]).
async fn follow(json_out: bool, sfn: &aws_sdk_sfn::Client, arn: &str) -> anyhow::Result<Followed> {
    let t0 = Instant::now();
    let mut seen = 0;
    let mut retries = 0;
    loop {
        let events = cmek::aws::execution_history(sfn, arn).await?;
        for e in events.iter().skip(seen) {
            let at = t0.elapsed().as_secs_f64();
            if let Some(d) = e.state_entered_event_details()
                && !json_out
            {
                println!("[{at:6.1}s] {}", d.name());
            }
            if let Some(d) = e.lambda_function_failed_event_details() {
                retries += 1;
                if !json_out {
                    println!(
                        "[{at:6.1}s]   ✗ {} (retry/catch follows)",
                        d.error().unwrap_or_default()
                    );
                }
            }
        }
        seen = events.len();
        let d = sfn.describe_execution().execution_arn(arn).send().await?;
        if d.status().as_str() != "RUNNING" {
            return Ok((d, retries, t0));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn status(
    json_out: bool,
    workspace: Option<&str>,
    table: &str,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<i32> {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table);
    let Some(ws) = workspace else {
        let all = store.list(None).await?;
        let mut counts = std::collections::BTreeMap::new();
        for r in &all {
            *counts.entry(r.status.to_string()).or_insert(0usize) += 1;
        }
        if json_out {
            println!("{}", json!({"total": all.len(), "byStatus": counts}));
        } else {
            println!("{} workspaces", all.len());
            for (s, n) in counts {
                println!("  {s:<12} {n}");
            }
        }
        return Ok(0);
    };
    let ws: WorkspaceId = ws.parse()?;
    let Some(rec) = store.load(&ws).await? else {
        if json_out {
            println!("{}", json!({"workspace": ws, "record": null}));
        } else {
            println!("{ws}: no workflow record");
        }
        return Ok(1);
    };
    let events = store.events(&ws).await?;
    let guardian: Vec<_> = events.iter().filter(|e| e.step == "Guardian").collect();
    if json_out {
        println!(
            "{}",
            json!({"record": rec, "events": events, "guardianFindings": guardian})
        );
        return Ok(0);
    }
    println!("{ws}  {}", rec.status);
    for (k, v) in [
        ("compartment", rec.compartment_id.map(|c| c.to_string())),
        ("key", rec.key_arn.as_ref().map(ToString::to_string)),
        ("alias", rec.alias.clone()),
        (
            "external key",
            rec.external_key_id.as_ref().map(ToString::to_string),
        ),
        (
            "lease",
            rec.lease
                .as_ref()
                .map(|l| format!("{} until {}", l.owner, l.expires_at)),
        ),
        ("last error", rec.last_error.clone()),
    ] {
        if let Some(v) = v {
            println!("  {k:<13} {v}");
        }
    }
    if let Some(d) = &rec.diagnosis {
        println!(
            "  diagnosis     {}: {}",
            d["cause"].as_str().unwrap_or("?"),
            d["summary"].as_str().unwrap_or("")
        );
    }
    if !guardian.is_empty() {
        println!("\nkey guardian:");
        for e in &guardian {
            println!("  {}  {:<20} {}", e.at, e.outcome, e.detail);
        }
    }
    println!("\naudit trail:");
    for e in &events {
        println!(
            "  {}  {:<12} {:<22} {}",
            e.at,
            e.step,
            e.outcome,
            e.execution.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}

async fn list(
    json_out: bool,
    filter: Option<Status>,
    table: &str,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<i32> {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table);
    let all = store.list(filter).await?;
    if json_out {
        println!("{}", serde_json::to_string(&all)?);
    } else {
        for r in &all {
            println!(
                "{}  {:<12} {}  {}",
                r.workspace_id,
                r.status,
                r.key_arn.as_deref().unwrap_or("-"),
                r.last_error.as_deref().unwrap_or("")
            );
        }
        println!("{} workspace(s)", all.len());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Arguments without help text and commands without a description, by path.
    fn missing_help(cmd: &clap::Command, path: &str) -> Vec<String> {
        let mut missing = Vec::new();
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path}: argument {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_name() != "help" {
                missing.push(format!("{path}: no description"));
            }
            missing.extend(missing_help(sub, &path));
        }
        missing
    }

    /// Every argument of every command says what it is in `--help`, and
    /// every command what it does.
    #[test]
    fn every_argument_and_command_has_help() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let missing = missing_help(&cmd, "cmekctl");
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }

    /// The check sees a bare argument and a command without a description.
    #[test]
    fn the_help_check_sees_what_is_missing() {
        let cmd = clap::Command::new("x").subcommand(
            clap::Command::new("sub")
                .arg(clap::Arg::new("bare").long("bare"))
                .arg(clap::Arg::new("said").long("said").help("said")),
        );
        assert_eq!(
            missing_help(&cmd, "x"),
            ["x sub: no description", "x sub: argument bare"]
        );
    }
}
