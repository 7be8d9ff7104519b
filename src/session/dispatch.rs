//! Routing a client's request: to the room's actor (posts, history, subscriptions, changes…) or
//! to a service (creating rooms, search, contacts).
//!
//! Requests that touch an existing room are handed to its actor in the order they arrived: the
//! reader waits for the hand-over (and, for changes, for the fresh directory look-up of the
//! user) before reading the next frame, so two requests of one session to one room are decided
//! in the order they were sent. Service calls that touch no existing room run as tasks.

use super::reader::Session;
use crate::error::{ApiError, ApiResult};
use crate::outbound::{Answer, Reply};
use crate::room::{create, lookup, Actor, Change, InviteOp, RoomCommand};
use crossroom_protocol::{ClientFrame, ErrorCode, RoomId, ServerFrame};
use std::future::Future;

/// A request taken by one router, or handed on to the next.
enum Routed<T> {
    Taken(T),
    Next(ClientFrame),
}

/// A request that acts on a room as the session's user, decided with their directory entry as
/// it is now.
enum Acting {
    Change(Change),
    Invite(InviteOp),
    Delete,
}

impl Session {
    /// Handle one request.
    pub async fn dispatch(&mut self, frame: ClientFrame) {
        let Some(frame) = self.session_request(frame) else {
            return;
        };
        let frame = match self.room_request(frame) {
            Routed::Taken(Some((room, cmd))) => return self.hub.rooms.send(&room, cmd).await,
            Routed::Taken(None) => return,
            Routed::Next(frame) => frame,
        };
        let frame = match acting_request(frame) {
            Routed::Taken((id, room, acting)) => return self.act(id, &room, acting).await,
            Routed::Next(frame) => frame,
        };
        if let ClientFrame::JoinByInvite { id, token } = frame {
            return self.join_by_invite(id, token).await;
        }
        self.service_request(frame);
    }

    /// Requests about the session itself; `None` when handled.
    fn session_request(&mut self, frame: ClientFrame) -> Option<ClientFrame> {
        match frame {
            ClientFrame::Auth { id, .. } => self.refuse(
                id,
                ApiError::invalid("this session is already authenticated"),
            ),
            ClientFrame::Ping { id } => self.reply(id).send(ServerFrame::Pong {
                id,
                ts: crate::clock::now_ms(),
            }),
            other => return Some(other),
        }
        None
    }

    /// Refuse request `id`.
    fn refuse(&self, id: u32, e: ApiError) {
        self.reply::<ServerFrame>(id).fail(e);
    }

    /// The handle through which request `id` is answered: a frame, or a room's typed reply.
    fn reply<T: Answer>(&self, id: u32) -> Reply<T> {
        Reply::session(self.out.clone(), id)
    }

    /// The command a request for a room's actor becomes (`None` when it was answered here), or
    /// the request back if it is not one.
    fn room_request(&mut self, frame: ClientFrame) -> Routed<Option<(RoomId, RoomCommand)>> {
        let user = self.user.id.clone();
        let (room, cmd) = match frame {
            ClientFrame::Subscribe {
                id,
                room,
                since,
                presence,
            } => match self.subscribe(id, room, since, presence) {
                Some(routed) => routed,
                None => return Routed::Taken(None),
            },
            ClientFrame::Unsubscribe { id, room } => {
                self.subscriptions.remove(&room);
                let reply = Some(self.reply(id));
                (
                    room,
                    RoomCommand::Unsubscribe {
                        session: self.id,
                        reply,
                    },
                )
            }
            ClientFrame::Post {
                id,
                room,
                client_msg_id,
                text,
                attachments,
                mentions,
            } => {
                let reply = self.reply(id);
                let cmd = RoomCommand::Post {
                    user,
                    client_msg_id,
                    text,
                    attachments,
                    mentions,
                    reply,
                };
                (room, cmd)
            }
            ClientFrame::History {
                id,
                room,
                before,
                limit,
            } => {
                let reply = self.reply(id);
                (
                    room,
                    RoomCommand::History {
                        user,
                        before,
                        limit,
                        reply,
                    },
                )
            }
            ClientFrame::MarkRead { id, room, seq } => (
                room,
                RoomCommand::MarkRead {
                    user,
                    seq,
                    reply: self.reply(id),
                },
            ),
            ClientFrame::Typing { id, room } => {
                let reply = self.reply(id);
                (
                    room,
                    RoomCommand::Typing {
                        user,
                        session: self.id,
                        reply,
                    },
                )
            }
            ClientFrame::Act { id, room, action } => (
                room,
                RoomCommand::Act {
                    user,
                    action,
                    reply: self.reply(id),
                },
            ),
            ClientFrame::Query { id, room, query } => (
                room,
                RoomCommand::Query {
                    user,
                    query,
                    reply: self.reply(id),
                },
            ),
            ClientFrame::GetRoom { id, room } => (
                room,
                RoomCommand::Get {
                    user,
                    reply: self.reply(id),
                },
            ),
            other => return Routed::Next(other),
        };
        Routed::Taken(Some((room, cmd)))
    }

    /// A subscription, within the per-connection limit; `None` when refused (and answered).
    fn subscribe(
        &mut self,
        id: u32,
        room: RoomId,
        since: Option<crossroom_protocol::Position>,
        presence: bool,
    ) -> Option<(RoomId, RoomCommand)> {
        let user = self.user.id.clone();
        let max = self.hub.limits.max_subscriptions;
        if !self.subscriptions.contains(&room) && self.subscriptions.len() >= max as usize {
            let e = ApiError::new(
                ErrorCode::LimitExceeded,
                format!("at most {max} subscriptions per connection"),
            );
            self.refuse(id, e);
            return None;
        }
        self.subscriptions.insert(room.clone());
        let reply = self.reply(id);
        let cmd = RoomCommand::Subscribe {
            session: self.id,
            user,
            since,
            presence,
            reply,
        };
        Some((room, cmd))
    }

    /// Act on `room` as this session's user, looked up fresh (their permission may have changed
    /// since they connected).
    async fn act(&self, id: u32, room: &RoomId, acting: Acting) {
        let reply = self.reply(id);
        let actor = match lookup::person(&*self.hub.store, &self.user.id).await {
            Ok(me) => Actor::User(me),
            Err(e) => return reply.fail(e),
        };
        let cmd = match acting {
            Acting::Change(change) => RoomCommand::Change {
                actor,
                change,
                reply,
            },
            Acting::Invite(op) => RoomCommand::Invite { actor, op, reply },
            Acting::Delete => RoomCommand::Delete { actor, reply },
        };
        self.hub.rooms.send(room, cmd).await;
    }

    /// Join the room an invitation link opens (G14).
    async fn join_by_invite(&self, id: u32, token: String) {
        let room = match self.hub.store.room_by_invite(&token).await {
            Ok(Some((room, _))) => room,
            Ok(None) => {
                return self.refuse(
                    id,
                    ApiError::not_found("invitation link (it may have expired or been revoked)"),
                )
            }
            Err(e) => return self.refuse(id, e.into()),
        };
        self.act(id, &room, Acting::Change(Change::Join { token }))
            .await;
    }

    /// Requests for services that touch no existing room: each runs as a task and answers
    /// through the session's queue.
    fn service_request(&self, frame: ClientFrame) {
        let (hub, me) = (self.hub.clone(), self.user.clone());
        match frame {
            ClientFrame::CreateGroup {
                id,
                name,
                description,
                members,
                masters,
                add_self_as_member,
                features,
            } => {
                let spec = create::GroupSpec {
                    name,
                    description,
                    members,
                    masters,
                    add_self_as_member,
                    features: features.unwrap_or_default(),
                };
                self.answer(id, async move {
                    let (room, left_out) = create::create_group(&hub, &me, spec).await?;
                    Ok(ServerFrame::RoomCreated { id, room, left_out })
                });
            }
            ClientFrame::CreateRoom { id, name, members } => self.answer(id, async move {
                let (room, left_out) = create::create_room(&hub, &me, &name, &members).await?;
                Ok(ServerFrame::RoomCreated { id, room, left_out })
            }),
            ClientFrame::ListRooms { id } => self.answer(id, async move {
                let rows = hub.store.rooms_of(&me.id).await?;
                let rooms = rows.into_iter().map(create::summary).collect();
                Ok(ServerFrame::Rooms { id, rooms })
            }),
            ClientFrame::SendInvites { id, room, emails } => self.answer(id, async move {
                crate::room::invite::send_invites(&hub, &me.id, &room, &emails).await?;
                Ok(ServerFrame::Ok { id })
            }),
            other => self.directory_request(other),
        }
    }

    /// Contacts and search (G7, G8).
    fn directory_request(&self, frame: ClientFrame) {
        use crate::directory::search;
        let (hub, me) = (self.hub.clone(), self.user.clone());
        match frame {
            ClientFrame::Search { id, query, limit } => self.answer(id, async move {
                let (rooms, contacts) = search::search(&hub, &me.id, &query, limit).await?;
                Ok(ServerFrame::SearchResults {
                    id,
                    rooms,
                    contacts,
                })
            }),
            ClientFrame::ListContacts { id } => self.answer(id, async move {
                let contacts = search::contacts(&hub, &me.id).await?;
                Ok(ServerFrame::Contacts { id, contacts })
            }),
            ClientFrame::AddContact { id, user: contact } => self.answer(id, async move {
                search::add_contact(&hub, &me, &contact).await?;
                Ok(ServerFrame::Ok { id })
            }),
            ClientFrame::RemoveContact { id, user: contact } => self.answer(id, async move {
                hub.store.remove_contact(&me.id, &contact).await?;
                Ok(ServerFrame::Ok { id })
            }),
            other => {
                // Every other request was routed above; a new frame type lands here until it is.
                tracing::error!(request = other.id(), "request not routed");
                self.refuse(other.id(), ApiError::internal());
            }
        }
    }

    /// Run `work` as a tracked task and send its answer (or its error) for request `id`.
    fn answer(&self, id: u32, work: impl Future<Output = ApiResult<ServerFrame>> + Send + 'static) {
        let reply = self.reply(id);
        self.hub.shutdown.spawn(async move {
            match work.await {
                Ok(frame) => reply.send(frame),
                Err(e) => reply.fail(e),
            }
        });
    }
}

/// The room and action of a request that acts on a room as the user, or the request back.
fn acting_request(frame: ClientFrame) -> Routed<(u32, RoomId, Acting)> {
    let change = |c| Acting::Change(c);
    Routed::Taken(match frame {
        ClientFrame::AddMembers { id, room, users } => {
            (id, room, change(Change::AddMembers(users)))
        }
        ClientFrame::RemoveMember { id, room, user } => {
            (id, room, change(Change::RemoveMember(user)))
        }
        ClientFrame::AddMasters { id, room, users } => {
            (id, room, change(Change::AddMasters(users)))
        }
        ClientFrame::RemoveMaster { id, room, user } => {
            (id, room, change(Change::RemoveMaster(user)))
        }
        ClientFrame::UpdateGroup {
            id,
            room,
            name,
            description,
            features,
        } => (
            id,
            room,
            change(Change::Update {
                name,
                description,
                features,
            }),
        ),
        ClientFrame::Leave { id, room } => (id, room, change(Change::Leave)),
        ClientFrame::ConvertRoom { id, room, name } => (id, room, change(Change::Convert { name })),
        ClientFrame::DeleteGroup { id, room } => (id, room, Acting::Delete),
        ClientFrame::CreateInvite {
            id,
            room,
            expires_in_secs,
        } => (
            id,
            room,
            Acting::Invite(InviteOp::Create { expires_in_secs }),
        ),
        ClientFrame::GetInvite { id, room } => (id, room, Acting::Invite(InviteOp::Get)),
        ClientFrame::RevokeInvite { id, room } => (id, room, Acting::Invite(InviteOp::Revoke)),
        other => return Routed::Next(other),
    })
}
