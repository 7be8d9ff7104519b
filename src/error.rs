//! The one error type every client-facing boundary returns, and the one place that maps it to
//! what the client sees: an `error` frame on the WebSocket, a status and JSON body over HTTP.
//! It depends on nothing else of the server: every layer may return it (a store failure becomes
//! one by `From<StoreError>`, beside `StoreError` in [`crate::store`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crossroom_protocol::{ErrorCode, ServerFrame};

/// A refusal or failure, with a stable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// The user or their company holds as many live sessions on this node as allowed.
    pub fn too_many_sessions() -> ApiError {
        ApiError::new(
            ErrorCode::TooManySessions,
            "too many sessions; close one first",
        )
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            ErrorCode::Internal,
            "internal error; the request may be retried",
        )
    }

    /// The `error` frame answering request `id`.
    pub fn to_frame(&self, id: Option<u32>) -> ServerFrame {
        ServerFrame::Error {
            id,
            code: self.code,
            message: self.message.clone(),
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::BadFrame | ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden
            | ErrorCode::NotMember
            | ErrorCode::FeatureDisabled
            | ErrorCode::NotInContacts
            | ErrorCode::NoExternalPermission
            | ErrorCode::LineUserNotAllowed
            | ErrorCode::GroupCreationNotAllowed
            | ErrorCode::LastMaster
            | ErrorCode::CannotLeave => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists => StatusCode::CONFLICT,
            ErrorCode::QuotaExceeded | ErrorCode::LimitExceeded => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited | ErrorCode::TooManySessions => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        (self.status(), axum::Json(body)).into_response()
    }
}
