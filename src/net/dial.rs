//! Outbound neighbours: each one named on the command line is dialled, confirmed,
//! turned into a link, and re-dialled with back-off whenever it goes away.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::Token;

use super::{sys, Driver, Kind, Timer};
use crate::servent::Direction;

impl Driver {
    pub(super) fn neighbour_lost(&mut self, index: usize) {
        let neighbour = &mut self.neighbours[index];
        neighbour.conn = None;
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
            Err(e) => {
                debug!("dial {addr} failed: {e}");
                return self.neighbour_lost(index);
            }
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
                self.neighbours[index].backoff = self.options.redial_min;
                // The link gets a fresh token, so no event of the dial reaches it.
                let link = self.add_link(
                    conn.stream,
                    SocketAddr::V4(addr),
                    Direction::Outbound,
                    Some(index),
                );
                match link {
                    Some(link) => self.neighbours[index].conn = Some(link),
                    None => self.neighbour_lost(index),
                }
            }
            Err(e) => self.close(token, &e.to_string()),
        }
    }
}
