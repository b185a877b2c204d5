//! The ways a provisioning starts besides a manual execution.

pub mod custom_resource;
pub mod discovery;
mod execution_name;
mod from_event;
pub mod workspace_resource;

pub use custom_resource::CustomResource;
pub use discovery::DiscoverWorkspaces;
pub use execution_name::execution_name;
pub use from_event::{StartFromEvent, start_from_event};

use crate::context::Deps;
use crate::error::CmekError;

/// Start a provisioning under an idempotent name. `Ok(Some(arn))`: started
/// (or, with the same input while it runs, the same execution again);
/// `Ok(None)`: an execution of that name already exists — a duplicate delivery.
pub async fn start_provisioning(
    deps: &Deps,
    name: &str,
    request: &impl serde::Serialize,
) -> Result<Option<String>, CmekError> {
    let (sfn, state_machine) = deps.state_machine()?;
    let input = serde_json::to_string(request).map_err(|e| CmekError::Internal(e.to_string()))?;
    match sfn
        .start_execution()
        .state_machine_arn(state_machine)
        .name(name)
        .input(input)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out.execution_arn().to_owned())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_already_exists()) =>
        {
            Ok(None)
        }
        Err(e) => {
            // A wrong or missing state machine will not fix itself; anything
            // else is what AWS said it was (throttled, unavailable, denied).
            let permanent = e.as_service_error().is_some_and(|s| {
                s.is_state_machine_does_not_exist()
                    || s.is_invalid_arn()
                    || s.is_invalid_name()
                    || s.is_invalid_execution_input()
            });
            let failure = crate::aws::classify("states", "StartExecution", &e);
            Err(if permanent {
                CmekError::Configuration(format!(
                    "could not start the provisioning state machine: {failure}"
                ))
            } else {
                failure.into()
            })
        }
    }
}

/// A boolean resource property: CloudFormation sends every scalar as a
/// string, so `"true"`/`"false"` (any case) count as well as JSON booleans;
/// anything else is `InvalidInput` naming the property.
pub(crate) fn bool_property(name: &str, v: &Option<serde_json::Value>) -> Result<Option<bool>, CmekError> {
    match v {
        None => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(CmekError::InvalidInput(format!(
            "ResourceProperties.{name} must be true or false, got {}",
            crate::ids::shown(&other.to_string())
        ))),
    }
}
