//! Answer delivery: every RESP goes to its client on a connection of its own.
//!
//! [`scheduler`] decides which answers may open a connection now (per-address queues
//! taken in turns, caps, retries, back-off; pure), [`delivery`] runs one connection
//! (connect, write, a short grace, close), [`habits`] remembers the clients that wait
//! for our close (theirs close at once), and [`Answers`] ties them to the driver's
//! poll: it opens what the scheduler allows, feeds each connection its events and
//! deadlines, and reports the outcome back to the scheduler.

pub mod delivery;
pub mod habits;
pub mod scheduler;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use log::{debug, Level};
use mio::{Interest, Registry, Token};

use super::sys;
use super::Tokens;
use crate::hashing::IdMap;
use crate::throttle::Throttle;
use crate::trace::{Event as TraceEvent, EventKind, FrameFields};
use delivery::{Delivery, Phase, Progress};
use habits::Habits;
use scheduler::{Limits, Outcome, Scheduler, Ticket};

/// Connects from our listening port that found the port pair still busy (the last
/// connection to the same client not quite closed) are tried again: on the next loop
/// turn, then 1, 2, 4 and 8 ms later; then the answer leaves from an ephemeral port.
const PAIR_RETRIES: u32 = 5;
const PAIR_RETRY_DELAY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
pub struct AnswerOptions {
    pub limits: Limits,
    /// How long one connection may take to connect and deliver its RESP.
    pub timeout: Duration,
}

/// Every answer waiting or on its way, for one servent.
#[derive(Debug)]
pub struct Answers {
    scheduler: Scheduler,
    deliveries: IdMap<Token, Delivery>,
    /// Delivery deadlines (stale entries are skipped).
    deadlines: BinaryHeap<Reverse<(Instant, Token)>>,
    /// Answers whose port pair was busy: when to try again, and the tries so far.
    pair_retries: Vec<(Instant, Ticket, u32)>,
    /// Clients known to wait for our close: their answers close at once.
    habits: Habits,
    listen_port: u16,
    timeout: Duration,
    sent: u64,
    lost: u64,
    lost_log: Throttle,
    /// Trace events for the driver to write; `Some` while tracing.
    events: Option<Vec<TraceEvent>>,
}

impl Answers {
    pub fn new(options: AnswerOptions, listen_port: u16) -> Answers {
        Answers {
            scheduler: Scheduler::new(options.limits),
            deliveries: IdMap::default(),
            deadlines: BinaryHeap::new(),
            pair_retries: Vec::new(),
            habits: Habits::default(),
            listen_port,
            timeout: options.timeout,
            sent: 0,
            lost: 0,
            lost_log: Throttle::new(Level::Warn, "answers lost"),
            events: None,
        }
    }

    /// Keeps trace events of answers sent and lost, for [`Answers::take_events`].
    pub fn trace(&mut self) {
        self.events.get_or_insert_with(Vec::new);
    }

    pub fn take_events(&mut self) -> Vec<TraceEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// RESPs fully written.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Answers that will never reach their client.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Answer connections open.
    pub fn open(&self) -> usize {
        self.deliveries.len()
    }

    /// Whether lost answers' log lines were held back (see [`Throttle::tick`]).
    pub fn logs_held_back(&self) -> bool {
        self.lost_log.holds_back()
    }

    pub fn tick_logs(&mut self, now: Instant) {
        self.lost_log.tick(now);
    }

    /// Answers waiting for their turn.
    pub fn waiting(&self) -> usize {
        self.scheduler.waiting()
    }

    /// Queues an answer; it opens at the next [`Answers::open_ready`].
    pub fn submit(&mut self, to: SocketAddrV4, resp: Vec<u8>, now: Instant) {
        self.scheduler.submit(to, resp, now);
        self.collect_lost();
        debug!(
            "answer to {to}: queued ({} open, {} waiting)",
            self.scheduler.open(),
            self.scheduler.waiting()
        );
    }

    /// Opens every answer connection the scheduler allows now.
    pub fn open_ready(&mut self, registry: &Registry, tokens: &mut Tokens, now: Instant) {
        if !self.pair_retries.is_empty() {
            let (due, later) = std::mem::take(&mut self.pair_retries)
                .into_iter()
                .partition(|(at, _, _)| *at <= now);
            self.pair_retries = later;
            for (_, ticket, tries) in due {
                self.connect(ticket, tries, registry, tokens, now);
            }
        }
        while let Some(ticket) = self.scheduler.poll_ready(now) {
            self.connect(ticket, 0, registry, tokens, now);
        }
        self.collect_lost();
    }

    /// When [`Answers::handle_timeout`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.deadlines.peek().map(|Reverse((at, _))| *at),
            self.scheduler.poll_timeout(),
            self.pair_retries.iter().map(|(at, _, _)| *at).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.scheduler.handle_timeout(now);
        while let Some(&Reverse((at, token))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(delivery) = self.deliveries.get(&token) else {
                continue;
            };
            if delivery.deadline > now {
                continue; // replaced by a later one
            }
            match delivery.phase() {
                Phase::Grace => {
                    // It read the RESP and kept its end open: it waits for our close.
                    self.habits.waited_for_us(delivery.ticket.to, now);
                    self.end(
                        token,
                        Outcome::Delivered,
                        format_args!("closed after the grace"),
                        now,
                    )
                }
                _ => self.end(token, Outcome::TimedOut, format_args!("timed out"), now),
            }
        }
        self.collect_lost();
    }

    /// A readiness event for one of ours.
    pub fn handle_event(&mut self, token: Token, readable: bool, now: Instant) {
        let Some(delivery) = self.deliveries.get_mut(&token) else {
            return;
        };
        let deadline = delivery.deadline;
        let progress = delivery.on_ready(readable, now);
        if delivery.deadline != deadline {
            self.deadlines.push(Reverse((delivery.deadline, token)));
        }
        match progress {
            Progress::Pending => {}
            Progress::Sent => {
                let to = delivery.ticket.to;
                debug!("answer to {to}: RESP sent");
                self.sent += 1;
                if self.events.is_some() {
                    self.trace_sent(token);
                }
                if self.habits.close_at_once(to, now) {
                    let why = format_args!("closed at once: this client waits for our close");
                    self.end(token, Outcome::Delivered, why, now);
                }
            }
            Progress::ClientClosed => {
                if let Some(delivery) = self.deliveries.get(&token) {
                    self.habits.closed_first(delivery.ticket.to);
                }
                self.end(
                    token,
                    Outcome::Delivered,
                    format_args!("client closed"),
                    now,
                )
            }
            Progress::Failed(e) => self.failed(token, e, now),
        }
        self.collect_lost();
    }

    /// Begins the connect of `ticket` (`tries`: earlier connects from our port that
    /// found the pair busy).
    fn connect(
        &mut self,
        ticket: Ticket,
        tries: u32,
        registry: &Registry,
        tokens: &mut Tokens,
        now: Instant,
    ) {
        let to = ticket.to;
        let source = ticket.from_listen_port.then_some(self.listen_port);
        let mut stream = match sys::connect_from(to, source) {
            Ok(stream) => stream,
            Err(e) => return self.not_connected(ticket, tries, e, registry, tokens, now),
        };
        let token = tokens.fresh();
        if let Err(e) =
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            self.lose(to, &ticket.resp, format_args!("lost: cannot register: {e}"));
            let held = ticket.from_listen_port;
            return self.scheduler.finished(to, held, Outcome::Failed, now);
        }
        let delivery = Delivery::new(ticket, stream, now, self.timeout);
        self.deadlines.push(Reverse((delivery.deadline, token)));
        self.deliveries.insert(token, delivery);
    }

    /// A connect that could not even begin.
    fn not_connected(
        &mut self,
        mut ticket: Ticket,
        tries: u32,
        e: io::Error,
        registry: &Registry,
        tokens: &mut Tokens,
        now: Instant,
    ) {
        let to = ticket.to;
        if ticket.from_listen_port && is_address_clash(&e) {
            if tries < PAIR_RETRIES {
                // The first retry waits only for the next loop turn: by then the
                // kernel has usually taken the last ACK of the previous connection.
                let delay = match tries {
                    0 => Duration::ZERO,
                    n => PAIR_RETRY_DELAY * 2u32.pow(n - 1),
                };
                debug!("answer to {to}: port pair busy ({e}), retrying in {delay:?}");
                self.pair_retries.push((now + delay, ticket, tries + 1));
                return;
            }
            debug!(
                "answer to {to}: cannot use port {} ({e}), using an ephemeral port",
                self.listen_port
            );
            self.scheduler.release_pair(to);
            ticket.from_listen_port = false;
            return self.connect(ticket, 0, registry, tokens, now);
        }
        let held = ticket.from_listen_port;
        let outcome = if is_refused(&e) {
            debug!("answer to {to}: connection refused");
            Outcome::Refused(ticket)
        } else if is_out_of_descriptors(&e) {
            debug!("answer to {to}: no descriptor ({e}), waiting");
            Outcome::NoDescriptors(ticket)
        } else {
            self.lose(to, &ticket.resp, format_args!("lost: {e}"));
            Outcome::Failed
        };
        self.scheduler.finished(to, held, outcome, now);
    }

    /// Connecting or writing failed.
    fn failed(&mut self, token: Token, e: io::Error, now: Instant) {
        let Some(delivery) = self.deliveries.get(&token) else {
            return;
        };
        if delivery.phase() != Phase::Connecting {
            return self.end(
                token,
                Outcome::Failed,
                format_args!("write failed: {e}"),
                now,
            );
        }
        let (to, held) = (delivery.ticket.to, delivery.ticket.from_listen_port);
        if is_refused(&e) {
            debug!("answer to {to}: connection refused");
            let ticket = self
                .deliveries
                .remove(&token)
                .expect("looked up above")
                .ticket;
            return self
                .scheduler
                .finished(to, held, Outcome::Refused(ticket), now);
        }
        if held && is_address_clash(&e) {
            debug!("answer to {to}: port clash ({e}), retrying from an ephemeral port");
            let mut ticket = self
                .deliveries
                .remove(&token)
                .expect("looked up above")
                .ticket;
            self.scheduler.release_pair(to);
            ticket.from_listen_port = false;
            self.pair_retries.push((now, ticket, PAIR_RETRIES));
            return;
        }
        self.end(
            token,
            Outcome::Failed,
            format_args!("connect failed: {e}"),
            now,
        );
    }

    /// A connection is over: closed (by dropping it), counted lost unless delivered,
    /// and its slot given back.
    fn end(&mut self, token: Token, outcome: Outcome, why: fmt::Arguments<'_>, now: Instant) {
        let Some(delivery) = self.deliveries.remove(&token) else {
            return;
        };
        let ticket = &delivery.ticket;
        match outcome {
            Outcome::Delivered => debug!("answer to {}: done ({why})", ticket.to),
            _ => self.lose(ticket.to, &ticket.resp, format_args!("lost: {why}")),
        }
        self.scheduler
            .finished(ticket.to, ticket.from_listen_port, outcome, now);
    }

    /// Answers the scheduler gave up.
    fn collect_lost(&mut self) {
        while let Some(lost) = self.scheduler.poll_lost() {
            self.lose(lost.to, &lost.resp, format_args!("lost: {}", lost.why));
        }
    }

    /// Counts and logs (throttled) an answer that will never reach `to`; `resp`, its
    /// bytes, names it in the trace.
    fn lose(&mut self, to: SocketAddrV4, resp: &[u8], what: fmt::Arguments<'_>) {
        self.lost += 1;
        self.lost_log
            .log(Instant::now(), format_args!("answer to {to} {what}"));
        if let Some(events) = self.events.as_mut() {
            let fields = FrameFields::decode(resp);
            let query = fields.as_ref().and_then(|f| f.answer_query(to));
            events.push(TraceEvent {
                link: Some(to.to_string()),
                query,
                frame: fields,
                reason: Some(format!("answer {what}")),
                ..TraceEvent::new(EventKind::Dropped)
            });
        }
    }

    /// An answer's RESP is all written: the trace shows which port it left from.
    fn trace_sent(&mut self, token: Token) {
        let (Some(delivery), Some(events)) = (self.deliveries.get(&token), self.events.as_mut())
        else {
            return;
        };
        let to = delivery.ticket.to;
        let frame = FrameFields::decode(&delivery.ticket.resp);
        let mut event = TraceEvent::new(EventKind::Sent);
        match delivery.stream.local_addr() {
            Ok(local) => event = event.on(sys::unmap(local), SocketAddr::V4(to)),
            Err(_) => event.link = Some(to.to_string()),
        }
        event.query = frame.as_ref().and_then(|f| f.answer_query(to));
        event.frame = frame;
        events.push(event);
    }
}

/// Errors that mean our listening port cannot be the source of this connection.
fn is_address_clash(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
    )
}

fn is_refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused
}

pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}
