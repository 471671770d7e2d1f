//! An agent process: the real binary with the management cluster's kubeconfig, its log in a
//! file, stopped by signal or killed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Fixture;

pub struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    pub(super) fn start(
        fixture: &Fixture<'_>,
        name: &str,
        extra: &[&str],
        webhook_secret: Option<&str>,
    ) -> AgentProcess {
        let mut args = vec![
            "--source",
            &fixture.url,
            "--namespaces",
            &fixture.namespace,
            "--lease-namespace",
            &fixture.namespace,
        ];
        args.extend(extra);
        AgentProcess::spawn(
            &fixture.env.mgmt.admin_kubeconfig(),
            fixture.work.path(),
            name,
            &args,
            webhook_secret,
        )
    }

    /// `secretsync run` named `name` with `args`, talking to the management cluster through
    /// `kubeconfig`; its files (kubeconfig, log, data) go to `work`.
    pub fn spawn(
        kubeconfig: &str,
        work: &Path,
        name: &str,
        args: &[&str],
        webhook_secret: Option<&str>,
    ) -> AgentProcess {
        let kubeconfig_file = work.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig_file, kubeconfig).expect("kubeconfig");
        let log = work.join(format!("{name}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_secretsync"));
        command
            .arg("run")
            .arg("--data-dir")
            .arg(work.join(format!("{name}-data")))
            .args(["--identity", name])
            // Ephemeral ports: agents of parallel tests must not collide.
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--webhook-addr",
                "127.0.0.1:0",
            ])
            .args(args)
            .env("KUBECONFIG", &kubeconfig_file)
            .env("SECRETSYNC_LOG", "info,secretsync=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(secret) = webhook_secret {
            command.env("SECRETSYNC_WEBHOOK_SECRET", secret);
        }
        let child = command.spawn().expect("start secretsync run");
        AgentProcess { child, log }
    }

    /// The address an endpoint (`metrics`, `webhook`) is bound to, from the agent's log.
    pub async fn endpoint(&self, what: &str) -> SocketAddr {
        let announcement = format!("{what} endpoint listening");
        super::eventually(&announcement, async || {
            let log = self.log();
            let line = log.lines().find(|line| line.contains(&announcement))?;
            let bound = line.split("bound=").nth(1)?;
            bound.split_whitespace().next()?.parse().ok()
        })
        .await
    }

    /// The process id, to read its CPU time and memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as Kubernetes does to stop a Pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    }

    /// SIGKILL: no chance to clean up, as when a node dies.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// Waits for the process to exit, failing the test after `timeout`.
    pub async fn exit_status(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
