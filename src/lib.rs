//! secretsync: a GitOps agent that copies management-cluster Secrets to the leaf clusters
//! selected by `SecretSync` manifests read straight from git commits.

pub mod agent;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod manifest;
pub mod source;
pub mod status;
pub mod sync;
pub mod telemetry;
#[cfg(feature = "demo")]
pub mod testenv;
pub mod trigger;
