//! OpenSSH known_hosts files: which host keys an SSH server may present. Plain and hashed
//! (`|1|salt|hash`) host entries, `[host]:port` for non-standard ports, `*`/`?` wildcards,
//! `!` negation, and `@revoked` markers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("known_hosts line {line}: {reason}")]
pub struct KnownHostsError {
    pub line: usize,
    pub reason: String,
}

/// What a known_hosts file says about a host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// The key is listed for this host.
    Trusted,
    /// The host is listed, but with other keys: possibly an attack.
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
    /// The host is not listed at all.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    hosts: Hosts,
    key: Vec<u8>,
    revoked: bool,
}

#[derive(Debug, Clone)]
enum Hosts {
    Patterns(Vec<String>),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

impl KnownHosts {
    pub fn parse(text: &str) -> Result<Self, KnownHostsError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: &str| KnownHostsError {
                line: index + 1,
                reason: reason.to_owned(),
            };
            let mut fields = line.split_whitespace().peekable();
            let marker = fields.next_if(|f| f.starts_with('@'));
            if marker.is_some_and(|m| m == "@cert-authority") {
                // Host certificates are not supported by libssh2; such lines cannot match.
                continue;
            }
            let revoked = marker == Some("@revoked");
            let (Some(hosts), Some(_key_type), Some(key)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(error("expected `hosts key-type base64-key`"));
            };
            let key = BASE64
                .decode(key)
                .map_err(|_| error("the key is not valid base64"))?;
            entries.push(Entry {
                hosts: parse_hosts(hosts).ok_or_else(|| error("malformed hashed host"))?,
                key,
                revoked,
            });
        }
        Ok(KnownHosts { entries })
    }

    /// Checks `key` (the SSH wire-format public key blob) presented by `host` on `port`.
    #[must_use]
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> HostKeyCheck {
        let name = if port == 22 {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        };
        let mut listed = false;
        for entry in self.entries.iter().filter(|e| e.hosts.matches(&name)) {
            if entry.key == key {
                return if entry.revoked {
                    HostKeyCheck::Revoked
                } else {
                    HostKeyCheck::Trusted
                };
            }
            listed |= !entry.revoked;
        }
        if listed {
            HostKeyCheck::Mismatch
        } else {
            HostKeyCheck::Unknown
        }
    }
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    let Some(hashed) = field.strip_prefix("|1|") else {
        return Some(Hosts::Patterns(
            field.split(',').map(str::to_owned).collect(),
        ));
    };
    let (salt, hash) = hashed.split_once('|')?;
    Some(Hosts::Hashed {
        salt: BASE64.decode(salt).ok()?,
        hash: BASE64.decode(hash).ok()?,
    })
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    if let Some(negated) = pattern.strip_prefix('!') {
                        if wildcard_match(negated, name) {
                            return false;
                        }
                    } else if wildcard_match(pattern, name) {
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

/// OpenSSH pattern matching: `*` any run of characters, `?` one character.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    let (mut p, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    n = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Base64 of "host key A" and "host key B": any blob works, the check compares bytes.
    const KEY_A: &str = "aG9zdCBrZXkgQQ==";
    const KEY_B: &str = "aG9zdCBrZXkgQg==";

    fn key(base64: &str) -> Vec<u8> {
        BASE64.decode(base64).unwrap()
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(hash))
    }

    #[test]
    fn checks_plain_entries_with_ports() {
        let hosts = KnownHosts::parse(&format!(
            "# comment\ngithub.com,140.82.121.4 ssh-ed25519 {KEY_A}\n[127.0.0.1]:2222 ssh-ed25519 {KEY_B}\n"
        ))
        .unwrap();
        assert_eq!(
            hosts.check("github.com", 22, &key(KEY_A)),
            HostKeyCheck::Trusted
        );
        assert_eq!(
            hosts.check("140.82.121.4", 22, &key(KEY_A)),
            HostKeyCheck::Trusted
        );
        assert_eq!(
            hosts.check("github.com", 22, &key(KEY_B)),
            HostKeyCheck::Mismatch
        );
        assert_eq!(
            hosts.check("127.0.0.1", 2222, &key(KEY_B)),
            HostKeyCheck::Trusted
        );
        // The same host on another port is another entry.
        assert_eq!(
            hosts.check("127.0.0.1", 22, &key(KEY_B)),
            HostKeyCheck::Unknown
        );
        assert_eq!(
            hosts.check("gitlab.com", 22, &key(KEY_A)),
            HostKeyCheck::Unknown
        );
    }

    #[test]
    fn checks_hashed_entries() {
        let text = format!(
            "{} ssh-ed25519 {KEY_A}\n",
            hashed("[10.1.2.3]:2222", b"0123456789abcdefghij")
        );
        let hosts = KnownHosts::parse(&text).unwrap();
        assert_eq!(
            hosts.check("10.1.2.3", 2222, &key(KEY_A)),
            HostKeyCheck::Trusted
        );
        assert_eq!(
            hosts.check("10.1.2.3", 2222, &key(KEY_B)),
            HostKeyCheck::Mismatch
        );
        assert_eq!(
            hosts.check("10.1.2.4", 2222, &key(KEY_A)),
            HostKeyCheck::Unknown
        );
    }

    #[test]
    fn honours_wildcards_negation_and_revocation() {
        let text = format!(
            "*.example.com,!bad.example.com ssh-ed25519 {KEY_A}\n@revoked git?.example.com ssh-ed25519 {KEY_B}\n"
        );
        let hosts = KnownHosts::parse(&text).unwrap();
        assert_eq!(
            hosts.check("git.example.com", 22, &key(KEY_A)),
            HostKeyCheck::Trusted
        );
        assert_eq!(
            hosts.check("bad.example.com", 22, &key(KEY_A)),
            HostKeyCheck::Unknown
        );
        assert_eq!(
            hosts.check("git1.example.com", 22, &key(KEY_B)),
            HostKeyCheck::Revoked
        );
    }

    #[test]
    fn reports_the_line_of_a_malformed_entry() {
        let error = KnownHosts::parse("github.com ssh-ed25519\n").unwrap_err();
        assert_eq!(error.line, 1);
        let error = KnownHosts::parse(&format!("ok ssh-ed25519 {KEY_A}\nbad ssh-ed25519 !!!\n"))
            .unwrap_err();
        assert_eq!(error.line, 2);
    }
}
