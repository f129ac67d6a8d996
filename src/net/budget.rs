//! How a servent's file descriptors are shared: accepted links and clients on one
//! side, answer connections on the other, and a few held back for everything else.
//! Pure: the limit is read (and raised) by the caller.

use std::fmt;

/// Descriptors a servent needs besides its connections: stdio, the poll, the listener,
/// the signal pipes, a trace, the spare kept for accept storms, and slack.
pub const RESERVED: usize = 16;
/// Accepted connections that still make a useful servent: a handful of clients and
/// neighbours.
pub const MIN_CONNECTIONS: usize = 8;
/// Answer connections that still make a useful servent.
pub const MIN_ANSWERS: usize = 2;

/// The split of a descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u64,
    /// For accepted connections (links from neighbours, clients).
    pub connections: usize,
    /// For answer connections open at once.
    pub answers: usize,
    /// For the rest: the process's own descriptors and the links it dials.
    pub reserved: usize,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "descriptor limit {}: using {} for links and clients, {} for answer connections, \
             {} kept for the rest",
            self.limit, self.connections, self.answers, self.reserved
        )?;
        let used = (self.connections + self.answers + self.reserved) as u64;
        match self.limit.checked_sub(used) {
            Some(unused) if unused > 0 => write!(f, ", {unused} unused"),
            _ => Ok(()),
        }
    }
}

/// Why a limit is too small to run at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooFew {
    pub limit: u64,
    pub needed: usize,
}

impl fmt::Display for TooFew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "only {} file descriptors allowed (ulimit -n); a servent needs at least {}",
            self.limit, self.needed
        )
    }
}

impl std::error::Error for TooFew {}

/// Descriptors wanted for `connections` accepted connections, `answers` answer
/// connections and `neighbours` dialled links: what to ask the system for.
pub fn wanted(connections: usize, answers: usize, neighbours: usize) -> u64 {
    (connections + answers + RESERVED + neighbours) as u64
}

/// Splits `limit` between the connections and answers wanted: all of both when there
/// is room; otherwise a quarter of the room to answers and the rest to connections,
/// each at least its minimum. Too small for the minimums is an error.
pub fn split(
    limit: u64,
    connections: usize,
    answers: usize,
    neighbours: usize,
) -> Result<Budget, TooFew> {
    let reserved = RESERVED + neighbours;
    let room = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserved);
    if room >= connections.saturating_add(answers) {
        return Ok(Budget {
            limit,
            connections,
            answers,
            reserved,
        });
    }
    let needed = reserved + MIN_CONNECTIONS.min(connections) + MIN_ANSWERS.min(answers);
    if (limit as usize) < needed {
        return Err(TooFew { limit, needed });
    }
    let answers_share = (room / 4).max(MIN_ANSWERS).min(answers);
    Ok(Budget {
        limit,
        connections: (room - answers_share).min(connections),
        answers: answers_share,
        reserved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_room_for_everything_nothing_is_cut() {
        let b = split(1 << 20, 4096, 256, 3).unwrap();
        assert_eq!((b.connections, b.answers, b.reserved), (4096, 256, 19));
        assert_eq!(wanted(4096, 256, 3), 4096 + 256 + 19);
    }

    #[test]
    fn a_small_limit_is_shared_a_quarter_to_answers() {
        let b = split(64, 4096, 256, 0).unwrap();
        assert_eq!((b.connections, b.answers, b.reserved), (36, 12, 16));
        assert_eq!(
            b.to_string(),
            "descriptor limit 64: using 36 for links and clients, 12 for answer connections, \
             16 kept for the rest"
        );
        let b = split(20000, 4096, 256, 2).unwrap();
        assert_eq!(
            b.to_string(),
            "descriptor limit 20000: using 4096 for links and clients, 256 for answer \
             connections, 18 kept for the rest, 15630 unused"
        );
        // Neighbours' links come out of the room.
        let b = split(64, 4096, 256, 10).unwrap();
        assert_eq!((b.connections, b.answers), (29, 9));
    }

    #[test]
    fn the_minimums_hold_down_to_the_smallest_limit_that_runs() {
        let b = split(26, 4096, 256, 0).unwrap();
        assert_eq!((b.connections, b.answers), (8, 2));
        assert_eq!(
            split(25, 4096, 256, 0),
            Err(TooFew {
                limit: 25,
                needed: 26
            })
        );
        assert_eq!(
            split(25, 4096, 256, 0).unwrap_err().to_string(),
            "only 25 file descriptors allowed (ulimit -n); a servent needs at least 26"
        );
    }

    #[test]
    fn small_wishes_are_kept_as_they_are() {
        let b = split(30, 5, 1, 0).unwrap();
        assert_eq!((b.connections, b.answers), (5, 1));
        // Cut, but never above what was asked for.
        let b = split(24, 5, 100, 0).unwrap();
        assert_eq!((b.connections, b.answers), (5, 2));
    }
}
