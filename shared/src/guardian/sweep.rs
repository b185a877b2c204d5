//! The guardian's sweep of every attached workspace (daily; weekly with
//! Anthropic's validation too): what no KMS event shows.

use aws_sdk_kms::types::KeyState;
use serde::{Deserialize, Serialize};

use super::accepted;
use super::alert::{Alert, Severity, notify};
use crate::context::Deps;
use crate::error::CmekError;
use crate::ids::WorkspaceId;
use crate::lifecycle;
use crate::policy::Severity as PolicySeverity;
use crate::store::{self, AuditEvent, Status};

pub const SWEEP_DETAIL_TYPE: &str = "CMEK Key Sweep Completed";

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

/// Check every attached workspace: key state, pending deletion, rotation,
/// policy (the organization condition included: without it the next
/// validation fails), and that the workspace still names the recorded
/// external key; with [`SweepKind::WithValidation`], ask Anthropic to
/// validate each key too.
pub async fn sweep(deps: &Deps, kind: SweepKind) -> Result<SweepReport, CmekError> {
    use crate::policy::FindingCode;
    let kms = deps.kms()?;
    let admin = deps.admin()?;
    let attached = deps.store.list(Some(Status::Attached)).await?;
    // Records from before the organization condition do not carry the UUID.
    // Claude Platform on AWS binds keys to no organization.
    let org = if !deps.config.platform.is_on_aws() && attached.iter().any(|r| r.org_uuid.is_none()) {
        Some(deps.organization().await?)
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
        match &r.key_arn {
            None => add("NO_KEY_RECORDED", "the record names no key".into()),
            Some(key_arn) => match kms.describe(key_arn.as_str()).await? {
                None => add("KEY_MISSING", format!("{key_arn} cannot be described")),
                Some(info) => {
                    if info.state == KeyState::PendingDeletion {
                        add(
                            "KEY_PENDING_DELETION",
                            format!(
                                "{key_arn} is scheduled for deletion on {}: not reversible after that date ({}); cancel the deletion before it",
                                info.deletion_date.clone().unwrap_or_default(),
                                lifecycle::DELETION_IS_FINAL
                            ),
                        );
                    } else if info.state != KeyState::Enabled {
                        add(
                            "KEY_NOT_ENABLED",
                            format!(
                                "{key_arn} is {}: reversible (enable it again), but then {}",
                                info.state.as_str(),
                                lifecycle::REENABLE_LIMITS
                            ),
                        );
                    }
                    if !kms.rotation_enabled(key_arn).await.unwrap_or(true) {
                        add(
                            "ROTATION_DISABLED",
                            format!("automatic rotation of {key_arn} is off"),
                        );
                    }
                    if let Some(compartment) = r.compartment_id {
                        let text = kms.get_policy(key_arn).await?;
                        match crate::context::analyse_for_workspace(
                            &deps.config,
                            &text,
                            &r.workspace_id,
                            compartment,
                            r.org_uuid.as_ref().or(org.as_ref()),
                            Some(key_arn.account()),
                        ) {
                            Err(e) => add("POLICY_BROKEN", e.to_string()),
                            Ok(findings) => {
                                let accepted = accepted(r);
                                for f in findings.iter().filter(|f| f.blocks(&accepted)) {
                                    let code = match (f.code.severity(), f.code) {
                                        (
                                            PolicySeverity::Error,
                                            FindingCode::NoOrgCondition | FindingCode::OrgConditionMismatch,
                                        ) => "POLICY_MISSING_ORG_CONDITION",
                                        (PolicySeverity::Error, _) => "POLICY_BROKEN",
                                        _ => "POLICY_OVER_PERMISSIVE",
                                    };
                                    // Access removed in the policy is a revocation:
                                    // reversible, unlike a deletion.
                                    let message = if code == "POLICY_OVER_PERMISSIVE" {
                                        f.message.clone()
                                    } else {
                                        format!(
                                            "{}: Anthropic's access is revoked, which is reversible ({}), but then {}",
                                            f.message,
                                            f.fix.trim_end_matches('.'),
                                            lifecycle::REENABLE_LIMITS
                                        )
                                    };
                                    add(code, message);
                                }
                            }
                        }
                    }
                }
            },
        }
        let ws: &WorkspaceId = &r.workspace_id;
        match admin.get_workspace(ws).await {
            Ok(w) if w.external_key_id.as_deref() == r.external_key_id.as_deref() => {}
            Ok(w) => add(
                "EXTERNAL_KEY_MISMATCH",
                format!(
                    "the workspace names {:?}, the record {:?}",
                    w.external_key_id, r.external_key_id
                ),
            ),
            Err(e) => add("WORKSPACE_UNREADABLE", e.to_string()),
        }
        // Claude Platform on AWS has no validate call (attaching validates):
        // there the sweep checks the policy, the key and the attachment only.
        if kind == SweepKind::WithValidation
            && !deps.config.platform.is_on_aws()
            && let Some(id) = &r.external_key_id
        {
            report.validated += 1;
            match admin.validate_external_key(id).await {
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
                key_arn: r.key_arn.as_ref().map(ToString::to_string),
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
        notify(deps, &alert).await?;
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
