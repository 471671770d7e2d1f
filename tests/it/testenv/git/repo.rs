//! A repository on the test git servers: a bare repository they serve, and a work tree
//! that tests write files in, commit and push from, with the `git` command itself.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Repo {
    name: String,
    bare: PathBuf,
    work: PathBuf,
}

impl Repo {
    pub(super) fn create(repos: &Path, name: &str) -> Repo {
        let bare = repos.join(format!("{name}.git"));
        let work = repos.join(format!("{name}.work"));
        git(
            repos,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        )
        .arg(&bare)
        .run();
        git(repos, &["init", "--quiet", "--initial-branch=main"])
            .arg(&work)
            .run();
        git(&work, &["remote", "add", "origin"]).arg(&bare).run();
        Repo {
            name: name.to_owned(),
            bare,
            work,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bare_path(&self) -> &Path {
        &self.bare
    }

    /// The work tree (a clone whose `origin` is the served repository), for what `write`
    /// cannot make (symlinks, crafted trees).
    pub fn work_path(&self) -> &Path {
        &self.work
    }

    /// Writes a file of the work tree (creating its directories); nothing is committed yet.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("create dirs");
        std::fs::write(&file, contents).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        self
    }

    /// Removes a file of the work tree; nothing is committed yet.
    pub fn remove(&self, path: &str) -> &Self {
        let file = self.work.join(path);
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("remove {}: {e}", file.display()));
        self
    }

    /// Runs another `git` command in the work tree (tags, branches, resets); returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work, args).output()
    }

    /// Commits everything in the work tree and pushes it to `main`; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.commit_with(&[], message)
    }

    /// Like `commit`, signed with the SSH private key at `key` (`gpg.format=ssh`).
    pub fn commit_signed(&self, message: &str, key: &Path) -> String {
        let signing_key = format!("user.signingKey={}", key.display());
        self.commit_with(
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &signing_key,
                "commit",
                "--gpg-sign",
            ],
            message,
        )
    }

    /// Like `commit`, signed with OpenPGP by `key` (a fingerprint) through `gpg_program`
    /// (a `gpg` that knows the key, e.g. a wrapper setting `GNUPGHOME`).
    pub fn commit_signed_openpgp(&self, message: &str, gpg_program: &Path, key: &str) -> String {
        let program = format!("gpg.program={}", gpg_program.display());
        let signing_key = format!("user.signingKey={key}");
        self.commit_with(
            &[
                "-c",
                "gpg.format=openpgp",
                "-c",
                &program,
                "-c",
                &signing_key,
                "commit",
                "--gpg-sign",
            ],
            message,
        )
    }

    /// `git [config...] commit [options...]`: `prefix` ends with `commit` and its options,
    /// or is empty for a plain commit.
    fn commit_with(&self, prefix: &[&str], message: &str) -> String {
        git(&self.work, &["add", "--all"]).run();
        let mut args: Vec<&str> = if prefix.is_empty() {
            vec!["commit"]
        } else {
            prefix.to_vec()
        };
        args.extend(["--quiet", "--allow-empty", "--message", message]);
        git(&self.work, &args).run();
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                "HEAD:refs/heads/main",
            ],
        )
        .run();
        self.head()
    }

    /// Points the served `main` at `commit` (a force push), leaving the work tree alone.
    pub fn move_main_to(&self, commit: &str) {
        let refspec = format!("{commit}:refs/heads/main");
        git(
            &self.work,
            &["push", "--quiet", "--force", "origin", &refspec],
        )
        .run();
    }

    /// The commit the work tree is at.
    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"]).output()
    }
}

/// `git` with a fixed identity and none of the user's or system's configuration, so that a
/// developer's `commit.gpgsign` or hooks cannot change what the tests see.
fn git(dir: &Path, args: &[&str]) -> GitCommand {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "secretsync test")
        .env("GIT_AUTHOR_EMAIL", "test@secretsync.invalid")
        .env("GIT_COMMITTER_NAME", "secretsync test")
        .env("GIT_COMMITTER_EMAIL", "test@secretsync.invalid")
        .args(args);
    GitCommand(command)
}

struct GitCommand(Command);

impl GitCommand {
    fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.0.arg(arg);
        self
    }

    fn run(self) {
        self.output();
    }

    fn output(mut self) -> String {
        let output = self
            .0
            .output()
            .unwrap_or_else(|e| panic!("run {:?}: {e}", self.0));
        assert!(
            output.status.success(),
            "{:?} failed: {}",
            self.0,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}
