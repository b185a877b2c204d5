//! The provisioning workflow, one handler per state of the state machine:
//! Begin → CreateKey → RegisterKey → ValidateKey (retried) → AttachKey →
//! Finish, with Diagnose when validation never succeeds. Every handler is
//! idempotent: a Step Functions retry, a re-run or a crash at any point never
//! creates a second key, registration or attachment.

mod attach_key;
mod begin;
mod create_key;
mod create_workspace;
mod diagnose;
mod finish;
mod input;
mod new_workspace;
mod register_key;
mod validate_key;

pub use attach_key::{AttachKey, attach_key};
pub use begin::{Begin, BeginOutput, begin};
pub use create_key::{
    CREATOR_MAINTAINS_SID, CREATOR_TAGS_SID, CreateKey, create_key, creator_statements, key_description,
};
pub use create_workspace::{
    CREATE_SETTLE_SECS, CreateWorkspace, CreationOutput, TAG_CREATION, create_workspace,
};
pub use diagnose::{DiagnoseKey, Diagnosis, diagnose, diagnose_described, diagnose_key, diagnose_on_aws};
pub use finish::{Finish, FinishOutput, finish};
pub use input::{ProvisionRequest, StepInput, Trigger};
pub use new_workspace::{CreationInput, CreationRequest, NewWorkspace};
pub use register_key::{RegisterKey, register_key};
pub use validate_key::{ValidateKey, validate_key};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::Deps;
use crate::error::CmekError;
use crate::ids::{CompartmentId, ExternalKeyId, KeyArn, OrgUuid};
use crate::store::{self, AuditEvent, Status, WorkflowRecord};

/// What the key steps return to the state machine (and the demo prints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepOutput {
    pub workspace_id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_arn: Option<KeyArn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_key_id: Option<ExternalKeyId>,
    #[serde(default)]
    pub validation_attempts: u32,
}

impl From<&WorkflowRecord> for StepOutput {
    fn from(r: &WorkflowRecord) -> Self {
        Self {
            workspace_id: r.workspace_id.to_string(),
            status: r.status,
            key_arn: r.key_arn.clone(),
            alias: r.alias.clone(),
            external_key_id: r.external_key_id.clone(),
            validation_attempts: r.validation_attempts,
        }
    }
}

/// Advance the record, refreshing this execution's lease as it makes progress.
// The parts of one audit event stay explicit at each call site, where they read best.
#[allow(clippy::too_many_arguments)]
async fn advance(
    deps: &Deps,
    rec: &WorkflowRecord,
    execution: &str,
    to: Status,
    step: &str,
    outcome: &str,
    detail: Value,
    patch: impl FnOnce(&mut WorkflowRecord),
) -> Result<WorkflowRecord, CmekError> {
    let now = deps.now();
    let expires_at = now.unix_timestamp() + deps.config.lease_ttl.as_secs() as i64;
    let event = AuditEvent::new(step, outcome, Some(execution), detail);
    Ok(store::advance(&*deps.store, rec, execution, to, event, now, |r| {
        patch(r);
        if let Some(lease) = r.lease.as_mut() {
            lease.expires_at = expires_at;
        }
    })
    .await?)
}

/// What earlier steps recorded and later steps depend on; missing means the
/// earlier step did not complete. (A malformed value cannot get this far: the
/// record's ids are typed, and a tampered one fails to load as `Corrupt`.)
fn recorded_compartment(rec: &WorkflowRecord) -> Result<CompartmentId, CmekError> {
    rec.compartment_id
        .ok_or_else(|| CmekError::StateConflict("no compartment recorded: Begin did not complete".into()))
}

fn recorded_org(rec: &WorkflowRecord) -> Result<OrgUuid, CmekError> {
    rec.org_uuid
        .ok_or_else(|| CmekError::StateConflict("no organization recorded: Begin did not complete".into()))
}

fn recorded_key_arn(rec: &WorkflowRecord) -> Result<KeyArn, CmekError> {
    rec.key_arn
        .clone()
        .ok_or_else(|| CmekError::StateConflict("no key recorded: CreateKey did not complete".into()))
}

fn recorded_external_key_id(rec: &WorkflowRecord) -> Result<ExternalKeyId, CmekError> {
    rec.external_key_id.clone().ok_or_else(|| {
        CmekError::StateConflict("no registration recorded: RegisterKey did not complete".into())
    })
}

/// Claude Platform on AWS: the workspace's ARN (its `aws:SourceArn` when the
/// service uses the key for it), from the stack's account and Region.
fn workspace_arn(deps: &Deps, ws: &crate::ids::WorkspaceId) -> Result<String, CmekError> {
    let config = &deps.config;
    let region = config
        .require_platform_region()
        .map_err(|e| CmekError::Configuration(e.to_string()))?;
    let account = config
        .require_account_id()
        .map_err(|e| CmekError::Configuration(e.to_string()))?;
    Ok(crate::platform::workspace_arn(region, account, ws))
}

/// Claude Platform on AWS: the `aws:SourceArn` values a key policy written
/// for this workspace carries.
fn source_arns(deps: &Deps, ws: &crate::ids::WorkspaceId) -> Result<Vec<String>, CmekError> {
    Ok(match deps.config.source_arn_scope {
        crate::platform::SourceArnScope::Account => {
            let account = deps
                .config
                .require_account_id()
                .map_err(|e| CmekError::Configuration(e.to_string()))?;
            vec![crate::platform::account_workspaces_pattern(account)]
        }
        crate::platform::SourceArnScope::Workspaces => vec![workspace_arn(deps, ws)?],
    })
}

/// The record this execution holds, or the reason it may not act.
async fn held(deps: &Deps, input: &StepInput) -> Result<WorkflowRecord, CmekError> {
    Ok(store::load_held(&*deps.store, &input.request.workspace_id, &input.execution).await?)
}
