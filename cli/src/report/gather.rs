//! Reading what the report shows: the Admin API (GETs only), the workflow
//! table, and KMS in each key's Region.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context;
use cmek::admin_api::{AdminApiClient, Workspace};
use cmek::geo::Geo;
use cmek::ids::{KeyArn, OrgUuid};
use cmek::kms::KeyManager;
use cmek::store::{AuditEvent, Status, WorkflowRecord, WorkflowStore};

use super::{GuardianFinding, Inputs, KeyHealth, PolicyFinding, Report, UnusedKey, Validation, WorkspaceRow};

/// Where the report reads from.
#[derive(Debug)]
pub struct Sources<'a> {
    pub sdk: &'a aws_config::SdkConfig,
    pub store: &'a dyn WorkflowStore,
    pub table: &'a str,
    pub admin: &'a AdminApiClient,
    pub geo: Geo,
}

/// Read everything and build the report.
pub async fn gather(src: &Sources<'_>) -> anyhow::Result<Report> {
    let generated_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut reads: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = |source: &str, n: u64| *reads.entry(source.to_owned()).or_default() += n;

    let org = src
        .admin
        .organization_uuid()
        .await
        .context("reading the organization (GET /v1/organizations/me)")?;
    let listed = src
        .admin
        .list_workspaces(true, true)
        .await
        .context("listing the organization's workspaces")?;
    let registered = src
        .admin
        .list_external_keys()
        .await
        .context("listing the organization's registered keys")?;
    count("Admin API GET (organization, workspaces, external keys)", 3);
    let arn_of: HashMap<&str, &str> = registered
        .iter()
        .filter_map(|k| Some((k.id.as_str(), k.kms_arn()?)))
        .collect();
    let records: BTreeMap<String, WorkflowRecord> = src
        .store
        .list(None)
        .await
        .context("reading the workflow table")?
        .into_iter()
        .map(|r| (r.workspace_id.to_string(), r))
        .collect();
    count("DynamoDB Scan (workflow records)", 1);

    let mut kms = KmsReader::new(src.sdk);
    let mut rows = Vec::new();
    let listed_ids: BTreeSet<&str> = listed.iter().map(|w| w.id.as_str()).collect();
    let unlisted = records.keys().filter(|id| !listed_ids.contains(id.as_str()));
    let subjects: Vec<(String, Option<&Workspace>)> = listed
        .iter()
        .map(|w| (w.id.clone(), Some(w)))
        .chain(unlisted.map(|id| (id.clone(), None)))
        .collect();
    for (id, listed) in subjects {
        let record = records.get(&id);
        let events = match record {
            Some(r) => {
                count("DynamoDB Query (audit trails)", 1);
                src.store
                    .events(&r.workspace_id)
                    .await
                    .with_context(|| format!("reading the audit trail of {id}"))?
            }
            None => Vec::new(),
        };
        let attached_ekey = listed.and_then(|w| w.external_key_id.clone());
        let key_arn: Option<String> = attached_ekey
            .as_deref()
            .and_then(|e| arn_of.get(e).map(|a| (*a).to_owned()))
            .or_else(|| record.and_then(|r| r.key_arn.as_ref().map(ToString::to_string)));
        let compartment = listed
            .and_then(|w| w.compartment_id.clone())
            .or_else(|| record.and_then(|r| r.compartment_id.map(|c| c.to_string())));
        let key = match &key_arn {
            Some(arn) => Some(kms.health(arn, compartment.as_deref(), &org, src.geo).await),
            None => None,
        };
        rows.push(row(
            &id,
            listed,
            record,
            events,
            attached_ekey,
            key_arn,
            compartment,
            key,
        ));
    }
    count("KMS (DescribeKey, GetKeyRotationStatus, GetKeyPolicy)", kms.calls);

    let in_use: BTreeSet<&str> = listed
        .iter()
        .filter_map(|w| arn_of.get(w.external_key_id.as_deref()?).copied())
        .collect();
    let keys_attached_to_nothing = records
        .values()
        .filter_map(|r| {
            let arn = r.key_arn.as_ref()?.to_string();
            (!in_use.contains(arn.as_str())).then(|| UnusedKey {
                external_key_id: r.external_key_id.as_ref().map(ToString::to_string),
                made_for: r.workspace_id.to_string(),
                workflow_status: r.status.to_string(),
                key_arn: arn,
            })
        })
        .collect();

    let mut report = Report {
        generated_at,
        inputs: Inputs {
            workflow_table: src.table.to_owned(),
            aws_region: src.sdk.region().map(ToString::to_string).unwrap_or_default(),
            admin_api: src.admin.base_url().to_string(),
            organization: org.to_string(),
            kms_regions: kms.clients.keys().cloned().collect(),
            geo: src.geo.to_string(),
            reads,
        },
        summary: Default::default(),
        workspaces: rows,
        keys_attached_to_nothing,
    };
    report.summarize();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    listed: Option<&Workspace>,
    record: Option<&WorkflowRecord>,
    events: Vec<AuditEvent>,
    attached_ekey: Option<String>,
    key_arn: Option<String>,
    compartment: Option<String>,
    key: Option<KeyHealth>,
) -> WorkspaceRow {
    let status = record.map(|r| r.status);
    let state = match (listed, &attached_ekey, status) {
        (None, _, _) => "NOT_LISTED",
        (_, Some(_), _) => "ENCRYPTED",
        (_, None, Some(Status::Failed)) => "FAILED",
        (_, None, Some(Status::Pending | Status::KeyCreated | Status::Registered | Status::Validated)) => {
            "IN_PROGRESS"
        }
        _ => "NOT_ENCRYPTED",
    };
    let find = |step: &str, outcome: &str| {
        events
            .iter()
            .rev()
            .find(|e| e.step == step && e.outcome == outcome)
    };
    let attach = find("AttachKey", "attached");
    let validations = events
        .iter()
        .filter_map(|e| match (e.step.as_str(), e.outcome.as_str()) {
            ("ValidateKey", outcome) => Some(Validation {
                at: e.at.clone(),
                by: "workflow".into(),
                outcome: outcome.into(),
            }),
            ("Guardian", "sweep_findings")
                if e.detail["codes"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == "VALIDATION_FAILING")) =>
            {
                Some(Validation {
                    at: e.at.clone(),
                    by: "weekly validation sweep".into(),
                    outcome: "validation_failing".into(),
                })
            }
            _ => None,
        })
        .collect();
    let guardian: Vec<GuardianFinding> = events
        .iter()
        .filter(|e| e.step == "Guardian")
        .map(|e| GuardianFinding {
            at: e.at.clone(),
            finding: e.outcome.clone(),
            actor: e.detail["actor"].as_str().map(str::to_owned),
            resolved: resolved(&e.outcome, key.as_ref()),
        })
        .collect();
    let mut attention = Vec::new();
    let archived = listed.is_some_and(Workspace::is_archived);
    match state {
        "FAILED" => attention.push(format!(
            "provisioning failed: {}",
            record
                .and_then(|r| r.last_error.clone())
                .unwrap_or_else(|| "no error recorded".into())
        )),
        "NOT_LISTED" => attention.push("in the workflow table, but the organization does not list it".into()),
        "NOT_ENCRYPTED" if status == Some(Status::Attached) => {
            attention.push("the workflow table says ATTACHED, but the Admin API shows no key attached".into())
        }
        "NOT_ENCRYPTED" if !archived => attention.push("not encrypted with a customer-managed key".into()),
        _ => {}
    }
    if let Some(k) = &key {
        if let Some(e) = &k.error {
            attention.push(format!("the key could not be read: {e}"));
        } else if state == "ENCRYPTED" {
            if !k.policy_healthy {
                attention.push(format!("{}: {}", k.policy_cause, k.policy_summary));
            }
            if k.rotation_enabled == Some(false) {
                attention.push("automatic rotation is off".into());
            }
        }
    }
    let open = guardian.iter().filter(|g| g.resolved == Some(false)).count();
    if open > 0 {
        attention.push(format!("{open} guardian finding(s) still hold"));
    }
    WorkspaceRow {
        workspace_id: id.to_owned(),
        name: listed.map(|w| w.name.clone()).unwrap_or_default(),
        archived,
        state: state.into(),
        compartment_id: compartment,
        workflow_status: status.map(|s| s.to_string()),
        external_key_id: attached_ekey,
        key_arn,
        alias: record.and_then(|r| r.alias.clone()),
        key_region: record.and_then(|r| r.key_region.clone()),
        attached_since: attach.map(|e| e.at.clone()),
        provisioned_by: record.and_then(|r| r.trigger.clone()),
        execution: attach.and_then(|e| e.execution.clone()),
        validations,
        key,
        guardian,
        last_error: record.and_then(|r| r.last_error.clone()),
        attention,
        audit_trail: events,
    }
}

/// Whether what a guardian finding found is gone now, judged from KMS as
/// the report read it (`None`: nothing to resolve, or the key unreadable).
fn resolved(finding: &str, key: Option<&KeyHealth>) -> Option<bool> {
    let key = key.filter(|k| k.error.is_none())?;
    match finding {
        "key_disabled" => Some(key.state.as_deref() != Some("Disabled")),
        "rotation_disabled" => key.rotation_enabled,
        "deletion_scheduled" => Some(key.state.as_deref() != Some("PendingDeletion")),
        "policy_broken" | "policy_over_permissive" | "policy_changed" | "sweep_findings" => {
            Some(key.policy_healthy)
        }
        // A failed attempt changed nothing; re-enabling, cancelling a
        // deletion and other changes are news, not findings.
        _ => None,
    }
}

/// KMS, one client per Region, each read counted.
struct KmsReader<'a> {
    sdk: &'a aws_config::SdkConfig,
    clients: BTreeMap<String, KeyManager>,
    calls: u64,
}

impl<'a> KmsReader<'a> {
    fn new(sdk: &'a aws_config::SdkConfig) -> Self {
        Self {
            sdk,
            clients: BTreeMap::new(),
            calls: 0,
        }
    }

    fn client(&mut self, region: &str) -> &KeyManager {
        self.clients.entry(region.to_owned()).or_insert_with(|| {
            let conf = aws_sdk_kms::config::Builder::from(self.sdk)
                .region(aws_sdk_kms::config::Region::new(region.to_owned()))
                .build();
            KeyManager::new(aws_sdk_kms::Client::from_conf(conf))
        })
    }

    /// The key's state, rotation and policy analysis for the workspace's
    /// compartment; a failed read is named in `error`, never fatal.
    async fn health(&mut self, arn: &str, compartment: Option<&str>, org: &OrgUuid, geo: Geo) -> KeyHealth {
        let mut health = KeyHealth {
            state: None,
            rotation_enabled: None,
            multi_region: None,
            policy_healthy: false,
            policy_cause: String::new(),
            policy_summary: String::new(),
            policy_findings: Vec::new(),
            contract: None,
            error: None,
        };
        let parsed: Result<KeyArn, _> = arn.parse();
        let Ok(key_arn) = parsed else {
            health.error = Some(format!("{arn} is not a KMS key ARN"));
            return health;
        };
        let region = key_arn.region().to_owned();
        // One DescribeKey, its answer shared with the diagnosis.
        self.calls += 2;
        let kms = self.client(&region);
        let info = match kms.describe(arn).await {
            Ok(info) => info,
            Err(e) => {
                health.error = Some(format!("DescribeKey: {e}"));
                None
            }
        };
        let described = health.error.is_none();
        match &info {
            Some(info) => {
                health.state = Some(info.state.as_str().to_owned());
                health.multi_region = Some(info.multi_region);
            }
            None if described => {
                health.error = Some("the key does not exist (or cannot be described)".into());
            }
            None => {}
        }
        match kms.rotation_enabled(arn).await {
            Ok(on) => health.rotation_enabled = Some(on),
            Err(e) if health.error.is_none() => health.error = Some(format!("GetKeyRotationStatus: {e}")),
            Err(_) => {}
        }
        let compartment = compartment.and_then(|c| c.parse().ok());
        let Some(compartment) = compartment else {
            health.policy_cause = "NO_COMPARTMENT".into();
            health.policy_summary = "the workspace has no compartment id to analyse the policy for".into();
            return health;
        };
        if !described {
            return health;
        }
        let diagnosis = cmek::workflow::diagnose_described(
            kms,
            geo,
            &key_arn,
            info.as_ref(),
            compartment,
            Some(org),
            None,
        )
        .await;
        match diagnosis {
            Ok(d) => {
                // The diagnosis reads the policy unless the key is unusable
                // or in a Region Anthropic does not serve.
                if !matches!(d.cause.as_str(), "REGION_MISMATCH" | "KEY_NOT_ENABLED") {
                    self.calls += 1;
                }
                health.policy_healthy = d.cause == "LIKELY_RCP_OR_PROPAGATION" && d.findings.is_empty();
                health.policy_cause = d.cause;
                health.policy_summary = d.summary;
                health.contract = d
                    .contract
                    .and_then(|c| serde_json::to_value(c).ok())
                    .and_then(|v| v.as_str().map(str::to_owned));
                health.policy_findings = d
                    .findings
                    .iter()
                    .map(|f| PolicyFinding {
                        code: serde_json::to_value(f.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| format!("{:?}", f.code)),
                        severity: format!("{:?}", f.severity),
                        message: f.message.clone(),
                    })
                    .collect();
            }
            Err(e) => {
                self.calls += 1;
                if health.error.is_none() {
                    health.error = Some(format!("reading the key policy: {e}"));
                }
            }
        }
        health
    }
}
