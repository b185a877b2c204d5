//! The key guardian: once a workspace is attached, the only ways to lose it
//! are its key being deleted (after the 7–30-day waiting period) or its
//! policy no longer granting Anthropic's role. The guardian watches KMS
//! management events (CloudTrail, through EventBridge) for keys in the
//! workflow table and sweeps every attached workspace on a schedule.
//!
//! It makes exactly one kind of KMS write: cancelling a scheduled deletion of
//! a key this project created (and restoring the key's previous enabled
//! state). Everything else — a disabled key above all, which is the customer's
//! legitimate way to revoke Anthropic's access — is alert-only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::CmekError;
use crate::ids::{KeyArn, WorkspaceId};
use crate::kms::{TAG_MANAGED_BY, TAG_MANAGED_BY_VALUE};
use crate::policy::{self, AnalysisTarget, Severity as PolicySeverity};
use crate::store::{self, AuditEvent, Status, WorkflowRecord};
use crate::workflow::Deps;

pub const ALERT_DETAIL_TYPE: &str = "CMEK Key Alert";
pub const SWEEP_DETAIL_TYPE: &str = "CMEK Key Sweep Completed";
pub const CANCEL_DELETION_VAR: &str = "CMEK_GUARDIAN_CANCEL_DELETION";

/// The KMS management events the guardian acts on; the template's rule
/// matches exactly these (a test compares the two). Everything else about a
/// key — above all Anthropic's own Encrypt/Decrypt calls, including the four
/// access-denied probes each validation makes — is not the guardian's business.
pub const WATCHED_EVENTS: &[&str] = &[
    "ScheduleKeyDeletion",
    "DisableKey",
    "EnableKey",
    "CancelKeyDeletion",
    "PutKeyPolicy",
    "DisableKeyRotation",
    "EnableKeyRotation",
    "CreateGrant",
    "RetireGrant",
    "RevokeGrant",
];

/// The input the weekly validation sweep's schedule sends (see the template's
/// `ValidationSweepSchedule`).
pub const VALIDATION_SWEEP_INPUT: &str = "validation-sweep";
pub const ALERT_TOPIC_VAR: &str = "CMEK_ALERT_TOPIC_ARN";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    Medium,
    High,
    Critical,
}

/// One thing the guardian found about one key, for every workspace on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub severity: Severity,
    /// e.g. `KEY_DELETION_SCHEDULED`, `KEY_DISABLED`, `POLICY_BROKEN`.
    pub code: String,
    pub key_arn: String,
    pub workspaces: Vec<String>,
    pub message: String,
    #[serde(default)]
    pub detail: Value,
}

/// Where alerts go: SNS (people) and the project's bus (automation).
#[derive(Debug, Clone)]
pub struct Alerter {
    sns: Option<(aws_sdk_sns::Client, String)>,
}

impl Alerter {
    pub fn new(sns: Option<(aws_sdk_sns::Client, String)>) -> Self {
        Self { sns }
    }

    /// SNS from `CMEK_ALERT_TOPIC_ARN`, when set.
    pub async fn from_env() -> Self {
        match std::env::var(ALERT_TOPIC_VAR)
            .ok()
            .filter(|t| t.starts_with("arn:"))
        {
            Some(topic) => Self::new(Some((
                crate::aws::sns_client(&crate::aws::sdk_config().await),
                topic,
            ))),
            None => Self::new(None),
        }
    }

    async fn notify(&self, deps: &Deps, alert: &Alert) -> Result<(), CmekError> {
        if let Some(bus) = &deps.events {
            bus.publish(
                ALERT_DETAIL_TYPE,
                &serde_json::to_value(alert).unwrap_or_default(),
            )
            .await?;
        }
        if alert.severity >= Severity::High
            && let Some((sns, topic)) = &self.sns
        {
            let subject = format!("[cmek-provisioner] {:?}: {}", alert.severity, alert.code);
            let body = format!(
                "{}\n\nKey: {}\nAffected workspaces: {}\n\nDetails: {}",
                alert.message,
                alert.key_arn,
                alert.workspaces.join(", "),
                serde_json::to_string_pretty(&alert.detail).unwrap_or_default()
            );
            sns.publish()
                .topic_arn(topic)
                .subject(subject.chars().take(100).collect::<String>())
                .message(body)
                .send()
                .await
                .map_err(|e| crate::aws::classify("sns", "Publish", &e))?;
        }
        Ok(())
    }
}

/// The guardian's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardianConfig {
    /// Cancel a scheduled deletion of a key this project created (default on).
    pub cancel_deletion: bool,
}

impl GuardianConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CmekError> {
        match get(CANCEL_DELETION_VAR).as_deref().map(str::trim) {
            None | Some("") | Some("true") => Ok(Self {
                cancel_deletion: true,
            }),
            Some("false") => Ok(Self {
                cancel_deletion: false,
            }),
            Some(other) => Err(CmekError::Configuration(format!(
                "{CANCEL_DELETION_VAR} must be true or false, got {other:?}"
            ))),
        }
    }
}

/// The Lambda entry point: a CloudTrail KMS event or the sweep schedule.
pub async fn handle(
    deps: &Deps,
    alerter: &Alerter,
    config: GuardianConfig,
    event: Value,
) -> Result<Value, CmekError> {
    if event.get("sweep").and_then(Value::as_str) == Some(VALIDATION_SWEEP_INPUT) {
        return sweep(deps, alerter, SweepKind::WithValidation)
            .await
            .map(|r| serde_json::to_value(r).unwrap_or_default());
    }
    match event.get("detail-type").and_then(Value::as_str) {
        Some("AWS API Call via CloudTrail") => watch(deps, alerter, config, &event).await,
        Some("Scheduled Event") => sweep(deps, alerter, SweepKind::KeysAndPolicies)
            .await
            .map(|r| serde_json::to_value(r).unwrap_or_default()),
        other => Err(CmekError::InvalidInput(format!(
            "expected a CloudTrail KMS event, the sweep schedule or {{\"sweep\": \"{VALIDATION_SWEEP_INPUT}\"}}, got detail-type {other:?}"
        ))),
    }
}

/// The key an event is about, as an ARN.
async fn event_key(deps: &Deps, detail: &Value) -> Result<Option<String>, CmekError> {
    if let Some(arn) = detail
        .get("resources")
        .and_then(Value::as_array)
        .and_then(|r| r.iter().find_map(|x| x.get("ARN").and_then(Value::as_str)))
        .filter(|a| a.contains(":key/"))
    {
        return Ok(Some(arn.to_owned()));
    }
    let Some(id) = detail.pointer("/requestParameters/keyId").and_then(Value::as_str) else {
        return Ok(None);
    };
    if id.starts_with("arn:") && id.contains(":key/") {
        return Ok(Some(id.to_owned()));
    }
    Ok(deps.kms()?.describe(id).await?.map(|k| k.arn))
}

/// Every workflow record on `key_arn` (from DynamoDB: tags alone do not say
/// which workspaces use a key, and adopted keys carry none of ours) — one
/// index query, whatever the size of the table.
async fn records_on(deps: &Deps, key_arn: &str) -> Result<Vec<WorkflowRecord>, CmekError> {
    Ok(deps.store.by_key(key_arn).await?)
}

async fn record_on_all(
    deps: &Deps,
    records: &[WorkflowRecord],
    outcome: &str,
    detail: &Value,
) -> Result<(), CmekError> {
    for r in records {
        store::append_event(
            &*deps.store,
            &r.workspace_id,
            AuditEvent::new("Guardian", outcome, None, detail.clone()),
            deps.now(),
        )
        .await?;
    }
    Ok(())
}

async fn watch(
    deps: &Deps,
    alerter: &Alerter,
    config: GuardianConfig,
    event: &Value,
) -> Result<Value, CmekError> {
    let detail = event.get("detail").cloned().unwrap_or(Value::Null);
    let name = detail
        .get("eventName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // Before anything else, so that no other event (an access-denied
    // validation probe on Encrypt, say) is recorded or alerted on.
    if !WATCHED_EVENTS.contains(&name.as_str()) {
        return Ok(json!({"ignored": true, "why": format!("{} is not watched", crate::ids::shown(&name))}));
    }
    let Some(key_arn) = event_key(deps, &detail).await? else {
        return Ok(json!({"ignored": true, "why": "the event names no KMS key"}));
    };
    let records = records_on(deps, &key_arn).await?;
    if records.is_empty() {
        return Ok(json!({"ignored": true, "why": "not a key of cmek-provisioner", "keyArn": key_arn}));
    }
    let attached: Vec<String> = records
        .iter()
        .filter(|r| r.status == Status::Attached)
        .map(|r| r.workspace_id.to_string())
        .collect();
    let actor = detail
        .pointer("/userIdentity/arn")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let mut note =
        json!({"event": name, "actor": actor, "key_arn": key_arn, "event_id": detail.get("eventID")});
    if let Some(code) = detail.get("errorCode").and_then(Value::as_str) {
        // The call failed (often AccessDenied): nothing changed, but someone tried.
        note["error_code"] = json!(code);
        record_on_all(deps, &records, "attempt_failed", &note).await?;
        let severity = if name == "ScheduleKeyDeletion" {
            Severity::High
        } else {
            Severity::Info
        };
        let alert = Alert {
            severity,
            code: "KEY_CHANGE_ATTEMPT_FAILED".into(),
            key_arn,
            workspaces: attached,
            message: format!("{actor} tried {name} and failed ({code})"),
            detail: note,
        };
        alerter.notify(deps, &alert).await?;
        return Ok(serde_json::to_value(alert).unwrap_or_default());
    }
    let alert = match name.as_str() {
        "ScheduleKeyDeletion" => {
            on_deletion_scheduled(deps, config, &records, &key_arn, attached, &detail, note).await?
        }
        "DisableKey" => {
            record_on_all(deps, &records, "key_disabled", &note).await?;
            Alert {
                severity: if attached.is_empty() {
                    Severity::Medium
                } else {
                    Severity::High
                },
                code: "KEY_DISABLED".into(),
                message: format!(
                    "{actor} disabled the key: Anthropic loses access within about an hour and the affected workspaces stop working until it is enabled again. This is the customer's way to revoke access, so the guardian does not undo it."
                ),
                key_arn,
                workspaces: attached,
                detail: note,
            }
        }
        "PutKeyPolicy" => on_policy_changed(deps, &records, &key_arn, attached, note).await?,
        "DisableKeyRotation" => {
            record_on_all(deps, &records, "rotation_disabled", &note).await?;
            Alert {
                severity: Severity::Medium,
                code: "ROTATION_DISABLED".into(),
                message: format!("{actor} turned off automatic rotation"),
                key_arn,
                workspaces: attached,
                detail: note,
            }
        }
        "EnableKey" | "CancelKeyDeletion" | "CreateGrant" | "RetireGrant" | "RevokeGrant"
        | "EnableKeyRotation" => {
            let outcome = match name.as_str() {
                "EnableKey" => "key_enabled",
                "CancelKeyDeletion" => "deletion_cancelled",
                _ => "key_changed",
            };
            record_on_all(deps, &records, outcome, &note).await?;
            Alert {
                severity: Severity::Info,
                code: format!("KEY_{}", name.to_uppercase()),
                message: format!("{actor} called {name}"),
                key_arn,
                workspaces: attached,
                detail: note,
            }
        }
        _ => return Ok(json!({"ignored": true, "why": format!("{name} has no handler")})),
    };
    alerter.notify(deps, &alert).await?;
    tracing::warn!(code = %alert.code, severity = ?alert.severity, key_arn = %alert.key_arn, workspaces = ?alert.workspaces, "{}", alert.message);
    Ok(serde_json::to_value(alert).unwrap_or_default())
}

async fn on_deletion_scheduled(
    deps: &Deps,
    config: GuardianConfig,
    records: &[WorkflowRecord],
    key_arn: &str,
    attached: Vec<String>,
    detail: &Value,
    mut note: Value,
) -> Result<Alert, CmekError> {
    let deletion_date = detail
        .pointer("/responseElements/deletionDate")
        .cloned()
        .unwrap_or(Value::Null);
    note["deletion_date"] = deletion_date.clone();
    let kms = deps.kms()?;
    let tagged = kms
        .tags(key_arn)
        .await?
        .iter()
        .any(|(k, v)| k == TAG_MANAGED_BY && v == TAG_MANAGED_BY_VALUE);
    let mut action = "not cancelled: automatic cancellation is turned off".to_owned();
    let mut cancelled = false;
    if config.cancel_deletion && !attached.is_empty() {
        if !tagged {
            action = "not cancelled: the key was not created by cmek-provisioner (no cmek:managed-by tag), so the guardian may not touch it; cancel it yourself".into();
        } else {
            // Whether the key was disabled before the deletion was scheduled:
            // the latest disable/enable the guardian saw for it.
            let was_disabled = was_disabled_before(deps, records).await?;
            // By key id: KMS takes either, moto only the id.
            let key_id = key_arn.rsplit('/').next().unwrap_or(key_arn);
            kms.cancel_key_deletion(key_id).await?;
            cancelled = true;
            if was_disabled {
                action = "deletion cancelled; the key stays disabled, as it was before".into();
            } else {
                kms.enable_key(key_id).await?;
                action = "deletion cancelled and the key enabled again, as it was before".into();
            }
        }
    }
    note["cancelled"] = json!(cancelled);
    note["action"] = json!(action);
    record_on_all(deps, records, "deletion_scheduled", &note).await?;
    Ok(Alert {
        severity: if attached.is_empty() {
            Severity::High
        } else {
            Severity::Critical
        },
        code: "KEY_DELETION_SCHEDULED".into(),
        message: format!(
            "Deletion of the key was scheduled (deletion date {deletion_date}). Data of the affected workspaces encrypted under it would be unrecoverable. {action}."
        ),
        key_arn: key_arn.to_owned(),
        workspaces: attached,
        detail: note,
    })
}

async fn was_disabled_before(deps: &Deps, records: &[WorkflowRecord]) -> Result<bool, CmekError> {
    let mut latest: Option<(String, bool)> = None;
    for r in records {
        for e in deps.store.events(&r.workspace_id).await? {
            let disabled = match (e.step.as_str(), e.outcome.as_str()) {
                ("Guardian", "key_disabled") => true,
                ("Guardian", "key_enabled") => false,
                _ => continue,
            };
            if latest.as_ref().is_none_or(|(at, _)| e.at >= *at) {
                latest = Some((e.at.clone(), disabled));
            }
        }
    }
    Ok(latest.is_some_and(|(_, d)| d))
}

async fn on_policy_changed(
    deps: &Deps,
    records: &[WorkflowRecord],
    key_arn: &str,
    attached: Vec<String>,
    mut note: Value,
) -> Result<Alert, CmekError> {
    let text = deps.kms()?.get_policy(key_arn).await?;
    let arn: Option<KeyArn> = key_arn.parse().ok();
    let mut broken = Vec::new();
    let mut loose = Vec::new();
    let mut findings_by_ws = BTreeMap::new();
    for r in records.iter().filter(|r| r.status == Status::Attached) {
        let Some(compartment) = r.compartment_id else {
            continue;
        };
        let target = AnalysisTarget {
            geo: deps.config.geo,
            compartment,
            org: r.org_uuid.as_ref(),
            key_account: arn.as_ref().map(|a| a.account()),
        };
        let findings = match policy::analyse(&text, target) {
            Ok(f) => f,
            Err(e) => {
                broken.push(r.workspace_id.to_string());
                findings_by_ws.insert(
                    r.workspace_id.to_string(),
                    json!([{"code": "MALFORMED", "message": e.to_string()}]),
                );
                continue;
            }
        };
        if findings.iter().any(|f| f.severity == PolicySeverity::Error) {
            broken.push(r.workspace_id.to_string());
        } else if findings
            .iter()
            .any(|f| f.severity == PolicySeverity::OverPermissive && !accepted(r, f.code))
        {
            loose.push(r.workspace_id.to_string());
        }
        if !findings.is_empty() {
            findings_by_ws.insert(
                r.workspace_id.to_string(),
                serde_json::to_value(&findings).unwrap_or_default(),
            );
        }
    }
    note["findings"] = serde_json::to_value(&findings_by_ws).unwrap_or_default();
    let (severity, code, message, outcome) = if !broken.is_empty() {
        (
            Severity::High,
            "POLICY_BROKEN",
            format!(
                "The new key policy no longer lets Anthropic use the key for workspace(s) {}: they will fail until it is fixed.",
                broken.join(", ")
            ),
            "policy_broken",
        )
    } else if !loose.is_empty() {
        (
            Severity::High,
            "POLICY_OVER_PERMISSIVE",
            format!(
                "The new key policy grants Anthropic more than documented for workspace(s) {}.",
                loose.join(", ")
            ),
            "policy_over_permissive",
        )
    } else {
        (
            Severity::Info,
            "POLICY_CHANGED",
            "The key policy changed and still grants exactly what is documented.".to_owned(),
            "policy_changed",
        )
    };
    record_on_all(deps, records, outcome, &note).await?;
    let workspaces = if broken.is_empty() && loose.is_empty() {
        attached
    } else {
        broken.into_iter().chain(loose).collect()
    };
    Ok(Alert {
        severity,
        code: code.into(),
        key_arn: key_arn.to_owned(),
        workspaces,
        message,
        detail: note,
    })
}

/// What the sweep found for one workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepFinding {
    pub workspace_id: String,
    pub key_arn: Option<String>,
    pub codes: Vec<String>,
    pub messages: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub checked: usize,
    /// Keys Anthropic was asked to validate (validation sweeps only).
    #[serde(default)]
    pub validated: usize,
    pub findings: Vec<SweepFinding>,
}

/// What a sweep checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepKind {
    /// Key state, pending deletion, rotation, policy, attachment (daily).
    KeysAndPolicies,
    /// All of that, plus Anthropic's validate for each attached key: what an
    /// AWS Organizations resource control policy (invisible in the key
    /// policy) breaks shows up within one period, not when users notice.
    /// Each validation leaves four access-denied events in CloudTrail.
    WithValidation,
}

/// Whether the record's operator accepted `code` (stored as `EXTRA_ACTIONS`;
/// records from before that spelling hold `ExtraActions`).
fn accepted(r: &WorkflowRecord, code: crate::policy::FindingCode) -> bool {
    let (name, legacy) = (code.name(), format!("{code:?}"));
    r.accepted_findings.iter().any(|a| *a == name || *a == legacy)
}

/// Check every attached workspace: key state, pending deletion, rotation,
/// policy (the organization condition included: without it the next
/// validation fails), and that the workspace still names the recorded
/// external key; with [`SweepKind::WithValidation`], ask Anthropic to
/// validate each key too.
pub async fn sweep(deps: &Deps, alerter: &Alerter, kind: SweepKind) -> Result<SweepReport, CmekError> {
    use crate::policy::FindingCode;
    let kms = deps.kms()?;
    let admin = deps.admin()?;
    let attached = deps.store.list(Some(Status::Attached)).await?;
    // Records from before the organization condition do not carry the UUID.
    let org = if attached.iter().any(|r| r.org_uuid.is_none()) {
        Some(crate::workflow::organization_of(deps).await?)
    } else {
        None
    };
    let mut report = SweepReport {
        checked: attached.len(),
        validated: 0,
        findings: Vec::new(),
    };
    for r in &attached {
        let mut codes = Vec::new();
        let mut messages = Vec::new();
        let mut add = |c: &str, m: String| {
            codes.push(c.to_owned());
            messages.push(m);
        };
        match r.key_arn.as_deref() {
            None => add("NO_KEY_RECORDED", "the record names no key".into()),
            Some(arn) => match kms.describe(arn).await? {
                None => add("KEY_MISSING", format!("{arn} cannot be described")),
                Some(info) => {
                    if info.state == "PendingDeletion" {
                        add(
                            "KEY_PENDING_DELETION",
                            format!(
                                "{arn} is scheduled for deletion on {}",
                                info.deletion_date.clone().unwrap_or_default()
                            ),
                        );
                    } else if info.state != "Enabled" {
                        add("KEY_NOT_ENABLED", format!("{arn} is {}", info.state));
                    }
                    if !kms.rotation_enabled(arn).await.unwrap_or(true) {
                        add("ROTATION_DISABLED", format!("automatic rotation of {arn} is off"));
                    }
                    if let (Some(compartment), Ok(parsed)) = (r.compartment_id, arn.parse::<KeyArn>()) {
                        let text = kms.get_policy(arn).await?;
                        let target = AnalysisTarget {
                            geo: deps.config.geo,
                            compartment,
                            org: r.org_uuid.as_ref().or(org.as_ref()),
                            key_account: Some(parsed.account()),
                        };
                        match policy::analyse(&text, target) {
                            Err(e) => add("POLICY_BROKEN", e.to_string()),
                            Ok(findings) => {
                                for f in findings.iter().filter(|f| f.severity == PolicySeverity::Error) {
                                    let code = match f.code {
                                        FindingCode::NoOrgCondition | FindingCode::OrgConditionMismatch => {
                                            "POLICY_MISSING_ORG_CONDITION"
                                        }
                                        _ => "POLICY_BROKEN",
                                    };
                                    add(code, f.message.clone());
                                }
                                for f in findings.iter().filter(|f| {
                                    f.severity == PolicySeverity::OverPermissive && !accepted(r, f.code)
                                }) {
                                    add("POLICY_OVER_PERMISSIVE", f.message.clone());
                                }
                            }
                        }
                    }
                }
            },
        }
        let ws: &WorkspaceId = &r.workspace_id;
        match admin.get_workspace(ws).await {
            Ok(w) if w.external_key_id == r.external_key_id => {}
            Ok(w) => add(
                "EXTERNAL_KEY_MISMATCH",
                format!(
                    "the workspace names {:?}, the record {:?}",
                    w.external_key_id, r.external_key_id
                ),
            ),
            Err(e) => add("WORKSPACE_UNREADABLE", e.to_string()),
        }
        if kind == SweepKind::WithValidation
            && let Some(id) = r.external_key_id.as_deref().and_then(|id| id.parse().ok())
        {
            report.validated += 1;
            match admin.validate_external_key(&id).await {
                Ok(v) if v.succeeded() => {}
                Ok(v) => add(
                    "VALIDATION_FAILING",
                    format!(
                        "Anthropic's validation of {id} fails now ({}): live traffic will fail too. Check the key policy and any AWS Organizations resource control policy.",
                        v.error_text().unwrap_or_else(|| "no reason given".into())
                    ),
                ),
                Err(e) => add("VALIDATION_UNAVAILABLE", e.to_string()),
            }
        }
        if !codes.is_empty() {
            let finding = SweepFinding {
                workspace_id: ws.to_string(),
                key_arn: r.key_arn.clone(),
                codes,
                messages,
            };
            let event = AuditEvent::new(
                "Guardian",
                "sweep_findings",
                None,
                serde_json::to_value(&finding).unwrap_or_default(),
            );
            store::append_event(&*deps.store, ws, event, deps.now()).await?;
            report.findings.push(finding);
        }
    }
    // One summary event; the alarm reads the metric below.
    if let Some(bus) = &deps.events {
        bus.publish(
            SWEEP_DETAIL_TYPE,
            &serde_json::to_value(&report).unwrap_or_default(),
        )
        .await?;
    }
    if !report.findings.is_empty() {
        let alert = Alert {
            severity: Severity::High,
            code: "SWEEP_FINDINGS".into(),
            key_arn: String::new(),
            workspaces: report.findings.iter().map(|f| f.workspace_id.clone()).collect(),
            message: format!(
                "The sweep found problems with {} of {} attached workspaces.",
                report.findings.len(),
                report.checked
            ),
            detail: serde_json::to_value(&report.findings).unwrap_or_default(),
        };
        alerter.notify(deps, &alert).await?;
    }
    crate::metrics::emit(
        &[],
        &[(
            crate::metrics::Metric::GuardianFindings,
            crate::metrics::Unit::Count,
            report.findings.len() as f64,
        )],
    );
    Ok(report)
}
