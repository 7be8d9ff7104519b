//! The rules' unit tests, each named after the rule it proves.

use super::change::*;
use super::checks::*;
use super::create::*;
use crate::domain::directory::{CompanySettings, GroupCreation, User, UserKind};
use crate::domain::records::RoomRecord;
use crossroom_protocol::{CompanyId, ErrorCode, EventBody, RemovalReason, RoomKind, UserId};
use crossroom_protocol::{Features, RoomId};
use std::collections::{HashMap, HashSet};

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
    assert!(plan_admin_group(&"acme.example".into(), "x", "", &[], &[], &w.people, 100).is_err());
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

/// A2: a company deleting one of its people takes them out of a general room (reason `policy`);
/// it removes nobody of another company, nor anyone who is not in the room, and does nothing else
/// there.
#[test]
fn a2_policy_takes_a_deleted_user_out_of_general_rooms() {
    let w = world();
    let mut general = group_room(&["alice@acme.example", "carol@globex.example"], &[]);
    general.kind = RoomKind::Room;
    let globex = Actor::Policy("globex.example".into());
    let carol: UserId = "carol@globex.example".into();
    let d = decide(
        &general,
        &globex,
        &Change::RemoveMember(carol.clone()),
        &ctx(&w),
    )
    .expect("removed");
    assert_eq!(
        d.entries,
        vec![EventBody::MemberRemoved {
            user: carol,
            reason: RemovalReason::Policy
        }]
    );
    let alice: UserId = "alice@acme.example".into();
    let e =
        decide(&general, &globex, &Change::RemoveMember(alice), &ctx(&w)).expect_err("not theirs");
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = decide(&general, &globex, &Change::Leave, &ctx(&w)).expect_err("only removals");
    assert_eq!(e.code, ErrorCode::Forbidden);
}
