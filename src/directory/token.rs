//! User tokens: JWTs signed with HMAC-SHA256 (`alg` pinned to `HS256`), carrying the user, their
//! company, an audience and an expiry. Verified on every connect.
//!
//! Written on `hmac`/`sha2` rather than `jsonwebtoken`: we only ever need HS256, and pinning the
//! algorithm in twenty lines beats carrying RSA/ECDSA backends that must then be kept disabled.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use crossroom_protocol::{CompanyId, UserId};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The audience every crossroom user token carries.
pub const AUDIENCE: &str = "crossroom";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: UserId,
    /// The user's company; checked against the directory on connect.
    pub cmp: CompanyId,
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not before, seconds.
    pub nbf: i64,
    /// Expiry, seconds.
    pub exp: i64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm must be HS256")]
    BadAlgorithm,
    #[error("bad token signature")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audience is wrong")]
    BadAudience,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> TokenKey {
        TokenKey {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        #[allow(clippy::expect_used)]
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac accepts any key length")
    }

    /// A token for `user` of `company`, valid from `now` for `ttl_secs`.
    pub fn sign(&self, user: &UserId, company: &CompanyId, now: i64, ttl_secs: i64) -> String {
        self.sign_issued(user, company, now, now, ttl_secs)
    }

    /// A token whose issue time (`iat`) is `issued`, valid from `now` for `ttl_secs`.
    pub fn sign_issued(
        &self,
        user: &UserId,
        company: &CompanyId,
        issued: i64,
        now: i64,
        ttl_secs: i64,
    ) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = Claims {
            sub: user.clone(),
            cmp: company.clone(),
            aud: AUDIENCE.to_owned(),
            iat: issued,
            nbf: now,
            exp: now + ttl_secs,
        };
        // Serializing a struct of strings and integers cannot fail.
        let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Verify signature, algorithm, audience and validity window at `now` (seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::BadAlgorithm);
        }
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.aud != AUDIENCE {
            return Err(TokenError::BadAudience);
        }
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn round_trip() {
        let t = key().sign(&"a@x.example".into(), &"x.example".into(), 1000, 60);
        let c = key().verify(&t, 1001).expect("valid");
        assert_eq!(c.sub, UserId::from("a@x.example"));
        assert_eq!(c.cmp, CompanyId::from("x.example"));
    }

    #[test]
    fn expiry_and_not_before() {
        let t = key().sign(&"a@x.example".into(), &"x.example".into(), 1000, 60);
        assert_eq!(key().verify(&t, 1060), Err(TokenError::Expired));
        assert_eq!(key().verify(&t, 999), Err(TokenError::NotYetValid));
    }

    #[test]
    fn other_key_is_refused() {
        let t = key().sign(&"a@x.example".into(), &"x.example".into(), 1000, 60);
        assert_eq!(
            TokenKey::new(b"another").verify(&t, 1001),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let t = key().sign(&"a@x.example".into(), &"x.example".into(), 1000, 60);
        let mut parts: Vec<&str> = t.split('.').collect();
        let none = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        parts[0] = &none;
        parts[2] = "";
        assert_eq!(
            key().verify(&parts.join("."), 1001),
            Err(TokenError::BadAlgorithm)
        );
    }

    #[test]
    fn tampered_claims_are_refused() {
        let t = key().sign(&"a@x.example".into(), &"x.example".into(), 1000, 60);
        let parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(
            br#"{"sub":"boss@x.example","cmp":"x.example","aud":"crossroom","iat":1000,"nbf":1000,"exp":99999}"#,
        );
        let t2 = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(key().verify(&t2, 1001), Err(TokenError::BadSignature));
        assert_eq!(key().verify("abc", 1), Err(TokenError::Malformed));
    }

    #[test]
    fn fuzz_corpus_replays_without_accepting_anything() {
        // Inputs `cargo fuzz run verify_token` kept (protocol/fuzz/corpus/verify_token).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("protocol/fuzz/corpus/verify_token");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            if let Ok(text) = std::str::from_utf8(&data) {
                assert!(key().verify(text, 1_800_000_000).is_err());
            }
            n += 1;
        }
        assert!(n > 0);
    }
}
