//! Who is asking over HTTP, as axum extractors: the operator ([`Operator`]), a company admin
//! ([`CompanyAdmin`]), a signed-in user ([`SignedIn`]); and JSON bodies whose rejections are our
//! error shape ([`Body`]). Every refusal is logged (never the key or token) and counted.

use crate::directory::keys::{hash_key, is_operator_key};
use crate::directory::token::bearer;
use crate::directory::User;
use crate::error::ApiError;
use crate::hub::Hub;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::Json;
use crossroom_protocol::{CompanyId, ErrorCode, UserId};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The request came with the operator key.
pub struct Operator;

impl FromRequestParts<Arc<Hub>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let Some(given) = bearer(&parts.headers) else {
            return Err(refused(parts, "admin", "missing_key", unauthorized()));
        };
        if is_operator_key(&hub.operator_key, given) {
            return Ok(Operator);
        }
        let (reason, e) = match hub.store.company_by_key_hash(&hash_key(given)).await? {
            Some(c) => (
                "wrong_kind",
                ApiError::new(
                    ErrorCode::Forbidden,
                    format!("this is company {c}'s admin key; this route needs the operator key"),
                ),
            ),
            None => (
                "wrong_key",
                ApiError::new(ErrorCode::Unauthorized, "wrong operator key"),
            ),
        };
        Err(refused(parts, "admin", reason, e))
    }
}

/// Log a refused HTTP authentication (reason, route and source address; never the key or
/// token), count it (`crossroom_auth_failures_total{via, reason}`) and return its error.
fn refused(parts: &Parts, via: &'static str, reason: &'static str, e: ApiError) -> ApiError {
    refused_user(parts, via, reason, None, e)
}

/// [`refused`], naming whose token it was when that is known.
fn refused_user(
    parts: &Parts,
    via: &'static str,
    reason: &'static str,
    user: Option<&UserId>,
    e: ApiError,
) -> ApiError {
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    tracing::info!(
        %peer,
        route = %parts.uri.path(),
        via,
        reason,
        user = user.map(|u| u.as_str()).unwrap_or(""),
        detail = %e.message,
        "HTTP request refused"
    );
    crate::metrics::METRICS.auth_failed(via, reason);
    e
}

/// The request came with a user's token (`Authorization: Bearer TOKEN`): the file and
/// invitation routes. Checked like a session's token (`directory::authenticate`).
pub struct SignedIn(pub User);

impl FromRequestParts<Arc<Hub>> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let Some(token) = bearer(&parts.headers) else {
            let e = ApiError::new(
                ErrorCode::Unauthorized,
                "sign in first (Authorization: Bearer TOKEN)",
            );
            return Err(refused(parts, "http", "missing_token", e));
        };
        let now = crate::clock::now_secs();
        match crate::directory::authenticate(&hub.store, &hub.tokens, token, now).await {
            Ok(u) => Ok(SignedIn(u)),
            Err(f) => Err(refused_user(
                parts,
                "http",
                f.reason(),
                f.user.as_ref(),
                ApiError::new(f.code, f.message),
            )),
        }
    }
}

/// The request came with a company's admin key: the company it administers.
pub struct CompanyAdmin(pub CompanyId);

impl FromRequestParts<Arc<Hub>> for CompanyAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let Some(given) = bearer(&parts.headers) else {
            return Err(refused(parts, "admin", "missing_key", unauthorized()));
        };
        // Looking up by hash reveals nothing about stored keys through timing.
        match hub.store.company_by_key_hash(&hash_key(given)).await? {
            Some(c) => Ok(CompanyAdmin(c)),
            None if is_operator_key(&hub.operator_key, given) => Err(refused(
                parts,
                "admin",
                "wrong_kind",
                ApiError::new(
                    ErrorCode::Forbidden,
                    "this is the operator key; this route needs a company admin key",
                ),
            )),
            None => Err(refused(
                parts,
                "admin",
                "wrong_key",
                ApiError::new(ErrorCode::Unauthorized, "unknown company admin key"),
            )),
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "missing or invalid API key (Authorization: Bearer KEY)",
    )
}

/// A JSON body whose rejections are our error shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::invalid(json_rejection(e))),
        }
    }
}

fn json_rejection(e: JsonRejection) -> String {
    format!("bad JSON body: {}", e.body_text())
}
