//! The answer scheduler under arbitrary sequences of answers, outcomes and time:
//! its caps always hold, the queue overflows only at the expense of the address with
//! the most waiting, and every answer ends exactly once (delivered or lost).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tp3kv::net::answers::scheduler::{Limits, LostWhy, Outcome, Scheduler, Ticket};

#[derive(Debug, Clone)]
enum Op {
    Submit { address: u8 },
    Poll,
    Finish { nth: usize, how: How },
    Advance { ms: u16 },
}

#[derive(Debug, Clone, Copy)]
enum How {
    Delivered,
    TimedOut,
    Failed,
    Refused,
    NoDescriptors,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5).prop_map(|address| Op::Submit { address }),
        3 => Just(Op::Poll),
        3 => (any::<usize>(), prop_oneof![
            4 => Just(How::Delivered),
            1 => Just(How::TimedOut),
            1 => Just(How::Failed),
            2 => Just(How::Refused),
            1 => Just(How::NoDescriptors),
        ])
            .prop_map(|(nth, how)| Op::Finish { nth, how }),
        1 => (0u16..1500).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn addr(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1000 + u16::from(n))
}

/// The scheduler, and what the test knows of every answer.
struct Run {
    s: Scheduler,
    limits: Limits,
    now: Instant,
    open: Vec<Ticket>,
    /// Answers waiting, per address, as the scheduler's outputs imply.
    waiting: HashMap<SocketAddrV4, usize>,
    /// Answers that ended, by id: delivered or lost.
    ended: HashSet<u32>,
    submitted: u32,
}

fn id(resp: &[u8]) -> u32 {
    u32::from_be_bytes(resp[..4].try_into().unwrap())
}

impl Run {
    fn end(&mut self, resp: &[u8]) {
        assert!(
            self.ended.insert(id(resp)),
            "answer {} ended twice",
            id(resp)
        );
    }

    fn collect_lost(&mut self) {
        while let Some(lost) = self.s.poll_lost() {
            match lost.why {
                LostWhy::QueueFull { waiting } => {
                    let most = self.waiting.values().copied().max().unwrap_or(0);
                    assert_eq!(
                        self.waiting[&lost.to], waiting,
                        "the count it reports is the victim's"
                    );
                    assert_eq!(waiting, most, "dropped from an address without the most");
                    *self.waiting.get_mut(&lost.to).unwrap() -= 1;
                }
                LostWhy::Expired { waited } => {
                    assert!(waited > self.limits.max_wait);
                    *self.waiting.get_mut(&lost.to).unwrap() -= 1;
                }
                LostWhy::Refused { tries } => assert_eq!(tries, 5),
            }
            self.end(&lost.resp);
        }
    }

    fn poll(&mut self) {
        while let Some(ticket) = self.s.poll_ready(self.now) {
            let w = self
                .waiting
                .get_mut(&ticket.to)
                .expect("only what waits is handed out");
            assert!(*w > 0);
            *w -= 1;
            self.open.push(ticket);
            self.collect_lost();
            self.check_caps();
        }
        self.collect_lost();
    }

    fn check_caps(&self) {
        assert!(self.open.len() <= self.limits.max_open);
        assert_eq!(self.s.open(), self.open.len());
        let mut per: HashMap<SocketAddrV4, (usize, usize)> = HashMap::new();
        for t in &self.open {
            let e = per.entry(t.to).or_default();
            e.0 += 1;
            e.1 += usize::from(t.from_listen_port);
        }
        for (to, (open, holding)) in per {
            assert!(open <= self.limits.per_address, "{open} open to {to}");
            assert!(holding <= 1, "{holding} answers hold the pair to {to}");
        }
        // Answers put back to be tried again were let in already: they may take the
        // queue past its size, by at most the connections they came from.
        assert!(self.s.waiting() <= self.limits.max_waiting + self.limits.max_open);
        assert_eq!(self.s.waiting(), self.waiting.values().sum::<usize>());
    }

    fn finish(&mut self, nth: usize, how: How) {
        if self.open.is_empty() {
            return;
        }
        let ticket = self.open.swap_remove(nth % self.open.len());
        let (to, held) = (ticket.to, ticket.from_listen_port);
        let outcome = match how {
            How::Delivered | How::TimedOut | How::Failed => {
                self.end(&ticket.resp);
                match how {
                    How::Delivered => Outcome::Delivered,
                    How::TimedOut => Outcome::TimedOut,
                    _ => Outcome::Failed,
                }
            }
            How::Refused => {
                if ticket.refusals < 4 {
                    *self.waiting.entry(to).or_default() += 1;
                }
                Outcome::Refused(ticket)
            }
            How::NoDescriptors => {
                *self.waiting.entry(to).or_default() += 1;
                Outcome::NoDescriptors(ticket)
            }
        };
        self.s.finished(to, held, outcome, self.now);
        self.collect_lost();
        self.check_caps();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn caps_hold_and_every_answer_ends_exactly_once(
        ops in prop::collection::vec(op(), 1..200),
        max_open in 1usize..6,
        per_address in 1usize..4,
        max_waiting in 1usize..12,
    ) {
        let limits = Limits { max_open, per_address, max_waiting, max_wait: Duration::from_secs(4) };
        let start = Instant::now();
        let mut run = Run {
            s: Scheduler::new(limits),
            limits,
            now: start,
            open: Vec::new(),
            waiting: HashMap::new(),
            ended: HashSet::new(),
            submitted: 0,
        };
        for op in ops {
            match op {
                Op::Submit { address } => {
                    let resp = run.submitted.to_be_bytes().to_vec();
                    run.submitted += 1;
                    run.s.submit(addr(address), resp, run.now);
                    // A drop to make room happens before the new answer joins.
                    run.collect_lost();
                    *run.waiting.entry(addr(address)).or_default() += 1;
                }
                Op::Poll => run.poll(),
                Op::Finish { nth, how } => run.finish(nth, how),
                Op::Advance { ms } => {
                    run.now += Duration::from_millis(u64::from(ms));
                    run.s.handle_timeout(run.now);
                }
            }
            run.check_caps();
        }
        // Then deliver everything: time moves on to each deadline, every answer
        // opened is delivered, and nothing is left waiting or open.
        for _ in 0..10_000 {
            run.poll();
            while !run.open.is_empty() {
                run.finish(0, How::Delivered);
                run.poll();
            }
            match run.s.poll_timeout() {
                Some(at) => {
                    run.now = run.now.max(at);
                    run.s.handle_timeout(run.now);
                }
                None => break,
            }
        }
        run.poll();
        prop_assert_eq!(run.s.waiting(), 0);
        prop_assert_eq!(run.s.open(), 0);
        prop_assert_eq!(run.ended.len() as u32, run.submitted);
    }
}
