//! How long to wait before retrying a reconcile that failed, or a watch that broke.
//!
//! A failure that repeats (a permission the controller lacks, an API server
//! that is down) must not turn into a tight loop of requests: each consecutive
//! failure of the same object doubles the wait, up to a ceiling, and the count
//! starts over once the object has gone a while without failing. In Go,
//! controller-runtime's work queue does this by itself (its default rate
//! limiter: 5 ms doubling up to 1000 s per object, reset by `Forget`); in
//! kube-runtime, `error_policy` returns the delay, so the delay must be
//! counted somewhere: [`RetryBackoff`] counts it, and starts over by itself.
//!
//! Broken watches are retried by kube-runtime itself, with the backoff the
//! controller is given: [`watch_backoff`] is kube-runtime's own
//! `ExponentialBackoff`, with shorter waits than its default.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::watcher::ExponentialBackoff;

/// The longest wait between two retries of one object.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// The delay before the next retry, after `failures` consecutive failures
/// (1 s, 2 s, 4 s… up to `MAX_DELAY`).
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Duration::from_secs(1 << doublings).min(MAX_DELAY)
}

/// Counts consecutive failures per object.
///
/// No one tells it of a success: a failure counts as consecutive when it
/// comes soon after the retry that the last one asked for, within twice
/// that delay (and at least [`STARTS_OVER_AFTER`]). A failure that comes
/// later means the object was fine in between, and the count starts over,
/// as kube-runtime's `ResetTimerBackoff` does for a watch. The records of
/// objects that stopped failing are dropped as the count of others grows.
///
/// kube-runtime has no count per object: its `ExponentialBackoff` is one
/// sequence of delays, so this is written here.
///
/// A std `Mutex` rather than a tokio one: it is never held across an `.await`.
#[derive(Default)]
pub struct RetryBackoff {
    failures: Mutex<HashMap<String, Failures>>,
}

/// One object's consecutive failures, and when the last one came.
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Whether a failure now follows this run of failures.
    fn continued_at(&self, now: Instant) -> bool {
        let window = (2 * retry_delay(self.count)).max(STARTS_OVER_AFTER);
        now.saturating_duration_since(self.last) <= window
    }
}

/// The shortest quiet time after which a failure starts a new count.
const STARTS_OVER_AFTER: Duration = Duration::from_secs(10);

impl RetryBackoff {
    /// Records one more failure of `key` and returns how long to wait.
    pub fn failed(&self, key: &str) -> Duration {
        self.failed_at(key, Instant::now())
    }

    fn failed_at(&self, key: &str, now: Instant) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Objects that stopped failing (or were deleted) leave no record behind.
        failures.retain(|_, failure| failure.continued_at(now));
        let failure = failures
            .entry(key.to_string())
            .or_insert(Failures { count: 0, last: now });
        failure.count = failure.count.saturating_add(1);
        failure.last = now;
        retry_delay(failure.count)
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
    fn failures_at_each_retry_double_the_wait_per_object() {
        let backoff = RetryBackoff::default();
        let start = Instant::now();
        assert_eq!(backoff.failed_at("a", start), Duration::from_secs(1));
        assert_eq!(
            backoff.failed_at("a", start + Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff.failed_at("b", start + Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff.failed_at("a", start + Duration::from_secs(3)),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn a_failure_long_after_the_last_retry_starts_the_count_over() {
        let backoff = RetryBackoff::default();
        let start = Instant::now();
        for seconds in [0, 1, 3, 7, 15] {
            backoff.failed_at("a", start + Duration::from_secs(seconds));
        }
        // The retry 16 s after the fifth failure succeeded: nothing failed until much later.
        let later = start + Duration::from_secs(15 + 33);
        assert_eq!(backoff.failed_at("a", later), Duration::from_secs(1));
    }

    #[test]
    fn objects_that_stopped_failing_leave_no_record() {
        let backoff = RetryBackoff::default();
        let start = Instant::now();
        backoff.failed_at("gone", start);
        backoff.failed_at("other", start + STARTS_OVER_AFTER * 2);
        let failures = backoff.failures.lock().unwrap();
        assert!(!failures.contains_key("gone"));
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
