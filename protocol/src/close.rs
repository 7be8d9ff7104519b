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

/// Why the server closes a session: one code and one text per reason, so every place that
/// closes a session says the same thing for the same cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The session ended (the client went, or the socket failed).
    Normal,
    /// The server is shutting down or draining.
    GoingAway,
    /// A frame or message was larger than the server's limit.
    TooBig,
    /// The server failed.
    Internal,
    SlowConsumer,
    AuthTimeout,
    RateLimited,
    PingTimeout,
    TooManySessions,
    /// The token is invalid.
    Unauthorized,
    /// An admin revoked the user's tokens (code 4500: the token is no longer valid).
    TokensRevoked,
    TokenExpired,
    UserDisabled,
    /// Too many undecodable frames.
    TooManyBadFrames,
    /// The WebSocket stream itself was malformed (code 4503).
    WebSocketError,
}

impl CloseReason {
    /// The close code this reason is sent with.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Normal => NORMAL,
            CloseReason::GoingAway => GOING_AWAY,
            CloseReason::TooBig => TOO_BIG,
            CloseReason::Internal => INTERNAL,
            CloseReason::SlowConsumer => SLOW_CONSUMER,
            CloseReason::AuthTimeout => AUTH_TIMEOUT,
            CloseReason::RateLimited => RATE_LIMITED,
            CloseReason::PingTimeout => PING_TIMEOUT,
            CloseReason::TooManySessions => TOO_MANY_SESSIONS,
            CloseReason::Unauthorized | CloseReason::TokensRevoked => UNAUTHORIZED,
            CloseReason::TokenExpired => TOKEN_EXPIRED,
            CloseReason::UserDisabled => USER_DISABLED,
            CloseReason::TooManyBadFrames | CloseReason::WebSocketError => PROTOCOL_ERROR,
        }
    }

    /// The close frame's reason text.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Normal => "",
            CloseReason::GoingAway => "server shutting down",
            CloseReason::TooBig => "message too big",
            CloseReason::Internal => "server error",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::AuthTimeout => "no auth frame in time",
            CloseReason::RateLimited => "too many requests",
            CloseReason::PingTimeout => "no pong",
            CloseReason::TooManySessions => "too many sessions",
            CloseReason::Unauthorized => "invalid token",
            CloseReason::TokensRevoked => "tokens revoked",
            CloseReason::TokenExpired => "token has expired",
            CloseReason::UserDisabled => "user disabled",
            CloseReason::TooManyBadFrames => "too many bad frames",
            CloseReason::WebSocketError => "websocket protocol error",
        }
    }

    /// Every reason; where two share a code, the one a code stands for comes first.
    pub const ALL: [CloseReason; 15] = [
        CloseReason::Normal,
        CloseReason::GoingAway,
        CloseReason::TooBig,
        CloseReason::Internal,
        CloseReason::SlowConsumer,
        CloseReason::AuthTimeout,
        CloseReason::RateLimited,
        CloseReason::PingTimeout,
        CloseReason::TooManySessions,
        CloseReason::Unauthorized,
        CloseReason::TokensRevoked,
        CloseReason::TokenExpired,
        CloseReason::UserDisabled,
        CloseReason::TooManyBadFrames,
        CloseReason::WebSocketError,
    ];

    /// The reason a code stands for (a close that another node asks for by code); an unknown
    /// code is `Internal`.
    pub fn from_code(code: u16) -> CloseReason {
        CloseReason::ALL
            .into_iter()
            .find(|r| r.code() == code)
            .unwrap_or(CloseReason::Internal)
    }
}

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

    #[test]
    fn every_reason_round_trips_through_its_code() {
        use CloseReason::*;
        for r in [
            Normal,
            GoingAway,
            TooBig,
            Internal,
            SlowConsumer,
            AuthTimeout,
            RateLimited,
            PingTimeout,
            TooManySessions,
            Unauthorized,
            TokenExpired,
            UserDisabled,
            TooManyBadFrames,
        ] {
            assert_eq!(CloseReason::from_code(r.code()), r);
        }
        // Two reasons share a code; the code names the first.
        assert_eq!(CloseReason::from_code(TokensRevoked.code()), Unauthorized);
        assert_eq!(
            CloseReason::from_code(WebSocketError.code()),
            TooManyBadFrames
        );
        assert_eq!(CloseReason::from_code(4999), Internal);
    }
}
