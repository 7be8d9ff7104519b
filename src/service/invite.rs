//! Invitations (G14, G15): what an invitation link opens, joining by it, signing a new company
//! up by it, and invitation emails. The link itself is managed by the room actor
//! ([`crate::room::InviteOp`]); the HTTP routes are in `http/invite.rs`.

use crate::directory::keys::{hash_key, new_admin_key};
use crate::directory::{
    validate_company_id, validate_login, Company, CompanySettings, User, UserKind,
};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::mail::Mailer;
use crate::room::{lookup, Actor, Change, InviteOp};
use crossroom_protocol::{CompanyId, ErrorCode, RoomId, UserId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most addresses in one `send_invites`.
const MAX_EMAILS: usize = 100;

/// The room a valid (present, unexpired) invitation token opens.
pub async fn valid_invite(hub: &Hub, token: &str) -> ApiResult<RoomId> {
    let gone = || ApiError::not_found("invitation link (it may have expired or been revoked)");
    let (room, invite) = hub.store.room_by_invite(token).await?.ok_or_else(gone)?;
    if invite
        .expires_at
        .is_some_and(|at| crate::clock::now_secs() >= at)
    {
        return Err(gone());
    }
    Ok(room)
}

/// Join `room` as `user` with `token`, through the room actor (which checks the link again and
/// the user's permission: G14).
pub async fn join_as(
    hub: &Arc<Hub>,
    user: &UserId,
    room: &RoomId,
    token: String,
) -> ApiResult<Value> {
    let me = lookup::person(&*hub.store, user).await?;
    let c = hub
        .rooms
        .change(room, Actor::User(me), Change::Join { token })
        .await?;
    Ok(json!({ "room": c.room, "seq": c.seq }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupCompany {
    pub id: CompanyId,
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupUser {
    pub login: String,
    pub name: String,
    #[serde(default)]
    pub email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    pub company: SignupCompany,
    pub user: SignupUser,
}

/// Someone whose company does not use crossroom yet creates it (with external chat on) and its
/// first user — who administers it — then joins by the link (G14). Answers what the sign-up
/// made: the company, its admin key, the user, a token, and the join.
pub async fn signup(hub: &Arc<Hub>, token: String, req: Signup) -> ApiResult<Value> {
    let room = valid_invite(hub, &token).await?;
    validate_company_id(req.company.id.as_str()).map_err(ApiError::invalid)?;
    validate_login(&req.user.login).map_err(ApiError::invalid)?;
    let company_name = req.company.name.trim();
    let user_name = req.user.name.trim();
    for (what, v) in [("company name", company_name), ("user name", user_name)] {
        if v.is_empty() || v.chars().count() > 100 {
            return Err(ApiError::invalid(format!(
                "{what} must be 1 to 100 characters"
            )));
        }
    }
    if !req.user.email.is_empty() {
        Mailer::check_address(&req.user.email)?;
    }
    if !hub
        .signups
        .take(&token, hub.limits.signups_per_link_per_hour)
    {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "this invitation link admitted its sign-ups for this hour; try later",
        ));
    }
    let company = Company {
        id: req.company.id.clone(),
        name: company_name.to_owned(),
        settings: CompanySettings {
            external_chat: true,
            ..Default::default()
        }
        .capped(&hub.ceilings()),
        self_registered: true,
    };
    let admin_key = new_admin_key();
    hub.store
        .create_company(&company, &hash_key(&admin_key))
        .await?;
    let user = User {
        id: UserId(format!("{}@{}", req.user.login, company.id)),
        company: company.id.clone(),
        name: user_name.to_owned(),
        email: req.user.email,
        kind: UserKind::Works,
        active: true,
        external_granted: true,
        tokens_valid_after: 0,
    };
    hub.store.create_user(&user).await?;
    let joined = join_as(hub, &user.id, &room, token).await?;
    let now = crate::clock::now_secs();
    let user_token = hub.tokens.sign(&user.id, &user.company, now, 24 * 3600);
    tracing::info!(company = %company.id, user = %user.id, %room, "signed up by invitation");
    Ok(json!({
        "company": company,
        "admin_key": admin_key,
        "user": user,
        "token": user_token,
        "joined": joined,
    }))
}

/// G15: a master emails the group's invitation link (made if there is none) to `emails`.
pub async fn send_invites(
    hub: &Arc<Hub>,
    user: &UserId,
    room: &RoomId,
    emails: &[String],
) -> ApiResult<()> {
    if emails.is_empty() || emails.len() > MAX_EMAILS {
        return Err(ApiError::invalid(format!(
            "send to 1 to {MAX_EMAILS} addresses"
        )));
    }
    for e in emails {
        Mailer::check_address(e)?;
    }
    let me = lookup::person(&*hub.store, user).await?;
    let actor = || Actor::User(me.clone());
    let current = hub.rooms.invite(room, actor(), InviteOp::Get).await?;
    let url = match current.url {
        Some(url) => url,
        None => {
            let create = InviteOp::Create {
                expires_in_secs: None,
            };
            let made = hub.rooms.invite(room, actor(), create).await?;
            made.url.ok_or_else(ApiError::internal)?
        }
    };
    let name = match hub.rooms.get(room, me.user.id.clone()).await {
        Ok(info) => info.name,
        Err(_) => String::from("a group"),
    };
    let subject = format!("{} invites you to \"{name}\" on crossroom", me.user.name);
    let body = format!(
        "{} ({}) invites you to the external group \"{name}\".\n\nOpen this link to join:\n{url}\n\n\
         If your company does not use crossroom yet, the link lets you sign up.\n",
        me.user.name, me.user.id
    );
    for to in emails {
        hub.mailer.send(to, &subject, body.clone()).await?;
    }
    tracing::info!(%room, by = %user, count = emails.len(), "invitations sent");
    Ok(())
}
