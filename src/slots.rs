//! Counted places per key, taken and given back by a guard ([`Slots`]): how many WebSockets each source
//! address holds open without having authenticated (past `limits.max_unauthenticated_per_address`
//! an upgrade is refused with 429), and how many uploads each user has in flight (past
//! `limits.max_uploads_per_user`, 429). One address or one user cannot hold more of the
//! server than that. And uses per key per hour ([`PerHour`]): sign-ups per invitation link.

use dashmap::DashMap;
use std::hash::Hash;
use std::sync::Arc;

/// The places taken per key; an entry leaves with its last place.
pub struct Slots<K: Hash + Eq + Clone> {
    taken: DashMap<K, u32>,
    max: u32,
}

/// One place, held until dropped.
pub struct Slot<K: Hash + Eq + Clone> {
    of: Arc<Slots<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Slots<K> {
    pub fn new(max: u32) -> Arc<Slots<K>> {
        Arc::new(Slots {
            taken: DashMap::new(),
            max,
        })
    }

    /// Take one of `key`'s places, or `None` when it holds them all.
    pub fn take(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut n = self.taken.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            of: self.clone(),
            key,
        })
    }

    /// Places `key` holds.
    #[cfg(test)]
    fn count(&self, key: &K) -> u32 {
        self.taken.get(key).map_or(0, |n| *n)
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        self.of.taken.remove_if_mut(&self.key, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// Uses per key in the current hour (per node): sign-ups per invitation link, so a link shared
/// publicly cannot mint companies without bound.
#[derive(Default)]
pub struct PerHour {
    windows: dashmap::DashMap<String, (std::time::Instant, u32)>,
}

const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

impl PerHour {
    /// Take one of `token`'s `per_hour` uses; false when the hour's are used.
    pub fn take(&self, token: &str, per_hour: u32) -> bool {
        if self.windows.len() > 10_000 {
            self.windows.retain(|_, (start, _)| start.elapsed() < HOUR);
        }
        let mut w = self
            .windows
            .entry(token.to_owned())
            .or_insert((std::time::Instant::now(), 0));
        if w.0.elapsed() >= HOUR {
            *w = (std::time::Instant::now(), 0);
        }
        if w.1 >= per_hour {
            return false;
        }
        w.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn counts_per_key_and_frees_on_drop() {
        let u = Slots::<IpAddr>::new(2);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let one = u.take(a).expect("first");
        let two = u.take(a).expect("second");
        assert!(u.take(a).is_none(), "third from the same address");
        let other = u.take(b).expect("another address");
        drop(one);
        assert_eq!(u.count(&a), 1);
        let three = u.take(a).expect("room again");
        drop((two, three, other));
        assert_eq!((u.count(&a), u.count(&b)), (0, 0));
        assert!(u.taken.is_empty());
    }
}
