//! The SQLite schema (`schema.sql`, the current version) and its migrations from every earlier
//! version, and a run's beginning and end: the mark an unclean stop leaves, the epochs it moves,
//! a backup's snapshot.

use crate::store::{StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Every table and index of this version (`IF NOT EXISTS`: run on every open).
const SCHEMA: &str = include_str!("schema.sql");

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 8;

/// Bring the database at `path` (open as `conn`) to this build's schema: refuse one written by a
/// newer build, upgrade an older one in place (each step an `ALTER TABLE`), create what is
/// missing; then give back the storage reservations a crash left behind.
pub(super) fn migrate(conn: &Connection, path: &Path) -> StoreResult<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::backend(format!(
                "{} was written by a newer crossroom (schema {version}, this build knows {SCHEMA_VERSION})",
                path.display()
            )));
    }
    if version == 1 {
        // Schema 2 added the rooms' state version.
        conn.execute_batch("ALTER TABLE rooms ADD COLUMN version INTEGER NOT NULL DEFAULT 0")?;
    }
    if (1..=2).contains(&version) {
        // Schema 3 added who an invitation link no longer admits.
        conn.execute_batch(
            "ALTER TABLE rooms ADD COLUMN invite_barred TEXT NOT NULL DEFAULT '[]'",
        )?;
    }
    if (1..=3).contains(&version) {
        // Schema 4 marked the companies made by a sign-up.
        conn.execute_batch(
            "ALTER TABLE companies ADD COLUMN self_registered INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    if (1..=4).contains(&version) {
        // Schema 5 told attachments apart, with their claims (M1). Earlier files are not
        // attachments any more: a post can no longer take one uploaded before the upgrade.
        conn.execute_batch(
            "ALTER TABLE files ADD COLUMN attachment INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE files ADD COLUMN claim TEXT;
                 ALTER TABLE files ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    if version == 6 {
        // Schema 7 marks the rooms each run writes.
        conn.execute_batch("ALTER TABLE room_heads ADD COLUMN run INTEGER NOT NULL DEFAULT 0")?;
    }
    conn.execute_batch(SCHEMA)?;
    if (1..=5).contains(&version) {
        // Schema 6 moved the heads to their own narrow table.
        conn.execute_batch(
            "INSERT OR IGNORE INTO room_heads (room, head) SELECT id, head FROM rooms",
        )?;
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    // This process alone writes the file: no upload is in flight, so what `used` holds
    // beyond the recorded files is reservations a crash (or kill) left behind.
    let total = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.query_row("SELECT COALESCE(SUM(used), 0) FROM storage", [], |r| {
            r.get(0)
        })
    };
    let before = total(conn)?;
    conn.execute_batch(
        "UPDATE storage SET used = (SELECT COALESCE(SUM(size), 0) FROM files \
             WHERE files.company = storage.company)",
    )?;
    let given_back = before - total(conn)?;
    if given_back != 0 {
        tracing::warn!(
            bytes = given_back,
            "storage reservations a crash left were given back"
        );
    }
    Ok(())
}

/// Write a consistent snapshot of the database at `db` into the new file `dest` (SQLite's
/// `VACUUM INTO`, safe while a server writes `db`), owner-only, marked as a backup so that the
/// server started on it says it is starting from a backup rather than from a crash.
pub fn snapshot_into(db: &Path, dest: &Path) -> StoreResult<()> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let dest_str = dest
        .to_str()
        .ok_or_else(|| StoreError::backend(format!("{}: not UTF-8", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [dest_str])?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
            .map_err(StoreError::backend)?;
    }
    let copy = Connection::open(dest)?;
    copy.execute(
        "INSERT INTO meta (key, value) VALUES ('backup_taken_at', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![crate::clock::now_secs()],
    )?;
    Ok(())
}

/// Begin a run: after an unclean stop (the last run's id is still in `meta`), move every room
/// that run marked ([`RoomLogStore::mark_numbered`](crate::store::RoomLogStore::mark_numbered):
/// it numbered and delivered entries before their commit) to a new epoch; then record this
/// run's id; and whether the database is a backup being started. A database that is a backup
/// ([`snapshot_into`]) moves every room to a new epoch — clients may have seen entries newer
/// than the copy in any of them — and is logged as the restore it is, not as a crash.
pub(super) fn begin_run(conn: &Connection) -> StoreResult<(i64, bool)> {
    let last: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'run'", [], |r| r.get(0))
        .optional()?;
    let backup_taken_at: Option<i64> = conn
        .query_row(
            "DELETE FROM meta WHERE key = 'backup_taken_at' RETURNING value",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(taken_at) = backup_taken_at {
        // The copy was taken while the server served: any room may have been written after it,
        // and its clients have seen seqs that new posts here would reuse. No room's continuity
        // can be proven, so every room goes on under a new epoch (D1) — once, at the restore.
        let moved = move_all_epochs(conn)?;
        tracing::info!(
            taken_at,
            rooms = moved,
            "starting from a backup (crossroom backup): every room goes on under a new epoch, \
             so clients that saw entries newer than the backup reset and reload"
        );
    } else if let Some(last) = last.filter(|r| *r != 0) {
        let moved = move_run_epochs(conn, last)?;
        tracing::warn!(
            rooms = moved,
            "the last run did not stop cleanly: the rooms it delivered before their commits go on under new epochs (their clients reset)"
        );
    }
    let run = (crate::random::epoch() as i64).max(1);
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('run', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![run],
    )?;
    Ok((run, backup_taken_at.is_some()))
}

/// Move every room to a new epoch; how many.
fn move_all_epochs(conn: &Connection) -> StoreResult<usize> {
    move_epochs(conn, "SELECT id FROM rooms", [])
}

/// Move every room the run `run` marked to a new epoch; how many.
fn move_run_epochs(conn: &Connection, run: i64) -> StoreResult<usize> {
    move_epochs(
        conn,
        "SELECT room FROM room_heads WHERE run = ?1",
        params![run],
    )
}

/// Move the rooms `select` names (their ids) to new epochs, each its own; how many.
fn move_epochs(conn: &Connection, select: &str, p: impl rusqlite::Params) -> StoreResult<usize> {
    let rooms: Vec<String> = conn
        .prepare(select)?
        .query_map(p, |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for room in &rooms {
        conn.execute(
            "UPDATE rooms SET epoch = ?2 WHERE id = ?1",
            params![room, crate::random::epoch() as i64],
        )?;
    }
    Ok(rooms.len())
}
