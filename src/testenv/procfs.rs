//! What a benchmark reads about a process from `/proc`: CPU time and memory. Linux only, as
//! the test environment is.

use std::time::Duration;

/// A process: `self` (the caller) or a child by pid.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    Current,
    Pid(u32),
}

impl Proc {
    fn file(self, name: &str) -> String {
        let path = match self {
            Proc::Current => format!("/proc/self/{name}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{name}"),
        };
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    /// User + system CPU time so far.
    #[must_use]
    pub fn cpu_time(self) -> Duration {
        let stat = self.file("stat");
        // The fields after the command name (in parentheses, and it may hold spaces); utime
        // and stime are fields 14 and 15 of the line, 11 and 12 of these.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat format")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        Duration::from_millis(ticks * 1000 / clock_ticks())
    }

    /// (VmRSS, VmHWM): resident memory now and at its peak, in KiB.
    #[must_use]
    pub fn memory_kib(self) -> (u64, u64) {
        let status = self.file("status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// Resets the calling process's VmHWM to its current RSS (Linux 4.0 and later), so that
/// each measurement has its own peak.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100)
    })
}
