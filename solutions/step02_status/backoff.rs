//! How long to wait before retrying a reconcile that failed.
//!
//! A failure that repeats (a permission the controller lacks, an API server
//! that is down) must not turn into a tight loop of requests: each consecutive
//! failure of the same object doubles the wait, up to a ceiling, and a success
//! starts over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The longest wait between two retries of one object.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// The delay before the next retry, after `failures` consecutive failures
/// (1 s, 2 s, 4 s… up to `MAX_DELAY`).
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Duration::from_secs(1 << doublings).min(MAX_DELAY)
}

/// Counts consecutive failures per object name. An object deleted while
/// failing leaves its count behind, until the controller restarts.
///
/// A std `Mutex` rather than a tokio one: it is never held across an `.await`.
#[derive(Default)]
pub struct RetryBackoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl RetryBackoff {
    /// Records one more failure of `key` and returns how long to wait.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        retry_delay(*count)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_waits_one_second_and_each_failure_doubles_it() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(5), Duration::from_secs(16));
    }

    #[test]
    fn the_delay_stops_growing_at_five_minutes() {
        assert_eq!(retry_delay(10), MAX_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_success_starts_the_count_over() {
        let backoff = RetryBackoff::default();
        backoff.failed("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(2));
        assert_eq!(backoff.failed("b"), Duration::from_secs(1));
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(1));
    }
}
