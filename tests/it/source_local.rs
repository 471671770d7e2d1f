//! A local directory is a source as it is on disk: the selected files are read (the ignore
//! file applied, oversized files reported, symlinks not followed), and a watch says within
//! a second or two that something changed, once per burst of writes.

use std::fs;
use std::path::Path;
use std::time::Duration;

use secretsync::source::{Algorithm, Changed, FileContent, LocalSource, Selection};
use tokio::sync::mpsc;

/// A change must be noticed within this time (DESIGN: "notify for local paths").
const NOTICE_WITHIN: Duration = Duration::from_secs(2);
const DEBOUNCE: Duration = Duration::from_millis(300);

fn write(root: &Path, relative: &str, content: &str) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().expect("parent")).expect("create directories");
    fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Messages that arrive within `window`.
async fn messages_within(changes: &mut mpsc::Receiver<Changed>, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut count = 0;
    while let Ok(Some(Changed)) = tokio::time::timeout_at(deadline, changes.recv()).await {
        count += 1;
    }
    count
}

#[test]
fn reads_the_selected_files_of_a_directory() {
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "secret.yaml", "kind: Secret\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "clusters/registry.yaml", "kind: SecretSync\n");
    write(root, "clusters/prod/token.yml", "kind: SecretSync\n");
    write(root, "clusters/notes.md", "not yaml\n");
    write(root, "clusters/examples/sample.yaml", "kind: SecretSync\n");
    write(root, "clusters/huge.yaml", &"#".repeat(4096));
    write(root, "apps/app.yaml", "kind: Deployment\n");
    write(root, ".secretsyncignore", "examples/\n");
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        root.join("clusters/link.yaml"),
    )
    .expect("symlink to a file outside");
    std::os::unix::fs::symlink(outside.path(), root.join("clusters/outside"))
        .expect("symlink to a directory outside");

    let selection = Selection::new(&["clusters"])
        .expect("selection")
        .with_max_file_size(1024);
    let source = LocalSource::new(root, selection);
    let snapshot = source.read().expect("read the directory");

    let paths: Vec<_> = snapshot.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "clusters/huge.yaml",
            "clusters/prod/token.yml",
            "clusters/registry.yaml"
        ]
    );
    assert!(matches!(
        snapshot.files[0].content,
        FileContent::TooLarge {
            size: 4096,
            limit: 1024
        }
    ));
    let expected_id = git2::Oid::hash_object(git2::ObjectType::Blob, b"kind: SecretSync\n")
        .expect("hash")
        .to_string();
    assert_eq!(snapshot.files[2].id, expected_id);
    assert!(snapshot.commit.is_none());
    assert_eq!(snapshot.revision.algorithm(), Algorithm::Sha256);

    // The revision names the content: unchanged on a re-read, changed by an edit.
    assert_eq!(source.read().expect("re-read").revision, snapshot.revision);
    write(
        root,
        "clusters/registry.yaml",
        "kind: SecretSync # edited\n",
    );
    assert_ne!(
        source.read().expect("read edit").revision,
        snapshot.revision
    );
    // Files outside the selection do not change it.
    let edited = source.read().expect("read").revision;
    write(root, "apps/app.yaml", "kind: Deployment # edited\n");
    assert_eq!(source.read().expect("read").revision, edited);
}

#[tokio::test]
async fn a_write_is_noticed_within_two_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "clusters/a.yaml", "a: 1\n");
    let source = LocalSource::new(dir.path(), Selection::default());
    let (_watch, mut changes) = source.watch(DEBOUNCE).expect("watch");

    write(dir.path(), "clusters/a.yaml", "a: 2\n");
    let noticed = tokio::time::timeout(NOTICE_WITHIN, changes.recv()).await;
    assert_eq!(noticed, Ok(Some(Changed)), "no change noticed");

    // A new directory is watched as well.
    write(dir.path(), "new/deep/b.yaml", "b: 1\n");
    let noticed = tokio::time::timeout(NOTICE_WITHIN, changes.recv()).await;
    assert_eq!(noticed, Ok(Some(Changed)), "no change noticed in a new dir");
}

#[tokio::test]
async fn a_burst_of_writes_is_one_notification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = LocalSource::new(dir.path(), Selection::default());
    let (_watch, mut changes) = source.watch(DEBOUNCE).expect("watch");

    for i in 0..20 {
        write(
            dir.path(),
            &format!("burst/{}.yaml", i % 5),
            &format!("i: {i}\n"),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let count = messages_within(&mut changes, DEBOUNCE * 4 + NOTICE_WITHIN).await;
    // One is expected; a slow machine may split the burst once, never per write.
    assert!(
        (1..=2).contains(&count),
        "{count} notifications for one burst"
    );
}

#[tokio::test]
async fn reads_and_git_bookkeeping_are_not_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", "a: 1\n");
    write(dir.path(), ".git/HEAD", "ref: refs/heads/main\n");
    let source = LocalSource::new(dir.path(), Selection::default());
    let (_watch, mut changes) = source.watch(DEBOUNCE).expect("watch");

    source.read().expect("read");
    write(dir.path(), ".git/index", "bookkeeping");
    write(dir.path(), ".git/refs/heads/main", "0123\n");
    assert_eq!(messages_within(&mut changes, DEBOUNCE * 3).await, 0);
}

#[tokio::test]
async fn dropping_the_watch_closes_its_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = LocalSource::new(dir.path(), Selection::default());
    let (watch, mut changes) = source.watch(DEBOUNCE).expect("watch");
    drop(watch);
    let closed = tokio::time::timeout(NOTICE_WITHIN, changes.recv()).await;
    assert_eq!(
        closed,
        Ok(None),
        "the channel stays open after the watch is dropped"
    );
}
