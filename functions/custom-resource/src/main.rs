//! `Custom::AnthropicCmek`: CloudFormation's entry point (its ServiceToken).

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    cmek::runtime::serve::<cmek::triggers::CustomResource>().await
}
