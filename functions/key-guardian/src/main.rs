//! Key guardian: KMS changes (CloudTrail via EventBridge) and the daily sweep.

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    cmek::runtime::serve::<cmek::guardian::KeyGuardian>().await
}
