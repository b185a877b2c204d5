//! RegisterKey: register the key with Anthropic exactly once.

use cmek::workflow::{Needs, register_key};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        admin_api: true,
        ..Needs::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        cmek::runtime::measured(deps, "RegisterKey", register_key(deps, event.payload)).await
    }))
    .await
}
