//! Finish: record the outcome, whatever happened, and publish the result event.

use cmek::workflow::{Needs, finish};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        events: true,
        ..Needs::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        cmek::runtime::measured(deps, "Finish", finish(deps, event.payload)).await
    }))
    .await
}
