//! `client <ip:port>` or `client <local-port> <ip:port>`: the REPL that asks a servent.

use std::io::{self, IsTerminal};
use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use tp3kv::client::{self, Client};
use tp3kv::net;

/// Client of the TP3 key-value network. Commands: `? key` looks a key up, `T` asks for
/// the reachable topology, `Q` (or end of input) quits. Answers print as
/// `VALUE IP:PORT`.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The servent, as ip:port; or, as in the assignment, `<local-port> <ip:port>` with
    /// the port to receive answers on first.
    #[arg(num_args = 1..=2, value_names = ["[LOCAL_PORT] IP:PORT"], required = true)]
    args: Vec<String>,
    /// Seconds to wait for answers after a command or after the last answer.
    #[arg(long, default_value_t = client::DEFAULT_TIMEOUT.as_secs_f64())]
    timeout: f64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("client: error: {e:#}");
        std::process::exit(1);
    }
}

fn parse_target(args: &[String]) -> Result<(u16, SocketAddrV4)> {
    let (port, servent) = match args {
        [servent] => (0, servent),
        [port, servent] => match port.parse::<u16>() {
            Ok(port) => (port, servent),
            Err(_) => bail!("bad local port {port:?}: expected a number from 0 to 65535"),
        },
        _ => bail!("expected <ip:port> or <local-port> <ip:port>"),
    };
    Ok((port, net::resolve_v4(servent).map_err(anyhow::Error::msg)?))
}

fn run(args: Args) -> Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!(
            "bad --timeout {}: expected a positive number of seconds",
            args.timeout
        );
    }
    let (reply_port, servent) = parse_target(&args.args)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut client = Client::connect(servent, reply_port, timeout, client::random_seq())?;
    let interactive = io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "connected to {servent}; answers come to port {}. `? key`, `T`, `Q`.",
            client.reply_port()
        );
    }
    client.run(
        io::stdin().lock(),
        &mut io::stdout(),
        &mut io::stderr(),
        interactive,
    )?;
    Ok(())
}
