//! OpenPGP public keys as trust anchors for commit signatures.
//!
//! A key block is read once into what a commit check needs: which of its keys may sign
//! (the primary key, and subkeys bound for signing with a valid back-signature), when each
//! expires and whether it was revoked, all taken only from signatures the key made itself.
//! A commit check then finds the signing key by the issuer the signature names, verifies the
//! signature and judges the key's validity *now* — as git's `--verify-signatures` and Flux
//! do: a key that has expired or been revoked signs nothing any more, so a commit it signed
//! before stops being accepted and the last good revision keeps serving until a valid key
//! signs a new one.

use std::time::{Duration, SystemTime};

use pgp::composed::{Deserializable as _, DetachedSignature, SignedPublicKey};
use pgp::packet::{self, Signature, SignatureType};
use pgp::types::{KeyDetails, Tag};

/// One trusted OpenPGP key (certificate), validated when the trusted keys were read.
#[derive(Debug, Clone)]
pub(super) struct OpenPgpKey {
    /// The primary key's fingerprint, upper-case hex: how operators name the key.
    fingerprint: String,
    signers: Vec<SigningKey>,
}

/// The primary key or a subkey that may make signatures.
#[derive(Debug, Clone)]
struct SigningKey {
    fingerprint: String,
    key_id: String,
    key: KeyMaterial,
    created: SystemTime,
    /// From the newest self-signature (primary) or binding signature (subkey).
    expires: Option<SystemTime>,
    /// The earliest revocation by the key's own primary key; for a subkey, the primary key's
    /// revocation counts too.
    revoked: Option<SystemTime>,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    Primary(packet::PublicKey),
    Subkey(packet::PublicSubkey),
}

/// Why a signature by a trusted key is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No trusted key is the issuer the signature names; carries that issuer.
    Untrusted(String),
    /// The signing key was revoked; carries the signer and the date.
    Revoked { signer: String, since: String },
    /// The signing key has expired; carries the signer and the date.
    Expired { signer: String, since: String },
    /// The signature does not verify, or its own dates rule it out.
    Invalid(String),
}

impl OpenPgpKey {
    /// Reads an ASCII-armored public key block. Only the key's own signatures count: third-party
    /// certifications (a key signed by colleagues) are ignored, not refused.
    pub(super) fn parse(armored: &str) -> Result<Self, String> {
        let (certificate, _) = SignedPublicKey::from_string(armored).map_err(|e| e.to_string())?;
        let primary = &certificate.primary_key;
        let fingerprint = format!("{:X}", primary.fingerprint());

        let self_signatures: Vec<&Signature> = certificate
            .details
            .users
            .iter()
            .flat_map(|user| {
                user.signatures.iter().filter(|signature| {
                    is_certification(signature)
                        && signature
                            .verify_certification(primary, Tag::UserId, &user.id)
                            .is_ok()
                })
            })
            .chain(
                certificate
                    .details
                    .direct_signatures
                    .iter()
                    .filter(|signature| signature.verify_key(primary).is_ok()),
            )
            .collect();
        let Some(self_signature) = newest(&self_signatures) else {
            return Err(format!(
                "key {fingerprint} carries no valid self-signature, so nothing vouches for it"
            ));
        };
        let revoked = earliest_creation(certificate.details.revocation_signatures.iter().filter(
            |signature| {
                signature.typ() == Some(SignatureType::KeyRevocation)
                    && signature.verify_key(primary).is_ok()
            },
        ));
        let created = SystemTime::from(primary.created_at());
        let expires = expiry(created, self_signature);
        let mut signers = vec![SigningKey {
            fingerprint: fingerprint.clone(),
            key_id: hex::encode_upper(primary.legacy_key_id()),
            key: KeyMaterial::Primary(primary.clone()),
            created,
            expires,
            revoked,
        }];

        for subkey in &certificate.public_subkeys {
            // Binding and revocation signatures of the subkey that its primary key made.
            let by_primary = |typ: SignatureType| {
                subkey.signatures.iter().filter(move |signature| {
                    signature.typ() == Some(typ)
                        && signature
                            .verify_subkey_binding(primary, &subkey.key)
                            .is_ok()
                })
            };
            let bindings: Vec<&Signature> = by_primary(SignatureType::SubkeyBinding).collect();
            // A subkey signs for the key only if its newest binding says so and the subkey
            // signed back (the embedded primary key binding): without that check the
            // certificate could claim somebody else's signing key as its own.
            let Some(binding) = newest(&bindings) else {
                continue;
            };
            let signs_back = binding.embedded_signature().is_some_and(|back| {
                back.verify_primary_key_binding(&subkey.key, primary)
                    .is_ok()
            });
            if !binding.key_flags().sign() || !signs_back {
                continue;
            }
            let subkey_revoked = earliest_creation(by_primary(SignatureType::SubkeyRevocation));
            let subkey_created = SystemTime::from(subkey.key.created_at());
            signers.push(SigningKey {
                fingerprint: format!("{:X}", subkey.key.fingerprint()),
                key_id: hex::encode_upper(subkey.key.legacy_key_id()),
                key: KeyMaterial::Subkey(subkey.key.clone()),
                created: subkey_created,
                // A subkey is no longer valid than the certificate it belongs to.
                expires: earliest([expiry(subkey_created, binding), expires]),
                revoked: earliest([subkey_revoked, revoked]),
            });
        }
        Ok(OpenPgpKey {
            fingerprint,
            signers,
        })
    }

    /// The primary key's fingerprint.
    pub(super) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Verifies an armored detached signature over `signed` against `keys` as of `now`; returns
/// the primary fingerprint of the key that made it.
pub(super) fn verify(
    keys: &[OpenPgpKey],
    armored: &str,
    signed: &[u8],
    now: SystemTime,
) -> Result<String, Refusal> {
    let (signature, _) = DetachedSignature::from_string(armored.trim())
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    let fingerprints: Vec<String> = signature
        .signature
        .issuer_fingerprint()
        .iter()
        .map(|f| format!("{f:X}"))
        .collect();
    let key_ids: Vec<String> = signature
        .signature
        .issuer_key_id()
        .iter()
        .map(hex::encode_upper)
        .collect();
    let found = keys.iter().find_map(|key| {
        key.signers
            .iter()
            .find(|signer| {
                fingerprints.contains(&signer.fingerprint) || key_ids.contains(&signer.key_id)
            })
            .map(|signer| (key, signer))
    });
    let Some((key, signing_key)) = found else {
        return Err(Refusal::Untrusted(
            fingerprints.first().or(key_ids.first()).map_or_else(
                || "an unnamed OpenPGP key".to_owned(),
                |issuer| format!("OpenPGP {issuer}"),
            ),
        ));
    };
    match &signing_key.key {
        KeyMaterial::Primary(material) => signature.verify(material, signed),
        KeyMaterial::Subkey(material) => signature.verify(material, signed),
    }
    .map_err(|e| Refusal::Invalid(e.to_string()))?;

    let made = signature
        .signature
        .created()
        .map(SystemTime::from)
        .ok_or_else(|| Refusal::Invalid("the signature carries no creation time".to_owned()))?;
    if made < signing_key.created {
        return Err(Refusal::Invalid(
            "the signature is dated before its key was created".to_owned(),
        ));
    }
    if let Some(lifetime) = nonzero(signature.signature.signature_expiration_time())
        && made + lifetime <= now
    {
        return Err(Refusal::Invalid(format!(
            "the signature expired on {}",
            date(made + lifetime)
        )));
    }
    let name = if signing_key.fingerprint == key.fingerprint {
        format!("OpenPGP {}", key.fingerprint)
    } else {
        format!(
            "OpenPGP {} (subkey {})",
            key.fingerprint, signing_key.fingerprint
        )
    };
    if let Some(since) = signing_key.revoked.filter(|since| *since <= now) {
        return Err(Refusal::Revoked {
            signer: name,
            since: date(since),
        });
    }
    if let Some(since) = signing_key.expires.filter(|since| *since <= now) {
        return Err(Refusal::Expired {
            signer: name,
            since: date(since),
        });
    }
    Ok(key.fingerprint.clone())
}

fn is_certification(signature: &Signature) -> bool {
    matches!(
        signature.typ(),
        Some(
            SignatureType::CertGeneric
                | SignatureType::CertPersona
                | SignatureType::CertCasual
                | SignatureType::CertPositive
        )
    )
}

/// The most recently made signature: the one whose statements (expiry, flags) are current.
fn newest<'a>(signatures: &[&'a Signature]) -> Option<&'a Signature> {
    signatures
        .iter()
        .copied()
        .max_by_key(|signature| signature.created())
}

fn earliest_creation<'a>(signatures: impl Iterator<Item = &'a Signature>) -> Option<SystemTime> {
    signatures
        .filter_map(|signature| signature.created().map(SystemTime::from))
        .min()
}

fn earliest(times: [Option<SystemTime>; 2]) -> Option<SystemTime> {
    times.into_iter().flatten().min()
}

/// A key's end of validity: its creation plus the lifetime its newest self-signature gives.
fn expiry(created: SystemTime, signature: &Signature) -> Option<SystemTime> {
    nonzero(signature.key_expiration_time()).map(|lifetime| created + lifetime)
}

/// OpenPGP writes "never" as a zero duration as well as by leaving the subpacket out.
fn nonzero(duration: Option<pgp::types::Duration>) -> Option<Duration> {
    duration
        .map(Duration::from)
        .filter(|lifetime| !lifetime.is_zero())
}

fn date(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}
