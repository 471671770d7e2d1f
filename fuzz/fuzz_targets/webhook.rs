//! A webhook delivery: any body and signature header is judged without a panic, and only
//! the body's own signature under the secret verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretsync::trigger::webhook::verify::{sign, verify_signature, verify_token};

const SECRET: &[u8] = b"fuzz-webhook-secret";

fuzz_target!(|input: (&str, &[u8])| {
    let (header, body) = input;
    let forged = verify_signature(SECRET, body, Some(header));
    assert!(
        // Hex digits are read in either case.
        forged.is_err() || header.eq_ignore_ascii_case(&sign(SECRET, body)),
        "a header that is not the body's signature verified"
    );
    let _ = verify_token(SECRET, Some(header.as_bytes()));
    assert!(verify_signature(SECRET, body, Some(&sign(SECRET, body))).is_ok());
});
