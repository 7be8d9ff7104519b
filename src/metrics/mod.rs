//! Process-wide metrics: counters and latency histograms bumped on the hot paths, gauges set from
//! the node's state when scraped ([`Gauges`], by `http::health`). `GET /metrics` renders them in the Prometheus/OpenMetrics text format
//! (the `prometheus-client` crate); the ops stream ([`crate::ops`]) samples the same values every
//! second.
//!
//! One static instance: the counters are atomics, cheap enough to bump anywhere without threading
//! a handle through every layer. Beside the `crossroom_` series: the standard `process_*` series
//! ([`process`]) and `crossroom_build_info{version,commit}`.

use crossroom_protocol::ops::Percentiles;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

pub mod process;

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Upper bounds (seconds) of the latency buckets: 50 µs to 5 s.
const LATENCY_BOUNDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub deliveries: Counter,
    pub messages: Counter,
    pub entries: Counter,
    pub queue_drops: Counter,
    pub slow_consumers: Counter,
    /// Members the periodic reconciliation found without external permission (G13) and removed.
    pub policy_repairs: Counter,
    /// Stored file bytes no record owned, removed by the orphan sweep.
    pub orphan_blobs: Counter,
    /// Attachments no post took in time, removed by the files sweep (M1).
    pub unposted_attachments: Counter,
    pub commit: Latency,
    pub fanout: Latency,
    /// Cluster mode: commit to arrival on this node's bus subscription.
    pub bus_lag: Latency,
    pub bus_gap_fills: Counter,
    pub bus_resubscriptions: Counter,
    /// Rooms moved to a new epoch because entries delivered before their commit were not
    /// stored as delivered.
    pub epochs_moved: Counter,
    /// Refused authentications, by where (`ws_header`, `ws_frame`, `admin`) and reason.
    auth_failures: Family<Labels, Counter>,
    /// WebSocket upgrades answered with an HTTP error instead of a socket, by reason.
    upgrades_rejected: Family<Labels, Counter>,
    /// HTTP requests by route template, method and status (WebSocket upgrades are 101).
    http_requests: Family<Labels, Counter>,
    build_info: Family<Labels, Gauge>,
    bus_up: Gauge,
    connections: Gauge,
    sessions: Gauge,
    sessions_by_company: Family<Labels, Gauge>,
    rooms: Gauge,
    store_up: Gauge,
    ops_streams: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let m = Metrics {
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            deliveries: Counter::default(),
            messages: Counter::default(),
            entries: Counter::default(),
            queue_drops: Counter::default(),
            slow_consumers: Counter::default(),
            policy_repairs: Counter::default(),
            orphan_blobs: Counter::default(),
            unposted_attachments: Counter::default(),
            commit: Latency::new(),
            fanout: Latency::new(),
            bus_lag: Latency::new(),
            bus_gap_fills: Counter::default(),
            bus_resubscriptions: Counter::default(),
            epochs_moved: Counter::default(),
            auth_failures: Family::default(),
            upgrades_rejected: Family::default(),
            http_requests: Family::default(),
            build_info: Family::default(),
            bus_up: Gauge::default(),
            connections: Gauge::default(),
            sessions: Gauge::default(),
            sessions_by_company: Family::default(),
            rooms: Gauge::default(),
            store_up: Gauge::default(),
            ops_streams: Gauge::default(),
            registry: Registry::default(),
        };
        let r = root.sub_registry_with_prefix("crossroom");
        m.register_counters(r);
        m.register_requests(r);
        m.register_gauges(r);
        m.build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("commit", env!("CROSSROOM_COMMIT").to_owned()),
            ])
            .set(1);
        Metrics {
            registry: root,
            ..m
        }
    }

    /// What came to the door: authentications, upgrades and HTTP requests.
    fn register_requests(&self, r: &mut Registry) {
        r.register(
            "auth_failures",
            "Refused authentications: via ws_header (token in the upgrade), ws_frame (auth frame), admin (API key) or ops (operator key on /v1/ops); reason invalid_token, token_expired, user_disabled, unavailable, auth_timeout, missing_key, wrong_key or wrong_kind",
            self.auth_failures.clone(),
        );
        r.register(
            "upgrades_rejected",
            "WebSocket upgrades refused with an HTTP error: reason draining, origin, auth, too_many_sessions or too_many_unauthenticated",
            self.upgrades_rejected.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route template (unmatched for unknown routes), method and status",
            self.http_requests.clone(),
        );
        r.register(
            "build_info",
            "Always 1: the version and commit of the running binary",
            self.build_info.clone(),
        );
    }

    /// A refused authentication.
    pub fn auth_failed(&self, via: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&vec![
                ("via", via.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// A WebSocket upgrade answered with an error.
    pub fn upgrade_rejected(&self, reason: &'static str) {
        self.upgrades_rejected
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// One answered HTTP request. `route` is the matched template (`/v1/admin/users/{id}`), never
    /// the path itself: the label set stays bounded whatever clients ask for.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// Counters and latency histograms.
    fn register_counters(&self, r: &mut Registry) {
        r.register(
            "frames_in",
            "WebSocket data frames received from clients",
            self.frames_in.clone(),
        );
        r.register(
            "frames_out",
            "WebSocket frames written to clients",
            self.frames_out.clone(),
        );
        r.register(
            "deliveries",
            "Room events queued to subscribed sessions",
            self.deliveries.clone(),
        );
        r.register("messages", "Messages committed", self.messages.clone());
        r.register(
            "entries",
            "Room log entries committed (messages, changes, feature entries)",
            self.entries.clone(),
        );
        r.register(
            "queue_drops",
            "Frames not queued because the session was closing or over its queue budget",
            self.queue_drops.clone(),
        );
        r.register(
            "slow_consumer_disconnects",
            "Sessions closed because their outbound queue was full (close 4000)",
            self.slow_consumers.clone(),
        );
        r.register(
            "policy_repairs",
            "Group members found without external permission by the periodic reconciliation, and removed (stays 0 unless a revocation was cut short)",
            self.policy_repairs.clone(),
        );
        r.register(
            "orphan_blobs_removed",
            "Stored file bytes that no file record owned (an upload cut short by a crash), removed by the orphan sweep",
            self.orphan_blobs.clone(),
        );
        r.register(
            "unposted_attachments_removed",
            "Attachments that no post took within limits.unposted_attachment_secs, removed by the files sweep",
            self.unposted_attachments.clone(),
        );
        r.register(
            "commit_latency_seconds",
            "Time from handing entries to the store to their durable commit",
            self.commit.histogram.clone(),
        );
        r.register(
            "fanout_latency_seconds",
            "Time to queue one committed event to every subscribed session of its room",
            self.fanout.histogram.clone(),
        );
        r.register(
            "bus_lag_seconds",
            "Cluster mode: time from an entry's timestamp to its arrival over this node's bus subscription",
            self.bus_lag.histogram.clone(),
        );
        r.register(
            "bus_gap_fills",
            "Cluster mode: gaps in a room's seqs filled from the log (entries the bus did not bring)",
            self.bus_gap_fills.clone(),
        );
        r.register(
            "epochs_moved",
            "Rooms moved to a new epoch while running because entries delivered before their commit were not stored as delivered (clients reset)",
            self.epochs_moved.clone(),
        );
        r.register(
            "bus_resubscriptions",
            "Cluster mode: room subscriptions confirmed (first and after every reconnect)",
            self.bus_resubscriptions.clone(),
        );
    }

    /// Gauges, set at scrape time.
    fn register_gauges(&self, r: &mut Registry) {
        r.register(
            "bus_up",
            "Cluster mode: 1 while this node's own bus probes come back (0 = degraded); single node: 1",
            self.bus_up.clone(),
        );
        r.register(
            "connections",
            "Open WebSocket connections (chat and ops)",
            self.connections.clone(),
        );
        r.register(
            "sessions",
            "Authenticated chat sessions",
            self.sessions.clone(),
        );
        r.register(
            "company_sessions",
            "Authenticated chat sessions per company",
            self.sessions_by_company.clone(),
        );
        r.register(
            "rooms_active",
            "Rooms with a live actor on this node",
            self.rooms.clone(),
        );
        r.register(
            "store_up",
            "1 when the store answered the last scrape's probe, else 0",
            self.store_up.clone(),
        );
        r.register(
            "ops_streams",
            "Open ops streams (GET /v1/ops)",
            self.ops_streams.clone(),
        );
    }

    pub fn ops_stream_opened(&self) {
        self.ops_streams.inc();
    }

    pub fn ops_stream_closed(&self) {
        self.ops_streams.dec();
    }

    /// Set the gauges to `now` and render everything.
    pub fn render(&self, now: Gauges) -> String {
        self.connections.set(gauge(now.connections));
        self.sessions.set(gauge(now.sessions));
        self.rooms.set(gauge(now.rooms));
        self.store_up.set(i64::from(now.store_up));
        self.bus_up.set(i64::from(now.bus_up));
        // Companies whose last session closed disappear rather than linger at 0.
        self.sessions_by_company.clear();
        for (company, n) in now.sessions_by_company {
            self.sessions_by_company
                .get_or_create(&vec![("company", company.0)])
                .set(gauge(n));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `text` (OpenMetrics) with a `node` label on every sample, so that Prometheus can tell the
/// nodes of a cluster apart and add them up.
pub fn with_node_label(text: &str, node: &str) -> String {
    let value: String = node
        .chars()
        .flat_map(|c| match c {
            '\\' => vec!['\\', '\\'],
            '"' => vec!['\\', '"'],
            '\n' => vec!['\\', 'n'],
            c => vec![c],
        })
        .collect();
    let label = format!("node=\"{value}\"");
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else if let Some(i) = line
            .find('{')
            .filter(|i| line.find(' ').is_none_or(|sp| *i < sp))
        {
            let rest = &line[i + 1..];
            out.push_str(&line[..=i]);
            out.push_str(&label);
            if !rest.starts_with('}') {
                out.push(',');
            }
            out.push_str(rest);
        } else if let Some(sp) = line.find(' ') {
            out.push_str(&line[..sp]);
            out.push('{');
            out.push_str(&label);
            out.push('}');
            out.push_str(&line[sp..]);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The node's state at scrape time, read by the `/metrics` handler.
pub struct Gauges {
    pub connections: usize,
    pub sessions: usize,
    pub rooms: usize,
    pub store_up: bool,
    pub bus_up: bool,
    pub sessions_by_company: Vec<(crossroom_protocol::CompanyId, usize)>,
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A latency histogram: exported to Prometheus, and readable as cumulative bucket counts so the
/// ops sampler can compute percentiles of the last second from two readings.
pub struct Latency {
    histogram: Histogram,
    counts: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    max_micros: AtomicU64,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            histogram: Histogram::new(LATENCY_BOUNDS),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            max_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        self.histogram.observe(secs);
        let i = LATENCY_BOUNDS.partition_point(|b| *b < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// The per-bucket counts so far, and the largest value seen since the last reading.
    pub fn read(&self) -> LatencyReading {
        LatencyReading {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            max_micros: self.max_micros.swap(0, Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyReading {
    counts: [u64; LATENCY_BOUNDS.len() + 1],
    max_micros: u64,
}

impl Default for LatencyReading {
    fn default() -> Self {
        LatencyReading {
            counts: [0; LATENCY_BOUNDS.len() + 1],
            max_micros: 0,
        }
    }
}

impl LatencyReading {
    /// Percentiles of the observations between `earlier` and `self`, interpolated within a
    /// bucket (so a reported p99 is never below the bucket's lower bound nor above its upper).
    pub fn since(&self, earlier: &LatencyReading) -> Percentiles {
        let delta: Vec<u64> = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let count: u64 = delta.iter().sum();
        if count == 0 {
            return Percentiles::default();
        }
        let max = self.max_micros as f64 / 1000.0;
        let at = |q: f64| -> f64 {
            let rank = (q * count as f64).ceil().max(1.0);
            let mut seen = 0u64;
            for (i, n) in delta.iter().enumerate() {
                if *n == 0 {
                    continue;
                }
                if (seen + n) as f64 >= rank {
                    let lo = if i == 0 { 0.0 } else { LATENCY_BOUNDS[i - 1] };
                    let hi = LATENCY_BOUNDS.get(i).copied().unwrap_or(lo * 2.0);
                    let frac = (rank - seen as f64) / *n as f64;
                    let ms = (lo + (hi - lo) * frac) * 1000.0;
                    // The bucket's upper bound may be past the largest value actually seen.
                    return if max > 0.0 { ms.min(max) } else { ms };
                }
                seen += n;
            }
            max
        };
        Percentiles {
            count,
            p50: round3(at(0.50)),
            p99: round3(at(0.99)),
            max: round3(max),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_interval_only() {
        let l = Latency::new();
        for _ in 0..100 {
            l.observe(Duration::from_millis(200));
        }
        let before = l.read();
        for _ in 0..99 {
            l.observe(Duration::from_micros(300));
        }
        l.observe(Duration::from_millis(40));
        let p = l.read().since(&before);
        assert_eq!(p.count, 100);
        // 300 µs lies in the (250 µs, 500 µs] bucket; the old 200 ms values are not counted.
        assert!(p.p50 > 0.25 && p.p50 <= 0.5, "{p:?}");
        assert!(p.p99 > 0.25 && p.p99 <= 0.5, "{p:?}");
        assert_eq!(p.max, 40.0);
    }

    #[test]
    fn an_empty_interval_reports_zeros() {
        let l = Latency::new();
        l.observe(Duration::from_millis(3));
        let a = l.read();
        assert_eq!(l.read().since(&a), Percentiles::default());
    }

    #[test]
    fn the_tail_bucket_is_bounded_by_the_maximum() {
        let l = Latency::new();
        let before = l.read();
        l.observe(Duration::from_secs(12));
        let p = l.read().since(&before);
        assert_eq!(p.count, 1);
        assert_eq!(p.max, 12_000.0);
        assert!(p.p99 <= 12_000.0);
    }
}

#[cfg(test)]
mod node_label_tests {
    #[test]
    fn every_sample_gets_the_node_label() {
        let text = "# TYPE crossroom_messages counter\ncrossroom_messages_total 3\n\
                    crossroom_commit_seconds_bucket{le=\"0.001\"} 1\ncrossroom_x{} 2\n# EOF\n";
        assert_eq!(
            super::with_node_label(text, "n\"1"),
            "# TYPE crossroom_messages counter\ncrossroom_messages_total{node=\"n\\\"1\"} 3\n\
             crossroom_commit_seconds_bucket{node=\"n\\\"1\",le=\"0.001\"} 1\n\
             crossroom_x{node=\"n\\\"1\"} 2\n# EOF\n"
        );
    }
}
