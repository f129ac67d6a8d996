//! Warnings that a peer can make repeat at will are logged at most once a second.

use std::fmt;
use std::time::{Duration, Instant};

use log::warn;

/// Logs a repeating warning at most once a second, counting what it held back.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub fn warn(&mut self, now: Instant, message: impl fmt::Display) {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.held_back += 1;
            return;
        }
        if self.held_back > 0 {
            warn!("{message} (and {} more like it)", self.held_back);
        } else {
            warn!("{message}");
        }
        self.last = Some(now);
        self.held_back = 0;
    }
}
