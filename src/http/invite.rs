//! The HTTP side of invitation links (G14): look at what a link opens, join by it, sign a new
//! company up by it. The work is in [`crate::service::invite`].

use super::auth::{Body, SignedIn};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::service::invite::{self, Signup};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/v1/invite/{token}", get(look))
        .route("/v1/invite/{token}/join", post(join))
        .route("/v1/invite/{token}/signup", post(signup))
}

/// `GET /v1/invite/{token}`: what the link opens — the group's name and owner, nothing more.
async fn look(State(hub): State<Arc<Hub>>, Path(token): Path<String>) -> ApiResult<Json<Value>> {
    let room = invite::valid_invite(&hub, &token).await?;
    let r = hub
        .store
        .room(&room)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation link"))?;
    let (_, invite) = hub
        .store
        .room_by_invite(&token)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation link"))?;
    Ok(Json(json!({
        "room": r.id,
        "name": r.name,
        "owner_company": r.owner_company,
        "expires_at": invite.expires_at,
    })))
}

/// `POST /v1/invite/{token}/join` with the user's bearer token.
async fn join(
    State(hub): State<Arc<Hub>>,
    Path(token): Path<String>,
    SignedIn(user): SignedIn,
) -> ApiResult<Json<Value>> {
    let room = invite::valid_invite(&hub, &token).await?;
    Ok(Json(invite::join_as(&hub, &user.id, &room, token).await?))
}

/// `POST /v1/invite/{token}/signup`: sign a new company and its first user up, and join.
async fn signup(
    State(hub): State<Arc<Hub>>,
    Path(token): Path<String>,
    Body(req): Body<Signup>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let made = invite::signup(&hub, token, req).await?;
    Ok((StatusCode::CREATED, Json(made)))
}
