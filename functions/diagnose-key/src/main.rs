//! Diagnose: name the documented cause when validation never succeeded.

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    cmek::runtime::serve::<cmek::workflow::DiagnoseKey>().await
}
