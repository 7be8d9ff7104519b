//! How many WebSockets each source address holds open without having authenticated (they
//! authenticate by an `auth` frame within `auth_timeout_secs`): past
//! `limits.max_unauthenticated_per_address` an upgrade is refused with 429, so one address
//! cannot hold thousands of sockets that cost the server and identify nobody.

use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The counts per address; an entry leaves with its last connection.
pub struct Unauthenticated {
    per_address: DashMap<IpAddr, u32>,
    max: u32,
}

/// One unauthenticated connection, counted until dropped (authenticated, or closed).
pub struct Pending {
    of: Arc<Unauthenticated>,
    address: IpAddr,
}

impl Unauthenticated {
    pub fn new(max: u32) -> Arc<Unauthenticated> {
        Arc::new(Unauthenticated {
            per_address: DashMap::new(),
            max,
        })
    }

    /// Count one more connection from `address`, or `None` when it holds the most already.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Pending> {
        let mut n = self.per_address.entry(address).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Pending {
            of: self.clone(),
            address,
        })
    }

    /// Connections `address` holds unauthenticated.
    pub fn count(&self, address: IpAddr) -> u32 {
        self.per_address.get(&address).map_or(0, |n| *n)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.of.per_address.remove_if_mut(&self.address, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_frees_on_drop() {
        let u = Unauthenticated::new(2);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let one = u.admit(a).expect("first");
        let two = u.admit(a).expect("second");
        assert!(u.admit(a).is_none(), "third from the same address");
        let other = u.admit(b).expect("another address");
        drop(one);
        assert_eq!(u.count(a), 1);
        let three = u.admit(a).expect("room again");
        drop((two, three, other));
        assert_eq!((u.count(a), u.count(b)), (0, 0));
        assert!(u.per_address.is_empty());
    }
}
