//! The HTTP side that is not a WebSocket session: who is asking ([`auth`]); the admin API of the
//! directory ([`directory`]) and of groups ([`groups`]); files ([`files`]); invitation links
//! ([`invite`]); health and metrics ([`health`]); and the layers every answer passes through
//! ([`layers`]: request counts, JSON error bodies). `server` merges every router.

pub mod auth;
pub mod directory;
pub mod files;
pub mod groups;
pub mod health;
pub mod invite;
pub mod layers;
