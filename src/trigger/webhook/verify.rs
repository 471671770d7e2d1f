//! Pure webhook logic: checking a delivery's signature or token in constant time, and
//! deciding from its headers and payload whether it asks for a fetch.

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The scheme prefix of `X-Hub-Signature-256` and `X-Signature-256` values.
const SHA256_PREFIX: &str = "sha256=";

/// Why a delivery was not accepted as coming from someone who knows the secret. Logged (the
/// kind only, never the value sent); the sender always gets the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no signature or token header")]
    Missing,
    #[error("signature is not `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error("signature or token does not match the secret")]
    Mismatch,
}

/// The `sha256=<hex>` signature of `body` under `secret`, as GitHub writes it.
#[must_use]
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac(secret);
    mac.update(body);
    format!(
        "{SHA256_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Checks a `sha256=<hex HMAC-SHA256(body)>` header value against `body` and `secret`; the
/// comparison takes the same time however many bytes match.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let digits = header
        .strip_prefix(SHA256_PREFIX)
        .ok_or(AuthError::Malformed)?;
    let expected = hex::decode(digits).map_err(|_| AuthError::Malformed)?;
    if expected.len() != 32 {
        return Err(AuthError::Malformed);
    }
    let mut mac = hmac(secret);
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| AuthError::Mismatch)
}

/// Checks a token sent as it is (GitLab's `X-Gitlab-Token`) against the secret. Both are
/// hashed first, so the comparison is constant-time and says nothing about the length.
pub fn verify_token(secret: &[u8], header: Option<&[u8]>) -> Result<(), AuthError> {
    let token = header.ok_or(AuthError::Missing)?;
    let matches = Sha256::digest(token)
        .as_slice()
        .ct_eq(Sha256::digest(secret).as_slice());
    if bool::from(matches) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

fn hmac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; only fixed-size-key MACs can refuse one.
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length")
}

/// What a verified delivery asks of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Fetch the source.
    Trigger,
    /// A "this hook works" delivery: answer, do nothing.
    Ping,
    /// Not a push, or a push for a ref the agent does not follow.
    Ignore(IgnoreReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    NotAPush,
    OtherRef,
}

impl IgnoreReason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAPush => "event is not a push",
            Self::OtherRef => "push is for a ref the agent does not follow",
        }
    }
}

/// How the payload is encoded: GitHub lets a hook send JSON or a form with a `payload` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadEncoding {
    Json,
    Form,
}

impl PayloadEncoding {
    #[must_use]
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        match content_type {
            Some(ct) if ct.starts_with("application/x-www-form-urlencoded") => Self::Form,
            _ => Self::Json,
        }
    }
}

/// GitHub: `push` fetches (when for the followed branch), `ping` is answered, the rest is
/// ignored.
#[must_use]
pub fn github_decision(
    event: Option<&str>,
    body: &[u8],
    encoding: PayloadEncoding,
    branch: Option<&str>,
) -> Decision {
    match event {
        Some("ping") => Decision::Ping,
        Some("push") => push_decision(push_ref(body, encoding).as_deref(), branch),
        _ => Decision::Ignore(IgnoreReason::NotAPush),
    }
}

/// GitLab: `Push Hook` and `Tag Push Hook` fetch (when for the followed branch), the rest
/// is ignored. GitLab's "Test" button sends a push.
#[must_use]
pub fn gitlab_decision(event: Option<&str>, body: &[u8], branch: Option<&str>) -> Decision {
    match event {
        Some("Push Hook" | "Tag Push Hook") => {
            push_decision(push_ref(body, PayloadEncoding::Json).as_deref(), branch)
        }
        _ => Decision::Ignore(IgnoreReason::NotAPush),
    }
}

/// A push fetches unless it plainly names a ref other than the followed branch. A push
/// whose ref cannot be read still fetches: it is verified, and a fetch is harmless.
fn push_decision(pushed: Option<&str>, branch: Option<&str>) -> Decision {
    match (pushed, branch) {
        (Some(pushed), Some(branch)) if pushed.strip_prefix("refs/heads/") != Some(branch) => {
            Decision::Ignore(IgnoreReason::OtherRef)
        }
        _ => Decision::Trigger,
    }
}

/// The `ref` a push payload names (`refs/heads/main`), when it can be read.
#[must_use]
pub fn push_ref(body: &[u8], encoding: PayloadEncoding) -> Option<String> {
    #[derive(Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        pushed: String,
    }
    let json = match encoding {
        PayloadEncoding::Json => body.to_vec(),
        PayloadEncoding::Form => url::form_urlencoded::parse(body)
            .find(|(key, _)| key == "payload")?
            .1
            .into_owned()
            .into_bytes(),
    };
    serde_json::from_slice::<Push>(&json)
        .ok()
        .map(|push| push.pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented example ("Validating webhook deliveries").
    const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_PAYLOAD: &[u8] = b"Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn signs_githubs_test_vector() {
        assert_eq!(sign(GITHUB_SECRET, GITHUB_PAYLOAD), GITHUB_SIGNATURE);
    }

    #[test]
    fn verifies_githubs_test_vector() {
        assert_eq!(
            verify_signature(GITHUB_SECRET, GITHUB_PAYLOAD, Some(GITHUB_SIGNATURE)),
            Ok(())
        );
        let upper = GITHUB_SIGNATURE.replace("757107ea", "757107EA");
        assert_eq!(
            verify_signature(GITHUB_SECRET, GITHUB_PAYLOAD, Some(&upper)),
            Ok(()),
            "hex digits in either case"
        );
    }

    #[test]
    fn refuses_signatures_that_do_not_match() {
        let flipped = GITHUB_SIGNATURE.replace("757107ea", "757107eb");
        let headers = [
            (None, AuthError::Missing),
            (Some(""), AuthError::Malformed),
            (Some(&GITHUB_SIGNATURE[7..]), AuthError::Malformed),
            (
                Some("sha1=757107ea0eb2509fc211221cce984b8a37570b6d"),
                AuthError::Malformed,
            ),
            (Some("sha256=zz"), AuthError::Malformed),
            (
                Some(&GITHUB_SIGNATURE[..GITHUB_SIGNATURE.len() - 2]),
                AuthError::Malformed,
            ),
            (Some(&flipped), AuthError::Mismatch),
        ];
        for (header, expected) in headers {
            assert_eq!(
                verify_signature(GITHUB_SECRET, GITHUB_PAYLOAD, header),
                Err(expected),
                "{header:?}"
            );
        }
        assert_eq!(
            verify_signature(b"another secret", GITHUB_PAYLOAD, Some(GITHUB_SIGNATURE)),
            Err(AuthError::Mismatch),
            "another secret"
        );
        assert_eq!(
            verify_signature(GITHUB_SECRET, b"Hello, World?", Some(GITHUB_SIGNATURE)),
            Err(AuthError::Mismatch),
            "another body"
        );
    }

    #[test]
    fn tokens_must_equal_the_secret() {
        let secret = b"gitlab-token";
        assert_eq!(verify_token(secret, Some(b"gitlab-token")), Ok(()));
        assert_eq!(verify_token(secret, None), Err(AuthError::Missing));
        for wrong in [&b""[..], b"gitlab-toke", b"gitlab-token ", b"GITLAB-TOKEN"] {
            assert_eq!(
                verify_token(secret, Some(wrong)),
                Err(AuthError::Mismatch),
                "{wrong:?}"
            );
        }
    }

    /// (X-GitHub-Event, body, followed branch, decision)
    type GithubCase<'a> = (Option<&'a str>, &'a [u8], Option<&'a str>, Decision);

    #[test]
    fn github_events_decide_by_kind_and_ref() {
        let main = br#"{"ref":"refs/heads/main","after":"abc"}"#;
        let feature = br#"{"ref":"refs/heads/feature"}"#;
        let tag = br#"{"ref":"refs/tags/v1.0.0"}"#;
        let json = PayloadEncoding::Json;
        let other = Decision::Ignore(IgnoreReason::OtherRef);
        let cases: [GithubCase; 9] = [
            (Some("push"), main, Some("main"), Decision::Trigger),
            (Some("push"), feature, Some("main"), other),
            (Some("push"), tag, Some("main"), other),
            (Some("push"), feature, None, Decision::Trigger),
            (Some("push"), tag, None, Decision::Trigger),
            (Some("push"), b"not json", Some("main"), Decision::Trigger),
            (Some("ping"), b"{}", Some("main"), Decision::Ping),
            (
                Some("issues"),
                main,
                None,
                Decision::Ignore(IgnoreReason::NotAPush),
            ),
            (None, main, None, Decision::Ignore(IgnoreReason::NotAPush)),
        ];
        for (event, body, branch, expected) in cases {
            assert_eq!(
                github_decision(event, body, json, branch),
                expected,
                "{event:?} {} {branch:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn github_form_payloads_are_read_too() {
        let form = b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Ffeature%22%7D";
        let encoding =
            PayloadEncoding::from_content_type(Some("application/x-www-form-urlencoded"));
        assert_eq!(encoding, PayloadEncoding::Form);
        assert_eq!(
            push_ref(form, encoding).as_deref(),
            Some("refs/heads/feature")
        );
        assert_eq!(
            github_decision(Some("push"), form, encoding, Some("main")),
            Decision::Ignore(IgnoreReason::OtherRef)
        );
    }

    #[test]
    fn gitlab_events_decide_by_kind_and_ref() {
        let main = br#"{"object_kind":"push","ref":"refs/heads/main"}"#;
        let tag = br#"{"object_kind":"tag_push","ref":"refs/tags/v2"}"#;
        assert_eq!(
            gitlab_decision(Some("Push Hook"), main, Some("main")),
            Decision::Trigger
        );
        assert_eq!(
            gitlab_decision(Some("Tag Push Hook"), tag, None),
            Decision::Trigger
        );
        assert_eq!(
            gitlab_decision(Some("Tag Push Hook"), tag, Some("main")),
            Decision::Ignore(IgnoreReason::OtherRef)
        );
        assert_eq!(
            gitlab_decision(Some("Merge Request Hook"), main, None),
            Decision::Ignore(IgnoreReason::NotAPush)
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #[test]
            fn a_signature_verifies_its_body_and_nothing_else(
                secret in proptest::collection::vec(any::<u8>(), 1..64),
                body in proptest::collection::vec(any::<u8>(), 0..512),
                flip in any::<usize>(),
            ) {
                let signature = sign(&secret, &body);
                prop_assert!(verify_signature(&secret, &body, Some(&signature)).is_ok());
                if !body.is_empty() {
                    let mut tampered = body.clone();
                    tampered[flip % body.len()] ^= 0x01;
                    prop_assert!(verify_signature(&secret, &tampered, Some(&signature)).is_err());
                }
                let mut other = secret.clone();
                other[flip % secret.len()] ^= 0x01;
                prop_assert!(verify_signature(&other, &body, Some(&signature)).is_err());
            }

            #[test]
            fn any_header_is_judged_without_panicking(
                header in "\\PC{0,80}",
                body in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                prop_assert!(verify_signature(b"secret", &body, Some(&header)).is_err());
                let _ = verify_token(b"secret", Some(header.as_bytes()));
                let _ = github_decision(Some("push"), header.as_bytes(), PayloadEncoding::Json, Some("main"));
                let _ = gitlab_decision(Some("Push Hook"), header.as_bytes(), Some("main"));
            }
        }
    }
}
