//! The client's own count of its retries, which the function reports as the
//! `AdminApiRetries` metric after each invocation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Admin API retries since the last drain, by HTTP status (`network` when
/// there was no response). Shared by clones of one client.
#[derive(Debug, Clone, Default)]
pub struct RetryCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl RetryCounter {
    pub fn record(&self, status: Option<u16>) {
        let key = status.map_or_else(|| "network".to_owned(), |s| s.to_string());
        *self.lock().entry(key).or_default() += 1;
    }

    pub fn drain(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
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
        c.record(Some(429));
        clone.record(Some(429));
        c.record(None);
        let drained = c.drain();
        assert_eq!(drained.get("429"), Some(&2));
        assert_eq!(drained.get("network"), Some(&1));
        assert!(c.drain().is_empty());
    }
}
