//! The features' unit tests: decisions, what entries do to items, recurrences.

use super::calendar::*;
use super::context::*;
use super::folder::*;
use super::*;
use crate::domain::records::RoomRecord;
use crossroom_protocol::{
    Action, CalendarEvent, CalendarFields, Completion, ErrorCode, Event, EventBody, FileItem,
    Folder, Frequency, Item, NoteFields, Occurrence, Recurrence, RoomKind, TaskFields, UserId,
};
use crossroom_protocol::{Features, RoomId};

fn room() -> RoomRecord {
    RoomRecord {
        id: RoomId::from("r"),
        kind: RoomKind::Group,
        name: "n".into(),
        description: String::new(),
        owner_company: "a.example".into(),
        created_by: "a@a.example".into(),
        created_at: 0,
        features: Features::default(),
        masters: vec!["m@a.example".into()],
        members: vec![
            "a@a.example".into(),
            "b@a.example".into(),
            "m@a.example".into(),
        ],
        epoch: 1,
        head: 10,
        version: 0,
        converted_from: None,
        image: None,
        member_since: Default::default(),
    }
}

fn ev(seq: u64, author: &str, body: EventBody) -> Event {
    Event {
        room: RoomId::from("r"),
        epoch: 1,
        seq,
        ts: seq as i64 * 1000,
        author: author.into(),
        body,
    }
}

fn a() -> UserId {
    "a@a.example".into()
}
fn b() -> UserId {
    "b@a.example".into()
}

fn note_fields(notify: bool) -> NoteFields {
    NoteFields {
        title: "Plan".into(),
        body: "body".into(),
        others_may_edit: false,
        notify,
        pinned: false,
    }
}

#[test]
fn n1_post_edit_delete_comment_like() {
    let r = room();
    let post = decide(
        &r,
        &a(),
        false,
        &Action::PostNote(note_fields(true)),
        &Context::default(),
    )
    .expect("post");
    assert_eq!(post.len(), 2, "with a notice");
    let mut item = apply(None, &ev(11, "a@a.example", post[0].clone()));
    let ctx = |item: &Option<Item>| Context {
        item: item.clone(),
        ..Default::default()
    };
    let edit = Action::EditNote {
        note: 11,
        title: Some("New".into()),
        body: None,
        others_may_edit: None,
        pinned: None,
    };
    assert_eq!(
        decide(&r, &b(), false, &edit, &ctx(&item))
            .expect_err("not author")
            .code,
        ErrorCode::Forbidden
    );
    let e = decide(&r, &a(), false, &edit, &ctx(&item)).expect("author edits");
    item = apply(item, &ev(12, "a@a.example", e[0].clone()));
    let c = decide(
        &r,
        &b(),
        false,
        &Action::CommentNote {
            note: 11,
            text: "hi".into(),
        },
        &ctx(&item),
    )
    .expect("comment");
    item = apply(item, &ev(13, "b@a.example", c[0].clone()));
    let l = decide(
        &r,
        &b(),
        false,
        &Action::LikeNote {
            note: 11,
            like: true,
        },
        &ctx(&item),
    )
    .expect("like");
    item = apply(item, &ev(14, "b@a.example", l[0].clone()));
    let Some(Item::Note(n)) = &item else { panic!() };
    assert_eq!(n.fields.title, "New");
    assert_eq!(n.comments.len(), 1);
    assert!(n.likes.contains(&b()));
    assert!(decide(
        &r,
        &b(),
        false,
        &Action::LikeNote {
            note: 11,
            like: true
        },
        &ctx(&item)
    )
    .expect("no-op")
    .is_empty());
    let del = Action::DeleteNote { note: 11 };
    assert!(decide(&r, &b(), false, &del, &ctx(&item)).is_err());
    assert!(
        decide(&r, &b(), true, &del, &ctx(&item)).is_ok(),
        "a master deletes"
    );
    assert!(decide(
        &r,
        &a(),
        false,
        &Action::PostNote(NoteFields {
            title: String::new(),
            ..note_fields(false)
        }),
        &Context::default()
    )
    .is_err());
    let too_long = NoteFields {
        body: "x".repeat(MAX_NOTE_BODY + 1),
        ..note_fields(false)
    };
    assert!(decide(
        &r,
        &a(),
        false,
        &Action::PostNote(too_long),
        &Context::default()
    )
    .is_err());
}

#[test]
fn g18_switched_off_features_refuse() {
    let mut r = room();
    r.features.note = false;
    r.features.task = false;
    let e = decide(
        &r,
        &a(),
        false,
        &Action::PostNote(note_fields(false)),
        &Context::default(),
    )
    .expect_err("off");
    assert_eq!(e.code, ErrorCode::FeatureDisabled);
    r.features.note = true;
    r.features.notifications = false;
    let post = decide(
        &r,
        &a(),
        false,
        &Action::PostNote(note_fields(true)),
        &Context::default(),
    )
    .expect("on");
    assert_eq!(post.len(), 1, "no notice when notifications are off");
}

#[test]
fn t1_completion_all_or_any() {
    let r = room();
    let fields = TaskFields {
        title: "Ship".into(),
        content: String::new(),
        due: None,
        category: String::new(),
        assignees: vec![a(), b()],
        completion: Completion::All,
    };
    let created = decide(
        &r,
        &"m@a.example".into(),
        true,
        &Action::CreateTask(fields.clone()),
        &Context::default(),
    )
    .expect("create");
    let mut item = apply(None, &ev(20, "m@a.example", created[0].clone()));
    item = apply(
        item,
        &ev(21, "a@a.example", EventBody::TaskCompleted { task: 20 }),
    );
    let Some(Item::Task(t)) = &item else { panic!() };
    assert!(!t.done, "all: one of two is not enough");
    item = apply(
        item,
        &ev(22, "b@a.example", EventBody::TaskCompleted { task: 20 }),
    );
    let Some(Item::Task(t)) = &item else { panic!() };
    assert!(t.done);
    let mut any = apply(
        None,
        &ev(
            30,
            "m@a.example",
            EventBody::TaskCreated {
                task: TaskFields {
                    completion: Completion::Any,
                    ..fields.clone()
                },
            },
        ),
    );
    any = apply(
        any,
        &ev(31, "a@a.example", EventBody::TaskCompleted { task: 30 }),
    );
    let Some(Item::Task(t)) = &any else { panic!() };
    assert!(t.done, "any: one is enough");
    let ctx = Context {
        item: any.clone(),
        ..Default::default()
    };
    assert!(
        decide(
            &r,
            &"m@a.example".into(),
            true,
            &Action::CompleteTask { task: 30 },
            &ctx
        )
        .is_err(),
        "not an assignee"
    );
    let outsider = TaskFields {
        assignees: vec!["z@z.example".into()],
        ..fields
    };
    assert!(
        decide(
            &r,
            &a(),
            false,
            &Action::CreateTask(outsider),
            &Context::default()
        )
        .is_err(),
        "assignees are members"
    );
}

#[test]
fn f1_trash_restore_purge_rules() {
    let r = room();
    let folder = apply(
        None,
        &ev(
            40,
            "a@a.example",
            EventBody::FolderCreated {
                parent: None,
                name: "Docs".into(),
                notify_on_new_file: true,
            },
        ),
    );
    let ctx = |item: &Option<Item>| Context {
        item: item.clone(),
        ..Default::default()
    };
    assert!(
        decide(&r, &a(), false, &Action::Purge { item: 40 }, &ctx(&folder)).is_err(),
        "only trashed items are purged"
    );
    let t = decide(&r, &a(), false, &Action::Trash { item: 40 }, &ctx(&folder)).expect("trash");
    let trashed = apply(folder, &ev(41, "a@a.example", t[0].clone()));
    assert!(
        decide(&r, &b(), false, &Action::Purge { item: 40 }, &ctx(&trashed)).is_err(),
        "not the deleter"
    );
    assert!(
        decide(&r, &b(), true, &Action::Purge { item: 40 }, &ctx(&trashed)).is_ok(),
        "a master"
    );
    assert!(
        decide(&r, &a(), false, &Action::Purge { item: 40 }, &ctx(&trashed)).is_ok(),
        "the deleter"
    );
    let restored = apply(
        trashed,
        &ev(42, "b@a.example", EventBody::ItemRestored { item: 40 }),
    );
    let Some(Item::Folder(f)) = &restored else {
        panic!()
    };
    assert!(f.trashed.is_none());
    let items = vec![
        restored.clone().expect("folder"),
        Item::Folder(Folder {
            id: 43,
            parent: Some(40),
            name: "Sub".into(),
            notify_on_new_file: false,
            created_by: a(),
            trashed: None,
        }),
        Item::File(FileItem {
            id: 44,
            file: "f".into(),
            folder: Some(43),
            name: "x".into(),
            size: 1,
            content_type: "t".into(),
            sha256: "s".into(),
            uploaded_by: a(),
            trashed: None,
        }),
        Item::File(FileItem {
            id: 45,
            file: "g".into(),
            folder: None,
            name: "y".into(),
            size: 1,
            content_type: "t".into(),
            sha256: "s".into(),
            uploaded_by: a(),
            trashed: None,
        }),
    ];
    let mut sub = subtree(&items, 40);
    sub.sort();
    assert_eq!(sub, vec![40, 43, 44]);
    assert!(decide(
        &r,
        &a(),
        false,
        &Action::CreateFolder {
            parent: None,
            name: "a/b".into(),
            notify_on_new_file: false
        },
        &Context::default()
    )
    .is_err());
}

#[test]
fn m1_recall_window_and_masters() {
    let r = room();
    let msg = ev(
        50,
        "a@a.example",
        EventBody::Message {
            client_msg_id: "c".into(),
            text: "t".into(),
            attachments: vec![],
            mentions: vec![],
            recalled: false,
        },
    );
    let ctx = |now| Context {
        message: Some(msg.clone()),
        recall_window_secs: 3600,
        now_ms: now,
        ..Default::default()
    };
    let within = 50_000 + 3_599_000;
    let after = 50_000 + 3_601_000;
    assert!(decide(
        &r,
        &a(),
        false,
        &Action::Recall { message: 50 },
        &ctx(within)
    )
    .is_ok());
    assert_eq!(
        decide(
            &r,
            &a(),
            false,
            &Action::Recall { message: 50 },
            &ctx(after)
        )
        .expect_err("late")
        .code,
        ErrorCode::Forbidden
    );
    assert!(
        decide(
            &r,
            &"m@a.example".into(),
            true,
            &Action::Recall { message: 50 },
            &ctx(after * 10)
        )
        .is_ok(),
        "masters at any time"
    );
    assert!(
        decide(
            &r,
            &b(),
            false,
            &Action::Recall { message: 50 },
            &ctx(within)
        )
        .is_err(),
        "not the author"
    );
}

fn cal(start: i64, end: i64, r: Option<Recurrence>) -> CalendarEvent {
    CalendarEvent {
        id: 1,
        author: a(),
        fields: CalendarFields {
            title: "t".into(),
            start,
            end,
            all_day: false,
            time_zone: "UTC".into(),
            recurrence: r,
            location: String::new(),
            memo: String::new(),
        },
    }
}

/// The expansion walked from the first occurrence (what the computed start replaces).
fn walked(events: &[CalendarEvent], from: i64, to: i64) -> Vec<Occurrence> {
    let mut out = Vec::new();
    for e in events {
        let f = &e.fields;
        let len = f.end - f.start;
        let r = f.recurrence.expect("recurring");
        let mut produced = 0u32;
        for n in 0.. {
            let Some(start) = nth_start(f.start, r.freq, n * r.interval as i64) else {
                continue;
            };
            if start >= to || r.until.is_some_and(|u| start > u) {
                break;
            }
            if r.count.is_some_and(|c| produced >= c) {
                break;
            }
            produced += 1;
            if start + len.max(1) > from {
                out.push(Occurrence {
                    event: e.id,
                    start,
                    end: start + len,
                });
            }
        }
    }
    out.sort_by_key(|o| (o.start, o.event));
    out.truncate(MAX_OCCURRENCES);
    out
}

#[test]
fn e1_computed_expansion_equals_the_walk() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let freqs = [
        Frequency::Daily,
        Frequency::Weekly,
        Frequency::Monthly,
        Frequency::Yearly,
    ];
    for case in 0..3_000 {
        let freq = freqs[next(4) as usize];
        let (y, m) = (1990 + next(30) as i64, 1 + next(12) as u32);
        let d = 1 + next(u64::from(days_in_month(y, m))) as u32;
        let start = days_from_civil(y, m, d) * DAY_MS + next(DAY_MS as u64) as i64;
        let len = [0, 1, 3_600_000, 3 * DAY_MS, 40 * DAY_MS][next(5) as usize];
        let r = Recurrence {
            freq,
            interval: {
                let wide = next(2) == 0;
                1 + next(if wide { 40 } else { 3 }) as u32
            },
            until: (next(3) == 0).then(|| start + next(400 * DAY_MS as u64 * 30) as i64),
            count: (next(3) == 0).then(|| 1 + next(300) as u32),
        };
        let events: Vec<CalendarEvent> = (0..1 + next(3))
            .map(|i| {
                let mut e = cal(start + i as i64 * 7_200_000, start + len, Some(r));
                e.fields.end = e.fields.start + len;
                e.id = i + 1;
                e
            })
            .collect();
        let from = start - 30 * DAY_MS + next(40 * 366 * DAY_MS as u64) as i64;
        let to = from + 1 + next(3 * 366 * DAY_MS as u64) as i64;
        assert_eq!(
            occurrences(&events, from, to),
            walked(&events, from, to),
            "case {case}: {r:?} from {start} over [{from}, {to})"
        );
    }
}

#[test]
fn e1_an_event_from_year_one_is_expanded_today() {
    let daily = Recurrence {
        freq: Frequency::Daily,
        interval: 1,
        until: None,
        count: None,
    };
    let monthly_31 = Recurrence {
        freq: Frequency::Monthly,
        ..daily
    };
    let year_one = days_from_civil(1, 1, 31) * DAY_MS;
    let today = days_from_civil(2026, 12, 1) * DAY_MS;
    for r in [daily, monthly_31] {
        let occ = occurrences(
            &[cal(year_one, year_one + 1, Some(r))],
            today,
            today + 32 * DAY_MS,
        );
        assert!(!occ.is_empty(), "{r:?}");
        assert!(occ.iter().all(|o| o.start >= today));
    }
    // Counted from year one: 739,000 days are past, so a count of 1,000 is exhausted.
    let counted = Recurrence {
        count: Some(1_000),
        ..daily
    };
    assert!(occurrences(
        &[cal(year_one, year_one + 1, Some(counted))],
        today,
        today + DAY_MS
    )
    .is_empty());
}

#[test]
fn e1_recurrence_follows_the_events_time_zone_across_dst() {
    let hour = 3_600_000;
    let zoned = |start: i64, r: Recurrence, tz: &str, all_day: bool| {
        let mut e = cal(start, start + hour, Some(r));
        e.fields.time_zone = tz.into();
        e.fields.all_day = all_day;
        e
    };
    let weekly = Recurrence {
        freq: Frequency::Weekly,
        interval: 1,
        until: None,
        count: None,
    };
    // Mondays 09:00 in Berlin: 08:00 UTC in winter (CET), 07:00 UTC in summer (CEST).
    // Clocks go forward on 2026-03-29 and back on 2026-10-25.
    let mar16 = days_from_civil(2026, 3, 16) * DAY_MS + 8 * hour;
    let occ = occurrences(
        &[zoned(mar16, weekly, "Europe/Berlin", false)],
        mar16,
        mar16 + 4 * 7 * DAY_MS - 2 * hour,
    );
    let utc_hours: Vec<i64> = occ
        .iter()
        .map(|o| o.start.rem_euclid(DAY_MS) / hour)
        .collect();
    assert_eq!(
        utc_hours,
        vec![8, 8, 7, 7],
        "09:00 Berlin before and after spring"
    );
    assert!(occ.iter().all(|o| o.end - o.start == hour));
    let oct12 = days_from_civil(2026, 10, 12) * DAY_MS + 7 * hour;
    let occ = occurrences(
        &[zoned(oct12, weekly, "Europe/Berlin", false)],
        // A query starting late still sees the local time (the computed first step).
        oct12 + 7 * DAY_MS,
        oct12 + 4 * 7 * DAY_MS,
    );
    let utc_hours: Vec<i64> = occ
        .iter()
        .map(|o| o.start.rem_euclid(DAY_MS) / hour)
        .collect();
    assert_eq!(
        utc_hours,
        vec![7, 8, 8],
        "09:00 Berlin before and after autumn"
    );
    // 02:30 does not exist on 2026-03-29 in Berlin: that day's occurrence is at 03:30 CEST.
    let daily = Recurrence {
        freq: Frequency::Daily,
        ..weekly
    };
    let mar28 = days_from_civil(2026, 3, 28) * DAY_MS + hour + hour / 2; // 02:30 CET
    let occ = occurrences(
        &[zoned(mar28, daily, "Europe/Berlin", false)],
        mar28,
        mar28 + 3 * DAY_MS - 2 * hour,
    );
    // The wall-clock date and time of each occurrence's start in `zone`.
    let walls_in = |zone: &str, occ: &[Occurrence]| -> Vec<jiff::civil::DateTime> {
        let tz = jiff::tz::TimeZone::get(zone).expect("bundled");
        occ.iter()
            .map(|o| tz.to_datetime(jiff::Timestamp::from_millisecond(o.start).expect("t")))
            .collect()
    };
    let walls: Vec<String> = walls_in("Europe/Berlin", &occ)
        .iter()
        .map(|dt| dt.time().to_string())
        .collect();
    assert_eq!(walls, vec!["02:30:00", "03:30:00", "02:30:00"]);
    // Monthly on the 31st at 23:30 in New York (04:30 UTC the next day): the local 31st.
    let monthly = Recurrence {
        freq: Frequency::Monthly,
        ..weekly
    };
    let jan31 = days_from_civil(2026, 2, 1) * DAY_MS + 4 * hour + hour / 2;
    let occ = occurrences(
        &[zoned(jan31, monthly, "America/New_York", false)],
        0,
        days_from_civil(2027, 1, 2) * DAY_MS,
    );
    let local: Vec<(i8, i8, String)> = walls_in("America/New_York", &occ)
        .iter()
        .map(|dt| (dt.month(), dt.day(), dt.time().to_string()))
        .collect();
    let months: Vec<i8> = local.iter().map(|l| l.0).collect();
    assert_eq!(months, vec![1, 3, 5, 7, 8, 10, 12]);
    assert!(
        local.iter().all(|l| l.1 == 31 && l.2 == "23:30:00"),
        "{local:?}"
    );
    // All-day events repeat on dates: midnight UTC of each day, whatever the zone.
    let mar23 = days_from_civil(2026, 3, 23) * DAY_MS;
    let mut e = zoned(mar23, weekly, "Europe/Berlin", true);
    e.fields.end = mar23 + DAY_MS;
    let occ = occurrences(&[e], mar23, mar23 + 3 * 7 * DAY_MS);
    assert_eq!(occ.len(), 3);
    assert!(occ
        .iter()
        .all(|o| o.start.rem_euclid(DAY_MS) == 0 && o.end - o.start == DAY_MS));
}

#[test]
fn e1_an_unknown_time_zone_is_refused() {
    let mut f = cal(0, 1, None).fields;
    f.time_zone = "Mars/Olympus".into();
    assert!(check_calendar(&f).is_err());
    f.time_zone = "Asia/Tokyo".into();
    assert!(check_calendar(&f).is_ok());
    f.time_zone = String::new();
    assert_eq!(check_calendar(&f).expect("default").time_zone, "UTC");
}

#[test]
fn e1_recurrence_expansion() {
    // 2026-01-31 10:00 UTC.
    let jan31 = days_from_civil(2026, 1, 31) * DAY_MS + 10 * 3_600_000;
    let monthly = Recurrence {
        freq: Frequency::Monthly,
        interval: 1,
        until: None,
        count: None,
    };
    let year_end = days_from_civil(2027, 1, 1) * DAY_MS;
    let occ = occurrences(&[cal(jan31, jan31 + 3_600_000, Some(monthly))], 0, year_end);
    let days: Vec<(i64, u32, u32)> = occ
        .iter()
        .map(|o| civil_from_days(o.start.div_euclid(DAY_MS)))
        .collect();
    // Months with a 31st only: Jan, Mar, May, Jul, Aug, Oct, Dec.
    assert_eq!(
        days.iter().map(|d| d.1).collect::<Vec<_>>(),
        vec![1, 3, 5, 7, 8, 10, 12]
    );
    let weekly = Recurrence {
        freq: Frequency::Weekly,
        interval: 2,
        until: None,
        count: Some(3),
    };
    let occ = occurrences(&[cal(0, 1000, Some(weekly))], 0, i64::MAX / 4);
    assert_eq!(
        occ.iter().map(|o| o.start).collect::<Vec<_>>(),
        vec![0, 14 * DAY_MS, 28 * DAY_MS]
    );
    let daily = Recurrence {
        freq: Frequency::Daily,
        interval: 1,
        until: Some(2 * DAY_MS),
        count: None,
    };
    let occ = occurrences(&[cal(0, 1000, Some(daily))], DAY_MS, 10 * DAY_MS);
    assert_eq!(
        occ.iter().map(|o| o.start).collect::<Vec<_>>(),
        vec![DAY_MS, 2 * DAY_MS]
    );
    let feb29 = days_from_civil(2024, 2, 29) * DAY_MS;
    let yearly = Recurrence {
        freq: Frequency::Yearly,
        interval: 1,
        until: None,
        count: None,
    };
    let occ = occurrences(
        &[cal(feb29, feb29 + 1, Some(yearly))],
        0,
        days_from_civil(2033, 1, 1) * DAY_MS,
    );
    assert_eq!(occ.len(), 3, "2024, 2028, 2032");
    assert_eq!(civil_from_days(days_from_civil(2000, 3, 1)), (2000, 3, 1));
    assert!(
        occurrences(&[cal(0, 10, None)], 10, 20).is_empty(),
        "ends at from"
    );
    assert_eq!(occurrences(&[cal(0, 10, None)], 5, 20).len(), 1);
    let forever = Recurrence {
        freq: Frequency::Daily,
        interval: 1,
        until: None,
        count: None,
    };
    assert_eq!(
        occurrences(&[cal(0, 1, Some(forever))], 0, i64::MAX / 4).len(),
        MAX_OCCURRENCES
    );
}

fn task_fields(assignees: Vec<UserId>) -> TaskFields {
    TaskFields {
        title: "Ship".into(),
        content: String::new(),
        due: None,
        category: String::new(),
        assignees,
        completion: Completion::All,
    }
}

/// T1: a new task is heard of by its assigner and assignees; a change by the assignees before
/// (from the task as committed) and after it, and the assigner — once each, whoever acts.
#[test]
fn t1_who_hears_about_a_task() {
    let c: UserId = "c@c.example".into();
    let created = [EventBody::TaskCreated {
        task: task_fields(vec![b(), c.clone()]),
    }];
    assert_eq!(
        task_audience(&created, &Context::default(), &a()),
        vec![a(), b(), c.clone()]
    );
    let committed = apply(None, &ev(20, "m@a.example", created[0].clone()));
    let ctx = Context {
        item: committed,
        ..Context::default()
    };
    let moved = [EventBody::TaskUpdated {
        task: 20,
        fields: task_fields(vec![a()]),
    }];
    let m: UserId = "m@a.example".into();
    assert_eq!(task_audience(&moved, &ctx, &b()), vec![a(), b(), c, m]);
    assert_eq!(task_of(&moved[0]), Some(Some(20)));
    assert_eq!(task_of(&created[0]), Some(None));
    assert_eq!(
        task_of(&EventBody::TaskCompleted { task: 20 }),
        Some(Some(20))
    );
    assert_eq!(task_of(&EventBody::NoteDeleted { note: 20 }), None);
}

/// F1, M1: a purge makes garbage of every file in the subtree (not of folders, nor of what is
/// outside it); a recall of its message's attachments; any other action of nothing.
#[test]
fn f1_m1_which_bytes_an_action_makes_garbage() {
    let folder = |id: u64, parent: Option<u64>| {
        Item::Folder(Folder {
            id,
            parent,
            name: format!("f{id}"),
            created_by: a(),
            notify_on_new_file: false,
            trashed: None,
        })
    };
    let file = |id: u64, parent: Option<u64>, bytes: &str| {
        Item::File(FileItem {
            id,
            folder: parent,
            file: bytes.into(),
            name: format!("{bytes}.bin"),
            size: 1,
            content_type: "application/octet-stream".into(),
            sha256: String::new(),
            uploaded_by: a(),
            trashed: None,
        })
    };
    let items = vec![
        folder(1, None),
        folder(2, Some(1)),
        file(3, Some(2), "inside"),
        file(4, Some(1), "also"),
        file(5, None, "outside"),
    ];
    let mut purged = garbage_of(
        &Action::Purge { item: 1 },
        &Context::default(),
        items.clone(),
    );
    purged.sort();
    assert_eq!(purged, vec!["also".to_owned(), "inside".to_owned()]);
    let recall = Context {
        message: Some(ev(
            9,
            "a@a.example",
            EventBody::Message {
                client_msg_id: "m".into(),
                text: "see attached".into(),
                attachments: vec![crossroom_protocol::Attachment {
                    file: "attached".into(),
                    name: "a.png".into(),
                    size: 1,
                    content_type: "image/png".into(),
                }],
                mentions: vec![],
                recalled: false,
            },
        )),
        ..Context::default()
    };
    assert_eq!(
        garbage_of(&Action::Recall { message: 9 }, &recall, Vec::new()),
        vec!["attached".to_owned()]
    );
    assert!(garbage_of(&Action::Trash { item: 1 }, &Context::default(), items).is_empty());
}
