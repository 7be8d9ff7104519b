//! The calendar (E1): who may create, change and delete events, what each entry does to the
//! event, and the expansion of recurrences in the event's time zone.

use super::context::*;
use super::limits::*;
use crate::error::{ApiError, ApiResult};
use crossroom_protocol::{
    Action, CalendarEvent, CalendarFields, Event, EventBody, Frequency, Item, Occurrence,
    Recurrence,
};

pub(super) const DAY_MS: i64 = 86_400_000;

pub(super) fn check_calendar(f: &CalendarFields) -> ApiResult<CalendarFields> {
    let mut f = f.clone();
    if f.title.trim().is_empty() {
        f.title = "No title".into();
    }
    check_len("title", &f.title, 1, MAX_NOTE_TITLE)?;
    check_len("location", &f.location, 0, MAX_CALENDAR_TEXT)?;
    check_len("memo", &f.memo, 0, MAX_CALENDAR_TEXT)?;
    if f.time_zone.is_empty() {
        f.time_zone = "UTC".into();
    }
    check_len("time_zone", &f.time_zone, 1, 64)?;
    if jiff::tz::TimeZone::get(&f.time_zone).is_err() {
        return Err(ApiError::invalid(format!(
            "time_zone {:?} is not an IANA time zone name (such as Europe/Berlin or UTC)",
            f.time_zone
        )));
    }
    if !in_calendar(f.start) || !in_calendar(f.end) {
        return Err(ApiError::invalid(
            "start and end must lie in the years 1 to 9999 (UTC)",
        ));
    }
    if f.end < f.start {
        return Err(ApiError::invalid("end must not be before start"));
    }
    if f.all_day && (f.start.rem_euclid(DAY_MS) != 0 || f.end.rem_euclid(DAY_MS) != 0) {
        return Err(ApiError::invalid(
            "all-day events start and end at midnight UTC of their days",
        ));
    }
    if let Some(r) = &f.recurrence {
        if r.interval == 0 || r.interval > 1000 {
            return Err(ApiError::invalid("recurrence interval must be 1 to 1000"));
        }
        if r.until.is_some_and(|u| u < f.start) {
            return Err(ApiError::invalid("recurrence ends before the event starts"));
        }
    }
    Ok(f)
}

/// Decide an action on calendar events (E1).
pub(super) fn calendar(by: &By, action: &Action) -> ApiResult<Vec<EventBody>> {
    let By { room, ctx, .. } = *by;
    let f = &room.features;
    Ok(match action {
        Action::CreateCalendarEvent(e) => {
            check_switch(room, f.event, "the calendar")?;
            vec![EventBody::CalendarEventCreated {
                event: check_calendar(e)?,
            }]
        }
        Action::UpdateCalendarEvent { event, fields } => {
            check_switch(room, f.event, "the calendar")?;
            match &ctx.item {
                Some(Item::CalendarEvent(e)) if e.id == *event => {}
                _ => return Err(gone("calendar event", *event)),
            }
            vec![EventBody::CalendarEventUpdated {
                event: *event,
                fields: check_calendar(fields)?,
            }]
        }
        Action::DeleteCalendarEvent { event } => {
            check_switch(room, f.event, "the calendar")?;
            match &ctx.item {
                Some(Item::CalendarEvent(e)) if e.id == *event => {}
                _ => return Err(gone("calendar event", *event)),
            }
            vec![EventBody::CalendarEventDeleted { event: *event }]
        }
        _ => return Err(misrouted()),
    })
}

/// [`super::apply`] for an entry about a calendar event.
pub(super) fn apply_calendar(item: Option<Item>, event: &Event) -> Option<Item> {
    let (seq, author) = (event.seq, &event.author);
    match (&event.body, item) {
        (EventBody::CalendarEventCreated { event: fields }, _) => {
            Some(Item::CalendarEvent(CalendarEvent {
                id: seq,
                author: author.clone(),
                fields: fields.clone(),
            }))
        }
        (EventBody::CalendarEventUpdated { fields, .. }, Some(Item::CalendarEvent(mut e))) => {
            e.fields = fields.clone();
            Some(Item::CalendarEvent(e))
        }
        // An entry about an item that is gone changes nothing.
        (_, other) => other,
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(super) fn days_in_month(y: i64, m: u32) -> u32 {
    let next = if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    };
    (next - days_from_civil(y, m, 1)) as u32
}

/// The start of the n-th period after `start` (UTC), or `None` when that month has no such day
/// (a monthly event on the 31st skips 30-day months; a yearly one on Feb 29 skips common years).
pub(super) fn nth_start(start: i64, freq: Frequency, n: i64) -> Option<i64> {
    let day = start.div_euclid(DAY_MS);
    let time = start.rem_euclid(DAY_MS);
    match freq {
        Frequency::Daily => Some(start + n * DAY_MS),
        Frequency::Weekly => Some(start + n * 7 * DAY_MS),
        Frequency::Monthly | Frequency::Yearly => {
            let (y, m, d) = civil_from_days(day);
            let months = if freq == Frequency::Monthly {
                n
            } else {
                n * 12
            };
            let total = y * 12 + (m as i64 - 1) + months;
            let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
            (d <= days_in_month(ny, nm)).then(|| days_from_civil(ny, nm, d) * DAY_MS + time)
        }
    }
}

/// The clock an event repeats on (E1): its time zone, so that a weekly 09:00 meeting stays at
/// 09:00 across daylight-saving changes. All-day events repeat on UTC days (their days are
/// dates, stored as midnight UTC), as does an event whose zone the bundled database lacks.
pub(super) struct Clock(Option<jiff::tz::TimeZone>);

impl Clock {
    fn of(f: &CalendarFields) -> Clock {
        if f.all_day {
            return Clock(None);
        }
        Clock(jiff::tz::TimeZone::get(&f.time_zone).ok())
    }

    /// The wall-clock time of an instant, as milliseconds of a UTC-like timeline.
    fn local(&self, t: i64) -> i64 {
        let (Some(tz), Ok(ts)) = (&self.0, jiff::Timestamp::from_millisecond(t)) else {
            return t;
        };
        t + i64::from(tz.to_offset(ts).seconds()) * 1000
    }

    /// The instant of a wall-clock time. A time a change skips (02:30 on the night clocks go
    /// forward) moves forward by the gap; a time a change repeats takes its first instant
    /// (RFC 5545's rule, jiff's "compatible").
    fn instant(&self, local: i64) -> Option<i64> {
        let Some(tz) = &self.0 else {
            return Some(local);
        };
        let wall =
            jiff::tz::Offset::UTC.to_datetime(jiff::Timestamp::from_millisecond(local).ok()?);
        let t = tz.to_ambiguous_timestamp(wall).compatible().ok()?;
        Some(t.as_millisecond())
    }
}

/// The step (in periods of `interval`) of the first occurrence that may overlap `from`: computed,
/// not walked, and at most a few steps early (a month's length varies; the walk from it checks).
pub(super) fn first_step(start: i64, len: i64, r: &Recurrence, from: i64) -> i64 {
    let interval = i64::from(r.interval);
    let reach = from.saturating_sub(len.max(1)).saturating_sub(start);
    if reach < 0 {
        return 0;
    }
    let k = match r.freq {
        Frequency::Daily => reach / (interval * DAY_MS),
        Frequency::Weekly => reach / (interval * 7 * DAY_MS),
        Frequency::Monthly | Frequency::Yearly => {
            let per = if r.freq == Frequency::Monthly { 1 } else { 12 };
            let month = |t: i64| {
                let (y, m, _) = civil_from_days(t.div_euclid(DAY_MS));
                y * 12 + i64::from(m)
            };
            (month(start + reach) - month(start)) / (interval * per)
        }
    };
    (k - 1).max(0)
}

/// How many occurrences steps `0..k` produce (steps on a day their month lacks produce none).
/// Only monthly and yearly rules on the 29th to 31st skip: the Gregorian calendar repeats every
/// 4,800 months, so whole cycles are counted once, not walked.
pub(super) fn produced_before(start: i64, r: &Recurrence, k: i64) -> i64 {
    let (_, _, d) = civil_from_days(start.div_euclid(DAY_MS));
    if matches!(r.freq, Frequency::Daily | Frequency::Weekly) || d <= 28 {
        return k;
    }
    let months = i64::from(r.interval) * if r.freq == Frequency::Monthly { 1 } else { 12 };
    let cycle = 4_800 / gcd(months, 4_800);
    let valid = |n: i64| {
        (0..n)
            .filter(|i| nth_start(start, Frequency::Monthly, i * months).is_some())
            .count() as i64
    };
    (k / cycle) * valid(cycle) + valid(k % cycle)
}

pub(super) fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Occurrences of `events` overlapping `[from, to)`, in start order, at most
/// [`MAX_OCCURRENCES`]. Each event's expansion starts at its first occurrence near `from`
/// (computed), so an event that started long ago costs no more than one that starts today.
pub fn occurrences(events: &[CalendarEvent], from: i64, to: i64) -> Vec<Occurrence> {
    let mut out: Vec<Occurrence> = Vec::new();
    // Once MAX_OCCURRENCES are kept, an occurrence starting after the last kept one cannot be
    // in the answer.
    let mut bound = to;
    for e in events {
        let f = &e.fields;
        let len = f.end.saturating_sub(f.start);
        let Some(r) = f.recurrence else {
            if f.start < bound && f.end.max(f.start.saturating_add(1)) > from {
                out.push(Occurrence {
                    event: e.id,
                    start: f.start,
                    end: f.end,
                });
            }
            continue;
        };
        // Steps are taken on the event's wall clock; a zone is at most 26 hours off UTC, so
        // looking two days early finds no later step than the first one that matters.
        let clock = Clock::of(f);
        let local = clock.local(f.start);
        let k0 = first_step(local, len, &r, from.saturating_sub(2 * DAY_MS));
        let mut produced = match r.count {
            Some(_) => produced_before(local, &r, k0),
            None => 0,
        };
        let mut kept = 0;
        // Bounded: from `k0`, a few steps reach `from`, and between two occurrences at most
        // eleven steps skip (a day some months lack).
        for n in k0..k0 + 12 * MAX_OCCURRENCES as i64 + 64 {
            if kept >= MAX_OCCURRENCES {
                break;
            }
            let Some(start) = nth_start(local, r.freq, n * i64::from(r.interval))
                .and_then(|wall| clock.instant(wall))
            else {
                continue;
            };
            if start >= bound || r.until.is_some_and(|u| start > u) {
                break;
            }
            if r.count.is_some_and(|c| produced >= i64::from(c)) {
                break;
            }
            produced += 1;
            if start.saturating_add(len.max(1)) > from {
                out.push(Occurrence {
                    event: e.id,
                    start,
                    end: start.saturating_add(len),
                });
                kept += 1;
            }
        }
        if out.len() >= 2 * MAX_OCCURRENCES {
            out.sort_by_key(|o| (o.start, o.event));
            out.truncate(MAX_OCCURRENCES);
            bound = out.last().map_or(to, |o| o.start.saturating_add(1));
        }
    }
    out.sort_by_key(|o| (o.start, o.event));
    out.truncate(MAX_OCCURRENCES);
    out
}
