//! User tokens arrive from anyone (the `Authorization` header, `auth` frames, HTTP routes) and
//! are parsed by our own code: it must never panic, whatever the string, and must never accept
//! a token it did not sign.
#![no_main]

use crossroom::directory::token::TokenKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = TokenKey::new(b"fuzzing secret, never signs anything");
    assert!(
        key.verify(text, 1_800_000_000).is_err(),
        "a forged token was accepted"
    );
});
