//! Log lines that a remote peer can make repeat at will (connections closed, protocol
//! errors, answers lost, a TTL above 3, ...) go through a [`Throttle`], one per kind,
//! so no peer can fill the log, or the disk, or keep the servent busy writing it. The
//! counters keep the totals.

use std::fmt;
use std::time::Instant;

use log::Level;

/// Lines of one kind let through in a burst...
const BURST: f64 = 20.0;
/// ...and then this many a second.
const PER_SECOND: f64 = 5.0;

/// A token bucket for one kind of log line: bursts of [`BURST`], then [`PER_SECOND`].
/// Lines held back are counted, and the count is told with the next line let through,
/// or by [`Throttle::tick`] once the burst is over.
#[derive(Debug)]
pub struct Throttle {
    level: Level,
    /// What the lines are about, for the count of those held back.
    kind: &'static str,
    tokens: f64,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub fn new(level: Level, kind: &'static str) -> Throttle {
        Throttle {
            level,
            kind,
            tokens: BURST,
            last: None,
            held_back: 0,
        }
    }

    /// Logs `message` unless too many of its kind came lately; true if it was logged.
    pub fn log(&mut self, now: Instant, message: impl fmt::Display) -> bool {
        if !log::log_enabled!(self.level) {
            return false;
        }
        if !self.let_through(now) {
            self.held_back += 1;
            return false;
        }
        match std::mem::take(&mut self.held_back) {
            0 => log::log!(self.level, "{message}"),
            n => log::log!(self.level, "{message} (and {n} more like it, not logged)"),
        }
        true
    }

    /// Whether lines are held back, to be told by [`Throttle::tick`].
    pub fn holds_back(&self) -> bool {
        self.held_back > 0
    }

    /// Tells how many lines were held back, once a line may go again.
    pub fn tick(&mut self, now: Instant) {
        if self.held_back > 0 && self.let_through(now) {
            let n = std::mem::take(&mut self.held_back);
            log::log!(
                self.level,
                "{n} more lines of {} not logged (too many too fast)",
                self.kind
            );
        }
    }

    /// Whether a line may go now (taking its token).
    fn let_through(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * PER_SECOND;
            self.tokens = (self.tokens + refill).min(BURST);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_a_steady_trickle() {
        let start = Instant::now();
        let mut t = Throttle::new(Level::Info, "tests");
        let passed = (0..100).filter(|_| t.let_through(start)).count();
        assert_eq!(passed, BURST as usize);
        // A second later, five more.
        let later = start + Duration::from_secs(1);
        let passed = (0..100).filter(|_| t.let_through(later)).count();
        assert_eq!(passed, PER_SECOND as usize);
        // A quiet minute refills the burst, no more.
        let quiet = later + Duration::from_secs(60);
        let passed = (0..100).filter(|_| t.let_through(quiet)).count();
        assert_eq!(passed, BURST as usize);
    }
}
