//! ValidateKey: ask Anthropic to validate the key; failures are retried by the state machine.

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    cmek::runtime::serve::<cmek::workflow::ValidateKey>().await
}
