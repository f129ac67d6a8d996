//! Outbound neighbours: each one named on the command line is dialled, confirmed,
//! turned into a link, and re-dialled with back-off whenever it goes away.
//!
//! At the default log level an outage is two lines: a warning at the first failed dial
//! (`neighbour 127.0.0.1:5999 unreachable (connection refused); retrying until it comes
//! up`), and the link that ends it (`link 3: connected to neighbour 127.0.0.1:5999, up
//! after 12 s unreachable`). Each re-dial in between is a debug line.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Token;

use super::{sys, Driver, Kind, Timer};
use crate::os_error::plain;
use crate::servent::Direction;

/// How long a link to a neighbour must last for the next re-dial to start again from
/// the shortest delay.
const LASTING_LINK: Duration = Duration::from_secs(1);

impl Driver {
    pub(super) fn neighbour_lost(&mut self, index: usize) {
        let neighbour = &mut self.neighbours[index];
        neighbour.conn = None;
        if let Some(since) = neighbour.linked_at.take() {
            neighbour.flapping = since.elapsed() < LASTING_LINK;
            if !neighbour.flapping {
                neighbour.backoff = self.options.redial_min;
            }
        }
        let delay = neighbour.backoff;
        neighbour.backoff = (delay * 2).min(self.options.redial_max);
        debug!("neighbour {}: re-dialling in {:?}", neighbour.addr, delay);
        self.timers
            .push(Reverse((Instant::now() + delay, Timer::Redial(index))));
    }

    pub(super) fn dial(&mut self, index: usize) {
        let addr = self.neighbours[index].addr;
        let kind = Kind::Dialling { neighbour: index };
        let token = match sys::connect_from(addr, None)
            .and_then(|stream| self.register(stream, kind, Vec::new()))
        {
            Ok(token) => token,
            Err(e) => return self.dial_failed(index, &plain(&e)),
        };
        debug!("dialling neighbour {addr}");
        self.neighbours[index].conn = Some(token);
        self.set_deadline(token, Instant::now() + self.options.answer_timeout);
    }

    pub(super) fn finish_dial(&mut self, token: Token, index: usize) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        match sys::connect_finished(&conn.stream) {
            Ok(false) => {}
            Ok(true) => {
                let mut conn = self.conns.remove(&token).unwrap();
                let _ = self.poll.registry().deregister(&mut conn.stream);
                let addr = self.neighbours[index].addr;
                self.neighbours[index].linked_at = Some(Instant::now());
                // The link gets a fresh token, so no event of the dial reaches it.
                let link = self.add_link(
                    conn.stream,
                    SocketAddr::V4(addr),
                    Direction::Outbound,
                    Some(index),
                );
                match link {
                    Some(link) => {
                        let neighbour = &mut self.neighbours[index];
                        neighbour.conn = Some(link);
                        match neighbour.unreachable_since.take() {
                            Some(since) => info!(
                                "link {}: connected to neighbour {addr}, up after {} s unreachable",
                                link.0,
                                since.elapsed().as_secs()
                            ),
                            // Its last link was closed at once (each close is a
                            // line of its own, throttled): one line per re-dial is enough.
                            None if neighbour.flapping => {
                                debug!("link {}: connected to neighbour {addr} again", link.0)
                            }
                            None => info!("link {}: connected to neighbour {addr}", link.0),
                        }
                    }
                    None => self.neighbour_lost(index),
                }
            }
            Err(e) => self.close(token, &plain(&e)),
        }
    }

    /// A dial failed: every failure is a debug line, and the first of an outage a
    /// warning too, so a mistyped or stopped neighbour shows at the default level
    /// without a line per re-dial.
    pub(super) fn dial_failed(&mut self, index: usize, reason: &str) {
        let neighbour = &mut self.neighbours[index];
        let addr = neighbour.addr;
        debug!("dial {addr} failed: {reason}");
        if neighbour.unreachable_since.is_none() {
            neighbour.unreachable_since = Some(Instant::now());
            warn!("neighbour {addr} unreachable ({reason}); retrying until it comes up");
        }
        self.neighbour_lost(index);
    }
}
