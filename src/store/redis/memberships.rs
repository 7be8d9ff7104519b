//! Who is in which room, in Redis: a user's rooms (a superset index, checked against each room's
//! projection), read markers and receipts, and G20's count of the groups a company owns.

use super::keys::*;
use super::scripts::*;
use super::*;

impl Inner {
    /// G20: take one of `company`'s group slots if it owns fewer than `max` groups. The count is
    /// kept exactly beside the rooms (it lives on another shard than any room's keys): taken
    /// before a group is created, given back when the creation fails or the group is deleted.
    pub(super) async fn claim_group(&self, company: &CompanyId, max: u64) -> StoreResult<bool> {
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
        match ok {
            1 => Ok(true),
            0 => Ok(false),
            // Closed: the company is being deleted (A2).
            _ => Err(StoreError::NotFound(format!("company {company}"))),
        }
    }

    /// A room converted into a group of `company`: in its group index, and in its count if it
    /// has one (else the first count finds it in the index).
    pub(super) async fn count_in_group(
        &self,
        company: &CompanyId,
        room: &RoomId,
    ) -> StoreResult<()> {
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

    pub(super) async fn release_group(&self, company: &CompanyId) -> StoreResult<()> {
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
}

impl RedisStore {
    /// G20: take a group slot of `company`, counting its groups first if it was never counted.
    pub(super) async fn claim_group_slot(&self, company: &CompanyId, max: u64) -> StoreResult<()> {
        self.count_owned_groups(company).await?;
        if self.inner.claim_group(company, max).await? {
            Ok(())
        } else {
            Err(StoreError::LimitReached(
                crate::domain::rules::group_limit_message(max),
            ))
        }
    }

    /// The groups the company owns now, in id order.
    pub(super) async fn groups_owned(&self, company: &CompanyId) -> StoreResult<Vec<RoomId>> {
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

    /// Count the groups `company` owns from its index and the rooms' own projections, and keep
    /// the count (the first use of G20's counter on a deployment that had none).
    pub(super) async fn recount_owned_groups(&self, company: &CompanyId) -> StoreResult<u64> {
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

    pub(super) async fn indexed_rooms(&self, user: &UserId) -> StoreResult<Vec<RoomId>> {
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(user_rooms_key(user))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        ids.sort();
        Ok(ids.into_iter().map(RoomId).collect())
    }
}

#[async_trait]
impl MembershipStore for RedisStore {
    /// Two round trips whatever the number of rooms: the user's room index, then one script
    /// per room (state, metadata, read marker, unread counts), all in flight together.
    async fn rooms_of(&self, user: &UserId) -> StoreResult<Vec<MembershipRow>> {
        let rooms = self.indexed_rooms(user).await?;
        if rooms.is_empty() {
            return Ok(Vec::new());
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
        // One script per room, all in flight at once: the multiplexed connection pipelines them,
        // and a cluster connection routes each to its room's shard (one pipeline across slots
        // is refused there: CROSSSLOT).
        let reads = rooms.iter().map(|room| {
            let mut conn = self.conn();
            let mut cmd = ::redis::cmd("EVAL");
            cmd.arg(ROOM_OF)
                .arg(5)
                .arg(rk(room, "state"))
                .arg(rk(room, "meta"))
                .arg(rk(room, "reads"))
                .arg(rk(room, "msgs"))
                .arg(rk(room, &format!("msgs:{}", user.0)))
                .arg(&user.0);
            async move { cmd.query_async::<Row>(&mut conn).await }
        });
        let replies: Vec<Row> = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(backend)?;
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
        let counted: Option<String> = ::redis::cmd("GET")
            .arg(owned_groups_key(company))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        match counted.as_deref() {
            Some(CLOSED) => Err(StoreError::NotFound(format!("company {company}"))),
            Some(n) => n.parse().map_err(backend),
            None => self.recount_owned_groups(company).await,
        }
    }

    async fn owned_groups(&self, company: &CompanyId) -> StoreResult<Vec<RoomId>> {
        self.groups_owned(company).await
    }
}
