//! Commit signature verification (`--verify-signatures`): the head commit must carry an SSH
//! signature (`git commit -S` with `gpg.format=ssh`, namespace `git`) by one of the trusted
//! keys, given in `authorized_keys` format (typically a mounted Secret). An unsigned commit,
//! one signed by another key, or a signature that does not verify is not reconciled: the
//! last good revision stays. OpenPGP signatures are recognised and refused as not supported
//! yet, rather than silently accepted.

use git2::{Oid, Repository};
use ssh_key::{PublicKey, SshSig};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const GIT_NAMESPACE: &str = "git";

/// Why a commit was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("commit {commit} is not signed; --verify-signatures accepts only signed commits")]
    Unsigned { commit: String },
    #[error(
        "commit {commit} carries an OpenPGP signature; only SSH signatures are verified so far"
    )]
    OpenPgpNotSupported { commit: String },
    #[error("commit {commit} is signed by {fingerprint}, which is not a trusted key")]
    Untrusted { commit: String, fingerprint: String },
    #[error("commit {commit} has a signature that does not verify: {reason}")]
    Invalid { commit: String, reason: String },
    #[error("reading the signature of commit {commit}: {reason}")]
    Unreadable { commit: String, reason: String },
}

/// Keys whose signatures are trusted.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

/// A trusted-keys file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustedKeysError {
    #[error("trusted keys, line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("the trusted keys hold no key: every commit would be refused")]
    Empty,
}

impl TrustedKeys {
    /// Reads keys in `authorized_keys` format: one `<type> <base64> [comment]` per line,
    /// blank lines and `#` comments ignored.
    pub fn from_authorized_keys(text: &str) -> Result<Self, TrustedKeysError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = PublicKey::from_openssh(line).map_err(|e| TrustedKeysError::Malformed {
                line: index + 1,
                reason: e.to_string(),
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(TrustedKeysError::Empty);
        }
        Ok(TrustedKeys { keys })
    }

    /// Checks that `commit` carries a valid signature by a trusted key; returns the key's
    /// fingerprint.
    pub fn verify_commit(&self, repo: &Repository, commit: Oid) -> Result<String, SignatureError> {
        let id = commit.to_string();
        let (signature, signed) = match repo.extract_signature(&commit, None) {
            Ok(parts) => parts,
            Err(error) if error.code() == git2::ErrorCode::NotFound => {
                return Err(SignatureError::Unsigned { commit: id });
            }
            Err(error) => {
                return Err(SignatureError::Unreadable {
                    commit: id,
                    reason: error.message().to_owned(),
                });
            }
        };
        let armored = String::from_utf8_lossy(&signature);
        if armored.contains("BEGIN PGP SIGNATURE") {
            return Err(SignatureError::OpenPgpNotSupported { commit: id });
        }
        self.verify(&id, &armored, &signed)
    }

    fn verify(&self, commit: &str, armored: &str, signed: &[u8]) -> Result<String, SignatureError> {
        let signature: SshSig =
            armored
                .trim()
                .parse()
                .map_err(|e: ssh_key::Error| SignatureError::Invalid {
                    commit: commit.to_owned(),
                    reason: e.to_string(),
                })?;
        let fingerprint = PublicKey::from(signature.public_key().clone())
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string();
        let trusted = self
            .keys
            .iter()
            .find(|key| key.key_data() == signature.public_key());
        let Some(trusted) = trusted else {
            return Err(SignatureError::Untrusted {
                commit: commit.to_owned(),
                fingerprint,
            });
        };
        trusted
            .verify(GIT_NAMESPACE, signed, &signature)
            .map_err(|e| SignatureError::Invalid {
                commit: commit.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti user@example.com";

    #[test]
    fn reads_authorized_keys_lines_and_skips_comments() {
        let keys = TrustedKeys::from_authorized_keys(&format!("# platform team\n\n{KEY}\n"))
            .expect("valid");
        assert_eq!(keys.keys.len(), 1);
    }

    #[test]
    fn refuses_a_malformed_line_with_its_number_and_an_empty_file() {
        let error = TrustedKeys::from_authorized_keys(&format!("{KEY}\nssh-ed25519 !!!\n"))
            .expect_err("malformed");
        assert!(error.to_string().contains("line 2"), "{error}");
        assert!(matches!(
            TrustedKeys::from_authorized_keys("# nothing\n"),
            Err(TrustedKeysError::Empty)
        ));
    }

    #[test]
    fn a_signature_that_is_not_sshsig_is_invalid() {
        let keys = TrustedKeys::from_authorized_keys(KEY).expect("valid");
        let error = keys
            .verify(
                "abc",
                "-----BEGIN SSH SIGNATURE-----\nnot base64\n-----END SSH SIGNATURE-----",
                b"x",
            )
            .expect_err("invalid");
        assert!(matches!(error, SignatureError::Invalid { .. }), "{error}");
    }
}
