//! Presence (M3): which users have at least one live session, on this node or any other.
//!
//! Each node counts its own sessions per user ([`Presence::local_up`], [`Presence::local_down`],
//! called by `Sessions`) and tells the others when a user's count on it crosses zero (through the
//! bus, in order). What other nodes say is kept per node: a node's users are replaced whole by
//! its snapshot (sent on request, when a node starts or hears again after a gap), and forgotten
//! when the node falls silent (no probe for [`NODE_SILENCE`]: it died or lost Redis).
//!
//! Nothing here is stored or sent to clients: room actors read [`Presence::is_online`] for their
//! members, at most once a second, and push the changes to their subscribers. The generation
//! moves on every change, so an actor whose room saw none skips the work.

use crossroom_protocol::UserId;
use dashmap::DashMap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A node not heard from for this long has its users forgotten (its probes go out every second).
pub const NODE_SILENCE: Duration = Duration::from_secs(6);

#[derive(Default)]
struct Remote {
    users: HashSet<UserId>,
    heard: Option<Instant>,
}

#[derive(Default)]
pub struct Presence {
    /// This node's live sessions per user (only users with at least one).
    local: DashMap<UserId, u32>,
    /// What each other node said, by node id.
    remote: Mutex<HashMap<String, Remote>>,
    /// Users online through some other node, with how many nodes.
    remote_count: DashMap<UserId, u32>,
    generation: AtomicU64,
}

impl Presence {
    pub fn new() -> Presence {
        Presence::default()
    }

    /// Moves on every change of who is online.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A session of `user` opened here; true when it is their first on this node.
    pub fn local_up(&self, user: &UserId) -> bool {
        let mut n = self.local.entry(user.clone()).or_insert(0);
        *n += 1;
        let first = *n == 1;
        drop(n);
        if first {
            self.changed();
        }
        first
    }

    /// A session of `user` closed here; true when it was their last on this node.
    pub fn local_down(&self, user: &UserId) -> bool {
        let last = self
            .local
            .remove_if_mut(user, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            })
            .is_some();
        if last {
            self.changed();
        }
        last
    }

    /// Users with a live session on this node (the snapshot other nodes ask for).
    pub fn local_users(&self) -> Vec<UserId> {
        self.local.iter().map(|e| e.key().clone()).collect()
    }

    pub fn is_online(&self, user: &UserId) -> bool {
        self.local.contains_key(user) || self.remote_count.contains_key(user)
    }

    /// Node `node` is alive (a probe or any notice from it).
    pub fn heard(&self, node: &str) {
        if let Ok(mut remote) = self.remote.lock() {
            remote.entry(node.to_owned()).or_default().heard = Some(Instant::now());
        }
    }

    /// `user`'s first session opened on `node` (`online`), or their last one closed.
    pub fn remote_change(&self, node: &str, user: &UserId, online: bool) {
        let Ok(mut remote) = self.remote.lock() else {
            return;
        };
        let r = remote.entry(node.to_owned()).or_default();
        r.heard = Some(Instant::now());
        let moved = if online {
            r.users.insert(user.clone())
        } else {
            r.users.remove(user)
        };
        if moved {
            self.count(user, online);
            self.changed();
        }
    }

    /// Everything `node` has online now, replacing what it said before.
    pub fn remote_snapshot(&self, node: &str, users: Vec<UserId>) {
        let Ok(mut remote) = self.remote.lock() else {
            return;
        };
        let r = remote.entry(node.to_owned()).or_default();
        r.heard = Some(Instant::now());
        let new: HashSet<UserId> = users.into_iter().collect();
        for gone in r.users.difference(&new) {
            self.count(gone, false);
        }
        for came in new.difference(&r.users) {
            self.count(came, true);
        }
        r.users = new;
        self.changed();
    }

    /// Forget the users of nodes silent for longer than [`NODE_SILENCE`]; returns how many
    /// nodes were forgotten.
    pub fn forget_silent(&self) -> usize {
        let Ok(mut remote) = self.remote.lock() else {
            return 0;
        };
        let silent: Vec<String> = remote
            .iter()
            .filter(|(_, r)| r.heard.is_none_or(|t| t.elapsed() > NODE_SILENCE))
            .map(|(n, _)| n.clone())
            .collect();
        for node in &silent {
            if let Some(r) = remote.remove(node) {
                for u in &r.users {
                    self.count(u, false);
                }
                tracing::info!(%node, users = r.users.len(), "node silent: its users are offline");
            }
        }
        if !silent.is_empty() {
            self.changed();
        }
        silent.len()
    }

    fn count(&self, user: &UserId, up: bool) {
        if up {
            *self.remote_count.entry(user.clone()).or_insert(0) += 1;
        } else {
            self.remote_count.remove_if_mut(user, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId(s.to_owned())
    }

    #[test]
    fn local_sessions_count_and_cross_zero_once() {
        let p = Presence::new();
        assert!(p.local_up(&u("a@x")));
        assert!(!p.local_up(&u("a@x")));
        assert!(p.is_online(&u("a@x")));
        assert!(!p.local_down(&u("a@x")));
        assert!(p.is_online(&u("a@x")));
        assert!(p.local_down(&u("a@x")));
        assert!(!p.is_online(&u("a@x")));
        assert!(!p.local_down(&u("a@x")), "no negative counts");
    }

    #[test]
    fn remote_nodes_add_replace_and_are_forgotten() {
        let p = Presence::new();
        p.remote_change("n1", &u("a@x"), true);
        p.remote_change("n2", &u("a@x"), true);
        p.remote_change("n1", &u("a@x"), true);
        p.remote_change("n1", &u("a@x"), false);
        assert!(p.is_online(&u("a@x")), "still on n2");
        let g = p.generation();
        p.remote_snapshot("n2", vec![u("b@x")]);
        assert!(p.generation() > g);
        assert!(!p.is_online(&u("a@x")));
        assert!(p.is_online(&u("b@x")));
        assert_eq!(p.forget_silent(), 0);
        if let Ok(mut r) = p.remote.lock() {
            r.get_mut("n2").expect("n2").heard = Some(Instant::now() - NODE_SILENCE * 2);
        }
        assert_eq!(p.forget_silent(), 1);
        assert!(!p.is_online(&u("b@x")));
    }
}
