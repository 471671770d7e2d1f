//! The Go-built `kube-apiserver` and `etcd`: found in the cache outside the work tree, or
//! built there once by `tests/testenv/build.sh` (which holds a file lock while it builds).

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
}

impl Binaries {
    /// Returns the cached binaries, building them first when they are missing.
    #[must_use]
    pub fn ensure() -> Binaries {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testenv/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}); see its output above",
            script.display(),
            output.status
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("build.sh prints the cache dir"),
        );
        Binaries {
            kube_apiserver: dir.join("kube-apiserver"),
            etcd: dir.join("etcd"),
        }
    }
}
