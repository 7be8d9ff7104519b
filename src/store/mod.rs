//! The system of record: the [`Store`] trait, the records it keeps, and its implementations.
//!
//! - [`sqlite`]: the embedded default — one SQLite file, WAL, `synchronous=FULL`, and a single
//!   writer thread that commits batches (group commit).
//! - [`redis`]: the cluster store — everything in Redis (single server or Redis Cluster), shared
//!   by every node; a room's keys share one hash tag.
//! - the behaviour test-suite every `Store` must pass is `tests/it/store_checks.rs`.
//!
//! The room log is the truth: every change in a room is one [`NewEntry`] appended with the next
//! `seq`; the current state (members, masters, head) is a projection updated in the same commit.

pub mod redis;
pub mod sqlite;

use crate::domain::directory::{Company, CompanySettings, SettingsPatch, User, UserChange};
pub use crate::domain::records::*;
use crate::error::ApiError;
use async_trait::async_trait;
use crossroom_protocol::{CompanyId, ErrorCode, Event, Position, RoomId, UserId};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Mark the calling thread (a SQLite reader or the writer) `SCHED_BATCH`: same share of the CPU,
/// but waking it never preempts the thread that woke it. On a busy core the async worker that
/// queued a read or a write then goes on accepting, decoding and queueing, and the store's
/// thread runs when the worker parks or its slice ends — taking everything queued by then in
/// one go, instead of one switch there and back per job (BENCHMARKS.md: connect cost, groups).
/// Best effort: where the policy cannot be set, the thread runs as before. The call also sets
/// the nice value and can only set it to 0, so a server started under `nice` leaves its store
/// threads as they are rather than raise them above the rest of the process.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    scheduling(thread_priority::unix::NormalThreadSchedulePolicy::Batch);
}

#[cfg(target_os = "linux")]
fn scheduling(policy: thread_priority::unix::NormalThreadSchedulePolicy) {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, ThreadSchedulePolicy,
    };
    use thread_priority::ThreadPriority;
    // Field 19 of the thread's stat line, the 17th after the command's closing parenthesis.
    let nice = std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().nth(16)?.parse::<i32>().ok()
        });
    if nice != Some(0) {
        return tracing::debug!(
            ?nice,
            ?policy,
            "scheduling policy not set for a store thread: not nice 0"
        );
    }
    // `Os(0)`: nice 0, which the thread has (checked above).
    let set = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Os(Default::default()),
        ThreadSchedulePolicy::Normal(policy),
    );
    if let Err(e) = set {
        tracing::debug!(error = ?e, ?policy, "scheduling policy not set for a store thread");
    }
}

/// A shared store.
pub type SharedStore = Arc<dyn Store>;

/// An upload's hold on its company's storage, from [`FileStore::reserve_storage`] until
/// [`FileStore::add_file`] or [`FileStore::release_storage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub company: CompanyId,
    pub bytes: u64,
    /// Tells this reservation from the others of its company (a lease in a shared store).
    pub id: String,
}

/// The claim ([`FileStore::claim_file`]) of an attachment being removed: by its uploader, or by the
/// files sweep. No client id can be it: it is longer than any
/// ([`crate::domain::rules::MAX_CLIENT_MSG_ID_CHARS`]).
pub const GONE_CLAIM: &str =
    "#gone: removed by its uploader or by the files sweep before any post took it (not a client id)";

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (company id, user id, room id).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The id was deleted: a deleted login or company id is never given to anyone else (A2).
    #[error("retired: {0}")]
    Retired(String),
    /// A counted limit would be passed (G20: the company owns its maximum of groups).
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// The thing to change does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store is closed (shutting down).
    #[error("store closed")]
    Closed,
    /// The room's state version is not the one the append was decided on: another node
    /// changed the room meanwhile. Reload and decide again.
    #[error("the room changed meanwhile")]
    Conflict,
    /// Committed on the primary, but not copied to the replicas the acknowledgement waits for
    /// (Redis `WAIT`) in time: not acknowledged. A retry (posts are idempotent) finds it.
    #[error("not replicated in time: {0}")]
    Unreplicated(String),
    /// This store does not do that (yet): said as it is, never faked.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The backend failed; the operation may or may not be retried. Keeps its cause.
    #[error("store backend: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A backend failure caused by `e` (an error of the backend, or a description).
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Backend(Arc::from(e.into()))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::backend(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(what) => {
                ApiError::new(ErrorCode::AlreadyExists, format!("{what} already exists"))
            }
            StoreError::Retired(what) => ApiError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "{what} was deleted, and a deleted id is never given to anyone else (A2): \
                     choose another"
                ),
            ),
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::LimitReached(what) => ApiError::new(ErrorCode::LimitExceeded, what),
            StoreError::Closed => ApiError::new(ErrorCode::Unavailable, "server is shutting down"),
            StoreError::Conflict => ApiError::new(
                ErrorCode::Unavailable,
                "the room is changing too fast; try again",
            ),
            StoreError::Unreplicated(what) => ApiError::new(
                ErrorCode::Unavailable,
                format!("not acknowledged: {what}; retry (a retried post is not duplicated)"),
            ),
            StoreError::Unsupported(what) => ApiError::new(ErrorCode::Unavailable, what),
            StoreError::Backend(cause) => {
                tracing::error!(error = %cause, "store failure");
                ApiError::internal()
            }
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A durable commit in flight: resolves once the entries are durably stored (or failed).
pub type CommitTicket = BoxFuture<'static, StoreResult<Vec<Appended>>>;

/// The system of record: every concern's store together. Every implementation passes the store
/// suite (`tests/it/store_suite.rs`), and keeps each concern in the file of its name
/// (`store/sqlite/directory.rs` beside `store/redis/directory.rs`, …). Callers holding a
/// [`SharedStore`] call any concern's method on it directly.
#[async_trait]
pub trait Store:
    DirectoryStore
    + RoomLogStore
    + MembershipStore
    + ItemStore
    + FileStore
    + InviteStore
    + AuditStore
    + SearchStore
{
    /// Finish queued writes and stop accepting new ones.
    async fn close(&self);
}

/// Companies, their admin keys and settings; users; contacts.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// Create a company with the hash of its admin API key.
    async fn create_company(&self, company: &Company, admin_key_hash: &str) -> StoreResult<()>;

    async fn company(&self, id: &CompanyId) -> StoreResult<Option<Company>>;

    async fn companies(&self) -> StoreResult<Vec<Company>>;

    /// The company whose admin API key hashes to `key_hash`.
    async fn company_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<CompanyId>>;

    /// Give the company a new admin API key (by its hash): the old one stops working.
    async fn set_admin_key(&self, id: &CompanyId, key_hash: &str) -> StoreResult<()>;

    /// Forget a company and its admin key (its users and groups are deleted first, by the
    /// caller).
    async fn delete_company(&self, id: &CompanyId) -> StoreResult<()>;

    /// Merge `patch` into the company's settings as stored at this instant (so concurrent
    /// changes of different fields compose). Returns the settings before and after. A patch that
    /// does not make valid settings is `Backend`: callers check it first.
    async fn change_settings(
        &self,
        id: &CompanyId,
        patch: &SettingsPatch,
    ) -> StoreResult<(CompanySettings, CompanySettings)>;

    async fn create_user(&self, user: &User) -> StoreResult<()>;

    async fn user(&self, id: &UserId) -> StoreResult<Option<User>>;

    /// The users that exist among `ids` (unknown ids are skipped).
    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>>;

    async fn users_of(&self, company: &CompanyId) -> StoreResult<Vec<User>>;

    /// Apply `change` to the user as stored at this instant (so concurrent changes compose).
    /// Returns the user before and after.
    async fn change_user(&self, id: &UserId, change: &UserChange) -> StoreResult<(User, User)>;

    /// Forget a user: their record, their contact list, and their place in the contact lists of
    /// their contacts. What they wrote stays in the logs under their id.
    async fn delete_user(&self, id: &UserId) -> StoreResult<()>;

    async fn add_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()>;

    async fn remove_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()>;

    async fn contacts(&self, owner: &UserId) -> StoreResult<Vec<UserId>>;
}

/// Rooms and their logs: creation, the room's projection, appends in order, reads, deletion.
#[async_trait]
pub trait RoomLogStore: Send + Sync + 'static {
    /// Create a room and its first entry (`Created`, seq 1), durably. Returns that entry.
    async fn create_room(&self, room: &NewRoom) -> StoreResult<Event>;

    async fn room(&self, id: &RoomId) -> StoreResult<Option<RoomRecord>>;

    /// Where each room's log stands: its epoch and head, or `None` when the room does not exist
    /// (or was deleted). Cluster mode reads this for every room a node holds, every couple of
    /// seconds, to catch what the bus did not bring; a backend makes it cheaper than `room`.
    async fn heads(&self, rooms: &[RoomId]) -> StoreResult<Vec<Option<Position>>> {
        let mut out = Vec::with_capacity(rooms.len());
        for r in rooms {
            out.push(self.room(r).await?.map(|r| Position {
                epoch: r.epoch,
                seq: r.head,
            }));
        }
        Ok(out)
    }

    /// Queue `entries` for a durable append to `room`'s log and return a ticket that resolves
    /// when they are stored. The call returns once the entries hold their place in line:
    /// entries queued by successive calls for one room commit in call order, so a room actor may
    /// queue several appends before the first one commits.
    ///
    /// With `expect = Some(v)`, the append happens only if the room's state version is still
    /// `v` when it commits; otherwise the ticket resolves to [`StoreError::Conflict`] and nothing
    /// is written.
    async fn append(
        &self,
        room: &RoomId,
        entries: Vec<NewEntry>,
        expect: Option<u64>,
    ) -> StoreResult<CommitTicket>;

    /// Whether this process is the only writer of every room's log (the embedded store). A room
    /// actor may then number the entries it queues itself — [`RoomLogStore::append`] stores them in
    /// call order, at the seqs that follow the head — and deliver them before they are durable
    /// (D2 still holds for the acknowledgement). Such a store marks every room each run writes,
    /// and after a run that did not stop cleanly moves those rooms to new epochs, so that a tail
    /// shown but never stored is never resumed (D1). Stores that nodes share say false.
    fn sole_writer(&self) -> bool {
        false
    }

    /// Mark `room` in this run, durably, before its first entry is numbered here and delivered
    /// ahead of its commit ([`RoomLogStore::sole_writer`]): after an unclean stop, the rooms so
    /// marked — and only they — may have shown a tail the store does not hold, and move to new
    /// epochs; every other room resumes with a gapless replay. A store that numbers its own
    /// entries has nothing to mark.
    async fn mark_numbered(&self, _room: &RoomId) -> StoreResult<()> {
        Ok(())
    }

    /// Move `room` to a new `epoch`, keeping its log: every client is then told to reset (D1).
    /// A sole writer does this when an entry it delivered was not stored as delivered.
    async fn move_epoch(&self, _room: &RoomId, _epoch: u64) -> StoreResult<()> {
        Err(StoreError::backend(
            "only a sole writer numbers entries itself and moves epochs",
        ))
    }

    /// Events with `after < seq <= upto`, oldest first, at most `limit`.
    async fn read_range(
        &self,
        room: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>>;

    /// Up to `limit` events with `from <= seq < before`, the newest ones, returned oldest first.
    async fn read_before(
        &self,
        room: &RoomId,
        from: u64,
        before: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>>;

    /// One log entry.
    async fn event_at(&self, room: &RoomId, seq: u64) -> StoreResult<Option<Event>>;

    /// The message `author` posted to `room` with client id `client_msg_id`, if the log holds
    /// it (a retried post, D2).
    async fn posted_message(
        &self,
        room: &RoomId,
        author: &UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Event>>;

    /// Delete a room's log, members, invitation and file records for good, freeing their
    /// storage, keeping a tombstone so the id is never reused; audited (G16). Returns the ids of
    /// the files whose bytes are now to be removed.
    async fn delete_room(&self, room: &RoomId, audit: NewAudit) -> StoreResult<Vec<String>>;

    /// The room's log was lost (its store restarted without its data) while `room` — a node's
    /// cached projection — still knows it: start the room again from that projection under a
    /// fresh `epoch`, its log beginning with `notice` as seq 1, so that every client is told to
    /// reset (D1) rather than left with a silent gap. Does nothing and returns false when the
    /// room exists (restored by another node meanwhile) or was deleted; a store that cannot
    /// lose part of its data (SQLite) always returns false.
    async fn restore_room(
        &self,
        room: &RoomRecord,
        epoch: u64,
        notice: NewEntry,
    ) -> StoreResult<bool>;
}

/// Who is in which room: a user's rooms with their read state, read markers and receipts, the groups a user is in or a company owns (G20).
#[async_trait]
pub trait MembershipStore: Send + Sync + 'static {
    /// The rooms `user` is a member of, with read state.
    async fn rooms_of(&self, user: &UserId) -> StoreResult<Vec<MembershipRow>>;

    /// Move `user`'s read marker in `room` forward to `seq` (never backwards).
    async fn set_read_marker(&self, room: &RoomId, user: &UserId, seq: u64) -> StoreResult<()>;

    /// Members other than `except` whose read marker is at `seq` or later (M2).
    async fn readers(&self, room: &RoomId, seq: u64, except: &UserId) -> StoreResult<Vec<UserId>>;

    /// External groups `user` is a member or master of.
    async fn groups_of(&self, user: &UserId) -> StoreResult<Vec<RoomId>>;

    /// External groups `company` owns (not deleted) — G20.
    async fn count_owned_groups(&self, company: &CompanyId) -> StoreResult<u64>;

    /// The external groups the company owns (not deleted), in id order.
    async fn owned_groups(&self, company: &CompanyId) -> StoreResult<Vec<RoomId>>;
}

/// The feature items of a room (notes, events, tasks, folders, files) as projected from its log.
#[async_trait]
pub trait ItemStore: Send + Sync + 'static {
    /// The current feature items of a room (notes, calendar events, tasks, folders, files).
    async fn items(&self, room: &RoomId) -> StoreResult<Vec<crossroom_protocol::Item>>;

    async fn item(&self, room: &RoomId, id: u64) -> StoreResult<Option<crossroom_protocol::Item>>;

    /// How many feature items a room holds (each kind, trashed ones included).
    async fn item_count(&self, room: &RoomId) -> StoreResult<u64>;

    /// Mark a note read by `user`; returns its read count (N1).
    async fn read_note(&self, room: &RoomId, note: u64, user: &UserId) -> StoreResult<Option<u64>>;
}

/// File records and each company's storage (G17), attachments' claims (M1).
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Reserve `bytes` of `company`'s storage for an upload if that stays within `quota`
    /// (G17), for `lease`: a store that nodes share lets a reservation lapse unless
    /// [`FileStore::renew_reservation`] renews it in time, so a node that dies mid-upload holds no
    /// storage for long (the embedded store's reservations die with its process, and its start
    /// gives them back). `None`: no room.
    async fn reserve_storage(
        &self,
        company: &CompanyId,
        bytes: u64,
        quota: u64,
        lease: std::time::Duration,
    ) -> StoreResult<Option<Reservation>>;

    /// Hold `held` for another `lease`; false when it had lapsed already.
    async fn renew_reservation(
        &self,
        held: &Reservation,
        lease: std::time::Duration,
    ) -> StoreResult<bool>;

    /// Give a reservation back (the upload failed).
    async fn release_storage(&self, held: &Reservation) -> StoreResult<()>;

    /// Bytes in use by `company`'s files, and held by its uploads in progress.
    async fn storage_used(&self, company: &CompanyId) -> StoreResult<u64>;

    /// Record a stored file; the bytes `held` for its upload become the file's.
    async fn add_file(&self, file: &FileRecord, held: &Reservation) -> StoreResult<()>;

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>>;

    /// Forget a file, giving its bytes back to its company's storage.
    async fn delete_file(&self, id: &str) -> StoreResult<()>;

    /// An attachment's claim (M1): with `claim = Some(c)`, take the file for `c` unless it is
    /// taken already — the first claim wins and is kept. Returns the claim the file holds
    /// (`None`: unknown file, or not claimed when asked with `claim = None`). A post claims its
    /// attachments with its client id before it commits; a deletion or the sweep with
    /// [`GONE_CLAIM`].
    async fn claim_file(&self, id: &str, claim: Option<&str>) -> StoreResult<Option<String>>;

    /// Attachments uploaded before `before_ms` that the sweep has not settled, oldest first,
    /// at most `limit`, each with its claim.
    async fn unsettled_attachments(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(FileRecord, Option<String>)>>;

    /// The sweep found the post that claimed this attachment committed: it is kept for good
    /// and the sweep does not look at it again.
    async fn settle_file(&self, id: &str) -> StoreResult<()>;
}

/// Groups' invitation links (G14).
#[async_trait]
pub trait InviteStore: Send + Sync + 'static {
    /// Set or clear a group's invitation link; audited.
    async fn set_invite(
        &self,
        room: &RoomId,
        invite: Option<Invite>,
        audit: NewAudit,
    ) -> StoreResult<()>;

    async fn invite_of(&self, room: &RoomId) -> StoreResult<Option<Invite>>;

    /// The room an invitation token opens (expired or not).
    async fn room_by_invite(&self, token: &str) -> StoreResult<Option<(RoomId, Invite)>>;
}

/// The audit records of life-cycle and membership changes (G19).
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Audit records involving `company` (`None`: every company — the operator's view), newest
    /// first, with `id < before`.
    async fn audit(
        &self,
        company: Option<&CompanyId>,
        room: Option<&RoomId>,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<AuditEntry>>;
}

/// A message search found (M6): where it is and its text, with its place in the index's order
/// (newest first; a page's cursor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundMessage {
    pub key: i64,
    pub room: RoomId,
    pub seq: u64,
    pub ts: i64,
    pub author: UserId,
    pub text: String,
}

/// A group's shared thing a search found (M6): its room and its current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundItem {
    pub key: i64,
    pub room: RoomId,
    pub item: crossroom_protocol::Item,
}

/// The index of message text (M6), kept with the log: a message is indexed in its entry's own
/// commit and leaves the index in the commit that recalls it or deletes its room.
#[async_trait]
pub trait SearchStore: Send + Sync + 'static {
    /// The messages `user` may read now (their current rooms, from where they see each one,
    /// D4/G21; never a group they only manage, G22) that match `query`, newest first, with a
    /// key below `before` (a page's cursor), at most `limit`.
    async fn search_messages(
        &self,
        user: &UserId,
        query: &crate::domain::search::MessageQuery,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<FoundMessage>>;

    /// The shared things (notes, events, tasks, folders, files; not the trash) of the groups and
    /// rooms `user` is a member of whose feature is switched on (G18) that match `query`'s words
    /// (and `in:`), most recently changed first, with a key below `before`, at most `limit`.
    async fn search_items(
        &self,
        user: &UserId,
        query: &crate::domain::search::MessageQuery,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<FoundItem>>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_client_id_is_the_gone_claim() {
        assert!(super::GONE_CLAIM.chars().count() > crate::domain::rules::MAX_CLIENT_MSG_ID_CHARS);
    }
}
