//! Files over HTTP, streamed both ways (never whole in memory). For now: a group's profile image
//! (G9), whose bytes count against the owner company's shared storage (G17).
//!
//! An upload reserves its `Content-Length` in the owner's storage first — refused with
//! `quota_exceeded` and nothing stored when it would pass the quota — then streams to the blob
//! store, then the room actor decides the change; any failure gives the bytes back.

use super::{lookup, Actor, Change, RoomCommand};
use crate::blob::BlobError;
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::store::FileRecord;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use crossroom_protocol::{ErrorCode, RoomId, ServerFrame, UserId};
use futures_util::TryStreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new().route("/v1/rooms/{room}/image", get(get_image).put(put_image))
}

/// The signed-in user of an HTTP request (`Authorization: Bearer TOKEN`).
async fn user_of(hub: &Hub, headers: &HeaderMap) -> ApiResult<UserId> {
    let token = crate::connection::bearer(headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "sign in first (Authorization: Bearer TOKEN)",
        )
    })?;
    crate::directory::authenticate(&hub.store, &hub.tokens, token, crate::directory::now_secs())
        .await
        .map(|u| u.id)
        .map_err(|f| ApiError::new(f.code, f.message))
}

/// Content types accepted for a profile image.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// `PUT /v1/rooms/{room}/image`: a master sets the group's profile image.
async fn put_image(
    State(hub): State<Arc<Hub>>,
    Path(room): Path<RoomId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let user = user_of(&hub, &headers).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|t| IMAGE_TYPES.contains(t))
        .ok_or_else(|| ApiError::invalid(format!("Content-Type must be one of {IMAGE_TYPES:?}")))?
        .to_owned();
    let size: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::invalid("Content-Length is required"))?;
    if size == 0 || size > hub.limits.max_image_bytes {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("an image must be 1 to {} bytes", hub.limits.max_image_bytes),
        ));
    }
    // Refuse early anyone who could not set it: no bytes are taken from strangers.
    let record = hub
        .store
        .room(&room)
        .await?
        .filter(|r| r.members.contains(&user) || r.masters.contains(&user))
        .ok_or_else(|| ApiError::not_found(format!("room {room}")))?;
    if !record.masters.contains(&user) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only a master of this group can do this",
        ));
    }
    let company = record.owner_company.clone();
    let quota = lookup::company_settings(&hub, &company)
        .await?
        .shared_storage_quota;
    if !hub.store.reserve_storage(&company, size, quota).await? {
        return Err(ApiError::new(
            ErrorCode::QuotaExceeded,
            format!("{company}'s shared storage has no room for {size} more bytes"),
        ));
    }
    let id = format!("f_{}", crate::random::token());
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let stored = match hub.blobs.put(&id, Box::pin(stream), size).await {
        Ok(s) => s,
        Err(e) => {
            hub.store.release_storage(&company, size).await?;
            return Err(match e {
                BlobError::TooLarge(_) | BlobError::Incomplete => {
                    ApiError::invalid("the body does not match Content-Length")
                }
                BlobError::Io(e) => {
                    tracing::error!(error = %e, "cannot store file bytes");
                    ApiError::internal()
                }
            });
        }
    };
    let file = FileRecord {
        id: id.clone(),
        room: room.clone(),
        company: company.clone(),
        size,
        sha256: stored.sha256.clone(),
        name: "profile image".into(),
        content_type,
        created_by: user.clone(),
        created_at: super::now_ms(),
    };
    let decided = async {
        hub.store.add_file(&file).await?;
        let me = lookup::person(&hub, &user).await?;
        hub.ask(&room, |reply| RoomCommand::Change {
            actor: Actor::User(me),
            change: Change::SetImage { file: id.clone() },
            reply,
        })
        .await
    }
    .await;
    match decided {
        Ok(ServerFrame::Changed { seq, .. }) => Ok(Json(json!({
            "file": id, "size": size, "sha256": stored.sha256, "seq": seq
        }))),
        Ok(_) => Err(ApiError::internal()),
        Err(e) => {
            // Refused after all: nothing of the upload stays, and its bytes are given back.
            let _ = hub.blobs.delete(&id).await;
            match hub.store.file(&id).await? {
                Some(_) => hub.store.delete_file(&id).await?,
                None => hub.store.release_storage(&company, size).await?,
            }
            Err(e)
        }
    }
}

/// `GET /v1/rooms/{room}/image`: members (and masters) download the group's profile image.
async fn get_image(
    State(hub): State<Arc<Hub>>,
    Path(room): Path<RoomId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let user = user_of(&hub, &headers).await?;
    // Asked of the actor, so a member removed a moment ago is refused (D4).
    let info = match hub
        .ask(&room, |reply| RoomCommand::Get { user, reply })
        .await?
    {
        ServerFrame::Room { room, .. } => room,
        _ => return Err(ApiError::internal()),
    };
    let id = info
        .image
        .ok_or_else(|| ApiError::not_found("profile image"))?;
    let file = hub
        .store
        .file(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("profile image"))?;
    let stream = hub.blobs.get(&id).await.map_err(|e| {
        tracing::error!(file = %id, error = %e, "stored file is missing");
        ApiError::internal()
    })?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, file.content_type),
            (header::CONTENT_LENGTH, file.size.to_string()),
            (header::ETAG, format!("\"{}\"", file.sha256)),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
