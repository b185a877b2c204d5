use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{CreationRequest, Deps, ProvisionRequest, Trigger};
use crate::crash_point::crash_point;
use crate::error::CmekError;
use crate::events::{DETAIL_FAILED, DETAIL_SUCCEEDED};
use crate::ids::{ExternalKeyId, KeyArn, WorkspaceId};
use crate::store::{self, AuditEvent, Status};

crate::context::lambda_function!(
    /// Finish: record the outcome, whatever happened, and publish the result event.
    Finish: finish => FinishOutput,
    crate::context::Needs {
        events: true,
        ..crate::context::Needs::NONE
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishOutput {
    /// `SUCCEEDED` or `FAILED`: the state machine's last Choice reads it.
    pub outcome: String,
    pub workspace_id: Option<String>,
    pub status: Option<Status>,
    pub key_arn: Option<KeyArn>,
    pub alias: Option<String>,
    pub external_key_id: Option<ExternalKeyId>,
    pub compartment_id: Option<String>,
    pub error: Option<String>,
    pub error_message: Option<String>,
    pub diagnosis: Option<Value>,
    /// For a failure: what the execution's own `cause` says (the state
    /// machine's Fail state reads it, with `error` as its error): the
    /// message, the diagnosis and its fix — where operators look first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// What Finish is told: the state machine's `$.error` and `$.diagnosis`
/// next to the request and execution.
struct Ending {
    execution: String,
    error: Option<String>,
    message: Option<String>,
    diagnosis: Option<Value>,
}

impl Ending {
    fn reason(&self, last_error: Option<&str>) -> String {
        failure_reason(
            self.error.as_deref(),
            self.message.as_deref(),
            self.diagnosis.as_ref(),
            last_error,
        )
    }

    /// For bad input: the error alone (a diagnosis cannot exist yet).
    fn failure_without_record(&self) -> String {
        failure_reason(self.error.as_deref(), self.message.as_deref(), None, None)
    }
}

/// Record how the execution ended, whatever happened, and announce it.
/// Input: `{request, execution, error?: {Error, Cause}, diagnosis?}`.
pub async fn finish(deps: &Deps, event: Value) -> Result<FinishOutput, CmekError> {
    let (error, message) = caught_error(event.get("error"));
    let ending = Ending {
        execution: event
            .get("execution")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        error,
        message,
        diagnosis: event.get("diagnosis").filter(|d| !d.is_null()).cloned(),
    };
    let workspace: Option<WorkspaceId> = event
        .pointer("/request/workspaceId")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    let request = ProvisionRequest::from_value(event.get("request").unwrap_or(&Value::Null)).ok();
    let mut out = FinishOutput {
        outcome: "FAILED".into(),
        workspace_id: workspace.as_ref().map(ToString::to_string),
        status: None,
        key_arn: None,
        alias: None,
        external_key_id: None,
        compartment_id: None,
        error: ending.error.clone(),
        error_message: ending.message.clone(),
        diagnosis: ending.diagnosis.clone(),
        cause: None,
    };
    match &request {
        // Bad input changes nothing, not even the audit trail, but a
        // CloudFormation caller still gets its answer.
        Some(request) if ending.error.as_deref() == Some("InvalidInput") => {
            answer_cloudformation(deps, request, false, None, &ending.failure_without_record()).await?;
        }
        Some(request) => match deps.store.load(&request.workspace_id).await? {
            Some(rec) if rec.lease_owner() == Some(ending.execution.as_str()) => {
                finish_held(deps, request, &ending, rec, &mut out).await?;
            }
            other => {
                if let Some(rec) = &other
                    && let Some(outcome) = finished_before(deps, rec, &ending.execution).await?
                {
                    // A retry of this Finish after it released the record and
                    // died: the outcome stands and CloudFormation already has
                    // its answer; only the result event may still be missing.
                    out.outcome = if outcome == "succeeded" {
                        "SUCCEEDED"
                    } else {
                        "FAILED"
                    }
                    .into();
                    out.fill_from(rec);
                } else {
                    not_held(deps, request, &ending, other.as_ref(), &mut out).await?;
                }
            }
        },
        None => {
            if let Some(creation) = event
                .get("request")
                .filter(|r| CreationRequest::is_creation(r))
                .and_then(|r| CreationRequest::from_value(r).ok())
            {
                finish_creation(deps, &creation, &ending, &mut out).await?;
            }
        }
    }
    publish_and_return(deps, &ending.execution, out).await
}

/// A creation that failed before its workspace was handed on: answer
/// CloudFormation, then record the failure on the creation record this
/// execution holds (a creation whose workspace exists stays ATTACHED: the
/// workspace and its key are never undone).
async fn finish_creation(
    deps: &Deps,
    creation: &CreationRequest,
    ending: &Ending,
    out: &mut FinishOutput,
) -> Result<(), CmekError> {
    let token = creation.token();
    let rec = deps.store.load_creation(&token).await?;
    let mut reason = ending.reason(rec.as_ref().and_then(|r| r.last_error.as_deref()));
    if let Some(ws) = rec.as_ref().and_then(|r| r.workspace_id.as_ref()) {
        reason.push_str(&format!(
            " (workspace {ws} was created with its key and is kept; run the same request again to finish)"
        ));
    }
    if let Some(Trigger::Cloudformation(callback)) = &creation.trigger {
        callback.answer(deps.http.get()?, false, None, &reason).await?;
    }
    out.workspace_id = rec
        .as_ref()
        .and_then(|r| r.workspace_id.as_ref())
        .map(ToString::to_string);
    let Some(rec) = rec.filter(|r| r.lease_owner() == Some(ending.execution.as_str())) else {
        return Ok(());
    };
    let to = if rec.status == Status::Attached {
        Status::Attached
    } else {
        Status::Failed
    };
    let detail = json!({"error": ending.error, "message": ending.message});
    let rec = store::advance_creation(
        &*deps.store,
        &rec,
        &ending.execution,
        to,
        AuditEvent::new("Finish", "failed", None, detail),
        deps.now(),
        true,
        |r| {
            r.last_error = ending
                .message
                .clone()
                .or_else(|| ending.error.clone())
                .or_else(|| r.last_error.clone());
        },
    )
    .await?;
    out.status = Some(rec.status);
    out.key_arn = rec.kms_key_arn.clone();
    out.external_key_id = rec.external_key_id.clone();
    Ok(())
}

impl FinishOutput {
    fn fill_from(&mut self, rec: &store::WorkflowRecord) {
        self.status = Some(rec.status);
        self.key_arn = rec.key_arn.clone();
        self.alias = rec.alias.clone();
        self.external_key_id = rec.external_key_id.clone();
        self.compartment_id = rec.compartment_id.map(|c| c.to_string());
    }
}

/// This execution holds the workspace: answer CloudFormation, then record
/// the outcome and let the workspace go.
async fn finish_held(
    deps: &Deps,
    request: &ProvisionRequest,
    ending: &Ending,
    rec: store::WorkflowRecord,
    out: &mut FinishOutput,
) -> Result<(), CmekError> {
    let ws = &request.workspace_id;
    let execution = ending.execution.as_str();
    let succeeded = rec.status == Status::Attached && ending.error.is_none() && ending.diagnosis.is_none();
    // CloudFormation first: if its answer cannot be delivered, this step
    // fails while still holding the record and is retried.
    let reason = if succeeded {
        format!(
            "workspace {ws} attached to {} (key {})",
            rec.external_key_id.as_deref().unwrap_or("?"),
            rec.key_arn.as_deref().unwrap_or("?")
        )
    } else {
        ending.reason(rec.last_error.as_deref())
    };
    answer_cloudformation(deps, request, succeeded, Some(&rec), &reason).await?;
    crash_point("finish.after-answer");
    // An attached workspace stays ATTACHED even if a later step failed.
    let to = if rec.status == Status::Attached {
        Status::Attached
    } else {
        Status::Failed
    };
    let detail = json!({"error": ending.error, "message": ending.message, "diagnosis": ending.diagnosis});
    let outcome = if succeeded { "succeeded" } else { "failed" };
    let event = AuditEvent::new("Finish", outcome, Some(execution), detail);
    let rec = store::release(&*deps.store, &rec, execution, to, event, deps.now(), |r| {
        if to == Status::Failed {
            r.last_error = ending
                .message
                .clone()
                .or_else(|| ending.error.clone())
                .or_else(|| r.last_error.clone());
        }
    })
    .await?;
    crash_point("finish.after-release");
    out.outcome = if succeeded { "SUCCEEDED" } else { "FAILED" }.into();
    out.fill_from(&rec);
    Ok(())
}

/// This execution never held the workspace (another one does, or Begin
/// failed before claiming): answer CloudFormation and note it without
/// touching state.
async fn not_held(
    deps: &Deps,
    request: &ProvisionRequest,
    ending: &Ending,
    record: Option<&store::WorkflowRecord>,
    out: &mut FinishOutput,
) -> Result<(), CmekError> {
    let held_by = record.and_then(|r| r.lease_owner().map(str::to_owned));
    answer_cloudformation(deps, request, false, None, &ending.reason(None)).await?;
    // Begin refuses these before claiming: a workspace or key that does not
    // exist leaves no trace, as bad input does not.
    let refused_before_claim = matches!(
        ending.error.as_deref(),
        Some(
            "WorkspaceNotFound"
                | "WorkspaceArchived"
                | "KeyNotUsable"
                | "AdminApiRejected"
                | "InvalidOrganization"
        )
    );
    if refused_before_claim && record.is_none() {
        return Ok(());
    }
    let detail = json!({"error": ending.error, "message": ending.message, "held_by": held_by});
    store::append_event(
        &*deps.store,
        &request.workspace_id,
        AuditEvent::new("Finish", "not_run", Some(&ending.execution), detail),
        deps.now(),
    )
    .await?;
    out.status = record.map(|r| r.status);
    Ok(())
}

/// Announce the result on the bus (best effort) and hand it to the state machine.
async fn publish_and_return(
    deps: &Deps,
    execution: &str,
    mut out: FinishOutput,
) -> Result<FinishOutput, CmekError> {
    if out.outcome != "SUCCEEDED" {
        // The execution fails with the workflow's own error, never a generic one.
        let error = out.error.clone().unwrap_or_else(|| "ProvisioningFailed".into());
        let mut cause = failure_reason(
            Some(&error),
            out.error_message.as_deref(),
            out.diagnosis.as_ref(),
            None,
        );
        if let Some(ws) = &out.workspace_id {
            cause.push_str(&format!(" (audit trail: cmekctl status {ws})"));
        }
        // Step Functions' limit for a Fail state's cause.
        out.cause = Some(cause.chars().take(32_000).collect());
        out.error = Some(error);
    }
    let metric = if out.outcome == "SUCCEEDED" {
        crate::metrics::Metric::ProvisioningSucceeded
    } else {
        crate::metrics::Metric::ProvisioningFailed
    };
    crate::metrics::emit(&[], &[(metric, crate::metrics::Unit::Count, 1.0)]);
    if let Some(events) = &deps.events {
        let detail_type = if out.outcome == "SUCCEEDED" {
            DETAIL_SUCCEEDED
        } else {
            DETAIL_FAILED
        };
        let detail = json!({
            "workspaceId": out.workspace_id, "execution": execution, "outcome": out.outcome,
            "status": out.status, "keyArn": out.key_arn, "externalKeyId": out.external_key_id,
            "error": out.error, "errorMessage": out.error_message, "diagnosis": out.diagnosis,
        });
        if let Err(e) = events.publish(detail_type, &detail).await {
            // The record above is the source of truth; a lost notification
            // must not turn a provisioned workspace into a failed execution.
            tracing::error!(workspace_id = ?out.workspace_id, "could not publish the result event: {e}");
        }
    }
    tracing::info!(workspace_id = ?out.workspace_id, execution = %execution, outcome = %out.outcome, error = ?out.error, "finished");
    Ok(out)
}

/// The outcome this execution's Finish already recorded, if it did (only
/// ever true for a record no execution holds).
async fn finished_before(
    deps: &Deps,
    rec: &store::WorkflowRecord,
    execution: &str,
) -> Result<Option<String>, CmekError> {
    if execution.is_empty() || rec.lease.is_some() {
        return Ok(None);
    }
    let events = deps.store.events(&rec.workspace_id).await?;
    Ok(events
        .iter()
        .rev()
        .find(|e| {
            e.step == "Finish"
                && e.execution.as_deref() == Some(execution)
                && matches!(e.outcome.as_str(), "succeeded" | "failed")
        })
        .map(|e| e.outcome.clone()))
}

/// Step Functions' Catch output: `{"Error": "...", "Cause": "<json or text>"}`,
/// where a Lambda error's Cause is `{"errorType", "errorMessage"}`.
fn caught_error(v: Option<&Value>) -> (Option<String>, Option<String>) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return (None, None);
    };
    let error = v.get("Error").and_then(Value::as_str).map(str::to_owned);
    let cause = v.get("Cause").and_then(Value::as_str).unwrap_or_default();
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| c.get("errorMessage").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| (!cause.is_empty()).then(|| cause.to_owned()))
        .map(|m| m.chars().take(2000).collect());
    (error.or_else(|| Some("Unknown".into())), message)
}

/// What an operator reads in CloudFormation's events: the error, its
/// message, and the diagnosis with its fix when there is one.
fn failure_reason(
    error: Option<&str>,
    message: Option<&str>,
    diagnosis: Option<&Value>,
    last: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    if let Some(e) = error {
        parts.push(match message {
            Some(m) => format!("{e}: {m}"),
            None => e.to_owned(),
        });
    }
    if let Some(d) = diagnosis {
        let field = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        if d.get("cause").is_some() {
            parts.push(format!(
                "Diagnosis {}: {} Fix: {}",
                field("cause"),
                field("summary"),
                field("fix")
            ));
        } else if let Some(e) = d.get("Error").and_then(Value::as_str) {
            parts.push(format!("Diagnose failed: {e}"));
        }
    }
    if parts.is_empty() {
        parts.push(last.unwrap_or("provisioning failed").to_owned());
    }
    parts.join(" | ")
}

/// Answer CloudFormation when a custom resource started this execution (its
/// callback travels in the request's trigger).
async fn answer_cloudformation(
    deps: &Deps,
    request: &ProvisionRequest,
    succeeded: bool,
    record: Option<&store::WorkflowRecord>,
    reason: &str,
) -> Result<(), CmekError> {
    if let Some(Trigger::Cloudformation(callback)) = &request.trigger {
        callback
            .answer(deps.http.get()?, succeeded, record, reason)
            .await?;
    }
    Ok(())
}
