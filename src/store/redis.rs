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
//! `cr:file:<id>`, `cr:invite:<token>`, `cr:audit:<company>`) live on whatever shard they hash
//! to. Two indexes are kept as **supersets** — a user's rooms (`cr:user:<id>:rooms`) and a
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

use super::*;
use crate::domain::directory::{
    patch_settings, Company, CompanySettings, SettingsPatch, User, UserChange,
};
use crate::domain::projection::{self, ItemChange};
use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use crossroom_protocol::{EventBody, Features, Item, RoomKind};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most appends the writer takes from its queue at once.
const WRITE_BATCH: usize = 512;
/// Retries of a projected append whose room moved meanwhile.
const MAX_RETRIES: usize = 100;

/// Rooms whose audit outbox may hold records not yet written to the companies' audit logs.
const AUDIT_PENDING: &str = "cr:audit:pending";

/// A company's audit log (`cr:audit:<company>`), or every company's (`cr:audit:*`, the
/// operator's view: `*` is no company id).
fn audit_key(company: Option<&CompanyId>) -> String {
    match company {
        Some(c) => format!("cr:audit:{}", c.0),
        None => "cr:audit:*".to_owned(),
    }
}

/// Attachments the files sweep has not settled (M1), scored by upload time (ms). A superset:
/// written before the file's record, and an entry whose record is gone is dropped by the sweep.
const ATTACHMENTS: &str = "cr:attachments";

/// The claim of attachment `id` (M1): `SET NX`, so the first claim wins.
fn claim_key(id: &str) -> String {
    format!("cr:file:{id}:claim")
}

/// An audit record waiting in a room's outbox (`cr:{r}:audit`), tagged `room:epoch:seq` by the
/// entry it records.
#[derive(Serialize, Deserialize)]
struct OutboxAudit {
    tag: String,
    audit: NewAudit,
}

/// G20's count of the external groups a company owns.
fn owned_groups_key(company: &CompanyId) -> String {
    format!("cr:co:{}:owned_groups", company.0)
}

/// The pub/sub channel of a room's events (same hash tag as the room's keys).
pub fn room_channel(room: &RoomId) -> String {
    format!("cr:{{{}}}:ev", room.0)
}

/// A Redis connection: a single server (reconnecting) or a cluster.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A command that gets no answer in this long fails (Redis down or partitioned), so a request
/// is refused rather than left hanging; the client retries (posts are idempotent).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connecting (and reconnecting) gives up after this long per attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn manager_config() -> ::redis::aio::ConnectionManagerConfig {
    ::redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_max_delay(Duration::from_millis(500))
}

fn resp3(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}protocol=resp3")
}

impl Conn {
    /// A RESP3 connection whose pub/sub messages (and reconnect notices) go to `pushes`; it
    /// resubscribes by itself after a reconnect.
    pub async fn connect_with_pushes(
        urls: &[String],
        pushes: tokio::sync::mpsc::UnboundedSender<::redis::PushInfo>,
    ) -> Result<Conn, StoreError> {
        match urls {
            [] => Err(StoreError::backend("no Redis URL given")),
            [one] => {
                let client = ::redis::Client::open(resp3(one).as_str()).map_err(backend)?;
                let config = manager_config()
                    // Subscriptions wait for messages: no response deadline on them.
                    .set_response_timeout(None)
                    .set_push_sender(pushes)
                    .set_automatic_resubscription();
                Ok(Conn::Single(
                    client
                        .get_connection_manager_with_config(config)
                        .await
                        .map_err(backend)?,
                ))
            }
            many => {
                let client =
                    ::redis::cluster::ClusterClientBuilder::new(many.iter().map(|u| resp3(u)))
                        .use_protocol(::redis::ProtocolVersion::RESP3)
                        .push_sender(pushes)
                        .connection_timeout(CONNECT_TIMEOUT)
                        .build()
                        .map_err(backend)?;
                Ok(Conn::Cluster(
                    client.get_async_connection().await.map_err(backend)?,
                ))
            }
        }
    }

    /// Connect to `urls`: one URL is a single server; several are Redis Cluster seed nodes.
    pub async fn connect(urls: &[String]) -> Result<Conn, StoreError> {
        match urls {
            [] => Err(StoreError::backend("no Redis URL given")),
            [one] => {
                let client = ::redis::Client::open(one.as_str()).map_err(backend)?;
                Ok(Conn::Single(
                    client
                        .get_connection_manager_with_config(manager_config())
                        .await
                        .map_err(backend)?,
                ))
            }
            many => {
                let client =
                    ::redis::cluster::ClusterClientBuilder::new(many.iter().map(String::as_str))
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(RESPONSE_TIMEOUT)
                        .build()
                        .map_err(backend)?;
                Ok(Conn::Cluster(
                    client.get_async_connection().await.map_err(backend)?,
                ))
            }
        }
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend(e)
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(backend)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(backend)
}

// ---- keys ----------------------------------------------------------------------------------

fn rk(room: &RoomId, what: &str) -> String {
    format!("cr:{{{}}}:{what}", room.0)
}

fn company_key(c: &CompanyId) -> String {
    format!("cr:co:{}", c.0)
}

fn user_key(u: &UserId) -> String {
    format!("cr:u:{}", u.0)
}

fn user_rooms_key(u: &UserId) -> String {
    format!("cr:user:{}:rooms", u.0)
}

/// A duration in whole milliseconds, as a script argument.
fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

fn cmid_field(author: &UserId, cmid: &str) -> String {
    format!("{}\n{cmid}", author.0)
}

// ---- stored shapes -------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct StoredCompany {
    company: Company,
    key_hash: String,
}

/// A log entry as stored: seq is the field name, epoch and room are the room's.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    ts: i64,
    author: UserId,
    body: EventBody,
}

/// The room projection kept in `cr:{r}:meta`.
#[derive(Serialize, Deserialize, Clone)]
struct Meta {
    kind: RoomKind,
    name: String,
    description: String,
    owner_company: CompanyId,
    created_by: UserId,
    created_at: i64,
    features: Features,
    masters: Vec<UserId>,
    members: Vec<UserId>,
    converted_from: Option<RoomId>,
    image: Option<String>,
    member_since: HashMap<UserId, u64>,
}

impl Meta {
    fn of(r: &RoomRecord) -> Meta {
        Meta {
            kind: r.kind,
            name: r.name.clone(),
            description: r.description.clone(),
            owner_company: r.owner_company.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            features: r.features,
            masters: r.masters.clone(),
            members: r.members.clone(),
            converted_from: r.converted_from.clone(),
            image: r.image.clone(),
            member_since: r.member_since.clone(),
        }
    }

    fn record(self, id: &RoomId, epoch: u64, head: u64, version: u64) -> RoomRecord {
        RoomRecord {
            id: id.clone(),
            kind: self.kind,
            name: self.name,
            description: self.description,
            owner_company: self.owner_company,
            created_by: self.created_by,
            created_at: self.created_at,
            features: self.features,
            masters: self.masters,
            members: self.members,
            epoch,
            head,
            version,
            converted_from: self.converted_from,
            image: self.image,
            member_since: self.member_since,
        }
    }
}

// ---- scripts -------------------------------------------------------------------------------

/// Start a room's log at seq 1 unless its state exists (in use, or a deleted room's tombstone):
/// creation, and restoring a lost room. KEYS: state, meta, log. ARGV: epoch, meta, first entry.
const START: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'head', 1, 'version', 1, 'epoch', ARGV[1], 'deleted', 0)
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 1, ARGV[3])
if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[4], ARGV[4]) end
return 1
";

/// One line of a user's room list. KEYS: state, meta, reads, msgs, the user's msgs. ARGV: user.
/// Returns head, epoch, deleted, version, meta, the read marker, messages after it, and the
/// user's own among them.
const ROOM_OF: &str = r"
local st = redis.call('HMGET', KEYS[1], 'head', 'epoch', 'deleted', 'version')
local meta = redis.call('GET', KEYS[2])
local lr = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local all = redis.call('ZCOUNT', KEYS[4], '(' .. lr, '+inf')
local mine = redis.call('ZCOUNT', KEYS[5], '(' .. lr, '+inf')
return {st[1] or false, st[2] or false, st[3] or false, st[4] or false, meta or false, lr, all, mine}
";

/// A batch of posts to one room, in order. KEYS: state, log, cmid, msgs. ARGV: expected state
/// version ('' = any), publish command ('' = the caller publishes after replication), channel,
/// count, then per post: cmid field, entry, the author's msgs key. Returns {-1} (gone), {-2}
/// (the state version moved), or {epoch, then per post its new seq, or minus the seq of the
/// post it repeats, then — when the caller publishes — the server's run id}.
const POSTS: &str = r"
local st = redis.call('HMGET', KEYS[1], 'head', 'epoch', 'deleted', 'version')
if not st[1] or st[3] == '1' then return {-1} end
if ARGV[1] ~= '' and st[4] ~= ARGV[1] then return {-2} end
local out = {st[2]}
local n = tonumber(ARGV[4])
for k = 0, n - 1 do
  local f, e, mk = ARGV[5 + 3 * k], ARGV[6 + 3 * k], ARGV[7 + 3 * k]
  local dup = redis.call('HGET', KEYS[3], f)
  if dup then
    out[#out + 1] = -tonumber(dup)
  else
    local seq = redis.call('HINCRBY', KEYS[1], 'head', 1)
    redis.call('HSET', KEYS[2], seq, e)
    redis.call('HSET', KEYS[3], f, seq)
    redis.call('ZADD', KEYS[4], seq, seq)
    redis.call('ZADD', mk, seq, seq)
    if ARGV[2] ~= '' then redis.call(ARGV[2], ARGV[3], seq .. '\n' .. st[2] .. '\n' .. e) end
    out[#out + 1] = seq
  end
end
if ARGV[2] == '' then out[#out + 1] = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') end
return out
";

/// A projected append. KEYS: state, log, meta, items, cmid, msgs. ARGV: expected head, new head,
/// meta (or ''), expected state version ('' = any), new state version, publish command, channel,
/// then counted groups: log writes (seq, entry; new ones are published), item writes (id, expected old or '', new or '' to delete), cmid writes
/// (field, seq), message indexes (seq, author msgs key). Returns 1, or -1 (gone), -2 (head
/// moved), -3 (an item changed), -4 (the state version moved).
const PROJECTED: &str = r"
local st = redis.call('HMGET', KEYS[1], 'head', 'deleted', 'version', 'epoch')
if not st[1] or st[2] == '1' then return -1 end
if ARGV[4] ~= '' and st[3] ~= ARGV[4] then return -4 end
if st[1] ~= ARGV[1] then return -2 end
local i = 8
local n = tonumber(ARGV[i]); i = i + 1
local logs = i; i = i + 2 * n
local ni = tonumber(ARGV[i]); i = i + 1
local items = i
for k = 0, ni - 1 do
  local cur = redis.call('HGET', KEYS[4], ARGV[items + 3 * k]) or ''
  if cur ~= ARGV[items + 3 * k + 1] then return -3 end
end
i = i + 3 * ni
for k = 0, n - 1 do redis.call('HSET', KEYS[2], ARGV[logs + 2 * k], ARGV[logs + 2 * k + 1]) end
for k = 0, ni - 1 do
  local id, new = ARGV[items + 3 * k], ARGV[items + 3 * k + 2]
  if new == '' then redis.call('HDEL', KEYS[4], id) else redis.call('HSET', KEYS[4], id, new) end
end
local nc = tonumber(ARGV[i]); i = i + 1
for k = 0, nc - 1 do redis.call('HSET', KEYS[5], ARGV[i + 2 * k], ARGV[i + 2 * k + 1]) end
i = i + 2 * nc
local nm = tonumber(ARGV[i]); i = i + 1
for k = 0, nm - 1 do
  redis.call('ZADD', KEYS[6], ARGV[i + 2 * k], ARGV[i + 2 * k])
  redis.call('ZADD', ARGV[i + 2 * k + 1], ARGV[i + 2 * k], ARGV[i + 2 * k])
end
i = i + 2 * nm
local na = tonumber(ARGV[i]); i = i + 1
for k = 0, na - 1 do redis.call('RPUSH', KEYS[7], ARGV[i + k]) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
redis.call('HSET', KEYS[1], 'head', ARGV[2], 'version', ARGV[5])
local head = tonumber(ARGV[1])
for k = 0, n - 1 do
  local seq = ARGV[logs + 2 * k]
  if tonumber(seq) > head and ARGV[6] ~= '' then
    redis.call(ARGV[6], ARGV[7], seq .. '\n' .. st[4] .. '\n' .. ARGV[logs + 2 * k + 1])
  end
end
if ARGV[6] == '' then return {1, string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')} end
return 1
";

/// Compare-and-set a string key. KEYS: key. ARGV: old, new.
const CAS_STRING: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
";

/// Compare-and-set one hash field ('' = absent). KEYS: hash. ARGV: field, old, new.
const CAS_FIELD: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// Reserve storage within a quota. KEYS: used. ARGV: bytes, quota.
const RESERVE: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
return 1
";

/// A company's storage (G17): `used` counts its recorded files; uploads in progress hold leases
/// (ids in a sorted set by expiry, their bytes in a hash, in `used`'s slot) that lapse unless
/// renewed, on Redis's clock. KEYS: used, lease expiries, lease bytes. ARGV[1] the operation:
/// - `reserve` id bytes quota ttl_ms → 1 if used + live leases + bytes fit in quota (leased), 0;
/// - `renew` id ttl_ms → 1, or 0 when the lease lapsed;
/// - `commit` id bytes → the lease's bytes become the file's (also when it lapsed);
/// - `release` id → the lease is given back;
/// - `used` → used + live leases.
const STORAGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(lapsed) do redis.call('HDEL', KEYS[3], id) end
if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local op = ARGV[1]
local function held()
  local sum = 0
  for _, b in ipairs(redis.call('HVALS', KEYS[3])) do sum = sum + tonumber(b) end
  return sum
end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if op == 'reserve' then
  if used + held() + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return 0 end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  return 1
elseif op == 'renew' then
  if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
  return 1
elseif op == 'commit' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  redis.call('INCRBY', KEYS[1], ARGV[3])
  return 1
elseif op == 'release' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  return 1
end
return used + held()
";

/// Give storage back, never below zero. KEYS: used. ARGV: bytes.
const RELEASE: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = used - tonumber(ARGV[1])
if left < 0 then left = 0 end
redis.call('SET', KEYS[1], left)
return left
";

/// Count one more, if counting has started. KEYS: the count.
const COUNT_IN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end
return 0
";

/// Move a read marker forward. KEYS: reads. ARGV: user, seq.
const READ_MARKER: &str = r"
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
";

/// Delete a room for good, keeping the state hash as a tombstone. KEYS: state, the audit outbox
/// (kept; ARGV[1], the deletion's record, goes into it), then the keys to delete. Returns 0 when
/// it did not exist.
const DELETE: &str = r"
local st = redis.call('HMGET', KEYS[1], 'head', 'deleted')
if not st[1] or st[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'deleted', 1)
redis.call('RPUSH', KEYS[2], ARGV[1])
for k = 3, #KEYS do redis.call('DEL', KEYS[k]) end
return 1
";

/// Set or clear a room's invitation, its audit record into the room's outbox. KEYS: state,
/// invite, audit outbox. ARGV: invite JSON or '', the outbox item.
const SET_INVITE: &str = r"
local st = redis.call('HMGET', KEYS[1], 'head', 'deleted')
if not st[1] or st[2] == '1' then return -1 end
redis.call('RPUSH', KEYS[3], ARGV[2])
local old = redis.call('GET', KEYS[2]) or ''
if ARGV[1] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[1]) end
return old
";

struct Scripts {
    start: Script,
    cas_string: Script,
    projected: Script,
    cas_field: Script,
    reserve: Script,
    release: Script,
    storage: Script,
    read_marker: Script,
    delete: Script,
    set_invite: Script,
    count_in: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            start: Script::new(START),
            cas_string: Script::new(CAS_STRING),
            projected: Script::new(PROJECTED),
            cas_field: Script::new(CAS_FIELD),
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
            storage: Script::new(STORAGE),
            read_marker: Script::new(READ_MARKER),
            delete: Script::new(DELETE),
            set_invite: Script::new(SET_INVITE),
            count_in: Script::new(COUNT_IN),
        }
    }
}

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
            None => u32::from(fewest_replicas(&conn).await? > 0),
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
        tokio::spawn(write_loop(inner.clone(), rx));
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

/// Take appends in call order; run each room's share of a batch in order, rooms side by side.
async fn write_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let mut by_room: Vec<(RoomId, Vec<Job>)> = Vec::new();
        for job in batch.drain(..) {
            match by_room.iter_mut().find(|(r, _)| *r == job.room) {
                Some((_, jobs)) => jobs.push(job),
                None => by_room.push((job.room.clone(), vec![job])),
            }
        }
        futures_util::future::join_all(
            by_room
                .into_iter()
                .map(|(room, jobs)| inner.run_room_jobs(room, jobs)),
        )
        .await;
    }
}

/// The fewest replicas any primary has (`connected_slaves` of `INFO replication`).
async fn fewest_replicas(conn: &Conn) -> StoreResult<u64> {
    let mut cmd = ::redis::cmd("INFO");
    cmd.arg("replication");
    let reply: Value = match conn {
        Conn::Single(c) => cmd.query_async(&mut c.clone()).await.map_err(backend)?,
        Conn::Cluster(c) => {
            use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            c.clone().route_command(cmd, all).await.map_err(backend)?
        }
    };
    let mut texts = Vec::new();
    collect_texts(&reply, &mut texts);
    Ok(texts
        .iter()
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("connected_slaves:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .min()
        .unwrap_or(0))
}

fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Map(kv) => kv.iter().for_each(|(_, v)| collect_texts(v, out)),
        Value::Array(vs) => vs.iter().for_each(|v| collect_texts(v, out)),
        v => out.extend(text_of(v)),
    }
}

/// Fail every job of `groups` with `e`.
fn fail_all(groups: Vec<Vec<(Job, String)>>, e: StoreError) {
    for (job, _) in groups.into_iter().flatten() {
        let _ = job.done.send(Err(e.clone()));
    }
}

/// A `POSTS` reply: the epoch and each post's seq (negative: a repeat of that seq); a trailing
/// run id is left out.
fn posts_outcome(reply: &[Value]) -> StoreResult<(u64, Vec<i64>)> {
    match reply.first() {
        Some(Value::Int(-2)) => return Err(StoreError::Conflict),
        Some(Value::Int(_)) | None => return Err(StoreError::NotFound("room".into())),
        _ => {}
    }
    let epoch = text_of(&reply[0])
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| StoreError::backend("POSTS: no epoch"))?;
    let seqs = reply[1..]
        .iter()
        .filter(|v| !matches!(v, Value::BulkString(_) | Value::SimpleString(_)))
        .map(|v| match v {
            Value::Int(i) => Ok(*i),
            _ => Err(StoreError::backend("POSTS: not a seq")),
        })
        .collect::<StoreResult<Vec<i64>>>()?;
    Ok((epoch, seqs))
}

/// A `PROJECTED` reply: its outcome, and the server's run id when the caller publishes.
fn projected_outcome(v: &Value) -> (i64, String) {
    match v {
        Value::Int(i) => (*i, String::new()),
        Value::Array(v) => (
            match v.first() {
                Some(Value::Int(i)) => *i,
                _ => 0,
            },
            v.get(1).and_then(text_of_bulk).unwrap_or_default(),
        ),
        _ => (0, String::new()),
    }
}

/// A bulk string only (not an integer).
fn text_of_bulk(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

impl Inner {
    /// Sharded pub/sub on a cluster (the channel lives on the room's shard).
    fn publish_cmd(&self) -> &'static str {
        match self.conn {
            Conn::Cluster(_) => "SPUBLISH",
            Conn::Single(_) => "PUBLISH",
        }
    }

    async fn run_room_jobs(&self, room: RoomId, jobs: Vec<Job>) {
        let mut posts: Vec<Job> = Vec::new();
        for job in jobs {
            if job.is_post() {
                posts.push(job);
                continue;
            }
            self.run_posts(&room, std::mem::take(&mut posts)).await;
            let r = self.projected_append(&room, &job.entries, job.expect).await;
            let _ = job.done.send(r);
        }
        self.run_posts(&room, posts).await;
    }

    /// Consecutive posts to one room: one script call per run of posts decided on the same
    /// state version (usually all of them: posts do not move it), in one pipeline — the group
    /// commit of the Redis store. When acknowledgements wait for replicas, `WAIT`, then publish.
    async fn run_posts(&self, room: &RoomId, posts: Vec<Job>) {
        let mut groups: Vec<Vec<(Job, String)>> = Vec::new();
        for job in posts {
            let e = &job.entries[0];
            let payload = match to_json(&StoredEntry {
                ts: e.ts,
                author: e.author.clone(),
                body: e.body.clone(),
            }) {
                Ok(p) => p,
                Err(err) => {
                    let _ = job.done.send(Err(err));
                    continue;
                }
            };
            match groups.last_mut() {
                Some(g) if g[0].0.expect == job.expect => g.push((job, payload)),
                _ => groups.push(vec![(job, payload)]),
            }
        }
        if groups.is_empty() {
            return;
        }
        let publish = if self.ack.replicas > 0 {
            ""
        } else {
            self.publish_cmd()
        };
        let mut pipe = ::redis::pipe();
        for g in &groups {
            // Sent whole (EVAL): a fresh or restarted shard never answers NOSCRIPT.
            let mut cmd = ::redis::cmd("EVAL");
            cmd.arg(POSTS)
                .arg(4)
                .arg(rk(room, "state"))
                .arg(rk(room, "log"))
                .arg(rk(room, "cmid"))
                .arg(rk(room, "msgs"))
                .arg(g[0].0.expect.map(|v| v.to_string()).unwrap_or_default())
                .arg(publish)
                .arg(room_channel(room))
                .arg(g.len());
            for (job, payload) in g {
                let e = &job.entries[0];
                cmd.arg(cmid_field(&e.author, e.client_msg_id().unwrap_or_default()))
                    .arg(payload)
                    .arg(rk(room, &format!("msgs:{}", e.author.0)));
            }
            pipe.add_command(cmd);
        }
        let replies: ::redis::RedisResult<Vec<Vec<Value>>> =
            pipe.query_async(&mut self.conn.clone()).await;
        let replies = match replies {
            Ok(r) if r.len() == groups.len() => r,
            Ok(_) => return fail_all(groups, StoreError::backend("missing pipeline reply")),
            Err(e) => return fail_all(groups, backend(e)),
        };
        let outcomes: Vec<StoreResult<(u64, Vec<i64>)>> =
            replies.iter().map(|r| posts_outcome(r)).collect();
        // Only what was written waits for the replicas; a refused group (the room moved, or is
        // gone) keeps its own error, so its posts are decided again rather than failed.
        let waited = match outcomes.iter().any(|o| o.is_ok()) && self.ack.replicas > 0 {
            true => {
                // Every group ran on the room's primary: one run id.
                let writer = replies
                    .iter()
                    .find_map(|r| r.iter().skip(1).find_map(text_of_bulk))
                    .unwrap_or_default();
                self.replicated(&rk(room, "state"), Some(&writer)).await
            }
            false => Ok(()),
        };
        let mut published = ::redis::pipe();
        for (g, outcome) in groups.into_iter().zip(outcomes) {
            match (outcome, &waited) {
                (Err(e), _) => fail_all(vec![g], e),
                (Ok(_), Err(e)) => fail_all(vec![g], e.clone()),
                (Ok((epoch, seqs)), Ok(())) => {
                    for ((job, payload), seq) in g.into_iter().zip(seqs) {
                        if seq > 0 && self.ack.replicas > 0 {
                            published
                                .cmd(self.publish_cmd())
                                .arg(room_channel(room))
                                .arg(format!("{seq}\n{epoch}\n{payload}"))
                                .ignore();
                        }
                        let result = self.post_outcome(room, &job.entries[0], epoch, seq).await;
                        let _ = job.done.send(result.map(|a| vec![a]));
                    }
                }
            }
        }
        self.publish_replicated(published).await;
    }

    /// Wait until `key`'s shard copied what this connection wrote to it to `ack.replicas`
    /// replicas, or the timeout passes (then nothing is acknowledged). `writer`, when known, is
    /// the run id of the server that ran the write (the room scripts return it).
    ///
    /// On a cluster, `WAIT` is sent to the key's primary in one pipeline with `INFO server`:
    /// the client falls back to another node when the primary's connection is down, where a
    /// `WAIT` would count that node's replicas — its run id then differs, and nothing is
    /// acknowledged.
    async fn replicated(&self, key: &str, writer: Option<&str>) -> StoreResult<()> {
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(self.ack.replicas).arg(self.ack.timeout_ms);
        let copies: i64 = match &self.conn {
            Conn::Single(c) => wait.query_async(&mut c.clone()).await.map_err(backend)?,
            Conn::Cluster(c) => {
                use ::redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
                let mut pipe = ::redis::pipe();
                pipe.cmd("INFO").arg("server").add_command(wait);
                let route = Route::with_key(key, SlotAddr::Master);
                let replies = c
                    .clone()
                    .route_pipeline(pipe, 0, 2, SingleNodeRoutingInfo::SpecificNode(route))
                    .await
                    .map_err(backend)?;
                let waited_on = replies.first().and_then(text_of).and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("run_id:"))
                        .map(|id| id.trim().to_owned())
                });
                match (waited_on, writer, replies.get(1)) {
                    (Some(id), Some(w), Some(Value::Int(n))) if id == w => *n,
                    (Some(_), None, Some(Value::Int(n))) => *n,
                    _ => {
                        return Err(StoreError::Unreplicated(
                            "WAIT did not reach the server that wrote the entry".into(),
                        ))
                    }
                }
            }
        };
        if copies < i64::from(self.ack.replicas) {
            return Err(StoreError::Unreplicated(format!(
                "{copies} of {} replicas within {} ms",
                self.ack.replicas, self.ack.timeout_ms
            )));
        }
        Ok(())
    }

    /// Acknowledge a write only once it reached the replicas: [`Inner::replicated`] on the
    /// primary of each of `keys` (once per slot). Every write outside the room scripts — the
    /// directory, the superset indexes, files, quotas, audit records, read markers, shared
    /// secrets — settles before its caller is answered, so what a client was told is stored
    /// survives a failover like a post does. (These writes return no run id: a connection re-made
    /// between the write and the `WAIT` would wait for nothing, which loses the write only if
    /// its live primary then dies within the replication lag.)
    async fn settle<I: IntoIterator<Item = String>>(&self, keys: I) -> StoreResult<()> {
        if self.ack.replicas == 0 {
            return Ok(());
        }
        let keys: Vec<String> = match &self.conn {
            // One server: one WAIT covers every key.
            Conn::Single(_) => keys.into_iter().take(1).collect(),
            Conn::Cluster(_) => {
                use ::redis::cluster_routing::{Route, SlotAddr};
                let mut slots = HashSet::new();
                keys.into_iter()
                    .filter(|k| slots.insert(Route::with_key(k, SlotAddr::Master)))
                    .collect()
            }
        };
        let waits = keys.iter().map(|k| self.replicated(k, None));
        for r in futures_util::future::join_all(waits).await {
            r?;
        }
        Ok(())
    }

    /// Publish the entries a projected append added, once they reached their replicas.
    async fn publish_new(&self, room: &RoomId, epoch: u64, plan: &Plan) {
        let mut published = ::redis::pipe();
        for (seq, entry) in plan.logs.iter().filter(|(seq, _)| *seq > plan.head) {
            published
                .cmd(self.publish_cmd())
                .arg(room_channel(room))
                .arg(format!("{seq}\n{epoch}\n{entry}"))
                .ignore();
        }
        self.publish_replicated(published).await;
    }

    /// Publish entries that reached their replicas (the scripts published nothing). A failed
    /// publish is caught up by the other nodes' head sweep.
    async fn publish_replicated(&self, pipe: Pipeline) {
        if pipe.is_empty() {
            return;
        }
        if let Err(e) = pipe.query_async::<()>(&mut self.conn.clone()).await {
            tracing::warn!(error = %e, "cannot publish replicated entries; nodes catch up by sweep");
        }
    }

    async fn post_outcome(
        &self,
        room: &RoomId,
        entry: &NewEntry,
        epoch: u64,
        seq: i64,
    ) -> StoreResult<Appended> {
        if seq > 0 {
            return Ok(Appended {
                event: Event {
                    room: room.clone(),
                    epoch,
                    seq: seq.unsigned_abs(),
                    ts: entry.ts,
                    author: entry.author.clone(),
                    body: entry.body.clone(),
                },
                duplicate: false,
            });
        }
        let seq = seq.unsigned_abs();
        let original = self
            .event_at(room, epoch, seq)
            .await?
            .ok_or_else(|| StoreError::backend(format!("room {room}: seq {seq} missing")))?;
        Ok(Appended {
            event: original,
            duplicate: true,
        })
    }

    async fn event_at(&self, room: &RoomId, epoch: u64, seq: u64) -> StoreResult<Option<Event>> {
        let raw: Option<String> = ::redis::cmd("HGET")
            .arg(rk(room, "log"))
            .arg(seq)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        raw.map(|s| entry_event(room, epoch, seq, &s)).transpose()
    }

    /// State, meta: the room as it is, or `None` when it does not exist (or was deleted).
    async fn load_room(&self, room: &RoomId) -> StoreResult<Option<RoomRecord>> {
        type State = (Option<u64>, Option<u64>, Option<String>, Option<u64>);
        let (state, meta): (State, Option<String>) = ::redis::pipe()
            .cmd("HMGET")
            .arg(rk(room, "state"))
            .arg("head")
            .arg("epoch")
            .arg("deleted")
            .arg("version")
            .cmd("GET")
            .arg(rk(room, "meta"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let (Some(head), Some(epoch), deleted, version) = state else {
            return Ok(None);
        };
        if deleted.as_deref() == Some("1") {
            return Ok(None);
        }
        let Some(meta) = meta else { return Ok(None) };
        Ok(Some(from_json::<Meta>(&meta)?.record(
            room,
            epoch,
            head,
            version.unwrap_or(0),
        )))
    }

    /// Any append but a single post: project in Rust, write if nothing moved, else again.
    async fn projected_append(
        &self,
        room: &RoomId,
        entries: &[NewEntry],
        expect: Option<u64>,
    ) -> StoreResult<Vec<Appended>> {
        for _ in 0..MAX_RETRIES {
            let Some(record) = self.load_room(room).await? else {
                return Err(StoreError::NotFound(format!("room {room}")));
            };
            let epoch = record.epoch;
            let plan = self.plan(record, entries).await?;
            // Superset indexes first: a crash after this shows nothing extra (reads check).
            for u in &plan.joined {
                let _: () = ::redis::cmd("SADD")
                    .arg(user_rooms_key(u))
                    .arg(&room.0)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
            }
            let mut inv = self.scripts.projected.prepare_invoke();
            inv.key(rk(room, "state"))
                .key(rk(room, "log"))
                .key(rk(room, "meta"))
                .key(rk(room, "items"))
                .key(rk(room, "cmid"))
                .key(rk(room, "msgs"))
                .key(rk(room, "audit"))
                .arg(plan.head)
                .arg(plan.new_head)
                .arg(&plan.meta)
                .arg(expect.map(|v| v.to_string()).unwrap_or_default())
                .arg(plan.new_version)
                .arg(if self.ack.replicas > 0 {
                    ""
                } else {
                    self.publish_cmd()
                })
                .arg(room_channel(room))
                .arg(plan.logs.len());
            for (seq, entry) in &plan.logs {
                inv.arg(*seq).arg(entry);
            }
            inv.arg(plan.items.len());
            for (id, (old, new)) in &plan.items {
                inv.arg(*id).arg(old).arg(new);
            }
            inv.arg(plan.cmids.len());
            for (field, seq) in &plan.cmids {
                inv.arg(field).arg(*seq);
            }
            inv.arg(plan.messages.len());
            for (seq, author) in &plan.messages {
                inv.arg(*seq).arg(rk(room, &format!("msgs:{}", author.0)));
            }
            inv.arg(plan.audits.len());
            for a in &plan.audits {
                inv.arg(to_json(a)?);
            }
            if !plan.audits.is_empty() {
                // Superset, before the commit: a crash after it leaves an empty outbox listed.
                let _: () = ::redis::cmd("SADD")
                    .arg(AUDIT_PENDING)
                    .arg(&room.0)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
            }
            let audited = (!plan.audits.is_empty()).then(|| AUDIT_PENDING.to_owned());
            self.settle(plan.joined.iter().map(user_rooms_key).chain(audited))
                .await?;
            let outcome: Value = inv
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            let (outcome, writer) = projected_outcome(&outcome);
            match outcome {
                1 => {
                    if self.ack.replicas > 0 {
                        self.replicated(&rk(room, "state"), Some(&writer)).await?;
                        self.publish_new(room, epoch, &plan).await;
                    }
                    for f in &plan.garbage {
                        self.delete_file(f).await?;
                    }
                    // A conversion makes one more group its owner counts (G20).
                    for a in plan.appended.iter().filter(|a| !a.duplicate) {
                        if let (EventBody::Converted { .. }, Some(owner)) =
                            (&a.event.body, a.event.author.company())
                        {
                            self.count_in_group(&owner, room).await?;
                        }
                    }
                    self.flush_audits(room).await?;
                    return Ok(plan.appended);
                }
                -1 => return Err(StoreError::NotFound(format!("room {room}"))),
                -4 => return Err(StoreError::Conflict),
                // The room moved under us (a post, another node): project again.
                _ => continue,
            }
        }
        Err(StoreError::backend(format!(
            "room {room}: too much contention to append"
        )))
    }

    /// Compute what a projected append writes.
    async fn plan(&self, mut room: RoomRecord, entries: &[NewEntry]) -> StoreResult<Plan> {
        let id = room.id.clone();
        let mut plan = Plan {
            head: room.head,
            new_head: room.head,
            new_version: room.version,
            ..Plan::default()
        };
        // Items as read (the script checks they are unchanged) and as they become.
        let mut items: BTreeMap<u64, (String, Option<Item>)> = BTreeMap::new();
        let mut state_changed = false;
        // Client ids taken earlier in this very batch.
        let mut batch_cmids: HashMap<String, usize> = HashMap::new();
        for entry in entries {
            if let Some(cmid) = entry.client_msg_id() {
                let field = cmid_field(&entry.author, cmid);
                if let Some(&at) = batch_cmids.get(&field) {
                    let event = plan.appended[at].event.clone();
                    plan.appended.push(Appended {
                        event,
                        duplicate: true,
                    });
                    continue;
                }
                batch_cmids.insert(field.clone(), plan.appended.len());
                let dup: Option<u64> = ::redis::cmd("HGET")
                    .arg(rk(&id, "cmid"))
                    .arg(&field)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                if let Some(seq) = dup {
                    let event = self
                        .event_at(&id, room.epoch, seq)
                        .await?
                        .ok_or_else(|| StoreError::backend(format!("seq {seq} missing")))?;
                    plan.appended.push(Appended {
                        event,
                        duplicate: true,
                    });
                    continue;
                }
                plan.cmids.push((field, plan.new_head + 1));
                plan.messages
                    .push((plan.new_head + 1, entry.author.clone()));
            }
            plan.new_head += 1;
            let seq = plan.new_head;
            if moves_version(&entry.body) {
                plan.new_version = seq;
            }
            let event = Event {
                room: id.clone(),
                epoch: room.epoch,
                seq,
                ts: entry.ts,
                author: entry.author.clone(),
                body: entry.body.clone(),
            };
            plan.logs.push((
                seq,
                to_json(&StoredEntry {
                    ts: entry.ts,
                    author: entry.author.clone(),
                    body: entry.body.clone(),
                })?,
            ));
            state_changed |= self
                .plan_projection(&mut plan, &mut room, &mut items, &event)
                .await?;
            plan.appended.push(Appended {
                event,
                duplicate: false,
            });
        }
        for (id, (old, new)) in items {
            let new = new.as_ref().map(to_json).transpose()?.unwrap_or_default();
            if new != old {
                plan.items.push((id, (old, new)));
            }
        }
        if state_changed || entries.iter().any(|e| e.client_msg_id().is_none()) {
            plan.meta = to_json(&Meta::of(&room))?;
        }
        Ok(plan)
    }

    /// What the one projection (`domain::projection`) of `event` writes: the room (returns
    /// whether it changed), the user indexes, the items, a recalled message, freed files, audit.
    async fn plan_projection(
        &self,
        plan: &mut Plan,
        room: &mut RoomRecord,
        items: &mut BTreeMap<u64, (String, Option<Item>)>,
        event: &Event,
    ) -> StoreResult<bool> {
        let id = room.id.clone();
        // The one projection (`domain::projection`), persisted by the script.
        let p = projection::project(room, event);
        plan.joined.extend(
            p.members
                .iter()
                .filter(|m| m.member || m.master)
                .map(|m| m.user.clone()),
        );
        plan.garbage.extend(p.freed);
        if let Some(message) = p.recall {
            self.plan_recall(&id, room, message, plan).await?;
        }
        match p.item {
            ItemChange::None => {}
            ItemChange::Apply(target) => {
                let current = self.item_entry(&id, target, items).await?;
                current.1 = crate::domain::features::apply(current.1.take(), event);
            }
            ItemChange::Purge(root) => {
                let (gone, files) = projection::purge(&self.items_of(&id).await?, root);
                for g in gone {
                    self.item_entry(&id, g, items).await?.1 = None;
                }
                plan.garbage.extend(files);
            }
        }
        if let Some(audit) = p.audit {
            let tag = format!("{}:{}:{}", id.0, event.epoch, event.seq);
            plan.audits.push(OutboxAudit { tag, audit });
        }
        Ok(p.room_changed)
    }

    /// M1: the recalled message keeps its place and client id, and loses the rest; its
    /// attachments' bytes are freed.
    async fn plan_recall(
        &self,
        id: &RoomId,
        room: &RoomRecord,
        seq: u64,
        plan: &mut Plan,
    ) -> StoreResult<()> {
        // A message recalled in the same batch it was posted in is not a case the actor makes.
        let Some(event) = self.event_at(id, room.epoch, seq).await? else {
            return Ok(());
        };
        if let Some((placeholder, freed)) = projection::recalled(event.body) {
            plan.garbage.extend(freed);
            plan.logs.push((
                seq,
                to_json(&StoredEntry {
                    ts: event.ts,
                    author: event.author,
                    body: placeholder,
                })?,
            ));
        }
        Ok(())
    }

    async fn item_entry<'a>(
        &self,
        room: &RoomId,
        id: u64,
        items: &'a mut BTreeMap<u64, (String, Option<Item>)>,
    ) -> StoreResult<&'a mut (String, Option<Item>)> {
        match items.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::btree_map::Entry::Vacant(e) => {
                let raw: Option<String> = ::redis::cmd("HGET")
                    .arg(rk(room, "items"))
                    .arg(id)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                let item = raw.as_deref().map(from_json::<Item>).transpose()?;
                Ok(e.insert((raw.unwrap_or_default(), item)))
            }
        }
    }

    async fn items_of(&self, room: &RoomId) -> StoreResult<Vec<Item>> {
        let all: HashMap<u64, String> = ::redis::cmd("HGETALL")
            .arg(rk(room, "items"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let mut items: Vec<Item> = all
            .values()
            .map(|s| from_json::<Item>(s))
            .collect::<StoreResult<_>>()?;
        items.sort_by_key(Item::id);
        Ok(items)
    }

    async fn delete_file(&self, id: &str) -> StoreResult<()> {
        let key = format!("cr:file:{id}");
        let raw: Option<String> = ::redis::cmd("GETDEL")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        if let Some(raw) = raw {
            let f: FileRecord = from_json(&raw)?;
            let _: () = ::redis::cmd("SREM")
                .arg(rk(&f.room, "files"))
                .arg(id)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            let mut written = vec![key, rk(&f.room, "files")];
            if f.attachment {
                let _: () = ::redis::cmd("DEL")
                    .arg(claim_key(id))
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                let _: () = ::redis::cmd("ZREM")
                    .arg(ATTACHMENTS)
                    .arg(id)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                written.extend([claim_key(id), ATTACHMENTS.to_owned()]);
            }
            self.settle(written).await?;
            self.release(&f.company, f.size).await?;
        }
        Ok(())
    }

    /// Run [`STORAGE`] on `company`'s keys, settled when it wrote.
    async fn storage(&self, company: &CompanyId, args: &[&str]) -> StoreResult<i64> {
        let used = format!("cr:storage:{}", company.0);
        // Hash-tagged by `used`'s whole name: the same slot.
        let (leases, leased) = (format!("{{{used}}}:leases"), format!("{{{used}}}:leased"));
        let mut inv = self.scripts.storage.prepare_invoke();
        inv.key(&used).key(leases).key(leased);
        for a in args {
            inv.arg(*a);
        }
        let out: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        if args.first() != Some(&"used") {
            self.settle([used]).await?;
        }
        Ok(out)
    }

    async fn release(&self, company: &CompanyId, bytes: u64) -> StoreResult<()> {
        let key = format!("cr:storage:{}", company.0);
        let _: i64 = self
            .scripts
            .release
            .key(&key)
            .arg(bytes)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        self.settle([key]).await
    }

    /// G20: take one of `company`'s group slots if it owns fewer than `max` groups. The count is
    /// kept exactly beside the rooms (it lives on another shard than any room's keys): taken
    /// before a group is created, given back when the creation fails or the group is deleted.
    async fn claim_group(&self, company: &CompanyId, max: u64) -> StoreResult<bool> {
        let ok: i64 = self
            .scripts
            .reserve
            .key(owned_groups_key(company))
            .arg(1)
            .arg(max)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        self.settle([owned_groups_key(company)]).await?;
        Ok(ok == 1)
    }

    /// A room converted into a group of `company`: in its group index, and in its count if it
    /// has one (else the first count finds it in the index).
    async fn count_in_group(&self, company: &CompanyId, room: &RoomId) -> StoreResult<()> {
        let _: () = ::redis::cmd("SADD")
            .arg(format!("cr:co:{}:groups", company.0))
            .arg(&room.0)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let _: i64 = self
            .scripts
            .count_in
            .key(owned_groups_key(company))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        self.settle([
            format!("cr:co:{}:groups", company.0),
            owned_groups_key(company),
        ])
        .await
    }

    async fn release_group(&self, company: &CompanyId) -> StoreResult<()> {
        let _: i64 = self
            .scripts
            .release
            .key(owned_groups_key(company))
            .arg(1)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        self.settle([owned_groups_key(company)]).await
    }

    /// Write the audit records waiting in `room`'s outbox — put there by the room's own script,
    /// in the same atomic step as their entries — each exactly once: a record's id is fixed the
    /// first time it is seen (`cr:audit:id:<tag>`), so writing it again after a crash rewrites the
    /// same record. A record leaves the outbox only once written.
    async fn flush_audits(&self, room: &RoomId) -> StoreResult<()> {
        let outbox = rk(room, "audit");
        loop {
            let raw: Option<String> = ::redis::cmd("LINDEX")
                .arg(&outbox)
                .arg(0)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            let Some(raw) = raw else {
                let _: () = ::redis::cmd("SREM")
                    .arg(AUDIT_PENDING)
                    .arg(&room.0)
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(backend)?;
                return self.settle([AUDIT_PENDING.to_owned()]).await;
            };
            let item: OutboxAudit = from_json(&raw)?;
            let id = self.audit_id(&item.tag).await?;
            self.write_audit_as(id, &item.audit).await?;
            let _: () = ::redis::cmd("LREM")
                .arg(&outbox)
                .arg(1)
                .arg(&raw)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
        }
    }

    /// The id of the audit record tagged `tag`: the one it was given the first time it was seen
    /// (kept a week: far longer than any retry), or a new one.
    async fn audit_id(&self, tag: &str) -> StoreResult<u64> {
        let key = format!("cr:audit:id:{tag}");
        let get = |key: String| async move {
            ::redis::cmd("GET")
                .arg(key)
                .query_async::<Option<u64>>(&mut self.conn.clone())
                .await
                .map_err(backend)
        };
        if let Some(id) = get(key.clone()).await? {
            return Ok(id);
        }
        let fresh: u64 = ::redis::cmd("INCR")
            .arg("cr:audit:seq")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        // Whoever set it first (another node flushing the same outbox) wins.
        let _: () = ::redis::cmd("SET")
            .arg(&key)
            .arg(fresh)
            .arg("NX")
            .arg("EX")
            .arg(7 * 86_400)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        self.settle(["cr:audit:seq".to_owned(), key.clone()])
            .await?;
        get(key)
            .await?
            .ok_or_else(|| StoreError::backend("audit id vanished"))
    }

    /// Write every room's pending audit records (before audit records are read).
    async fn flush_pending_audits(&self) -> StoreResult<()> {
        let rooms: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(AUDIT_PENDING)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        for r in rooms {
            self.flush_audits(&RoomId(r)).await?;
        }
        Ok(())
    }

    /// Write an audit record under `id`; writing the same record again changes nothing.
    async fn write_audit_as(&self, id: u64, a: &NewAudit) -> StoreResult<()> {
        let record = to_json(&AuditEntry {
            id,
            ts: a.ts,
            room: a.room.clone(),
            actor: a.actor.clone(),
            action: a.action.clone(),
            detail: serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null),
            companies: a.companies.clone(),
        })?;
        let keys: Vec<String> = a
            .companies
            .iter()
            .map(|c| audit_key(Some(c)))
            .chain([audit_key(None)])
            .collect();
        for key in &keys {
            let _: () = ::redis::cmd("ZADD")
                .arg(key)
                .arg(id)
                .arg(&record)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
        }
        self.settle(keys).await
    }
}

#[derive(Default)]
struct Plan {
    head: u64,
    new_head: u64,
    new_version: u64,
    meta: String,
    logs: Vec<(u64, String)>,
    items: Vec<(u64, (String, String))>,
    cmids: Vec<(String, u64)>,
    messages: Vec<(u64, UserId)>,
    /// Users to index (before the commit) as possibly in the room.
    joined: Vec<UserId>,
    /// File records (and their storage) to drop after the commit.
    garbage: Vec<String>,
    /// Audit records, written into the room's outbox by the script itself.
    audits: Vec<OutboxAudit>,
    appended: Vec<Appended>,
}

/// An entry as the append scripts publish it on the room's channel: `seq \n epoch \n entry JSON`.
pub fn decode_published(room: &RoomId, payload: &str) -> Option<Event> {
    let mut parts = payload.splitn(3, '\n');
    let seq = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.parse().ok()?;
    entry_event(room, epoch, seq, parts.next()?).ok()
}

fn entry_event(room: &RoomId, epoch: u64, seq: u64, raw: &str) -> StoreResult<Event> {
    let e: StoredEntry = from_json(raw)?;
    Ok(Event {
        room: room.clone(),
        epoch,
        seq,
        ts: e.ts,
        author: e.author,
        body: e.body,
    })
}

impl RedisStore {
    /// List `room` as possibly holding audit records not yet written (before a script puts one
    /// in its outbox: a superset, so a crash in between leaves at most an empty outbox listed).
    async fn mark_audit_pending(&self, room: &RoomId) -> StoreResult<()> {
        let _: () = ::redis::cmd("SADD")
            .arg(AUDIT_PENDING)
            .arg(&room.0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([AUDIT_PENDING.to_owned()]).await
    }

    /// G20: take a group slot of `company`, counting its groups first if it was never counted.
    async fn claim_group_slot(&self, company: &CompanyId, max: u64) -> StoreResult<()> {
        self.count_owned_groups(company).await?;
        if self.inner.claim_group(company, max).await? {
            Ok(())
        } else {
            Err(StoreError::LimitReached(
                crate::domain::rules::group_limit_message(max),
            ))
        }
    }

    /// Count the groups `company` owns from its index and the rooms' own projections, and keep
    /// the count (the first use of G20's counter on a deployment that had none).
    /// The groups the company owns now, in id order.
    async fn groups_owned(&self, company: &CompanyId) -> StoreResult<Vec<RoomId>> {
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(format!("cr:co:{}:groups", company.0))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        ids.sort();
        // The index is a superset (written before each commit): check every candidate, all
        // reads in flight at once (the multiplexed connection pipelines them), not one round
        // trip per group — a company with thousands of groups creates its next one quickly.
        let rooms: Vec<RoomId> = ids.into_iter().map(RoomId).collect();
        let loads = rooms.iter().map(|id| self.inner.load_room(id));
        let mut out = Vec::new();
        for (id, r) in rooms
            .iter()
            .zip(futures_util::future::join_all(loads).await)
        {
            if r?.is_some_and(|r| r.kind == RoomKind::Group && r.owner_company == *company) {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    async fn recount_owned_groups(&self, company: &CompanyId) -> StoreResult<u64> {
        let n = self.groups_owned(company).await?.len() as u64;
        // Whoever counted first wins; a creation meanwhile counted itself in already.
        let _: () = ::redis::cmd("SET")
            .arg(owned_groups_key(company))
            .arg(n)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([owned_groups_key(company)]).await?;
        Ok(n)
    }

    /// Delete a room's keys and records (G16), keeping its tombstone.
    async fn delete_room_keys(&self, room: &RoomId, audit: NewAudit) -> StoreResult<Vec<String>> {
        let (files, invite, authors): (Vec<String>, Option<String>, Vec<String>) = ::redis::pipe()
            .cmd("SMEMBERS")
            .arg(rk(room, "files"))
            .cmd("GET")
            .arg(rk(room, "invite"))
            .cmd("HKEYS")
            .arg(rk(room, "cmid"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut keys: Vec<String> = ["meta", "log", "cmid", "msgs", "reads", "items", "invite"]
            .iter()
            .map(|k| rk(room, k))
            .collect();
        let writers: HashSet<&str> = authors
            .iter()
            .filter_map(|f| f.split('\n').next())
            .collect();
        keys.extend(writers.iter().map(|a| rk(room, &format!("msgs:{a}"))));
        // The deletion's audit record goes into the room's outbox (kept) in the same step.
        let item = OutboxAudit {
            tag: format!("{}:deleted", room.0),
            audit,
        };
        self.mark_audit_pending(room).await?;
        let mut inv = self.inner.scripts.delete.key(rk(room, "state"));
        inv.key(rk(room, "audit")).arg(to_json(&item)?);
        for k in &keys {
            inv.key(k);
        }
        let deleted: i64 = inv.invoke_async(&mut self.conn()).await.map_err(backend)?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("room {room}")));
        }
        let mut written = vec![rk(room, "state")];
        if let Some(i) = invite {
            let i: Invite = from_json(&i)?;
            let key = format!("cr:invite:{}", i.token);
            let _: () = ::redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            written.push(key);
        }
        self.inner.settle(written).await?;
        for f in &files {
            self.inner.delete_file(f).await?;
        }
        self.inner.flush_audits(room).await?;
        Ok(files)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create_company(&self, company: &Company, admin_key_hash: &str) -> StoreResult<()> {
        let stored = to_json(&StoredCompany {
            company: company.clone(),
            key_hash: admin_key_hash.to_owned(),
        })?;
        let created: bool = ::redis::cmd("SET")
            .arg(company_key(&company.id))
            .arg(stored)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if !created {
            return Err(StoreError::AlreadyExists(format!("company {}", company.id)));
        }
        self.inner.settle([company_key(&company.id)]).await?;
        let mut index = ::redis::cmd("SADD");
        index.arg("cr:cos").arg(&company.id.0);
        let mut by_key = ::redis::cmd("SET");
        by_key
            .arg(format!("cr:cokey:{admin_key_hash}"))
            .arg(&company.id.0);
        self.each(vec![index, by_key]).await
    }

    async fn company(&self, id: &CompanyId) -> StoreResult<Option<Company>> {
        Ok(self.stored_company(id).await?.map(|(s, _)| s.company))
    }

    async fn companies(&self) -> StoreResult<Vec<Company>> {
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg("cr:cos")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(c) = self.company(&CompanyId(id)).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    async fn company_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<CompanyId>> {
        let id: Option<String> = ::redis::cmd("GET")
            .arg(format!("cr:cokey:{key_hash}"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let Some(id) = id.map(CompanyId) else {
            return Ok(None);
        };
        // The record is the authority: an index entry left by a re-issued (or deleted) key
        // opens nothing.
        Ok(self
            .stored_company(&id)
            .await?
            .filter(|(s, _)| s.key_hash == key_hash)
            .map(|_| id))
    }

    async fn set_admin_key(&self, id: &CompanyId, key_hash: &str) -> StoreResult<()> {
        for _ in 0..MAX_RETRIES {
            let Some((mut stored, raw)) = self.stored_company(id).await? else {
                return Err(StoreError::NotFound(format!("company {id}")));
            };
            let old = std::mem::replace(&mut stored.key_hash, key_hash.to_owned());
            let mut by_key = ::redis::cmd("SET");
            by_key.arg(format!("cr:cokey:{key_hash}")).arg(&id.0);
            self.each(vec![by_key]).await?;
            if self
                .cas_string(&company_key(id), &raw, &to_json(&stored)?)
                .await?
            {
                let mut gone = ::redis::cmd("DEL");
                gone.arg(format!("cr:cokey:{old}"));
                return self.each(vec![gone]).await;
            }
        }
        Err(StoreError::backend(format!("company {id}: contention")))
    }

    async fn delete_company(&self, id: &CompanyId) -> StoreResult<()> {
        let Some((stored, _)) = self.stored_company(id).await? else {
            return Ok(());
        };
        let mut by_key = ::redis::cmd("DEL");
        by_key.arg(format!("cr:cokey:{}", stored.key_hash));
        let mut record = ::redis::cmd("DEL");
        record.arg(company_key(id));
        let mut index = ::redis::cmd("SREM");
        index.arg("cr:cos").arg(&id.0);
        self.each(vec![by_key, record, index]).await
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<()> {
        let Some(user) = self.user(id).await? else {
            return Ok(());
        };
        let contacts = format!("cr:contacts:{}", id.0);
        let theirs: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(&contacts)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut cmds = Vec::new();
        // Contact lists are one-way: drop the user from the lists of those they had (the
        // usual case: contacts are added in pairs); a list elsewhere that still names them
        // finds no user behind the id.
        for other in theirs {
            let mut c = ::redis::cmd("SREM");
            c.arg(format!("cr:contacts:{other}")).arg(&id.0);
            cmds.push(c);
        }
        let mut index = ::redis::cmd("SREM");
        index
            .arg(format!("cr:co:{}:users", user.company.0))
            .arg(&id.0);
        let mut record = ::redis::cmd("DEL");
        record.arg(user_key(id));
        let mut list = ::redis::cmd("DEL");
        list.arg(&contacts);
        cmds.extend([index, record, list]);
        self.each(cmds).await
    }

    async fn change_settings(
        &self,
        id: &CompanyId,
        patch: &SettingsPatch,
    ) -> StoreResult<(CompanySettings, CompanySettings)> {
        // Compare-and-set the whole record, merging the patch into what is stored each time.
        for _ in 0..MAX_RETRIES {
            let raw: Option<String> = ::redis::cmd("GET")
                .arg(company_key(id))
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let Some(raw) = raw else {
                return Err(StoreError::NotFound(format!("company {id}")));
            };
            let mut stored: StoredCompany = from_json(&raw)?;
            let before = stored.company.settings.clone();
            let after = patch_settings(&before, patch).map_err(StoreError::backend)?;
            stored.company.settings = after.clone();
            if self
                .cas_string(&company_key(id), &raw, &to_json(&stored)?)
                .await?
            {
                return Ok((before, after));
            }
        }
        Err(StoreError::backend(format!("company {id}: contention")))
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let created: bool = ::redis::cmd("SET")
            .arg(user_key(&user.id))
            .arg(to_json(user)?)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if !created {
            return Err(StoreError::AlreadyExists(format!("user {}", user.id)));
        }
        let index = format!("cr:co:{}:users", user.company.0);
        let _: () = ::redis::cmd("SADD")
            .arg(&index)
            .arg(&user.id.0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([user_key(&user.id), index]).await
    }

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(user_key(id))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        // All reads in flight at once (the multiplexed connection pipelines them): the keys are
        // on many shards, so no MGET.
        let reads = futures_util::future::join_all(ids.iter().map(|id| self.user(id))).await;
        let mut out = Vec::with_capacity(ids.len());
        for u in reads {
            out.extend(u?);
        }
        Ok(out)
    }

    async fn users_of(&self, company: &CompanyId) -> StoreResult<Vec<User>> {
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(format!("cr:co:{}:users", company.0))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        ids.sort();
        let ids: Vec<UserId> = ids.into_iter().map(UserId).collect();
        self.users(&ids).await
    }

    async fn change_user(&self, id: &UserId, change: &UserChange) -> StoreResult<(User, User)> {
        // Compare-and-set the record, applying the change to what is stored each time.
        for _ in 0..MAX_RETRIES {
            let raw: Option<String> = ::redis::cmd("GET")
                .arg(user_key(id))
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let Some(raw) = raw else {
                return Err(StoreError::NotFound(format!("user {id}")));
            };
            let before: User = from_json(&raw)?;
            let after = change.apply(&before);
            if self
                .cas_string(&user_key(id), &raw, &to_json(&after)?)
                .await?
            {
                return Ok((before, after));
            }
        }
        Err(StoreError::backend(format!("user {id}: contention")))
    }

    async fn add_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        let _: () = ::redis::cmd("SADD")
            .arg(format!("cr:contacts:{}", owner.0))
            .arg(&contact.0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner
            .settle([format!("cr:contacts:{}", owner.0)])
            .await
    }

    async fn remove_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        let _: () = ::redis::cmd("SREM")
            .arg(format!("cr:contacts:{}", owner.0))
            .arg(&contact.0)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner
            .settle([format!("cr:contacts:{}", owner.0)])
            .await
    }

    async fn contacts(&self, owner: &UserId) -> StoreResult<Vec<UserId>> {
        let mut v: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(format!("cr:contacts:{}", owner.0))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        v.sort();
        Ok(v.into_iter().map(UserId).collect())
    }

    async fn create_room(&self, room: &NewRoom) -> StoreResult<Event> {
        let entry = room.first_entry();
        let event = Event {
            room: room.id.clone(),
            epoch: room.epoch,
            seq: 1,
            ts: entry.ts,
            author: entry.author.clone(),
            body: entry.body.clone(),
        };
        let mut record = RoomRecord::empty(&room.id, room.owner_company.clone());
        let p = projection::project(&mut record, &event);
        let meta = Meta::of(&record);
        // Its audit record goes into the room's outbox with the room itself (G19).
        let audit = p.audit.map(|audit| OutboxAudit {
            tag: format!("{}:{}:1", room.id.0, room.epoch),
            audit,
        });
        if audit.is_some() {
            self.mark_audit_pending(&room.id).await?;
        }
        let first = StoredEntry {
            ts: entry.ts,
            author: entry.author,
            body: entry.body,
        };
        let people: Vec<&UserId> = room.members.iter().chain(&room.masters).collect();
        if let Some(max) = room.max_owned_groups {
            self.claim_group_slot(&room.owner_company, max).await?;
        }
        let created = self
            .start_room(&room.id, &meta, &people, room.epoch, &first, audit.as_ref())
            .await;
        if !matches!(created, Ok(true)) && room.max_owned_groups.is_some() {
            self.inner.release_group(&room.owner_company).await?;
        }
        if !created? {
            return Err(StoreError::AlreadyExists(format!("room {}", room.id)));
        }
        if audit.is_some() {
            self.inner.flush_audits(&room.id).await?;
        }
        Ok(event)
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<RoomRecord>> {
        self.inner.load_room(id).await
    }

    /// One small `HMGET` per room, all in flight at once: the multiplexed connection pipelines
    /// them (and a cluster connection routes each to its shard).
    async fn heads(
        &self,
        rooms: &[RoomId],
    ) -> StoreResult<Vec<Option<crossroom_protocol::Position>>> {
        let reads = rooms.iter().map(|room| {
            let mut conn = self.inner.conn.clone();
            async move {
                let (head, epoch, deleted): (Option<u64>, Option<u64>, Option<String>) =
                    ::redis::cmd("HMGET")
                        .arg(rk(room, "state"))
                        .arg("head")
                        .arg("epoch")
                        .arg("deleted")
                        .query_async(&mut conn)
                        .await
                        .map_err(backend)?;
                Ok(match (head, epoch, deleted.as_deref()) {
                    (Some(seq), Some(epoch), d) if d != Some("1") => {
                        Some(crossroom_protocol::Position { epoch, seq })
                    }
                    _ => None,
                })
            }
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    async fn append(
        &self,
        room: &RoomId,
        entries: Vec<NewEntry>,
        expect: Option<u64>,
    ) -> StoreResult<CommitTicket> {
        let (done, rx) = oneshot::channel();
        let tx = self
            .writer
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        tx.send(Job {
            room: room.clone(),
            entries,
            expect,
            done,
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? }.boxed())
    }

    async fn read_range(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let Some(r) = self.inner.load_room(room).await? else {
            return Ok(Vec::new());
        };
        let last = upto.min(r.head).min(after.saturating_add(limit as u64));
        self.read_seqs(room, r.epoch, after + 1, last).await
    }

    async fn read_before(
        &self,
        room: &RoomId,
        from: u64,
        before: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let Some(r) = self.inner.load_room(room).await? else {
            return Ok(Vec::new());
        };
        let last = before.saturating_sub(1).min(r.head);
        let first = from
            .max(1)
            .max(last.saturating_sub(limit as u64).saturating_add(1));
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read_seqs(room, r.epoch, first, last).await
    }

    /// Two round trips whatever the number of rooms: the user's room index, then one script
    /// per room (state, metadata, read marker, unread counts) in one pipeline.
    async fn rooms_of(&self, user: &UserId) -> StoreResult<Vec<MembershipRow>> {
        let rooms = self.indexed_rooms(user).await?;
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for room in &rooms {
            pipe.cmd("EVAL")
                .arg(ROOM_OF)
                .arg(5)
                .arg(rk(room, "state"))
                .arg(rk(room, "meta"))
                .arg(rk(room, "reads"))
                .arg(rk(room, "msgs"))
                .arg(rk(room, &format!("msgs:{}", user.0)))
                .arg(&user.0);
        }
        type Row = (
            Option<u64>,
            Option<u64>,
            Option<String>,
            Option<u64>,
            Option<String>,
            u64,
            u64,
            u64,
        );
        let replies: Vec<Row> = pipe.query_async(&mut self.conn()).await.map_err(backend)?;
        let mut rows = Vec::new();
        for (room, reply) in rooms.into_iter().zip(replies) {
            let (Some(head), Some(epoch), deleted, version, Some(meta), last_read, all, mine) =
                reply
            else {
                continue;
            };
            if deleted.as_deref() == Some("1") {
                continue;
            }
            let r = from_json::<Meta>(&meta)?.record(&room, epoch, head, version.unwrap_or(0));
            let member = r.members.binary_search(user).is_ok();
            let master = r.masters.binary_search(user).is_ok();
            if !member && !master {
                continue;
            }
            rows.push(MembershipRow {
                room,
                kind: r.kind,
                name: r.name,
                epoch: r.epoch,
                head: r.head,
                member,
                master,
                last_read: if member { last_read } else { 0 },
                unread: if member { all.saturating_sub(mine) } else { 0 },
            });
        }
        Ok(rows)
    }

    async fn set_read_marker(&self, room: &RoomId, user: &UserId, seq: u64) -> StoreResult<()> {
        let Some(r) = self.inner.load_room(room).await? else {
            return Ok(());
        };
        if r.members.binary_search(user).is_err() {
            return Ok(());
        }
        let _: i64 = self
            .inner
            .scripts
            .read_marker
            .key(rk(room, "reads"))
            .arg(&user.0)
            .arg(seq)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        self.inner.settle([rk(room, "reads")]).await
    }

    async fn groups_of(&self, user: &UserId) -> StoreResult<Vec<RoomId>> {
        let mut out = Vec::new();
        for room in self.indexed_rooms(user).await? {
            let Some(r) = self.inner.load_room(&room).await? else {
                continue;
            };
            if r.kind == RoomKind::Group
                && (r.members.binary_search(user).is_ok() || r.masters.binary_search(user).is_ok())
            {
                out.push(room);
            }
        }
        Ok(out)
    }

    async fn count_owned_groups(&self, company: &CompanyId) -> StoreResult<u64> {
        let counted: Option<u64> = ::redis::cmd("GET")
            .arg(owned_groups_key(company))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        match counted {
            Some(n) => Ok(n),
            None => self.recount_owned_groups(company).await,
        }
    }

    async fn owned_groups(&self, company: &CompanyId) -> StoreResult<Vec<RoomId>> {
        self.groups_owned(company).await
    }

    async fn delete_room(&self, room: &RoomId, audit: NewAudit) -> StoreResult<Vec<String>> {
        let before = self.inner.load_room(room).await?;
        let files = self.delete_room_keys(room, audit).await?;
        if let Some(r) = before.filter(|r| r.kind == RoomKind::Group) {
            self.inner.release_group(&r.owner_company).await?;
        }
        Ok(files)
    }

    async fn reserve_storage(
        &self,
        company: &CompanyId,
        bytes: u64,
        quota: u64,
        lease: Duration,
    ) -> StoreResult<Option<Reservation>> {
        let id = crate::random::token();
        let ok = self
            .inner
            .storage(
                company,
                &[
                    "reserve",
                    &id,
                    &bytes.to_string(),
                    &quota.to_string(),
                    &ms(lease),
                ],
            )
            .await?;
        Ok((ok == 1).then(|| Reservation {
            company: company.clone(),
            bytes,
            id,
        }))
    }

    async fn renew_reservation(&self, held: &Reservation, lease: Duration) -> StoreResult<bool> {
        let renewed = self
            .inner
            .storage(&held.company, &["renew", &held.id, &ms(lease)])
            .await?;
        Ok(renewed == 1)
    }

    async fn release_storage(&self, held: &Reservation) -> StoreResult<()> {
        self.inner
            .storage(&held.company, &["release", &held.id])
            .await
            .map(drop)
    }

    async fn storage_used(&self, company: &CompanyId) -> StoreResult<u64> {
        let used = self.inner.storage(company, &["used"]).await?;
        Ok(used.max(0) as u64)
    }

    async fn add_file(&self, file: &FileRecord, held: &Reservation) -> StoreResult<()> {
        if file.attachment {
            // The sweep's index first: a crash after it leaves an entry the sweep drops.
            let mut listed = ::redis::cmd("ZADD");
            listed.arg(ATTACHMENTS).arg(file.created_at).arg(&file.id);
            self.each(vec![listed]).await?;
        }
        let mut record = ::redis::cmd("SET");
        record
            .arg(format!("cr:file:{}", file.id))
            .arg(to_json(file)?);
        let mut index = ::redis::cmd("SADD");
        index.arg(rk(&file.room, "files")).arg(&file.id);
        self.each(vec![record, index]).await?;
        // The record first: a crash before this counts the file nowhere (its lease lapses),
        // never twice.
        self.inner
            .storage(
                &held.company,
                &["commit", &held.id, &held.bytes.to_string()],
            )
            .await
            .map(drop)
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(format!("cr:file:{id}"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn claim_file(&self, id: &str, claim: Option<&str>) -> StoreResult<Option<String>> {
        if self.file(id).await?.is_none() {
            return Ok(None);
        }
        let Some(claim) = claim else {
            return ::redis::cmd("GET")
                .arg(claim_key(id))
                .query_async(&mut self.conn())
                .await
                .map_err(backend);
        };
        // `SET NX GET` answers the claim that was there, or nil when ours was set.
        let before: Option<String> = ::redis::cmd("SET")
            .arg(claim_key(id))
            .arg(claim)
            .arg("NX")
            .arg("GET")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if before.is_none() {
            self.inner.settle([claim_key(id)]).await?;
        }
        Ok(Some(before.unwrap_or_else(|| claim.to_owned())))
    }

    async fn unsettled_attachments(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(FileRecord, Option<String>)>> {
        let ids: Vec<String> = ::redis::cmd("ZRANGE")
            .arg(ATTACHMENTS)
            .arg("-inf")
            .arg(format!("({before_ms}"))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.file(&id).await? {
                Some(f) => {
                    let claim = self.claim_file(&id, None).await?;
                    out.push((f, claim));
                }
                // Listed before its record was written, and the upload went no further.
                None => self.settle_file(&id).await?,
            }
        }
        Ok(out)
    }

    async fn settle_file(&self, id: &str) -> StoreResult<()> {
        let mut unlisted = ::redis::cmd("ZREM");
        unlisted.arg(ATTACHMENTS).arg(id);
        self.each(vec![unlisted]).await
    }

    async fn posted_message(
        &self,
        room: &RoomId,
        author: &UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Event>> {
        let seq: Option<u64> = ::redis::cmd("HGET")
            .arg(rk(room, "cmid"))
            .arg(cmid_field(author, client_msg_id))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        match seq {
            Some(seq) => self.event_at(room, seq).await,
            None => Ok(None),
        }
    }

    async fn delete_file(&self, id: &str) -> StoreResult<()> {
        self.inner.delete_file(id).await
    }

    async fn set_invite(
        &self,
        room: &RoomId,
        invite: Option<Invite>,
        audit: NewAudit,
    ) -> StoreResult<()> {
        let json = invite
            .as_ref()
            .map(to_json)
            .transpose()?
            .unwrap_or_default();
        let mut written = vec![rk(room, "state")];
        if let Some(i) = &invite {
            written.push(format!("cr:invite:{}", i.token));
            let _: () = ::redis::cmd("SET")
                .arg(format!("cr:invite:{}", i.token))
                .arg(&room.0)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
        }
        // Its audit record goes into the room's outbox in the same step (G19).
        let item = OutboxAudit {
            tag: format!("{}:invite:{}", room.0, crate::random::token()),
            audit,
        };
        self.mark_audit_pending(room).await?;
        let old: Value = self
            .inner
            .scripts
            .set_invite
            .key(rk(room, "state"))
            .key(rk(room, "invite"))
            .key(rk(room, "audit"))
            .arg(json)
            .arg(to_json(&item)?)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let old: Option<String> = match old {
            Value::Int(-1) => return Err(StoreError::NotFound(format!("room {room}"))),
            Value::BulkString(b) if !b.is_empty() => Some(String::from_utf8_lossy(&b).into()),
            _ => None,
        };
        if let Some(old) = old {
            let old: Invite = from_json(&old)?;
            if invite.as_ref().map(|i| &i.token) != Some(&old.token) {
                let _: () = ::redis::cmd("DEL")
                    .arg(format!("cr:invite:{}", old.token))
                    .query_async(&mut self.conn())
                    .await
                    .map_err(backend)?;
                written.push(format!("cr:invite:{}", old.token));
            }
        }
        self.inner.settle(written).await?;
        self.inner.flush_audits(room).await
    }

    async fn invite_of(&self, room: &RoomId) -> StoreResult<Option<Invite>> {
        if self.inner.load_room(room).await?.is_none() {
            return Ok(None);
        }
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(rk(room, "invite"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn room_by_invite(&self, token: &str) -> StoreResult<Option<(RoomId, Invite)>> {
        let room: Option<String> = ::redis::cmd("GET")
            .arg(format!("cr:invite:{token}"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let Some(room) = room.map(RoomId) else {
            return Ok(None);
        };
        // The room's own record is the truth (the token index may lag a revocation).
        Ok(self
            .invite_of(&room)
            .await?
            .filter(|i| i.token == token)
            .map(|i| (room, i)))
    }

    async fn audit(
        &self,
        company: Option<&CompanyId>,
        room: Option<&RoomId>,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<AuditEntry>> {
        // Records a node could not write after their commit (it died) are written first.
        self.inner.flush_pending_audits().await?;
        let key = audit_key(company);
        let mut out = Vec::new();
        let mut max = match before {
            Some(b) => format!("({b}"),
            None => "+inf".to_owned(),
        };
        // Page through newest first until `limit` records match the room filter.
        loop {
            let page: Vec<(String, f64)> = ::redis::cmd("ZRANGE")
                .arg(&key)
                .arg(&max)
                .arg("-inf")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(limit.max(1) * 4)
                .arg("WITHSCORES")
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let done = page.len() < limit.max(1) * 4;
            for (raw, score) in page {
                max = format!("({}", score as u64);
                let a: AuditEntry = from_json(&raw)?;
                if room.is_some_and(|r| *r != a.room) {
                    continue;
                }
                out.push(a);
                if out.len() == limit {
                    return Ok(out);
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    async fn items(&self, room: &RoomId) -> StoreResult<Vec<Item>> {
        self.inner.items_of(room).await
    }

    async fn item_count(&self, room: &RoomId) -> StoreResult<u64> {
        ::redis::cmd("HLEN")
            .arg(rk(room, "items"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)
    }

    async fn item(&self, room: &RoomId, id: u64) -> StoreResult<Option<Item>> {
        let raw: Option<String> = ::redis::cmd("HGET")
            .arg(rk(room, "items"))
            .arg(id)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn event_at(&self, room: &RoomId, seq: u64) -> StoreResult<Option<Event>> {
        let Some(r) = self.inner.load_room(room).await? else {
            return Ok(None);
        };
        self.inner.event_at(room, r.epoch, seq).await
    }

    async fn read_note(&self, room: &RoomId, note: u64, user: &UserId) -> StoreResult<Option<u64>> {
        for _ in 0..MAX_RETRIES {
            let raw: Option<String> = ::redis::cmd("HGET")
                .arg(rk(room, "items"))
                .arg(note)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let Some(raw) = raw else { return Ok(None) };
            let Item::Note(mut n) = from_json::<Item>(&raw)? else {
                return Ok(None);
            };
            let fresh = n.readers.insert(user.clone());
            let count = n.readers.len() as u64;
            if !fresh {
                return Ok(Some(count));
            }
            let ok: i64 = self
                .inner
                .scripts
                .cas_field
                .key(rk(room, "items"))
                .arg(note)
                .arg(&raw)
                .arg(to_json(&Item::Note(n))?)
                .invoke_async(&mut self.conn())
                .await
                .map_err(backend)?;
            if ok == 1 {
                self.inner.settle([rk(room, "items")]).await?;
                return Ok(Some(count));
            }
        }
        Err(StoreError::backend(format!("room {room}: contention")))
    }

    async fn readers(&self, room: &RoomId, seq: u64, except: &UserId) -> StoreResult<Vec<UserId>> {
        let Some(r) = self.inner.load_room(room).await? else {
            return Ok(Vec::new());
        };
        let reads: HashMap<String, u64> = ::redis::cmd("HGETALL")
            .arg(rk(room, "reads"))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(r.members
            .into_iter()
            .filter(|u| u != except && reads.get(&u.0).is_some_and(|s| *s >= seq))
            .collect())
    }

    async fn restore_room(
        &self,
        room: &RoomRecord,
        epoch: u64,
        notice: NewEntry,
    ) -> StoreResult<bool> {
        let mut meta = Meta::of(room);
        // Everyone sees the restored log from its first entry.
        for since in meta.member_since.values_mut() {
            *since = 1;
        }
        let first = StoredEntry {
            ts: notice.ts,
            author: notice.author,
            body: notice.body,
        };
        let people: Vec<&UserId> = room.members.iter().chain(&room.masters).collect();
        self.start_room(&room.id, &meta, &people, epoch, &first, None)
            .await
    }

    async fn close(&self) {
        // The writer finishes what is queued once the last sender is gone.
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
    }
}

impl RedisStore {
    /// A company's record as stored, with its raw text (for a compare-and-set).
    async fn stored_company(&self, id: &CompanyId) -> StoreResult<Option<(StoredCompany, String)>> {
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(company_key(id))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.map(|r| Ok((from_json::<StoredCompany>(&r)?, r)))
            .transpose()
    }

    /// Commands on keys of different slots: one by one (a cluster refuses cross-slot
    /// pipelines), side by side.
    async fn each(&self, cmds: Vec<Cmd>) -> StoreResult<()> {
        // Each command's first argument is its key.
        let keys: Vec<String> = cmds
            .iter()
            .filter_map(|c| match c.args_iter().nth(1) {
                Some(::redis::Arg::Simple(k)) => Some(String::from_utf8_lossy(k).into_owned()),
                _ => None,
            })
            .collect();
        let runs = cmds.into_iter().map(|c| {
            let mut conn = self.conn();
            async move { c.query_async::<Value>(&mut conn).await }
        });
        for r in futures_util::future::join_all(runs).await {
            r.map_err(backend)?;
        }
        self.inner.settle(keys).await
    }

    /// Start `room`'s log at seq 1 with `first` unless its id is in use or was deleted (see
    /// [`START`]); its people's and (a group) its owner's superset indexes are written first.
    /// True when it started.
    async fn start_room(
        &self,
        room: &RoomId,
        meta: &Meta,
        people: &[&UserId],
        epoch: u64,
        first: &StoredEntry,
        audit: Option<&OutboxAudit>,
    ) -> StoreResult<bool> {
        let mut index = Vec::new();
        for u in people {
            let mut c = ::redis::cmd("SADD");
            c.arg(user_rooms_key(u)).arg(&room.0);
            index.push(c);
        }
        if meta.kind == RoomKind::Group {
            let mut c = ::redis::cmd("SADD");
            c.arg(format!("cr:co:{}:groups", meta.owner_company.0))
                .arg(&room.0);
            index.push(c);
        }
        self.each(index).await?;
        let started: i64 = self
            .inner
            .scripts
            .start
            .key(rk(room, "state"))
            .key(rk(room, "meta"))
            .key(rk(room, "log"))
            .key(rk(room, "audit"))
            .arg(epoch)
            .arg(to_json(meta)?)
            .arg(to_json(first)?)
            .arg(audit.map(to_json).transpose()?.unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if started == 1 {
            self.inner.settle([rk(room, "state")]).await?;
        }
        Ok(started == 1)
    }

    async fn indexed_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomId>> {
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(user_rooms_key(user))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        ids.sort();
        Ok(ids.into_iter().map(RoomId).collect())
    }

    async fn read_seqs(
        &self,
        room: &RoomId,
        epoch: u64,
        first: u64,
        last: u64,
    ) -> StoreResult<Vec<Event>> {
        if first > last || first == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(rk(room, "log"));
        for seq in first..=last {
            cmd.arg(seq);
        }
        let raw: Vec<Option<String>> = cmd.query_async(&mut self.conn()).await.map_err(backend)?;
        raw.into_iter()
            .zip(first..=last)
            .filter_map(|(r, seq)| r.map(|r| entry_event(room, epoch, seq, &r)))
            .collect()
    }

    /// Compare-and-set a string key.
    async fn cas_string(&self, key: &str, old: &str, new: &str) -> StoreResult<bool> {
        let ok: i64 = self
            .inner
            .scripts
            .cas_string
            .key(key)
            .arg(old)
            .arg(new)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        if ok == 1 {
            self.inner.settle([key.to_owned()]).await?;
        }
        Ok(ok == 1)
    }
}
