//! Child processes of the test environment (etcd, kube-apiservers, git servers): logs in
//! files, readiness waits, and a reaper that kills them when the test process goes away,
//! however it goes (panic, a static that is never dropped, SIGKILL).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills every registered process and removes the environment's directory once its stdin
/// closes. The test process holds the only write end, so the kernel closes it on any exit.
pub struct Reaper {
    pid_file: PathBuf,
    _stdin: ChildStdin,
    _child: Child,
}

// Ctrl-C in a terminal interrupts the whole process group: the reaper ignores it so that it
// still cleans up after the demo.
const REAPER_SCRIPT: &str = r#"
trap '' INT
read -r _ || true
pids=$(cat "$1/pids" 2>/dev/null)
if [ -n "$pids" ]; then
  kill $pids 2>/dev/null
  sleep 1
  kill -9 $pids 2>/dev/null
fi
rm -rf "$1"
"#;

impl Reaper {
    #[must_use]
    pub fn start(root: &Path) -> Reaper {
        let mut child = Command::new("sh")
            .args(["-c", REAPER_SCRIPT, "reaper"])
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start reaper");
        let stdin = child.stdin.take().expect("reaper stdin");
        Reaper {
            pid_file: root.join("pids"),
            _stdin: stdin,
            _child: child,
        }
    }

    /// Adds a process to the ones killed on exit.
    pub fn register(&self, pid: u32) {
        let mut pids = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.pid_file)
            .expect("open reaper pid file");
        writeln!(pids, "{pid}").expect("record pid");
    }
}

/// A long-running child process; killed on drop, restartable with the same command line.
pub struct Service {
    pub name: String,
    command: Command,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Starts `command` with stdin closed and stdout/stderr appended to `<log_dir>/<name>.log`.
    #[must_use]
    pub fn spawn(name: &str, command: Command, log_dir: &Path, reaper: &Reaper) -> Service {
        let mut service = Service {
            name: name.to_owned(),
            command,
            child: None,
            log: log_dir.join(format!("{name}.log")),
        };
        service.start(reaper);
        service
    }

    /// Starts the process (again, after `stop`), with the same command line.
    pub fn start(&mut self, reaper: &Reaper) {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let err = out.try_clone().expect("clone log handle");
        let child = self
            .command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} ({:?}): {e}", self.name, self.command));
        reaper.register(child.id());
        self.child = Some(child);
    }

    /// Whether the process is still alive (it may have exited on a bad flag or a taken port).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of the process's log, for failure messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback TCP port that was free a moment ago. Callers retry on the rare race.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral loopback port")
}

/// Polls `ready` every 100 ms until it holds, the service dies, or `timeout` passes.
pub async fn wait_ready<F, Fut>(
    service: &mut Service,
    timeout: Duration,
    mut ready: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if ready().await {
            return Ok(());
        }
        if !service.is_running() {
            return Err(format!("{} exited:\n{}", service.name, service.log_tail()));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} not ready after {timeout:?}:\n{}",
                service.name,
                service.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether something accepts TCP connections on the loopback port.
#[must_use]
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

/// Writes `contents` to `dir/name` with mode 0600 and returns the path.
// Called for the file it writes as much as for the path.
#[allow(clippy::must_use_candidate)]
pub fn write_private(dir: &Path, name: &str, contents: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file: File = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    file.write_all(contents.as_bytes()).expect("write file");
    path
}
