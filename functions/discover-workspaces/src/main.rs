//! Scheduled: find new workspaces and announce the opted-in ones on the bus.

use cmek::triggers::discovery::{OptIn, poll};
use cmek::workflow::Needs;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = cmek::runtime::init(Needs {
        admin_api: true,
        events: true,
        ..Needs::default()
    })
    .await?;
    let opt_in = OptIn::from_lookup(|k| std::env::var(k).ok())?;
    let (deps, opt_in) = (&deps, &opt_in);
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        cmek::runtime::measured(deps, "DiscoverWorkspaces", poll(deps, opt_in)).await
    }))
    .await
}
