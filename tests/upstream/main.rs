//! Upstream behaviour the stages work around, each reproduced in a few lines
//! so that it can be reported, and so that this test tells us when a new kube
//! release fixes it (the test then fails: drop the workaround and this test).
//! The write-up for each is in `tests/upstream/README.md`.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::Status;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;

/// A waker that counts how often it was woken.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountingWaker {
    fn woken(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Three tasks wait for one store; the store becomes ready; only the task
/// that asked last is woken. The other two sleep until something else wakes
/// them, which in a controller may be never.
#[test]
fn wait_until_ready_wakes_only_the_last_of_several_waiters() {
    let (store, mut writer) = reflector::store::<ConfigMap>();
    let wakers: Vec<Arc<CountingWaker>> = (0..3).map(|_| Arc::default()).collect();
    let mut waits: Vec<_> = (0..3).map(|_| Box::pin(store.wait_until_ready())).collect();
    for (wait, counter) in waits.iter_mut().zip(&wakers) {
        let waker = Waker::from(counter.clone());
        assert!(wait.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    }

    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitDone);

    let woken: Vec<usize> = wakers.iter().map(|counter| counter.woken()).collect();
    assert_eq!(
        woken,
        [0, 0, 1],
        "kube-runtime now wakes every waiter: the stages' `Shared` readiness future can go"
    );
    // Polled again, all three are ready: the value is there, only the wake-up was lost.
    for wait in &mut waits {
        assert!(wait.as_mut().now_or_never().is_some());
    }
}

/// The workaround the stages use: one future shared by every waiter.
/// `Shared` keeps every waiter's waker and wakes them all.
#[test]
fn a_shared_readiness_future_wakes_every_waiter() {
    let (store, mut writer) = reflector::store::<ConfigMap>();
    let ready = async move { store.wait_until_ready().await.is_ok() }.boxed().shared();
    let wakers: Vec<Arc<CountingWaker>> = (0..3).map(|_| Arc::default()).collect();
    let mut waits: Vec<_> = (0..3).map(|_| ready.clone()).collect();
    for (wait, counter) in waits.iter_mut().zip(&wakers) {
        let waker = Waker::from(counter.clone());
        assert!(pin!(wait).poll(&mut Context::from_waker(&waker)).is_pending());
    }

    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitDone);

    let woken: Vec<usize> = wakers.iter().map(|counter| counter.woken()).collect();
    assert!(woken.iter().all(|&count| count >= 1), "woken: {woken:?}");
    for wait in waits {
        assert_eq!(wait.now_or_never(), Some(true));
    }
}

/// An API server answers a request for an API group that has no resources at
/// all (no CRD of that group installed) with a plain-text `404 page not
/// found`. kube-client turns the body into a `Status` with code 404 and reason
/// "Failed to parse error data", and `is_not_found()` says no.
#[test]
fn is_not_found_misses_a_404_whose_body_is_not_a_status() {
    let status = Status::failure("404 page not found", "Failed to parse error data").with_code(404);
    assert_eq!(status.code, 404);
    assert!(
        !status.is_not_found(),
        "kube now treats a plain 404 as not found: the stages may use `is_not_found()` again"
    );
}

/// A controller asked to stop before its store has the first list waits for
/// that list, but its graceful shutdown has stopped reading the watch that
/// would bring it: it waits until something else fills the store, which in
/// a program is never.
#[tokio::test]
async fn a_graceful_shutdown_before_the_first_list_waits_for_it_forever() {
    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;
    let (store, mut writer) = reflector::store::<ConfigMap>();
    let watch = futures::stream::pending::<Result<ConfigMap, kube::runtime::watcher::Error>>();
    let run = Controller::for_stream(watch, store)
        .graceful_shutdown_on(async {})
        .run(
            |_, _: Arc<()>| async { Ok::<_, Never>(Action::await_change()) },
            |_, _, _| Action::await_change(),
            Arc::new(()),
        )
        .for_each(|_| async {});
    let mut run = pin!(run);
    for _ in 0..10 {
        assert!(
            (&mut run).now_or_never().is_none(),
            "kube-runtime now stops a controller before its first list: \
             `stopped_before_the_first_list` in kit/src/controller.rs can go"
        );
        tokio::task::yield_now().await;
    }
    // The list it waits for, from elsewhere: it then stops.
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitDone);
    assert!(run.now_or_never().is_some());
}
