//! The writer: one task takes appends in call order and runs each room's share of a batch in
//! order, rooms side by side. Consecutive posts to a room go in one pipeline of `POSTS` scripts;
//! anything else is a projected append ([`super::plan`]). An append is acknowledged (and
//! published) once the replicas it waits for have it (`WAIT`).

use super::keys::*;
use super::plan::Plan;
use super::scripts::*;
use super::*;

/// Most appends the writer takes from its queue at once.
const WRITE_BATCH: usize = 512;

/// Fail every job of `groups` with `e`.
pub(super) fn fail_all(groups: Vec<Vec<(Job, String)>>, e: StoreError) {
    for (job, _) in groups.into_iter().flatten() {
        // A caller that stopped waiting needs no answer (here and below).
        let _ = job.done.send(Err(e.clone()));
    }
}

impl Inner {
    /// Take appends in call order; run each room's share of a batch in order, rooms side by side.
    pub(super) async fn write_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
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
                    .map(|(room, jobs)| self.run_room_jobs(room, jobs)),
            )
            .await;
        }
    }

    /// Sharded pub/sub on a cluster (the channel lives on the room's shard).
    pub(super) fn publish_cmd(&self) -> &'static str {
        match self.conn {
            Conn::Cluster(_) => "SPUBLISH",
            Conn::Single(_) => "PUBLISH",
        }
    }

    pub(super) async fn run_room_jobs(&self, room: RoomId, jobs: Vec<Job>) {
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
    pub(super) async fn run_posts(&self, room: &RoomId, posts: Vec<Job>) {
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
    pub(super) async fn replicated(&self, key: &str, writer: Option<&str>) -> StoreResult<()> {
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
    pub(super) async fn settle<I: IntoIterator<Item = String>>(&self, keys: I) -> StoreResult<()> {
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
    pub(super) async fn publish_new(&self, room: &RoomId, epoch: u64, plan: &Plan) {
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
    pub(super) async fn publish_replicated(&self, pipe: Pipeline) {
        if pipe.is_empty() {
            return;
        }
        if let Err(e) = pipe.query_async::<()>(&mut self.conn.clone()).await {
            tracing::warn!(error = %e, "cannot publish replicated entries; nodes catch up by sweep");
        }
    }

    pub(super) async fn post_outcome(
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

    pub(super) async fn event_at(
        &self,
        room: &RoomId,
        epoch: u64,
        seq: u64,
    ) -> StoreResult<Option<Event>> {
        let raw: Option<String> = ::redis::cmd("HGET")
            .arg(rk(room, "log"))
            .arg(seq)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        raw.map(|s| entry_event(room, epoch, seq, &s)).transpose()
    }

    /// State, meta: the room as it is, or `None` when it does not exist (or was deleted).
    pub(super) async fn load_room(&self, room: &RoomId) -> StoreResult<Option<RoomRecord>> {
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
}
