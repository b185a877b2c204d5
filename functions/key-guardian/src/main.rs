//! Key guardian: KMS changes (CloudTrail via EventBridge) and the daily sweep.

use cmek::guardian::{Alerter, GuardianConfig, handle};
use cmek::workflow::Needs;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        kms: true,
        admin_api: true,
        events: true,
        ..Needs::default()
    })
    .await?;
    let config = GuardianConfig::from_lookup(|k| std::env::var(k).ok())?;
    let alerter = Alerter::from_env().await;
    let (deps, alerter) = (&deps, &alerter);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        cmek::runtime::measured(deps, "KeyGuardian", handle(deps, alerter, config, event.payload)).await
    }))
    .await
}
