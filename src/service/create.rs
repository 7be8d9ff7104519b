//! Creating rooms: look up everyone involved, let [`crate::domain::rules`] decide, store the room with
//! its first log entry, and tell every participant's live sessions (`joined`).

use crate::clock::now_ms;
use crate::directory::{holds_external_permission, CompanySettings, User};
use crate::domain::records::joined;
use crate::domain::rules::{self, Person};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::room::lookup::{company_settings, people};
use crate::store::{MembershipRow, NewRoom};
use crossroom_protocol::{
    CompanyId, ErrorCode, Features, LeftOut, RoomId, RoomInfo, RoomKind, RoomSummary, UserId,
};
use std::collections::HashSet;
use std::sync::Arc;

/// What a user asks for when creating an external group (G1).
pub struct GroupSpec {
    pub name: String,
    pub description: String,
    pub members: Vec<UserId>,
    pub masters: Vec<UserId>,
    pub add_self_as_member: bool,
    pub features: Features,
}

/// The creator as the directory has them now, with their company's settings (D5): a session
/// authenticated before an admin withdrew their permission, or disabled them, must not create
/// with what it knew then.
async fn creator_now(hub: &Hub, creator: &User) -> ApiResult<(Person, CompanySettings)> {
    let settings = company_settings(&*hub.store, &creator.company).await?;
    let Some(user) = hub.store.user(&creator.id).await? else {
        return Err(ApiError::not_found(format!("user {}", creator.id)));
    };
    let permitted = holds_external_permission(&user, &settings);
    Ok((Person { user, permitted }, settings))
}

/// G1: a user creates an external group.
pub async fn create_group(
    hub: &Arc<Hub>,
    creator: &User,
    spec: GroupSpec,
) -> ApiResult<(RoomInfo, Vec<LeftOut>)> {
    let max = hub.limits.max_participants;
    // Refuse oversized requests before looking anyone up.
    if spec.members.len() + spec.masters.len() > max {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {max} participants per request"),
        ));
    }
    let (me, settings) = creator_now(hub, creator).await?;
    let named: Vec<UserId> = spec.members.iter().chain(&spec.masters).cloned().collect();
    let people = people(&*hub.store, &named).await?;
    let contacts: HashSet<UserId> = hub.store.contacts(&creator.id).await?.into_iter().collect();
    let plan = rules::plan_group(&rules::GroupRequest {
        creator: &me,
        group_creation: settings.group_creation,
        name: &spec.name,
        description: &spec.description,
        members: &spec.members,
        masters: &spec.masters,
        add_self_as_member: spec.add_self_as_member,
        people: &people,
        contacts: &contacts,
        max_participants: max,
    })?;
    // G20 is checked by the store, atomically with the insert (`max_owned_groups`).
    store_room(
        hub,
        &creator.id,
        &creator.company,
        RoomKind::Group,
        plan,
        spec.features,
        Some(settings.max_groups),
    )
    .await
}

/// G3: a company admin creates an external group owned by their company.
pub async fn create_group_as_admin(
    hub: &Arc<Hub>,
    company: &CompanyId,
    spec: GroupSpec,
) -> ApiResult<(RoomInfo, Vec<LeftOut>)> {
    let max = hub.limits.max_participants;
    if spec.members.len() + spec.masters.len() > max {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {max} participants per request"),
        ));
    }
    let settings = company_settings(&*hub.store, company).await?;
    let named: Vec<UserId> = spec.members.iter().chain(&spec.masters).cloned().collect();
    let people = people(&*hub.store, &named).await?;
    let plan = rules::plan_admin_group(
        company,
        &spec.name,
        &spec.description,
        &spec.masters,
        &spec.members,
        &people,
        max,
    )?;
    let admin = rules::Actor::Admin(company.clone()).id();
    let limit = Some(settings.max_groups);
    store_room(
        hub,
        &admin,
        company,
        RoomKind::Group,
        plan,
        spec.features,
        limit,
    )
    .await
}

/// R1: a user creates a general room.
pub async fn create_room(
    hub: &Arc<Hub>,
    creator: &User,
    name: &str,
    members: &[UserId],
) -> ApiResult<(RoomInfo, Vec<LeftOut>)> {
    let max = hub.limits.max_participants;
    if members.len() > max {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {max} participants per request"),
        ));
    }
    let (me, _) = creator_now(hub, creator).await?;
    let people = people(&*hub.store, members).await?;
    let plan = rules::plan_room(&me, name, members, &people, max)?;
    store_room(
        hub,
        &creator.id,
        &creator.company,
        RoomKind::Room,
        plan,
        Features::default(),
        None,
    )
    .await
}

/// A withdrawal of permission may have raced the creation, reading the user's groups just before
/// this one existed: read every participant again now, and reconcile whoever lost permission
/// (as the room actor does after every admission).
async fn recheck_participants(hub: &Arc<Hub>, new: &NewRoom) -> ApiResult<()> {
    let named: Vec<UserId> = new.members.iter().chain(&new.masters).cloned().collect();
    let lost: Vec<UserId> = crate::room::lookup::lacking_permission(&*hub.store, &named)
        .await?
        .into_iter()
        .map(|(user, _)| user)
        .collect();
    if !lost.is_empty() {
        super::policy::enforce(&*hub.store, &hub.rooms, &lost).await?;
    }
    Ok(())
}

async fn store_room(
    hub: &Arc<Hub>,
    created_by: &UserId,
    owner: &CompanyId,
    kind: RoomKind,
    plan: rules::Plan,
    features: Features,
    max_owned_groups: Option<u64>,
) -> ApiResult<(RoomInfo, Vec<LeftOut>)> {
    let new = NewRoom {
        id: RoomId(format!("r_{}", crate::random::token())),
        kind,
        name: plan.name,
        description: plan.description,
        owner_company: owner.clone(),
        created_by: created_by.clone(),
        created_at: now_ms(),
        features,
        masters: plan.masters,
        members: plan.members,
        epoch: crate::random::epoch(),
        max_owned_groups,
    };
    let created = hub.store.create_room(&new).await?;
    if let Some(audit) = crate::store::audit_of(&created, &new.owner_company) {
        hub.ops.publish(&audit);
    }
    if kind == RoomKind::Group {
        recheck_participants(hub, &new).await?;
    }
    let info = RoomInfo {
        id: new.id,
        kind: new.kind,
        name: new.name,
        description: new.description,
        owner_company: new.owner_company,
        created_by: new.created_by,
        created_at: new.created_at,
        masters: new.masters,
        members: new.members,
        features: new.features,
        epoch: created.epoch,
        head: created.seq,
        converted_from: None,
        image: None,
        people: Default::default(),
    };
    let mut told: Vec<&UserId> = info.members.iter().chain(&info.masters).collect();
    told.sort();
    told.dedup();
    for user in told {
        if let Some(joined) = joined(
            user,
            (&info.id, info.kind, &info.name),
            (info.epoch, info.head),
            &info.members,
            &info.masters,
        ) {
            hub.sessions.push_to_user(user, &joined);
        }
    }
    tracing::info!(room = %info.id, kind = ?info.kind, by = %created_by, members = info.members.len(), "room created");
    Ok((info, plan.left_out))
}

/// A `rooms` line from the store's membership row.
pub fn summary(row: MembershipRow) -> RoomSummary {
    let role = crate::domain::records::role(row.member, row.master);
    RoomSummary {
        id: row.room,
        kind: row.kind,
        name: row.name,
        epoch: row.epoch,
        head: row.head,
        role,
        last_read: if row.member { row.last_read } else { 0 },
        unread: row.member.then_some(row.unread),
    }
}
