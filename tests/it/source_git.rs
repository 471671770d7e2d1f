//! The git source against real servers: every transport and auth kind, references
//! (branch, tag, semver, commit), incremental fetches, force-pushes, deleted branches, empty
//! repositories, and manifests read from the commit tree only under the configured paths.

use secrecy::SecretString;
use secretsync::source::git::signature::{SignatureError, TrustedKeysFile};
use secretsync::source::git::{
    GitAuth, GitError, GitReference, GitSource, KnownHosts, RemoteUrl, SshAuth,
};
use secretsync::source::{FileContent, Selection, Snapshot};

use crate::testenv::fleet::repo_path;
use crate::testenv::git::{
    GitServers, HTTP_PASSWORD, HTTP_TOKEN, HTTP_USER, Repo, Transport, ssh_signing_key,
};

const TRANSPORTS: [Transport; 5] = [
    Transport::File,
    Transport::GitDaemon,
    Transport::Http,
    Transport::Https,
    Transport::Ssh,
];

fn manifest() -> String {
    std::fs::read_to_string(repo_path("fixtures/manifests/basic/registry.yaml")).expect("fixture")
}

/// Everything the test servers ask for: a password, an SSH key with known_hosts, the CA.
fn full_auth(servers: &GitServers) -> GitAuth {
    let private_key = std::fs::read_to_string(&servers.ssh.client_key).expect("client key");
    let known_hosts = std::fs::read_to_string(&servers.ssh.known_hosts).expect("known_hosts");
    GitAuth {
        username: Some(HTTP_USER.to_owned()),
        password: Some(SecretString::from(HTTP_PASSWORD)),
        ssh: Some(SshAuth {
            private_key: SecretString::from(private_key),
            passphrase: None,
            known_hosts: KnownHosts::parse(&known_hosts).expect("parse known_hosts"),
        }),
        ..GitAuth::default()
    }
    .with_ca_bundle(servers.http.ca_pem.as_bytes())
    .expect("CA bundle")
}

struct Fixture {
    servers: &'static GitServers,
    repo: Repo,
    cache: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let servers = GitServers::shared();
        Fixture {
            servers,
            repo: servers.create_repo("source"),
            cache: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn source(&self, transport: Transport, reference: GitReference, auth: GitAuth) -> GitSource {
        let url = RemoteUrl::parse(&self.servers.url(&self.repo, transport)).expect("URL");
        GitSource::new(url, reference, auth, self.cache.path())
    }

    fn main_over(&self, transport: Transport) -> GitSource {
        self.source(transport, GitReference::default(), full_auth(self.servers))
    }

    /// `main` over the git daemon, accepting only commits signed by the keys of a file
    /// (`dir/trusted-keys`, written with `keys` first); returns the file too, for rewriting.
    fn verifying(&self, dir: &std::path::Path, keys: &str) -> (GitSource, std::path::PathBuf) {
        let file = dir.join("trusted-keys");
        std::fs::write(&file, keys).expect("write the trusted keys");
        let trusted = TrustedKeysFile::open(&file).expect("trusted keys");
        (
            self.main_over(Transport::GitDaemon)
                .verifying_signatures(trusted),
            file,
        )
    }

    /// Commits `file` unsigned and checks that `source` refuses it as unsigned.
    fn assert_an_unsigned_commit_is_refused(&self, source: &GitSource, file: &str) {
        let unsigned = self.repo.write(file, manifest()).commit("not signed");
        let refused = source.fetch().expect_err("an unsigned commit is refused");
        assert!(
            matches!(&refused, GitError::Signature(SignatureError::Unsigned { commit }) if *commit == unsigned),
            "{refused}"
        );
    }
}

fn paths(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.files.iter().map(|f| f.path.as_str()).collect()
}

#[test]
fn reads_manifests_of_the_commit_over_every_transport() {
    let fixture = Fixture::new();
    let repo = &fixture.repo;
    repo.write("clusters/registry.yaml", manifest())
        .write("clusters/prod/more.yml", manifest())
        .write("clusters/README.md", "not a manifest")
        .write("clusters/drafts/draft.yaml", manifest())
        .write("apps/app.yaml", manifest())
        .write(".secretsyncignore", "drafts/\n");
    std::os::unix::fs::symlink(
        "../apps/app.yaml",
        repo.work_path().join("clusters/link.yaml"),
    )
    .expect("symlink");
    let commit = repo.commit("add registry credentials sync");

    for transport in TRANSPORTS {
        let source = fixture.main_over(transport);
        let fetched = source
            .fetch()
            .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        assert_eq!(
            fetched.revision.to_string(),
            format!("main@sha1:{commit}"),
            "{transport:?}"
        );
        assert_eq!(fetched.commit.subject, "add registry credentials sync");
        assert_eq!(fetched.rewritten_from, None);

        let snapshot = source
            .snapshot(&fetched, &Selection::new(&["clusters"]).unwrap())
            .expect("snapshot");
        assert_eq!(
            paths(&snapshot),
            ["clusters/prod/more.yml", "clusters/registry.yaml"],
            "{transport:?}"
        );
        let FileContent::Bytes(bytes) = &snapshot.files[1].content else {
            panic!("not read")
        };
        assert_eq!(&bytes[..], manifest().as_bytes());
        // Ids are git blob ids, so that a parse cache keyed by them survives new commits.
        assert_eq!(
            snapshot.files[1].id,
            repo.git(&["rev-parse", "HEAD:clusters/registry.yaml"])
        );
    }
}

#[test]
fn a_second_fetch_with_nothing_new_transfers_nothing() {
    let fixture = Fixture::new();
    fixture.repo.write("a.yaml", manifest()).commit("one");
    let source = fixture.main_over(Transport::Http);
    let first = source.fetch().expect("first fetch");
    assert!(first.received_objects > 0);
    let second = source.fetch().expect("second fetch");
    assert_eq!(second.revision, first.revision);
    assert_eq!(second.received_objects, 0);

    let next = fixture.repo.write("b.yaml", manifest()).commit("two");
    let third = source.fetch().expect("third fetch");
    assert_eq!(third.revision.commit(), Some(next.as_str()));
    assert!(
        third.received_objects < first.received_objects + 3,
        "fetched more than the new commit"
    );
}

/// Every file under the cache's `objects/`: packs, their indexes, loose objects.
fn object_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read cache dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(object_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_damaged_cache_is_cloned_again() {
    let fixture = Fixture::new();
    fixture.repo.write("a.yaml", manifest()).commit("one");
    let source = fixture.main_over(Transport::Http);
    let first = source.fetch().expect("first fetch");
    let good = source
        .snapshot(&first, &Selection::default())
        .expect("snapshot");

    // Garbage in every object file of the cache, as a disk error or a killed write leaves it.
    let objects: Vec<_> = object_files(fixture.cache.path())
        .into_iter()
        .filter(|path| path.components().any(|c| c.as_os_str() == "objects"))
        .collect();
    assert!(!objects.is_empty(), "the fetch stored no objects");
    for path in &objects {
        let length = std::fs::metadata(path).expect("object file").len();
        let garbage = vec![0x5a_u8; usize::try_from(length).expect("size")];
        // Loose objects and packs are written read-only by git.
        let mut permissions = std::fs::metadata(path).expect("metadata").permissions();
        #[allow(clippy::permissions_set_readonly_false)] // test files, owned by the test
        permissions.set_readonly(false);
        std::fs::set_permissions(path, permissions).expect("make writable");
        std::fs::write(path, garbage).expect("damage the object file");
    }

    // The same revision again, then a new one: both read right, the cache re-cloned.
    let again = source.fetch().expect("fetch over a damaged cache");
    assert_eq!(again.revision, first.revision);
    let read = source
        .snapshot(&again, &Selection::default())
        .or_else(|error| {
            // Damage found only when reading: reported, and the next fetch starts afresh.
            assert!(
                matches!(error, GitError::CacheDamaged { .. }),
                "unexpected error: {error}"
            );
            let refetched = source.fetch().expect("fetch after the damage was found");
            source.snapshot(&refetched, &Selection::default())
        });
    let read = read.expect("snapshot after re-clone");
    let contents = |snapshot: &Snapshot| -> Vec<(String, String, Option<Vec<u8>>)> {
        snapshot
            .files
            .iter()
            .map(|f| {
                let bytes = match &f.content {
                    FileContent::Bytes(bytes) => Some(bytes.to_vec()),
                    _ => None,
                };
                (f.path.clone(), f.id.clone(), bytes)
            })
            .collect()
    };
    assert_eq!(contents(&read), contents(&good));
    assert!(contents(&read).iter().all(|(_, _, bytes)| bytes.is_some()));

    let next = fixture.repo.write("b.yaml", manifest()).commit("two");
    let fetched = source.fetch().expect("fetch of the next commit");
    assert_eq!(fetched.revision.commit(), Some(next.as_str()));
}

#[test]
fn a_force_push_moves_the_revision_and_is_reported() {
    let fixture = Fixture::new();
    let old = fixture
        .repo
        .write("a.yaml", manifest())
        .commit("original history");
    let source = fixture.main_over(Transport::GitDaemon);
    source.fetch().expect("fetch");

    fixture
        .repo
        .git(&["checkout", "--quiet", "--orphan", "rewritten"]);
    let new = fixture
        .repo
        .write("b.yaml", manifest())
        .commit("unrelated history");
    let fetched = source.fetch().expect("fetch after force-push");
    assert_eq!(fetched.revision.commit(), Some(new.as_str()));
    assert_eq!(fetched.rewritten_from.as_deref(), Some(old.as_str()));
}

#[test]
fn a_deleted_branch_is_an_error_not_a_stale_revision() {
    let fixture = Fixture::new();
    fixture.repo.write("a.yaml", manifest()).commit("on main");
    fixture
        .repo
        .git(&["push", "--quiet", "origin", "HEAD:refs/heads/release"]);
    let source = fixture.source(
        Transport::File,
        GitReference::branch("release").unwrap(),
        GitAuth::default(),
    );
    assert_eq!(
        source.fetch().expect("fetch release").revision.reference(),
        Some("release")
    );

    fixture
        .repo
        .git(&["push", "--quiet", "origin", "--delete", "release"]);
    match source.fetch() {
        Err(GitError::ReferenceNotFound { reference, .. }) => {
            assert_eq!(reference, "branch release");
        }
        other => panic!("expected branch not found, got {other:?}"),
    }
}

#[test]
fn an_empty_repository_says_so() {
    let fixture = Fixture::new();
    let error = fixture
        .main_over(Transport::File)
        .fetch()
        .expect_err("fetched an empty repository");
    assert!(error.to_string().contains("empty"), "{error}");
}

#[test]
fn a_commit_without_manifests_gives_an_empty_snapshot() {
    let fixture = Fixture::new();
    fixture
        .repo
        .write("README.md", "# config")
        .write("values.json", "{}")
        .commit("no manifests");
    let source = fixture.main_over(Transport::File);
    let fetched = source.fetch().expect("fetch");
    let snapshot = source
        .snapshot(&fetched, &Selection::default())
        .expect("snapshot");
    assert!(snapshot.files.is_empty(), "{:?}", paths(&snapshot));
}

#[test]
fn tags_semver_ranges_and_commits_resolve_like_flux() {
    let fixture = Fixture::new();
    let repo = &fixture.repo;
    let mut commits = Vec::new();
    for tag in ["v1.0.0", "v1.2.0", "v2.0.0"] {
        commits.push(repo.write("version.yaml", format!("# {tag}\n")).commit(tag));
        repo.git(&["tag", "--annotate", "--message", tag, tag]);
    }
    repo.git(&["push", "--quiet", "origin", "--tags"]);

    let cases = [
        (
            GitReference::tag("v1.0.0").unwrap(),
            format!("v1.0.0@sha1:{}", commits[0]),
        ),
        (
            GitReference::semver("^1").unwrap(),
            format!("v1.2.0@sha1:{}", commits[1]),
        ),
        (
            GitReference::semver(">=1.1").unwrap(),
            format!("v2.0.0@sha1:{}", commits[2]),
        ),
        (
            GitReference::commit(&commits[0]).unwrap(),
            format!("sha1:{}", commits[0]),
        ),
    ];
    for (reference, expected) in cases {
        let source = fixture.source(
            Transport::Http,
            reference.clone(),
            full_auth(fixture.servers),
        );
        let fetched = source
            .fetch()
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(fetched.revision.to_string(), expected, "{reference}");
    }
    let missing = fixture.source(
        Transport::Http,
        GitReference::semver("^3").unwrap(),
        full_auth(fixture.servers),
    );
    assert!(missing.fetch().is_err());
}

#[test]
fn a_file_over_the_size_limit_is_not_read() {
    let fixture = Fixture::new();
    fixture
        .repo
        .write("big.yaml", "x".repeat(4096))
        .write("small.yaml", manifest())
        .commit("big file");
    let source = fixture.main_over(Transport::File);
    let fetched = source.fetch().expect("fetch");
    let snapshot = source
        .snapshot(&fetched, &Selection::default().with_max_file_size(1024))
        .expect("snapshot");
    assert!(matches!(
        snapshot.files[0].content,
        FileContent::TooLarge {
            size: 4096,
            limit: 1024
        }
    ));
    assert!(matches!(snapshot.files[1].content, FileContent::Bytes(_)));
}

#[test]
fn a_bearer_token_authenticates_over_https() {
    let fixture = Fixture::new();
    fixture.repo.write("a.yaml", manifest()).commit("one");
    let auth = GitAuth {
        bearer_token: Some(SecretString::from(HTTP_TOKEN)),
        ..GitAuth::default()
    }
    .with_ca_bundle(fixture.servers.http.ca_pem.as_bytes())
    .expect("CA");
    fixture
        .source(Transport::Https, GitReference::default(), auth)
        .fetch()
        .expect("fetch with a bearer token");
}

#[test]
fn wrong_or_missing_credentials_fail_fast_and_leak_nothing() {
    let fixture = Fixture::new();
    fixture.repo.write("a.yaml", manifest()).commit("one");
    let wrong = GitAuth {
        password: Some(SecretString::from("wrong-password-value")),
        ..full_auth(fixture.servers)
    };
    for (transport, auth) in [
        (Transport::Http, wrong.clone()),
        (Transport::Https, wrong),
        (Transport::Http, GitAuth::default()),
    ] {
        let error = fixture
            .source(transport, GitReference::default(), auth)
            .fetch()
            .expect_err("fetched without the right password");
        let shown = format!("{error} {error:?}");
        assert!(matches!(error, GitError::Fetch { .. }), "{shown}");
        assert!(
            !shown.contains("wrong-password-value") && !shown.contains(HTTP_PASSWORD),
            "{shown}"
        );
    }
    // A password written into the URL is used, and never shown.
    let url = fixture
        .servers
        .url(&fixture.repo, Transport::Http)
        .replace("http://", &format!("http://{HTTP_USER}:{HTTP_PASSWORD}@"));
    let source = GitSource::new(
        RemoteUrl::parse(&url).unwrap(),
        GitReference::default(),
        GitAuth::default(),
        fixture.cache.path(),
    );
    source.fetch().expect("fetch with credentials in the URL");
    assert!(!source.url().to_string().contains(HTTP_PASSWORD));
}

#[test]
fn untrusted_servers_are_refused() {
    let fixture = Fixture::new();
    fixture.repo.write("a.yaml", manifest()).commit("one");

    // HTTPS without the server's CA: the system trust store does not know it.
    let no_ca = GitAuth {
        password: Some(SecretString::from(HTTP_PASSWORD)),
        ..GitAuth::default()
    };
    let error = fixture
        .source(Transport::Https, GitReference::default(), no_ca)
        .fetch()
        .expect_err("untrusted TLS");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    // SSH with a known_hosts file that lists another key for this host and port.
    let mut auth = full_auth(fixture.servers);
    let port = fixture.servers.ssh.port;
    let other_key = "AAAAC3NzaC1lZDI1NTE5AAAAIGJ1dCBub3QgdGhlIGtleSB0aGUgc2VydmVyIGhhcw==";
    auth.ssh.as_mut().unwrap().known_hosts =
        KnownHosts::parse(&format!("[127.0.0.1]:{port} ssh-ed25519 {other_key}\n")).unwrap();
    let error = fixture
        .source(Transport::Ssh, GitReference::default(), auth.clone())
        .fetch()
        .expect_err("changed host key");
    assert!(
        error.to_string().contains("does not match known_hosts"),
        "{error}"
    );

    // SSH to a host known_hosts does not list at all.
    auth.ssh.as_mut().unwrap().known_hosts = KnownHosts::parse("").unwrap();
    let error = fixture
        .source(Transport::Ssh, GitReference::default(), auth)
        .fetch()
        .expect_err("unknown host");
    assert!(error.to_string().contains("not in known_hosts"), "{error}");
}

#[test]
fn a_commit_that_changes_one_file_reads_and_parses_one_file() {
    let fixture = Fixture::new();
    let manifest = manifest();
    fixture
        .repo
        .write("a.yaml", &manifest)
        .write(
            "b.yaml",
            manifest.replace("registry-credentials\n  namespace", "other\n  namespace"),
        )
        .commit("two files");
    let source = fixture.main_over(Transport::File);
    let mut parser = secretsync::manifest::Parser::new("default");
    let fetched = source.fetch().expect("fetch");
    let first = parser.parse(
        &source
            .snapshot_skipping(&fetched, &Selection::default(), &|p, id| {
                parser.knows(p, id)
            })
            .expect("snapshot"),
    );
    assert_eq!(
        (first.files_parsed, first.syncs.len()),
        (2, 2),
        "{:?}",
        first.diagnostics
    );

    fixture
        .repo
        .write(
            "b.yaml",
            manifest.replace("registry-credentials\n  namespace", "renamed\n  namespace"),
        )
        .commit("change b");
    let fetched = source.fetch().expect("fetch");
    let snapshot = source
        .snapshot_skipping(&fetched, &Selection::default(), &|p, id| {
            parser.knows(p, id)
        })
        .expect("snapshot");
    assert!(
        matches!(snapshot.files[0].content, FileContent::Known),
        "a.yaml was read again"
    );
    assert!(matches!(snapshot.files[1].content, FileContent::Bytes(_)));
    let second = parser.parse(&snapshot);
    assert_eq!(second.files_parsed, 1);
    let names: Vec<_> = second.syncs.iter().map(|s| s.key.name.as_str()).collect();
    assert_eq!(names, ["registry-credentials", "renamed"]);
    assert!(
        second
            .syncs
            .iter()
            .all(|s| s.provenance.revision == fetched.revision)
    );
}

#[test]
fn an_ssh_key_with_a_passphrase_is_unlocked_with_it() {
    let fixture = Fixture::new();
    fixture.repo.write("a.yaml", manifest()).commit("one");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("id_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "correct horse",
            "-C",
            "passphrase-test",
            "-f",
        ])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    fixture
        .servers
        .ssh
        .authorize(&std::fs::read_to_string(key.with_extension("pub")).expect("public key"));

    let with_passphrase = |passphrase: &str| {
        let mut auth = full_auth(fixture.servers);
        let ssh = auth.ssh.as_mut().expect("ssh auth");
        ssh.private_key = SecretString::from(std::fs::read_to_string(&key).expect("private key"));
        ssh.passphrase = Some(SecretString::from(passphrase));
        fixture.source(Transport::Ssh, GitReference::default(), auth)
    };
    with_passphrase("correct horse")
        .fetch()
        .expect("fetch with the key's passphrase");
    let error = with_passphrase("wrong horse")
        .fetch()
        .expect_err("a wrong passphrase unlocked the key");
    assert!(
        !format!("{error} {error:?}").contains("wrong horse"),
        "{error}"
    );
}

#[test]
fn only_commits_signed_by_a_trusted_key_are_accepted() {
    let fixture = Fixture::new();
    let keys = tempfile::tempdir().expect("tempdir");
    let (trusted_key, trusted_public) = ssh_signing_key(keys.path(), "platform-team");
    let (stranger_key, stranger_public) = ssh_signing_key(keys.path(), "stranger");
    let (source, trusted) = fixture.verifying(keys.path(), &trusted_public);

    let signed = fixture
        .repo
        .write("a.yaml", manifest())
        .commit_signed("signed by the platform team", &trusted_key);
    let fetched = source.fetch().expect("a trusted signature is accepted");
    assert_eq!(fetched.revision.commit(), Some(signed.as_str()));

    fixture.assert_an_unsigned_commit_is_refused(&source, "b.yaml");

    let by_stranger = fixture
        .repo
        .write("c.yaml", manifest())
        .commit_signed("signed by someone else", &stranger_key);
    let refused = source
        .fetch()
        .expect_err("an untrusted signature is refused");
    assert!(
        matches!(
            &refused,
            GitError::Signature(SignatureError::Untrusted { .. })
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("SHA256:"),
        "names the key: {refused}"
    );

    // The file is a mounted Secret: what it holds at the fetch is what is trusted.
    std::fs::write(&trusted, "ssh-ed25519 !!!\n").expect("break the trusted keys");
    let refused = source
        .fetch()
        .expect_err("a broken trusted-keys file trusts nothing");
    assert!(
        matches!(&refused, GitError::TrustedKeys(_))
            && refused.to_string().contains(&*trusted.to_string_lossy())
            && refused.to_string().contains("line 1"),
        "{refused}"
    );
    std::fs::write(&trusted, format!("{trusted_public}{stranger_public}"))
        .expect("trust the stranger too");
    let fetched = source.fetch().expect("a key added to the file is trusted");
    assert_eq!(fetched.revision.commit(), Some(by_stranger.as_str()));
}

/// A throw-away OpenPGP key made by `gpg` in its own `GNUPGHOME`, and a `gpg` wrapper that
/// uses that home (git's `gpg.program`).
struct OpenPgpKey {
    home: std::path::PathBuf,
    program: std::path::PathBuf,
    fingerprint: String,
}

impl OpenPgpKey {
    /// An ed25519 signing key for `name`, valid for `expire` (gpg's words: `never`, `1y`,
    /// `seconds=8`).
    fn generate(dir: &std::path::Path, name: &str, expire: &str) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let home = dir.join(format!("{name}-gnupg"));
        std::fs::create_dir_all(&home).expect("GNUPGHOME");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let program = dir.join(format!("{name}-gpg"));
        std::fs::write(
            &program,
            format!("#!/bin/sh\nGNUPGHOME={} exec gpg \"$@\"\n", home.display()),
        )
        .expect("gpg wrapper");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut key = OpenPgpKey {
            home,
            program,
            fingerprint: String::new(),
        };
        let user = format!("{name} <{name}@secretsync.invalid>");
        key.gpg(&["--quick-generate-key", &user, "ed25519", "sign", expire]);
        key.fingerprint = key.fingerprints().swap_remove(0);
        key
    }

    fn gpg(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args([
                "--batch",
                "--quiet",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .expect("run gpg");
        assert!(
            output.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    /// The fingerprints of the primary key and its subkeys, in that order.
    fn fingerprints(&self) -> Vec<String> {
        self.gpg(&["--with-colons", "--list-keys"])
            .lines()
            .filter_map(|line| line.strip_prefix("fpr:"))
            .filter_map(|rest| rest.split(':').find(|field| !field.is_empty()))
            .map(str::to_owned)
            .collect()
    }

    /// Adds a signing subkey valid for `expire`; returns its fingerprint.
    fn add_signing_subkey(&self, expire: &str) -> String {
        self.gpg(&[
            "--quick-add-key",
            &self.fingerprint,
            "ed25519",
            "sign",
            expire,
        ]);
        self.fingerprints().pop().expect("the new subkey")
    }

    /// Revokes the key with the revocation certificate gpg made beside it.
    fn revoke(&self) {
        let certificate = self
            .home
            .join("openpgp-revocs.d")
            .join(format!("{}.rev", self.fingerprint));
        // gpg prefixes the armor line with ':' so that the file cannot be imported by accident.
        let text = std::fs::read_to_string(&certificate).expect("revocation certificate");
        let armed = certificate.with_extension("asc");
        std::fs::write(&armed, text.replace(":-----BEGIN", "-----BEGIN")).expect("write");
        self.gpg(&["--import", armed.to_str().expect("utf-8 path")]);
    }

    /// `other`'s public key certified by this one (a third-party signature on its user ID).
    fn certify(&self, other: &OpenPgpKey) -> String {
        let public = self.home.join(format!("{}.asc", other.fingerprint));
        std::fs::write(&public, other.public()).expect("write");
        self.gpg(&["--import", public.to_str().expect("utf-8 path")]);
        self.gpg(&["--quick-sign-key", &other.fingerprint]);
        self.gpg(&["--armor", "--export", &other.fingerprint])
    }

    /// The ASCII-armored public key.
    fn public(&self) -> String {
        self.gpg(&["--armor", "--export", &self.fingerprint])
    }
}

#[test]
fn only_commits_signed_by_a_trusted_openpgp_key_are_accepted() {
    let fixture = Fixture::new();
    let keys = tempfile::tempdir().expect("tempdir");
    // An expiry in the future does not stand in the way.
    let trusted_key = OpenPgpKey::generate(keys.path(), "platform-team", "1y");
    let stranger = OpenPgpKey::generate(keys.path(), "stranger", "never");
    // OpenPGP and SSH keys side by side in one file, as a mounted Secret would hold them.
    let (_, ssh_public) = ssh_signing_key(keys.path(), "ssh-team");
    let (source, _) = fixture.verifying(
        keys.path(),
        &format!("# platform\n{}\n{ssh_public}", trusted_key.public()),
    );

    let signed = fixture
        .repo
        .write("a.yaml", manifest())
        .commit_signed_openpgp(
            "signed by the platform team",
            &trusted_key.program,
            &trusted_key.fingerprint,
        );
    let fetched = source
        .fetch()
        .expect("a trusted OpenPGP signature is accepted");
    assert_eq!(fetched.revision.commit(), Some(signed.as_str()));

    fixture
        .repo
        .write("b.yaml", manifest())
        .commit_signed_openpgp(
            "signed by someone else",
            &stranger.program,
            &stranger.fingerprint,
        );
    let refused = source
        .fetch()
        .expect_err("an untrusted OpenPGP signature is refused");
    assert!(
        matches!(
            &refused,
            GitError::Signature(SignatureError::Untrusted { fingerprint, .. })
                if fingerprint.contains(&stranger.fingerprint)
        ),
        "names the key: {refused}"
    );

    fixture.assert_an_unsigned_commit_is_refused(&source, "c.yaml");
}

/// Keys stop signing when they expire or are revoked, judged at the fetch — as `git merge
/// --verify-signatures` and Flux do — while a key carrying a colleague's certification is
/// read as the key it is.
#[test]
fn openpgp_keys_that_expired_or_were_revoked_sign_nothing() {
    const LIFETIME: std::time::Duration = std::time::Duration::from_secs(8);
    let fixture = Fixture::new();
    let keys = tempfile::tempdir().expect("tempdir");
    let lifetime = format!("seconds={}", LIFETIME.as_secs());
    let short_lived = OpenPgpKey::generate(keys.path(), "short-lived", &lifetime);
    let rotating = OpenPgpKey::generate(keys.path(), "rotating", "never");
    let rotating_subkey = rotating.add_signing_subkey(&lifetime);
    let expired_by = std::time::Instant::now() + LIFETIME;
    let revoked = OpenPgpKey::generate(keys.path(), "revoked", "1y");
    let vouched = OpenPgpKey::generate(keys.path(), "vouched", "1y");
    let colleague = OpenPgpKey::generate(keys.path(), "colleague", "1y");

    // Every commit is signed while its key is valid (gpg signs with nothing else).
    let sign = |file: &str, key: &OpenPgpKey, signing_key: &str| {
        fixture
            .repo
            .write(file, manifest())
            .commit_signed_openpgp(file, &key.program, signing_key)
    };
    let by_short_lived = sign("a.yaml", &short_lived, &short_lived.fingerprint);
    let by_subkey = sign("b.yaml", &rotating, &format!("{rotating_subkey}!"));
    let by_revoked = sign("c.yaml", &revoked, &revoked.fingerprint);
    let by_vouched = sign("d.yaml", &vouched, &vouched.fingerprint);
    revoked.revoke();
    let trusted_keys = || {
        format!(
            "{}\n{}\n{}\n{}",
            short_lived.public(),
            rotating.public(),
            revoked.public(),
            colleague.certify(&vouched),
        )
    };
    // A third-party certification is no reason to refuse a key.
    let (source, trusted) = fixture.verifying(keys.path(), &trusted_keys());

    let fetched = source
        .fetch()
        .expect("the certified key's signature is accepted");
    assert_eq!(fetched.revision.commit(), Some(by_vouched.as_str()));

    fixture.repo.move_main_to(&by_revoked);
    let refused = source.fetch().expect_err("a revoked key signs nothing");
    assert!(
        matches!(&refused, GitError::Signature(SignatureError::RevokedKey { commit, signer, .. })
            if *commit == by_revoked && signer.contains(&revoked.fingerprint)),
        "{refused}"
    );

    std::thread::sleep(expired_by.saturating_duration_since(std::time::Instant::now()));
    std::thread::sleep(std::time::Duration::from_secs(1));
    fixture.repo.move_main_to(&by_short_lived);
    let refused = source.fetch().expect_err("an expired key signs nothing");
    assert!(
        matches!(&refused, GitError::Signature(SignatureError::ExpiredKey { commit, signer, .. })
            if *commit == by_short_lived && signer.contains(&short_lived.fingerprint)),
        "{refused}"
    );

    fixture.repo.move_main_to(&by_subkey);
    let refused = source.fetch().expect_err("an expired subkey signs nothing");
    assert!(
        matches!(&refused, GitError::Signature(SignatureError::ExpiredKey { commit, signer, .. })
            if *commit == by_subkey && signer.contains(&format!("subkey {rotating_subkey}"))),
        "{refused}"
    );
    assert!(refused.to_string().contains("expired on 20"), "{refused}");

    // Renewed, and the file updated (as the mounted Secret would be): trusted again, no
    // restart.
    short_lived.gpg(&["--quick-set-expire", &short_lived.fingerprint, "1y"]);
    std::fs::write(&trusted, trusted_keys()).expect("write the renewed key");
    fixture.repo.move_main_to(&by_short_lived);
    let fetched = source
        .fetch()
        .expect("the renewed key's signature is accepted");
    assert_eq!(fetched.revision.commit(), Some(by_short_lived.as_str()));
}

/// A repository of 100,000 files (a monorepo pointed at by mistake, or on purpose): the
/// commit is fetched and its tree read in one pass, the 10 SecretSyncs among the files found,
/// nothing else kept. The time and memory it took are printed for docs/RELIABILITY.md.
#[test]
fn a_repository_of_a_hundred_thousand_files_is_read() {
    use std::fmt::Write as _;
    const FILES: usize = 100_000;
    let fixture = Fixture::new();
    // `git fast-import` writes the commit in a second; `git add` of 100k files takes minutes.
    let mut stream = String::from(
        "commit refs/heads/main\ncommitter test <test@secretsync.invalid> 1700000000 +0000\ndata 15\n100k files here\n",
    );
    let manifest = manifest();
    for n in 0..FILES {
        let (path, content) = if n % (FILES / 10) == 0 {
            let sync = manifest.replace(
                "name: registry-credentials\n  namespace",
                &format!("name: registry-{n}\n  namespace"),
            );
            (format!("clusters/sync-{n}.yaml"), sync)
        } else {
            let data = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\n");
            (format!("apps/team-{}/cm-{n}.yaml", n % 100), data)
        };
        let _ = write!(
            stream,
            "M 644 inline {path}\ndata {}\n{content}\n",
            content.len()
        );
    }
    fast_import(fixture.repo.bare_path(), |input| {
        std::io::Write::write_all(input, stream.as_bytes())
    });

    let source = fixture.main_over(Transport::File);
    let started = std::time::Instant::now();
    let fetched = source.fetch().expect("fetch");
    let snapshot = source
        .snapshot(&fetched, &Selection::default())
        .expect("snapshot");
    let read = started.elapsed();
    assert_eq!(snapshot.files.len(), FILES);
    let set = secretsync::manifest::Parser::new("default").parse(&snapshot);
    assert_eq!(set.syncs.len(), 10, "{:?}", set.diagnostics.first());
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics.first());
    eprintln!(
        "100k files: fetched and read in {read:?}, parsed in {:?} more (debug build)",
        started.elapsed().saturating_sub(read)
    );
}

/// Runs `git fast-import` in the bare repository at `git_dir` on what `feed` writes: a
/// commit made in seconds however large, straight into the served repository.
fn fast_import(
    git_dir: &std::path::Path,
    feed: impl FnOnce(&mut std::process::ChildStdin) -> std::io::Result<()>,
) {
    let mut import = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["fast-import", "--quiet", "--force"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("git fast-import");
    feed(import.stdin.as_mut().expect("stdin")).expect("feed fast-import");
    drop(import.stdin.take());
    assert!(import.wait().expect("fast-import").success());
}

/// A 1 GiB blob beside a SecretSync, fetched over the git protocol as from a remote by
/// `secretsync validate`: the blob is transferred but never held in memory nor read (its size
/// comes from the object header) and is reported; the SecretSync beside it is read.
#[test]
fn a_gibibyte_blob_is_reported_not_read_and_not_held_in_memory() {
    use std::io::Write as _;
    const SIZE: usize = 1 << 30;
    /// The Deployment's memory request.
    const BUDGET_KIB: u64 = 128 * 1024;
    let fixture = Fixture::new();
    let sync = manifest();
    fast_import(fixture.repo.bare_path(), |input| {
        write!(input, "blob\nmark :1\ndata {SIZE}\n")?;
        let zeros = vec![0_u8; 1 << 20];
        for _ in 0..SIZE / zeros.len() {
            input.write_all(&zeros)?;
        }
        write!(
            input,
            "\ncommit refs/heads/main\ncommitter test <test@secretsync.invalid> 1700000000 +0000\n\
             data 9\nhuge blob\nM 644 :1 clusters/huge.yaml\n\
             M 644 inline clusters/sync.yaml\ndata {}\n{sync}\n",
            sync.len()
        )
    });
    let url = fixture.servers.url(&fixture.repo, Transport::GitDaemon);
    let started = std::time::Instant::now();
    let mut validate = std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(["validate", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("secretsync validate");
    // VmHWM only grows; sampled until the process exits (a zombie shows none).
    let process = secretsync::testenv::procfs::Proc::Pid(validate.id());
    let mut peak_kib = 0;
    while validate.try_wait().expect("wait").is_none() {
        peak_kib = peak_kib.max(process.memory_kib().1);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = validate.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("clusters/huge.yaml") && text.contains("1073741824 bytes, over the limit"),
        "{text}"
    );
    assert!(text.contains("1 SecretSync(s) valid"), "{text}");
    assert!(
        peak_kib > 0 && peak_kib < BUDGET_KIB,
        "peak RSS {peak_kib} KiB while fetching a 1 GiB blob"
    );
    eprintln!(
        "1 GiB blob: fetched and validated in {:?}, peak RSS {} MiB (debug build)",
        started.elapsed(),
        peak_kib / 1024
    );
}

/// A crafted tree (git itself refuses to write one, `git fsck` flags it) with entries named
/// `..` and `.`: the walk skips them, and the ordinary file beside them is read.
#[test]
fn tree_entries_named_dot_dot_are_skipped() {
    let fixture = Fixture::new();
    fixture
        .repo
        .write("clusters/ok.yaml", manifest())
        .commit("one ordinary file");
    let git = |args: &[&str], input: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new("git")
            .args(args)
            .env("GIT_AUTHOR_NAME", "crafter")
            .env("GIT_AUTHOR_EMAIL", "crafter@secretsync.invalid")
            .env("GIT_COMMITTER_NAME", "crafter")
            .env("GIT_COMMITTER_EMAIL", "crafter@secretsync.invalid")
            .current_dir(fixture.repo.work_path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let output = child.wait_with_output().expect("git output");
        assert!(output.status.success(), "git {args:?}");
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    };
    let blob = git(&["hash-object", "-w", "--stdin"], &manifest());
    let inner = git(&["mktree"], &format!("100644 blob {blob}\tescaped.yaml\n"));
    let clusters = fixture.repo.git(&["rev-parse", "HEAD:clusters"]);
    let root = git(
        &["mktree"],
        &format!(
            "040000 tree {inner}\t..\n040000 tree {inner}\t.\n040000 tree {clusters}\tclusters\n"
        ),
    );
    let commit = git(&["commit-tree", &root, "-p", "HEAD", "-m", "crafted"], "");
    fixture.repo.git(&[
        "push",
        "--quiet",
        "origin",
        &format!("{commit}:refs/heads/main"),
    ]);

    let source = fixture.main_over(Transport::File);
    let fetched = source.fetch().expect("fetch the crafted commit");
    assert_eq!(fetched.revision.commit(), Some(commit.as_str()));
    let snapshot = source
        .snapshot(&fetched, &Selection::default())
        .expect("snapshot");
    assert_eq!(paths(&snapshot), ["clusters/ok.yaml"]);
}
