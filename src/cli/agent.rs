//! `secretsync run` without `--once`: the agent's flags, and wiring them to the agent loop
//! with signal handling (SIGTERM or Ctrl-C: finish the reconcile in flight, release the
//! Lease, exit 0).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::run::RunArgs;
use super::{block_on, management_client};
use crate::agent::backoff::BackoffPolicy;
use crate::agent::leader::{Leadership, LeaseSettings};
use crate::agent::{Agent, AgentSettings};
use crate::audit::AuditLog;
use crate::cluster::ClientCache;
use crate::source::git::GitReference;
use crate::sync::Reconciler;
use crate::telemetry::health::{self, Health};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::observer::Telemetry;
use crate::trigger::timer::ResyncSchedule;
use crate::trigger::webhook::{self, WebhookConfig};

#[derive(Debug, Args)]
#[command(next_help_heading = "Agent")]
pub struct AgentArgs {
    /// How often the repository is polled (jittered ±10%), e.g. `30s`, `1m`, `5m`.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, env = "SECRETSYNC_INTERVAL")]
    pub interval: Duration,

    /// When to reconcile everything, repairing drift and picking up rotated kubeconfigs: a
    /// cron expression (five fields, or six with seconds first).
    #[arg(
        long,
        default_value = "*/10 * * * *",
        env = "SECRETSYNC_RESYNC_SCHEDULE"
    )]
    pub resync_schedule: ResyncSchedule,

    /// Longest a fetch of the repository may take before it counts as failed.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration, env = "SECRETSYNC_FETCH_TIMEOUT")]
    pub fetch_timeout: Duration,

    /// First wait before a failed leaf cluster is tried again; it doubles per failure.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "SECRETSYNC_RETRY_BACKOFF")]
    pub retry_backoff: Duration,

    /// Longest wait between attempts on a failing leaf cluster.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, env = "SECRETSYNC_MAX_RETRY_BACKOFF")]
    pub max_retry_backoff: Duration,

    /// On SIGTERM, how long the reconcile in flight may go on before the agent exits.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration, env = "SECRETSYNC_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,

    /// Run several replicas: only the holder of a coordination.k8s.io Lease writes.
    #[arg(long, env = "SECRETSYNC_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the Lease (normally the agent's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Name of the Lease.
    #[arg(long, default_value = "secretsync", env = "SECRETSYNC_LEASE_NAME")]
    pub lease_name: String,

    /// How long a leader that stopped renewing keeps the Lease.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, env = "SECRETSYNC_LEASE_DURATION")]
    pub lease_duration: Duration,

    /// This replica's name in the Lease [default: the host name, i.e. the Pod name].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Address of the webhook receiver (/hook/github, /hook/gitlab, /hook/generic). Served
    /// only when the shared secret is set in the environment: SECRETSYNC_WEBHOOK_SECRET.
    #[arg(long, default_value = "0.0.0.0:9292", env = "SECRETSYNC_WEBHOOK_ADDR")]
    pub webhook_addr: SocketAddr,

    /// Address of /metrics (Prometheus), /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9090", env = "SECRETSYNC_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
}

/// The environment variable holding the webhook secret (never an argument: arguments show
/// in process listings).
const WEBHOOK_SECRET_ENV: &str = "SECRETSYNC_WEBHOOK_SECRET";

impl AgentArgs {
    fn settings(&self) -> AgentSettings {
        AgentSettings {
            interval: self.interval,
            resync: self.resync_schedule.clone(),
            backoff: BackoffPolicy {
                initial: self.retry_backoff,
                max: self.max_retry_backoff,
            },
            shutdown_grace: self.shutdown_grace,
        }
    }

    fn lease(&self) -> LeaseSettings {
        let identity = self.identity.clone().unwrap_or_else(|| {
            hostname::get().map_or_else(
                |_| "secretsync".to_owned(),
                |name| name.to_string_lossy().into_owned(),
            )
        });
        LeaseSettings {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity,
            duration: self.lease_duration,
        }
    }
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub fn run(args: &RunArgs, audit: Option<Arc<AuditLog>>) -> anyhow::Result<ExitCode> {
    block_on(async {
        let mgmt = management_client().await?;
        let reader = args.common.reader(args.agent.fetch_timeout)?;
        let options = args.common.options(audit, false);
        let reconciler =
            Reconciler::new(mgmt.clone(), ClientCache::default()).with_options(options.clone());
        let mut agent = Agent::new(
            mgmt.clone(),
            reader,
            reconciler,
            options,
            args.agent.settings(),
        );
        if args.agent.leader_election {
            let lease = args.agent.lease();
            tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity, "leader election on");
            agent = agent.with_leadership(Leadership::elect(mgmt, &lease).await?);
        }
        let cancel = CancellationToken::new();
        let telemetry = Telemetry {
            metrics: Metrics::new(),
            health: Health::new(),
        };
        let servers = serve_endpoints(args, &agent, &telemetry, &cancel).await?;
        agent = agent.with_observer(telemetry);
        tokio::spawn(cancel_on_signal(cancel.clone()));
        tracing::info!(source = %args.common.source, interval = ?args.agent.interval, "agent started");
        agent.run(cancel).await;
        for server in servers {
            // The servers stop with the agent; a slow client must not hold the exit up.
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
        Ok(ExitCode::SUCCESS)
    })
    .context("running the agent")
}

/// Starts the metrics/health server and, when a secret is configured, the webhook receiver;
/// both stop when `cancel` fires.
async fn serve_endpoints(
    args: &RunArgs,
    agent: &Agent,
    telemetry: &Telemetry,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut servers = Vec::new();
    let router = health::router(telemetry.health.clone(), telemetry.metrics.clone());
    servers.push(serve_on("metrics", args.agent.metrics_addr, router, cancel).await?);
    match std::env::var(WEBHOOK_SECRET_ENV) {
        Ok(secret) if !secret.is_empty() => {
            let mut config = WebhookConfig::new(SecretString::from(secret))?;
            // Pushes to other branches need no fetch; for a tag, a semver range or a commit,
            // every push might matter.
            if let GitReference::Branch(branch) = args.common.reference.reference()? {
                config = config.with_branch(branch);
            }
            let router = webhook::router(config, agent.triggers(), Some(telemetry.metrics.clone()));
            servers.push(serve_on("webhook", args.agent.webhook_addr, router, cancel).await?);
        }
        _ => tracing::info!("no {WEBHOOK_SECRET_ENV}: the webhook receiver is off"),
    }
    Ok(servers)
}

async fn serve_on(
    what: &'static str,
    address: SocketAddr,
    router: axum::Router,
    cancel: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening for {what} on {address}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "{what} endpoint listening");
    let stop = cancel.clone().cancelled_owned();
    Ok(tokio::spawn(async move {
        if let Err(error) = health::serve(listener, router, stop).await {
            tracing::warn!(%error, "{what} endpoint failed");
        }
    }))
}

async fn cancel_on_signal(cancel: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
    }
    cancel.cancel();
}
