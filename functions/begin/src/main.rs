//! Begin: validate the input, read the workspace (and an adopted key), claim it.

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    cmek::runtime::serve::<cmek::workflow::Begin>().await
}
