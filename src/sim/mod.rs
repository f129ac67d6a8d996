//! `tp3-sim`: many copies of the real [`crate::servent::Servent`] state machine in an
//! in-memory network with a discrete-event clock, to see what flooding does on
//! networks far larger than a machine can run as processes.
//!
//! - [`rng`]: the seeded generator every random choice comes from.
//! - [`topology`]: the graphs the servents are linked as, and the specs naming them.
//! - [`plot`]: the SVG charts of a run's results.

pub mod plot;
pub mod rng;
pub mod topology;
