//! One answer connection: connect to the client's reply address, write the RESP, give
//! the client a short grace to close first, then close.
//!
//! Why the grace, and why short. Whoever closes a TCP connection first keeps its
//! TIME_WAIT. Clients that close as soon as they have read the RESP (every reference
//! client, and ours) take it on their side when we wait for them. Clients that read
//! until EOF wait for *us*: every millisecond of grace is a millisecond their answer is
//! late. So the grace is a few round trips (measured on the connect: the time from
//! `connect` to the first write going through), plus [`GRACE_FLOOR`] for the client
//! to be scheduled, and never more than [`GRACE_CAP`]: about 3 ms on loopback; and
//! only once per client, since an address that let the grace run out has its next
//! answers closed at once (see [`super::habits`]). When we
//! do close first, our next answer to the same client can still leave from our
//! listening port: Linux lets a connect from an explicitly bound port take over a
//! TIME_WAIT of the same four addresses (with TCP timestamps, on by default).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::scheduler::Ticket;

/// Time for a client to be scheduled, read and close, beyond the round trips.
pub const GRACE_FLOOR: Duration = Duration::from_millis(3);
/// The longest grace, however slow the connect was: far below a client's 4-second
/// window.
pub const GRACE_CAP: Duration = Duration::from_millis(500);
/// Round trips of grace: the RESP's acknowledgement, the client's FIN, and slack.
const GRACE_ROUND_TRIPS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Sending,
    /// The RESP is written; waiting for the client to close its end.
    Grace,
}

/// What an event, or a deadline, did to the connection.
#[derive(Debug)]
pub enum Progress {
    /// Nothing more for now.
    Pending,
    /// The RESP is all written; the grace runs until the new deadline.
    Sent,
    /// The client closed its end (or reset it) after the RESP: done.
    ClientClosed,
    /// Connecting or writing failed.
    Failed(io::Error),
}

#[derive(Debug)]
pub struct Delivery {
    pub ticket: Ticket,
    pub stream: TcpStream,
    written: usize,
    phase: Phase,
    connect_started: Instant,
    /// From `connect` to the first write going through, once connected.
    round_trip: Duration,
    /// When the current phase's wait ends: the connect-and-deliver timeout, then the
    /// grace.
    pub deadline: Instant,
}

impl Delivery {
    /// A delivery whose connect was just begun.
    pub fn new(ticket: Ticket, stream: TcpStream, now: Instant, timeout: Duration) -> Delivery {
        Delivery {
            ticket,
            stream,
            written: 0,
            phase: Phase::Connecting,
            connect_started: now,
            round_trip: Duration::ZERO,
            deadline: now + timeout,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The socket is ready (`readable`: the event said so): writes what is left of the
    /// RESP, or reads towards the client's close.
    pub fn on_ready(&mut self, readable: bool, now: Instant) -> Progress {
        if self.phase != Phase::Grace {
            // No separate check that the connect is done (two syscalls): the write
            // itself says `WouldBlock` until it is, or fails with its error.
            loop {
                match self.stream.write(&self.ticket.resp[self.written..]) {
                    Ok(n) => {
                        if self.phase == Phase::Connecting {
                            self.phase = Phase::Sending;
                            self.round_trip = now.saturating_duration_since(self.connect_started);
                        }
                        self.written += n;
                        if self.written == self.ticket.resp.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
                    Err(e) => return Progress::Failed(e),
                }
            }
            // The grace counts from the moment the RESP is all written (a RESP written in
            // pieces keeps the connect-and-deliver timeout until then). An event that
            // said readable will not come again (edge-triggered): the client may have
            // closed already.
            self.phase = Phase::Grace;
            self.deadline = now + grace(self.round_trip);
            if readable {
                return match self.read_to_close() {
                    Progress::Pending => Progress::Sent,
                    done => done,
                };
            }
            return Progress::Sent;
        }
        self.read_to_close()
    }

    /// Reads (and ignores) whatever the client sends, until its close.
    fn read_to_close(&mut self) -> Progress {
        let mut scratch = [0u8; 512];
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Progress::ClientClosed,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
                // A reset after the RESP went out: the client is gone, and so is ours.
                Err(_) => return Progress::ClientClosed,
            }
        }
    }
}

/// The grace after a connect that took `round_trip`.
pub fn grace(round_trip: Duration) -> Duration {
    (GRACE_FLOOR + round_trip * GRACE_ROUND_TRIPS).min(GRACE_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_is_a_few_round_trips_and_bounded() {
        assert_eq!(grace(Duration::ZERO), GRACE_FLOOR);
        assert_eq!(
            grace(Duration::from_micros(50)),
            GRACE_FLOOR + Duration::from_micros(200)
        );
        assert_eq!(
            grace(Duration::from_millis(40)),
            GRACE_FLOOR + Duration::from_millis(160)
        );
        assert_eq!(grace(Duration::from_secs(2)), GRACE_CAP);
    }
}
