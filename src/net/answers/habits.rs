//! Which clients wait for our close. Pure: time is a parameter.
//!
//! A client that reads each answer connection until EOF waits for the servent to
//! close; one that closes after its RESP does not. Waiting a grace for the first kind
//! only delays it, so once a reply address has let a grace run out, its next answers
//! are closed as soon as their RESP is written. An address that closes first again, or
//! is not heard of for [`HABIT_LIFETIME`], is forgotten.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::hashing::FoldHashSeeds;

/// How long a reply address is remembered as one that waits for our close.
pub const HABIT_LIFETIME: Duration = Duration::from_secs(60);
/// The most addresses remembered; past it, the stale are swept, and if none is, a new
/// one is not remembered (its answers just wait out the grace).
pub const MAX_REMEMBERED: usize = 4096;

#[derive(Debug, Default)]
pub struct Habits {
    waits_for_us: HashMap<SocketAddrV4, Instant, FoldHashSeeds>,
}

impl Habits {
    /// Whether answers to `to` should close as soon as their RESP is written.
    pub fn close_at_once(&self, to: SocketAddrV4, now: Instant) -> bool {
        self.waits_for_us
            .get(&to)
            .is_some_and(|&seen| now.saturating_duration_since(seen) < HABIT_LIFETIME)
    }

    /// `to` let a grace run out: it waits for our close.
    pub fn waited_for_us(&mut self, to: SocketAddrV4, now: Instant) {
        if self.waits_for_us.len() >= MAX_REMEMBERED && !self.waits_for_us.contains_key(&to) {
            self.waits_for_us
                .retain(|_, seen| now.saturating_duration_since(*seen) < HABIT_LIFETIME);
            if self.waits_for_us.len() >= MAX_REMEMBERED {
                return;
            }
        }
        self.waits_for_us.insert(to, now);
    }

    /// `to` closed first: it does not wait for us.
    pub fn closed_first(&mut self, to: SocketAddrV4) {
        self.waits_for_us.remove(&to);
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.waits_for_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waits_for_us.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn an_address_that_waited_for_us_is_closed_at_once_until_it_closes_first() {
        let now = Instant::now();
        let mut h = Habits::default();
        assert!(!h.close_at_once(addr(1), now));
        h.waited_for_us(addr(1), now);
        assert!(h.close_at_once(addr(1), now));
        assert!(!h.close_at_once(addr(2), now));
        h.closed_first(addr(1));
        assert!(!h.close_at_once(addr(1), now));
    }

    #[test]
    fn the_habit_is_forgotten_after_a_while() {
        let now = Instant::now();
        let mut h = Habits::default();
        h.waited_for_us(addr(1), now);
        assert!(h.close_at_once(addr(1), now + HABIT_LIFETIME - Duration::from_millis(1)));
        assert!(!h.close_at_once(addr(1), now + HABIT_LIFETIME));
    }

    #[test]
    fn memory_is_bounded_and_stale_entries_make_room() {
        let now = Instant::now();
        let mut h = Habits::default();
        for port in 0..MAX_REMEMBERED as u16 {
            h.waited_for_us(addr(port), now);
        }
        h.waited_for_us(addr(60000), now);
        assert_eq!(h.len(), MAX_REMEMBERED);
        assert!(!h.close_at_once(addr(60000), now), "full: not remembered");
        let later = now + HABIT_LIFETIME;
        h.waited_for_us(addr(60000), later);
        assert_eq!(h.len(), 1, "the stale were swept");
        assert!(h.close_at_once(addr(60000), later));
    }
}
