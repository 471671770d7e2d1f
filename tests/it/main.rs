//! secretsync's integration tests: one binary (every extra one re-links kube and git2), a
//! module per area, all against the real test environment in `testenv`.

mod agent;
mod cli_run;
mod cli_status;
mod cli_validate;
mod cluster;
mod demo;
mod deploy;
mod manifest_corpus;
mod smoke_git;
mod smoke_kube;
mod source_artifact;
mod source_git;
mod source_local;
mod sync;
mod testenv;
pub mod webhook;
