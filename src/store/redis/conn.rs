//! The connection to Redis: a single server (reconnecting) or a cluster, with the deadlines that
//! keep a request from hanging on a Redis that does not answer.

use super::keys::backend;
use super::scripts::collect_texts;
use crate::store::{StoreError, StoreResult};
use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

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

    /// The fewest replicas any primary has (`connected_slaves` of `INFO replication`).
    pub(super) async fn fewest_replicas(&self) -> StoreResult<u64> {
        let mut cmd = ::redis::cmd("INFO");
        cmd.arg("replication");
        let reply: Value = match self {
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
}
