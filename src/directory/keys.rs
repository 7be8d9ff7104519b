//! Admin keys: how a company's key is made and kept (only its SHA-256 hash is stored), and how
//! the operator key is recognised (in constant time). Neither key is ever logged.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a key, hex: what the store keeps instead of the key.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new company admin API key.
pub fn new_admin_key() -> String {
    format!("ck_{}{}", crate::random::token(), crate::random::token())
}

/// Whether `given` is the operator key. Fixed-length digests are compared in constant time: no
/// timing hint about the key.
pub fn is_operator_key(operator_key: &str, given: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(operator_key.as_bytes());
    bool::from(a.ct_eq(&b))
}
