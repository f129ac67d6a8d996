//! `tp3-sim`: many copies of the real [`crate::servent::Servent`] state machine in an
//! in-memory network with a discrete-event clock, to see what flooding does on
//! networks far larger than a machine can run as processes.
//!
//! - [`rng`]: the seeded generator every random choice comes from.
//! - [`topology`]: the graphs the servents are linked as, and the specs naming them.
//! - [`latency`]: how long a frame takes on a link.
//! - [`network`]: the servents, their links and the event clock; one query at a time.
//! - [`stats`]: a query's outcome, and mean and percentiles over many.
//! - [`run`]: a whole run on a graph: keys placed, queries from random origins.
//! - [`report`]: the table, CSV and chart data of `tp3-sim`'s runs.
//! - [`plot`]: the SVG charts of a run's results.

pub mod latency;
pub mod network;
pub mod plot;
pub mod report;
pub mod rng;
pub mod run;
pub mod stats;
pub mod topology;
