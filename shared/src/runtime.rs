//! Cold-start set-up shared by every function's `main`.

use crate::workflow::{Deps, Needs};

/// Initialise logging (honours `AWS_LAMBDA_LOG_LEVEL` / `AWS_LAMBDA_LOG_FORMAT`)
/// and build the function's dependencies. A configuration problem stops the
/// function here, before it takes an event, with a message naming the variable.
pub async fn init(needs: Needs) -> Result<Deps, lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    match Deps::from_env(needs).await {
        Ok(deps) => Ok(deps),
        Err(e) => {
            tracing::error!(error_type = e.error_type(), "cold start failed: {e}");
            Err(Box::new(e))
        }
    }
}

/// Run one invocation and report its metrics (latency, errors by type, Admin
/// API retries by status) as Embedded Metric Format lines.
pub async fn measured<T, F>(deps: &Deps, function: &str, work: F) -> Result<T, crate::error::CmekError>
where
    F: std::future::Future<Output = Result<T, crate::error::CmekError>>,
{
    let retries = deps.admin.as_ref().map(|a| a.retries());
    crate::metrics::measured(function, retries, work).await
}
