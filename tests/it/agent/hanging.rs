//! A git server that hangs (connections are accepted and then nothing is said) or is down
//! (connections refused). The fetch fails (for a hang, when its deadline fires), the agent
//! says so and keeps serving the last good revision (a rotated Secret is still synced
//! through the watches), and once the server answers again the next poll fetches the new
//! commit. Meanwhile every status says why (`SourceReady` False).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::process::AgentProcess;
use super::{Fixture, eventually};
use crate::testenv::git::{GitServers, Transport};

/// A TCP proxy in front of the git daemon that can be told to hang: while hanging, new
/// connections are held open in silence; `answer` closes them and forwards again. It can
/// also go down (nothing listens: connections are refused) and come up on the same port.
struct GitProxy {
    port: u16,
    upstream: u16,
    hanging: Arc<AtomicBool>,
    release: Arc<Notify>,
    accepting: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl GitProxy {
    async fn start(upstream: u16) -> GitProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = GitProxy {
            port: listener.local_addr().expect("address").port(),
            upstream,
            hanging: Arc::new(AtomicBool::new(false)),
            release: Arc::new(Notify::new()),
            accepting: std::sync::Mutex::default(),
        };
        proxy.accept(listener);
        proxy
    }

    fn accept(&self, listener: TcpListener) {
        let (hang, freed, upstream) = (self.hanging.clone(), self.release.clone(), self.upstream);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (hang, freed) = (hang.clone(), freed.clone());
                tokio::spawn(async move {
                    if hang.load(Ordering::SeqCst) {
                        // Silence until released; then the connection drops.
                        freed.notified().await;
                        return;
                    }
                    let mut server = TcpStream::connect(("127.0.0.1", upstream))
                        .await
                        .expect("git daemon");
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        *self.accepting.lock().expect("task") = Some(task);
    }

    fn hang(&self) {
        self.hanging.store(true, Ordering::SeqCst);
    }

    fn answer(&self) {
        self.hanging.store(false, Ordering::SeqCst);
        self.release.notify_waiters();
    }

    /// Stops listening: new connections are refused.
    async fn go_down(&self) {
        let task = self.accepting.lock().expect("task").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    async fn come_up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the same port again");
        self.accept(listener);
    }
}

/// The agent, polling every second, fetching through a `GitProxy` of the fixture's
/// repository on the git daemon.
async fn agent_behind_proxy(fixture: &Fixture<'_>, name: &str) -> (GitProxy, AgentProcess) {
    let daemon = GitServers::shared().url(&fixture.repo, Transport::GitDaemon);
    let daemon_port: u16 = daemon
        .trim_start_matches("git://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("daemon port");
    let proxy = GitProxy::start(daemon_port).await;
    let url = daemon.replace(&daemon_port.to_string(), &proxy.port.to_string());
    let agent = AgentProcess::spawn(
        &fixture.env.mgmt.admin_kubeconfig(),
        fixture.work.path(),
        name,
        &[
            "--source",
            &url,
            "--namespaces",
            &fixture.namespace,
            "--interval",
            "1s",
            "--fetch-timeout",
            "2s",
            "--resync-schedule",
            "0 0 1 1 *",
        ],
        None,
    );
    (proxy, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_git_server_times_out_and_the_last_good_revision_keeps_serving() {
    let fixture = Fixture::new("agent-hang").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.put_source_secret("registry", "hang-token-1").await;
    fixture.put_source_secret("vault", "hang-token-3").await;
    fixture.commit_sync("registry", "dev", "registry");
    let (proxy, agent) = agent_behind_proxy(&fixture, "hang").await;
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "hang-token-1")
        .await;

    proxy.hang();
    fixture.commit_sync("vault", "dev", "vault");
    eventually("the fetch deadline fires", async || {
        agent.log().contains("took longer than 2s").then_some(())
    })
    .await;
    // Every status says why the revision is not the newest, and that the copies stay.
    let failed = fixture
        .until_source_ready("registry", "False", "the status tells the fetch failed")
        .await;
    assert_eq!(failed.reason, "FetchFailed");
    assert!(
        failed.message.contains("took longer than 2s") && failed.message.contains("main@sha1:"),
        "{}",
        failed.message
    );
    // The agent still works from the last good revision.
    fixture.put_source_secret("registry", "hang-token-2").await;
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "hang-token-2")
        .await;
    assert_eq!(fixture.leaf_token("leaf-cluster-1", "vault").await, None);

    proxy.answer();
    fixture
        .until_leaf_holds("leaf-cluster-1", "vault", "hang-token-3")
        .await;
    fixture
        .until_source_ready(
            "registry",
            "True",
            "the status tells the source is read again",
        )
        .await;
    fixture.assert_no_leaks(&agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_server_that_is_down_is_reported_and_the_last_good_revision_keeps_serving() {
    let fixture = Fixture::new("agent-down").await;
    fixture.label_cluster("leaf-cluster-1", "dev").await;
    fixture.put_source_secret("registry", "down-token-1").await;
    fixture.put_source_secret("vault", "down-token-2").await;
    fixture.commit_sync("registry", "dev", "registry");
    let (proxy, mut agent) = agent_behind_proxy(&fixture, "down").await;
    fixture
        .until_leaf_holds("leaf-cluster-1", "registry", "down-token-1")
        .await;

    proxy.go_down().await;
    fixture.commit_sync("vault", "dev", "vault");
    let failed = fixture
        .until_source_ready("registry", "False", "the status tells the server is down")
        .await;
    assert_eq!(failed.reason, "FetchFailed");
    assert!(
        failed.message.to_lowercase().contains("connection refused")
            && failed.message.contains("main@sha1:"),
        "{}",
        failed.message
    );
    assert_eq!(fixture.leaf_token("leaf-cluster-1", "vault").await, None);
    assert_eq!(
        fixture.leaf_token("leaf-cluster-1", "registry").await,
        Some("down-token-1".to_owned()),
        "the last good revision's copy stays"
    );

    proxy.come_up().await;
    fixture
        .until_leaf_holds("leaf-cluster-1", "vault", "down-token-2")
        .await;
    fixture
        .until_source_ready(
            "registry",
            "True",
            "the status tells the source is read again",
        )
        .await;
    assert_eq!(agent.try_exit_status(), None, "the agent never stopped");
    fixture.assert_no_leaks(&agent);
}
