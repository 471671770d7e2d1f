//! Parsing at repository scale: a generated repository of 2,000 files holding 10,000
//! SecretSyncs, read from a commit and parsed cold, then again after a commit that changes
//! one file (the parse cache keeps the other 1,999). Prints wall times and peak RSS.
//!
//! Run: `cargo bench --bench parse` (figures in bench/RESULTS.md).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use secretsync::manifest::Parser;
use secretsync::source::Selection;
use secretsync::source::git::{GitAuth, GitReference, GitSource, RemoteUrl};

const FILES: usize = 2_000;
const SYNCS_PER_FILE: usize = 5;
const RUNS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    generate(&work);
    let url = RemoteUrl::parse(&format!("file://{}", work.display())).expect("url");
    let selection = Selection::default();

    let mut cold = Vec::new();
    let mut cold_read = Vec::new();
    let mut incremental = Vec::new();
    let mut incremental_read = Vec::new();
    for run in 0..RUNS {
        let cache = tempfile::tempdir().expect("cache");
        let source = GitSource::new(
            url.clone(),
            GitReference::default(),
            GitAuth::default(),
            cache.path(),
        );
        let mut parser = Parser::new("default");

        let fetched = source.fetch().expect("fetch");
        let started = Instant::now();
        let snapshot = source.snapshot(&fetched, &selection).expect("snapshot");
        let read = started.elapsed();
        let set = parser.parse(&snapshot);
        cold.push(started.elapsed());
        cold_read.push(read);
        assert_eq!(
            set.syncs.len(),
            FILES * SYNCS_PER_FILE,
            "{:?}",
            set.diagnostics.first()
        );

        change_one_file(&work, run);
        let fetched = source.fetch().expect("fetch");
        let started = Instant::now();
        let snapshot = source
            .snapshot_skipping(&fetched, &selection, &|path, id| parser.knows(path, id))
            .expect("snapshot");
        incremental_read.push(started.elapsed());
        let set = parser.parse(&snapshot);
        incremental.push(started.elapsed());
        assert_eq!(set.files_parsed, 1);
        assert_eq!(set.syncs.len(), FILES * SYNCS_PER_FILE);
    }
    println!(
        "repository: {FILES} files, {} SecretSyncs; {RUNS} runs, median (min..max)",
        FILES * SYNCS_PER_FILE
    );
    println!("cold: read commit tree      {}", summary(&mut cold_read));
    println!("cold: read + parse          {}", summary(&mut cold));
    println!(
        "incremental: read tree      {}",
        summary(&mut incremental_read)
    );
    println!("incremental: read + parse   {}", summary(&mut incremental));
    println!("peak RSS                    {} MiB", peak_rss_kib() / 1024);
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "{:>8.1?} ({:.1?}..{:.1?})",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    )
}

fn sync_yaml(file: usize, index: usize) -> String {
    format!(
        "---\napiVersion: capi.weave.works/v1alpha1\nkind: SecretSync\nmetadata:\n  name: sync-{file}-{index}\n  namespace: team-{team}\n  labels:\n    app.kubernetes.io/part-of: platform\nspec:\n  clusterSelector:\n    matchLabels:\n      environment: production\n    matchExpressions:\n      - key: region\n        operator: In\n        values: [eu-west, us-east]\n  secretRef:\n    name: registry-{index}\n  targetNamespace: kube-system\n",
        team = file % 20
    )
}

fn generate(work: &Path) {
    for file in 0..FILES {
        let path = work.join(format!("teams/team-{}/syncs-{file}.yaml", file % 20));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let text: String = (0..SYNCS_PER_FILE).map(|i| sync_yaml(file, i)).collect();
        std::fs::write(path, text).expect("write");
    }
    git(work, &["init", "--quiet", "--initial-branch=main"]);
    git(work, &["add", "--all"]);
    git(work, &["commit", "--quiet", "--message", "generated"]);
}

fn change_one_file(work: &Path, run: usize) {
    let path = work.join("teams/team-0/syncs-0.yaml");
    let mut text = std::fs::read_to_string(&path).expect("read");
    text += "# changed in run ";
    text += &run.to_string();
    text += "\n";
    std::fs::write(path, text).expect("write");
    git(
        work,
        &["commit", "--quiet", "--all", "--message", "change one file"],
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@secretsync.invalid",
        ])
        .args(args)
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// Peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
