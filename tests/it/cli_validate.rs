//! `secretsync validate` as a pull-request check: the real binary against a directory and
//! against a repository on the test git server; compiler-style text, JSON, exit codes.

use std::path::Path;
use std::process::{Command, Output};

use crate::testenv::fleet::repo_path;
use crate::testenv::git::{GitServers, HTTP_PASSWORD, HTTP_USER, Transport};

fn validate(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .arg("validate")
        .args(args)
        .env_remove("SECRETSYNC_GIT_PASSWORD")
        .envs(envs.iter().copied())
        .output()
        .expect("run secretsync validate")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    std::fs::copy(repo_path(name), to).expect("copy fixture");
}

#[test]
fn a_directory_with_a_bad_manifest_fails_with_compiler_style_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_fixture(
        "fixtures/manifests/basic/registry.yaml",
        &dir.path().join("clusters/registry.yaml"),
    );
    copy_fixture(
        "fixtures/manifests/invalid/bad-operator.yaml",
        &dir.path().join("clusters/bad.yaml"),
    );
    std::fs::write(dir.path().join("README.md"), "not a manifest").expect("write");

    let output = validate(&[dir.path().to_str().expect("utf-8")], &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("clusters/registry.yaml:3: ok: SecretSync flux-system/registry-credentials"),
        "{text}"
    );
    assert!(
        text.contains("clusters/bad.yaml:10: error: SecretSync flux-system/bad-operator: spec.clusterSelector.matchExpressions[0].operator:"),
        "{text}"
    );
    assert!(
        text.contains("clusters/bad.yaml:15: ok: SecretSync flux-system/good-bad-operator"),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("invalid: 2 file(s)")),
        "{text}"
    );

    let output = validate(
        &[
            dir.path().to_str().expect("utf-8"),
            "-o",
            "json",
            "--path",
            "clusters/registry.yaml",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["valid"], true);
    assert_eq!(report["files"], 1);
    assert_eq!(
        report["secretSyncs"][0]["name"],
        "flux-system/registry-credentials"
    );
    assert_eq!(
        report["secretSyncs"][0]["selector"],
        "environment=production"
    );
    assert!(
        report["revision"]
            .as_str()
            .is_some_and(|r| r.starts_with("sha256:")),
        "{report}"
    );
}

#[test]
fn a_repository_is_checked_at_its_commit() {
    let servers = GitServers::shared();
    let repo = servers.create_repo("validate");
    let manifest = std::fs::read_to_string(repo_path("fixtures/manifests/basic/registry.yaml"))
        .expect("fixture");
    let commit = repo
        .write("clusters/registry.yaml", manifest)
        .commit("add registry sync");
    let ca = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(ca.path(), &servers.http.ca_pem).expect("write CA");

    let url = servers.url(&repo, Transport::Https);
    let args = [
        url.as_str(),
        "--username",
        HTTP_USER,
        "--ca-file",
        ca.path().to_str().expect("utf-8"),
    ];
    let output = validate(&args, &[("SECRETSYNC_GIT_PASSWORD", HTTP_PASSWORD)]);
    let text = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains(&format!("at main@sha1:{commit}")), "{text}");

    // Without the password: the check could not run at all (exit 2), and says why.
    let output = validate(&args, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fetching https://"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let output = validate(&["ftp://example.invalid/repo.git"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let output = validate(&["/tmp", "--branch", "main", "--tag", "v1"], &[]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "conflicting references accepted"
    );
}
