//! The store behaviour suite ([`crate::store_checks`]) on every backend: SQLite, Redis, and a
//! three-master Redis Cluster, each check on a fresh store.

use crate::harness::{Redis, RedisCluster};
use crate::store_checks::{general_room, message};
use crossroom::store::redis::RedisStore;
use crossroom::store::sqlite::SqliteStore;
use crossroom::store::{NewEntry, RoomLogStore, SharedStore};
use std::sync::Arc;

/// A fresh store of one backend, with what keeps it alive (a temporary folder, Redis processes).
struct Fresh {
    store: SharedStore,
    _keep: Box<dyn std::any::Any + Send>,
}

impl Fresh {
    async fn sqlite() -> Fresh {
        let dir = tempfile::tempdir().expect("tmp");
        let store: SharedStore =
            Arc::new(SqliteStore::open(&dir.path().join("t.db")).expect("open"));
        Fresh {
            store,
            _keep: Box::new(dir),
        }
    }

    async fn redis() -> Fresh {
        let redis = Redis::start(&[]).await;
        let store: SharedStore = Arc::new(RedisStore::open(&[redis.url()]).await.expect("open"));
        Fresh {
            store,
            _keep: Box::new(redis),
        }
    }

    async fn redis_cluster() -> Fresh {
        let cluster = RedisCluster::start(3).await;
        let store: SharedStore = Arc::new(RedisStore::open(&cluster.urls()).await.expect("open"));
        Fresh {
            store,
            _keep: Box::new(cluster),
        }
    }
}

/// One test per check and backend: `sqlite::directory`, `redis::directory`,
/// `redis_cluster::directory`, …
macro_rules! every_check_on {
    ($backend:ident: $($check:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let fresh = super::Fresh::$backend().await;
                    crate::store_checks::$check(&fresh.store).await;
                    fresh.store.close().await;
                }
            )*
        }
    };
}

macro_rules! every_backend {
    ($($check:ident),* $(,)?) => {
        every_check_on!(sqlite: $($check),*);
        every_check_on!(redis: $($check),*);
        every_check_on!(redis_cluster: $($check),*);
    };
}

every_backend!(
    directory,
    rooms_and_log,
    idempotent_appends,
    conditional_appends,
    ordered_pipelined_appends,
    read_state,
    projections_and_audit,
    the_room_is_the_projection_of_its_log,
    group_limits_are_atomic,
    invites,
    storage_and_delete,
    items_and_recall,
    attachment_claims,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reservations_are_leases() {
    let fresh = Fresh::redis().await;
    crate::store_checks::reservations_lapse(&fresh.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_reservations_are_leases() {
    let fresh = Fresh::redis_cluster().await;
    crate::store_checks::reservations_lapse(&fresh.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.db");
    let store: SharedStore = Arc::new(SqliteStore::open(&path).expect("open"));
    crate::store_checks::ordered_pipelined_appends(&store).await;
    crate::store_checks::projections_and_audit(&store).await;
    let before = store
        .read_range(&"r_pipe".into(), 0, u64::MAX, 1000)
        .await
        .expect("read");
    let room_before = store.room(&"r_proj".into()).await.expect("read");
    store.close().await;
    drop(store);
    let again: SharedStore = Arc::new(SqliteStore::open(&path).expect("reopen"));
    let after = again
        .read_range(&"r_pipe".into(), 0, u64::MAX, 1000)
        .await
        .expect("read");
    assert_eq!(before, after);
    assert_eq!(after.len(), 201);
    assert_eq!(
        again.room(&"r_proj".into()).await.expect("read"),
        room_before
    );
    again.close().await;
}

/// A schema-4 database (before attachments were told apart) opens: its files read as folder
/// files, not attachments a post could take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_schema_4_files_upgrade() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.db");
    {
        let old = rusqlite::Connection::open(&path).expect("open");
        old.execute_batch(
            "CREATE TABLE files (id TEXT PRIMARY KEY, room TEXT NOT NULL, company TEXT NOT NULL,
                 size INTEGER NOT NULL, sha256 TEXT NOT NULL, name TEXT NOT NULL,
                 content_type TEXT NOT NULL, created_by TEXT NOT NULL, created_at INTEGER NOT NULL);
             INSERT INTO files VALUES ('f_old', 'r_x', 'acme.example', 5, '00', 'n', 't',
                 'alice@acme.example', 1);
             PRAGMA user_version = 4;",
        )
        .expect("schema 4");
    }
    let store = SqliteStore::open(&path).expect("upgrade");
    let f = crossroom::store::FileStore::file(&store, "f_old")
        .await
        .expect("read")
        .expect("kept");
    assert!(!f.attachment);
    assert_eq!(f.size, 5);
}

/// A schema-5 database (heads in the `rooms` row) opens with every room's head where it was,
/// and appends go on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_schema_5_heads_upgrade() {
    use crossroom::store::Store;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.db");
    let room: crossroom_protocol::RoomId = "r_heads".into();
    let alice: crossroom_protocol::UserId = "alice@acme.example".into();
    let post = |i: usize| message(&alice, &format!("h{i}"), &format!("message {i}"));
    {
        let store = SqliteStore::open(&path).expect("open");
        store
            .create_room(&general_room(room.as_str(), &alice))
            .await
            .expect("create");
        for i in 0..3 {
            let t = store
                .append(&room, vec![post(i)], None)
                .await
                .expect("queue");
            t.await.expect("stored");
        }
        store.close().await;
    }
    {
        // As schema 5 left it: the head in the room's row, no heads table.
        let old = rusqlite::Connection::open(&path).expect("open");
        old.execute_batch(
            "UPDATE rooms SET head = (SELECT head FROM room_heads WHERE room = rooms.id);
             DROP TABLE room_heads;
             PRAGMA user_version = 5;",
        )
        .expect("schema 5");
    }
    let store = SqliteStore::open(&path).expect("upgrade");
    let r = store.room(&room).await.expect("read").expect("kept");
    assert_eq!(r.head, 4, "created + 3 posts");
    let t = store
        .append(&room, vec![post(3)], None)
        .await
        .expect("queue");
    let appended = t.await.expect("stored");
    let events = store
        .read_range(&room, 0, u64::MAX, 100)
        .await
        .expect("read");
    assert_eq!(events.last().map(|e| e.seq), Some(5), "{appended:?}");
    store.close().await;
}

/// A file of schema 6 (no run marks) opens and takes appends; and a run that did not stop
/// cleanly (its id left in `meta`) has exactly the rooms it numbered (marked, D1) moved to new
/// epochs at the next open, with their logs kept — not a room it only wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runs_mark_rooms_and_an_unclean_stop_moves_their_epochs() {
    use crossroom::store::Store;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.db");
    let (a, b): (crossroom_protocol::RoomId, crossroom_protocol::RoomId) =
        ("r_numbered".into(), "r_written".into());
    let alice: crossroom_protocol::UserId = "alice@acme.example".into();
    let post = |i: usize| message(&alice, &format!("u{i}"), &format!("message {i}"));
    async fn append(store: &SqliteStore, room: &crossroom_protocol::RoomId, entry: NewEntry) {
        store
            .append(room, vec![entry], None)
            .await
            .expect("queue")
            .await
            .expect("stored");
    }
    {
        let store = SqliteStore::open(&path).expect("open");
        for r in [&a, &b] {
            store
                .create_room(&general_room(r.as_str(), &alice))
                .await
                .expect("create");
        }
        store.close().await;
    }
    {
        // As schema 6 left it: no run marks.
        let old = rusqlite::Connection::open(&path).expect("open");
        old.execute_batch(
            "ALTER TABLE room_heads DROP COLUMN run; DROP TABLE meta; PRAGMA user_version = 6;",
        )
        .expect("schema 6");
    }
    async fn epochs(
        store: SqliteStore,
        a: &crossroom_protocol::RoomId,
        b: &crossroom_protocol::RoomId,
    ) -> (SqliteStore, u64, u64) {
        let ea = store.room(a).await.expect("a").expect("a kept").epoch;
        let eb = store.room(b).await.expect("b").expect("b kept").epoch;
        (store, ea, eb)
    }
    let store = SqliteStore::open(&path).expect("upgrade");
    append(&store, &a, post(0)).await;
    let (store, a0, b0) = epochs(store, &a, &b).await;
    store.close().await;
    let clean = SqliteStore::open(&path).expect("reopen after a clean stop");
    let (clean, a1, b1) = epochs(clean, &a, &b).await;
    assert_eq!((a1, b1), (a0, b0), "a clean stop moves nothing");
    // This run numbers `a`'s entries (marked) and only writes `b`'s (delivered at the commit).
    clean.mark_numbered(&a).await.expect("mark");
    append(&clean, &a, post(1)).await;
    append(&clean, &b, post(2)).await;
    clean.close().await;
    // The run that just wrote `a` dies without its clean stop: its id stays in `meta`.
    {
        let db = rusqlite::Connection::open(&path).expect("open");
        db.execute(
            "UPDATE meta SET value = (SELECT run FROM room_heads WHERE room = 'r_numbered') WHERE key = 'run'",
            [],
        )
        .expect("unclean");
    }
    let after = SqliteStore::open(&path).expect("reopen after an unclean stop");
    let (after, a2, b2) = epochs(after, &a, &b).await;
    assert_ne!(
        a2, a1,
        "the room the dead run numbered moves to a new epoch"
    );
    assert_eq!(
        b2, b1,
        "a room it only wrote (delivered at the commit) keeps its epoch"
    );
    let events = after.read_range(&a, 0, u64::MAX, 100).await.expect("read");
    assert_eq!(events.len(), 3, "created + 2 posts: the log is kept");
    assert!(events.iter().all(|e| e.epoch == a2), "under the new epoch");
    after.close().await;
}

/// With AOF `appendfsync always`, an acknowledged append survives `redis-server` being
/// SIGKILLed; the store reconnects by itself once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_aof_always_keeps_acknowledged_appends_across_a_kill() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let store: SharedStore = Arc::new(RedisStore::open(&[redis.url()]).await.expect("open"));
    let room: crossroom_protocol::RoomId = "r_aof".into();
    let alice: crossroom_protocol::UserId = "alice@acme.example".into();
    store
        .create_room(&general_room(room.as_str(), &alice))
        .await
        .expect("create");
    let post = |i: usize| message(&alice, &format!("m{i}"), &format!("message {i}"));
    for i in 0..100 {
        let ticket = store
            .append(&room, vec![post(i)], None)
            .await
            .expect("queue");
        ticket.await.expect("acknowledged");
    }
    redis.restart().await;
    // The same store object: its connection comes back by itself.
    let mut events = Vec::new();
    for _ in 0..100 {
        match store.read_range(&room, 0, u64::MAX, 1000).await {
            Ok(e) => {
                events = e;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert_eq!(events.len(), 101, "created + every acknowledged post");
    assert_eq!(events.last().map(|e| e.seq), Some(101));
    // And it keeps appending where it left off.
    let ticket = store
        .append(&room, vec![post(100)], None)
        .await
        .expect("queue");
    let appended = ticket.await.expect("acknowledged after the restart");
    assert_eq!(appended[0].event.seq, 102);
    redis.kill().await;
}

/// G19 in cluster mode loses nothing: an audit record is written into its room's outbox by the
/// same script as its entry, and leaves it only once it is in the companies' logs. A node that
/// dies between the two leaves it there (and the room in the pending set); the next audit read
/// writes it — once, however many times it is written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_audit_records_survive_a_crash_after_their_commit() {
    use crossroom::store::{NewAudit, NewEntry};
    use crossroom_protocol::EventBody;
    let redis = Redis::start(&[]).await;
    let store: SharedStore = Arc::new(RedisStore::open(&[redis.url()]).await.expect("open"));
    let fresh = crate::store_checks::new_room_for_audit("r_crash");
    store.create_room(&fresh).await.expect("create");
    let room = fresh.id.clone();
    let bob: crossroom_protocol::UserId = "bob@acme.example".into();
    let appended = store
        .append(
            &room,
            vec![NewEntry {
                author: fresh.created_by.clone(),
                ts: 2,
                body: EventBody::MembersAdded {
                    users: vec![bob.clone()],
                },
            }],
            None,
        )
        .await
        .expect("queue")
        .await
        .expect("commit");
    let seq = appended[0].event.seq;
    let acme: crossroom_protocol::CompanyId = "acme.example".into();
    let count = |action: &'static str| {
        let store = store.clone();
        let (acme, room) = (acme.clone(), room.clone());
        async move {
            let all = store
                .audit(Some(&acme), Some(&room), None, 100)
                .await
                .expect("audit");
            all.iter().filter(|a| a.action == action).count()
        }
    };
    assert_eq!(count("members_added").await, 1);
    // The state a crash right after the script leaves: the record still in the outbox (written
    // or not), the room pending. Put it back as it was.
    let client = ::redis::Client::open(redis.url().as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let audit = NewAudit {
        ts: 2,
        room: room.clone(),
        actor: fresh.created_by.clone(),
        action: "members_added".into(),
        detail: serde_json::to_string(&EventBody::MembersAdded {
            users: vec![bob.clone()],
        })
        .expect("json"),
        companies: vec![acme.clone()],
    };
    let again =
        serde_json::json!({ "tag": format!("{}:{}:{}", room.0, fresh.epoch, seq), "audit": audit });
    let never = serde_json::json!({
        "tag": format!("{}:{}:{}", room.0, fresh.epoch, 999),
        "audit": NewAudit { action: "group_updated".into(), ..audit.clone() },
    });
    for item in [again, never] {
        let _: () = ::redis::cmd("RPUSH")
            .arg(format!("cr:{{{}}}:audit", room.0))
            .arg(item.to_string())
            .query_async(&mut conn)
            .await
            .expect("rpush");
    }
    let _: () = ::redis::cmd("SADD")
        .arg("cr:audit:pending")
        .arg(&room.0)
        .query_async(&mut conn)
        .await
        .expect("sadd");
    assert_eq!(count("members_added").await, 1, "written again, not twice");
    assert_eq!(
        count("group_updated").await,
        1,
        "the never-written record is written"
    );
    let left: i64 = ::redis::cmd("LLEN")
        .arg(format!("cr:{{{}}}:audit", room.0))
        .query_async(&mut conn)
        .await
        .expect("llen");
    assert_eq!(left, 0, "the outbox is empty once written");
    store.close().await;
}
