//! Files over HTTP, streamed both ways (never whole in memory): a group's profile image (G9),
//! message attachments (M1) and folder files (F1). Their bytes count against the owner company's
//! shared storage (G17).
//!
//! An upload reserves its `Content-Length` in the owner's storage first — refused with
//! `quota_exceeded` and nothing stored when it would pass the quota — then streams to the blob
//! store, then the room actor decides the change; any failure gives the bytes back.

use super::auth::SignedIn;
use crate::blob::BlobError;
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::room::{lookup, Actor, Change};
use crate::store::{FileRecord, GONE_CLAIM};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossroom_protocol::{ErrorCode, RoomId, RoomKind, UserId};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/v1/rooms/{room}/image", get(get_image).put(put_image))
        .route("/v1/rooms/{room}/attachments", post(post_attachment))
        .route(
            "/v1/rooms/{room}/attachments/{file}",
            axum::routing::delete(delete_attachment),
        )
        .route("/v1/rooms/{room}/files", post(post_file))
        .route("/v1/rooms/{room}/files/{file}", get(get_file))
}

/// Content types accepted for a profile image.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An upload's description.
struct Upload {
    name: String,
    content_type: String,
    purpose: Purpose,
}

/// What an upload is for: decides who may send it, before any byte is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Image,
    Attachment,
    Folder,
}

/// Take an upload into the room's storage (G17): check the sender, reserve `Content-Length` in
/// the owner company's quota, stream the bytes into the blob store, record the file. Nothing
/// stays behind when anything fails.
async fn receive(
    hub: &Hub,
    room: &RoomId,
    user: &UserId,
    headers: &HeaderMap,
    body: Body,
    upload: Upload,
) -> ApiResult<FileRecord> {
    let Upload {
        name,
        content_type,
        purpose,
    } = upload;
    let max = match purpose {
        Purpose::Image => hub.limits.max_image_bytes,
        Purpose::Attachment | Purpose::Folder => hub.limits.max_upload_bytes,
    };
    let size: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::invalid("Content-Length is required"))?;
    if size == 0 || size > max {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("this upload must be 1 to {max} bytes"),
        ));
    }
    let record = may_upload(hub, room, user, purpose).await?;
    // Held until the bytes are stored or refused.
    let _slot = hub.uploads.take(user.clone()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} uploads at once per user",
                hub.limits.max_uploads_per_user
            ),
        )
    })?;
    let company = record.owner_company.clone();
    let quota = lookup::company_settings(&*hub.store, &company)
        .await?
        .shared_storage_quota;
    let idle = std::time::Duration::from_secs(hub.limits.upload_idle_secs);
    // Renewed while the bytes flow: a node that dies mid-upload holds the quota for at most
    // one lease (a live upload is cut off after `idle` without a byte anyway).
    let lease = idle * 2;
    let Some(held) = hub
        .store
        .reserve_storage(&company, size, quota, lease)
        .await?
    else {
        return Err(ApiError::new(
            ErrorCode::QuotaExceeded,
            format!("{company}'s shared storage has no room for {size} more bytes"),
        ));
    };
    let id = format!("f_{}", crate::random::token());
    let stream = idle_limited(body, idle);
    let put = hub.blobs.put(&id, Box::pin(stream), size);
    let renewing = async {
        let mut tick = tokio::time::interval(lease / 4);
        tick.tick().await;
        loop {
            tick.tick().await;
            match hub.store.renew_reservation(&held, lease).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(file = %id, "an upload's reservation lapsed"),
                Err(e) => tracing::warn!(file = %id, error = %e, "cannot renew a reservation"),
            }
        }
    };
    let put = tokio::select! {
        r = put => r,
        never = renewing => never,
    };
    let stored = match put {
        Ok(s) => s,
        Err(e) => {
            hub.store.release_storage(&held).await?;
            return Err(match e {
                BlobError::TooLarge(_) | BlobError::Incomplete => {
                    ApiError::invalid("the body does not match Content-Length")
                }
                BlobError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::invalid(
                    format!("the upload stalled: no byte for {} s", idle.as_secs()),
                ),
                BlobError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
                    ApiError::invalid("the upload's body broke off")
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
        sha256: stored.sha256,
        name,
        content_type,
        created_by: user.clone(),
        created_at: crate::clock::now_ms(),
        attachment: purpose == Purpose::Attachment,
    };
    if let Err(e) = hub.store.add_file(&file, &held).await {
        undo_upload(hub, &file, Some(&held)).await;
        return Err(e.into());
    }
    Ok(file)
}

/// Refuse early anyone who could not use the upload (no bytes are taken from strangers): the
/// room as the uploader may use it.
async fn may_upload(
    hub: &Hub,
    room: &RoomId,
    user: &UserId,
    purpose: Purpose,
) -> ApiResult<crate::domain::records::RoomRecord> {
    let record = hub
        .store
        .room(room)
        .await?
        .filter(|r| r.members.contains(user) || r.masters.contains(user))
        .ok_or_else(|| ApiError::not_found(format!("room {room}")))?;
    let group = record.kind == RoomKind::Group;
    match purpose {
        Purpose::Image if !record.masters.contains(user) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only a master of this group can do this",
            ))
        }
        Purpose::Attachment | Purpose::Folder if !record.members.contains(user) => {
            return Err(ApiError::new(
                ErrorCode::NotMember,
                "you are not a member of this room",
            ))
        }
        Purpose::Attachment if group && !record.features.message => {
            return Err(ApiError::new(
                ErrorCode::FeatureDisabled,
                "messages are switched off in this group",
            ))
        }
        Purpose::Folder if group && !record.features.folder => {
            return Err(ApiError::new(
                ErrorCode::FeatureDisabled,
                "the folder is switched off in this group",
            ))
        }
        _ => {}
    }
    Ok(record)
}

/// An upload's body as the blob store reads it: a body error is the client's
/// (`ConnectionAborted`), and a body that sends nothing for `idle` ends with `TimedOut` — a
/// stalled client cannot hold its reservation of the quota.
fn idle_limited(
    body: Body,
    idle: std::time::Duration,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    use futures_util::StreamExt;
    futures_util::stream::unfold(Some(body.into_data_stream()), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    e,
                )),
                None,
            )),
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no byte within the idle limit",
                )),
                None,
            )),
        }
    })
}

/// Undo a recorded upload: its bytes leave the disk and the quota.
async fn discard(hub: &Hub, file: &FileRecord) {
    undo_upload(hub, file, None).await;
}

/// Take an upload back: its bytes, and its hold on the quota — the reservation `held` of an
/// upload whose record was never stored, or the record itself. The request has failed already,
/// so a failure here is logged with what it leaves behind rather than returned: bytes without a
/// record hold no quota and the files sweep removes them; a reservation not released ends with
/// its lease (Redis) or at the next start (SQLite); a record not deleted keeps charging its
/// company until the file is purged.
async fn undo_upload(hub: &Hub, file: &FileRecord, held: Option<&crate::store::Reservation>) {
    if let Err(e) = hub.blobs.delete(&file.id).await {
        tracing::warn!(file = %file.id, error = %e, "upload undone, its bytes left for the files sweep");
    }
    let released = match held {
        Some(held) => hub.store.release_storage(held).await,
        None => hub.store.delete_file(&file.id).await,
    };
    if let Err(e) = released {
        tracing::warn!(
            file = %file.id,
            error = %e,
            unrecorded = held.is_some(),
            "upload undone, but its quota not given back (a reservation lapses with its lease \
             or the next start; a record charges its company until purged)"
        );
    }
}

/// `PUT /v1/rooms/{room}/image`: a master sets the group's profile image.
async fn put_image(
    State(hub): State<Arc<Hub>>,
    Path(room): Path<RoomId>,
    SignedIn(me): SignedIn,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let user = me.id;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|t| IMAGE_TYPES.contains(t))
        .ok_or_else(|| ApiError::invalid(format!("Content-Type must be one of {IMAGE_TYPES:?}")))?
        .to_owned();
    let file = receive(
        &hub,
        &room,
        &user,
        &headers,
        body,
        Upload {
            name: "profile image".into(),
            content_type,
            purpose: Purpose::Image,
        },
    )
    .await?;
    let decided = async {
        let me = lookup::person(&*hub.store, &user).await?;
        let change = Change::SetImage {
            file: file.id.clone(),
        };
        hub.rooms.change(&room, Actor::User(me), change).await
    }
    .await;
    match decided {
        Ok(c) => Ok(Json(json!({
            "file": file.id, "size": file.size, "sha256": file.sha256, "seq": c.seq
        }))),
        Err(e) => {
            // Refused after all: nothing of the upload stays, and its bytes are given back.
            discard(&hub, &file).await;
            Err(e)
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: String,
    #[serde(default)]
    folder: Option<u64>,
}

/// An upload named by its query, typed by its `Content-Type`.
fn describe(q: &UploadQuery, headers: &HeaderMap, purpose: Purpose) -> ApiResult<Upload> {
    let n = q.name.chars().count();
    if n == 0 || n > 255 || q.name.contains('/') {
        return Err(ApiError::invalid(
            "name must be 1 to 255 characters without '/'",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    if content_type.len() > 255 {
        return Err(ApiError::invalid("Content-Type is too long"));
    }
    Ok(Upload {
        name: q.name.clone(),
        content_type: content_type.to_owned(),
        purpose,
    })
}

fn file_json(f: &FileRecord) -> Value {
    json!({ "file": f.id, "name": f.name, "size": f.size, "content_type": f.content_type, "sha256": f.sha256 })
}

/// `POST /v1/rooms/{room}/attachments?name=`: a member uploads a file to attach to a message
/// (M1); the answer's `file` goes in the post's `attachments`.
async fn post_attachment(
    State(hub): State<Arc<Hub>>,
    Path(room): Path<RoomId>,
    Query(q): Query<UploadQuery>,
    SignedIn(me): SignedIn,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = me.id;
    let upload = describe(&q, &headers, Purpose::Attachment)?;
    let file = receive(&hub, &room, &user, &headers, body, upload).await?;
    Ok((StatusCode::CREATED, Json(file_json(&file))))
}

/// `DELETE /v1/rooms/{room}/attachments/{file}`: the uploader removes an attachment no post took
/// (M1), giving its bytes back: 204. One a post took is the message's (recall it): 403.
async fn delete_attachment(
    State(hub): State<Arc<Hub>>,
    Path((room, id)): Path<(RoomId, String)>,
    SignedIn(me): SignedIn,
) -> ApiResult<StatusCode> {
    let user = me.id;
    let file = hub
        .store
        .file(&id)
        .await?
        .filter(|f| f.room == room && f.created_by == user && f.attachment)
        .ok_or_else(|| ApiError::not_found(format!("attachment {id}")))?;
    match hub.store.claim_file(&id, Some(GONE_CLAIM)).await? {
        Some(c) if c == GONE_CLAIM => {
            discard(&hub, &file).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Some(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "a post took this attachment: recall the message to remove it",
        )),
        None => Err(ApiError::not_found(format!("attachment {id}"))),
    }
}

/// `POST /v1/rooms/{room}/files?name=&folder=`: a member uploads a file into the folder (F1).
async fn post_file(
    State(hub): State<Arc<Hub>>,
    Path(room): Path<RoomId>,
    Query(q): Query<UploadQuery>,
    SignedIn(me): SignedIn,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = me.id;
    let upload = describe(&q, &headers, Purpose::Folder)?;
    let file = receive(&hub, &room, &user, &headers, body, upload).await?;
    let decided = hub
        .rooms
        .add_file(&room, user, q.folder, file.clone())
        .await;
    match decided {
        Ok(c) => {
            let mut v = file_json(&file);
            v["item"] = json!(c.seq);
            Ok((StatusCode::CREATED, Json(v)))
        }
        Err(e) => {
            discard(&hub, &file).await;
            Err(e)
        }
    }
}

/// `GET /v1/rooms/{room}/files/{file}`: members download a room's file (folder file or
/// attachment), streamed.
async fn get_file(
    State(hub): State<Arc<Hub>>,
    Path((room, id)): Path<(RoomId, String)>,
    SignedIn(me): SignedIn,
) -> ApiResult<Response> {
    let user = me.id;
    // Asked of the actor, so a member removed a moment ago is refused (D4). A master who is not
    // a member sees the group (G9), not its files: those are the members' (only the profile
    // image is the masters' too, at `/image`).
    let info = hub.rooms.get(&room, user.clone()).await?;
    if !info.members.contains(&user) {
        return Err(ApiError::new(
            ErrorCode::NotMember,
            "you are not a member of this room",
        ));
    }
    let file = hub
        .store
        .file(&id)
        .await?
        .filter(|f| f.room == room)
        .ok_or_else(|| ApiError::not_found(format!("file {id}")))?;
    stream_file(&hub, file).await
}

async fn stream_file(hub: &Hub, file: FileRecord) -> ApiResult<Response> {
    let stream = hub.blobs.get(&file.id).await.map_err(|e| {
        tracing::error!(file = %file.id, error = %e, "stored file is missing");
        ApiError::internal()
    })?;
    let disposition = format!(
        "attachment; filename*=UTF-8''{}",
        file.name
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect::<String>()
    );
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, file.content_type),
            (header::CONTENT_LENGTH, file.size.to_string()),
            (header::ETAG, format!("\"{}\"", file.sha256)),
            (header::CONTENT_DISPOSITION, disposition),
            // An uploaded `text/html` or `image/svg+xml` opened from our origin must not run:
            // no type sniffing, and a sandbox without scripts or same-origin access.
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_owned(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /v1/rooms/{room}/image`: members (and masters) download the group's profile image.
async fn get_image(
    State(hub): State<Arc<Hub>>,
    Path(room): Path<RoomId>,
    SignedIn(me): SignedIn,
) -> ApiResult<Response> {
    let user = me.id;
    // Asked of the actor, so a member removed a moment ago is refused (D4).
    let info = hub.rooms.get(&room, user).await?;
    let id = info
        .image
        .ok_or_else(|| ApiError::not_found("profile image"))?;
    let file = hub
        .store
        .file(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("profile image"))?;
    stream_file(&hub, file).await
}
