//! The server: opens the store, builds the hub and the HTTP/WebSocket routes, serves until the
//! shutdown signal, then drains connections under a deadline and closes the store.
//!
//! Shutdown is a parameter ([`run`] takes a [`Shutdown`]), so tests and `main` drive it alike.

use crate::bus::redis::RedisBus;
use crate::bus::{Inbox, LocalBus, SharedBus};
use crate::config::Config;
use crate::directory::token::TokenKey;
use crate::hub::{Hub, Services};
use crate::shutdown::Shutdown;
use crate::store::sqlite::{SqliteStore, TestFaults};
use crate::store::SharedStore;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("file storage: {0}")]
    Blob(#[from] crate::blob::BlobError),
    #[error(
        "cannot listen on {0}: {1} — another process may hold the port (stop it), or choose \
         another address with --listen, CROSSROOM_LISTEN or `listen` in the config file"
    )]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error(
        "cannot use Redis at {0}: {1} — check that it runs and answers there, and the URL given \
         by --redis, CROSSROOM_REDIS or `redis` in the config file (start-up waits for it up to \
         --redis-wait-secs)"
    )]
    Redis(String, crate::store::StoreError),
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::LockError),
    #[error("cannot open the database {0}: {1} — check the data directory (--data-dir) and its permissions")]
    Database(std::path::PathBuf, crate::store::StoreError),
}

/// Every route, under the layers every answer passes through: request counts (outermost, so
/// they see the final status) and JSON error bodies.
fn routes(config: &Config, hub: Arc<Hub>) -> Router {
    use axum::middleware::from_fn;
    let mut app = Router::new();
    if config.testing.ws_echo {
        tracing::warn!("[testing] ws_echo is on: /v1/echo echoes WebSocket messages");
        app = app.route("/v1/echo", get(crate::session::echo_handler));
    }
    app.route("/v1/ws", get(crate::session::ws_handler))
        .merge(crate::http::health::routes())
        .route("/v1/ops", get(crate::ops::handler))
        .merge(crate::web::routes())
        .merge(crate::http::directory::routes())
        .merge(crate::http::invite::routes())
        .merge(crate::http::groups::routes())
        .merge(crate::http::files::routes())
        .fallback(no_route)
        .layer(from_fn(crate::http::layers::json_errors))
        .layer(from_fn(crate::http::layers::count))
        .with_state(hub)
}

/// Redis URLs as they may be shown: without passwords.
fn shown_urls(urls: &[String]) -> String {
    urls.iter()
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(i), Some(j)) if j > i => format!("{}***{}", &u[..i + 3], &u[j..]),
            _ => u.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every unknown route answers the JSON error shape (404 `not_found`, naming the route), not an
/// empty body.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> crate::error::ApiError {
    crate::error::ApiError::not_found(format!("route {method} {}", uri.path()))
}

/// Say where the server listens, where the operator key is and, on a server with no company
/// yet, how to create the first one; and what to configure when browsers will reach it under a
/// name it cannot know. (The key itself is never logged.)
async fn announce(config: &Config, addr: std::net::SocketAddr, hub: &Hub) {
    tracing::info!(
        %addr,
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("CROSSROOM_COMMIT"),
        "listening"
    );
    let key_file = config.data_dir.join("operator.key");
    let key = match &config.operator_key {
        Some(_) => "the configured one (--operator-key, CROSSROOM_OPERATOR_KEY or the config file)"
            .to_owned(),
        None => key_file.display().to_string(),
    };
    tracing::info!("operator key (creates companies; also opens /dashboard): {key}");
    // A failed read here only costs the hint; the store's health is /readyz's to report.
    if let Ok(companies) = hub.store.companies().await {
        if companies.is_empty() {
            let bearer = match &config.operator_key {
                Some(_) => "$CROSSROOM_OPERATOR_KEY".to_owned(),
                None => format!("$(cat {})", key_file.display()),
            };
            tracing::info!(
                "no company yet; create the first (its admin key is in the answer, shown once; \
                 README \"First steps\"): curl http://{addr}/v1/admin/companies \
                 -H \"Authorization: Bearer {bearer}\" \
                 --json '{{\"id\":\"example.com\",\"name\":\"Example\"}}'"
            );
        }
    }
    if let Some(w) = config.origin_warning() {
        tracing::warn!("{w}");
    }
}

/// This node's name: `node_name`, or the address it listens on.
fn node_name(config: &Config, listener: &TcpListener) -> std::io::Result<String> {
    match &config.node_name {
        Some(n) => Ok(n.clone()),
        None => Ok(listener.local_addr()?.to_string()),
    }
}

/// What `run` reports once it is listening (for `--demo` and for tests).
pub struct Started {
    pub hub: Arc<Hub>,
    pub addr: std::net::SocketAddr,
    pub data_dir: std::path::PathBuf,
}

/// Serve on `listener` until `shutdown` triggers. `on_start` runs once the store is open and
/// before the first connection is accepted.
pub async fn run<F, Fut>(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
    on_start: F,
) -> Result<(), ServerError>
where
    F: FnOnce(Started) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut secrets = config.prepare()?;
    // Held until `run` returns: no second server opens this directory's store meanwhile.
    let _lock = crate::data_dir::DataDirLock::acquire(&config.data_dir)?;
    let store = open_store(&config, &mut secrets, &shutdown).await?;
    // One bus per node: the Redis bus in cluster mode, told below where to deliver.
    let redis_bus = match config.redis.is_empty() {
        true => None,
        false => Some(RedisBus::start(&config.redis, shutdown.clone()).await?),
    };
    let bus: SharedBus = match &redis_bus {
        Some(b) => b.clone(),
        None => Arc::new(LocalBus),
    };
    let blobs = open_blobs(&config)?;
    let hub = Hub::new(Services {
        store: store.clone(),
        bus,
        limits: config.limits.clone(),
        tokens: TokenKey::new(secrets.token_secret.as_bytes()),
        operator_key: secrets.operator_key.clone(),
        public_url: match &config.public_url {
            Some(_) => config.public_url(),
            None => format!("http://{}", listener.local_addr()?),
        },
        mailer: crate::mail::Mailer::new(config.smtp.as_ref(), &config.data_dir),
        blobs: blobs.clone(),
        origins: config.origins(listener.local_addr()?),
        shutdown: shutdown.clone(),
        tenant_labels: config.metrics.tenant_labels,
        node: node_name(&config, &listener)?,
    });
    let addr = listener.local_addr()?;
    if let Some(bus) = &redis_bus {
        let inbox: Arc<dyn Inbox> = hub.clone();
        bus.attach(Arc::downgrade(&inbox));
        shutdown.spawn_background(crate::room::registry::sweep_loop(Arc::downgrade(
            hub.rooms.context(),
        )));
    }
    if config.files.sweep_interval_secs > 0 {
        shutdown.spawn_background(crate::blob::sweep::sweep_loop(
            blobs,
            store.clone(),
            Duration::from_secs(config.files.sweep_interval_secs),
            Duration::from_secs(config.files.orphan_grace_secs),
            config.limits.attachment_removable_ms(),
        ));
    }
    crate::ops::spawn_sampler(hub.clone());
    on_start(Started {
        hub: hub.clone(),
        addr,
        data_dir: config.data_dir.clone(),
    })
    .await;

    let app = routes(&config, hub.clone());
    announce(&config, addr, &hub).await;
    serve(
        listener,
        app,
        &shutdown,
        Duration::from_secs(config.limits.handshake_timeout_secs),
    )
    .await;

    // Sessions saw the same signal and are closing with 1001; give them the grace period.
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, shutdown.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            left = shutdown.live_connections(),
            "grace period over; closing the remaining connections by force"
        );
    }
    // No session is left to send to a room: let the actors finish what they queued and stop,
    // end the background loops, and wait for every task before the store closes.
    hub.rooms.stop_all();
    shutdown.stop_background();
    if tokio::time::timeout_at(deadline, shutdown.tasks_finished())
        .await
        .is_err()
    {
        tracing::warn!(
            left = shutdown.tasks_running(),
            "grace period over; closing the store with tasks still running"
        );
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The embedded SQLite store, or Redis in cluster mode. Every node signs and checks tokens with
/// one secret, and takes one operator key: configured ones are used as they are; generated ones
/// are agreed on through Redis (the first node's wins) and written back to this node's files.
async fn open_store(
    config: &Config,
    secrets: &mut crate::config::Secrets,
    shutdown: &Shutdown,
) -> Result<SharedStore, ServerError> {
    Ok(if config.redis.is_empty() {
        let path = config.database_path();
        // Test-only: every commit held back this long, to show that live delivery does not
        // wait for a slow disk (issue 20's stalled-commit runs and tests); and every commit
        // failing while a file exists, for the path of a delivered tail that was not stored.
        let faults = TestFaults {
            commit_stall: std::env::var("CROSSROOM_TEST_COMMIT_STALL_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or_default(),
            commit_fail_file: std::env::var_os("CROSSROOM_TEST_COMMIT_FAIL_FILE").map(Into::into),
        };
        if !faults.commit_stall.is_zero() || faults.commit_fail_file.is_some() {
            tracing::warn!(?faults, "test knobs: commits are stalled or made to fail");
        }
        Arc::new(SqliteStore::open_with(&path, faults).map_err(|e| ServerError::Database(path, e))?)
    } else {
        let redis = open_redis(config, shutdown).await?;
        if config.token_secret.is_none() {
            secrets.token_secret = redis.shared_secret("token", &secrets.token_secret).await?;
            std::fs::write(config.data_dir.join("token.secret"), &secrets.token_secret)?;
        }
        if config.operator_key.is_none() {
            secrets.operator_key = redis
                .shared_secret("operator", &secrets.operator_key)
                .await?;
            std::fs::write(config.data_dir.join("operator.key"), &secrets.operator_key)?;
        }
        Arc::new(redis)
    })
}

/// The Redis store, tried again with backoff (100 ms doubling to 5 s) while it does not answer,
/// for up to `redis_wait_secs`: nodes and Redis started together (a reboot, a deploy) need not
/// come up in order. A shutdown signal ends the wait.
async fn open_redis(
    config: &Config,
    shutdown: &Shutdown,
) -> Result<crate::store::redis::RedisStore, ServerError> {
    let shown = shown_urls(&config.redis);
    tracing::info!(redis = %shown, "cluster mode: store and bus on Redis");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.redis_wait_secs);
    let mut pause = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let e = match crate::store::redis::RedisStore::open_with(
            &config.redis,
            config.replication.ack_replicas,
            config.replication.ack_timeout_ms,
        )
        .await
        {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        let now = tokio::time::Instant::now();
        if now + pause > deadline {
            return Err(ServerError::Redis(shown, e));
        }
        tracing::warn!(
            redis = %shown,
            attempt,
            error = %e,
            retry_in_ms = pause.as_millis() as u64,
            "Redis does not answer yet; trying again (redis_wait_secs = {})",
            config.redis_wait_secs
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.triggered() => return Err(ServerError::Redis(shown, e)),
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The file bytes: the `[s3]` bucket when configured, else `DATA_DIR/files/`.
fn open_blobs(config: &Config) -> Result<Arc<dyn crate::blob::BlobStore>, ServerError> {
    let blobs: Arc<dyn crate::blob::BlobStore> = match &config.s3 {
        Some(s3) => Arc::new(crate::blob::s3::S3Blobs::new(s3)?),
        None => {
            let (local, parts) =
                crate::blob::local::LocalBlobs::open(config.data_dir.join("files"))?;
            if parts > 0 {
                tracing::warn!(parts, "removed uploads a crash cut off");
            }
            Arc::new(local)
        }
    };
    if config.s3.is_none() && !config.redis.is_empty() {
        tracing::warn!(
            "cluster mode with files on this node's disk: a file uploaded here is served only \
             here; configure [s3] so that every node serves every file"
        );
    }
    tracing::info!(files = %blobs.describe(), "file storage");
    Ok(blobs)
}

/// Accept connections until shutdown: HTTP/1.1 with upgrades (WebSocket), `TCP_NODELAY`, and a
/// deadline for the request head, so a client that opens a socket and trickles (or sends
/// nothing) cannot hold it ("slowloris"). On shutdown, open HTTP connections finish their
/// request and close; WebSocket sessions see the same signal and close with 1001.
async fn serve(listener: TcpListener, app: Router, shutdown: &Shutdown, head_timeout: Duration) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(head_timeout);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.triggered() => break,
        };
        // Frames are small and latency matters: do not wait to coalesce them.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        // Handlers learn the peer's address (`ConnectInfo`): admission counts per address.
        let service =
            hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
                app.clone(),
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                },
            ));
        let conn = http
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
            .with_upgrades();
        let stop = shutdown.clone();
        shutdown.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "http connection ended");
                    }
                }
                _ = stop.triggered() => {
                    conn.as_mut().graceful_shutdown();
                    // Bounded by the head timeout or the request in flight.
                    let _ = conn.await;
                }
            }
        });
    }
}
