//! The workshop's kit: the machinery that every stage uses and no stage teaches.
//!
//! A Go controller written with kubebuilder gets this machinery from
//! controller-runtime and from the project that kubebuilder scaffolds. The
//! stages of this workshop get it from here, so that each stage folder holds
//! only its lesson: the kinds, the pure functions and the reconcilers. Nothing
//! in the kit is needed to do a stage's TODOs; it is here for afterwards, for
//! the curious, and go-to-definition from any stage leads to it.
//!
//! | module | what it does for a controller | what plays that part in Go |
//! |---|---|---|
//! | [`stage`] | runs a stage program: the `crd` argument, logging, connecting, the CRD check, Ctrl-C, one-line errors | the `main.go` that kubebuilder scaffolds, and controller-runtime's manager |
//! | [`controller`] | the watch and cache a controller is built on (without `managedFields`), its settings, and the log of its stream of results, an outage once for the whole program | the manager's cache (`cache.TransformStripManagedFields`), `MaxConcurrentReconciles`, the manager's logging |
//! | [`backoff`] | how long to wait before a failed reconcile or a broken watch is tried again | the rate limiter of controller-runtime's work queue |
//! | [`status`] | writes a parent's status with server-side apply, once | `r.Status().Update(ctx, &obj)` |
//! | [`children`] | reads a parent's children from a watch cache, carries out the stage's plan, tells it in Events | the informer cache, `Owns(&Child{})`, the ReplicaSet controller's "expectations", `record.EventRecorder` |
//! | [`outage`] | tells an outage (or CRDs gone) in two lines, not in thousands of failed requests; an object that cannot be read, or refused credentials, in one | client-go's backoff and klog's rate limiting |
//! | [`leader`] | lets one copy of the program run the controllers, through a Lease, and fences the writes of a copy whose renewal is late | controller-runtime's `LeaderElection` option (client-go's `leaderelection`) |
//!
//! Performance work lives here too, where it costs the reader of a stage nothing.

pub mod backoff;
pub mod children;
pub mod controller;
pub mod leader;
pub mod outage;
pub mod stage;
pub mod status;

pub use backoff::RetryBackoff;
pub use children::{Children, Plan, is_controlled_by};
pub use stage::{Shutdown, Stage};
pub use status::StatusWriter;

/// The controllers' name, in every place where the cluster records who acted:
/// the field manager of their writes (`managedFields`), the source of their
/// Events, and the Lease that the copies of a program take turns on.
pub const CONTROLLER_NAME: &str = "math-controller";
