//! CreateKey: create the workspace's KMS key (or adopt one) with the documented policy.

use cmek::workflow::{Needs, create_key};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        kms: true,
        ..Needs::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        cmek::runtime::measured(deps, "CreateKey", create_key(deps, event.payload)).await
    }))
    .await
}
