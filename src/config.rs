//! Typed configuration: defaults that run out of the box, a TOML file (`--config`), then
//! environment variables and command-line flags on top; validated once at start.
//!
//! Secrets (the operator key and the token signing secret) come from the configuration when set,
//! and otherwise are generated once and kept in files under the data directory (mode 0600), so a
//! restart keeps tokens valid.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The origins whose browser pages may open a WebSocket (cross-site WebSocket hijacking).
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// Admitted as written: `allowed_origins`, and the server's own (`public_url`'s origin, or
    /// the bound address).
    pub listed: Vec<String>,
    /// Also admit the origin of the `Host` the request came to (`http://` or `https://` +
    /// Host): the page's own origin however the server is reached. Only without `public_url`,
    /// which then names the one origin of the server's own pages.
    pub from_host: bool,
}

impl Origins {
    /// Whether a page of `origin` may open a session on a request that came to `host`.
    pub fn admit(&self, origin: &str, host: Option<&str>) -> bool {
        if self.listed.iter().any(|a| a == origin) {
            return true;
        }
        let (Some(host), true) = (host, self.from_host) else {
            return false;
        };
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket.
    pub listen: SocketAddr,
    /// Where the SQLite database, secrets and files live.
    pub data_dir: PathBuf,
    /// The operator's API key (creates companies). Generated into `DATA_DIR/operator.key` if unset.
    pub operator_key: Option<String>,
    /// Secret for signing user tokens. Generated into `DATA_DIR/token.secret` if unset.
    pub token_secret: Option<String>,
    /// Logs as `human` text or `json` lines.
    pub log_format: LogFormat,
    /// The server's address as people reach it, for links (invitations). Default:
    /// `http://LISTEN`.
    pub public_url: Option<String>,
    /// How long a graceful shutdown waits for connections to drain before forcing them closed.
    pub shutdown_grace_secs: u64,
    /// On SIGTERM, how long `/readyz` answers 503 (and new sessions are refused) before the
    /// held sessions are told 1001: a load balancer's health-check interval or two.
    pub drain_delay_secs: u64,
    /// Outgoing mail; without it, invitation emails go to `DATA_DIR/outbox/`.
    pub smtp: Option<SmtpConfig>,
    /// Browser origins allowed to open a WebSocket (exact match, e.g. `https://chat.example`).
    /// The server's own origin (from `public_url`) is always allowed; requests without an
    /// `Origin` header (native clients) are not affected.
    pub allowed_origins: Vec<String>,
    /// Cluster mode: Redis URLs (one: a single Redis; several: Redis Cluster seed nodes). The
    /// room log, projections and directory then live in Redis, shared by every node, and events
    /// fan out across nodes over Redis pub/sub. Empty: the embedded SQLite store.
    pub redis: Vec<String>,
    /// Cluster mode: how long start-up keeps trying a Redis that does not answer (backoff from
    /// 100 ms to 5 s between attempts) before it gives up; 0 tries once.
    pub redis_wait_secs: u64,
    /// Cluster mode: what acknowledging an append waits for.
    pub replication: ReplicationConfig,
    /// Where file bytes live: S3-compatible object storage when set (cluster mode needs it, so
    /// that every node serves every file); otherwise `DATA_DIR/files/`.
    pub s3: Option<S3Config>,
    /// The orphan sweep of file bytes.
    pub files: FilesConfig,
    /// This node's name in `/metrics` (a `node` label) and the ops stream; default its
    /// listening address.
    pub node_name: Option<String>,
    /// What `/metrics` shows.
    pub metrics: MetricsConfig,
    pub limits: Limits,
    /// Switches for conformance tests; never on in production.
    pub testing: TestingConfig,
}

/// `[testing]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// Serve `GET /v1/echo`: a WebSocket that echoes every message, on the same stack, limits
    /// and buffers as `/v1/ws`, for RFC 6455 conformance suites (`scripts/conformance`).
    pub ws_echo: bool,
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Label `crossroom_company_sessions` with each company's id (off by default: `/metrics`
    /// is unauthenticated, and the list of tenants is not public).
    pub tenant_labels: bool,
}

/// `[replication]`: with Redis replicas, an acknowledged entry must survive a failover.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Acknowledge (and publish) an append only once this many replicas of its shard have it
    /// (Redis `WAIT`). Unset: 1 if every primary has a replica at start, else 0.
    pub ack_replicas: Option<u32>,
    /// How long an append waits for them; past it the request fails `unavailable` (a retry is
    /// not duplicated).
    pub ack_timeout_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            ack_replicas: None,
            ack_timeout_ms: 1000,
        }
    }
}

/// `[s3]`: an S3-compatible bucket for file bytes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible server; unset: AWS S3 of `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Unset: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` from the environment (or instance
    /// credentials).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Keys are `PREFIX/f_…`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Multipart part size (bytes, at least 5 MiB, S3's minimum); uploads up to one part are a
    /// single PUT.
    #[serde(default = "default_part_size")]
    pub part_size_bytes: usize,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_prefix() -> String {
    "files".to_owned()
}

fn default_part_size() -> usize {
    8 * 1024 * 1024
}

/// `[files]`: stored bytes that no file record owns (a crash between the upload and its
/// record) are removed by a periodic sweep once they are older than the grace period.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Seconds between sweeps (0: no sweep).
    pub sweep_interval_secs: u64,
    /// Bytes younger than this are never swept: an upload may still be about to record them.
    pub orphan_grace_secs: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            sweep_interval_secs: 600,
            orphan_grace_secs: 3600,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

/// Limits that protect the server. Every one is announced or documented in PROTOCOL.md.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message (and frame) accepted; larger ones close the connection (1009).
    pub max_frame_bytes: usize,
    /// Frames a session's outbound queue holds before the session is a slow consumer.
    pub outbound_queue_frames: usize,
    /// Bytes a session's outbound queue holds before the session is a slow consumer.
    pub outbound_queue_bytes: usize,
    /// Most events a `subscribe` replays; further behind gets `reset`.
    pub max_replay: u32,
    /// Single server: a room with at least this many subscribers on this node delivers entries
    /// before they commit (each post then costs a read to tell a retry); smaller rooms deliver
    /// at the commit, where that read would cost more than the fan-out it speeds up.
    pub early_delivery_subscribers: usize,
    /// Largest `history` page.
    pub max_history_page: u32,
    /// Rooms one connection may subscribe to.
    pub max_subscriptions: u32,
    /// Participants named in one create request.
    pub max_participants: usize,
    /// Seconds a client has to send a whole HTTP request head (upgrade included): past it the
    /// connection is closed (slowloris).
    pub handshake_timeout_secs: u64,
    /// Seconds a connection without an `Authorization` header has to send `auth`.
    pub auth_timeout_secs: u64,
    /// Undecodable frames tolerated on one connection before it is closed (4503).
    pub max_bad_frames: u32,
    /// Commands a room actor's mailbox holds; senders wait when it is full.
    pub room_mailbox: usize,
    /// Seconds a room actor with no subscribers and no work lives on.
    pub room_idle_secs: u64,
    /// Seconds between server pings on an idle connection.
    pub ping_interval_secs: u64,
    /// Seconds without any frame from the client (pongs included) before closing it (4003).
    pub idle_timeout_secs: u64,
    /// Requests per second one connection may send on average (token bucket).
    pub requests_per_sec: u32,
    /// Requests one connection may send in a burst; past it requests are refused
    /// (`rate_limited`), and a client that keeps going is closed (4002).
    pub request_burst: u32,
    /// Live sessions one user may hold on this node.
    pub max_sessions_per_user: usize,
    /// Live sessions one company's users may hold on this node.
    pub max_sessions_per_company: usize,
    /// WebSockets one source address may hold open before they authenticate (by `auth` frame);
    /// past it an upgrade without a token is refused with 429. Behind a reverse proxy every
    /// client shares its address: raise it there.
    pub max_unauthenticated_per_address: u32,
    /// The most `shared_storage_quota` a company admin may set (the operator may set more).
    pub company_storage_quota_ceiling: u64,
    /// The most `max_groups` a company admin may set (the operator may set more).
    pub company_max_groups_ceiling: u64,
    /// Sign-ups one invitation link admits per hour, per node.
    pub signups_per_link_per_hour: u32,
    /// Uploads one user may have in flight at once, per node (past it 429).
    pub max_uploads_per_user: u32,
    /// Seconds an upload's body may go without a byte before it is cut off (and its
    /// reservation of the quota given back).
    pub upload_idle_secs: u64,
    /// Seconds an attachment may wait to be posted (M1). Past it a post naming it is refused,
    /// and the files sweep removes it (giving its bytes back) once it is
    /// [`Limits::attachment_removable_ms`] old; its uploader may delete it before.
    pub unposted_attachment_secs: u64,
    /// Largest group profile image (bytes).
    pub max_image_bytes: u64,
    /// Largest folder file or attachment (bytes).
    pub max_upload_bytes: u64,
    /// tungstenite read buffer per connection (bytes).
    pub ws_read_buffer: usize,
    /// tungstenite write buffer target per connection (bytes): frames are batched up to this
    /// before a write, and always flushed after a batch.
    pub ws_write_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./crossroom-data"),
            operator_key: None,
            token_secret: None,
            log_format: LogFormat::Human,
            public_url: None,
            shutdown_grace_secs: 10,
            drain_delay_secs: 0,
            smtp: None,
            allowed_origins: Vec::new(),
            redis: Vec::new(),
            redis_wait_secs: 30,
            replication: ReplicationConfig::default(),
            s3: None,
            files: FilesConfig::default(),
            node_name: None,
            metrics: MetricsConfig::default(),
            limits: Limits::default(),
            testing: TestingConfig::default(),
        }
    }
}

impl Limits {
    /// How old (ms) an attachment may be when a post takes it (M1).
    pub fn attachment_postable_ms(&self) -> i64 {
        (self.unposted_attachment_secs as i64).saturating_mul(1000)
    }

    /// How old (ms) an attachment no committed post names must be for the sweep to remove it:
    /// the postable age plus a margin (as long again, at most 10 minutes) that a post which took
    /// it just in time has to commit.
    pub fn attachment_removable_ms(&self) -> i64 {
        let ttl = self.attachment_postable_ms();
        ttl.saturating_add(ttl.min(600_000))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 512 * 1024,
            outbound_queue_frames: 1024,
            outbound_queue_bytes: 4 * 1024 * 1024,
            max_replay: 1000,
            early_delivery_subscribers: 50,
            max_history_page: 100,
            max_subscriptions: 1000,
            max_participants: 1000,
            handshake_timeout_secs: 10,
            auth_timeout_secs: 10,
            max_bad_frames: 16,
            room_mailbox: 1024,
            room_idle_secs: 60,
            ping_interval_secs: 25,
            idle_timeout_secs: 60,
            requests_per_sec: 50,
            request_burst: 1_000,
            max_sessions_per_user: 20,
            max_sessions_per_company: 10_000,
            max_unauthenticated_per_address: 256,
            company_storage_quota_ceiling: 1024 * 1024 * 1024 * 1024,
            company_max_groups_ceiling: 100_000,
            signups_per_link_per_hour: 10,
            max_uploads_per_user: 4,
            upload_idle_secs: 30,
            unposted_attachment_secs: 86_400,
            max_image_bytes: 5 * 1024 * 1024,
            max_upload_bytes: 1024 * 1024 * 1024,
            ws_read_buffer: 1024,
            ws_write_buffer: 16 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
}

/// Values from the command line or environment that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub operator_key: Option<String>,
    pub token_secret: Option<String>,
    pub log_format: Option<LogFormat>,
    pub redis: Option<Vec<String>>,
    pub redis_wait_secs: Option<u64>,
}

impl Config {
    /// Defaults, then `file` (if any), then `overrides`; validated.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(path.to_owned(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))?
            }
            None => Config::default(),
        };
        if let Some(v) = overrides.listen {
            config.listen = v;
        }
        if let Some(v) = overrides.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = overrides.operator_key {
            config.operator_key = Some(v);
        }
        if let Some(v) = overrides.token_secret {
            config.token_secret = Some(v);
        }
        if let Some(v) = overrides.log_format {
            config.log_format = v;
        }
        if let Some(v) = overrides.redis {
            config.redis = v;
        }
        if let Some(v) = overrides.redis_wait_secs {
            config.redis_wait_secs = v;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self
            .redis
            .iter()
            .any(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
        {
            return bad("redis: every URL must start with redis:// or rediss://");
        }
        if self.replication.ack_timeout_ms == 0 {
            return bad("replication.ack_timeout_ms must be positive");
        }
        if let Some(s3) = &self.s3 {
            if s3.bucket.is_empty() {
                return bad("s3.bucket must be set");
            }
            if s3.part_size_bytes < 5 * 1024 * 1024 {
                return bad("s3.part_size_bytes must be at least 5 MiB (5242880), S3's minimum");
            }
            if let Some(e) = &s3.endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return bad("s3.endpoint must start with http:// or https://");
                }
            }
        }
        if l.max_frame_bytes < 1024 {
            return bad("limits.max_frame_bytes must be at least 1024");
        }
        if l.outbound_queue_frames < 16 || l.outbound_queue_bytes < l.max_frame_bytes {
            return bad("limits.outbound_queue_frames must be >= 16 and limits.outbound_queue_bytes >= limits.max_frame_bytes");
        }
        if l.max_replay as usize + 8 > l.outbound_queue_frames {
            return bad("limits.max_replay + 8 must fit in limits.outbound_queue_frames, or every long resume would end as a slow consumer");
        }
        if l.max_replay == 0 || l.max_history_page == 0 || l.max_subscriptions == 0 {
            return bad(
                "limits.max_replay, max_history_page and max_subscriptions must be positive",
            );
        }
        if l.room_mailbox == 0 || l.max_participants == 0 {
            return bad("limits.room_mailbox and max_participants must be positive");
        }
        if l.auth_timeout_secs == 0 || l.handshake_timeout_secs == 0 {
            return bad("limits.auth_timeout_secs and handshake_timeout_secs must be positive");
        }
        if l.ping_interval_secs == 0 || l.idle_timeout_secs <= l.ping_interval_secs {
            return bad(
                "limits.idle_timeout_secs must be longer than limits.ping_interval_secs (> 0)",
            );
        }
        if l.requests_per_sec == 0 || l.request_burst == 0 {
            return bad("limits.requests_per_sec and request_burst must be positive");
        }
        if l.max_sessions_per_user == 0 || l.max_sessions_per_company == 0 {
            return bad(
                "limits.max_sessions_per_user and max_sessions_per_company must be positive",
            );
        }
        if l.max_unauthenticated_per_address == 0
            || l.max_uploads_per_user == 0
            || l.unposted_attachment_secs == 0
        {
            return bad(
                "limits.max_unauthenticated_per_address, max_uploads_per_user and unposted_attachment_secs must be positive",
            );
        }
        if l.upload_idle_secs == 0 {
            return bad("limits.upload_idle_secs must be positive");
        }
        if l.ws_read_buffer < 512 {
            return bad("limits.ws_read_buffer must be at least 512");
        }
        for (name, v) in [
            ("operator_key", &self.operator_key),
            ("token_secret", &self.token_secret),
        ] {
            if let Some(s) = v {
                if s.len() < 16 {
                    return Err(ConfigError::Invalid(format!(
                        "{name} must be at least 16 characters"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The base URL for links people open.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// Origins allowed to open a WebSocket: the configured ones and the server's own — from
    /// `public_url` when it is set, else the address actually bound and whatever `Host` the
    /// page was served under (`localhost`, a real name behind a proxy).
    pub fn origins(&self, bound: SocketAddr) -> Origins {
        Origins {
            listed: self.listed_origins(bound),
            from_host: self.public_url.is_none(),
        }
    }

    fn listed_origins(&self, bound: SocketAddr) -> Vec<String> {
        let own = match &self.public_url {
            Some(_) => self.public_url(),
            None => format!("http://{bound}"),
        };
        // scheme://host[:port] of the public URL, without a path.
        let own = match own.find("://") {
            Some(i) => match own[i + 3..].find('/') {
                Some(j) => own[..i + 3 + j].to_owned(),
                None => own,
            },
            None => own,
        };
        let mut v = self.allowed_origins.clone();
        v.push(own);
        v
    }

    /// What to say at start when browsers will reach the server under a name it cannot know:
    /// a wildcard bind without `public_url`.
    pub fn origin_warning(&self) -> Option<String> {
        let wildcard = self.listen.ip().is_unspecified();
        (wildcard && self.public_url.is_none()).then(|| {
            format!(
                "listening on {} without public_url: browser pages are admitted from the origin \
                 of the Host they were served under; set public_url = \"https://chat.example.com\" \
                 (the address browsers use) so that invitation links and emails carry it, and \
                 allowed_origins for other sites' pages",
                self.listen
            )
        })
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("crossroom.db")
    }

    /// Create the data directory and resolve the secrets.
    pub fn prepare(&self) -> Result<Secrets, ConfigError> {
        let dir = &self.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| ConfigError::DataDir(dir.clone(), e))?;
        // The database, files and outbox (invitation links) are nobody else's to read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| ConfigError::DataDir(dir.clone(), e))?;
        }
        let operator_key = match &self.operator_key {
            Some(k) => k.clone(),
            None => secret_file(&dir.join("operator.key"), "op_")?,
        };
        let token_secret = match &self.token_secret {
            Some(k) => k.clone(),
            None => secret_file(&dir.join("token.secret"), "")?,
        };
        Ok(Secrets {
            operator_key,
            token_secret,
        })
    }
}

/// The resolved secrets.
#[derive(Clone)]
pub struct Secrets {
    pub operator_key: String,
    pub token_secret: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// Read a secret from `path`, creating it (random, mode 0600) if missing.
fn secret_file(path: &Path, prefix: &str) -> Result<String, ConfigError> {
    let err = |e| ConfigError::DataDir(path.to_owned(), e);
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = format!(
                "{prefix}{}{}",
                crate::random::token(),
                crate::random::token()
            );
            use std::io::Write;
            #[cfg(unix)]
            use std::os::unix::fs::OpenOptionsExt;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            opts.mode(0o600);
            let mut f = opts.open(path).map_err(err)?;
            f.write_all(secret.as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
            Ok(secret)
        }
        Err(e) => Err(err(e)),
    }
}

/// `[smtp]` in the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The sender, e.g. `crossroom <noreply@example.com>`.
    pub from: String,
}

fn default_port() -> u16 {
    25
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn a_wildcard_bind_without_public_url_is_warned_about() {
        let mut c = Config {
            listen: "0.0.0.0:8080".parse().expect("addr"),
            ..Config::default()
        };
        let w = c.origin_warning().expect("a warning");
        assert!(
            w.contains("0.0.0.0:8080") && w.contains("public_url"),
            "{w}"
        );
        c.public_url = Some("https://chat.example.com".into());
        assert_eq!(c.origin_warning(), None);
        assert_eq!(Config::default().origin_warning(), None, "loopback");
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[limits]\nmax_replay = 5\n",
        )
        .expect("write");
        let c = Config::load(Some(&path), Overrides::default()).expect("load");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.limits.max_replay, 5);
        let c = Config::load(
            Some(&path),
            Overrides {
                listen: Some("127.0.0.1:9001".parse().expect("addr")),
                ..Default::default()
            },
        )
        .expect("load");
        assert_eq!(c.listen.port(), 9001);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "lisen = \"x\"\n").expect("write");
        assert!(matches!(
            Config::load(Some(&path), Overrides::default()),
            Err(ConfigError::Parse(..))
        ));
        std::fs::write(&path, "[limits]\nmax_frame_bytes = 10\n").expect("write");
        assert!(matches!(
            Config::load(Some(&path), Overrides::default()),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn secrets_are_created_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let a = c.prepare().expect("secrets");
        let b = c.prepare().expect("secrets");
        assert_eq!(a.operator_key, b.operator_key);
        assert_eq!(a.token_secret, b.token_secret);
        assert!(a.operator_key.starts_with("op_"));
    }
}
