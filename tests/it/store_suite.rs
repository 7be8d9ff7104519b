//! The store behaviour suite on every backend.

use crossroom::store::sqlite::SqliteStore;
use crossroom::store::{suite, SharedStore};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_passes_on_sqlite() {
    let dir = tempfile::tempdir().expect("tmp");
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("t.db")).expect("open"));
    suite::run(store.clone()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t.db");
    let store: SharedStore = Arc::new(SqliteStore::open(&path).expect("open"));
    suite::run(store.clone()).await;
    let before = store
        .read_range(&"r_pipe".into(), 0, u64::MAX, 1000)
        .await
        .expect("read");
    store.close().await;
    drop(store);
    let again: SharedStore = Arc::new(SqliteStore::open(&path).expect("reopen"));
    let after = again
        .read_range(&"r_pipe".into(), 0, u64::MAX, 1000)
        .await
        .expect("read");
    assert_eq!(before, after);
    assert_eq!(after.len(), 201);
    again.close().await;
}
