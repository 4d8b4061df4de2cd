//! Admission of new connections from one source address: a cap on connections that have
//! not yet identified themselves (handshaking, no hello yet, or enrolling).
//!
//! At the cap, the oldest unidentified connection from that address gives way to the new
//! one, if it has had [`GRACE`] to identify itself: the address never holds more than the
//! cap, so a flood cannot grow memory, and yet one neighbour behind the same NAT holding
//! the cap with idle connections cannot lock out the agents and technicians who connect
//! after it. While all of them are younger than that (a herd of agents reconnecting
//! after a controller restart), a new one is refused before its handshake instead, so
//! handshakes under way complete rather than displace one another. Identified agents and
//! technicians are not limited per address: a corporate NAT puts thousands of
//! legitimate agents behind one address. Only the global [`super::MAX_CONNECTIONS`]
//! bounds them.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::warn;

/// Connections from one source address (one IPv6 /64) that may be unidentified at once.
/// Enough for a NAT full of agents that all reconnect after a controller restart (each
/// identifies within a round trip or two), few enough that one host opening handshakes
/// and never saying hello cannot fill the connection table.
pub const MAX_PENDING_PER_ADDRESS: usize = 32;

/// How long an unidentified connection is safe from displacement. An honest client
/// identifies within a few round trips; one still unidentified after this is idle, or on
/// a link so slow that starting over costs it little.
pub const GRACE: Duration = Duration::from_secs(3);

/// Unidentified connections per source address, oldest first.
#[derive(Debug)]
pub(crate) struct Pending {
    limit: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    by_source: HashMap<IpAddr, Source>,
}

#[derive(Debug, Default)]
struct Source {
    /// Each pending connection's id, arrival, and the token that tells it to give way.
    slots: VecDeque<(u64, Instant, CancellationToken)>,
    /// Connections displaced since the address last had none pending (one burst).
    displaced: u64,
    /// Connections refused since the address last had none pending (one burst).
    refused: u64,
}

/// One connection's place in its address's pending count; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    owner: Arc<Pending>,
    source: IpAddr,
    id: u64,
    give_way: CancellationToken,
}

/// A new connection was admitted by displacing the address's oldest unidentified one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Displaced {
    /// True for the first displacement of a burst: log it then, not for every connection.
    pub first_in_burst: bool,
}

/// The address has its limit of unidentified connections, all within their [`GRACE`].
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
            limit: limit.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is a few field changes with no call out; a panic elsewhere cannot
        // leave them torn.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a pending place for a connection from `ip` arriving at `now`. At the limit,
    /// the address's oldest unidentified connection is told to give way and the new one
    /// takes its place — unless even the oldest is within its [`GRACE`]: then the new
    /// one is refused.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(PendingSlot, Option<Displaced>), OverLimit> {
        let source = source_of(ip);
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let entry = inner.by_source.entry(source).or_default();
        let mut displaced = None;
        while entry.slots.len() >= self.limit {
            let young = entry
                .slots
                .front()
                .is_some_and(|(_, since, _)| now.saturating_duration_since(*since) < GRACE);
            if young {
                entry.refused += 1;
                return Err(OverLimit {
                    first_in_burst: entry.refused == 1,
                });
            }
            let Some((_, _, oldest)) = entry.slots.pop_front() else {
                break;
            };
            oldest.cancel();
            entry.displaced += 1;
            displaced = Some(Displaced {
                first_in_burst: entry.displaced == 1,
            });
        }
        let give_way = CancellationToken::new();
        entry.slots.push_back((id, now, give_way.clone()));
        let slot = PendingSlot {
            owner: self.clone(),
            source,
            id,
            give_way,
        };
        Ok((slot, displaced))
    }

    /// Unidentified connections from `ip` now (for tests and diagnostics).
    #[cfg(test)]
    fn pending(&self, ip: IpAddr) -> usize {
        self.lock()
            .by_source
            .get(&source_of(ip))
            .map_or(0, |s| s.slots.len())
    }
}

impl PendingSlot {
    /// Completes when a newer connection from the same address has taken this one's place.
    pub fn displaced(&self) -> WaitForCancellationFuture<'_> {
        self.give_way.cancelled()
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut inner = self.owner.lock();
        let Some(entry) = inner.by_source.get_mut(&self.source) else {
            return;
        };
        // A displaced slot was already taken out when it was told to give way.
        entry.slots.retain(|(id, _, _)| *id != self.id);
        if entry.slots.is_empty() {
            if entry.displaced > 0 || entry.refused > 0 {
                warn!(
                    source = %self.source,
                    displaced = entry.displaced,
                    refused = entry.refused,
                    "burst of unidentified connections over; past the per-address limit this many gave way to newer ones, and this many were refused"
                );
            }
            inner.by_source.remove(&self.source);
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

    fn is_displaced(slot: &PendingSlot) -> bool {
        slot.give_way.is_cancelled()
    }

    /// Admits at `now`, which must succeed.
    fn admit(
        pending: &Arc<Pending>,
        addr: &str,
        now: Instant,
    ) -> (Option<PendingSlot>, Option<Displaced>) {
        match pending.admit(ip(addr), now) {
            Ok((slot, displaced)) => (Some(slot), displaced),
            Err(_) => (None, None),
        }
    }

    #[test]
    fn past_the_limit_the_oldest_past_its_grace_gives_way_and_the_count_stays_at_the_limit() {
        let pending = Pending::new(2);
        let t0 = Instant::now();
        let (a, none_a) = admit(&pending, "10.0.0.1", t0);
        let (b, none_b) = admit(&pending, "10.0.0.1", t0 + GRACE / 2);
        assert!(a.is_some() && b.is_some() && none_a.is_none() && none_b.is_none());
        // Both within their grace: the new one is refused, first of a burst.
        assert_eq!(
            pending.admit(ip("10.0.0.1"), t0 + GRACE / 2).err(),
            Some(OverLimit {
                first_in_burst: true
            })
        );
        assert_eq!(
            pending.admit(ip("10.0.0.1"), t0 + GRACE / 2).err(),
            Some(OverLimit {
                first_in_burst: false
            })
        );
        // Once the oldest is past its grace, it gives way.
        let (c, displaced) = admit(&pending, "10.0.0.1", t0 + GRACE);
        assert_eq!(
            displaced,
            Some(Displaced {
                first_in_burst: true
            })
        );
        assert!(a.as_ref().is_some_and(is_displaced));
        assert!(b.as_ref().is_some_and(|b| !is_displaced(b)) && c.is_some());
        assert_eq!(pending.pending(ip("10.0.0.1")), 2);
        let (d, displaced) = admit(&pending, "10.0.0.1", t0 + 2 * GRACE);
        assert_eq!(
            displaced,
            Some(Displaced {
                first_in_burst: false
            })
        );
        assert!(b.as_ref().is_some_and(is_displaced));
        assert_eq!(pending.pending(ip("10.0.0.1")), 2);
        // Another address is not affected.
        let (e, displaced) = admit(&pending, "10.0.0.2", t0);
        assert!(e.is_some() && displaced.is_none());
        // A displaced slot's drop frees nothing twice; a live one's frees its place.
        drop((a, b));
        assert_eq!(pending.pending(ip("10.0.0.1")), 2);
        drop(c);
        assert_eq!(pending.pending(ip("10.0.0.1")), 1);
        let (f, displaced) = admit(&pending, "10.0.0.1", t0 + 2 * GRACE);
        assert!(f.is_some() && displaced.is_none());
        drop((d, f));
        assert_eq!(pending.pending(ip("10.0.0.1")), 0);
        // A new burst logs again.
        let later = t0 + 10 * GRACE;
        let slots: Vec<_> = (0..2)
            .map(|_| admit(&pending, "10.0.0.1", later).0)
            .collect();
        assert!(slots.iter().all(Option::is_some));
        assert_eq!(
            pending.admit(ip("10.0.0.1"), later).err(),
            Some(OverLimit {
                first_in_burst: true
            })
        );
        assert_eq!(
            admit(&pending, "10.0.0.1", later + GRACE).1,
            Some(Displaced {
                first_in_burst: true
            })
        );
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let pending = Pending::new(1);
        let t0 = Instant::now();
        let _a = admit(&pending, "2001:db8::1", t0);
        assert!(pending.admit(ip("2001:db8::ffff:2"), t0).is_err());
        assert!(pending.admit(ip("2001:db8:0:1::1"), t0).is_ok());
        let _b = admit(&pending, "192.0.2.7", t0);
        assert!(pending.admit(ip("::ffff:192.0.2.7"), t0).is_err());
    }
}
