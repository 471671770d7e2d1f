//! Command-line interface: argument definitions and dispatch to one module per command.

mod agent;
mod audit;
pub(crate) mod crds;
#[cfg(feature = "demo")]
mod demo;
mod format;
mod git_args;
mod request;
mod run;
mod status;
mod validate;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::telemetry::logs::{self, LogFormat};

/// Copies management-cluster Secrets to the leaf clusters that `SecretSync` manifests in git
/// select, and records which commit produced every copy.
#[derive(Debug, Parser)]
#[command(name = "secretsync", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SECRETSYNC_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,

    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `info,secretsync=debug`.
    #[arg(long, default_value = "info", env = "SECRETSYNC_LOG", global = true)]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Try secretsync locally: start a management cluster and two leaf clusters (real
    /// kube-apiservers, built once), a git repository with the documented example and the
    /// agent; show the Secret arriving on the leaf and the status; then keep running until
    /// Ctrl-C, printing the kubeconfigs and the git work tree to play with.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Print the CustomResourceDefinitions secretsync works with (GitopsCluster, SecretSync)
    /// as multi-document YAML, e.g. for `kubectl apply -f -`.
    Crds(crds::CrdsArgs),
    /// Check the SecretSync manifests of a directory or a repository, as a pull-request
    /// check: every problem with file, line and field. No cluster needed. Exits 0 when
    /// valid, 1 when any manifest has an error, 2 when the check could not run.
    Validate(Box<validate::ValidateArgs>),
    /// Run the agent: keep the leaf clusters in line with the repository's SecretSyncs,
    /// reacting to new commits (poll, webhook), cluster and Secret changes (watches) and a
    /// resync schedule, until SIGTERM. With --once: one reconcile, a summary, and exit 0
    /// only when every selected cluster holds its copy. Talks to the management cluster
    /// through KUBECONFIG or the in-cluster account.
    Run(Box<run::RunArgs>),
    /// Show what `run --once` would do — per SecretSync and cluster: create, update,
    /// unchanged or skipped (and why), and which copies would be pruned — writing nothing.
    Plan(Box<run::PlanArgs>),
    /// Show every SecretSync's status: per cluster the leaf Secret's version, the commit
    /// behind it, the result and its age. Reads the SecretSync objects (when the CRD is
    /// installed) and the fallback ConfigMaps. Exits 0 when every SecretSync found is Ready,
    /// 1 when one is not or none was found, 2 when the status could not be read.
    Status(status::StatusArgs),
    /// Which commit put a Secret on a leaf cluster: --cluster and --secret explain one leaf
    /// Secret (SecretSync, manifest, revision; with --source the commit's author, date and
    /// subject); --revision lists every leaf Secret a commit produced. Never reads Secret
    /// data. Exits 0 when found, 1 when not found or not written by secretsync, 2 when the
    /// question could not be answered.
    Audit(Box<audit::AuditArgs>),
    /// Ask the running agent to fetch and reconcile now: sets the annotation
    /// secretsync.dev/requestedAt on the SecretSync object, or on its status ConfigMap when
    /// it lives only in git. Exits 1 when neither exists.
    Reconcile(request::ReconcileArgs),
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// Exit code for a command that could not run: bad usage, I/O or set-up failure.
const EXIT_FAILURE: u8 = 2;

/// Exit code for an answer of "not there": not found, not ours, not synced.
const EXIT_NOT_FOUND: u8 = 1;

/// Runs a command's async part on a runtime of its own.
fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// The management cluster's client: KUBECONFIG, or the in-cluster service account.
async fn management_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("connecting to the management cluster (KUBECONFIG or in-cluster)")
}

/// Runs the parsed command line and returns the process exit code.
#[must_use]
pub fn run(cli: Cli) -> ExitCode {
    let log_level = match cli.command {
        // The demo polls apiservers that are still starting; kube's client logs every
        // refused connection of those polls as an error.
        #[cfg(feature = "demo")]
        Command::Demo(_) => format!("{},kube_client::client::builder=off", cli.log_level),
        _ => cli.log_level.clone(),
    };
    if let Err(err) = logs::init(cli.log_format, &log_level) {
        eprintln!("secretsync: {err}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let outcome = match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&args),
        Command::Crds(args) => crds::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => validate::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Plan(args) => run::plan(&args),
        Command::Status(args) => status::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Reconcile(args) => request::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("secretsync: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
