//! The domain: the records, the rules and the one projection of the room log that the room actor
//! and both stores use. Pure: no I/O, no tasks, no frames; refusals are [`crate::error::ApiError`]
//! values (a code and a message), mapped to frames, HTTP statuses and close codes at the edges.
//!
//! - [`directory`]: companies, users, settings; who holds external permission.
//! - [`records`]: rooms, log entries, audit records, invitations, files as the store keeps them.
//! - [`rules`]: who may create, post, add, remove, convert, join — and [`rules::apply`], the
//!   projection of one entry onto a room.
//! - [`features`]: notes, calendar, tasks, folder, recall — decisions and the item projection.
//! - [`paging`]: how a query's answer is cut into pages (a cursor and a byte budget).
//! - [`projection`]: what a committed entry does to its room — the one projection the actor and
//!   both stores use.
//! - [`search`]: message search (M6) — the analyzer indexing and queries share (CJK as character
//!   pairs), the query language, snippets.

pub mod directory;
pub mod features;
pub mod paging;
pub mod projection;
pub mod records;
pub mod rules;
pub mod search;
