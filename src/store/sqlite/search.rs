//! Message search in SQLite (M6): the asker's query as an FTS5 expression over the index that
//! [`super::index`] keeps (its file attached to the read connection), joined with the log and
//! the asker's memberships as they are in the same read:
//! current member, from their visible-from seq (D4, G21) — a master who is not a member (G22) and
//! a removed member find nothing; a recalled message is never shown.

use super::index::{attach, scope_token};
use super::*;
use crate::domain::search::{MessageQuery, Term};
use crate::store::{FoundItem, FoundMessage, SearchStore};

/// Rooms named one by one in a search's scope; past this the memberships join alone narrows it.
const MAX_SCOPED_ROOMS: usize = 300;

/// One term as an FTS5 phrase on the text column: its tokens together, the last one perhaps a
/// prefix.
fn phrase(t: &Term) -> String {
    let words: Vec<String> = t.tokens.iter().map(|w| w.replace('"', "\"\"")).collect();
    format!(
        "text : \"{}\"{}",
        words.join(" "),
        if t.prefix { "*" } else { "" }
    )
}

/// The FTS5 expression for `q` within the rooms whose scope tokens are `scopes` (all of the
/// asker's rooms when `None`).
fn match_expression(q: &MessageQuery, scopes: Option<&[String]>) -> String {
    let mut all: Vec<String> = q.must.iter().map(phrase).collect();
    if let Some(scopes) = scopes {
        let any: Vec<String> = scopes.iter().map(|k| format!("scope : \"{k}\"")).collect();
        all.push(format!("({})", any.join(" OR ")));
    }
    let mut expr = format!("({})", all.join(" AND "));
    for t in &q.must_not {
        expr.push_str(" NOT ");
        expr.push_str(&phrase(t));
    }
    expr
}

/// The scope tokens of the rooms `user` is a member of (or just `room`, if they are a member
/// of it).
fn member_scopes(
    conn: &Connection,
    user: &UserId,
    room: Option<&RoomId>,
) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.room FROM room_members m
         WHERE m.user = ?1 AND m.is_member = 1 AND (?2 IS NULL OR m.room = ?2)",
    )?;
    let rows = stmt.query_map(params![user.0, room.map(|r| r.0.as_str())], |r| {
        r.get::<_, String>(0)
    })?;
    rows.map(|r| Ok(scope_token(&RoomId(r?)))).collect()
}

fn search(
    conn: &Connection,
    user: &UserId,
    q: &MessageQuery,
    before: i64,
    limit: usize,
) -> StoreResult<Vec<FoundMessage>> {
    let scopes = member_scopes(conn, user, q.room.as_ref())?;
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    // The asker's memberships, as they are in this read, decide what may be seen.
    let visible = "JOIN room_members m ON m.room = r.room AND m.user = ?1 AND m.is_member = 1
                   AND r.seq >= m.joined_seq
                   JOIN events e ON e.room = r.room AND e.seq = r.seq";
    let filters = "r.id < ?2 AND (?3 IS NULL OR r.author = ?3) AND (?4 IS NULL OR r.room = ?4)
                   AND (?5 IS NULL OR r.ts >= ?5) AND (?6 IS NULL OR r.ts < ?6)
                   AND (?7 = 0 OR r.files > 0)";
    let select = "SELECT r.id, r.room, r.seq, r.ts, r.author, e.body";
    // A filter alone scans the rows newest first; words go through the FTS5 table.
    let (sql, expr) = if q.is_filter_only() {
        let sql = format!(
            "{select} FROM message_rows r {visible} WHERE {filters} ORDER BY r.id DESC LIMIT ?8"
        );
        (sql, None)
    } else {
        let sql = format!(
            "{select} FROM message_index i JOIN message_rows r ON r.id = i.rowid {visible}
             WHERE message_index MATCH ?9 AND {filters} ORDER BY i.rowid DESC LIMIT ?8"
        );
        let scoped = (scopes.len() <= MAX_SCOPED_ROOMS).then_some(&scopes[..]);
        (sql, Some(match_expression(q, scoped)))
    };
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![
        Box::new(user.0.clone()),
        Box::new(before),
        Box::new(q.from.as_ref().map(|u| u.0.clone())),
        Box::new(q.room.as_ref().map(|r| r.0.clone())),
        Box::new(q.since_ms),
        Box::new(q.until_ms),
        Box::new(i64::from(q.has_file)),
        Box::new(limit as i64),
    ];
    if let Some(e) = expr {
        args.push(Box::new(e));
    }
    found(conn, &sql, args)
}

/// The messages `sql` selects (`id, room, seq, ts, author, body`) as the log holds them now: a
/// recalled message is never shown.
fn found(
    conn: &Connection,
    sql: &str,
    args: Vec<Box<dyn rusqlite::ToSql>>,
) -> StoreResult<Vec<FoundMessage>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |row| {
        let body: Vec<u8> = row.get(5)?;
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, String>(4)?,
            body,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, room, seq, ts, author, body) = row?;
        let body: EventBody = rmp_serde::from_slice(&body).map_err(StoreError::backend)?;
        if let EventBody::Message {
            text,
            recalled: false,
            ..
        } = body
        {
            out.push(FoundMessage {
                key,
                room: RoomId(room),
                seq: seq as u64,
                ts,
                author: UserId(author),
                text,
            });
        }
    }
    Ok(out)
}

fn search_items(
    conn: &Connection,
    user: &UserId,
    q: &MessageQuery,
    before: i64,
    limit: usize,
) -> StoreResult<Vec<FoundItem>> {
    let scopes = member_scopes(conn, user, q.room.as_ref())?;
    if scopes.is_empty() || q.must.is_empty() {
        return Ok(Vec::new());
    }
    let scoped = (scopes.len() <= MAX_SCOPED_ROOMS).then_some(&scopes[..]);
    let mut stmt = conn.prepare_cached(
        "SELECT r.id, r.room, it.state, ro.features FROM item_index i
         JOIN item_rows r ON r.id = i.rowid
         JOIN room_members m ON m.room = r.room AND m.user = ?1 AND m.is_member = 1
         JOIN items it ON it.room = r.room AND it.id = r.item
         JOIN rooms ro ON ro.id = r.room
         WHERE item_index MATCH ?2 AND r.id < ?3 AND (?4 IS NULL OR r.room = ?4)
         ORDER BY i.rowid DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![
            user.0,
            match_expression(q, scoped),
            before,
            q.room.as_ref().map(|r| r.0.as_str()),
            limit as i64
        ],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (key, room, state, features) = row?;
        let item: Item = serde_json::from_str(&state).map_err(StoreError::backend)?;
        let features: Features = serde_json::from_str(&features).map_err(StoreError::backend)?;
        // A feature switched off hides its things (G18).
        let on = match &item {
            Item::Note(_) => features.note,
            Item::CalendarEvent(_) => features.event,
            Item::Task(_) => features.task,
            Item::Folder(_) | Item::File(_) => features.folder,
        };
        if on {
            out.push(FoundItem {
                key,
                room: RoomId(room),
                item,
            });
        }
    }
    Ok(out)
}

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search_items(
        &self,
        user: &UserId,
        query: &MessageQuery,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<FoundItem>> {
        let (user, query, index) = (user.clone(), query.clone(), self.index_path.clone());
        let before = before.unwrap_or(i64::MAX);
        self.indexed.caught_up().await;
        self.read(move |conn| {
            attach(conn, &index)?;
            search_items(conn, &user, &query, before, limit)
        })
        .await
    }

    async fn search_messages(
        &self,
        user: &UserId,
        query: &MessageQuery,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<FoundMessage>> {
        let (user, query, index) = (user.clone(), query.clone(), self.index_path.clone());
        let before = before.unwrap_or(i64::MAX);
        self.indexed.caught_up().await;
        self.read(move |conn| {
            attach(conn, &index)?;
            search(conn, &user, &query, before, limit)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::search::parse;

    #[test]
    fn the_expression_scopes_and_excludes() {
        let q = parse(r#"plan* "next week" -draft"#, None).expect("test");
        assert_eq!(
            match_expression(&q, Some(&["k3".to_owned(), "k7".to_owned()])),
            r#"(text : "plan"* AND text : "next week" AND (scope : "k3" OR scope : "k7")) NOT text : "draft""#
        );
    }
}
