//! Cold-start set-up shared by every function's `main`.
//!
//! Every `main` runs on tokio's current-thread runtime. Lambda hands an
//! instance one event at a time, so worker threads add nothing but their
//! start-up: measured on the release build, the multi-threaded runtime cost
//! ~2 ms of wall and ~1.5 ms of CPU per cold start. Concurrency inside an
//! invocation (the guardian's sweep, discovery's pages) is I/O and interleaves
//! on the one thread; blocking DNS lookups still go to tokio's blocking pool.

use tracing_subscriber::filter::LevelFilter;

use crate::workflow::{Deps, Needs};

/// Initialise logging (honours `AWS_LAMBDA_LOG_LEVEL` / `AWS_LAMBDA_LOG_FORMAT`)
/// and build the function's dependencies. A configuration problem stops the
/// function here, before it takes an event, with a message naming the variable.
pub async fn init(needs: Needs) -> Result<Deps, lambda_runtime::Error> {
    init_logging();
    if let Err(e) = crate::tls::check() {
        let e = crate::error::CmekError::Configuration(e.to_string());
        tracing::error!(error_type = e.error_type(), "cold start failed: {e}");
        return Err(Box::new(e));
    }
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

/// Logs to stdout as Lambda's advanced logging controls ask: JSON when
/// `AWS_LAMBDA_LOG_FORMAT` is `JSON`, at the level of `AWS_LAMBDA_LOG_LEVEL`
/// (else `RUST_LOG`, else INFO), without timestamps (Lambda adds them). What
/// `lambda_runtime`'s default subscriber does, without its regex-based filter.
fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map(|l| log_level(&l))
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let logs = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level)
        .with_writer(std::io::stdout);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = if json {
        logs.json().try_init()
    } else {
        logs.try_init()
    };
}

/// Lambda's levels are TRACE, DEBUG, INFO, WARN, ERROR and FATAL; anything
/// unknown logs at INFO rather than nothing.
fn log_level(raw: &str) -> LevelFilter {
    match raw.trim() {
        // tracing reads an empty level as ERROR.
        "" => LevelFilter::INFO,
        l if l.eq_ignore_ascii_case("fatal") => LevelFilter::ERROR,
        l => l.parse().unwrap_or(LevelFilter::INFO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_log_levels_map_to_tracing_levels() {
        for (raw, want) in [
            ("TRACE", LevelFilter::TRACE),
            ("DEBUG", LevelFilter::DEBUG),
            ("info", LevelFilter::INFO),
            ("WARN", LevelFilter::WARN),
            ("ERROR", LevelFilter::ERROR),
            ("FATAL", LevelFilter::ERROR),
            ("off", LevelFilter::OFF),
            ("cmek=debug", LevelFilter::INFO),
            ("", LevelFilter::INFO),
        ] {
            assert_eq!(log_level(raw), want, "{raw:?}");
        }
    }
}
