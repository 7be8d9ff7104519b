//! The pure rules of rooms: plain functions over plain data, no I/O, each tested beside it and
//! named after the rule of docs/rules.md it enforces.
//!
//! `checks` holds what every rule shares (limits, who acts, membership, a post's checks),
//! `create` the creation of rooms, `change` every change of a room; their tests are in `tests`.

mod change;
mod checks;
mod create;

pub use change::{apply, decide, Change, Context, Decision};
pub use checks::{
    check_manager, check_member, check_mentions, check_post, Actor, Person,
    MAX_CLIENT_MSG_ID_CHARS, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_TEXT_CHARS,
};
pub use create::{
    group_limit_message, plan_admin_group, plan_group, plan_room, GroupRequest, Plan,
};

#[cfg(test)]
mod tests;
