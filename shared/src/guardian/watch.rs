//! The guardian's reaction to one KMS management event (CloudTrail, through
//! EventBridge) on a key of the workflow table.

use std::collections::BTreeMap;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde_json::{Value, json};

use super::accepted;
use super::alert::{Alert, Severity, notify};
use crate::context::Deps;
use crate::error::CmekError;
use crate::ids::KeyArn;
use crate::inbound::KmsCall;
use crate::kms::{TAG_MANAGED_BY, TAG_MANAGED_BY_VALUE};
use crate::lifecycle;
use crate::policy::{self, Severity as PolicySeverity};
use crate::store::{self, AuditEvent, Status, WorkflowRecord};

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

/// The key an event is about, as an ARN.
async fn event_key(deps: &Deps, call: &KmsCall) -> Result<Option<String>, CmekError> {
    if let Some(arn) = call.key_arn() {
        return Ok(Some(arn.to_owned()));
    }
    let Some(id) = call.key_id_parameter() else {
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

/// Act on one CloudTrail KMS event: record it on every workspace of the
/// key, undo a scheduled deletion of a key of ours, and alert.
pub async fn watch(deps: &Deps, event: &EventBridgeEvent<KmsCall>) -> Result<Value, CmekError> {
    let call = &event.detail;
    let name = call.event_name.clone();
    // Before anything else, so that no other event (an access-denied
    // validation probe on Encrypt, say) is recorded or alerted on.
    if !WATCHED_EVENTS.contains(&name.as_str()) {
        return Ok(json!({"ignored": true, "why": format!("{} is not watched", crate::ids::shown(&name))}));
    }
    let Some(key_arn) = event_key(deps, call).await? else {
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
    let actor = call.actor().to_owned();
    let mut note = json!({"event": name, "actor": actor, "key_arn": key_arn, "event_id": call.event_id});
    if let Some(code) = call.error_code.as_deref() {
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
        notify(deps, &alert).await?;
        return Ok(serde_json::to_value(alert).unwrap_or_default());
    }
    let alert = match name.as_str() {
        "ScheduleKeyDeletion" => {
            on_deletion_scheduled(deps, &records, &key_arn, attached, call, note).await?
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
                    "{actor} disabled the key: this {}. It is reversible (enable the key again), but then {}. This is the customer's way to revoke access, so the guardian does not undo it.",
                    lifecycle::DISABLE_APPLIES,
                    lifecycle::REENABLE_LIMITS
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
            let message = match name.as_str() {
                "EnableKey" => format!(
                    "{actor} enabled the key again: Anthropic can use it again, with two limits: {}.",
                    lifecycle::REENABLE_LIMITS
                ),
                "CancelKeyDeletion" => format!(
                    "{actor} cancelled the key's scheduled deletion; KMS leaves a key whose deletion is cancelled disabled until it is enabled again"
                ),
                _ => format!("{actor} called {name}"),
            };
            Alert {
                severity: Severity::Info,
                code: format!("KEY_{}", name.to_uppercase()),
                message,
                key_arn,
                workspaces: attached,
                detail: note,
            }
        }
        _ => return Ok(json!({"ignored": true, "why": format!("{name} has no handler")})),
    };
    notify(deps, &alert).await?;
    tracing::warn!(code = %alert.code, severity = ?alert.severity, key_arn = %alert.key_arn, workspaces = ?alert.workspaces, "{}", alert.message);
    Ok(serde_json::to_value(alert).unwrap_or_default())
}

async fn on_deletion_scheduled(
    deps: &Deps,
    records: &[WorkflowRecord],
    key_arn: &str,
    attached: Vec<String>,
    call: &KmsCall,
    mut note: Value,
) -> Result<Alert, CmekError> {
    let deletion_date = call.deletion_date();
    note["deletion_date"] = deletion_date.clone();
    let kms = deps.kms()?;
    let tagged = kms
        .tags(key_arn)
        .await?
        .iter()
        .any(|(k, v)| k == TAG_MANAGED_BY && v == TAG_MANAGED_BY_VALUE);
    let mut action = "not cancelled: automatic cancellation is turned off".to_owned();
    let mut cancelled = false;
    if deps.config.guardian_cancels_deletion && !attached.is_empty() {
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
            "Deletion of the key was scheduled (deletion date {deletion_date}): {} for the affected workspaces; cancelling before that date is the only way back. {action}.",
            lifecycle::DELETION_IS_FINAL
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
        let findings = match crate::context::analyse_for_workspace(
            &deps.config,
            &text,
            &r.workspace_id,
            compartment,
            r.org_uuid.as_ref(),
            arn.as_ref().map(|a| a.account()),
        ) {
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
        let accepted = accepted(r);
        let blocking: Vec<&policy::Finding> = findings.iter().filter(|f| f.blocks(&accepted)).collect();
        if blocking
            .iter()
            .any(|f| f.code.severity() == PolicySeverity::Error)
        {
            broken.push(r.workspace_id.to_string());
        } else if !blocking.is_empty() {
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
                "The new key policy no longer lets Anthropic use the key for workspace(s) {}: the revocation {}. It is reversible (restore the documented grant), but then {}.",
                broken.join(", "),
                lifecycle::DISABLE_APPLIES,
                lifecycle::REENABLE_LIMITS
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
