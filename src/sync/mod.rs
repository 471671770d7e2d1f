//! Sync: from a revision's SecretSyncs and the management cluster's view to leaf-cluster
//! Secrets. `desired` and `plan` are pure; applying and pruning talk to the leaves.

pub mod apply;
pub mod desired;
pub mod inventory;
pub mod plan;
pub mod prune;
pub mod reconcile;
pub mod sources;

/// From this many Secrets wanted from one namespace on, the namespace is listed rather than
/// each Secret read: a LIST costs about what a few GETs do, and saves one per Secret.
pub(crate) const LIST_FROM: usize = 16;

pub use self::plan::{Action, ClusterTarget, PlanItem, SkipReason, plan};
pub use self::reconcile::{ReconcileOptions, ReconcileReport, Reconciler, Scope};
