//! `secretsync demo`: the newcomer's first command. Starts the local test environment (a
//! management cluster and two leaf clusters), a git repository holding the documented
//! example, and the agent; shows the Secret arriving on the leaf and the status; then keeps
//! everything running until Ctrl-C so that a person can label clusters and push commits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::sync::desired::REVISION_ANNOTATION;
use crate::testenv::process::write_private;
use crate::testenv::{LEAF_CLUSTERS, TestEnv, scenario};

/// The documented example: SecretSync `my-dev-secret-syncer` in `default`.
const EXAMPLE_MANIFEST: &str = include_str!("../../fixtures/scenario/my-dev-secret-syncer.yaml");

/// The demo's source Secret value: obviously fake, and never printed.
const DEMO_VALUE: &str = "not-a-real-password-demo-only";

/// The leaf the example selects (labelled `environment: dev`).
const DEV_LEAF: &str = "leaf-cluster-1";

/// How long the agent may take to copy the Secret on a loaded machine.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Exit once the Secret has arrived and the status is shown, instead of waiting for
    /// Ctrl-C (for tests and CI).
    #[arg(long)]
    pub exit_after_sync: bool,
}

/// What the demo set up, for the guide at the end.
struct Demo {
    kubeconfigs: PathBuf,
    work_tree: PathBuf,
    agent_log: PathBuf,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let env = TestEnv::start();
    progress(started, "clusters ready");
    let outcome = super::block_on(async {
        let demo = arrange(&env, started).await?;
        let mut agent = start_agent(&env, &demo)?;
        let result = show_sync(&env, &demo, started).await;
        if result.is_ok() {
            print_guide(&demo);
            if !args.exit_after_sync {
                eprintln!("demo: running until Ctrl-C…");
                tokio::signal::ctrl_c()
                    .await
                    .context("waiting for Ctrl-C")?;
            }
        }
        let _ = agent.kill();
        let _ = agent.wait();
        result
    });
    // Dropping the environment stops the apiservers and etcd. The reaper would remove the
    // directory on exit too; removing it here lets the last line say so truthfully.
    let root = env.root().to_owned();
    drop(env);
    let _ = std::fs::remove_dir_all(&root);
    outcome?;
    progress(started, "stopped; the demo's directory is removed");
    Ok(ExitCode::SUCCESS)
}

fn progress(started: Instant, step: &str) {
    eprintln!("demo [{:>6.1?}]: {step}", started.elapsed());
}

/// The management cluster's side of the example, the kubeconfig files, and the repository.
async fn arrange(env: &TestEnv, started: Instant) -> anyhow::Result<Demo> {
    let kubeconfigs = env.root().join("kubeconfigs");
    std::fs::create_dir_all(&kubeconfigs).context("creating the kubeconfig directory")?;
    write_private(&kubeconfigs, "mgmt.yaml", &env.mgmt.admin_kubeconfig());
    for leaf in &env.leaves {
        write_private(
            &kubeconfigs,
            &format!("{}.yaml", leaf.name),
            &leaf.admin_kubeconfig(),
        );
    }

    progress(
        started,
        "registering leaf-cluster-1 and leaf-cluster-2 as GitopsClusters in default",
    );
    scenario::arrange_clusters(env, "default", &[DEV_LEAF], DEMO_VALUE).await;
    progress(
        started,
        "committing the documented SecretSync to a local git repository",
    );
    let work_tree = create_repository(env.root())?;
    Ok(Demo {
        kubeconfigs,
        work_tree,
        agent_log: env.root().join("agent.log"),
    })
}

/// A bare repository `repo.git` (the agent's source) and a work tree `work` cloned from it,
/// holding the documented example in one commit.
fn create_repository(root: &Path) -> anyhow::Result<PathBuf> {
    let bare = root.join("repo.git");
    let work = root.join("work");
    git(
        root,
        &["init", "--quiet", "--bare", "-b", "main", "repo.git"],
    )?;
    git(root, &["init", "--quiet", "-b", "main", "work"])?;
    git(&work, &["config", "user.name", "secretsync demo"])?;
    git(&work, &["config", "user.email", "demo@secretsync.invalid"])?;
    let remote = bare.to_str().context("the demo directory is not UTF-8")?;
    git(&work, &["remote", "add", "origin", remote])?;
    std::fs::write(work.join("my-dev-secret-syncer.yaml"), EXAMPLE_MANIFEST)
        .context("writing the example manifest")?;
    git(&work, &["add", "."])?;
    git(
        &work,
        &[
            "commit",
            "--quiet",
            "-m",
            "Sync my-dev-secret to dev clusters",
        ],
    )?;
    git(
        &work,
        &["push", "--quiet", "--set-upstream", "origin", "main"],
    )?;
    Ok(work)
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running git {} (is git installed?)", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The agent, as this same executable run as `secretsync run`, logging to `agent.log`.
fn start_agent(env: &TestEnv, demo: &Demo) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding the secretsync executable")?;
    let source = format!("file://{}", env.root().join("repo.git").display());
    let log = std::fs::File::create(&demo.agent_log).context("creating agent.log")?;
    let child = Command::new(exe)
        .args(["run", "--source", &source, "--namespaces", "default"])
        .args(["--interval", "5s"])
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--webhook-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(env.root().join("agent-data"))
        .env("KUBECONFIG", demo.kubeconfigs.join("mgmt.yaml"))
        .env_remove("SECRETSYNC_NAMESPACES")
        .env_remove("SECRETSYNC_SOURCE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cloning the agent.log handle")?)
        .stderr(log)
        .spawn()
        .context("starting the agent")?;
    // Killed with the environment's servers if the demo dies without cleaning up.
    env.reaper().register(child.id());
    Ok(child)
}

/// Waits for the Secret on the dev leaf and prints it (never its data), then the status.
async fn show_sync(env: &TestEnv, demo: &Demo, started: Instant) -> anyhow::Result<()> {
    progress(
        started,
        "agent started (`secretsync run`, polling every 5s); waiting for the Secret on leaf-cluster-1",
    );
    let leaf: Api<Secret> = Api::namespaced(env.leaf(DEV_LEAF).client().await, "my-namespace");
    let deadline = Instant::now() + SYNC_TIMEOUT;
    let secret = loop {
        if let Ok(Some(secret)) = leaf.get_opt("my-dev-secret").await {
            break secret;
        }
        if Instant::now() > deadline {
            bail!(
                "the Secret did not arrive on {DEV_LEAF} within {SYNC_TIMEOUT:?}; see {}",
                demo.agent_log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let revision = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .map_or("?", String::as_str);
    progress(started, "the Secret arrived");
    println!(
        "{DEV_LEAF}: Secret my-namespace/my-dev-secret (resourceVersion {}, {REVISION_ANNOTATION}: {revision})",
        secret.metadata.resource_version.as_deref().unwrap_or("?"),
    );
    println!();
    println!("$ secretsync status -n default");
    print!("{}", status_when_ready(demo).await?);
    Ok(())
}

/// `secretsync status -n default`'s output, once it reports Ready (or after ~30s as it is).
async fn status_when_ready(demo: &Demo) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("finding the secretsync executable")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = Command::new(&exe)
            .args(["status", "-n", "default"])
            .env("KUBECONFIG", demo.kubeconfigs.join("mgmt.yaml"))
            .output()
            .context("running secretsync status")?;
        if output.status.success() || Instant::now() > deadline {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_guide(demo: &Demo) {
    let kubeconfig = |name: &str| demo.kubeconfigs.join(format!("{name}.yaml"));
    let mgmt = kubeconfig("mgmt");
    println!();
    println!("The demo is running. Kubeconfigs (cluster admin):");
    println!("  management:     {}", mgmt.display());
    for leaf in LEAF_CLUSTERS {
        println!(
            "  {:<15} {}",
            format!("{leaf}:"),
            kubeconfig(leaf).display()
        );
    }
    println!("Git work tree (push to origin; the agent polls every 5s):");
    println!("  {}", demo.work_tree.display());
    println!("Agent log:");
    println!("  {}", demo.agent_log.display());
    println!();
    println!("Try:");
    println!(
        "  kubectl --kubeconfig {} -n default label gitopscluster leaf-cluster-2 environment=dev --overwrite",
        mgmt.display()
    );
    println!(
        "  kubectl --kubeconfig {} -n my-namespace get secrets",
        kubeconfig("leaf-cluster-2").display()
    );
    println!(
        "  cd {} && $EDITOR my-dev-secret-syncer.yaml && git commit -am 'change' && git push",
        demo.work_tree.display()
    );
    println!(
        "  KUBECONFIG={} cargo run -- status -n default",
        mgmt.display()
    );
}
