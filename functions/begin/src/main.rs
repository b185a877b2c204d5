//! Begin: validate the input, read the workspace (and an adopted key), claim it.

use cmek::workflow::{Needs, begin};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        admin_api: true,
        kms: true,
        ..Needs::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        cmek::runtime::measured(deps, "Begin", begin(deps, event.payload)).await
    }))
    .await
}
