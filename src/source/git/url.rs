//! Remote repository addresses: parsing every form git accepts (`https://`, `http://`,
//! `ssh://`, scp-like `user@host:path`, `git://`, `file://`, an absolute path) and printing
//! them without credentials.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("repository URL {url} is not valid: {reason}")]
    Invalid { url: String, reason: String },
    #[error(
        "repository URL scheme {scheme:?} is not supported (use https, http, ssh, git or file)"
    )]
    UnsupportedScheme { scheme: String },
}

/// How a remote is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    Http,
    Ssh,
    Git,
    File,
}

/// A parsed remote address. `Display` never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// What libgit2 is given (may hold credentials from the user's URL).
    raw: String,
    transport: Transport,
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
    /// `raw` with the password removed.
    redacted: String,
}

impl RemoteUrl {
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let input = input.trim();
        if input.starts_with('/') {
            return Ok(RemoteUrl::local(input));
        }
        if !input.contains("://") {
            return RemoteUrl::parse_scp_like(input);
        }
        let url = url::Url::parse(input).map_err(|e| UrlError::Invalid {
            url: redact_unparsed(input),
            reason: e.to_string(),
        })?;
        let transport = match url.scheme() {
            "https" => Transport::Https,
            "http" => Transport::Http,
            "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
            "git" => Transport::Git,
            "file" => Transport::File,
            other => {
                return Err(UrlError::UnsupportedScheme {
                    scheme: other.to_owned(),
                });
            }
        };
        let password = url.password().map(str::to_owned);
        let mut redacted = url.clone();
        // Only fails for URLs that cannot carry credentials, which then have none to hide.
        let _ = redacted.set_password(None);
        Ok(RemoteUrl {
            raw: input.to_owned(),
            transport,
            host: url
                .host_str()
                .map(|h| h.trim_matches(['[', ']']).to_owned()),
            port: url.port(),
            username: Some(url.username())
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            password,
            redacted: redacted.to_string(),
        })
    }

    fn local(path: &str) -> Self {
        RemoteUrl {
            raw: path.to_owned(),
            transport: Transport::File,
            host: None,
            port: None,
            username: None,
            password: None,
            redacted: path.to_owned(),
        }
    }

    /// `[user@]host:path`, which git reads as SSH on port 22.
    fn parse_scp_like(input: &str) -> Result<Self, UrlError> {
        let invalid = |reason: &str| UrlError::Invalid {
            url: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (authority, path) = input
            .split_once(':')
            .ok_or_else(|| invalid("expected scheme://… or user@host:path"))?;
        if path.is_empty() || authority.contains('/') {
            return Err(invalid("expected scheme://… or user@host:path"));
        }
        let (username, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user.to_owned()), host),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        Ok(RemoteUrl {
            raw: input.to_owned(),
            transport: Transport::Ssh,
            host: Some(host.to_owned()),
            port: None,
            username,
            password: None,
            redacted: input.to_owned(),
        })
    }

    /// The address as given, credentials included: for libgit2 only, never for output.
    #[must_use]
    pub fn as_git_url(&self) -> &str {
        &self.raw
    }

    #[must_use]
    pub fn transport(&self) -> Transport {
        self.transport
    }

    #[must_use]
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port, or the transport's default (22 for SSH).
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.port.or(match self.transport {
            Transport::Ssh => Some(22),
            Transport::Https => Some(443),
            Transport::Http => Some(80),
            Transport::Git => Some(9418),
            Transport::File => None,
        })
    }

    #[must_use]
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// A password written into the URL itself (discouraged, but git accepts it).
    #[must_use]
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RemoteUrl").field(&self.redacted).finish()
    }
}

/// Best effort for a URL that did not parse: drop everything between `://` and `@`.
fn redact_unparsed(input: &str) -> String {
    match (input.find("://"), input.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &input[..scheme_end], &input[at + 1..])
        }
        _ => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_git_accepts() {
        let cases = [
            (
                "https://github.com/org/repo.git",
                Transport::Https,
                Some("github.com"),
                Some(443),
                None,
            ),
            (
                "http://127.0.0.1:8080/repo.git",
                Transport::Http,
                Some("127.0.0.1"),
                Some(8080),
                None,
            ),
            (
                "ssh://git@example.com:2222/org/repo.git",
                Transport::Ssh,
                Some("example.com"),
                Some(2222),
                Some("git"),
            ),
            (
                "git@github.com:org/repo.git",
                Transport::Ssh,
                Some("github.com"),
                Some(22),
                Some("git"),
            ),
            (
                "github.com:org/repo.git",
                Transport::Ssh,
                Some("github.com"),
                Some(22),
                None,
            ),
            (
                "git://127.0.0.1:9999/repo.git",
                Transport::Git,
                Some("127.0.0.1"),
                Some(9999),
                None,
            ),
            (
                "file:///srv/git/repo.git",
                Transport::File,
                None,
                None,
                None,
            ),
            ("/srv/git/repo.git", Transport::File, None, None, None),
            (
                "ssh://git@[::1]:22/repo.git",
                Transport::Ssh,
                Some("::1"),
                Some(22),
                Some("git"),
            ),
        ];
        for (input, transport, host, port, user) in cases {
            let url = RemoteUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url.transport(), transport, "{input}");
            assert_eq!(url.host(), host, "{input}");
            assert_eq!(url.port(), port, "{input}");
            assert_eq!(url.username(), user, "{input}");
            assert_eq!(url.as_git_url(), input);
        }
    }

    #[test]
    fn never_prints_a_password() {
        let url =
            RemoteUrl::parse("https://bot:s3cr3t-value@git.example.com/org/repo.git").unwrap();
        assert_eq!(url.password(), Some("s3cr3t-value"));
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("bot@git.example.com"), "{shown}");
        }
        let error = RemoteUrl::parse("https://bot:s3cr3t@exa mple.com/x").unwrap_err();
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
    }

    #[test]
    fn refuses_what_is_not_a_repository_address() {
        for input in ["ftp://example.com/repo", "not a url", "host:", "https://"] {
            assert!(RemoteUrl::parse(input).is_err(), "{input} parsed");
        }
    }
}
