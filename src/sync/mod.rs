//! Sync: from a revision's SecretSyncs and the management cluster's view to leaf-cluster
//! Secrets. `desired` and `plan` are pure; applying and pruning talk to the leaves.

pub mod apply;
pub mod desired;
pub mod inventory;
pub mod plan;
pub mod prune;
pub mod reconcile;
pub mod sources;

pub use self::plan::{Action, ClusterTarget, PlanItem, SkipReason, plan};
pub use self::reconcile::{ReconcileOptions, ReconcileReport, Reconciler, Scope};
