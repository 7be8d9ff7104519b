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
use crate::room::{lookup, Actor, Change, InviteOp, PostRequest, RoomCommand, RoomRequest};
use crate::service::create;
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

    /// The request to a room's actor a frame becomes, with the id to answer it under (`None`
    /// when it was answered here), or the frame back if it is not one.
    fn room_request(&mut self, frame: ClientFrame) -> Routed<Option<(RoomId, RoomCommand)>> {
        let user = self.user.id.clone();
        let (id, room, request) = match frame {
            ClientFrame::Subscribe {
                id,
                room,
                since,
                presence,
            } => {
                if !self.may_subscribe(id, &room) {
                    return Routed::Taken(None);
                }
                let session = self.id;
                let request = RoomRequest::Subscribe {
                    session,
                    user,
                    since,
                    presence,
                };
                (id, room, request)
            }
            ClientFrame::Unsubscribe { id, room } => {
                self.subscriptions.remove(&room);
                let session = self.id;
                (id, room, RoomRequest::Unsubscribe { session })
            }
            ClientFrame::Post {
                id,
                room,
                client_msg_id,
                text,
                attachments,
                mentions,
            } => {
                let post = PostRequest {
                    user,
                    client_msg_id,
                    text,
                    attachments,
                    mentions,
                };
                (id, room, RoomRequest::Post(post))
            }
            ClientFrame::History {
                id,
                room,
                before,
                limit,
            } => (
                id,
                room,
                RoomRequest::History {
                    user,
                    before,
                    limit,
                },
            ),
            ClientFrame::MarkRead { id, room, seq } => {
                (id, room, RoomRequest::MarkRead { user, seq })
            }
            ClientFrame::Typing { id, room } => {
                let session = self.id;
                (id, room, RoomRequest::Typing { user, session })
            }
            ClientFrame::Act { id, room, action } => (id, room, RoomRequest::Act { user, action }),
            ClientFrame::Query { id, room, query } => {
                (id, room, RoomRequest::Query { user, query })
            }
            ClientFrame::GetRoom { id, room } => (id, room, RoomRequest::Get { user }),
            other => return Routed::Next(other),
        };
        Routed::Taken(Some((room, RoomCommand::Ask(request, self.reply(id)))))
    }

    /// Whether a subscription to `room` fits the per-connection limit (and is counted); when it
    /// does not, the request is refused here.
    fn may_subscribe(&mut self, id: u32, room: &RoomId) -> bool {
        let max = self.hub.limits.max_subscriptions;
        if !self.subscriptions.contains(room) && self.subscriptions.len() >= max as usize {
            let e = ApiError::new(
                ErrorCode::LimitExceeded,
                format!("at most {max} subscriptions per connection"),
            );
            self.refuse(id, e);
            return false;
        }
        self.subscriptions.insert(room.clone());
        true
    }

    /// Act on `room` as this session's user, looked up fresh (their permission may have changed
    /// since they connected).
    async fn act(&self, id: u32, room: &RoomId, acting: Acting) {
        let reply = self.reply(id);
        let actor = match lookup::person(&*self.hub.store, &self.user.id).await {
            Ok(me) => Actor::User(me),
            Err(e) => return reply.fail(e),
        };
        let request = match acting {
            Acting::Change(change) => RoomRequest::Change { actor, change },
            Acting::Invite(op) => RoomRequest::Invite { actor, op },
            Acting::Delete => RoomRequest::Delete { actor },
        };
        self.hub
            .rooms
            .send(room, RoomCommand::Ask(request, reply))
            .await;
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
                crate::service::invite::send_invites(&hub, &me.id, &room, &emails).await?;
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
                let (rooms, contacts) = search::search(&*hub.store, &me.id, &query, limit).await?;
                Ok(ServerFrame::SearchResults {
                    id,
                    rooms,
                    contacts,
                })
            }),
            ClientFrame::SearchMessages {
                id,
                query,
                tz,
                cursor,
                limit,
            } => self.answer(id, async move {
                let (results, next) = crate::service::search::search_messages(
                    &*hub.store,
                    &me.id,
                    &query,
                    tz.as_deref(),
                    cursor.as_deref(),
                    limit,
                )
                .await?;
                Ok(ServerFrame::MessageResults { id, results, next })
            }),
            ClientFrame::SearchItems {
                id,
                query,
                cursor,
                limit,
            } => self.answer(id, async move {
                let (results, next) = crate::service::search::search_items(
                    &*hub.store,
                    &me.id,
                    &query,
                    cursor.as_deref(),
                    limit,
                )
                .await?;
                Ok(ServerFrame::ItemResults { id, results, next })
            }),
            ClientFrame::ListContacts { id } => self.answer(id, async move {
                let contacts = search::contacts(&*hub.store, &me.id).await?;
                Ok(ServerFrame::Contacts { id, contacts })
            }),
            ClientFrame::AddContact { id, user: contact } => self.answer(id, async move {
                search::add_contact(&*hub.store, &me, &contact).await?;
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
