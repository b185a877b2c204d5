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

mod alert;
mod sweep;
mod watch;

pub use alert::{ALERT_DETAIL_TYPE, Alert, Severity, notify};
pub use sweep::{SWEEP_DETAIL_TYPE, SweepFinding, SweepKind, SweepReport, sweep};
pub use watch::{WATCHED_EVENTS, watch};

use serde_json::Value;

use crate::context::{Deps, Handler, Needs};
use crate::error::CmekError;
use crate::inbound::{self, CLOUDTRAIL_DETAIL_TYPE, KmsCall, SCHEDULED_DETAIL_TYPE};
use crate::policy::FindingCode;
use crate::store::WorkflowRecord;

/// The input the weekly validation sweep's schedule sends (see the template's
/// `ValidationSweepSchedule`).
pub const VALIDATION_SWEEP_INPUT: &str = "validation-sweep";

/// The guardian's Lambda function.
#[derive(Debug)]
pub struct KeyGuardian;

impl Handler for KeyGuardian {
    const NAME: &'static str = "KeyGuardian";
    const NEEDS: Needs = Needs {
        kms: true,
        admin_api: true,
        events: true,
        sns: true,
        ..Needs::NONE
    };
    type Output = Value;
    fn handle(deps: &Deps, event: Value) -> impl std::future::Future<Output = Result<Value, CmekError>> {
        handle(deps, event)
    }
}

/// The Lambda entry point: a CloudTrail KMS event, the daily schedule, or
/// the weekly validation sweep's constant input.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value, CmekError> {
    if event.get("sweep").and_then(Value::as_str) == Some(VALIDATION_SWEEP_INPUT) {
        return sweep(deps, SweepKind::WithValidation)
            .await
            .map(|r| serde_json::to_value(r).unwrap_or_default());
    }
    match event.get("detail-type").and_then(Value::as_str) {
        Some(CLOUDTRAIL_DETAIL_TYPE) => watch(deps, &inbound::eventbridge::<KmsCall>(event)?).await,
        Some(SCHEDULED_DETAIL_TYPE) => {
            inbound::eventbridge::<Value>(event)?;
            sweep(deps, SweepKind::KeysAndPolicies)
                .await
                .map(|r| serde_json::to_value(r).unwrap_or_default())
        }
        other => Err(CmekError::InvalidInput(format!(
            "expected a CloudTrail KMS event, the sweep schedule or {{\"sweep\": \"{VALIDATION_SWEEP_INPUT}\"}}, got detail-type {other:?}"
        ))),
    }
}

/// The findings the record's operator accepted (stored by stable name;
/// records from before that spelling hold `ExtraActions`).
fn accepted(r: &WorkflowRecord) -> Vec<FindingCode> {
    r.accepted_findings
        .iter()
        .filter_map(|a| FindingCode::from_name(a))
        .collect()
}
