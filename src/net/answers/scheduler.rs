//! Which answers may open a connection now, to whom and from which port. Pure: no
//! sockets, and time is a parameter.
//!
//! Answers wait in one queue per reply address, and the addresses take turns
//! (round-robin), so one client whose answers pile up — thousands aimed at a listener
//! that never reads or never accepts — delays nobody else's:
//!
//! - at most [`Limits::max_open`] answer connections at once in all, so a flood of
//!   queries cannot eat the process's descriptors, and at most
//!   [`Limits::per_address`] to any one reply address;
//! - at most [`Limits::max_waiting`] answers waiting in all; past it, the oldest
//!   answer of the address with the most waiting is dropped, never one of an address
//!   that has few (answers put back to be tried again were let in already, and may
//!   take the queue past its size by the connections they came from);
//! - an answer that has waited [`Limits::max_wait`] is dropped: its client's window
//!   has closed;
//! - a refused connect (a reply listener not open yet: some clients open it just after
//!   sending their request) is tried again after 5, 25, 125 and 625 ms, then lost;
//! - an address whose answers keep timing out is backed off: one connection at a
//!   time, after a pause that doubles with each further timeout;
//! - when the process runs out of descriptors, the answer waits and everyone pauses
//!   for a moment, rather than the answer being lost.
//!
//! An answer leaves from our listening port, so the client sees which servent
//! answered — unless another answer to the same address holds that port pair (two
//! connections from our port to one reply address would be one TCP 4-tuple): then it
//! leaves from an ephemeral port at once rather than wait.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::hashing::FoldHashSeeds;

/// How long to wait before trying a refused answer again, by the refusals so far.
pub const REFUSED_RETRY_DELAYS: [Duration; 4] = [
    Duration::from_millis(5),
    Duration::from_millis(25),
    Duration::from_millis(125),
    Duration::from_millis(625),
];
/// Timeouts in a row after which an address is backed off.
pub const BACKOFF_AFTER_TIMEOUTS: u32 = 2;
/// The first back-off pause; it doubles with each further timeout, up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// The pause after running out of descriptors; doubles while it goes on.
const NO_DESCRIPTORS_MIN: Duration = Duration::from_millis(5);
const NO_DESCRIPTORS_MAX: Duration = Duration::from_millis(320);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_open: usize,
    pub per_address: usize,
    pub max_waiting: usize,
    pub max_wait: Duration,
}

/// An answer allowed to open its connection now. Handed back in an [`Outcome`] when
/// it is to be tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub to: SocketAddrV4,
    pub resp: Vec<u8>,
    /// Whether it leaves from our listening port (the pair is then held until the
    /// answer is [`Scheduler::finished`] or [`Scheduler::release_pair`]).
    pub from_listen_port: bool,
    /// When it was submitted.
    pub since: Instant,
    /// Refused connects so far.
    pub refusals: u32,
}

/// How an answer connection ended.
#[derive(Debug)]
pub enum Outcome {
    Delivered,
    /// It did not connect or deliver in time.
    TimedOut,
    /// Any other failure: the answer is lost (the caller says why).
    Failed,
    /// The connect was refused: tried again later, or lost after the last retry.
    Refused(Ticket),
    /// No descriptor for its socket: it waits, and every answer pauses for a moment.
    NoDescriptors(Ticket),
}

/// Why the scheduler gave an answer up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostWhy {
    /// The queue was full and this address had the most answers waiting.
    QueueFull { waiting: usize },
    /// It waited longer than [`Limits::max_wait`].
    Expired { waited: Duration },
    /// Refused on every try.
    Refused { tries: u32 },
}

impl std::fmt::Display for LostWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LostWhy::QueueFull { waiting } => write!(
                f,
                "the queue is full, and this address has the most waiting ({waiting})"
            ),
            LostWhy::Expired { waited } => write!(f, "waited {waited:.1?} for its turn"),
            LostWhy::Refused { tries } => write!(f, "connection refused ({tries} tries)"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Lost {
    pub to: SocketAddrV4,
    pub resp: Vec<u8>,
    pub why: LostWhy,
}

#[derive(Debug)]
struct Waiting {
    resp: Vec<u8>,
    since: Instant,
    refusals: u32,
}

#[derive(Debug, Default)]
struct Address {
    queue: VecDeque<Waiting>,
    open: usize,
    holds_pair: bool,
    paused_until: Option<Instant>,
    /// Whether it is in `Scheduler::turns`.
    has_turn: bool,
    timeouts_in_a_row: u32,
}

#[derive(Debug)]
pub struct Scheduler {
    limits: Limits,
    open: usize,
    waiting: usize,
    addresses: HashMap<SocketAddrV4, Address, FoldHashSeeds>,
    /// Addresses that may open an answer now, in the order they get their turn.
    turns: VecDeque<SocketAddrV4>,
    /// When paused addresses may go on (stale entries are skipped).
    pauses: BinaryHeap<Reverse<(Instant, SocketAddrV4)>>,
    /// `(answers waiting, address)` of every address with answers waiting, so the
    /// fullest is at hand when the queue overflows.
    by_waiting: BTreeSet<(usize, SocketAddrV4)>,
    /// Out of descriptors: no answer opens before this.
    held_until: Option<Instant>,
    hold: Duration,
    lost: VecDeque<Lost>,
}

impl Scheduler {
    pub fn new(limits: Limits) -> Scheduler {
        Scheduler {
            limits: Limits {
                max_open: limits.max_open.max(1),
                per_address: limits.per_address.max(1),
                // Answers wait here until the end of the loop's turn at least.
                max_waiting: limits.max_waiting.max(1),
                ..limits
            },
            open: 0,
            waiting: 0,
            addresses: HashMap::default(),
            turns: VecDeque::new(),
            pauses: BinaryHeap::new(),
            by_waiting: BTreeSet::new(),
            held_until: None,
            hold: NO_DESCRIPTORS_MIN,
            lost: VecDeque::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Answer connections open (or about to be).
    pub fn open(&self) -> usize {
        self.open
    }

    /// Answers waiting for their turn.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Queues an answer. When the queue is full, the oldest answer of the address with
    /// the most waiting makes room (see [`Scheduler::poll_lost`]).
    pub fn submit(&mut self, to: SocketAddrV4, resp: Vec<u8>, now: Instant) {
        if self.waiting >= self.limits.max_waiting {
            if let Some((waiting, victim)) = self.by_waiting.last().copied() {
                if let Some(dropped) = self.pop_waiting(victim) {
                    self.lost.push_back(Lost {
                        to: victim,
                        resp: dropped.resp,
                        why: LostWhy::QueueFull { waiting },
                    });
                }
                self.forget_if_idle(victim);
            }
        }
        let waiting = Waiting {
            resp,
            since: now,
            refusals: 0,
        };
        self.push_waiting(to, waiting, false);
        self.give_turn(to);
    }

    /// The next answer to open now, if any may: addresses take turns, and each answer
    /// that has waited too long is given up on the way (see [`Scheduler::poll_lost`]).
    pub fn poll_ready(&mut self, now: Instant) -> Option<Ticket> {
        if self.held_until.is_some_and(|t| now < t) {
            return None;
        }
        self.held_until = None;
        while self.open < self.limits.max_open {
            let to = self.turns.pop_front()?;
            let Some(address) = self.addresses.get_mut(&to) else {
                continue;
            };
            address.has_turn = false;
            if !self.may_open(to) {
                self.forget_if_idle(to);
                continue;
            }
            let waiting = self.pop_waiting(to).expect("may_open: answers are waiting");
            let waited = now.saturating_duration_since(waiting.since);
            if waited > self.limits.max_wait {
                self.lost.push_back(Lost {
                    to,
                    resp: waiting.resp,
                    why: LostWhy::Expired { waited },
                });
                self.give_turn(to);
                self.forget_if_idle(to);
                continue;
            }
            let address = self.addresses.get_mut(&to).expect("still waiting or open");
            address.open += 1;
            let from_listen_port = !address.holds_pair;
            address.holds_pair = true;
            self.open += 1;
            self.give_turn(to);
            return Some(Ticket {
                to,
                resp: waiting.resp,
                from_listen_port,
                since: waiting.since,
                refusals: waiting.refusals,
            });
        }
        None
    }

    /// An answer given up, to be counted and logged.
    pub fn poll_lost(&mut self) -> Option<Lost> {
        self.lost.pop_front()
    }

    /// The answer to `to` that held our port pair no longer does (it went from an
    /// ephemeral port after all).
    pub fn release_pair(&mut self, to: SocketAddrV4) {
        if let Some(address) = self.addresses.get_mut(&to) {
            address.holds_pair = false;
        }
    }

    /// An answer connection to `to` is over; `held_pair`: it was from our listening
    /// port and still held the pair.
    pub fn finished(&mut self, to: SocketAddrV4, held_pair: bool, outcome: Outcome, now: Instant) {
        self.open = self.open.saturating_sub(1);
        let address = self.addresses.entry(to).or_default();
        address.open = address.open.saturating_sub(1);
        if held_pair {
            address.holds_pair = false;
        }
        match outcome {
            Outcome::Delivered => {
                address.timeouts_in_a_row = 0;
                self.hold = NO_DESCRIPTORS_MIN;
            }
            Outcome::Failed => {}
            Outcome::TimedOut => {
                address.timeouts_in_a_row += 1;
                let streak = address.timeouts_in_a_row;
                if streak >= BACKOFF_AFTER_TIMEOUTS {
                    let doublings = (streak - BACKOFF_AFTER_TIMEOUTS).min(16);
                    let pause = (BACKOFF_MIN * 2u32.pow(doublings)).min(BACKOFF_MAX);
                    self.pause(to, now + pause);
                }
            }
            Outcome::Refused(ticket) => {
                let refusals = ticket.refusals;
                match REFUSED_RETRY_DELAYS.get(refusals as usize) {
                    Some(&delay) => {
                        self.retry(ticket, refusals + 1);
                        self.pause(to, now + delay);
                    }
                    None => self.lost.push_back(Lost {
                        to,
                        resp: ticket.resp,
                        why: LostWhy::Refused {
                            tries: refusals + 1,
                        },
                    }),
                }
            }
            Outcome::NoDescriptors(ticket) => {
                let refusals = ticket.refusals;
                self.retry(ticket, refusals);
                self.held_until = Some(now + self.hold);
                self.hold = (self.hold * 2).min(NO_DESCRIPTORS_MAX);
            }
        }
        self.give_turn(to);
        self.forget_if_idle(to);
    }

    /// When something waiting may go next without any connection ending: a pause
    /// over, or the descriptor hold lifted.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pause = self.pauses.peek().map(|Reverse((at, _))| *at);
        match (pause, self.held_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the pauses that are over by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, to))) = self.pauses.peek() {
            if at > now {
                break;
            }
            self.pauses.pop();
            if let Some(address) = self.addresses.get_mut(&to) {
                if address.paused_until == Some(at) {
                    address.paused_until = None;
                    self.give_turn(to);
                    self.forget_if_idle(to);
                }
            }
        }
    }

    fn retry(&mut self, ticket: Ticket, refusals: u32) {
        let waiting = Waiting {
            resp: ticket.resp,
            since: ticket.since,
            refusals,
        };
        self.push_waiting(ticket.to, waiting, true);
    }

    fn pause(&mut self, to: SocketAddrV4, until: Instant) {
        let address = self.addresses.entry(to).or_default();
        address.paused_until = Some(until);
        self.pauses.push(Reverse((until, to)));
    }

    /// Whether `to` may open an answer, global limits aside.
    fn may_open(&self, to: SocketAddrV4) -> bool {
        self.addresses.get(&to).is_some_and(|a| {
            let cap = if a.timeouts_in_a_row >= BACKOFF_AFTER_TIMEOUTS {
                1
            } else {
                self.limits.per_address
            };
            !a.queue.is_empty() && a.paused_until.is_none() && a.open < cap
        })
    }

    /// Puts `to` at the back of the turns, if it may open an answer and is not there.
    fn give_turn(&mut self, to: SocketAddrV4) {
        if !self.may_open(to) {
            return;
        }
        if let Some(address) = self.addresses.get_mut(&to) {
            if !address.has_turn {
                address.has_turn = true;
                self.turns.push_back(to);
            }
        }
    }

    fn push_waiting(&mut self, to: SocketAddrV4, waiting: Waiting, front: bool) {
        let address = self.addresses.entry(to).or_default();
        let before = address.queue.len();
        if front {
            address.queue.push_front(waiting);
        } else {
            address.queue.push_back(waiting);
        }
        self.waiting += 1;
        self.reindex(to, before, before + 1);
    }

    fn pop_waiting(&mut self, to: SocketAddrV4) -> Option<Waiting> {
        let address = self.addresses.get_mut(&to)?;
        let before = address.queue.len();
        let waiting = address.queue.pop_front()?;
        self.waiting -= 1;
        self.reindex(to, before, before - 1);
        Some(waiting)
    }

    fn reindex(&mut self, to: SocketAddrV4, before: usize, after: usize) {
        if before > 0 {
            self.by_waiting.remove(&(before, to));
        }
        if after > 0 {
            self.by_waiting.insert((after, to));
        }
    }

    /// Forgets an address with nothing waiting, open or pending, so that the map stays
    /// as small as the work in hand.
    fn forget_if_idle(&mut self, to: SocketAddrV4) {
        let idle = self.addresses.get(&to).is_some_and(|a| {
            a.queue.is_empty()
                && a.open == 0
                && !a.holds_pair
                && !a.has_turn
                && a.paused_until.is_none()
        });
        if idle {
            self.addresses.remove(&to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    fn limits(max_open: usize, per_address: usize, max_waiting: usize) -> Limits {
        Limits {
            max_open,
            per_address,
            max_waiting,
            max_wait: Duration::from_secs(4),
        }
    }

    /// Every ticket ready now: (address port, first RESP byte, from our port).
    fn drain(s: &mut Scheduler, now: Instant) -> Vec<(u16, u8, bool)> {
        std::iter::from_fn(|| s.poll_ready(now))
            .map(|t| (t.to.port(), t.resp[0], t.from_listen_port))
            .collect()
    }

    fn lost(s: &mut Scheduler) -> Vec<(u16, u8, LostWhy)> {
        std::iter::from_fn(|| s.poll_lost())
            .map(|l| (l.to.port(), l.resp[0], l.why))
            .collect()
    }

    #[test]
    fn the_first_answer_to_an_address_holds_our_port_the_others_leave_from_any() {
        let now = Instant::now();
        let mut s = Scheduler::new(limits(10, 4, 10));
        s.submit(addr(1), vec![1], now);
        s.submit(addr(1), vec![2], now);
        s.submit(addr(2), vec![3], now);
        assert_eq!(
            drain(&mut s, now),
            [(1, 1, true), (2, 3, true), (1, 2, false)]
        );
        // The pair is free once its holder is done, not when any answer ends.
        s.finished(addr(1), false, Outcome::Delivered, now);
        s.submit(addr(1), vec![4], now);
        assert_eq!(drain(&mut s, now), [(1, 4, false)]);
        s.finished(addr(1), true, Outcome::Delivered, now);
        s.finished(addr(1), false, Outcome::Delivered, now);
        s.submit(addr(1), vec![5], now);
        assert_eq!(drain(&mut s, now), [(1, 5, true)]);
        // Or once it lets go of the pair.
        s.submit(addr(2), vec![6], now);
        s.release_pair(addr(2));
        s.submit(addr(2), vec![7], now);
        assert_eq!(drain(&mut s, now), [(2, 6, true), (2, 7, false)]);
    }

    #[test]
    fn addresses_take_turns_and_each_has_its_own_cap() {
        let now = Instant::now();
        let mut s = Scheduler::new(limits(100, 2, 1000));
        // A busy address with 10 answers, then two quiet ones.
        for n in 0..10 {
            s.submit(addr(1), vec![n], now);
        }
        s.submit(addr(2), vec![20], now);
        s.submit(addr(3), vec![30], now);
        let ready = drain(&mut s, now);
        assert_eq!(
            ready,
            [(1, 0, true), (2, 20, true), (3, 30, true), (1, 1, false)],
            "the busy address opens only its cap, and the others are not behind it"
        );
        assert_eq!((s.open(), s.waiting()), (4, 8));
        // A slot of the busy address frees: its next answer goes.
        s.finished(addr(1), true, Outcome::Delivered, now);
        assert_eq!(drain(&mut s, now), [(1, 2, true)]);
    }

    #[test]
    fn the_global_cap_is_shared_round_robin() {
        let now = Instant::now();
        let mut s = Scheduler::new(limits(3, 4, 1000));
        for n in 0..6 {
            s.submit(addr(1), vec![n], now);
            s.submit(addr(2), vec![10 + n], now);
        }
        s.submit(addr(3), vec![30], now);
        assert_eq!(
            drain(&mut s, now),
            [(1, 0, true), (2, 10, true), (3, 30, true)]
        );
        s.finished(addr(3), true, Outcome::Delivered, now);
        s.finished(addr(1), true, Outcome::Delivered, now);
        assert_eq!(drain(&mut s, now), [(1, 1, true), (2, 11, false)]);
    }

    #[test]
    fn a_full_queue_drops_from_the_address_with_the_most_waiting() {
        let now = Instant::now();
        let mut s = Scheduler::new(limits(1, 1, 5));
        s.submit(addr(9), vec![90], now);
        assert_eq!(
            drain(&mut s, now),
            [(9, 90, true)],
            "the only slot is taken"
        );
        for n in 0..4 {
            s.submit(addr(1), vec![n], now);
        }
        s.submit(addr(2), vec![20], now);
        assert_eq!(s.waiting(), 5);
        // Full: a new answer for a quiet address pushes out the busy one's oldest.
        s.submit(addr(3), vec![30], now);
        assert_eq!(lost(&mut s), [(1, 0, LostWhy::QueueFull { waiting: 4 })]);
        // And the busy address's own new answers push out its own oldest.
        s.submit(addr(1), vec![4], now);
        assert_eq!(lost(&mut s), [(1, 1, LostWhy::QueueFull { waiting: 3 })]);
        assert_eq!(s.waiting(), 5);
        // Never from one with none waiting: 2 and 3 still have theirs.
        s.finished(addr(9), true, Outcome::Delivered, now);
        let mut served = Vec::new();
        for _ in 0..5 {
            let t = s.poll_ready(now).expect("one slot frees each time");
            served.push((t.to.port(), t.resp[0]));
            s.finished(t.to, t.from_listen_port, Outcome::Delivered, now);
        }
        assert_eq!(served, [(1, 2), (2, 20), (3, 30), (1, 3), (1, 4)]);
        assert_eq!((s.open(), s.waiting()), (0, 0));
        assert!(s.addresses.is_empty(), "idle addresses are forgotten");
    }

    #[test]
    fn an_answer_that_waited_too_long_is_dropped() {
        let start = Instant::now();
        let mut s = Scheduler::new(limits(1, 1, 10));
        s.submit(addr(1), vec![1], start);
        s.submit(addr(2), vec![2], start);
        assert_eq!(drain(&mut s, start), [(1, 1, true)]);
        let later = start + Duration::from_secs(5);
        s.submit(addr(3), vec![3], later);
        s.finished(addr(1), true, Outcome::Delivered, later);
        assert_eq!(drain(&mut s, later), [(3, 3, true)]);
        assert_eq!(
            lost(&mut s),
            [(
                2,
                2,
                LostWhy::Expired {
                    waited: Duration::from_secs(5)
                }
            )]
        );
    }

    #[test]
    fn a_refused_answer_is_retried_after_5_25_125_625_ms_then_lost() {
        let start = Instant::now();
        let mut s = Scheduler::new(limits(10, 4, 10));
        s.submit(addr(1), vec![1], start);
        let mut now = start;
        let mut ticket = s.poll_ready(now).unwrap();
        for delay in [5, 25, 125, 625] {
            s.finished(addr(1), true, Outcome::Refused(ticket), now);
            let due = now + Duration::from_millis(delay);
            assert_eq!(s.poll_timeout(), Some(due));
            s.handle_timeout(due - Duration::from_micros(1));
            assert_eq!(s.poll_ready(now), None, "not before {delay} ms");
            now = due;
            s.handle_timeout(now);
            ticket = s.poll_ready(now).expect("tried again");
            assert!(ticket.from_listen_port);
        }
        assert_eq!(ticket.refusals, 4);
        s.finished(addr(1), true, Outcome::Refused(ticket), now);
        assert_eq!(lost(&mut s), [(1, 1, LostWhy::Refused { tries: 5 })]);
        assert_eq!(s.poll_timeout(), None);
        assert!(s.addresses.is_empty());
    }

    #[test]
    fn a_late_listener_gets_its_answer_and_other_addresses_do_not_wait_for_it() {
        let now = Instant::now();
        let mut s = Scheduler::new(limits(10, 4, 10));
        s.submit(addr(1), vec![1], now);
        let t = s.poll_ready(now).unwrap();
        s.finished(addr(1), true, Outcome::Refused(t), now);
        s.submit(addr(2), vec![2], now);
        assert_eq!(drain(&mut s, now), [(2, 2, true)]);
        let later = now + Duration::from_millis(5);
        s.handle_timeout(later);
        let t = s.poll_ready(later).unwrap();
        assert_eq!((t.to, t.refusals), (addr(1), 1));
        s.finished(addr(1), true, Outcome::Delivered, later);
        assert_eq!(lost(&mut s), []);
    }

    #[test]
    fn an_address_that_keeps_timing_out_is_backed_off() {
        let start = Instant::now();
        let mut s = Scheduler::new(limits(10, 4, 100));
        for n in 0..10 {
            s.submit(addr(1), vec![n], start);
        }
        assert_eq!(drain(&mut s, start).len(), 4);
        // One timeout alone changes nothing.
        s.finished(addr(1), true, Outcome::TimedOut, start);
        assert_eq!(drain(&mut s, start).len(), 1);
        // A second in a row: paused for 250 ms, then one connection at a time.
        s.finished(addr(1), false, Outcome::TimedOut, start);
        assert_eq!(drain(&mut s, start), []);
        assert_eq!(s.poll_timeout(), Some(start + BACKOFF_MIN));
        let later = start + BACKOFF_MIN;
        s.handle_timeout(later);
        for _ in 0..3 {
            s.finished(addr(1), false, Outcome::Failed, later);
        }
        assert_eq!(s.open(), 0);
        assert_eq!(drain(&mut s, later).len(), 1, "one at a time");
        // A third timeout doubles the pause; a delivery ends the back-off.
        s.finished(addr(1), false, Outcome::TimedOut, later);
        assert_eq!(s.poll_timeout(), Some(later + BACKOFF_MIN * 2));
        let after = later + BACKOFF_MIN * 2;
        s.handle_timeout(after);
        let t = s.poll_ready(after).unwrap();
        s.finished(t.to, t.from_listen_port, Outcome::Delivered, after);
        assert_eq!(drain(&mut s, after).len(), 3, "the last three, at once");
        // Meanwhile another address was never held back.
        s.submit(addr(2), vec![20], after);
        assert_eq!(drain(&mut s, after), [(2, 20, true)]);
    }

    #[test]
    fn out_of_descriptors_the_answer_waits_and_everyone_pauses() {
        let now = Instant::now();
        let mut s = Scheduler::new(limits(10, 4, 10));
        s.submit(addr(1), vec![1], now);
        s.submit(addr(2), vec![2], now);
        let t = s.poll_ready(now).unwrap();
        s.finished(addr(1), true, Outcome::NoDescriptors(t), now);
        assert_eq!(s.poll_ready(now), None, "held");
        let later = now + NO_DESCRIPTORS_MIN;
        assert_eq!(s.poll_timeout(), Some(later));
        let ready = drain(&mut s, later);
        assert_eq!(ready, [(2, 2, true), (1, 1, true)], "nothing lost");
        assert_eq!(lost(&mut s), []);
    }
}
