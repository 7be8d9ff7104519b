//! The cluster store: everything in Redis (a single server, or a Redis Cluster), shared by every
//! node.
//!
//! ## Keys
//! A room's keys share the hash tag `{<room id>}`, so each of its atomic operations is one Lua
//! script on one shard:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `cr:{r}:state` | hash | `head`, `version` (seq of the last state-changing entry), `epoch`, `deleted` |
//! | `cr:{r}:meta` | string | the room's projection (name, kind, members, masters, settings…) as JSON |
//! | `cr:{r}:log` | hash | seq → entry (`{ts, author, body}` JSON); a recall rewrites its message |
//! | `cr:{r}:cmid` | hash | `author \n client_msg_id` → seq (D2) |
//! | `cr:{r}:msgs`, `cr:{r}:msgs:<user>` | zset | message seqs, all and per author (unread counts) |
//! | `cr:{r}:reads` | hash | user → read marker |
//! | `cr:{r}:items` | hash | item id → item JSON (notes, events, tasks, folders, files) |
//! | `cr:{r}:files` | set | file ids stored for the room |
//! | `cr:{r}:invite` | string | the invitation link (JSON) |
//! | `cr:{r}:audit` | list | audit records written with their entries, until copied to the companies' logs |
//!
//! Directory keys (`cr:co:<id>`, `cr:u:<id>`, `cr:contacts:<user>`, `cr:storage:<company>`,
//! `cr:file:<id>`, `cr:invite:<token>`, `cr:audit:<company>`, and `cr:retired:u:<id>` /
//! `cr:retired:co:<id>` for deleted ids, A2) live on whatever shard they hash to. Two indexes are kept as **supersets** — a user's rooms (`cr:user:<id>:rooms`) and a
//! company's groups (`cr:co:<id>:groups`) are added to *before* the room entry that needs them
//! commits, and every read checks the room's own projection — so a crash between the two writes
//! never shows a room to someone who is not in it.
//!
//! Storage (G17): `cr:storage:<company>` counts the bytes of the company's recorded files; an
//! upload in progress holds a **lease** (`{cr:storage:<company>}:leases`, ids by expiry on
//! Redis's clock, and `…:leased`, their bytes — one slot with the count) that its node renews
//! while the bytes flow and that lapses otherwise, so a node that dies mid-upload holds no quota
//! for long ([`STORAGE`]). Attachments (M1) are claimed with `SET NX` on `cr:file:<id>:claim`,
//! and listed for the files sweep in `cr:attachments` until it settles them.
//!
//! ## Appends
//! One writer task takes appends in call order. A plain post (one message) is one script that
//! dedupes by client id, takes the next seq and writes the entry; consecutive posts to a room go
//! in one pipeline. Any other entry is projected in Rust by the one projection the SQLite store and
//! the room actor use ([`crate::domain::projection`]) and written by a
//! script that first checks that the room's head (and every item it rewrites) is still what the
//! projection was computed from; if not, it is computed again. Non-post entries move the room's
//! state `version`.
//!
//! Audit records (G19) are written by the room's own scripts into the room's outbox
//! (`cr:{r}:audit`), in the same atomic step as their entry, and copied from there to each
//! company's audit log (`cr:audit:<company>`, on other shards) and the log of every company
//! (`cr:audit:*`, the operator's) right after — each exactly once,
//! by an id fixed the first time it is copied. A node that dies in between leaves them in the
//! outbox, and the room in `cr:audit:pending`; every audit read copies what is pending first.
//! Still written after the room's script (other shards): the release of storage of deleted files.
//!
//! ## Files
//! One file per concern, the same names as the SQLite store's: `directory`, `log`,
//! `memberships`, `items`, `files`, `invites`, `audit` (each implements its trait of
//! [`crate::store`]); `writer` (the append queue) and `plan` (projected appends); `conn` and
//! `scripts` (the Lua, as `scripts/*.lua`).

mod audit;
mod conn;
mod directory;
mod files;
mod invites;
mod items;
mod keys;
mod log;
mod memberships;
mod plan;
mod scripts;
mod search;
mod writer;

pub use conn::Conn;
use keys::backend;
pub use keys::{decode_published, room_channel};
use scripts::Scripts;

use super::*;
use crate::domain::directory::{
    patch_settings, Company, CompanySettings, SettingsPatch, User, UserChange,
};
use crate::domain::projection::{self, ItemChange};
use ::redis::{Cmd, Pipeline, Value};
use crossroom_protocol::{EventBody, Item, RoomKind};
use futures_util::FutureExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Retries of a projected append whose room moved meanwhile.
const MAX_RETRIES: usize = 100;

// ---- the store -----------------------------------------------------------------------------

struct Job {
    room: RoomId,
    entries: Vec<NewEntry>,
    expect: Option<u64>,
    done: oneshot::Sender<StoreResult<Vec<Appended>>>,
}

impl Job {
    fn is_post(&self) -> bool {
        self.entries.len() == 1 && self.entries[0].client_msg_id().is_some()
    }
}

pub struct RedisStore {
    inner: Arc<Inner>,
    writer: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
}

struct Inner {
    conn: Conn,
    scripts: Scripts,
    ack: Ack,
}

/// What an acknowledgement waits for: the entry copied to `replicas` replicas of its shard
/// (Redis `WAIT`), at most `timeout_ms`. 0 replicas: the primary's commit (and its AOF) alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub replicas: u32,
    pub timeout_ms: u64,
}

impl RedisStore {
    /// Connect (one URL: a single Redis; several: Redis Cluster seeds) and start the writer.
    pub async fn open(urls: &[String]) -> StoreResult<RedisStore> {
        let defaults = crate::config::ReplicationConfig::default();
        RedisStore::open_with(urls, defaults.ack_replicas, defaults.ack_timeout_ms).await
    }

    /// [`RedisStore::open`], acknowledging appends once `ack_replicas` replicas have them
    /// (`None`: 1 when every primary has a replica at start, else 0).
    pub async fn open_with(
        urls: &[String],
        ack_replicas: Option<u32>,
        ack_timeout_ms: u64,
    ) -> StoreResult<RedisStore> {
        let mut conn = Conn::connect(urls).await?;
        // Fail now, not on the first request, when Redis is not there.
        let _: String = ::redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        let replicas = match ack_replicas {
            Some(n) => n,
            None => u32::from(conn.fewest_replicas().await? > 0),
        };
        tracing::info!(
            ack_replicas = replicas,
            "appends are acknowledged after WAIT for this many replicas"
        );
        let inner = Arc::new(Inner {
            conn,
            scripts: Scripts::new(),
            ack: Ack {
                replicas,
                timeout_ms: ack_timeout_ms,
            },
        });
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(inner.clone().write_loop(rx));
        Ok(RedisStore {
            inner,
            writer: std::sync::Mutex::new(Some(tx)),
        })
    }

    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    /// A secret every node must share (token signing, operator key): the first node's
    /// `candidate` wins; every node gets the same value.
    pub async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let key = format!("cr:secret:{name}");
        let _: Value = ::redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        // At start-up: a replica that just attached acknowledges within a second or two.
        let mut settled = self.inner.settle([key.clone()]).await;
        for _ in 0..10 {
            if !matches!(settled, Err(StoreError::Unreplicated(_))) {
                break;
            }
            settled = self.inner.settle([key.clone()]).await;
        }
        settled?;
        let value: Option<String> = ::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        value.ok_or_else(|| StoreError::backend(format!("secret {name} vanished")))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn close(&self) {
        // The writer finishes what is queued once the last sender is gone.
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
    }
}
