//! Changing rooms: adding and removing members and masters, settings, joining by link,
//! leaving, converting (G4–G14), decided on the room as it is; and what a committed change does
//! to the room ([`apply`]).

use super::checks::*;
use super::create::*;
use crate::domain::directory::{CompanySettings, GroupCreation, UserKind};
use crate::domain::records::RoomRecord;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{
    CompanyId, ErrorCode, EventBody, FeaturesPatch, LeftOut, RemovalReason, RoomKind, UserId,
};
use std::collections::{BTreeSet, HashMap, HashSet};

/// A change to a room's membership or settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AddMembers(Vec<UserId>),
    RemoveMember(UserId),
    AddMasters(Vec<UserId>),
    RemoveMaster(UserId),
    Update {
        name: Option<String>,
        description: Option<String>,
        features: Option<FeaturesPatch>,
    },
    /// A new profile image, already stored as file `file` (G9).
    SetImage {
        file: String,
    },
    Leave,
    Convert {
        name: String,
    },
    /// The actor joins with an invitation token (G14).
    Join {
        token: String,
    },
}

impl Change {
    /// Users the decision needs to know about (besides the room's own members).
    pub fn named(&self) -> Vec<UserId> {
        match self {
            Change::AddMembers(u) | Change::AddMasters(u) => u.clone(),
            Change::RemoveMember(u) | Change::RemoveMaster(u) => vec![u.clone()],
            _ => Vec::new(),
        }
    }
}

/// What the rules need besides the room: looked up just before deciding.
pub struct Context {
    /// Named users and, for a conversion, every participant; with their permission.
    pub people: HashMap<UserId, Person>,
    /// The acting user's contacts (G7).
    pub contacts: HashSet<UserId>,
    /// The owner company's settings (G9: `masters_can_change_settings`).
    pub owner: CompanySettings,
    /// The acting user's company settings (G2: group creation, G20).
    pub actor_company: Option<CompanySettings>,
    /// External groups the acting user's company owns (G20).
    pub owned_groups: u64,
    pub max_participants: usize,
    /// The group's current invitation link (for `Join`).
    pub invite: Option<crate::domain::records::Invite>,
    /// Seconds since the Unix epoch (invitation expiry).
    pub now_secs: i64,
}

/// The entries a change writes, and who was left out.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub entries: Vec<EventBody>,
    pub left_out: Vec<LeftOut>,
}

/// Decide a change against the room's current state: the pure heart of G2, G5–G7, G9–G11, G13,
/// G14 and R1.
pub fn decide(
    room: &RoomRecord,
    actor: &Actor,
    change: &Change,
    ctx: &Context,
) -> ApiResult<Decision> {
    let named = change.named();
    if named.len() > ctx.max_participants {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {} users per request", ctx.max_participants),
        ));
    }
    match room.kind {
        RoomKind::Group => decide_group(room, actor, change, ctx),
        RoomKind::Room => decide_general(room, actor, change, ctx),
    }
}

pub(super) fn decide_group(
    room: &RoomRecord,
    actor: &Actor,
    change: &Change,
    ctx: &Context,
) -> ApiResult<Decision> {
    // The contacts rule (G7) binds users; an admin chooses freely (G3).
    let (adder_company, contacts) = match actor {
        Actor::User(p) => (p.user.company.clone(), Some(&ctx.contacts)),
        Actor::Admin(c) | Actor::Policy(c) => (c.clone(), None),
    };
    match change {
        Change::AddMembers(users) => {
            check_manager(room, actor)?;
            let (added, left_out) = admit(
                &adder_company,
                users,
                |id| is_member(room, id),
                &ctx.people,
                contacts,
            )?;
            let entries = if added.is_empty() {
                Vec::new()
            } else {
                vec![EventBody::MembersAdded {
                    users: added.into_iter().collect(),
                }]
            };
            Ok(Decision { entries, left_out })
        }
        Change::RemoveMember(target) => remove_member(room, actor, target),
        Change::AddMasters(users) => add_masters(room, actor, users, ctx, &adder_company, contacts),
        Change::RemoveMaster(target) => {
            check_manager(room, actor)?;
            if !is_master(room, target) {
                return Err(ApiError::not_found(format!(
                    "{target} as a master of this group"
                )));
            }
            if room.masters.len() == 1 {
                return Err(ApiError::new(
                    ErrorCode::LastMaster,
                    "the last master cannot be demoted; make someone else a master first",
                ));
            }
            Ok(single(EventBody::MasterRemoved {
                user: target.clone(),
            }))
        }
        Change::Update { .. } | Change::SetImage { .. } => update_group(room, actor, change, ctx),
        Change::Leave => {
            check_member(room, &actor.id())?;
            Err(ApiError::new(
                ErrorCode::CannotLeave,
                "members cannot leave an external group; ask a master to remove you",
            ))
        }
        Change::Convert { .. } => {
            check_member(room, &actor.id())?;
            Err(ApiError::invalid(
                "this is already an external group; conversion cannot be undone",
            ))
        }
        Change::Join { token } => join(room, actor, token, ctx),
    }
}

/// A group member removed by a master, an admin, or their company's policy (G10, G13).
pub(super) fn remove_member(
    room: &RoomRecord,
    actor: &Actor,
    target: &UserId,
) -> ApiResult<Decision> {
    if !is_member(room, target) && !is_master(room, target) {
        check_manager(room, actor).or_else(|e| match actor {
            Actor::Policy(_) => Ok(()),
            _ => Err(e),
        })?;
        return Err(ApiError::not_found(format!("{target} in this group")));
    }
    if let Actor::Policy(c) = actor {
        // G13: a company's policy reaches its own users only — and wins over G10.
        if target.company().as_ref() != Some(c) {
            return Err(forbidden("policy applies to the company's own users"));
        }
        return Ok(single(EventBody::MemberRemoved {
            user: target.clone(),
            reason: RemovalReason::Policy,
        }));
    }
    check_manager(room, actor)?;
    if is_master(room, target) && room.masters.len() == 1 {
        return Err(ApiError::new(
            ErrorCode::LastMaster,
            "the last master cannot be removed; make someone else a master first",
        ));
    }
    Ok(single(EventBody::MemberRemoved {
        user: target.clone(),
        reason: RemovalReason::Removed,
    }))
}

/// Masters added (G5: each must hold external permission — an error, never a silent drop).
pub(super) fn add_masters(
    room: &RoomRecord,
    actor: &Actor,
    users: &[UserId],
    ctx: &Context,
    adder_company: &CompanyId,
    contacts: Option<&HashSet<UserId>>,
) -> ApiResult<Decision> {
    check_manager(room, actor)?;
    let mut added = BTreeSet::new();
    for id in users {
        if is_master(room, id) {
            continue;
        }
        // G5: a master must hold external permission — an error, never a silent drop.
        check_group_candidate(adder_company, person(ctx, id)?, contacts)?;
        added.insert(id.clone());
    }
    let entries = if added.is_empty() {
        Vec::new()
    } else {
        vec![EventBody::MastersAdded {
            users: added.into_iter().collect(),
        }]
    };
    Ok(Decision {
        entries,
        left_out: Vec::new(),
    })
}

/// The group's name, description, switches or image changed (G9).
pub(super) fn update_group(
    room: &RoomRecord,
    actor: &Actor,
    change: &Change,
    ctx: &Context,
) -> ApiResult<Decision> {
    check_manager(room, actor)?;
    if matches!(actor, Actor::User(_)) && !ctx.owner.masters_can_change_settings {
        return Err(forbidden(
            "the owner company lets only its admins change this group's settings",
        ));
    }
    let body = match change {
        Change::Update {
            name,
            description,
            features,
        } => {
            if name.is_none() && description.is_none() && features.is_none() {
                return Err(ApiError::invalid("nothing to change"));
            }
            let name = name.as_deref().map(check_name).transpose()?;
            if let Some(d) = description {
                check_description(d)?;
            }
            EventBody::GroupUpdated {
                name,
                description: description.clone(),
                features: features.map(|p| p.apply(room.features)),
                image: None,
            }
        }
        Change::SetImage { file } => EventBody::GroupUpdated {
            name: None,
            description: None,
            features: None,
            image: Some(file.clone()),
        },
        _ => return Err(ApiError::internal()),
    };
    Ok(single(body))
}

/// Joining with the group's invitation link (G14).
pub(super) fn join(
    room: &RoomRecord,
    actor: &Actor,
    token: &str,
    ctx: &Context,
) -> ApiResult<Decision> {
    let Actor::User(p) = actor else {
        return Err(forbidden("only users join by invitation"));
    };
    let valid = ctx
        .invite
        .as_ref()
        .is_some_and(|i| i.token == *token && i.expires_at.is_none_or(|at| ctx.now_secs < at));
    if !valid {
        return Err(ApiError::not_found(
            "invitation link (it may have expired or been revoked)",
        ));
    }
    if is_member(room, &p.user.id) {
        return Ok(Decision {
            entries: Vec::new(),
            left_out: Vec::new(),
        });
    }
    if ctx
        .invite
        .as_ref()
        .is_some_and(|i| i.barred.contains(&p.user.id))
    {
        return Err(forbidden(
            "a master removed you from this group: this link no longer admits you (ask a master)",
        ));
    }
    check_group_candidate(&p.user.company, p, None)?;
    Ok(single(EventBody::MembersAdded {
        users: vec![p.user.id.clone()],
    }))
}

/// A decision of one entry, nobody left out.
pub(super) fn single(entry: EventBody) -> Decision {
    Decision {
        entries: vec![entry],
        left_out: Vec::new(),
    }
}

pub(super) fn decide_general(
    room: &RoomRecord,
    actor: &Actor,
    change: &Change,
    ctx: &Context,
) -> ApiResult<Decision> {
    let me = match actor {
        Actor::User(me) => me,
        // A2: a company deleting one of its people takes them out of general rooms too, as it
        // does of groups (reason `policy`) — and only its own people.
        Actor::Policy(c) => {
            return match change {
                Change::RemoveMember(u)
                    if u.company().as_ref() == Some(c) && is_member(room, u) =>
                {
                    Ok(single(EventBody::MemberRemoved {
                        user: u.clone(),
                        reason: RemovalReason::Policy,
                    }))
                }
                Change::RemoveMember(u) => Err(ApiError::not_found(format!("member {u}"))),
                _ => Err(forbidden("policy only removes members")),
            }
        }
        _ => return Err(forbidden("general rooms are managed by their participants")),
    };
    check_member(room, &me.user.id)?;
    match change {
        Change::AddMembers(users) => {
            // R1: any participant invites; the same people a new room would take.
            let fresh: Vec<UserId> = users
                .iter()
                .filter(|u| !is_member(room, u))
                .cloned()
                .collect();
            let mut added = BTreeSet::new();
            let mut left_out = Vec::new();
            for id in &fresh {
                let p = person(ctx, id)?;
                if may_join_general(me, p) {
                    added.insert(id.clone());
                } else if !left_out.iter().any(|l: &LeftOut| l.user == *id) {
                    left_out.push(LeftOut {
                        user: id.clone(),
                        reason: ErrorCode::NoExternalPermission,
                    });
                }
            }
            let entries = if added.is_empty() {
                Vec::new()
            } else {
                vec![EventBody::MembersAdded {
                    users: added.into_iter().collect(),
                }]
            };
            Ok(Decision { entries, left_out })
        }
        Change::Leave => Ok(single(EventBody::MemberRemoved {
            user: me.user.id.clone(),
            reason: RemovalReason::Left,
        })),
        Change::Convert { name } => decide_convert(room, me, name, ctx),
        Change::RemoveMember(_) => Err(forbidden(
            "participants of a general room leave by themselves; nobody removes them",
        )),
        Change::AddMasters(_)
        | Change::RemoveMaster(_)
        | Change::Update { .. }
        | Change::SetImage { .. } => Err(ApiError::invalid(
            "general rooms have no masters or settings; convert it to an external group first",
        )),
        Change::Join { .. } => Err(ApiError::not_found("invitation")),
    }
}

/// R1: who may be in a general room with `inviter`.
pub(super) fn may_join_general(inviter: &Person, p: &Person) -> bool {
    p.user.active
        && (p.user.company == inviter.user.company
            || p.user.kind == UserKind::Line
            || (inviter.permitted && p.permitted))
}

/// G2: a participant converts a general room with at least one external WORKS user into an
/// external group, in place; they become its master; LINE users and those without external
/// permission are left out.
pub(super) fn decide_convert(
    room: &RoomRecord,
    me: &Person,
    name: &str,
    ctx: &Context,
) -> ApiResult<Decision> {
    let settings = ctx.actor_company.as_ref().ok_or_else(ApiError::internal)?;
    if settings.group_creation == GroupCreation::AdminsOnly {
        return Err(ApiError::new(
            ErrorCode::GroupCreationNotAllowed,
            "your company lets only admins create groups",
        ));
    }
    if !me.permitted {
        return Err(ApiError::new(
            ErrorCode::NoExternalPermission,
            "you need external permission to convert a room into an external group",
        ));
    }
    check_group_count(ctx.owned_groups, settings)?;
    let name = check_name(name)?;
    let participants: Vec<&Person> = room
        .members
        .iter()
        .filter_map(|u| ctx.people.get(u))
        .collect();
    let has_external_works = participants
        .iter()
        .any(|p| p.user.company != me.user.company && p.user.kind == UserKind::Works);
    if room.members.len() < 2 || !has_external_works {
        return Err(ApiError::invalid(
            "only a room with several participants, at least one an external WORKS user, can be converted",
        ));
    }
    let mut members = Vec::new();
    let mut left_out = Vec::new();
    for id in &room.members {
        let reason = match ctx.people.get(id) {
            _ if *id == me.user.id => None,
            Some(p) if p.user.kind == UserKind::Line => Some(ErrorCode::LineUserNotAllowed),
            Some(p) if p.permitted => None,
            _ => Some(ErrorCode::NoExternalPermission),
        };
        match reason {
            None => members.push(id.clone()),
            Some(reason) => left_out.push(LeftOut {
                user: id.clone(),
                reason,
            }),
        }
    }
    Ok(Decision {
        entries: vec![EventBody::Converted {
            name,
            masters: vec![me.user.id.clone()],
            members,
            left_out: left_out.clone(),
        }],
        left_out,
    })
}

/// Apply a committed (or just decided) entry to a room's state: the same projection the store
/// keeps, on the actor's copy.
pub fn apply(room: &mut RoomRecord, author: &UserId, body: &EventBody) {
    fn insert(v: &mut Vec<UserId>, u: &UserId) {
        if let Err(i) = v.binary_search(u) {
            v.insert(i, u.clone());
        }
    }
    fn remove(v: &mut Vec<UserId>, u: &UserId) {
        if let Ok(i) = v.binary_search(u) {
            v.remove(i);
        }
    }
    match body {
        EventBody::Created { .. } => {}
        EventBody::MembersAdded { users } => {
            for u in users {
                // Sees nothing until the join commits: `projection::seal` sets its seq.
                insert(&mut room.members, u);
            }
        }
        EventBody::MemberRemoved { user, .. } => {
            remove(&mut room.members, user);
            remove(&mut room.masters, user);
            room.member_since.remove(user);
        }
        EventBody::MastersAdded { users } => {
            users.iter().for_each(|u| insert(&mut room.masters, u))
        }
        EventBody::MasterRemoved { user } => remove(&mut room.masters, user),
        EventBody::GroupUpdated {
            name,
            description,
            features,
            image,
        } => {
            if let Some(i) = image {
                room.image = Some(i.clone());
            }
            if let Some(n) = name {
                room.name = n.clone();
            }
            if let Some(d) = description {
                room.description = d.clone();
            }
            if let Some(f) = features {
                room.features = *f;
            }
        }
        EventBody::Converted {
            name,
            masters,
            members,
            ..
        } => {
            room.kind = RoomKind::Group;
            room.name = name.clone();
            if let Some(c) = author.company() {
                room.owner_company = c;
            }
            room.converted_from = Some(room.id.clone());
            room.members = members.clone();
            room.members.sort();
            room.member_since.retain(|u, _| members.contains(u));
            room.masters = masters.clone();
            room.masters.sort();
        }
        // Room content does not change membership or settings.
        _ => {}
    }
}

/// A person the decision looked up, or `not_found`.
pub(super) fn person<'a>(ctx: &'a Context, id: &UserId) -> ApiResult<&'a Person> {
    ctx.people
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))
}
