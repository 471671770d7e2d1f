//! An agent process: the real binary with the management cluster's kubeconfig, its log in a
//! file, stopped by signal or killed.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Fixture;

pub struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    pub fn start(fixture: &Fixture, name: &str, extra: &[&str]) -> AgentProcess {
        let work = fixture.work.path();
        let kubeconfig = work.join("mgmt.kubeconfig");
        std::fs::write(&kubeconfig, fixture.env.mgmt.admin_kubeconfig()).expect("kubeconfig");
        let log = work.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .args(["run", "--source", &fixture.url])
            .args(["--namespaces", &fixture.namespace])
            .arg("--data-dir")
            .arg(work.join(format!("{name}-data")))
            .args(["--identity", name, "--lease-namespace", &fixture.namespace])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("SECRETSYNC_LOG", "info,secretsync=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start secretsync run");
        AgentProcess { child, log }
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
