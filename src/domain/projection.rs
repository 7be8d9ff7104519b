//! The one projection of the room log: what a committed entry does to its room's state.
//!
//! The room actor keeps its copy of the room with it, and both stores persist what it computes —
//! the room's record, the membership rows (their indexes), the feature items, the rewritten
//! message of a recall, the files an entry frees, the audit record — instead of working any of it
//! out again in SQL or in a script. A rule about state is written here once.
//!
//! Two steps, because the room actor applies its own decisions to its copy at once (the next
//! command is decided against them) and learns their seq only when they commit:
//! [`rules::apply`] (membership and settings, at decision time) and [`seal`] (at commit: a join
//! takes effect at its own seq, the head and the state version move). [`project`] is both, for
//! an entry committed elsewhere and for the stores.

use super::features;
use super::records::{audit_of, changes_room, moves_version, NewAudit, RoomRecord};
use super::rules;
use crossroom_protocol::{Event, EventBody, Item, UserId};
use std::collections::BTreeSet;

/// What a committed entry changes besides the room's record itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projection {
    /// Whether the room's record (name, description, switches, image, kind, owner, members,
    /// masters) changed: the store rewrites it.
    pub room_changed: bool,
    /// The users whose membership the entry changed, as they now stand.
    pub members: Vec<Membership>,
    /// What the entry does to the room's feature items.
    pub item: ItemChange,
    /// The seq of a message the entry recalls; the store rewrites it with [`recalled`].
    pub recall: Option<u64>,
    /// Files whose records (and bytes) the entry frees by itself: a replaced profile image.
    /// A purge frees its files through [`purge`], a recall its attachments through
    /// [`recalled`].
    pub freed: Vec<String>,
    /// The audit record of an audited entry (G19), written with it.
    pub audit: Option<NewAudit>,
}

/// One user's standing in a room after an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub user: UserId,
    pub member: bool,
    pub master: bool,
    /// The seq from which the user sees the room's log (D4); `None` when not a member.
    pub since: Option<u64>,
}

/// What an entry does to the room's feature items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ItemChange {
    #[default]
    None,
    /// The item with this id becomes [`features::apply`] of its current state.
    Apply(u64),
    /// The folder item with this id goes, with everything below it ([`purge`]).
    Purge(u64),
}

/// Project committed `event` onto `room` (the state before it, which becomes the state after)
/// and say what else it changes.
pub fn project(room: &mut RoomRecord, event: &Event) -> Projection {
    let mut p = content(event);
    if let Some(fresh) = created(event, room.owner_company.clone()) {
        // A room's first entry makes it what it says.
        *room = fresh;
    }
    if changes_room(&event.body) {
        let affected = affected(room, &event.body);
        if let EventBody::GroupUpdated { image: Some(_), .. } = &event.body {
            // The replaced image's bytes are freed with it (G17).
            p.freed.extend(room.image.clone());
        }
        rules::apply(room, &event.author, &event.body);
        seal(room, event);
        p.room_changed = true;
        p.members = affected.into_iter().map(|u| standing(room, u)).collect();
        p.audit = audit_of(event, &room.owner_company);
    } else {
        seal(room, event);
    }
    p
}

/// What a content entry changes: its item, or the message it recalls. Needs no room.
pub fn content(event: &Event) -> Projection {
    let item = match (&event.body, features::target(event)) {
        (EventBody::ItemPurged { item }, _) => ItemChange::Purge(*item),
        (_, Some(id)) => ItemChange::Apply(id),
        (_, None) => ItemChange::None,
    };
    let recall = match &event.body {
        EventBody::MessageRecalled { message } => Some(*message),
        _ => None,
    };
    Projection {
        item,
        recall,
        ..Projection::default()
    }
}

/// The commit-time part of an entry already applied to `room` by [`rules::apply`]: the users it
/// added see the log from this entry on (D4) — or from its start while the group shares its
/// history — and the head and state version move to it.
pub fn seal(room: &mut RoomRecord, event: &Event) {
    if let EventBody::MembersAdded { users } = &event.body {
        let since = if room.features.share_history {
            1
        } else {
            event.seq
        };
        for u in users {
            if room.members.binary_search(u).is_ok() {
                room.member_since.entry(u.clone()).or_insert(since);
            }
        }
    }
    room.head = room.head.max(event.seq);
    if moves_version(&event.body) {
        room.version = room.version.max(event.seq);
    }
}

/// The room a `Created` entry starts, owned by `owner`: its creator, time and participants
/// from the entry, every member seeing the log from seq 1.
pub fn created(event: &Event, owner: crossroom_protocol::CompanyId) -> Option<RoomRecord> {
    let EventBody::Created {
        room_kind,
        name,
        description,
        masters,
        members,
        features,
    } = &event.body
    else {
        return None;
    };
    let sorted = |v: &Vec<UserId>| {
        let mut v = v.clone();
        v.sort();
        v.dedup();
        v
    };
    let members = sorted(members);
    Some(RoomRecord {
        id: event.room.clone(),
        kind: *room_kind,
        name: name.clone(),
        description: description.clone(),
        owner_company: owner,
        created_by: event.author.clone(),
        created_at: event.ts,
        features: *features,
        masters: sorted(masters),
        member_since: members.iter().map(|u| (u.clone(), event.seq)).collect(),
        members,
        epoch: event.epoch,
        head: event.seq,
        version: event.seq,
        converted_from: None,
        image: None,
    })
}

fn standing(room: &RoomRecord, user: UserId) -> Membership {
    let member = room.members.binary_search(&user).is_ok();
    Membership {
        master: room.masters.binary_search(&user).is_ok(),
        since: if member {
            room.member_since.get(&user).copied()
        } else {
            None
        },
        member,
        user,
    }
}

/// The users whose standing an entry may change: those it names, and for a conversion everyone
/// who was in the room before it.
fn affected(room: &RoomRecord, body: &EventBody) -> BTreeSet<UserId> {
    let mut out: BTreeSet<UserId> = match body {
        EventBody::Created {
            members, masters, ..
        } => members.iter().chain(masters).cloned().collect(),
        EventBody::MembersAdded { users } | EventBody::MastersAdded { users } => {
            users.iter().cloned().collect()
        }
        EventBody::MemberRemoved { user, .. } | EventBody::MasterRemoved { user } => {
            BTreeSet::from([user.clone()])
        }
        EventBody::Converted {
            members, masters, ..
        } => members.iter().chain(masters).cloned().collect(),
        _ => BTreeSet::new(),
    };
    if matches!(body, EventBody::Converted { .. }) {
        out.extend(room.members.iter().chain(&room.masters).cloned());
    }
    out
}

/// A purge of `root` (F1): the ids of the items that go (the root and everything below it) and
/// the files whose bytes go with them.
pub fn purge(items: &[Item], root: u64) -> (Vec<u64>, Vec<String>) {
    let gone = features::subtree(items, root);
    let files = items
        .iter()
        .filter(|i| gone.contains(&i.id()))
        .filter_map(|i| match i {
            Item::File(f) => Some(f.file.clone()),
            _ => None,
        })
        .collect();
    (gone, files)
}

/// A recalled message (M1): it keeps its place and its client id, and loses its text,
/// attachments and mentions. Returns the new body and the attachments whose bytes are freed;
/// `None` when `body` is no message.
pub fn recalled(body: EventBody) -> Option<(EventBody, Vec<String>)> {
    let EventBody::Message {
        client_msg_id,
        attachments,
        ..
    } = body
    else {
        return None;
    };
    let freed = attachments.into_iter().map(|a| a.file).collect();
    let placeholder = EventBody::Message {
        client_msg_id,
        text: String::new(),
        attachments: Vec::new(),
        mentions: Vec::new(),
        recalled: true,
    };
    Some((placeholder, freed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossroom_protocol::{Attachment, Features, RemovalReason, RoomKind};

    fn at(seq: u64, author: &str, body: EventBody) -> Event {
        Event {
            room: "r_1".into(),
            epoch: 7,
            seq,
            ts: seq as i64 * 10,
            author: author.into(),
            body,
        }
    }

    fn start() -> RoomRecord {
        let first = at(
            1,
            "a@acme.example",
            EventBody::Created {
                room_kind: RoomKind::Group,
                name: "Plan".into(),
                description: String::new(),
                masters: vec!["a@acme.example".into()],
                members: vec!["b@globex.example".into(), "a@acme.example".into()],
                features: Features::default(),
            },
        );
        created(&first, "acme.example".into()).expect("a created entry")
    }

    #[test]
    fn a_created_entry_starts_the_room_everyone_seeing_it_from_seq_1() {
        let r = start();
        assert_eq!(
            r.members,
            vec![UserId::from("a@acme.example"), "b@globex.example".into()]
        );
        assert_eq!(r.masters, vec![UserId::from("a@acme.example")]);
        assert_eq!(
            r.member_since.values().copied().collect::<Vec<_>>(),
            vec![1, 1]
        );
        assert_eq!((r.head, r.version, r.epoch), (1, 1, 7));
    }

    #[test]
    fn a_join_takes_effect_at_its_own_seq_and_a_removal_ends_it() {
        let mut r = start();
        let c: UserId = "c@acme.example".into();
        let p = project(
            &mut r,
            &at(
                4,
                "a@acme.example",
                EventBody::MembersAdded {
                    users: vec![c.clone()],
                },
            ),
        );
        assert_eq!(r.member_since.get(&c), Some(&4));
        assert_eq!((r.head, r.version), (4, 4));
        assert_eq!(
            p.members,
            vec![Membership {
                user: c.clone(),
                member: true,
                master: false,
                since: Some(4)
            }]
        );
        assert!(p.room_changed && p.audit.is_some());
        let p = project(
            &mut r,
            &at(
                5,
                "a@acme.example",
                EventBody::MemberRemoved {
                    user: c.clone(),
                    reason: RemovalReason::Removed,
                },
            ),
        );
        assert_eq!(r.member_since.get(&c), None);
        assert_eq!(p.members[0].since, None);
        assert!(!p.members[0].member);
    }

    #[test]
    fn decided_joins_are_sealed_at_commit_without_applying_twice() {
        let mut r = start();
        let c: UserId = "c@acme.example".into();
        let body = EventBody::MembersAdded {
            users: vec![c.clone()],
        };
        rules::apply(&mut r, &"a@acme.example".into(), &body);
        assert!(r.members.contains(&c), "a member as soon as decided");
        assert_eq!(
            r.member_since.get(&c),
            None,
            "who sees nothing until it commits"
        );
        seal(&mut r, &at(9, "a@acme.example", body));
        assert_eq!(r.member_since.get(&c), Some(&9));
    }

    #[test]
    fn a_replaced_image_is_freed_and_messages_only_move_the_head() {
        let mut r = start();
        r.image = Some("f_old".into());
        let p = project(
            &mut r,
            &at(
                2,
                "a@acme.example",
                EventBody::GroupUpdated {
                    name: None,
                    description: None,
                    features: None,
                    image: Some("f_new".into()),
                },
            ),
        );
        assert_eq!(p.freed, vec!["f_old".to_owned()]);
        assert_eq!(r.image.as_deref(), Some("f_new"));
        let p = project(
            &mut r,
            &at(
                3,
                "b@globex.example",
                EventBody::Message {
                    client_msg_id: "m".into(),
                    text: "hi".into(),
                    attachments: vec![],
                    mentions: vec![],
                    recalled: false,
                },
            ),
        );
        assert_eq!(p, Projection::default());
        assert_eq!(
            (r.head, r.version),
            (3, 2),
            "a message does not move the version"
        );
    }

    #[test]
    fn items_recalls_and_purges_are_said_without_the_room() {
        let note = at(3, "a@acme.example", EventBody::NoteDeleted { note: 2 });
        assert_eq!(content(&note).item, ItemChange::Apply(2));
        let purge_entry = at(4, "a@acme.example", EventBody::ItemPurged { item: 2 });
        assert_eq!(content(&purge_entry).item, ItemChange::Purge(2));
        let recall = at(
            5,
            "a@acme.example",
            EventBody::MessageRecalled { message: 3 },
        );
        assert_eq!(content(&recall).recall, Some(3));
        let (body, freed) = recalled(EventBody::Message {
            client_msg_id: "m".into(),
            text: "secret".into(),
            attachments: vec![Attachment {
                file: "f_1".into(),
                name: "a.txt".into(),
                size: 1,
                content_type: "text/plain".into(),
            }],
            mentions: vec![],
            recalled: false,
        })
        .expect("a message");
        assert_eq!(freed, vec!["f_1".to_owned()]);
        assert!(
            matches!(body, EventBody::Message { recalled: true, ref text, .. } if text.is_empty())
        );
        assert!(recalled(EventBody::Notice { text: "x".into() }).is_none());
    }
}
