//! The pure rules of rooms: plain functions over plain data, no I/O, each tested beside it and
//! named after the SPEC.md rule it enforces.

use crate::directory::{GroupCreation, User, UserKind};
use crate::error::{ApiError, ApiResult};
use crate::store::RoomRecord;
use crossroom_protocol::{ErrorCode, LeftOut, RoomKind, UserId};
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

/// Can `adder` bring `person` into an external group? G5 (permission), G6 (no LINE users),
/// G7 (contacts first for other companies' users).
fn check_group_candidate(
    adder: &User,
    person: &Person,
    contacts: &HashSet<UserId>,
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
    if person.user.company != adder.company && !contacts.contains(&person.user.id) {
        return Err(ApiError::new(
            ErrorCode::NotInContacts,
            format!("{} is not in your contacts; add them first", person.user.id),
        ));
    }
    if !person.permitted {
        return Err(ApiError::new(
            ErrorCode::NoExternalPermission,
            format!("{} does not hold external permission", person.user.id),
        ));
    }
    Ok(())
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
        check_group_candidate(creator, lookup(id)?, req.contacts)?;
        masters.insert(id.clone());
    }

    let mut members = BTreeSet::new();
    if req.add_self_as_member {
        members.insert(creator.id.clone());
    }
    let mut left_out = Vec::new();
    let mut seen = HashSet::new();
    for id in req.members {
        if *id == creator.id || !seen.insert(id) {
            continue;
        }
        match check_group_candidate(creator, lookup(id)?, req.contacts) {
            Ok(()) => {
                members.insert(id.clone());
            }
            // G5: members without permission are left out automatically, and told.
            Err(e) if e.code == ErrorCode::NoExternalPermission => left_out.push(LeftOut {
                user: id.clone(),
                reason: ErrorCode::NoExternalPermission,
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(Plan {
        name,
        description: req.description.to_owned(),
        members: members.into_iter().collect(),
        masters: masters.into_iter().collect(),
        left_out,
    })
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
}
