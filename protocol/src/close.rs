//! WebSocket close codes, grouped by how a client should react.
//!
//! | range | reaction |
//! |---|---|
//! | 1000 | normal close: do not reconnect |
//! | 1001 | server going away (shutdown, deploy): reconnect **now**, to any node, and resume |
//! | 1002, 1003, 1007, 1008, 1009, 1011 | RFC 6455 meanings; 1009 = frame too large (fix the client), 1011 = server error (reconnect with backoff) |
//! | 4000–4499 | transient: reconnect **with backoff** and resume from the last `(epoch, seq)` |
//! | 4500–4999 | permanent: do **not** reconnect until the cause is fixed (new token, fixed client) |

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The server is shutting down or draining: reconnect at once (another node may take you).
pub const GOING_AWAY: u16 = 1001;
/// A frame was larger than the server's limit.
pub const TOO_BIG: u16 = 1009;
/// Unexpected server error.
pub const INTERNAL: u16 = 1011;

/// Transient: the client did not read fast enough and its queue passed its budget.
pub const SLOW_CONSUMER: u16 = 4000;
/// Transient: no `auth` frame arrived in time after connecting.
pub const AUTH_TIMEOUT: u16 = 4001;
/// Transient: too many requests; back off before reconnecting.
pub const RATE_LIMITED: u16 = 4002;
/// Transient: the client did not answer pings.
pub const PING_TIMEOUT: u16 = 4003;
/// Transient: the user (or their company) holds too many sessions on this node.
pub const TOO_MANY_SESSIONS: u16 = 4004;

/// Permanent: the token is invalid (bad signature, wrong audience, unknown user).
pub const UNAUTHORIZED: u16 = 4500;
/// Permanent until a new token is obtained: the token expired.
pub const TOKEN_EXPIRED: u16 = 4501;
/// Permanent: the user was disabled by their company admin.
pub const USER_DISABLED: u16 = 4502;
/// Permanent: the client broke the protocol too often (undecodable frames).
pub const PROTOCOL_ERROR: u16 = 4503;

/// How a client should react to a close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Do not reconnect.
    Stop,
    /// Reconnect immediately and resume.
    ReconnectNow,
    /// Reconnect after a backoff and resume.
    ReconnectWithBackoff,
}

/// The reaction the protocol prescribes for `code`.
pub fn reaction(code: u16) -> Reaction {
    match code {
        GOING_AWAY => Reaction::ReconnectNow,
        INTERNAL | 1006 | 1012 | 1013 | 1014 => Reaction::ReconnectWithBackoff,
        4000..=4499 => Reaction::ReconnectWithBackoff,
        _ => Reaction::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_to_reactions() {
        assert_eq!(reaction(GOING_AWAY), Reaction::ReconnectNow);
        assert_eq!(reaction(SLOW_CONSUMER), Reaction::ReconnectWithBackoff);
        assert_eq!(reaction(AUTH_TIMEOUT), Reaction::ReconnectWithBackoff);
        assert_eq!(reaction(UNAUTHORIZED), Reaction::Stop);
        assert_eq!(reaction(TOKEN_EXPIRED), Reaction::Stop);
        assert_eq!(reaction(NORMAL), Reaction::Stop);
        assert_eq!(reaction(TOO_BIG), Reaction::Stop);
    }
}
