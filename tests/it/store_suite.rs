//! The store behaviour suite ([`crate::store_checks`]) on every backend: SQLite, Redis, and a
//! three-master Redis Cluster, each check on a fresh store.

use crate::harness::{Redis, RedisCluster};
use crossroom::store::redis::RedisStore;
use crossroom::store::sqlite::SqliteStore;
use crossroom::store::SharedStore;
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
);

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

/// With AOF `appendfsync always`, an acknowledged append survives `redis-server` being
/// SIGKILLed; the store reconnects by itself once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_aof_always_keeps_acknowledged_appends_across_a_kill() {
    use crossroom::store::{NewEntry, NewRoom};
    use crossroom_protocol::{EventBody, Features};
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let store: SharedStore = Arc::new(RedisStore::open(&[redis.url()]).await.expect("open"));
    let room: crossroom_protocol::RoomId = "r_aof".into();
    let alice: crossroom_protocol::UserId = "alice@acme.example".into();
    store
        .create_room(&NewRoom {
            id: room.clone(),
            kind: crossroom_protocol::RoomKind::Room,
            name: "aof".into(),
            description: String::new(),
            owner_company: "acme.example".into(),
            created_by: alice.clone(),
            created_at: 1,
            features: Features::default(),
            masters: vec![],
            members: vec![alice.clone()],
            epoch: 7,
            max_owned_groups: None,
        })
        .await
        .expect("create");
    let post = |i: usize| NewEntry {
        author: alice.clone(),
        ts: 2,
        body: EventBody::Message {
            client_msg_id: format!("m{i}"),
            text: format!("message {i}"),
            attachments: vec![],
            mentions: vec![],
            recalled: false,
        },
    };
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
