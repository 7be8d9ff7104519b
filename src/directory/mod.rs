//! The directory service: companies, users, contacts and tokens as the server uses them —
//! authentication here, tokens in [`token`], the admin HTTP API in [`admin`], contacts and search
//! in [`search`]. The records and their pure rules are in [`crate::domain::directory`].

pub mod keys;
pub mod search;
pub mod token;

pub use crate::clock::now_secs;
pub use crate::domain::directory::*;
use crossroom_protocol::close::CloseReason;

/// Why a token was refused, with the error code and the close code to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub code: crossroom_protocol::ErrorCode,
    pub close: CloseReason,
    pub message: &'static str,
    /// Whose token it was, once its signature checked out (for the security log).
    pub user: Option<crossroom_protocol::UserId>,
}

impl AuthFailure {
    /// The reason as a metric label and log field: `invalid_token`, `token_expired`,
    /// `user_disabled` or `unavailable` (the directory could not be asked).
    pub fn reason(&self) -> &'static str {
        match self.close {
            CloseReason::TokenExpired => "token_expired",
            CloseReason::UserDisabled => "user_disabled",
            CloseReason::Internal => "unavailable",
            _ => "invalid_token",
        }
    }
}

/// A verified token: its user as the directory has them now, and the token's validity.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub user: User,
    /// When the token was issued (a revocation refuses tokens issued at or before it).
    pub issued_at: i64,
    /// When the token expires: a session it opened closes then (4501).
    pub expires_at: i64,
}

/// Verify a user token and find its user: signature, algorithm, audience, validity window,
/// the user's existence, company and state.
pub async fn authenticate(
    store: &crate::store::SharedStore,
    key: &token::TokenKey,
    token: &str,
    now_secs: i64,
) -> Result<User, AuthFailure> {
    authenticate_token(store, key, token, now_secs)
        .await
        .map(|a| a.user)
}

/// [`authenticate`], keeping what a session needs of the token.
pub async fn authenticate_token(
    store: &crate::store::SharedStore,
    key: &token::TokenKey,
    token: &str,
    now_secs: i64,
) -> Result<Authenticated, AuthFailure> {
    use crossroom_protocol::ErrorCode;
    let refused = |message| AuthFailure {
        code: ErrorCode::Unauthorized,
        close: CloseReason::Unauthorized,
        message,
        user: None,
    };
    let claims = key.verify(token, now_secs).map_err(|e| match e {
        token::TokenError::Expired => AuthFailure {
            code: ErrorCode::TokenExpired,
            close: CloseReason::TokenExpired,
            message: "token has expired",
            user: None,
        },
        _ => refused("invalid token"),
    })?;
    // Signed by us: from here on, whose token it is goes in the log.
    let named = |f: AuthFailure| AuthFailure {
        user: Some(claims.sub.clone()),
        ..f
    };
    let user = match store.user(&claims.sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(named(refused("invalid token"))),
        Err(_) => {
            return Err(named(AuthFailure {
                code: ErrorCode::Unavailable,
                close: CloseReason::Internal,
                message: "cannot verify the token now; retry",
                user: None,
            }))
        }
    };
    // A revocation at second T refuses every token issued at T or before (`iat` is in seconds).
    if user.company != claims.cmp || claims.iat <= user.tokens_valid_after {
        return Err(named(refused("invalid token")));
    }
    if !user.active {
        return Err(named(AuthFailure {
            code: ErrorCode::Forbidden,
            close: CloseReason::UserDisabled,
            message: "user is disabled",
            user: None,
        }));
    }
    Ok(Authenticated {
        user,
        issued_at: claims.iat,
        expires_at: claims.exp,
    })
}
