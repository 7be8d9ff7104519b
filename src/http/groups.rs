//! The admin API for groups: a company admin creates groups for their company (G3), and manages
//! the groups it owns — settings always (G9), members and masters, deletion (G16) — and reads the
//! audit log of everything involving their company (G19).

use super::auth::{Body, CompanyAdmin};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::room::{Actor, Change};
use crate::service::create::{create_group_as_admin, GroupSpec};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use crossroom_protocol::{CompanyId, Features, FeaturesPatch, RoomId, UserId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/v1/admin/groups", post(create).get(list))
        .route(
            "/v1/admin/groups/{room}",
            get(show).patch(update).delete(remove),
        )
        .route("/v1/admin/groups/{room}/members", post(add_members))
        .route(
            "/v1/admin/groups/{room}/members/{user}",
            delete(remove_member),
        )
        .route("/v1/admin/groups/{room}/masters", post(add_masters))
        .route(
            "/v1/admin/groups/{room}/masters/{user}",
            delete(remove_master),
        )
        .route("/v1/admin/audit", get(audit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    #[serde(default)]
    description: String,
    masters: Vec<UserId>,
    #[serde(default)]
    members: Vec<UserId>,
    #[serde(default)]
    features: Option<Features>,
}

async fn create(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Body(req): Body<NewGroup>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec = GroupSpec {
        name: req.name,
        description: req.description,
        members: req.members,
        masters: req.masters,
        add_self_as_member: false,
        features: req.features.unwrap_or_default(),
    };
    let (room, left_out) = create_group_as_admin(&hub, &c, spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "room": room, "left_out": left_out })),
    ))
}

/// A group this admin's company owns; any other room does not exist for them.
async fn owned(
    hub: &Hub,
    company: &CompanyId,
    room: &RoomId,
) -> ApiResult<crate::store::RoomRecord> {
    match hub.store.room(room).await? {
        Some(r) if r.owner_company == *company && r.kind == crossroom_protocol::RoomKind::Group => {
            Ok(r)
        }
        _ => Err(ApiError::not_found(format!("group {room}"))),
    }
}

/// The groups the company owns, in id order, a page at a time (`next`: the next page's
/// `after`).
async fn list(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Query(page): Query<crate::domain::paging::ListPage>,
) -> ApiResult<Json<Value>> {
    let ids = hub.store.owned_groups(&c).await?;
    let (ids, next) = page.cut(ids.into_iter().map(|id| (id.0.clone(), id)).collect())?;
    let mut groups = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(r) = hub.store.room(id).await? {
            groups.push(crate::room::info(&r));
        }
    }
    Ok(Json(json!({ "groups": groups, "next": next })))
}

async fn show(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(room): Path<RoomId>,
) -> ApiResult<Json<Value>> {
    let r = owned(&hub, &c, &room).await?;
    Ok(Json(json!({ "room": crate::room::info(&r) })))
}

/// Run a change as the company's admin and answer with the entry it wrote.
async fn change(
    hub: &Arc<Hub>,
    company: CompanyId,
    room: RoomId,
    change: Change,
) -> ApiResult<Json<Value>> {
    let c = hub
        .rooms
        .change(&room, Actor::Admin(company), change)
        .await?;
    Ok(Json(
        json!({ "room": c.room, "seq": c.seq, "left_out": c.left_out }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupPatch {
    name: Option<String>,
    description: Option<String>,
    features: Option<FeaturesPatch>,
}

async fn update(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(room): Path<RoomId>,
    Body(p): Body<GroupPatch>,
) -> ApiResult<Json<Value>> {
    let ch = Change::Update {
        name: p.name,
        description: p.description,
        features: p.features,
    };
    change(&hub, c, room, ch).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Users {
    users: Vec<UserId>,
}

async fn add_members(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(room): Path<RoomId>,
    Body(u): Body<Users>,
) -> ApiResult<Json<Value>> {
    change(&hub, c, room, Change::AddMembers(u.users)).await
}

async fn remove_member(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path((room, user)): Path<(RoomId, UserId)>,
) -> ApiResult<Json<Value>> {
    change(&hub, c, room, Change::RemoveMember(user)).await
}

async fn add_masters(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(room): Path<RoomId>,
    Body(u): Body<Users>,
) -> ApiResult<Json<Value>> {
    change(&hub, c, room, Change::AddMasters(u.users)).await
}

async fn remove_master(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path((room, user)): Path<(RoomId, UserId)>,
) -> ApiResult<Json<Value>> {
    change(&hub, c, room, Change::RemoveMaster(user)).await
}

async fn remove(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(room): Path<RoomId>,
) -> ApiResult<StatusCode> {
    hub.rooms.delete(&room, Actor::Admin(c)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    room: Option<RoomId>,
    before: Option<u64>,
    limit: Option<usize>,
}

/// G19: the audit records involving the admin's company, newest first.
async fn audit(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = hub
        .store
        .audit(Some(&c), q.room.as_ref(), q.before, limit)
        .await?;
    Ok(Json(json!({ "entries": entries })))
}
