//! A peer-to-peer key-value lookup network by reliable flooding.
//!
//! `servent` nodes each hold a key-value file and find keys for each other by flooding
//! queries over permanent TCP links; a `client` asks one servent, and every servent that
//! holds the key answers the client directly on a new connection. The wire format is
//! `docs/PROTOCOL.md` (UFMG DCC023 TP3, 2019), byte for byte.
//!
//! - [`protocol`]: frames, encoding, the incremental decoder. Pure.
//! - [`store`]: the key-value file. Pure.
//! - [`servent`]: the flooding state machine and its seen cache. Pure: links and frames
//!   in, [`servent::Action`]s out, time as a parameter.
//! - [`net`]: the `mio` loop that drives a servent over real sockets.
//! - [`os_error`]: OS errors in the plain words of one-line messages.
//! - [`cli`]: the binaries' shared exit statuses and one-line errors.
//! - [`check`]: `tp3-check`, the conformance checker for servents and clients.
//! - [`client`]: REPL commands and the answer window (pure), and the client's I/O.
//! - [`trace`]: `servent --trace` events (JSON Lines), and `flood-view`'s drawing of
//!   each query's flood from them. Pure but for the file writer.
//! - [`sim`]: `tp3-sim`, the real servent state machine at up to a million servents.
//! - [`hashing`]: cheap hashing for the maps on the forwarding path.
//! - [`logging`]: the servent's log output, which never blocks the loop.
//! - `throttle`: rate limits for the log lines a peer can make repeat.

pub mod check;
pub mod cli;
pub mod client;
pub mod hashing;
pub mod logging;
pub mod net;
pub mod os_error;
pub mod protocol;
pub mod servent;
pub mod sim;
pub mod store;
mod throttle;
pub mod trace;
