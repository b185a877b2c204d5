//! `Custom::AnthropicCmek`: CloudFormation's entry point (its ServiceToken).

use cmek::triggers::custom_resource::custom_resource;
use cmek::workflow::Needs;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        admin_api: true,
        sfn: true,
        ..Needs::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        cmek::runtime::measured(deps, "CustomResource", custom_resource(deps, event.payload)).await
    }))
    .await
}
