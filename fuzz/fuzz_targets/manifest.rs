//! Any file content in the repository: parsed or refused with diagnostics that point into
//! the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretsync::manifest::Parser;
use secretsync::source::{FileContent, Revision, Snapshot, SourceFile};

fuzz_target!(|data: &[u8]| {
    let snapshot = Snapshot {
        revision: Revision::new(Some("main"), "0123456789abcdef0123456789abcdef01234567")
            .expect("a valid revision"),
        commit: None,
        files: vec![SourceFile {
            path: "clusters/fuzzed.yaml".to_owned(),
            id: "0".repeat(40),
            content: FileContent::Bytes(data.into()),
        }],
    };
    let set = Parser::new("default").parse(&snapshot);
    for diagnostic in &set.diagnostics {
        assert_eq!(diagnostic.path, "clusters/fuzzed.yaml");
    }
});
