//! The corpus of bad manifests under `fixtures/manifests/invalid/`: every file gives exactly
//! the diagnostics in its `.expected` file (compiler style, file:line: severity: ...), no
//! panic, and the valid documents beside a bad one (`good-*`) are still returned.
//!
//! After a deliberate change of wording, regenerate with `SECRETSYNC_BLESS=1 cargo test
//! --test it manifest_corpus` and review the diff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secretsync::manifest::Parser;
use secretsync::source::{FileContent, Revision, Snapshot, SourceFile};

use crate::testenv::fleet::repo_path;

const CORPUS: &str = "fixtures/manifests/invalid";

fn snapshot_of(path: &str, bytes: Vec<u8>) -> Snapshot {
    Snapshot {
        revision: Revision::new(Some("main"), &"0".repeat(40)).expect("revision"),
        commit: None,
        files: vec![SourceFile {
            path: path.to_owned(),
            id: path.to_owned(),
            content: FileContent::Bytes(Arc::from(bytes)),
        }],
    }
}

#[test]
fn every_bad_manifest_gets_its_expected_diagnostics_and_spoils_only_itself() {
    let dir = repo_path(CORPUS);
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "the corpus shrank: {cases:?}");
    let bless = std::env::var_os("SECRETSYNC_BLESS").is_some();
    let mut failures = Vec::new();

    for case in cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_owned();
        let bytes = std::fs::read(&case).expect("read case");
        let good_documents = String::from_utf8_lossy(&bytes)
            .matches("name: good-")
            .count();

        let started = Instant::now();
        let set = Parser::new("default").parse(&snapshot_of(&format!("{CORPUS}/{name}"), bytes));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: parsing took {:?}",
            started.elapsed()
        );

        let rendered: String = set
            .diagnostics
            .iter()
            .map(|d| d.to_string() + "\n")
            .collect();
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &rendered).expect("write expected");
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if rendered != expected {
            failures.push(format!(
                "{name}:\n--- expected\n{expected}--- got\n{rendered}"
            ));
        }
        let good = set
            .syncs
            .iter()
            .filter(|s| s.key.name.starts_with("good-"))
            .count();
        assert_eq!(
            good, good_documents,
            "{name}: a valid document next to a bad one was lost"
        );
    }
    assert!(
        failures.is_empty(),
        "diagnostics differ:\n{}",
        failures.join("\n")
    );
}
