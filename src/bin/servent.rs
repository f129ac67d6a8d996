//! `servent <port> <keyvalues-file> [ip:port ...]`: one node of the network.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use log::info;

use tp3kv::net::{self, Driver, Options};
use tp3kv::servent::{Config, Servent};
use tp3kv::store::Store;

/// A servent of the TP3 key-value network: holds a key-value file, answers queries
/// from clients and floods them to its neighbours.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    port: u16,
    /// Key-value file: one `key value...` per line, `#` comments.
    keyvalues: PathBuf,
    /// Neighbour servents to connect to, as ip:port.
    #[arg(value_parser = net::resolve_v4)]
    neighbours: Vec<SocketAddrV4>,
    /// IPv4 address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    listen_ip: Ipv4Addr,
    /// Seconds a handled query is remembered, to drop its later copies.
    #[arg(long, default_value_t = 60)]
    seen_lifetime: u64,
    /// The most queries remembered at once (the oldest are forgotten first).
    #[arg(long, default_value_t = 1 << 20)]
    seen_capacity: usize,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("servent: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let store = Store::load(&args.keyvalues)
        .with_context(|| format!("cannot load {}", args.keyvalues.display()))?;
    let listener = net::listen(SocketAddrV4::new(args.listen_ip, args.port))?;
    let local = listener.local_addr()?;
    init_logging(local.port());
    println!("listening on {local}");
    std::io::stdout().flush()?;
    info!(
        "{} keys from {}; neighbours: {:?}",
        store.len(),
        args.keyvalues.display(),
        args.neighbours
    );
    let config = Config {
        seen_lifetime: Duration::from_secs(args.seen_lifetime),
        seen_capacity: args.seen_capacity,
    };
    let servent = Servent::new(store, local.port(), config);
    let mut driver = Driver::new(listener, servent, args.neighbours, Options::default())?;
    driver.run().context("event loop failed")?;
    Ok(())
}

/// `RUST_LOG` decides the level (default `info`); every line names this servent's port,
/// so the logs of a whole topology can share one terminal.
fn init_logging(port: u16) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(move |buf, record| {
            writeln!(
                buf,
                "{} servent:{port} {:<5} {}",
                buf.timestamp_millis(),
                record.level(),
                record.args()
            )
        })
        .init();
}
