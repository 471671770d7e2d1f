//! Commit signature verification (`--verify-signatures`): the head commit must carry a
//! signature by one of the trusted keys — an SSH signature (`git commit -S` with
//! `gpg.format=ssh`, namespace `git`) by a key given in `authorized_keys` format, or an
//! OpenPGP signature (`git commit -S` with gpg) by a key given as an ASCII-armored public key
//! block, both in the same file (typically a mounted Secret, read again when it changes:
//! `keys_file`). An unsigned commit, one signed by another key or by an OpenPGP key that has
//! expired or was revoked (`openpgp`), or a signature that does not verify is not
//! reconciled: the last good revision stays.

mod keys_file;
mod openpgp;

use std::time::SystemTime;

use git2::{Oid, Repository};
use ssh_key::{PublicKey, SshSig};

pub use keys_file::{TrustedKeysFile, TrustedKeysFileError};
use openpgp::{OpenPgpKey, Refusal};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
const GIT_NAMESPACE: &str = "git";

const PGP_KEY_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const PGP_KEY_END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// Why a commit was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("commit {commit} is not signed; --verify-signatures accepts only signed commits")]
    Unsigned { commit: String },
    #[error("commit {commit} is signed by {fingerprint}, which is not a trusted key")]
    Untrusted { commit: String, fingerprint: String },
    #[error("commit {commit} is signed by {signer}, which was revoked on {since}")]
    RevokedKey {
        commit: String,
        signer: String,
        since: String,
    },
    #[error("commit {commit} is signed by {signer}, which expired on {since}")]
    ExpiredKey {
        commit: String,
        signer: String,
        since: String,
    },
    #[error("commit {commit} has a signature that does not verify: {reason}")]
    Invalid { commit: String, reason: String },
    #[error("reading the signature of commit {commit}: {reason}")]
    Unreadable { commit: String, reason: String },
}

/// Keys whose signatures are trusted.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    ssh: Vec<PublicKey>,
    openpgp: Vec<OpenPgpKey>,
}

/// A trusted-keys file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustedKeysError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("no key: every commit would be refused")]
    Empty,
    #[error("not UTF-8 text: expected authorized_keys lines and armored OpenPGP blocks")]
    NotText,
}

impl TrustedKeys {
    /// Reads SSH keys in `authorized_keys` format (one `<type> <base64> [comment]` per line)
    /// and OpenPGP public keys as ASCII-armored blocks, in any order; blank lines and `#`
    /// comments are ignored. An OpenPGP key without a valid self-signature is refused; one
    /// that has expired or was revoked is read (it may be renewed later in the same file)
    /// and refuses the commits it signs, naming why.
    pub fn parse(text: &str) -> Result<Self, TrustedKeysError> {
        let mut keys = TrustedKeys::default();
        let mut lines = text.lines().enumerate();
        while let Some((index, line)) = lines.next() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = |reason: String| TrustedKeysError::Malformed {
                line: index + 1,
                reason,
            };
            if line == PGP_KEY_BEGIN {
                let mut block = vec![line];
                block.extend(
                    lines
                        .by_ref()
                        .map(|(_, l)| l.trim())
                        .take_while(|l| *l != PGP_KEY_END),
                );
                block.push(PGP_KEY_END);
                let key = OpenPgpKey::parse(&block.join("\n"))
                    .map_err(|e| malformed(format!("OpenPGP public key: {e}")))?;
                tracing::debug!(fingerprint = key.fingerprint(), "trusted OpenPGP key read");
                keys.openpgp.push(key);
                continue;
            }
            let key = PublicKey::from_openssh(line).map_err(|e| malformed(e.to_string()))?;
            keys.ssh.push(key);
        }
        if keys.ssh.is_empty() && keys.openpgp.is_empty() {
            return Err(TrustedKeysError::Empty);
        }
        Ok(keys)
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
            self.verify_openpgp(id, &armored, &signed, SystemTime::now())
        } else {
            self.verify_ssh(&id, &armored, &signed)
        }
    }

    fn verify_ssh(
        &self,
        commit: &str,
        armored: &str,
        signed: &[u8],
    ) -> Result<String, SignatureError> {
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
            .ssh
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

    /// An OpenPGP signature: made by the primary key or a signing subkey of a trusted key,
    /// found by the issuer the signature names, by a key still valid at `now`.
    fn verify_openpgp(
        &self,
        commit: String,
        armored: &str,
        signed: &[u8],
        now: SystemTime,
    ) -> Result<String, SignatureError> {
        openpgp::verify(&self.openpgp, armored, signed, now).map_err(|refusal| match refusal {
            Refusal::Untrusted(fingerprint) => SignatureError::Untrusted {
                commit,
                fingerprint,
            },
            Refusal::Revoked { signer, since } => SignatureError::RevokedKey {
                commit,
                signer,
                since,
            },
            Refusal::Expired { signer, since } => SignatureError::ExpiredKey {
                commit,
                signer,
                since,
            },
            Refusal::Invalid(reason) => SignatureError::Invalid { commit, reason },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti user@example.com";

    #[test]
    fn reads_authorized_keys_lines_and_skips_comments() {
        let keys = TrustedKeys::parse(&format!("# platform team\n\n{KEY}\n")).expect("valid");
        assert_eq!(keys.ssh.len(), 1);
    }

    #[test]
    fn refuses_a_malformed_line_with_its_number_and_an_empty_file() {
        let error =
            TrustedKeys::parse(&format!("{KEY}\nssh-ed25519 !!!\n")).expect_err("malformed");
        assert!(error.to_string().contains("line 2"), "{error}");
        assert!(matches!(
            TrustedKeys::parse("# nothing\n"),
            Err(TrustedKeysError::Empty)
        ));
    }

    #[test]
    fn a_signature_that_is_not_sshsig_is_invalid() {
        let keys = TrustedKeys::parse(KEY).expect("valid");
        let error = keys
            .verify_ssh(
                "abc",
                "-----BEGIN SSH SIGNATURE-----\nnot base64\n-----END SSH SIGNATURE-----",
                b"x",
            )
            .expect_err("invalid");
        assert!(matches!(error, SignatureError::Invalid { .. }), "{error}");
    }
}
