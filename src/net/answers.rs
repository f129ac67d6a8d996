//! Which answers may open a connection now, and which wait. Pure: no sockets.
//!
//! Two rules. At most `max_open` answer connections at once, so a flood of queries
//! for unreachable clients cannot eat the process's descriptors. And at most one open
//! connection per client reply address: answers leave from our listening port, and two
//! connections from (our port) to (the same reply address) would be the same TCP
//! 4-tuple, so the second would be refused and have to leave from an ephemeral port,
//! and the client would see an address that does not name this servent. Answers for a
//! busy address wait behind the open one, in order.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;

/// What to do with a newly submitted answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Open its connection now.
    Open(Vec<u8>),
    /// It waits; [`AnswerScheduler::finished`] or [`AnswerScheduler::next_ready`]
    /// will hand it out.
    Queued,
    /// Too many answers are waiting already: it is dropped.
    Dropped,
}

#[derive(Debug)]
pub struct AnswerScheduler {
    max_open: usize,
    max_waiting: usize,
    open: usize,
    /// Reply addresses with a connection open, each with the answers queued behind it.
    busy: HashMap<SocketAddrV4, VecDeque<Vec<u8>>>,
    /// Answers for idle addresses, waiting for a free connection slot.
    waiting: VecDeque<(SocketAddrV4, Vec<u8>)>,
    /// All queued answers, in `busy` and in `waiting`.
    queued: usize,
}

impl AnswerScheduler {
    pub fn new(max_open: usize, max_waiting: usize) -> AnswerScheduler {
        AnswerScheduler {
            max_open: max_open.max(1),
            max_waiting,
            open: 0,
            busy: HashMap::new(),
            waiting: VecDeque::new(),
            queued: 0,
        }
    }

    pub fn open(&self) -> usize {
        self.open
    }

    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn submit(&mut self, to: SocketAddrV4, resp: Vec<u8>) -> Submitted {
        if !self.busy.contains_key(&to) && self.open < self.max_open {
            self.open += 1;
            self.busy.insert(to, VecDeque::new());
            return Submitted::Open(resp);
        }
        if self.queued >= self.max_waiting {
            return Submitted::Dropped;
        }
        self.queued += 1;
        match self.busy.get_mut(&to) {
            Some(behind) => behind.push_back(resp),
            None => self.waiting.push_back((to, resp)),
        }
        Submitted::Queued
    }

    /// The connection to `to` is over (delivered or lost). Returns the next answer for
    /// the same address, to open now in the slot just freed.
    pub fn finished(&mut self, to: SocketAddrV4) -> Option<Vec<u8>> {
        let behind = self.busy.get_mut(&to)?;
        match behind.pop_front() {
            Some(next) => {
                self.queued -= 1;
                Some(next)
            }
            None => {
                self.busy.remove(&to);
                self.open -= 1;
                None
            }
        }
    }

    /// An answer waiting for a free slot whose address is idle, to open now.
    pub fn next_ready(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        while self.open < self.max_open {
            let (to, resp) = self.waiting.pop_front()?;
            match self.busy.get_mut(&to) {
                // Its address got busy meanwhile: wait behind that connection instead.
                Some(behind) => behind.push_back(resp),
                None => {
                    self.queued -= 1;
                    self.open += 1;
                    self.busy.insert(to, VecDeque::new());
                    return Some((to, resp));
                }
            }
        }
        None
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
    fn one_connection_per_address_in_order() {
        let mut s = AnswerScheduler::new(10, 10);
        assert_eq!(s.submit(addr(1), vec![1]), Submitted::Open(vec![1]));
        assert_eq!(s.submit(addr(1), vec![2]), Submitted::Queued);
        assert_eq!(s.submit(addr(1), vec![3]), Submitted::Queued);
        assert_eq!(s.submit(addr(2), vec![9]), Submitted::Open(vec![9]));
        assert_eq!(s.finished(addr(1)), Some(vec![2]));
        assert_eq!(s.finished(addr(1)), Some(vec![3]));
        assert_eq!(s.finished(addr(1)), None);
        assert_eq!(s.open(), 1);
        assert_eq!(s.submit(addr(1), vec![4]), Submitted::Open(vec![4]));
    }

    #[test]
    fn slots_and_queue_are_bounded() {
        let mut s = AnswerScheduler::new(2, 2);
        assert!(matches!(s.submit(addr(1), vec![1]), Submitted::Open(_)));
        assert!(matches!(s.submit(addr(2), vec![2]), Submitted::Open(_)));
        assert_eq!(s.submit(addr(3), vec![3]), Submitted::Queued);
        assert_eq!(s.submit(addr(1), vec![4]), Submitted::Queued);
        assert_eq!(s.submit(addr(4), vec![5]), Submitted::Dropped);
        assert_eq!(s.next_ready(), None, "no free slot");
        // Address 2 frees its slot: address 3 may go.
        assert_eq!(s.finished(addr(2)), None);
        assert_eq!(s.next_ready(), Some((addr(3), vec![3])));
        assert_eq!(s.next_ready(), None);
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn a_waiting_answer_whose_address_got_busy_waits_behind_it() {
        let mut s = AnswerScheduler::new(1, 10);
        assert!(matches!(s.submit(addr(1), vec![1]), Submitted::Open(_)));
        assert_eq!(s.submit(addr(2), vec![2]), Submitted::Queued);
        assert_eq!(s.finished(addr(1)), None);
        // Before the driver asks for the waiting one, address 2 gets a new answer that
        // takes the free slot; the older one must follow it, not run beside it.
        assert!(matches!(s.submit(addr(2), vec![3]), Submitted::Open(_)));
        assert_eq!(s.next_ready(), None);
        assert_eq!(s.finished(addr(2)), None);
        assert_eq!(s.next_ready(), Some((addr(2), vec![2])));
        assert_eq!(s.finished(addr(2)), None);
        assert_eq!((s.open(), s.queued()), (0, 0));

        // With a slot free, it moves behind the busy address instead.
        let mut s = AnswerScheduler::new(2, 10);
        assert!(matches!(s.submit(addr(1), vec![1]), Submitted::Open(_)));
        assert!(matches!(s.submit(addr(3), vec![1]), Submitted::Open(_)));
        assert_eq!(s.submit(addr(2), vec![2]), Submitted::Queued);
        assert_eq!(s.finished(addr(1)), None);
        assert!(matches!(s.submit(addr(2), vec![3]), Submitted::Open(_)));
        assert_eq!(s.finished(addr(3)), None);
        assert_eq!(s.next_ready(), None);
        assert_eq!(s.finished(addr(2)), Some(vec![2]));
    }
}
