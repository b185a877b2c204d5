//! The client's own count of its retries, which the function reports as the
//! `AdminApiRetries` metric after each invocation, and in its output (so an
//! execution's history shows the rate limit it met: `cmekctl onboard` paces
//! itself on it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Admin API retries since the last drain, by HTTP status (`network` when
/// there was no response). Shared by clones of one client.
#[derive(Debug, Clone, Default)]
pub struct RetryCounter(Arc<Mutex<Retries>>);

/// What one invocation's retries were.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Retries by the status that caused them.
    pub by_status: BTreeMap<String, u64>,
    /// The longest `retry-after` a 429 asked for, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<f64>,
    /// Calls given up on, by the status of their last answer (not retried,
    /// so not in `by_status`): with it, every 429 met is counted once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gave_up_by_status: BTreeMap<String, u64>,
}

impl Retries {
    pub fn is_empty(&self) -> bool {
        self.by_status.is_empty() && self.gave_up_by_status.is_empty()
    }

    /// Every 429 met: the retried ones and the last of a call given up on.
    pub fn rate_limits_met(&self) -> u64 {
        self.rate_limited() + self.gave_up_by_status.get("429").copied().unwrap_or(0)
    }

    /// Retries caused by the rate limit (429).
    pub fn rate_limited(&self) -> u64 {
        self.by_status.get("429").copied().unwrap_or(0)
    }
}

impl RetryCounter {
    pub fn record(&self, status: Option<u16>, retry_after: Option<Duration>) {
        let key = status.map_or_else(|| "network".to_owned(), |s| s.to_string());
        let mut r = self.lock();
        *r.by_status.entry(key).or_default() += 1;
        if status == Some(429)
            && let Some(after) = retry_after
        {
            let secs = after.as_secs_f64();
            r.retry_after_secs = Some(r.retry_after_secs.map_or(secs, |s| s.max(secs)));
        }
    }

    /// A call given up on after this answer (a 429 when the retries ran
    /// out, say); only answers the client would retry are counted.
    pub fn record_gave_up(&self, status: Option<u16>) {
        let key = status.map_or_else(|| "network".to_owned(), |s| s.to_string());
        *self.lock().gave_up_by_status.entry(key).or_default() += 1;
    }

    pub fn drain(&self) -> Retries {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Retries> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_counted_by_status_and_drained() {
        let c = RetryCounter::default();
        let clone = c.clone();
        c.record(Some(429), Some(Duration::from_secs(2)));
        clone.record(Some(429), Some(Duration::from_secs(7)));
        c.record(None, None);
        c.record(Some(529), Some(Duration::from_secs(30)));
        c.record_gave_up(Some(429));
        let drained = c.drain();
        assert_eq!(drained.by_status.get("429"), Some(&2));
        assert_eq!(
            drained.rate_limits_met(),
            3,
            "the last 429, given up on, counts too"
        );
        assert_eq!(drained.by_status.get("network"), Some(&1));
        assert_eq!(drained.rate_limited(), 2);
        assert_eq!(
            drained.retry_after_secs,
            Some(7.0),
            "only a 429's retry-after counts"
        );
        assert!(c.drain().is_empty());
    }
}
