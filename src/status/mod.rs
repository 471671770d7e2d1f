//! Status of each SecretSync: computed from the reconcile's results (pure, `model`) and
//! written to the SecretSync object or a fallback ConfigMap (`writer`).

pub mod model;
pub mod writer;

pub use self::model::{ClusterResult, ClusterStatus, Condition, SourceProblem, SyncStatus};
pub use self::writer::{
    StatusError, StatusListing, StatusSnapshot, StatusStore, StatusTarget, StoredStatus,
};
