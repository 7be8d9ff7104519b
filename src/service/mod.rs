//! Services: operations over several rooms, the directory and the mail, that the edges (sessions,
//! HTTP) call and the room actors never do — creating rooms ([`create`]), removing people who lost
//! their permission ([`policy`]), invitations and sign-up by link ([`invite`]), message search
//! ([`search`]).

pub mod create;
pub mod invite;
pub mod policy;
pub mod search;
