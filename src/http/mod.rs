//! The HTTP side that is not a WebSocket session: health and metrics ([`health`]). The admin,
//! file and invitation APIs live beside the services they expose (`directory::admin`,
//! `room::admin`, `room::files`, `room::invite`); `server` merges every router.

pub mod health;
