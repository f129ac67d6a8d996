//! Which answers may open a connection now, and from which port. Pure: no sockets.
//!
//! At most `max_open` answer connections at once, so a flood of queries for unreachable
//! clients cannot eat the process's descriptors; the rest wait in a bounded queue.
//!
//! An answer leaves from our listening port, so the client sees which servent answered
//! — unless another answer to the same reply address holds that port pair: two
//! connections from (our port) to (one reply address) would be one TCP 4-tuple. Then
//! it leaves from an ephemeral port at once, rather than wait for the first to finish.
//! One client has one query at a time, so this only happens when many users share a
//! reply address (or a load generator poses as them); answering them one after another
//! held them to one connection's round trips.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddrV4;

/// What to do with a newly submitted answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Open its connection now; from our listening port if `from_listen_port` (the
    /// pair is then held until [`AnswerScheduler::release_pair`]).
    Open {
        resp: Vec<u8>,
        from_listen_port: bool,
    },
    /// It waits; [`AnswerScheduler::next_ready`] will hand it out.
    Queued,
    /// Too many answers are waiting already: it is dropped (handed back, to be named
    /// in logs and traces).
    Dropped { resp: Vec<u8> },
}

#[derive(Debug)]
pub struct AnswerScheduler {
    max_open: usize,
    max_waiting: usize,
    open: usize,
    /// Reply addresses that an open answer reaches from our listening port.
    pairs_in_use: HashSet<SocketAddrV4>,
    /// Answers waiting for a free connection slot, oldest first.
    waiting: VecDeque<(SocketAddrV4, Vec<u8>)>,
}

impl AnswerScheduler {
    pub fn new(max_open: usize, max_waiting: usize) -> AnswerScheduler {
        AnswerScheduler {
            max_open: max_open.max(1),
            max_waiting,
            open: 0,
            pairs_in_use: HashSet::new(),
            waiting: VecDeque::new(),
        }
    }

    pub fn open(&self) -> usize {
        self.open
    }

    pub fn queued(&self) -> usize {
        self.waiting.len()
    }

    pub fn submit(&mut self, to: SocketAddrV4, resp: Vec<u8>) -> Submitted {
        if self.open < self.max_open && self.waiting.is_empty() {
            self.open += 1;
            let from_listen_port = self.pairs_in_use.insert(to);
            return Submitted::Open {
                resp,
                from_listen_port,
            };
        }
        if self.waiting.len() >= self.max_waiting {
            return Submitted::Dropped { resp };
        }
        self.waiting.push_back((to, resp));
        Submitted::Queued
    }

    /// The answer to `to` that held our port pair no longer does (it is over, or left
    /// from an ephemeral port after all).
    pub fn release_pair(&mut self, to: SocketAddrV4) {
        self.pairs_in_use.remove(&to);
    }

    /// An answer connection is over (delivered or lost): its slot is free.
    pub fn finished(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// The oldest waiting answer, if a slot is free, to open now: `(to, RESP, from our
    /// listening port)`.
    pub fn next_ready(&mut self) -> Option<(SocketAddrV4, Vec<u8>, bool)> {
        if self.open >= self.max_open {
            return None;
        }
        let (to, resp) = self.waiting.pop_front()?;
        self.open += 1;
        let from_listen_port = self.pairs_in_use.insert(to);
        Some((to, resp, from_listen_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    fn open(resp: u8, from_listen_port: bool) -> Submitted {
        Submitted::Open {
            resp: vec![resp],
            from_listen_port,
        }
    }

    #[test]
    fn a_second_answer_to_a_busy_address_leaves_from_another_port_at_once() {
        let mut s = AnswerScheduler::new(10, 10);
        assert_eq!(s.submit(addr(1), vec![1]), open(1, true));
        assert_eq!(s.submit(addr(1), vec![2]), open(2, false));
        assert_eq!(s.submit(addr(2), vec![9]), open(9, true));
        assert_eq!(s.open(), 3);
        // The pair is free again once its holder lets go, not when any answer ends.
        s.finished();
        assert_eq!(s.submit(addr(1), vec![3]), open(3, false));
        s.release_pair(addr(1));
        s.finished();
        assert_eq!(s.submit(addr(1), vec![4]), open(4, true));
        assert_eq!(s.open(), 3);
    }

    #[test]
    fn slots_and_queue_are_bounded_and_served_in_order() {
        let mut s = AnswerScheduler::new(2, 2);
        assert_eq!(s.submit(addr(1), vec![1]), open(1, true));
        assert_eq!(s.submit(addr(2), vec![2]), open(2, true));
        assert_eq!(s.submit(addr(3), vec![3]), Submitted::Queued);
        assert_eq!(s.submit(addr(1), vec![4]), Submitted::Queued);
        assert_eq!(
            s.submit(addr(4), vec![5]),
            Submitted::Dropped { resp: vec![5] }
        );
        assert_eq!(s.next_ready(), None, "no free slot");
        s.release_pair(addr(2));
        s.finished();
        assert_eq!(s.next_ready(), Some((addr(3), vec![3], true)));
        assert_eq!(s.next_ready(), None);
        s.finished();
        // Address 1 still holds its pair: the waiting answer for it goes another way.
        assert_eq!(s.next_ready(), Some((addr(1), vec![4], false)));
        assert_eq!((s.open(), s.queued()), (2, 0));
    }

    #[test]
    fn a_new_answer_does_not_overtake_those_waiting() {
        let mut s = AnswerScheduler::new(1, 10);
        assert_eq!(s.submit(addr(1), vec![1]), open(1, true));
        assert_eq!(s.submit(addr(2), vec![2]), Submitted::Queued);
        s.release_pair(addr(1));
        s.finished();
        // A slot is free, but an older answer waits for it.
        assert_eq!(s.submit(addr(3), vec![3]), Submitted::Queued);
        assert_eq!(s.next_ready(), Some((addr(2), vec![2], true)));
        assert_eq!(s.next_ready(), None);
    }
}
