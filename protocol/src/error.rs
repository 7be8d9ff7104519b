//! Stable error codes carried by `error` frames and by the admin API's error bodies.
//!
//! A code never changes meaning; new codes may be added, so clients must treat an unknown code
//! as a generic failure (it decodes as [`ErrorCode::Unknown`]).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded, or its `type` is unknown.
    BadFrame,
    /// A field is missing, malformed or out of its limits (see the message).
    InvalidArgument,
    /// Not authenticated yet, or the token is invalid.
    Unauthorized,
    /// The token has expired; get a new one.
    TokenExpired,
    /// The request needs a right the caller does not have.
    Forbidden,
    /// No such thing — or it exists but the caller may not know it (rule G8).
    NotFound,
    /// It already exists (a company or user id taken).
    AlreadyExists,
    /// The caller is not a member of the room.
    NotMember,
    /// The room's feature switch for this operation is off (G18).
    FeatureDisabled,
    /// An external user must be in the adder's contacts first (G7).
    NotInContacts,
    /// A user lacks external permission (G5).
    NoExternalPermission,
    /// LINE users cannot be in an external group (G6).
    LineUserNotAllowed,
    /// The user's company does not let members create groups.
    GroupCreationNotAllowed,
    /// The last master of a group cannot be removed or demoted (G10).
    LastMaster,
    /// Members cannot leave an external group by themselves (G11).
    CannotLeave,
    /// The owner company's storage quota would be passed (G17).
    QuotaExceeded,
    /// A configured limit was reached (list sizes, subscriptions, groups per company...).
    LimitExceeded,
    /// Too many requests; slow down.
    RateLimited,
    /// The user (or their company) holds too many live sessions on this node.
    TooManySessions,
    /// The server failed; the request may be retried.
    Internal,
    /// The server is shutting down or not ready; retry on another node or later.
    Unavailable,
    /// A code this client version does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::NotMember => "not_member",
            ErrorCode::FeatureDisabled => "feature_disabled",
            ErrorCode::NotInContacts => "not_in_contacts",
            ErrorCode::NoExternalPermission => "no_external_permission",
            ErrorCode::LineUserNotAllowed => "line_user_not_allowed",
            ErrorCode::GroupCreationNotAllowed => "group_creation_not_allowed",
            ErrorCode::LastMaster => "last_master",
            ErrorCode::CannotLeave => "cannot_leave",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
