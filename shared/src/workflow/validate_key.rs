use serde_json::{Value, json};

use super::{Deps, StepInput, StepOutput, advance, held, recorded_external_key_id};
use crate::error::CmekError;
use crate::metrics::{Metric, Unit, emit};
use crate::store::Status;

crate::context::lambda_function!(
    /// ValidateKey: ask Anthropic to validate the key; failures are retried by the state machine.
    ValidateKey: validate_key => StepOutput,
    crate::context::Needs {
        admin_api: true,
        ..crate::context::Needs::NONE
    }
);

/// Ask Anthropic to validate the key. A `failure` verdict leaves as
/// `ValidationFailed`, which the state machine retries on its propagation
/// schedule before handing over to Diagnose.
pub async fn validate_key(deps: &Deps, event: Value) -> Result<StepOutput, CmekError> {
    let input = StepInput::from_value(&event)?;
    let rec = held(deps, &input).await?;
    if rec.status == Status::Attached
        || rec.status == Status::Validated && rec.validated_by.as_deref() == Some(input.execution.as_str())
    {
        return Ok(StepOutput::from(&rec));
    }
    let id = recorded_external_key_id(&rec)?;
    let verdict = deps.admin()?.validate_external_key(&id).await?;
    let attempt = rec.validation_attempts + 1;
    emit(&[], &[(Metric::ValidationAttempts, Unit::Count, 1.0)]);
    if verdict.succeeded() {
        // How long propagation took, in attempts: the retry schedule's tuning signal.
        emit(
            &[],
            &[(Metric::AttemptsToValidate, Unit::Count, f64::from(attempt))],
        );
        let rec = advance(
            deps,
            &rec,
            &input.execution,
            Status::Validated,
            "ValidateKey",
            "validated",
            json!({"external_key_id": id, "attempt": attempt}),
            |r| {
                r.validated_by = Some(input.execution.clone());
                r.validation_attempts = attempt;
                r.last_error = None;
            },
        )
        .await?;
        tracing::info!(workspace_id = %rec.workspace_id, attempt, "key validated");
        return Ok(StepOutput::from(&rec));
    }
    let reason = verdict
        .error_text()
        .unwrap_or_else(|| "validation failed without a reason".into());
    advance(
        deps,
        &rec,
        &input.execution,
        rec.status,
        "ValidateKey",
        "validation_failed",
        json!({"external_key_id": id, "attempt": attempt, "error": reason}),
        |r| {
            r.validation_attempts = attempt;
            r.last_error = Some(reason.clone());
        },
    )
    .await?;
    tracing::warn!(workspace_id = %rec.workspace_id, attempt, "validation failed: {reason}");
    Err(CmekError::ValidationFailed {
        external_key_id: id.to_string(),
        attempt,
        reason,
    })
}
