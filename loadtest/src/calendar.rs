//! `loadtest calendar`: what the heaviest calendar costs, and whether it costs a neighbour.
//! One member fills a group with `--events` (default 2,000: a room's limit) calendar events,
//! each repeating daily since the year 1 — every one has an occurrence every day of the query,
//! and every expansion starts 739,000 days before it. Then the member asks for a month of the
//! calendar over and over for `--duration` seconds, while another user, on their own session,
//! pings every 10 ms. Printed: the query's latency, and the neighbour's ping round trip before
//! (idle) and during the queries.

use crate::hist::Hist;
use crossroom_protocol::client::{Client, Http};
use crossroom_protocol::{
    Action, CalendarFields, ClientFrame, Encoding, Frequency, Query, Recurrence, ServerFrame,
};
use serde_json::json;
use std::time::{Duration, Instant};

pub struct CalendarArgs {
    pub addr: String,
    pub operator_key: String,
    pub events: usize,
    pub duration: Duration,
}

const DAY: i64 = 86_400_000;
/// 0001-01-01T00:00Z.
const YEAR_ONE: i64 = -62_135_596_800_000;

async fn setup(a: &CalendarArgs, company: &str) -> Result<(String, String, String), String> {
    let op = Http::new(a.addr.clone(), Some(a.operator_key.clone()));
    let r = op
        .post(
            "/v1/admin/companies",
            json!({"id": company, "name": "calendar probe",
                   "settings": {"external_chat": true}}),
        )
        .await
        .map_err(|e| e.to_string())?;
    let admin = op.with_key(r.body["admin_key"].as_str().unwrap_or_default());
    let mut people = Vec::new();
    for login in ["planner", "neighbour"] {
        let r = admin
            .post("/v1/admin/users", json!({"login": login, "name": login}))
            .await
            .map_err(|e| e.to_string())?;
        let id = r.body["id"].as_str().unwrap_or_default().to_owned();
        let t = admin
            .post(&format!("/v1/admin/users/{id}/tokens"), json!({}))
            .await
            .map_err(|e| e.to_string())?;
        people.push((id, t.body["token"].as_str().unwrap_or_default().to_owned()));
    }
    let r = admin
        .post(
            "/v1/admin/groups",
            json!({"name": "calendar probe", "masters": [people[0].0], "members": [people[0].0]}),
        )
        .await
        .map_err(|e| e.to_string())?;
    let room = r.body["room"]["id"]
        .as_str()
        .ok_or(format!("create group: {} {}", r.status, r.body))?
        .to_owned();
    Ok((room, people[0].1.clone(), people[1].1.clone()))
}

/// Ping every 10 ms until `stop`; the round trips.
async fn pings(mut c: Client, stop: Instant) -> Result<Hist, String> {
    let mut h = Hist::default();
    while Instant::now() < stop {
        let t = Instant::now();
        c.request(ClientFrame::Ping { id: 0 })
            .await
            .map_err(|e| e.to_string())?;
        h.record(t.elapsed().as_micros() as u64);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(h)
}

fn ms(h: &Hist, q: f64) -> f64 {
    h.quantile_ms(q)
}

/// Probe, then delete the probe's company (and with it its users and group).
pub async fn run(a: CalendarArgs) -> Result<(), String> {
    let stamp = crate::worker::now_micros();
    let company = format!("cal{stamp}.example");
    let outcome = probe(&a, &company).await;
    let op = Http::new(a.addr.clone(), Some(a.operator_key.clone()));
    if let Err(e) = op.delete(&format!("/v1/admin/companies/{company}")).await {
        eprintln!("could not delete company {company}: {e}");
    }
    outcome
}

async fn probe(a: &CalendarArgs, company: &str) -> Result<(), String> {
    let (room, planner, neighbour) = setup(a, company).await?;
    let url = format!("ws://{}/v1/ws", a.addr);
    let connect = |token: String| {
        let url = url.clone();
        async move {
            Client::connect(&url, Some(&token), Encoding::MsgPack)
                .await
                .map(|(c, _)| c)
                .map_err(|e| e.to_string())
        }
    };
    let mut p = connect(planner).await?;
    let made = Instant::now();
    for chunk in (0..a.events).collect::<Vec<_>>().chunks(100) {
        let mut ids = Vec::new();
        for i in chunk {
            let start = YEAR_ONE + (*i as i64 % 24) * 3_600_000;
            let mut f = ClientFrame::Act {
                id: 0,
                room: room.clone().into(),
                action: Action::CreateCalendarEvent(CalendarFields {
                    title: format!("daily {i}"),
                    start,
                    end: start + 1_800_000,
                    all_day: false,
                    time_zone: "UTC".into(),
                    recurrence: Some(Recurrence {
                        freq: Frequency::Daily,
                        interval: 1,
                        until: None,
                        count: None,
                    }),
                    location: String::new(),
                    memo: String::new(),
                }),
            };
            ids.push(p.send(&mut f).await.map_err(|e| e.to_string())?);
        }
        for id in ids {
            match p.reply_to(id, Duration::from_secs(30)).await {
                Ok(ServerFrame::Changed { .. }) => {}
                other => return Err(format!("create event: {other:?}")),
            }
        }
    }
    eprintln!(
        "{} events in {:.1} s",
        a.events,
        made.elapsed().as_secs_f64()
    );
    let idle = pings(
        connect(neighbour.clone()).await?,
        Instant::now() + Duration::from_secs(2),
    )
    .await?;
    let stop = Instant::now() + a.duration;
    let neighbour = tokio::spawn(pings(connect(neighbour).await?, stop));
    let now = crate::worker::now_micros() as i64 / 1000;
    let from = now - now.rem_euclid(DAY);
    let mut q = Hist::default();
    let mut occurrences = 0;
    while Instant::now() < stop {
        let t = Instant::now();
        let r = p
            .request(ClientFrame::Query {
                id: 0,
                room: room.clone().into(),
                query: Query::Calendar {
                    from,
                    to: from + 31 * DAY,
                    cursor: None,
                },
            })
            .await
            .map_err(|e| e.to_string())?;
        q.record(t.elapsed().as_micros() as u64);
        match r {
            ServerFrame::QueryResult {
                result: crossroom_protocol::QueryResult::Calendar { occurrences: o, .. },
                ..
            } => occurrences = o.len(),
            other => return Err(format!("query: {other:?}")),
        }
    }
    let busy = neighbour.await.map_err(|e| e.to_string())??;
    println!(
        "calendar: {} events (daily since year 1), {} queries of a month in {:.0} s, {} occurrences a page",
        a.events,
        q.count(),
        a.duration.as_secs_f64(),
        occurrences
    );
    println!(
        "query latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
        ms(&q, 0.5),
        ms(&q, 0.99),
        ms(&q, 1.0)
    );
    println!(
        "neighbour ping ms, idle: p50 {:.2}  p99 {:.2}  max {:.2}",
        ms(&idle, 0.5),
        ms(&idle, 0.99),
        ms(&idle, 1.0)
    );
    println!(
        "neighbour ping ms, during the queries: p50 {:.2}  p99 {:.2}  max {:.2}",
        ms(&busy, 0.5),
        ms(&busy, 0.99),
        ms(&busy, 1.0)
    );
    Ok(())
}
