//! Admission of new connections from one source address: a cap on connections that have
//! not yet identified themselves (handshaking, no hello yet, or enrolling).
//!
//! Identified agents and technicians are not limited per address: a corporate NAT puts
//! thousands of legitimate agents behind one address. Only the global
//! [`super::MAX_CONNECTIONS`] bounds them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tracing::warn;

/// Connections from one source address (one IPv6 /64) that may be unidentified at once.
/// Enough for a NAT full of agents that all reconnect after a controller restart (each
/// identifies within a round trip or two), few enough that one host opening handshakes
/// and never saying hello cannot fill the connection table.
pub const MAX_PENDING_PER_ADDRESS: usize = 32;

/// Unidentified connections per source address.
#[derive(Debug)]
pub(crate) struct Pending {
    limit: usize,
    by_source: Mutex<HashMap<IpAddr, Source>>,
}

#[derive(Debug, Default)]
struct Source {
    pending: usize,
    /// Connections refused since the address last had none pending (one burst).
    refused: u64,
}

/// One connection's place in its address's pending count; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    owner: Arc<Pending>,
    source: IpAddr,
}

/// The address already has its limit of unidentified connections.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OverLimit {
    /// True for the first refusal of a burst: log it then, not for every connection.
    pub first_in_burst: bool,
}

/// The key an address is counted under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its
/// /64, since one host commonly holds a whole /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl Pending {
    pub fn new(limit: usize) -> Arc<Pending> {
        Arc::new(Pending {
            limit,
            by_source: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Source>> {
        // Every update is a single counter change; a panic elsewhere cannot leave it torn.
        self.by_source.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a pending place for a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PendingSlot, OverLimit> {
        let source = source_of(ip);
        let mut map = self.lock();
        let entry = map.entry(source).or_default();
        if entry.pending >= self.limit {
            entry.refused += 1;
            return Err(OverLimit {
                first_in_burst: entry.refused == 1,
            });
        }
        entry.pending += 1;
        Ok(PendingSlot {
            owner: self.clone(),
            source,
        })
    }

    /// Unidentified connections from `ip` now (for tests and diagnostics).
    #[cfg(test)]
    fn pending(&self, ip: IpAddr) -> usize {
        self.lock().get(&source_of(ip)).map_or(0, |s| s.pending)
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut map = self.owner.lock();
        let Some(entry) = map.get_mut(&self.source) else {
            return;
        };
        entry.pending = entry.pending.saturating_sub(1);
        if entry.pending == 0 {
            if entry.refused > 0 {
                warn!(
                    source = %self.source,
                    refused = entry.refused,
                    "burst of unidentified connections over; refused this many past the per-address limit"
                );
            }
            map.remove(&self.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn refuses_past_the_limit_per_address_and_frees_on_drop() {
        let pending = Pending::new(2);
        let a = pending.admit(ip("10.0.0.1"));
        let b = pending.admit(ip("10.0.0.1"));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(
            pending.admit(ip("10.0.0.1")).err(),
            Some(OverLimit {
                first_in_burst: true
            })
        );
        assert_eq!(
            pending.admit(ip("10.0.0.1")).err(),
            Some(OverLimit {
                first_in_burst: false
            })
        );
        // Another address is not affected.
        assert!(pending.admit(ip("10.0.0.2")).is_ok());
        drop(a);
        assert_eq!(pending.pending(ip("10.0.0.1")), 1);
        let c = pending.admit(ip("10.0.0.1"));
        assert!(c.is_ok());
        drop((b, c));
        assert_eq!(pending.pending(ip("10.0.0.1")), 0);
        // A new burst logs again.
        let slots: Vec<_> = (0..2)
            .filter_map(|_| pending.admit(ip("10.0.0.1")).ok())
            .collect();
        assert_eq!(slots.len(), 2);
        assert_eq!(
            pending.admit(ip("10.0.0.1")).err(),
            Some(OverLimit {
                first_in_burst: true
            })
        );
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let pending = Pending::new(1);
        let _a = pending.admit(ip("2001:db8::1"));
        assert!(pending.admit(ip("2001:db8::ffff:2")).is_err());
        assert!(pending.admit(ip("2001:db8:0:1::1")).is_ok());
        let _b = pending.admit(ip("192.0.2.7"));
        assert!(pending.admit(ip("::ffff:192.0.2.7")).is_err());
    }
}
