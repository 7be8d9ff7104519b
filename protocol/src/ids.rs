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
    CompanyId
);
string_id!(
    /// A user: `login@company`, e.g. `alice@acme.example`.
    UserId
);
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
