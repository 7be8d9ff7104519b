//! Newtypes for the identifiers that travel on the wire, so a room id is never passed where a
//! user id is expected. All are strings on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);
        string_id!(@common $name);
    };
    // Decoded only when `$check` accepts it: a malformed id is refused where it is read (its
    // text is not repeated in the error).
    ($(#[$doc:meta])* $name:ident, checked by $check:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub String);
        string_id!(@common $name);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                match $check(&s) {
                    true => Ok($name(s)),
                    false => Err(serde::de::Error::custom($what)),
                }
            }
        }
    };
    (@common $name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A company (tenant): a domain name such as `acme.example`.
    CompanyId,
    checked by is_company_id,
    "a company id is a lowercase domain name such as acme.example"
);
string_id!(
    /// A user: `login@company`, e.g. `alice@acme.example`.
    UserId,
    checked by is_user_id,
    "a user id is login@company: 1 to 64 of a-z 0-9 . _ - and a company domain"
);

/// A login (the part of a user id before `@`): 1–64 of `a-z 0-9 . _ -`.
pub fn is_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= 64
        && login
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A company id: a lowercase domain name of at most 253 bytes with at least one dot, each
/// label 1–63 of `a-z 0-9 -`, not starting or ending with `-`.
pub fn is_company_id(id: &str) -> bool {
    let labels_ok = id.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    id.len() <= 253 && id.contains('.') && labels_ok
}

/// The logins of the server's own actors, which author entries a company's admin API or its
/// policy made (`#admin@acme.example`, `#policy@acme.example`); no person has them.
pub const SYSTEM_LOGINS: [&str; 2] = ["#admin", "#policy"];

/// A user id: `login@company` (or a system actor's, [`SYSTEM_LOGINS`]).
pub fn is_user_id(id: &str) -> bool {
    id.split_once('@').is_some_and(|(login, company)| {
        (is_login(login) || SYSTEM_LOGINS.contains(&login)) && is_company_id(company)
    })
}
string_id!(
    /// A room (general room or external group): `r_` and 26 random base32 characters; never
    /// reused.
    RoomId
);

impl RoomId {
    /// Whether this is a room id's shape: `r_` and 26 characters of `a-z2-7`. Anything else
    /// names no room (and is refused `invalid_argument` before any work is done for it).
    pub fn is_well_formed(&self) -> bool {
        let b = self.0.as_bytes();
        b.len() == 28
            && b.starts_with(b"r_")
            && b[2..]
                .iter()
                .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(c))
    }
}

impl UserId {
    /// The company part of `login@company`.
    pub fn company(&self) -> Option<CompanyId> {
        self.0
            .rsplit_once('@')
            .map(|(_, c)| CompanyId(c.to_owned()))
    }
}
