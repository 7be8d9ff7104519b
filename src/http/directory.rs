//! The admin HTTP API for the directory (JSON): the operator creates companies; a company admin,
//! with the company's API key, manages its settings, users and contacts and mints user tokens.
//!
//! Every route authenticates with `Authorization: Bearer KEY` ([`super::auth`]).

use super::auth::{Body, CompanyAdmin, Operator};
use crate::directory::keys::{hash_key, new_admin_key};
use crate::directory::{
    validate_company_id, validate_login, Company, CompanySettings, User, UserChange, UserKind,
};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::service::policy;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use crossroom_protocol::close::CloseReason;
use crossroom_protocol::{CompanyId, ErrorCode, UserId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Default lifetime of a minted user token.
const DEFAULT_TOKEN_TTL_SECS: i64 = 24 * 3600;
/// Longest lifetime an admin may ask for.
const MAX_TOKEN_TTL_SECS: i64 = 30 * 24 * 3600;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route(
            "/v1/admin/companies",
            post(create_company).get(list_companies),
        )
        .route(
            "/v1/admin/companies/{id}",
            axum::routing::delete(delete_company),
        )
        .route("/v1/admin/companies/{id}/key", post(reissue_key))
        .route("/v1/admin/company", get(own_company))
        .route("/v1/admin/company/key", post(rotate_key))
        .route(
            "/v1/admin/company/settings",
            get(get_settings).patch(patch_settings),
        )
        .route("/v1/admin/company/storage", get(storage))
        .route("/v1/admin/users", post(create_user).get(list_users))
        .route(
            "/v1/admin/users/{id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/v1/admin/users/{id}/contacts", get(list_contacts))
        .route(
            "/v1/admin/users/{id}/contacts/{contact}",
            put(add_contact).delete(remove_contact),
        )
        .route("/v1/admin/users/{id}/tokens", post(mint_token))
        .route("/v1/admin/users/{id}/revoke-tokens", post(revoke_tokens))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCompany {
    id: CompanyId,
    name: String,
    #[serde(default)]
    settings: Option<CompanySettings>,
}

async fn create_company(
    State(hub): State<Arc<Hub>>,
    _: Operator,
    Body(req): Body<NewCompany>,
) -> ApiResult<impl IntoResponse> {
    validate_company_id(req.id.as_str()).map_err(ApiError::invalid)?;
    let name = check_display_name(&req.name)?;
    let settings = req.settings.unwrap_or_default();
    settings.validate().map_err(ApiError::invalid)?;
    let company = Company {
        id: req.id,
        name,
        settings,
        self_registered: false,
    };
    let key = new_admin_key();
    hub.store.create_company(&company, &hash_key(&key)).await?;
    tracing::info!(company = %company.id, "company created");
    let notes = creation_notes(&company);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "company": company, "admin_key": key, "notes": notes })),
    ))
}

/// What a new operator should know about the company just created. `external_chat` starts off
/// (the rules' default): until an admin switches it on, none of its people may be in an external
/// group, and the first group a newcomer tries is refused `no_external_permission`.
fn creation_notes(company: &Company) -> Vec<&'static str> {
    let mut notes = Vec::new();
    if !company.settings.external_chat {
        notes.push(
            "external_chat is off (the default): its users cannot be in external groups until \
             the company's admin switches it on with PATCH /v1/admin/company/settings \
             {\"external_chat\":true}",
        );
    }
    notes
}

async fn list_companies(State(hub): State<Arc<Hub>>, _: Operator) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "companies": hub.store.companies().await? })))
}

/// The operator gives a company a new admin key (the admin lost theirs): the old one stops
/// working at once.
async fn reissue_key(
    State(hub): State<Arc<Hub>>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    new_key(&hub, &CompanyId::from(id.as_str())).await
}

/// A company admin replaces the key they authenticate with.
async fn rotate_key(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
) -> ApiResult<Json<Value>> {
    new_key(&hub, &c).await
}

/// The operator deletes a company: every group it owns is deleted for every company (G16),
/// every one of its users is deleted as a leaver is, then the company and its key.
async fn delete_company(
    State(hub): State<Arc<Hub>>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let c = CompanyId::from(id.as_str());
    // The record goes first (its id retired, its admin key dead): from its commit on, no room
    // is created for the company and nobody of it is admitted anywhere (they hold no permission
    // without a company), so the groups listed next are all it will ever own — a creation racing
    // the deletion is refused, or listed and deleted here, or takes itself back (Redis).
    let existed = hub.store.company(&c).await?.is_some();
    if existed {
        hub.store.delete_company(&c).await?;
    }
    // A deletion a crash cut short left the record gone and some of the rest: a repeated call
    // finishes it. With nothing left, an unknown id is 404.
    let (groups, users) = (
        hub.store.owned_groups(&c).await?,
        hub.store.users_of(&c).await?,
    );
    if !existed && groups.is_empty() && users.is_empty() {
        return Err(ApiError::not_found(format!("company {c}")));
    }
    for room in groups {
        match hub
            .rooms
            .delete(&room, crate::room::Actor::Admin(c.clone()))
            .await
        {
            // Deleted meanwhile by someone else.
            Err(e) if e.code == ErrorCode::NotFound => {}
            other => other?,
        }
    }
    for user in users {
        forget_user(&hub, &user).await?;
    }
    tracing::info!(company = %c, "company deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn new_key(hub: &Hub, company: &CompanyId) -> ApiResult<Json<Value>> {
    let key = new_admin_key();
    hub.store.set_admin_key(company, &hash_key(&key)).await?;
    tracing::info!(company = %company, "admin key re-issued");
    Ok(Json(json!({ "company": company, "admin_key": key })))
}

async fn own_company(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
) -> ApiResult<Json<Company>> {
    Ok(Json(company(&hub, &c).await?))
}

async fn company(hub: &Hub, id: &CompanyId) -> ApiResult<Company> {
    hub.store
        .company(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("company {id}")))
}

/// G17: the company's shared storage: bytes used (and reserved by uploads) and the quota.
async fn storage(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
) -> ApiResult<Json<Value>> {
    let quota = company(&hub, &c).await?.settings.shared_storage_quota;
    let used = hub.store.storage_used(&c).await?;
    Ok(Json(json!({ "used": used, "quota": quota })))
}

async fn get_settings(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
) -> ApiResult<Json<CompanySettings>> {
    Ok(Json(company(&hub, &c).await?.settings))
}

/// Change some settings: the body names only the fields to change.
async fn patch_settings(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Body(patch): Body<serde_json::Map<String, Value>>,
) -> ApiResult<Json<CompanySettings>> {
    // Checked against the settings as read; written merged into the settings as stored then,
    // so two admins changing different fields at once both keep their change.
    let current = company(&hub, &c).await?.settings;
    let after = crate::directory::patch_settings(&current, &patch).map_err(ApiError::invalid)?;
    after
        .within_ceilings(&current, &hub.ceilings())
        .map_err(ApiError::invalid)?;
    let (_, settings) = hub.store.change_settings(&c, &patch).await?;
    tracing::info!(company = %c, "settings changed");
    // G13: whoever does not hold external permission now leaves every external group.
    let users: Vec<UserId> = hub
        .store
        .users_of(&c)
        .await?
        .into_iter()
        .map(|u| u.id)
        .collect();
    policy::enforce(&*hub.store, &hub.rooms, &users).await?;
    Ok(Json(settings))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    login: String,
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default = "works")]
    kind: UserKind,
    #[serde(default)]
    external_permission: bool,
}

fn works() -> UserKind {
    UserKind::Works
}

fn check_display_name(name: &str) -> ApiResult<String> {
    let n = name.trim();
    let len = n.chars().count();
    if len == 0 || len > 100 {
        return Err(ApiError::invalid("name must be 1 to 100 characters"));
    }
    Ok(n.to_owned())
}

fn check_email(email: &str) -> ApiResult<()> {
    if email.chars().count() > 254 || (!email.is_empty() && !email.contains('@')) {
        return Err(ApiError::invalid(
            "email must be empty or an address of at most 254 characters",
        ));
    }
    Ok(())
}

async fn create_user(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Body(req): Body<NewUser>,
) -> ApiResult<impl IntoResponse> {
    validate_login(&req.login).map_err(ApiError::invalid)?;
    check_email(&req.email)?;
    let user = User {
        id: UserId(format!("{}@{}", req.login, c)),
        company: c,
        name: check_display_name(&req.name)?,
        email: req.email,
        kind: req.kind,
        active: true,
        external_granted: req.external_permission,
        tokens_valid_after: 0,
    };
    hub.store.create_user(&user).await?;
    Ok((StatusCode::CREATED, one_view(&hub, user).await?))
}

/// A user as an admin sees them: the record, and whether they hold external permission now
/// (`external_permission` is only the per-member grant, which `all_members` makes moot).
#[derive(serde::Serialize)]
struct AdminUser {
    #[serde(flatten)]
    user: User,
    holds_external_permission: bool,
}

async fn admin_view(hub: &Hub, users: Vec<User>) -> ApiResult<Vec<AdminUser>> {
    let mut settings = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        if !settings.contains_key(&user.company) {
            let s = company(hub, &user.company).await?.settings;
            settings.insert(user.company.clone(), s);
        }
        let holds = crate::directory::holds_external_permission(&user, &settings[&user.company]);
        out.push(AdminUser {
            user,
            holds_external_permission: holds,
        });
    }
    Ok(out)
}

async fn one_view(hub: &Hub, user: User) -> ApiResult<Json<AdminUser>> {
    let mut v = admin_view(hub, vec![user]).await?;
    v.pop().map(Json).ok_or_else(ApiError::internal)
}

/// The company's users in id order, a page at a time: `next` is the `after` of the next page.
async fn list_users(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    axum::extract::Query(page): axum::extract::Query<crate::domain::paging::ListPage>,
) -> ApiResult<Json<Value>> {
    let users = hub.store.users_of(&c).await?;
    let (users, next) = page.cut(users.into_iter().map(|u| (u.id.0.clone(), u)).collect())?;
    let users = admin_view(&hub, users).await?;
    Ok(Json(json!({ "users": users, "next": next })))
}

/// A user of the admin's own company; another company's users do not exist for this admin.
async fn own_user(hub: &Hub, company: &CompanyId, id: &str) -> ApiResult<User> {
    match hub.store.user(&UserId::from(id)).await? {
        Some(u) if u.company == *company => Ok(u),
        _ => Err(ApiError::not_found(format!("user {id}"))),
    }
}

async fn get_user(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(id): Path<String>,
) -> ApiResult<Json<AdminUser>> {
    one_view(&hub, own_user(&hub, &c, &id).await?).await
}

/// A leaver: their sessions close on every node, they leave every external group (reason
/// `policy`, G13), and the directory forgets them. Their posts stay, under their id.
async fn delete_user(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let user = own_user(&hub, &c, &id).await?;
    forget_user(&hub, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disable the user (their sessions close on every node), take them out of every external
/// group (disabled, they lack permission: G13's reconciliation removes them, reason `policy`)
/// and every general room (A2: nothing of theirs stays where a later holder of the id could find
/// it), then delete them from the directory, their id retired.
async fn forget_user(hub: &Arc<Hub>, user: &User) -> ApiResult<()> {
    let change = UserChange {
        active: Some(false),
        revoke_tokens_at: Some(crate::clock::now_secs()),
        ..UserChange::default()
    };
    hub.store.change_user(&user.id, &change).await?;
    hub.sessions
        .close_user(&user.id, CloseReason::UserDisabled.into());
    policy::enforce(&*hub.store, &hub.rooms, std::slice::from_ref(&user.id)).await?;
    policy::leave_general_rooms(&*hub.store, &hub.rooms, user).await?;
    hub.store.delete_user(&user.id).await?;
    tracing::info!(user = %user.id, "user deleted");
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    name: Option<String>,
    email: Option<String>,
    active: Option<bool>,
    external_permission: Option<bool>,
}

async fn patch_user(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(id): Path<String>,
    Body(p): Body<UserPatch>,
) -> ApiResult<Json<AdminUser>> {
    let user = own_user(&hub, &c, &id).await?;
    let change = UserChange {
        name: p.name.as_deref().map(check_display_name).transpose()?,
        email: match p.email {
            Some(e) => {
                check_email(&e)?;
                Some(e)
            }
            None => None,
        },
        active: p.active,
        external_granted: p.external_permission,
        revoke_tokens_at: None,
    };
    // Applied to the user as stored: concurrent changes of other fields are kept.
    let (_, user) = hub.store.change_user(&user.id, &change).await?;
    tracing::info!(user = %user.id, active = user.active, "user changed");
    // A disabled user's sessions close on every node (whoever disabled them, and however many
    // changes raced this one).
    if !user.active {
        hub.sessions
            .close_user(&user.id, CloseReason::UserDisabled.into());
    }
    // G13: without external permission now, they leave every external group now.
    policy::enforce(&*hub.store, &hub.rooms, std::slice::from_ref(&user.id)).await?;
    one_view(&hub, user).await
}

async fn list_contacts(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = own_user(&hub, &c, &id).await?;
    Ok(Json(
        json!({ "contacts": hub.store.contacts(&user.id).await? }),
    ))
}

async fn add_contact(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path((id, contact)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = own_user(&hub, &c, &id).await?;
    let contact = UserId::from(contact.as_str());
    if contact == user.id || hub.store.user(&contact).await?.is_none() {
        return Err(ApiError::not_found(format!("user {contact}")));
    }
    hub.store.add_contact(&user.id, &contact).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_contact(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path((id, contact)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = own_user(&hub, &c, &id).await?;
    hub.store
        .remove_contact(&user.id, &UserId::from(contact.as_str()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    ttl_secs: Option<i64>,
}

async fn mint_token(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    // The body is optional: empty means the defaults.
    let req: TokenRequest = if body.is_empty() {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("bad JSON body: {e}")))?
    };
    let user = own_user(&hub, &c, &id).await?;
    if !user.active {
        return Err(ApiError::new(ErrorCode::Forbidden, "user is disabled"));
    }
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if !(60..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid(format!(
            "ttl_secs must be 60 to {MAX_TOKEN_TTL_SECS}"
        )));
    }
    let now = crate::clock::now_secs();
    // Issued after any revocation, even one in this same second.
    let issued = now.max(user.tokens_valid_after + 1);
    let token = hub
        .tokens
        .sign_issued(&user.id, &user.company, issued, now, ttl);
    Ok(Json(
        json!({ "token": token, "user": user.id, "expires_at": now + ttl }),
    ))
}

/// Revoke every token issued to the user so far, and close their live sessions (4500).
async fn revoke_tokens(
    State(hub): State<Arc<Hub>>,
    CompanyAdmin(c): CompanyAdmin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let user = own_user(&hub, &c, &id).await?;
    let change = UserChange {
        revoke_tokens_at: Some(crate::clock::now_secs()),
        ..UserChange::default()
    };
    let (_, user) = hub.store.change_user(&user.id, &change).await?;
    hub.sessions
        .close_user(&user.id, CloseReason::TokensRevoked.into());
    tracing::info!(user = %user.id, "tokens revoked");
    Ok(StatusCode::NO_CONTENT)
}
