//! The HTTP side that is not a WebSocket session: health and metrics ([`health`]), and the layers
//! every answer passes through ([`layers`]: request counts, JSON error bodies). The admin, file
//! and invitation APIs live beside the services they expose (`directory::admin`, `room::admin`,
//! `room::files`, `room::invite`); `server` merges every router.

pub mod health;
pub mod layers;
