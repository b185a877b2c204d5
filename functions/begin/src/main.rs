//! Begin: validate the input, claim the workspace, read it from the Admin API.

use cmek::workflow::{Needs, begin};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        admin_api: true,
        ..Needs::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        begin(deps, event.payload).await
    }))
    .await
}
