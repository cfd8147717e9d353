//! How long to wait before retrying a reconcile that failed, or a watch that broke.
//!
//! A failure that repeats (a permission the controller lacks, an API server
//! that is down) must not turn into a tight loop of requests: each consecutive
//! failure of the same object doubles the wait, up to a ceiling, and a success
//! starts over. In Go, controller-runtime's work queue does this by itself
//! (its default rate limiter: 5 ms doubling up to 1000 s per object); in
//! kube-runtime, `error_policy` returns the delay, so the delay must be
//! counted somewhere: [`RetryBackoff`] counts it.
//!
//! Broken watches are retried by kube-runtime itself, with the backoff the
//! controller is given: [`watch_backoff`] is kube-runtime's own
//! `ExponentialBackoff`, with shorter waits than its default.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::watcher::ExponentialBackoff;

/// The longest wait between two retries of one object.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// The delay before the next retry, after `failures` consecutive failures
/// (1 s, 2 s, 4 s… up to `MAX_DELAY`).
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Duration::from_secs(1 << doublings).min(MAX_DELAY)
}

/// Counts consecutive failures per object. An object deleted while failing
/// leaves its count behind, until the controller restarts.
///
/// kube-runtime has no such count: its `ExponentialBackoff` is one sequence
/// of delays, not one per object, so this is written here.
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

/// The first wait before a broken watch is opened again.
const WATCH_FIRST_DELAY: Duration = Duration::from_millis(250);

/// The longest wait before a broken watch is opened again.
///
/// kube-runtime's default grows to 30 s, and one wait pauses every watch of
/// the controller. A restarted API server refuses each old watch once (410
/// Gone: "too old resource version") before the watch lists again, so those
/// waits add up: with the default, controllers resumed up to two minutes
/// after the server was back. Opening a watch is one cheap request: retry
/// every second at most, and notice a returning server in seconds.
const WATCH_MAX_DELAY: Duration = Duration::from_secs(1);

/// The waits between attempts to reopen a controller's watches: 0.25 s,
/// doubling up to `WATCH_MAX_DELAY`, without jitter; an event that arrives
/// starts over.
pub fn watch_backoff() -> ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(WATCH_FIRST_DELAY)
        .with_max_delay(WATCH_MAX_DELAY)
        .with_factor(2.0)
        .without_max_times()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

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

    #[test]
    fn a_broken_watch_is_retried_within_a_second_and_an_event_starts_over() {
        let mut backoff = watch_backoff();
        let delays: Vec<Duration> = backoff.by_ref().take(5).collect();
        assert_eq!(delays[..3], [250, 500, 1000].map(Duration::from_millis));
        assert_eq!(delays[4], Duration::from_secs(1));
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(250)));
    }
}
