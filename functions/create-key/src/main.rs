//! CreateKey: create the workspace's KMS key (or adopt one) with the documented policy.

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    cmek::runtime::serve::<cmek::workflow::CreateKey>().await
}
