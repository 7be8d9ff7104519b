//! The pure rules of rooms: plain functions over plain data, no I/O, each tested beside it and
//! named after the rule of docs/rules.md it enforces.

use crate::domain::directory::{CompanySettings, GroupCreation, User, UserKind};
use crate::domain::records::RoomRecord;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{
    CompanyId, ErrorCode, EventBody, FeaturesPatch, LeftOut, RemovalReason, RoomKind, UserId,
};
use std::collections::{BTreeSet, HashMap, HashSet};

/// M1: longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest client message id, in characters.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
/// G4: group name length after trimming, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// G4: description length, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 300;

/// A user as the rules see them: the record and whether they hold external permission.
#[derive(Clone, Debug)]
pub struct Person {
    pub user: User,
    pub permitted: bool,
}

/// What a create request turns into once the rules have run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub description: String,
    /// Sorted, unique.
    pub members: Vec<UserId>,
    /// Sorted, unique.
    pub masters: Vec<UserId>,
    pub left_out: Vec<LeftOut>,
}

/// G4: the trimmed name, 1 to 100 characters (Unicode scalar values).
pub fn check_name(name: &str) -> ApiResult<String> {
    let trimmed = name.trim();
    let n = trimmed.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters after trimming (got {n})"
        )));
    }
    Ok(trimmed.to_owned())
}

/// G4: description, 0 to 300 characters.
pub fn check_description(description: &str) -> ApiResult<()> {
    let n = description.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::invalid(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters (got {n})"
        )));
    }
    Ok(())
}

/// The request to create an external group, with everything the rules need looked up.
pub struct GroupRequest<'a> {
    pub creator: &'a Person,
    pub group_creation: GroupCreation,
    pub name: &'a str,
    pub description: &'a str,
    pub members: &'a [UserId],
    pub masters: &'a [UserId],
    pub add_self_as_member: bool,
    /// Every named user that exists.
    pub people: &'a HashMap<UserId, Person>,
    /// The creator's contacts (G7).
    pub contacts: &'a HashSet<UserId>,
    pub max_participants: usize,
}

/// Can someone of `adder_company` bring `person` into an external group? G5 (permission),
/// G6 (no LINE users), G7 (contacts first for other companies' users, when `contacts` is given;
/// an admin adding through the admin API needs none).
fn check_group_candidate(
    adder_company: &CompanyId,
    person: &Person,
    contacts: Option<&HashSet<UserId>>,
) -> ApiResult<()> {
    if person.user.kind == UserKind::Line {
        return Err(ApiError::new(
            ErrorCode::LineUserNotAllowed,
            format!(
                "{} is a LINE user; LINE users cannot join external groups",
                person.user.id
            ),
        ));
    }
    if let Some(contacts) = contacts {
        if person.user.company != *adder_company && !contacts.contains(&person.user.id) {
            return Err(ApiError::new(
                ErrorCode::NotInContacts,
                format!("{} is not in your contacts; add them first", person.user.id),
            ));
        }
    }
    if !person.permitted {
        return Err(ApiError::new(
            ErrorCode::NoExternalPermission,
            format!("{} does not hold external permission", person.user.id),
        ));
    }
    Ok(())
}

/// G5–G7 for users to add to an external group: those who may join, and those left out for
/// lacking external permission (any other refusal is an error). Users for whom `skip` holds
/// (already in, or the adder) are passed over.
fn admit(
    adder_company: &CompanyId,
    ids: &[UserId],
    skip: impl Fn(&UserId) -> bool,
    people: &HashMap<UserId, Person>,
    contacts: Option<&HashSet<UserId>>,
) -> ApiResult<(BTreeSet<UserId>, Vec<LeftOut>)> {
    let mut admitted = BTreeSet::new();
    let mut left_out: Vec<LeftOut> = Vec::new();
    for id in ids {
        if skip(id) || admitted.contains(id) || left_out.iter().any(|l| l.user == *id) {
            continue;
        }
        let p = people
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
        match check_group_candidate(adder_company, p, contacts) {
            Ok(()) => {
                admitted.insert(id.clone());
            }
            // G5: left out automatically, and told.
            Err(e) if e.code == ErrorCode::NoExternalPermission => left_out.push(LeftOut {
                user: id.clone(),
                reason: ErrorCode::NoExternalPermission,
            }),
            Err(e) => return Err(e),
        }
    }
    Ok((admitted, left_out))
}

/// G1 (create from contacts, "add the master as a member"), G4, G5, G6, G7.
pub fn plan_group(req: &GroupRequest<'_>) -> ApiResult<Plan> {
    let creator = &req.creator.user;
    if req.group_creation == GroupCreation::AdminsOnly {
        return Err(ApiError::new(
            ErrorCode::GroupCreationNotAllowed,
            "your company lets only admins create groups",
        ));
    }
    if !req.creator.permitted {
        return Err(ApiError::new(
            ErrorCode::NoExternalPermission,
            "you need external permission to create an external group",
        ));
    }
    let name = check_name(req.name)?;
    check_description(req.description)?;
    if req.members.len() + req.masters.len() > req.max_participants {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {} participants per request", req.max_participants),
        ));
    }
    let lookup = |id: &UserId| -> ApiResult<&Person> {
        req.people
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("user {id}")))
    };

    let mut masters = BTreeSet::from([creator.id.clone()]);
    for id in req.masters {
        if *id == creator.id {
            continue;
        }
        // G5: a master must hold external permission — an error, never a silent drop.
        check_group_candidate(&creator.company, lookup(id)?, Some(req.contacts))?;
        masters.insert(id.clone());
    }

    let mut members = BTreeSet::new();
    if req.add_self_as_member {
        members.insert(creator.id.clone());
    }
    let (admitted, left_out) = admit(
        &creator.company,
        req.members,
        |id| *id == creator.id,
        req.people,
        Some(req.contacts),
    )?;
    members.extend(admitted);
    Ok(Plan {
        name,
        description: req.description.to_owned(),
        members: members.into_iter().collect(),
        masters: masters.into_iter().collect(),
        left_out,
    })
}

/// G3: a company admin creates an external group owned by their company, choosing its masters
/// (at least one, each holding external permission) and members (those without permission left
/// out). An admin needs no contacts (G7 binds users).
pub fn plan_admin_group(
    owner: &CompanyId,
    name: &str,
    description: &str,
    masters: &[UserId],
    members: &[UserId],
    people: &HashMap<UserId, Person>,
    max_participants: usize,
) -> ApiResult<Plan> {
    let name = check_name(name)?;
    check_description(description)?;
    if masters.len() + members.len() > max_participants {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {max_participants} participants per request"),
        ));
    }
    if masters.is_empty() {
        return Err(ApiError::invalid("a group needs at least one master (G10)"));
    }
    let lookup = |id: &UserId| -> ApiResult<&Person> {
        people
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("user {id}")))
    };
    let mut master_set = BTreeSet::new();
    for id in masters {
        check_group_candidate(owner, lookup(id)?, None)?;
        master_set.insert(id.clone());
    }
    let (member_set, left_out) = admit(owner, members, |_| false, people, None)?;
    Ok(Plan {
        name,
        description: description.to_owned(),
        members: member_set.into_iter().collect(),
        masters: master_set.into_iter().collect(),
        left_out,
    })
}

/// G20: a company cannot own more groups than its `max_groups`.
pub fn check_group_count(owned: u64, settings: &CompanySettings) -> ApiResult<()> {
    if owned >= settings.max_groups {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            group_limit_message(settings.max_groups),
        ));
    }
    Ok(())
}

/// What a creation past G20's limit is told.
pub fn group_limit_message(max: u64) -> String {
    format!("the company owns its maximum of {max} groups")
}

/// R1: a general room of the creator and `members`. Colleagues always; other companies' WORKS
/// users when both sides hold external permission; LINE users always. Those who do not qualify
/// are left out and told.
pub fn plan_room(
    creator: &Person,
    name: &str,
    members: &[UserId],
    people: &HashMap<UserId, Person>,
    max_participants: usize,
) -> ApiResult<Plan> {
    if members.len() > max_participants {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("at most {max_participants} participants per request"),
        ));
    }
    let n = name.trim().chars().count();
    if n > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    let mut chosen = BTreeSet::from([creator.user.id.clone()]);
    let mut left_out = Vec::new();
    for id in members {
        if chosen.contains(id) || left_out.iter().any(|l: &LeftOut| l.user == *id) {
            continue;
        }
        let Some(p) = people.get(id) else {
            return Err(ApiError::not_found(format!("user {id}")));
        };
        let external = p.user.company != creator.user.company;
        let allowed = p.user.active
            && (!external || p.user.kind == UserKind::Line || (creator.permitted && p.permitted));
        if allowed {
            chosen.insert(id.clone());
        } else {
            left_out.push(LeftOut {
                user: id.clone(),
                reason: ErrorCode::NoExternalPermission,
            });
        }
    }
    if chosen.len() < 2 {
        return Err(ApiError::invalid(
            "a room needs at least one other participant who may join",
        ));
    }
    Ok(Plan {
        name: name.trim().to_owned(),
        description: String::new(),
        members: chosen.into_iter().collect(),
        masters: Vec::new(),
        left_out,
    })
}

/// M1 and G18: may `user` post `text` with `client_msg_id` in `room`?
pub fn check_post(
    room: &RoomRecord,
    user: &UserId,
    client_msg_id: &str,
    text: &str,
) -> ApiResult<()> {
    check_member(room, user)?;
    if room.kind == RoomKind::Group && !room.features.message {
        return Err(ApiError::new(
            ErrorCode::FeatureDisabled,
            "messages are switched off in this group",
        ));
    }
    let id_chars = client_msg_id.chars().count();
    if id_chars == 0 || id_chars > MAX_CLIENT_MSG_ID_CHARS {
        return Err(ApiError::invalid(format!(
            "client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"
        )));
    }
    let n = text.chars().count();
    if text.trim().is_empty() || n > MAX_TEXT_CHARS {
        return Err(ApiError::invalid(format!(
            "text must be 1 to {MAX_TEXT_CHARS} characters and not blank (got {n})"
        )));
    }
    Ok(())
}

/// M1: mentions name members of the room.
pub fn check_mentions(room: &RoomRecord, mentions: &[UserId]) -> ApiResult<()> {
    if mentions.len() > 100 {
        return Err(ApiError::invalid("at most 100 mentions per message"));
    }
    match mentions
        .iter()
        .find(|u| room.members.binary_search(u).is_err())
    {
        Some(u) => Err(ApiError::invalid(format!(
            "{u} is not a member of this room"
        ))),
        None => Ok(()),
    }
}

/// G8: only members may see a room; to anyone else it does not exist — except a master who is
/// not a member, who knows the group and is told so.
pub fn check_member(room: &RoomRecord, user: &UserId) -> ApiResult<()> {
    if room.members.binary_search(user).is_ok() {
        return Ok(());
    }
    if room.masters.binary_search(user).is_ok() {
        return Err(ApiError::new(
            ErrorCode::NotMember,
            "you are a master of this group but not a member",
        ));
    }
    Err(ApiError::not_found(format!("room {}", room.id)))
}

/// Who asks for a room change.
#[derive(Clone, Debug)]
pub enum Actor {
    /// A signed-in user.
    User(Person),
    /// A company admin, through the admin API.
    Admin(CompanyId),
    /// The server enforcing a company's policy (G13).
    Policy(CompanyId),
}

impl Actor {
    /// The author written in the log: the user, or `#admin@company` / `#policy@company` (`#`
    /// never appears in a login, so these never collide with a user).
    pub fn id(&self) -> UserId {
        match self {
            Actor::User(p) => p.user.id.clone(),
            Actor::Admin(c) => UserId(format!("#admin@{c}")),
            Actor::Policy(c) => UserId(format!("#policy@{c}")),
        }
    }
}

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

fn is_member(room: &RoomRecord, u: &UserId) -> bool {
    room.members.binary_search(u).is_ok()
}

fn is_master(room: &RoomRecord, u: &UserId) -> bool {
    room.masters.binary_search(u).is_ok()
}

fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, msg)
}

/// G9: masters manage a group; the owner company's admins too. Everyone else is told the group
/// does not exist (G8), except members, who know it and are told they are not masters.
pub fn check_manager(room: &RoomRecord, actor: &Actor) -> ApiResult<()> {
    match actor {
        Actor::User(p) if is_master(room, &p.user.id) => Ok(()),
        Actor::User(p) if is_member(room, &p.user.id) => {
            Err(forbidden("only a master of this group can do this"))
        }
        Actor::Admin(c) if *c == room.owner_company => Ok(()),
        Actor::Policy(_) => Err(forbidden("policy only removes members")),
        _ => Err(ApiError::not_found(format!("room {}", room.id))),
    }
}

fn person<'a>(ctx: &'a Context, id: &UserId) -> ApiResult<&'a Person> {
    ctx.people
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))
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

fn decide_group(
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
fn remove_member(room: &RoomRecord, actor: &Actor, target: &UserId) -> ApiResult<Decision> {
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
fn add_masters(
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
fn update_group(
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
fn join(room: &RoomRecord, actor: &Actor, token: &str, ctx: &Context) -> ApiResult<Decision> {
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
fn single(entry: EventBody) -> Decision {
    Decision {
        entries: vec![entry],
        left_out: Vec::new(),
    }
}

fn decide_general(
    room: &RoomRecord,
    actor: &Actor,
    change: &Change,
    ctx: &Context,
) -> ApiResult<Decision> {
    let Actor::User(me) = actor else {
        return Err(forbidden("general rooms are managed by their participants"));
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
fn may_join_general(inviter: &Person, p: &Person) -> bool {
    p.user.active
        && (p.user.company == inviter.user.company
            || p.user.kind == UserKind::Line
            || (inviter.permitted && p.permitted))
}

/// G2: a participant converts a general room with at least one external WORKS user into an
/// external group, in place; they become its master; LINE users and those without external
/// permission are left out.
fn decide_convert(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crossroom_protocol::{CompanyId, Features, RoomId};

    fn person(login: &str, company: &str, kind: UserKind, permitted: bool) -> Person {
        Person {
            user: User {
                id: UserId(format!("{login}@{company}")),
                company: CompanyId::from(company),
                name: login.into(),
                email: String::new(),
                kind,
                active: true,
                external_granted: permitted,
                tokens_valid_after: 0,
            },
            permitted,
        }
    }

    struct World {
        creator: Person,
        people: HashMap<UserId, Person>,
        contacts: HashSet<UserId>,
    }

    fn world() -> World {
        let creator = person("alice", "acme.example", UserKind::Works, true);
        let all = [
            person("bob", "acme.example", UserKind::Works, true),
            person("nora", "acme.example", UserKind::Works, false),
            person("carol", "globex.example", UserKind::Works, true),
            person("dave", "globex.example", UserKind::Works, false),
            person("erin", "globex.example", UserKind::Line, false),
            person("zed", "globex.example", UserKind::Works, true),
        ];
        let people = all.into_iter().map(|p| (p.user.id.clone(), p)).collect();
        let contacts = [
            "carol@globex.example",
            "dave@globex.example",
            "erin@globex.example",
        ]
        .into_iter()
        .map(UserId::from)
        .collect();
        World {
            creator,
            people,
            contacts,
        }
    }

    fn ids(v: &[&str]) -> Vec<UserId> {
        v.iter().map(|s| UserId::from(*s)).collect()
    }

    fn group<'a>(w: &'a World, members: &'a [UserId], masters: &'a [UserId]) -> GroupRequest<'a> {
        GroupRequest {
            creator: &w.creator,
            group_creation: GroupCreation::AlsoMembers,
            name: "  Launch  ",
            description: "",
            members,
            masters,
            add_self_as_member: true,
            people: &w.people,
            contacts: &w.contacts,
            max_participants: 100,
        }
    }

    #[test]
    fn g1_creator_is_master_and_member_by_default() {
        let w = world();
        let m = ids(&["bob@acme.example", "carol@globex.example"]);
        let plan = plan_group(&group(&w, &m, &[])).expect("ok");
        assert_eq!(plan.name, "Launch");
        assert_eq!(plan.masters, ids(&["alice@acme.example"]));
        assert_eq!(
            plan.members,
            ids(&[
                "alice@acme.example",
                "bob@acme.example",
                "carol@globex.example"
            ])
        );
    }

    #[test]
    fn g1_master_need_not_be_a_member() {
        let w = world();
        let m = ids(&["carol@globex.example"]);
        let mut req = group(&w, &m, &[]);
        req.add_self_as_member = false;
        let plan = plan_group(&req).expect("ok");
        assert_eq!(plan.masters, ids(&["alice@acme.example"]));
        assert_eq!(plan.members, ids(&["carol@globex.example"]));
    }

    #[test]
    fn g1_creator_needs_permission_and_group_creation() {
        let mut w = world();
        w.creator.permitted = false;
        let err = plan_group(&group(&w, &[], &[])).expect_err("refused");
        assert_eq!(err.code, ErrorCode::NoExternalPermission);
        let w = world();
        let mut req = group(&w, &[], &[]);
        req.group_creation = GroupCreation::AdminsOnly;
        assert_eq!(
            plan_group(&req).expect_err("refused").code,
            ErrorCode::GroupCreationNotAllowed
        );
    }

    #[test]
    fn g4_name_and_description_limits_count_characters() {
        assert!(check_name("   ").is_err());
        assert!(check_name(&"é".repeat(100)).is_ok());
        assert!(check_name(&"é".repeat(101)).is_err());
        assert_eq!(check_name("  x ").expect("ok"), "x");
        assert!(check_description(&"字".repeat(300)).is_ok());
        assert!(check_description(&"字".repeat(301)).is_err());
        let w = world();
        let mut req = group(&w, &[], &[]);
        req.name = "";
        assert_eq!(
            plan_group(&req).expect_err("bad").code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn g5_members_without_permission_are_left_out_and_listed() {
        let w = world();
        let m = ids(&[
            "nora@acme.example",
            "dave@globex.example",
            "carol@globex.example",
        ]);
        let plan = plan_group(&group(&w, &m, &[])).expect("ok");
        assert_eq!(
            plan.members,
            ids(&["alice@acme.example", "carol@globex.example"])
        );
        assert_eq!(
            plan.left_out
                .iter()
                .map(|l| l.user.clone())
                .collect::<Vec<_>>(),
            ids(&["nora@acme.example", "dave@globex.example"])
        );
        assert!(plan
            .left_out
            .iter()
            .all(|l| l.reason == ErrorCode::NoExternalPermission));
    }

    #[test]
    fn g5_a_master_without_permission_is_an_error() {
        let w = world();
        let masters = ids(&["nora@acme.example"]);
        let err = plan_group(&group(&w, &[], &masters)).expect_err("refused");
        assert_eq!(err.code, ErrorCode::NoExternalPermission);
    }

    #[test]
    fn g6_line_users_are_refused() {
        let w = world();
        let m = ids(&["erin@globex.example"]);
        assert_eq!(
            plan_group(&group(&w, &m, &[])).expect_err("refused").code,
            ErrorCode::LineUserNotAllowed
        );
        assert_eq!(
            plan_group(&group(&w, &[], &m)).expect_err("refused").code,
            ErrorCode::LineUserNotAllowed
        );
    }

    #[test]
    fn g7_external_users_must_be_contacts_colleagues_need_not() {
        let w = world();
        let m = ids(&["zed@globex.example"]);
        assert_eq!(
            plan_group(&group(&w, &m, &[])).expect_err("refused").code,
            ErrorCode::NotInContacts
        );
        let m = ids(&["bob@acme.example"]);
        assert!(plan_group(&group(&w, &m, &[])).is_ok());
    }

    #[test]
    fn unknown_users_are_not_found() {
        let w = world();
        let m = ids(&["ghost@acme.example"]);
        assert_eq!(
            plan_group(&group(&w, &m, &[])).expect_err("refused").code,
            ErrorCode::NotFound
        );
    }

    #[test]
    fn participant_count_is_limited() {
        let w = world();
        let m = ids(&["bob@acme.example", "carol@globex.example"]);
        let mut req = group(&w, &m, &[]);
        req.max_participants = 1;
        assert_eq!(
            plan_group(&req).expect_err("refused").code,
            ErrorCode::LimitExceeded
        );
    }

    #[test]
    fn r1_general_room_takes_line_users_and_permitted_externals() {
        let w = world();
        let m = ids(&[
            "bob@acme.example",
            "erin@globex.example",
            "carol@globex.example",
            "dave@globex.example",
        ]);
        let plan = plan_room(&w.creator, "chat", &m, &w.people, 100).expect("ok");
        assert_eq!(
            plan.members,
            ids(&[
                "alice@acme.example",
                "bob@acme.example",
                "carol@globex.example",
                "erin@globex.example"
            ])
        );
        assert_eq!(plan.left_out.len(), 1);
        assert!(plan.masters.is_empty());
        let err = plan_room(
            &w.creator,
            "x",
            &ids(&["dave@globex.example"]),
            &w.people,
            100,
        )
        .expect_err("nobody left");
        assert_eq!(err.code, ErrorCode::InvalidArgument);
    }

    fn room(members: &[&str], masters: &[&str], features: Features) -> RoomRecord {
        RoomRecord {
            id: RoomId::from("r_1"),
            kind: RoomKind::Group,
            name: "n".into(),
            description: String::new(),
            owner_company: "acme.example".into(),
            created_by: "alice@acme.example".into(),
            created_at: 0,
            features,
            masters: ids(masters),
            members: ids(members),
            epoch: 1,
            head: 1,
            version: 0,
            converted_from: None,
            image: None,
            member_since: Default::default(),
        }
    }

    #[test]
    fn m1_post_limits() {
        let r = room(&["a@x.example"], &["a@x.example"], Features::default());
        let a = UserId::from("a@x.example");
        assert!(check_post(&r, &a, "c1", "hello").is_ok());
        assert!(check_post(&r, &a, "c1", &"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(check_post(&r, &a, "c1", &"é".repeat(MAX_TEXT_CHARS + 1)).is_err());
        assert!(check_post(&r, &a, "c1", "   ").is_err());
        assert!(check_post(&r, &a, "", "x").is_err());
        assert!(check_post(&r, &a, &"c".repeat(65), "x").is_err());
    }

    #[test]
    fn g8_non_members_see_not_found_masters_see_not_member() {
        let r = room(&["a@x.example"], &["m@x.example"], Features::default());
        let e = check_post(&r, &"z@y.example".into(), "c", "x").expect_err("refused");
        assert_eq!(e.code, ErrorCode::NotFound);
        let e = check_post(&r, &"m@x.example".into(), "c", "x").expect_err("refused");
        assert_eq!(e.code, ErrorCode::NotMember);
    }

    #[test]
    fn g18_message_switch_off_refuses_posts() {
        let r = room(
            &["a@x.example"],
            &["a@x.example"],
            Features {
                message: false,
                ..Default::default()
            },
        );
        let e = check_post(&r, &"a@x.example".into(), "c", "x").expect_err("refused");
        assert_eq!(e.code, ErrorCode::FeatureDisabled);
    }

    // ---- changes -------------------------------------------------------------------------

    fn ctx(w: &World) -> Context {
        Context {
            people: w.people.clone(),
            contacts: w.contacts.clone(),
            owner: CompanySettings::default(),
            actor_company: Some(CompanySettings::default()),
            owned_groups: 0,
            max_participants: 100,
            invite: None,
            now_secs: 1000,
        }
    }

    fn group_room(members: &[&str], masters: &[&str]) -> RoomRecord {
        let mut r = room(members, masters, Features::default());
        r.members.sort();
        r.masters.sort();
        r
    }

    fn user_actor(w: &World, id: &str) -> Actor {
        let id = UserId::from(id);
        match w.people.get(&id) {
            Some(p) => Actor::User(p.clone()),
            None => Actor::User(w.creator.clone()),
        }
    }

    #[test]
    fn g9_only_masters_and_owner_admins_manage() {
        let w = world();
        let r = group_room(
            &["alice@acme.example", "bob@acme.example"],
            &["alice@acme.example"],
        );
        let add = Change::AddMembers(ids(&["carol@globex.example"]));
        let d = decide(&r, &Actor::User(w.creator.clone()), &add, &ctx(&w)).expect("master adds");
        assert_eq!(
            d.entries,
            vec![EventBody::MembersAdded {
                users: ids(&["carol@globex.example"])
            }]
        );
        let bob = user_actor(&w, "bob@acme.example");
        assert_eq!(
            decide(&r, &bob, &add, &ctx(&w)).expect_err("member").code,
            ErrorCode::Forbidden
        );
        let zed = user_actor(&w, "zed@globex.example");
        assert_eq!(
            decide(&r, &zed, &add, &ctx(&w)).expect_err("stranger").code,
            ErrorCode::NotFound
        );
        let owner = Actor::Admin("acme.example".into());
        assert!(decide(&r, &owner, &add, &ctx(&w)).is_ok());
        let other = Actor::Admin("globex.example".into());
        assert_eq!(
            decide(&r, &other, &add, &ctx(&w))
                .expect_err("not owner")
                .code,
            ErrorCode::NotFound
        );
    }

    #[test]
    fn g9_settings_need_the_owner_switch_for_masters_not_admins() {
        let w = world();
        let r = group_room(&["alice@acme.example"], &["alice@acme.example"]);
        let upd = Change::Update {
            name: Some(" New ".into()),
            description: None,
            features: None,
        };
        let mut c = ctx(&w);
        let d = decide(&r, &Actor::User(w.creator.clone()), &upd, &c).expect("allowed");
        assert_eq!(
            d.entries,
            vec![EventBody::GroupUpdated {
                name: Some("New".into()),
                description: None,
                features: None,
                image: None
            }]
        );
        c.owner.masters_can_change_settings = false;
        assert_eq!(
            decide(&r, &Actor::User(w.creator.clone()), &upd, &c)
                .expect_err("off")
                .code,
            ErrorCode::Forbidden
        );
        assert!(decide(&r, &Actor::Admin("acme.example".into()), &upd, &c).is_ok());
    }

    #[test]
    fn g10_the_last_master_stays() {
        let w = world();
        let r = group_room(
            &["alice@acme.example", "bob@acme.example"],
            &["alice@acme.example"],
        );
        let me = Actor::User(w.creator.clone());
        for ch in [
            Change::RemoveMember("alice@acme.example".into()),
            Change::RemoveMaster("alice@acme.example".into()),
        ] {
            assert_eq!(
                decide(&r, &me, &ch, &ctx(&w)).expect_err("last").code,
                ErrorCode::LastMaster
            );
        }
        let r2 = group_room(
            &["alice@acme.example", "bob@acme.example"],
            &["alice@acme.example", "bob@acme.example"],
        );
        assert!(decide(
            &r2,
            &me,
            &Change::RemoveMaster("alice@acme.example".into()),
            &ctx(&w)
        )
        .is_ok());
    }

    #[test]
    fn g11_members_cannot_leave_a_group_but_can_leave_a_room() {
        let w = world();
        let r = group_room(
            &["alice@acme.example", "bob@acme.example"],
            &["alice@acme.example"],
        );
        let bob = user_actor(&w, "bob@acme.example");
        assert_eq!(
            decide(&r, &bob, &Change::Leave, &ctx(&w))
                .expect_err("no")
                .code,
            ErrorCode::CannotLeave
        );
        let mut general = r.clone();
        general.kind = RoomKind::Room;
        general.masters.clear();
        let d = decide(&general, &bob, &Change::Leave, &ctx(&w)).expect("leaves");
        assert_eq!(
            d.entries,
            vec![EventBody::MemberRemoved {
                user: "bob@acme.example".into(),
                reason: RemovalReason::Left
            }]
        );
    }

    #[test]
    fn g13_policy_removes_its_own_users_even_the_last_master() {
        let w = world();
        let r = group_room(
            &["alice@acme.example", "carol@globex.example"],
            &["alice@acme.example"],
        );
        let acme = Actor::Policy("acme.example".into());
        let d = decide(
            &r,
            &acme,
            &Change::RemoveMember("alice@acme.example".into()),
            &ctx(&w),
        )
        .expect("policy");
        assert_eq!(
            d.entries,
            vec![EventBody::MemberRemoved {
                user: "alice@acme.example".into(),
                reason: RemovalReason::Policy
            }]
        );
        assert_eq!(
            decide(
                &r,
                &acme,
                &Change::RemoveMember("carol@globex.example".into()),
                &ctx(&w)
            )
            .expect_err("not theirs")
            .code,
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn g2_conversion_keeps_permitted_works_users_and_is_irreversible() {
        let w = world();
        let mut r = group_room(
            &[
                "alice@acme.example",
                "bob@acme.example",
                "carol@globex.example",
                "erin@globex.example",
                "nora@acme.example",
            ],
            &[],
        );
        r.kind = RoomKind::Room;
        let me = Actor::User(w.creator.clone());
        let d = decide(&r, &me, &Change::Convert { name: "G".into() }, &ctx(&w)).expect("converts");
        let EventBody::Converted {
            masters,
            members,
            left_out,
            ..
        } = &d.entries[0]
        else {
            panic!("{d:?}")
        };
        assert_eq!(masters, &ids(&["alice@acme.example"]));
        assert_eq!(
            members,
            &ids(&[
                "alice@acme.example",
                "bob@acme.example",
                "carol@globex.example"
            ])
        );
        let reasons: Vec<_> = left_out
            .iter()
            .map(|l| (l.user.as_str(), l.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("erin@globex.example", ErrorCode::LineUserNotAllowed),
                ("nora@acme.example", ErrorCode::NoExternalPermission)
            ]
        );
        let mut converted = r.clone();
        apply(&mut converted, &"alice@acme.example".into(), &d.entries[0]);
        assert_eq!(converted.kind, RoomKind::Group);
        assert_eq!(converted.converted_from, Some(converted.id.clone()));
        let again = decide(
            &converted,
            &me,
            &Change::Convert { name: "G".into() },
            &ctx(&w),
        );
        assert_eq!(
            again.expect_err("irreversible").code,
            ErrorCode::InvalidArgument
        );
        // Without an external WORKS user there is nothing to convert.
        let mut internal = group_room(&["alice@acme.example", "bob@acme.example"], &[]);
        internal.kind = RoomKind::Room;
        assert!(decide(
            &internal,
            &me,
            &Change::Convert { name: "G".into() },
            &ctx(&w)
        )
        .is_err());
    }

    #[test]
    fn g14_join_needs_a_valid_link_and_permission() {
        let w = world();
        let r = group_room(&["alice@acme.example"], &["alice@acme.example"]);
        let carol = user_actor(&w, "carol@globex.example");
        let join = Change::Join { token: "t".into() };
        let mut c = ctx(&w);
        assert_eq!(
            decide(&r, &carol, &join, &c).expect_err("no link").code,
            ErrorCode::NotFound
        );
        c.invite = Some(crate::domain::records::Invite {
            token: "t".into(),
            expires_at: Some(999),
            barred: vec![],
        });
        assert_eq!(
            decide(&r, &carol, &join, &c).expect_err("expired").code,
            ErrorCode::NotFound
        );
        c.invite = Some(crate::domain::records::Invite {
            token: "t".into(),
            expires_at: None,
            barred: vec!["carol@globex.example".into()],
        });
        assert_eq!(
            decide(&r, &carol, &join, &c).expect_err("barred").code,
            ErrorCode::Forbidden,
            "removed by a master: the same link does not readmit her"
        );
        c.invite = Some(crate::domain::records::Invite {
            token: "t".into(),
            expires_at: None,
            barred: vec![],
        });
        assert!(decide(&r, &carol, &join, &c).is_ok());
        let erin = user_actor(&w, "erin@globex.example");
        assert_eq!(
            decide(&r, &erin, &join, &c).expect_err("line").code,
            ErrorCode::LineUserNotAllowed
        );
        let dave = user_actor(&w, "dave@globex.example");
        assert_eq!(
            decide(&r, &dave, &join, &c)
                .expect_err("no permission")
                .code,
            ErrorCode::NoExternalPermission
        );
    }

    #[test]
    fn g3_admin_groups_need_a_permitted_master() {
        let w = world();
        let plan = plan_admin_group(
            &"acme.example".into(),
            "Admin made",
            "",
            &ids(&["bob@acme.example"]),
            &ids(&["carol@globex.example", "dave@globex.example"]),
            &w.people,
            100,
        )
        .expect("ok");
        assert_eq!(plan.masters, ids(&["bob@acme.example"]));
        assert_eq!(plan.members, ids(&["carol@globex.example"]));
        assert_eq!(plan.left_out.len(), 1);
        assert!(
            plan_admin_group(&"acme.example".into(), "x", "", &[], &[], &w.people, 100).is_err()
        );
        let e = plan_admin_group(
            &"acme.example".into(),
            "x",
            "",
            &ids(&["nora@acme.example"]),
            &[],
            &w.people,
            100,
        )
        .expect_err("no permission");
        assert_eq!(e.code, ErrorCode::NoExternalPermission);
    }

    #[test]
    fn g20_group_count_is_capped() {
        let s = CompanySettings {
            max_groups: 2,
            ..Default::default()
        };
        assert!(check_group_count(1, &s).is_ok());
        assert_eq!(
            check_group_count(2, &s).expect_err("full").code,
            ErrorCode::LimitExceeded
        );
    }
}
