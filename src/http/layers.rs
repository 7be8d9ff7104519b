//! What every HTTP answer passes through: [`count`] tallies it by route template, method and
//! status (`crossroom_http_requests_total`), and [`json_errors`] gives the framework's own
//! refusals — a path or query that does not parse, a wrong method, a missing upgrade header —
//! the JSON error shape of every other error, keeping their status.

use crate::metrics::METRICS;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use crossroom_protocol::ErrorCode;

/// The longest framework refusal text carried into the JSON message.
const MAX_REFUSAL_TEXT: usize = 4096;

/// Count the request once answered. Unknown routes count as `unmatched`: the label set stays
/// bounded whatever paths clients try.
pub async fn count(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let response = next.run(req).await;
    METRICS.http_request(
        route.as_deref().unwrap_or("unmatched"),
        method_label(&method),
        response.status().as_u16(),
    );
    response
}

/// The method as a label from a closed set: a client may send any token as a method, and every
/// new label value would be a series `/metrics` keeps for good (memory, and a scrape that grows
/// without end). Anything but the methods of HTTP is `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Rewrite an error answer that is not JSON into `{"error": {"code", "message"}}`.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    // Keep what the refusal says besides its body (a 405's `Allow`).
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REFUSAL_TEXT).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            format!("method {method} is not allowed on this route")
        }
        (_, false) => text,
        (_, true) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let body = serde_json::json!({
        "error": { "code": code_for(status), "message": message }
    });
    let mut answer = (status, axum::Json(body)).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// The error code a status stands for.
pub fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::CONFLICT => ErrorCode::AlreadyExists,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::LimitExceeded,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidArgument,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_map_to_their_codes() {
        assert_eq!(
            code_for(StatusCode::BAD_REQUEST),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code_for(StatusCode::METHOD_NOT_ALLOWED),
            ErrorCode::InvalidArgument
        );
        assert_eq!(code_for(StatusCode::NOT_FOUND), ErrorCode::NotFound);
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), ErrorCode::Internal);
    }
}
