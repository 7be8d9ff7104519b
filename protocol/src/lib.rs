//! The crossroom wire contract, shared by the server, the integration tests and the load tester.
//!
//! - [`frame`]: every frame a client sends ([`ClientFrame`]) and the server sends ([`ServerFrame`]),
//!   with the room-log entries ([`Event`]) they carry.
//! - [`codec`]: the two encodings of the same frames — MessagePack with named fields (binary
//!   WebSocket frames) and JSON (text frames) — chosen by WebSocket subprotocol.
//! - [`error`]: the stable error codes of `error` frames.
//! - [`close`]: WebSocket close codes, grouped by how a client should react.
//! - [`ops`]: the ops stream for dashboards (`GET /v1/ops`): stats every second, audit records.
//! - `client` (feature `client`): a small WebSocket and admin-HTTP client, and `calls`: one typed
//!   method per request on it.
//!
//! The human-readable specification is `protocol/PROTOCOL.md`; `protocol/vectors/frames.json`
//! holds hex dumps of real frames that the tests check both ways.

pub mod close;
pub mod codec;
pub mod error;
pub mod frame;
pub mod ids;
pub mod items;
pub mod ops;

#[cfg(feature = "client")]
pub mod calls;
#[cfg(feature = "client")]
pub mod client;

pub use codec::{decode, encode, CodecError, Encoding};
pub use error::ErrorCode;
pub use frame::*;
pub use ids::{CompanyId, RoomId, UserId};
pub use items::*;

/// The protocol version announced in `hello`. Bumped only for incompatible changes; additive
/// changes (new frame types, new optional fields) keep it.
pub const PROTOCOL_VERSION: u32 = 1;

/// WebSocket subprotocol for MessagePack binary frames (the default when none is requested).
pub const SUBPROTOCOL_MSGPACK: &str = "crossroom.v1.msgpack";
/// WebSocket subprotocol for JSON text frames, for people, browsers and dashboards.
pub const SUBPROTOCOL_JSON: &str = "crossroom.v1.json";
