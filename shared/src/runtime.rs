//! Cold-start set-up shared by every function's `main`.
//!
//! Every `main` runs on tokio's current-thread runtime. Lambda hands an
//! instance one event at a time, so worker threads add nothing but their
//! start-up: measured on the release build, the multi-threaded runtime cost
//! ~2 ms of wall and ~1.5 ms of CPU per cold start. Nothing inside an
//! invocation runs concurrently today (the guardian's sweep and discovery's
//! pages make one call at a time); blocking DNS lookups still go to tokio's
//! blocking pool.

use std::future::Future;
use std::pin::Pin;

use tracing_subscriber::filter::LevelFilter;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use crate::context::{Deps, Handler, Needs};

/// Run a function: set up at cold start what the handler declared it
/// needs, then serve its events, reporting each invocation's metrics. All
/// a `main` does.
pub async fn serve<H: Handler>() -> Result<(), lambda_runtime::Error> {
    serve_erased(H::NEEDS, invoke::<H>).await
}

/// One invocation of a handler, its type erased: with every handler in one
/// binary, the runtime loop (`lambda_runtime`'s client and service stack)
/// is compiled once rather than once per handler, which is most of what a
/// second handler would add to the binary's size and to the release link.
type Invoke = for<'d> fn(&'d Deps, Value) -> Pin<Box<dyn Future<Output = Result<Value, Failed>> + 'd>>;

fn invoke<H: Handler>(
    deps: &Deps,
    payload: Value,
) -> Pin<Box<dyn Future<Output = Result<Value, Failed>> + '_>> {
    Box::pin(async move {
        let (result, retries) = measured(deps, H::NAME, H::handle(deps, payload)).await;
        result
            .and_then(|output| with_retries(output, &retries))
            .map_err(|error| Failed { error, retries })
    })
}

async fn serve_erased(needs: Needs, invoke: Invoke) -> Result<(), lambda_runtime::Error> {
    let deps = init(needs).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        invoke(deps, event.payload)
    }))
    .await
}

/// Every function the stack deploys, by the handler name its template entry
/// gives it (`Handler:`), served by one binary. A multi-call binary because
/// the functions share all but a few lines: `sam build` compiles and links
/// one binary instead of one per function, and the
/// functions still differ only in what their handler declares it needs.
/// Lambda hands a custom runtime the configured handler as `_HANDLER`
/// ("The handler location configured on the function",
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime>).
macro_rules! handlers {
    ($($name:literal => $handler:ty),+ $(,)?) => {
        /// The handler names the binary serves, in the template's spelling.
        pub const HANDLERS: &[&str] = &[$($name),+];

        /// Serve the handler named `name`; an unknown name stops the
        /// function at init, naming the ones it knows.
        pub async fn serve_handler(name: &str) -> Result<(), lambda_runtime::Error> {
            match name {
                $($name => serve::<$handler>().await,)+
                other => {
                    init_logging();
                    let e = crate::error::CmekError::Configuration(format!(
                        "unknown handler {other:?} (_HANDLER): the function's Handler must be one of {}",
                        HANDLERS.join(", ")
                    ));
                    Err(cold_start_failed(e))
                }
            }
        }
    };
}

handlers! {
    "begin" => crate::workflow::Begin,
    "create-key" => crate::workflow::CreateKey,
    "register-key" => crate::workflow::RegisterKey,
    "validate-key" => crate::workflow::ValidateKey,
    "diagnose-key" => crate::workflow::DiagnoseKey,
    "attach-key" => crate::workflow::AttachKey,
    "create-workspace" => crate::workflow::CreateWorkspace,
    "finish" => crate::workflow::Finish,
    "custom-resource" => crate::triggers::CustomResource,
    "discover-workspaces" => crate::triggers::DiscoverWorkspaces,
    "start-from-event" => crate::triggers::StartFromEvent,
    "key-guardian" => crate::guardian::KeyGuardian,
}

/// Serve the handler Lambda configured for this function (`_HANDLER`).
pub async fn serve_configured() -> Result<(), lambda_runtime::Error> {
    let name = std::env::var("_HANDLER").unwrap_or_default();
    serve_handler(name.trim()).await
}

/// A step that failed, with the Admin API retries it absorbed first: its
/// message ends with them (` [adminApiRetries {…}]`, JSON), so that
/// `cmekctl onboard` hears every 429 a step met even when the step then
/// gave up, not one per failure. The error's name is unchanged.
#[derive(Debug)]
pub struct Failed {
    pub error: crate::error::CmekError,
    pub retries: crate::admin_api::Retries,
}

/// The marker before a failed step's retries in its message.
pub const RETRIES_MARKER: &str = " [adminApiRetries ";

impl From<Failed> for lambda_runtime::Diagnostic {
    fn from(f: Failed) -> Self {
        let mut d = lambda_runtime::Diagnostic::from(f.error);
        if !f.retries.is_empty() {
            d.error_message = format!(
                "{}{RETRIES_MARKER}{}]",
                d.error_message,
                serde_json::to_string(&f.retries).unwrap_or_default()
            );
        }
        d
    }
}

/// The output as Lambda returns it, carrying the Admin API retries the
/// invocation absorbed as `adminApiRetries` when there were any: the
/// execution's history then shows every rate limit met along the way,
/// which is what `cmekctl onboard` paces itself on. The state machine
/// keeps each output under its own path, so the field reaches no handler.
fn with_retries<T: serde::Serialize>(
    output: T,
    retries: &crate::admin_api::Retries,
) -> Result<Value, crate::error::CmekError> {
    let mut value = serde_json::to_value(output)
        .map_err(|e| crate::error::CmekError::Internal(format!("output not serializable: {e}")))?;
    if !retries.is_empty()
        && let Some(object) = value.as_object_mut()
    {
        object.insert(
            "adminApiRetries".into(),
            serde_json::to_value(retries).unwrap_or_default(),
        );
    }
    Ok(value)
}

/// Initialise logging (honours `AWS_LAMBDA_LOG_LEVEL` / `AWS_LAMBDA_LOG_FORMAT`)
/// and build the function's dependencies. A configuration problem stops the
/// function here, before it takes an event, with a message naming the variable.
pub async fn init(needs: Needs) -> Result<Deps, lambda_runtime::Error> {
    init_logging();
    if let Err(e) = crate::tls::check() {
        return Err(cold_start_failed(crate::error::CmekError::Configuration(
            e.to_string(),
        )));
    }
    Deps::from_env(needs).await.map_err(cold_start_failed)
}

/// A function that cannot start: logged by name, then Lambda's init error.
fn cold_start_failed(e: crate::error::CmekError) -> lambda_runtime::Error {
    tracing::error!(error_type = e.error_type(), "cold start failed: {e}");
    Box::new(e)
}

/// Run one invocation and report its metrics (latency, errors by type, Admin
/// API retries by status) as Embedded Metric Format lines; the retries are
/// returned as well.
pub async fn measured<T, F>(
    deps: &Deps,
    function: &str,
    work: F,
) -> (Result<T, crate::error::CmekError>, crate::admin_api::Retries)
where
    F: std::future::Future<Output = Result<T, crate::error::CmekError>>,
{
    let started = std::time::Instant::now();
    let result = work.await;
    // The error's name in the logs whatever the monitoring level (the
    // per-type metric is detailed monitoring's).
    if let Err(e) = &result {
        tracing::warn!(error_type = e.error_type(), "{function} failed: {e}");
    }
    let retries = deps
        .admin
        .as_ref()
        .map(|a| a.retries().drain())
        .unwrap_or_default();
    crate::metrics::report_invocation(
        function,
        started.elapsed().as_secs_f64() * 1000.0,
        result.as_ref().err().map(crate::error::CmekError::error_type),
        retries.by_status.clone(),
    );
    (result, retries)
}

/// Logs to stdout as Lambda's advanced logging controls ask: JSON when
/// `AWS_LAMBDA_LOG_FORMAT` is `JSON`, each line with a `level` and an RFC 3339
/// `timestamp` (Lambda gives a line lacking either the level INFO, so a WARN
/// would be filtered as INFO), at the level of `CMEK_LOG_LEVEL` (the
/// template's `LogLevel`; Lambda's own filter is kept at INFO or below so
/// that the metrics' lines, which carry no level, always pass), else
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO. What
/// `lambda_runtime`'s default subscriber does, without its regex-based filter.
fn init_logging() {
    let level = ["CMEK_LOG_LEVEL", "AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .map(|l| log_level(&l))
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // A second initialisation (tests) keeps the first subscriber.
    let _ = if json {
        tracing::subscriber::set_global_default(json_subscriber(std::io::stdout, level))
    } else {
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_target(false)
                .without_time()
                .with_max_level(level)
                .with_writer(std::io::stdout)
                .finish(),
        )
    };
}

/// The JSON lines Lambda reads: `timestamp` (RFC 3339), `level`, `fields`.
fn json_subscriber<W>(writer: W, level: LevelFilter) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::SystemTime)
        .with_max_level(level)
        .with_writer(writer)
        .finish()
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

    /// Lambda honours a JSON line's level only with a valid RFC 3339
    /// timestamp next to it; without one the line counts as INFO, and a WARN
    /// filter would drop every warning.
    #[test]
    fn json_lines_carry_the_level_and_an_rfc3339_timestamp() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = json_subscriber(move || writer.clone(), LevelFilter::INFO);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(workspace_id = "wrkspc_1", "watch out");
            tracing::debug!("filtered");
        });
        let text =
            String::from_utf8(buffer.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_default())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["level"], "WARN");
        let ts = lines[0]["timestamp"].as_str().unwrap_or_default();
        assert!(
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
            "not RFC 3339: {ts}"
        );
    }

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
