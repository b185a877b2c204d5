//! Every function of the stack: the template's `Handler` names which one an
//! instance serves (`cmek::runtime::HANDLERS`). One binary, built and
//! linked once by `sam build`, deployed to every function.

// One event at a time per instance: no worker threads (see cmek::runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    cmek::runtime::serve_configured().await
}
