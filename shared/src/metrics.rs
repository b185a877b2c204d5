//! CloudWatch metrics through the Embedded Metric Format: one JSON line on
//! stdout per measurement, which CloudWatch Logs turns into metrics — no API
//! call, no added latency, nothing to fail. (The maintained EMF crates build
//! on the `metrics` facade and a global recorder; five metric names do not
//! justify that, and a line is easy to test.)
//!
//! Every function reports `Invocations`, `Errors` and `Latency` by `Function`
//! (and `Errors` by `Function` + `ErrorType`); the Admin API client's retries
//! are reported as `AdminApiRetries` by `Function` + `Status`, the AWS SDK's
//! as `AwsRetries` by `Function` + `Service`; Finish reports
//! `ProvisioningSucceeded` / `ProvisioningFailed`; ValidateKey reports
//! `ValidationAttempts` and, on success, `AttemptsToValidate`.
//!
//! A custom metric series costs $0.30 a month whether or not anything is
//! written to it, and these come to ~28 series: more than the stack's every
//! other fixed cost together. So only the metrics an alarm pages on are
//! emitted by default ([`Metric::is_essential`]: `GuardianFindings`);
//! Lambda's own metrics (invocations, errors, duration by function) and
//! Step Functions' (executions started, succeeded, failed) are free and
//! cover the rest. The template's `DetailedMonitoring=true` sets
//! [`DETAILED_ENV`] and every metric above is emitted (with the dashboard).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "CmekProvisioner";

/// `true`: emit every metric; anything else: only the essential ones.
pub const DETAILED_ENV: &str = "CMEK_DETAILED_METRICS";

/// Every metric the code emits: a closed set, so that the dashboard and the
/// alarms can be checked against it (and nothing emits a name they miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Invocations,
    Errors,
    Latency,
    AdminApiRetries,
    AwsRetries,
    ProvisioningSucceeded,
    ProvisioningFailed,
    ValidationAttempts,
    AttemptsToValidate,
    GuardianFindings,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::Invocations,
        Metric::Errors,
        Metric::Latency,
        Metric::AdminApiRetries,
        Metric::AwsRetries,
        Metric::ProvisioningSucceeded,
        Metric::ProvisioningFailed,
        Metric::ValidationAttempts,
        Metric::AttemptsToValidate,
        Metric::GuardianFindings,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::Invocations => "Invocations",
            Metric::Errors => "Errors",
            Metric::Latency => "Latency",
            Metric::AdminApiRetries => "AdminApiRetries",
            Metric::AwsRetries => "AwsRetries",
            Metric::ProvisioningSucceeded => "ProvisioningSucceeded",
            Metric::ProvisioningFailed => "ProvisioningFailed",
            Metric::ValidationAttempts => "ValidationAttempts",
            Metric::AttemptsToValidate => "AttemptsToValidate",
            Metric::GuardianFindings => "GuardianFindings",
        }
    }

    /// A metric an alarm pages on: emitted whatever the monitoring level
    /// (the template test checks that every alarm on this namespace uses
    /// one of these).
    pub const fn is_essential(self) -> bool {
        matches!(self, Metric::GuardianFindings)
    }
}

/// Whether every metric is emitted (read once: the environment does not
/// change within an instance).
fn detailed() -> bool {
    static DETAILED: OnceLock<bool> = OnceLock::new();
    *DETAILED.get_or_init(|| std::env::var(DETAILED_ENV).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")))
}

/// The metrics of a measurement that are emitted at this monitoring level.
fn kept(metrics: &[(Metric, Unit, f64)], detailed: bool) -> Vec<(Metric, Unit, f64)> {
    metrics
        .iter()
        .copied()
        .filter(|(m, _, _)| detailed || m.is_essential())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF document: these dimension values, these metrics.
pub fn document(dimensions: &[(&str, &str)], metrics: &[(Metric, Unit, f64)]) -> Value {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": ts,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n.name(), "Unit": u.as_str()})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        doc.insert((*k).into(), json!(v));
    }
    for (n, _, v) in metrics {
        doc.insert(n.name().into(), json!(v));
    }
    Value::Object(doc)
}

/// Write one EMF line (stdout is what Lambda ships to CloudWatch Logs)
/// with the metrics this monitoring level keeps; none, no line.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[(Metric, Unit, f64)]) {
    let metrics = kept(metrics, detailed());
    if !metrics.is_empty() {
        println!("{}", document(dimensions, &metrics));
    }
}

/// The AWS SDK's retries since the last drain, by service. Process-wide: a
/// Lambda instance runs one invocation at a time, and the SDK's interceptor
/// ([`crate::aws::RetryCounting`]) has no handle on the invocation.
static AWS_RETRIES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

pub fn record_aws_retry(service: &'static str) {
    *AWS_RETRIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(service)
        .or_default() += 1;
}

pub fn drain_aws_retries() -> BTreeMap<&'static str, u64> {
    std::mem::take(&mut *AWS_RETRIES.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Report one invocation of `function`: latency, its error type if it
/// failed, the Admin API retries it took (by status) and the AWS SDK's
/// retries since the last report (by service).
pub fn report_invocation(
    function: &str,
    ms: f64,
    error_type: Option<&str>,
    admin_api_retries: BTreeMap<String, u64>,
) {
    let dims = [("Function", function)];
    let aws_retries = drain_aws_retries();
    // Logged whatever the monitoring level: the metrics below are detailed
    // monitoring's, and AWS pushing back should be visible either way.
    if !admin_api_retries.is_empty() || !aws_retries.is_empty() {
        tracing::info!(
            admin_api_retries = ?admin_api_retries,
            aws_retries = ?aws_retries,
            "{function}: retries absorbed"
        );
    }
    let errors = if error_type.is_some() { 1.0 } else { 0.0 };
    emit(
        &dims,
        &[
            (Metric::Invocations, Unit::Count, 1.0),
            (Metric::Errors, Unit::Count, errors),
            (Metric::Latency, Unit::Milliseconds, ms),
        ],
    );
    if let Some(kind) = error_type {
        emit(
            &[("Function", function), ("ErrorType", kind)],
            &[(Metric::Errors, Unit::Count, 1.0)],
        );
    }
    for (status, n) in admin_api_retries {
        emit(
            &[("Function", function), ("Status", status.as_str())],
            &[(Metric::AdminApiRetries, Unit::Count, n as f64)],
        );
    }
    for (service, n) in aws_retries {
        emit(
            &[("Function", function), ("Service", service)],
            &[(Metric::AwsRetries, Unit::Count, n as f64)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_only_what_an_alarm_pages_on_is_emitted() {
        let all: Vec<(Metric, Unit, f64)> = Metric::ALL.iter().map(|m| (*m, Unit::Count, 1.0)).collect();
        let essential: Vec<Metric> = kept(&all, false).into_iter().map(|(m, _, _)| m).collect();
        assert_eq!(essential, [Metric::GuardianFindings]);
        assert_eq!(kept(&all, true).len(), Metric::ALL.len());
        assert!(kept(&[(Metric::Latency, Unit::Milliseconds, 3.0)], false).is_empty());
    }

    #[test]
    fn a_document_declares_what_it_carries() {
        let d = document(
            &[("Function", "Begin")],
            &[(Metric::Latency, Unit::Milliseconds, 12.5)],
        );
        let m = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], NAMESPACE);
        assert_eq!(m["Dimensions"], json!([["Function"]]));
        assert_eq!(m["Metrics"], json!([{"Name": "Latency", "Unit": "Milliseconds"}]));
        assert_eq!(d["Function"], "Begin");
        assert_eq!(d["Latency"], 12.5);
        assert!(
            d["_aws"]["Timestamp"]
                .as_i64()
                .is_some_and(|t| t > 1_700_000_000_000)
        );
    }
}
