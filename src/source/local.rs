//! A local directory (or a git work tree, as it is on disk) as a source: its selected files,
//! named by their content digest, and a watch that says when they change.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::Snapshot;
use super::files::{self, FilesError};
use super::select::Selection;

/// A change keeps being coalesced while writes go on, but for no longer than this many
/// debounce periods, so that a directory that never rests is still re-read.
const MAX_DEBOUNCE_PERIODS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read local source {root}")]
    Read {
        root: PathBuf,
        #[source]
        source: FilesError,
    },
    #[error("cannot watch local source {root}")]
    Watch {
        root: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot start the watch of local source {root}")]
    WatchThread {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Something under the watched directory changed; read the source again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed;

/// A running watch; dropping it stops the watch, and its channel then closes.
#[derive(Debug)]
pub struct LocalWatch {
    _watcher: RecommendedWatcher,
}

/// A directory on disk. A git work tree is read as it is on disk, uncommitted edits
/// included: the revision names the content, not a commit.
#[derive(Debug, Clone)]
pub struct LocalSource {
    root: PathBuf,
    selection: Selection,
}

impl LocalSource {
    pub fn new(root: impl Into<PathBuf>, selection: Selection) -> Self {
        LocalSource {
            root: root.into(),
            selection,
        }
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the selected files. This blocks on the file system: async callers run it with
    /// `tokio::task::spawn_blocking`.
    pub fn read(&self) -> Result<Snapshot, LocalError> {
        let files =
            files::read_tree(&self.root, &self.selection).map_err(|source| LocalError::Read {
                root: self.root.clone(),
                source,
            })?;
        Ok(Snapshot {
            revision: files::content_revision(&files),
            commit: None,
            files,
        })
    }

    /// Watches the directory: after files change and then rest for `debounce`, one
    /// `Changed` arrives on the channel (a burst of writes gives one message). Changes under
    /// `.git/` and plain reads do not count. Watch errors (a lost event queue) count as a
    /// change: re-reading is the safe answer.
    pub fn watch(
        &self,
        debounce: Duration,
    ) -> Result<(LocalWatch, mpsc::Receiver<Changed>), LocalError> {
        let watch_error = |source| LocalError::Watch {
            root: self.root.clone(),
            source,
        };
        // Events carry absolute paths; a canonical root lets `.git` be recognised in them.
        let root = self
            .root
            .canonicalize()
            .map_err(|e| watch_error(notify::Error::io(e)))?;
        let (raw_tx, raw_rx) = std_mpsc::channel();
        let event_root = root.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            if counts_as_change(&event_root, &event) {
                // The receiver is gone only when the debounce thread ended; nothing to do.
                let _ = raw_tx.send(());
            }
        })
        .map_err(watch_error)?;
        watcher
            .watch(&root, RecursiveMode::Recursive)
            .map_err(watch_error)?;
        // Capacity 1: a change not yet taken already tells the receiver to re-read.
        let (tx, rx) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("secretsync-watch".to_owned())
            .spawn(move || debounce_loop(&raw_rx, &tx, debounce))
            .map_err(|source| LocalError::WatchThread {
                root: self.root.clone(),
                source,
            })?;
        Ok((LocalWatch { _watcher: watcher }, rx))
    }
}

fn counts_as_change(root: &Path, event: &notify::Result<Event>) -> bool {
    match event {
        Err(error) => {
            tracing::warn!(root = %root.display(), %error, "watch error; re-reading");
            true
        }
        Ok(event) if event.need_rescan() => true,
        Ok(event) => {
            // Opening and reading a file (as `read` does) must not look like a change, or
            // every read would trigger the next one. A close after writing is a change.
            let changes_content = match event.kind {
                EventKind::Access(access) => access == AccessKind::Close(AccessMode::Write),
                _ => true,
            };
            changes_content
                && (event.paths.is_empty() || event.paths.iter().any(|p| !in_git_dir(root, p)))
        }
    }
}

/// Whether `path` lies in a `.git` directory under `root` (git's own bookkeeping).
fn in_git_dir(root: &Path, path: &Path) -> bool {
    path.strip_prefix(root).is_ok_and(|relative| {
        relative
            .components()
            .any(|c| c == Component::Normal(".git".as_ref()))
    })
}

/// Turns raw change signals into debounced `Changed` messages until the watcher (the raw
/// sender) or the receiver goes away.
fn debounce_loop(raw: &std_mpsc::Receiver<()>, out: &mpsc::Sender<Changed>, quiet: Duration) {
    while raw.recv().is_ok() {
        if !settle(raw, quiet) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Closed(_)) = out.try_send(Changed) {
            return;
        }
    }
}

/// Waits until no signal came for `quiet`, or for at most `MAX_DEBOUNCE_PERIODS` of it.
/// Returns false when the watcher stopped meanwhile.
fn settle(raw: &std_mpsc::Receiver<()>, quiet: Duration) -> bool {
    let give_up = Instant::now() + quiet * MAX_DEBOUNCE_PERIODS;
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match raw.recv_timeout(quiet.min(left)) {
            Ok(()) => {}
            Err(std_mpsc::RecvTimeoutError::Timeout) => return true,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    const QUIET: Duration = Duration::from_millis(50);

    fn run(signals: impl FnOnce(&std_mpsc::Sender<()>)) -> usize {
        let (raw_tx, raw_rx) = std_mpsc::channel();
        let (tx, mut rx) = mpsc::channel(16);
        let thread = std::thread::spawn(move || debounce_loop(&raw_rx, &tx, QUIET));
        signals(&raw_tx);
        drop(raw_tx);
        thread.join().unwrap();
        std::iter::from_fn(|| rx.try_recv().ok()).count()
    }

    #[test]
    fn a_burst_gives_one_message() {
        // All signals are queued before the loop sees the first: one burst, whatever the timing.
        let count = run(|raw| {
            for _ in 0..10 {
                raw.send(()).unwrap();
            }
            std::thread::sleep(QUIET * 3);
        });
        assert_eq!(count, 1);
    }

    #[test]
    fn changes_apart_give_a_message_each() {
        let (raw_tx, raw_rx) = std_mpsc::channel();
        let (tx, mut rx) = mpsc::channel(16);
        let thread = std::thread::spawn(move || debounce_loop(&raw_rx, &tx, QUIET));
        for _ in 0..2 {
            raw_tx.send(()).unwrap();
            assert_eq!(rx.blocking_recv(), Some(Changed));
        }
        drop(raw_tx);
        thread.join().unwrap();
        assert_eq!(
            rx.blocking_recv(),
            None,
            "the channel closes with the watcher"
        );
    }

    #[test]
    fn endless_writes_still_give_messages() {
        let count = run(|raw| {
            let start = Instant::now();
            while start.elapsed() < QUIET * MAX_DEBOUNCE_PERIODS * 3 {
                raw.send(()).unwrap();
                std::thread::sleep(QUIET / 5);
            }
            std::thread::sleep(QUIET * 3);
        });
        assert!(count >= 2, "{count} messages");
    }

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn reads_and_git_bookkeeping_are_not_changes() {
        let root = Path::new("/repo");
        let cases = [
            (
                event(EventKind::Create(CreateKind::File), "/repo/a.yaml"),
                true,
            ),
            (
                event(EventKind::Modify(ModifyKind::Any), "/repo/.git/index"),
                false,
            ),
            (
                event(EventKind::Modify(ModifyKind::Any), "/repo/sub/.git/HEAD"),
                false,
            ),
            (
                event(EventKind::Modify(ModifyKind::Any), "/repo/.github/x.yaml"),
                true,
            ),
            (
                event(
                    EventKind::Access(AccessKind::Open(AccessMode::Any)),
                    "/repo/a.yaml",
                ),
                false,
            ),
            (
                event(
                    EventKind::Access(AccessKind::Close(AccessMode::Read)),
                    "/repo/a.yaml",
                ),
                false,
            ),
            (
                event(
                    EventKind::Access(AccessKind::Close(AccessMode::Write)),
                    "/repo/a.yaml",
                ),
                true,
            ),
            (
                event(
                    EventKind::Access(AccessKind::Close(AccessMode::Write)),
                    "/repo/.git/index",
                ),
                false,
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(
                counts_as_change(root, &Ok(event.clone())),
                expected,
                "{event:?}"
            );
        }
        assert!(counts_as_change(
            root,
            &Err(notify::Error::generic("queue overflow"))
        ));
    }
}
