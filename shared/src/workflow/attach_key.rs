use serde_json::{Value, json};

use super::create_key::check_findings;
use super::{
    Deps, StepInput, StepOutput, advance, held, recorded_compartment, recorded_external_key_id,
    recorded_key_arn, recorded_org,
};
use crate::admin_api::{AdminApiError, ErrorCode, Route};
use crate::crash_point::crash_point;
use crate::error::CmekError;
use crate::metrics::{Metric, Unit, emit};
use crate::policy::{Finding, FindingCode};
use crate::store::Status;
use crate::store::WorkflowRecord;

crate::context::lambda_function!(
    /// AttachKey: attach the validated key to the workspace (irreversible; checked first).
    AttachKey: attach_key => StepOutput,
    crate::context::Needs {
        kms: true,
        admin_api: true,
        ..crate::context::Needs::NONE
    }
);

/// Attach the validated key to the workspace — the irreversible step, so it
/// checks everything again first: validated by this execution, the policy
/// still admits the workspace's own compartment (validation may use another
/// id), and the workspace is still unattached or already attached to us.
pub async fn attach_key(deps: &Deps, event: Value) -> Result<StepOutput, CmekError> {
    let input = StepInput::from_value(&event)?;
    let rec = held(deps, &input).await?;
    if rec.status == Status::Attached {
        return Ok(StepOutput::from(&rec));
    }
    if deps.config.platform.attach_validates() {
        return attach_validating(deps, &input, rec).await;
    }
    if rec.status != Status::Validated || rec.validated_by.as_deref() != Some(input.execution.as_str()) {
        return Err(CmekError::NotValidated(format!(
            "workspace {} is {} and was not validated by this execution; attaching an unvalidated key is never done",
            rec.workspace_id, rec.status
        )));
    }
    let ws = &rec.workspace_id;
    let id = recorded_external_key_id(&rec)?;
    let arn = recorded_key_arn(&rec)?;
    let compartment = recorded_compartment(&rec)?;
    let org = recorded_org(&rec)?;

    // Live traffic uses the workspace's own compartment, which validation of
    // an unattached key may not exercise (it may send the all-zeros id):
    // check it here, before the irreversible call.
    let findings = judge_policy(deps, &rec, &arn, compartment, Some(&org)).await?;
    let accepted: Vec<FindingCode> = input.request.accept_findings.clone();
    check_findings(arn.as_str(), &findings, &accepted)?;

    // Write-once: no read before writing; a refusal is looked into (see look_into_refusal).
    let admin = deps.admin()?;
    match admin.attach_key(ws, &id).await {
        Ok(_) => {}
        Err(e) => match look_into_refusal(admin, ws, &id, e).await? {
            Refused::AlreadyOurs => {}
            Refused::Key { reason, error } => {
                // Transient codes are sent again by the state machine, and
                // permanent ones stop with their own name; a refusal of the
                // key itself (attach validates it again) goes to Diagnose.
                let route = error.error_code().and_then(|c| c.route());
                if route == Some(Route::Retry) {
                    tracing::warn!(workspace_id = %ws, error_code = ?error.error_code().map(ToString::to_string), "attach refused for now: {reason}");
                    return Err(error.into());
                }
                record_refusal(
                    deps,
                    &rec,
                    &input.execution,
                    "attach_refused",
                    &id,
                    None,
                    &reason,
                    &error,
                )
                .await?;
                if route == Some(Route::Refuse) {
                    return Err(error.into());
                }
                return Err(CmekError::AttachRefused {
                    workspace: ws.to_string(),
                    external_key_id: id.to_string(),
                    reason,
                });
            }
        },
    }
    crash_point("attach-key.after-attach");
    confirm(admin, ws, &id).await?;
    let rec = advance(
        deps,
        &rec,
        &input.execution,
        Status::Attached,
        "AttachKey",
        "attached",
        json!({"external_key_id": id, "key_arn": arn}),
        |_| {},
    )
    .await?;
    crash_point("attach-key.after-record");
    tracing::info!(workspace_id = %ws, external_key_id = %id, "key attached");
    Ok(StepOutput::from(&rec))
}

/// AttachKey on Claude Platform on AWS, where there is no separate
/// validation: the attach call is the service's validation (its
/// encrypt/decrypt round trip with the workspace's compartment, and a check
/// of the caller's own access to the key), and nothing is attached unless it
/// passes. So the key may be attached only through that call, and only after
/// this project's own analysis of the policy passed for this workspace.
///
/// A refusal while the policy analyses clean is KMS still propagating:
/// `AttachNotYetAccepted`, retried by the state machine on the propagation
/// schedule (attaching the same key again is safe: the attach happens once,
/// when it succeeds). A refusal with a policy that does not pass is
/// `AttachRefused`, and Diagnose names the cause.
async fn attach_validating(
    deps: &Deps,
    input: &StepInput,
    rec: WorkflowRecord,
) -> Result<StepOutput, CmekError> {
    if !matches!(rec.status, Status::Registered | Status::Validated) {
        return Err(CmekError::NotValidated(format!(
            "workspace {} is {}: only a registered key is attached (through the service's own validation)",
            rec.workspace_id, rec.status
        )));
    }
    let ws = &rec.workspace_id;
    let id = recorded_external_key_id(&rec)?;
    let arn = recorded_key_arn(&rec)?;
    let compartment = recorded_compartment(&rec)?;
    let accepted: Vec<FindingCode> = input.request.accept_findings.clone();
    // No organization on this platform: the workspace's ARN binds the key.
    let findings = judge_policy(deps, &rec, &arn, compartment, None).await?;
    check_findings(arn.as_str(), &findings, &accepted)?;

    let admin = deps.admin()?;
    let attempt = rec.validation_attempts + 1;
    emit(&[], &[(Metric::ValidationAttempts, Unit::Count, 1.0)]);
    match admin.attach_key(ws, &id).await {
        Ok(_) => {}
        Err(e) => match look_into_refusal(admin, ws, &id, e).await? {
            Refused::AlreadyOurs => {}
            Refused::Key { reason, error } => {
                let code = error.error_code().cloned();
                let route = code.as_ref().and_then(ErrorCode::route);
                if route == Some(Route::Retry) {
                    tracing::warn!(workspace_id = %ws, attempt, error_code = ?code.as_ref().map(ToString::to_string), "attach refused for now: {reason}");
                    return Err(error.into());
                }
                // Only a validation refusal (the documented
                // external_key_validation_failed, or no code at all) while
                // the policy analyses clean can be KMS still propagating;
                // every other code is a verdict, not a delay.
                let validation_refusal = matches!(code, None | Some(ErrorCode::ValidationFailed));
                // The policy may have changed since the check above.
                let now_blocking = judge_policy(deps, &rec, &arn, compartment, None)
                    .await?
                    .into_iter()
                    .any(|f| f.blocks(&accepted));
                let not_yet = validation_refusal && !now_blocking;
                let outcome = if not_yet {
                    "attach_not_yet_accepted"
                } else {
                    "attach_refused"
                };
                record_refusal(
                    deps,
                    &rec,
                    &input.execution,
                    outcome,
                    &id,
                    Some(attempt),
                    &reason,
                    &error,
                )
                .await?;
                tracing::warn!(workspace_id = %ws, attempt, outcome, error_code = ?code.as_ref().map(ToString::to_string), "attach refused: {reason}");
                return Err(if route == Some(Route::Refuse) {
                    error.into()
                } else if not_yet {
                    CmekError::AttachNotYetAccepted {
                        workspace: ws.to_string(),
                        external_key_id: id.to_string(),
                        attempt,
                        reason,
                    }
                } else {
                    CmekError::AttachRefused {
                        workspace: ws.to_string(),
                        external_key_id: id.to_string(),
                        reason,
                    }
                });
            }
        },
    }
    crash_point("attach-key.after-attach");
    confirm(admin, ws, &id).await?;
    emit(
        &[],
        &[(Metric::AttemptsToValidate, Unit::Count, f64::from(attempt))],
    );
    let rec = advance(
        deps,
        &rec,
        &input.execution,
        Status::Attached,
        "AttachKey",
        "attached",
        json!({"external_key_id": id, "key_arn": arn, "validated_by": "attach", "attempt": attempt}),
        |r| {
            r.validated_by = Some(input.execution.clone());
            r.validation_attempts = attempt;
            r.last_error = None;
            r.last_error_code = None;
        },
    )
    .await?;
    crash_point("attach-key.after-record");
    tracing::info!(workspace_id = %ws, external_key_id = %id, attempt, "key attached (validated by the attach)");
    Ok(StepOutput::from(&rec))
}

/// What a failed attach means.
enum Refused {
    /// The workspace names our key already (an earlier attempt's answer was lost).
    AlreadyOurs,
    /// The workspace is still unattached and the API refused the attach: its
    /// reason (with the typed code, if any) and the error itself, which the
    /// router turns into the step's error.
    Key { reason: String, error: AdminApiError },
}

/// The API keeps `external_key_id` write-once: attaching our id again is a
/// no-op and another id is refused, so no read is needed before writing. A
/// refusal (400, or 409 where the API answers that) is never retried
/// blindly: the workspace is read to see what it is attached to now.
async fn look_into_refusal(
    admin: &crate::admin_api::AdminApiClient,
    ws: &crate::ids::WorkspaceId,
    id: &crate::ids::ExternalKeyId,
    e: AdminApiError,
) -> Result<Refused, CmekError> {
    if !matches!(e, AdminApiError::InvalidRequest(_) | AdminApiError::Conflict(_)) {
        return Err(e.into());
    }
    let current = admin.get_workspace(ws).await?;
    match current.external_key_id.as_deref() {
        Some(existing) if existing == id.as_str() => Ok(Refused::AlreadyOurs),
        Some(other) => Err(CmekError::WorkspaceAlreadyAttached {
            workspace: ws.to_string(),
            external_key_id: other.to_owned(),
        }),
        // Still unattached after a 409 without a code this client knows: a
        // conflict with a concurrent change, not a verdict on the key. The
        // state machine retries (attaching the same id again is safe).
        None if matches!(e, AdminApiError::Conflict(_))
            && e.error_code().and_then(ErrorCode::route).is_none() =>
        {
            Err(e.into())
        }
        None => Ok(Refused::Key {
            reason: e
                .failure()
                .map(ToString::to_string)
                .unwrap_or_else(|| e.to_string()),
            error: e,
        }),
    }
}

/// Put a refused attach on the audit trail, with Anthropic's code, so that
/// Diagnose (and an operator) can see what was answered. Nothing was attached.
#[allow(clippy::too_many_arguments)]
async fn record_refusal(
    deps: &Deps,
    rec: &WorkflowRecord,
    execution: &str,
    outcome: &str,
    id: &crate::ids::ExternalKeyId,
    attempt: Option<u32>,
    reason: &str,
    error: &AdminApiError,
) -> Result<WorkflowRecord, CmekError> {
    let code = error.error_code().map(ToString::to_string);
    let mut detail = json!({"external_key_id": id, "error": reason});
    if let Some(code) = &code {
        detail["error_code"] = json!(code);
    }
    if let Some(a) = attempt {
        detail["attempt"] = json!(a);
    }
    advance(
        deps,
        rec,
        execution,
        rec.status,
        "AttachKey",
        outcome,
        detail,
        |r| {
            if let Some(a) = attempt {
                r.validation_attempts = a;
            }
            r.last_error = Some(reason.to_owned());
            r.last_error_code = code.clone();
        },
    )
    .await
}

/// Read the workspace back: it must name the key just attached.
async fn confirm(
    admin: &crate::admin_api::AdminApiClient,
    ws: &crate::ids::WorkspaceId,
    id: &crate::ids::ExternalKeyId,
) -> Result<(), CmekError> {
    let confirmed = admin.get_workspace(ws).await?;
    if confirmed.external_key_id.as_deref() != Some(id.as_str()) {
        return Err(CmekError::AttachmentMismatch(format!(
            "workspace {ws} reads back external_key_id {:?}, expected {id}",
            confirmed.external_key_id
        )));
    }
    Ok(())
}

/// The key's policy as it is now, judged for this workspace by the rules of
/// the stack's platform (`context::analyse_for_workspace`).
async fn judge_policy(
    deps: &Deps,
    rec: &WorkflowRecord,
    arn: &crate::ids::KeyArn,
    compartment: crate::ids::CompartmentId,
    org: Option<&crate::ids::OrgUuid>,
) -> Result<Vec<Finding>, CmekError> {
    let text = deps.kms()?.get_policy(arn.as_str()).await?;
    crate::context::analyse_for_workspace(
        &deps.config,
        &text,
        &rec.workspace_id,
        compartment,
        org,
        Some(arn.account()),
    )
    .map_err(|e| CmekError::KeyPolicyRejected {
        key: arn.to_string(),
        summary: e.to_string(),
    })
}
