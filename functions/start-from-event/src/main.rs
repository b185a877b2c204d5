//! Bus rule target: `Workspace Discovered` → one provisioning per event.

use cmek::triggers::start_from_event;
use cmek::workflow::Needs;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        sfn: true,
        ..Needs::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        cmek::runtime::measured(deps, "StartFromEvent", start_from_event(deps, event.payload)).await
    }))
    .await
}
