//! The answer window: how long the client keeps listening after a command. Pure.
//!
//! Several servents may answer one query, so the wait does not end at the first
//! answer: it ends `timeout` after the command or after the latest answer, whichever
//! is later (each answer restarts the clock).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct AnswerWindow {
    seq: u32,
    timeout: Duration,
    deadline: Instant,
    answers: usize,
}

/// What to do with a message that arrived during the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An answer to this query: show it.
    Answer,
    /// Some other query's sequence number: discard it with an error.
    WrongSeq,
}

impl AnswerWindow {
    pub fn open(seq: u32, timeout: Duration, now: Instant) -> AnswerWindow {
        AnswerWindow {
            seq,
            timeout,
            deadline: now + timeout,
            answers: 0,
        }
    }

    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// Judges a RESP with sequence number `seq` that arrived at `now`.
    pub fn on_response(&mut self, seq: u32, now: Instant) -> Verdict {
        if seq != self.seq {
            return Verdict::WrongSeq;
        }
        self.answers += 1;
        self.deadline = self.deadline.max(now + self.timeout);
        Verdict::Answer
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn is_over(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    pub fn answers(&self) -> usize {
        self.answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOUR: Duration = Duration::from_secs(4);

    #[test]
    fn each_answer_restarts_the_wait() {
        let t0 = Instant::now();
        let mut w = AnswerWindow::open(7, FOUR, t0);
        assert!(!w.is_over(t0 + Duration::from_millis(3999)));
        assert_eq!(
            w.on_response(7, t0 + Duration::from_secs(3)),
            Verdict::Answer
        );
        assert!(!w.is_over(t0 + Duration::from_secs(6)));
        assert!(w.is_over(t0 + Duration::from_secs(7)));
        assert_eq!(w.answers(), 1);
    }

    #[test]
    fn wrong_seq_neither_counts_nor_extends() {
        let t0 = Instant::now();
        let mut w = AnswerWindow::open(7, FOUR, t0);
        assert_eq!(
            w.on_response(6, t0 + Duration::from_secs(3)),
            Verdict::WrongSeq
        );
        assert!(w.is_over(t0 + FOUR));
        assert_eq!(w.answers(), 0);
    }
}
