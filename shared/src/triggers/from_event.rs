//! The bus rule's target: start a provisioning for a `Workspace Discovered`
//! event, with an execution name derived from the event id, so a redelivered
//! event starts nothing new.

use serde_json::{Value, json};

use super::discovery::{DETAIL_TYPE, Discovered};
use crate::context::Deps;
use crate::error::CmekError;
use crate::ids::shown;
use crate::workflow::ProvisionRequest;

crate::context::lambda_function!(
    /// Bus rule target: `Workspace Discovered` → one provisioning per event.
    StartFromEvent: start_from_event => Value,
    crate::context::Needs {
        sfn: true,
        ..crate::context::Needs::NONE
    }
);

pub async fn start_from_event(deps: &Deps, event: Value) -> Result<Value, CmekError> {
    let detail_type = event
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if detail_type != DETAIL_TYPE {
        return Err(CmekError::InvalidInput(format!(
            "expected a {DETAIL_TYPE:?} event, got {:?}",
            shown(detail_type)
        )));
    }
    let event = crate::inbound::eventbridge::<Discovered>(event)?;
    let id = event
        .id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CmekError::InvalidInput("the event has no id".into()))?;
    let detail = &event.detail;
    let mut req = json!({
        "workspaceId": detail.workspace_id,
        "trigger": {"source": "eventbridge", "eventId": id, "eventSource": event.source},
    });
    if let Some(n) = &detail.display_name {
        req["displayName"] = json!(n);
    }
    let request = ProvisionRequest::from_value(&req)?;
    let name = super::execution_name("eb", &[id]);
    // A failure makes EventBridge redeliver (same id, same name): safe.
    match super::start_provisioning(deps, &name, &request).await? {
        Some(execution) => Ok(json!({"started": execution})),
        None => Ok(json!({"started": null, "duplicate": name})),
    }
}
