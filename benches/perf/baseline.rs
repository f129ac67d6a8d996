//! The baselines: this bench binary, re-run with `TP3KV_PERF_ROLE` set, as a process that
//! does the least any implementation must do. Each prints `listening on IP:PORT` like a
//! servent, then serves until it is killed.
//!
//! - `answerer KV_FILE`: a single-threaded `mio` loop. It reads `ID(port)` and KEYREQ
//!   frames from clients and, for a key it holds, opens a connection from an ephemeral
//!   port to the client's reply address, writes the RESP, and closes as soon as it is
//!   written, without waiting for the client to close first (so a client that reads
//!   until end of stream has its answer at once, and the TIME_WAIT is ours). No seen
//!   set, no flooding, no limits, no logging: the loopback's limit for answers, as a
//!   client of this protocol sees them.
//! - `relay TARGET...`: for each connection it accepts, it dials every target and copies
//!   the bytes it reads to each of them, unparsed, with a blocking thread per connection.
//!   The loopback's limit for forwarded bytes.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener as StdListener, TcpStream as StdStream};
use std::process::ExitCode;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tp3kv::protocol::{decode, Frame};
use tp3kv::store::Store;

use crate::procs::CHILD_ROLE;

/// Runs the role named in the environment, if any: `Some(exit code)` in a baseline
/// process, `None` in the bench itself.
pub fn run_if_child() -> Option<ExitCode> {
    let role = std::env::var(CHILD_ROLE).ok()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match role.as_str() {
        "answerer" => answerer(&args),
        "relay" => relay(&args),
        other => Err(format!("unknown role {other:?}")),
    };
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf {role}: {e}");
            ExitCode::FAILURE
        }
    })
}

fn bind() -> Result<StdListener, String> {
    let listener = StdListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("bind: {e}"))?;
    println!("listening on {addr}");
    Ok(listener)
}

fn relay(targets: &[String]) -> Result<(), String> {
    let targets: Vec<SocketAddr> = targets
        .iter()
        .map(|t| t.parse().map_err(|e| format!("target {t:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let listener = bind()?;
    for upstream in listener.incoming() {
        let upstream = upstream.map_err(|e| format!("accept: {e}"))?;
        let targets = targets.clone();
        std::thread::spawn(move || {
            let _ = copy_to_all(upstream, &targets);
        });
    }
    Ok(())
}

fn copy_to_all(mut upstream: StdStream, targets: &[SocketAddr]) -> io::Result<()> {
    upstream.set_nodelay(true)?;
    let mut outs = Vec::new();
    for target in targets {
        let out = StdStream::connect(target)?;
        out.set_nodelay(true)?;
        outs.push(out);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = upstream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        for out in &mut outs {
            out.write_all(&buf[..n])?;
        }
    }
}

const LISTENER: Token = Token(usize::MAX);

enum Conn {
    /// A client: its input, and its reply port once its ID came.
    Client { inbuf: Vec<u8>, reply_port: u16 },
    /// An answer: the RESP still to write (closed once it is written).
    Answer { outbuf: Vec<u8> },
}

fn answerer(args: &[String]) -> Result<(), String> {
    let [kv] = args else {
        return Err("usage: answerer KV_FILE".into());
    };
    let store = Store::load(std::path::Path::new(kv)).map_err(|e| format!("{kv}: {e}"))?;
    let std_listener = bind()?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| format!("register: {e}"))?;
    let mut conns: HashMap<Token, (TcpStream, Conn)> = HashMap::new();
    let mut next = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let token = event.token();
            if token == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let token = Token(next);
                    next += 1;
                    let _ = stream.set_nodelay(true);
                    if poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        let client = Conn::Client {
                            inbuf: Vec::new(),
                            reply_port: 0,
                        };
                        conns.insert(token, (stream, client));
                    }
                }
                continue;
            }
            let mut answers = Vec::new();
            let keep = match conns.get_mut(&token) {
                None => continue,
                Some((stream, Conn::Client { inbuf, reply_port })) => {
                    let open = read_all(stream, inbuf, &mut buf);
                    let mut used = 0;
                    while let Ok(Some((frame, n))) = decode(&inbuf[used..]) {
                        used += n;
                        match frame {
                            Frame::Id { port } => *reply_port = port,
                            Frame::KeyReq { seq, key } => {
                                if let (Some(value), Ok(SocketAddr::V4(peer))) =
                                    (store.get_text(key.as_bytes()), stream.peer_addr())
                                {
                                    let to = SocketAddrV4::new(*peer.ip(), *reply_port);
                                    answers.push((to, Frame::Resp { seq, value }.to_bytes()));
                                }
                            }
                            _ => {}
                        }
                    }
                    inbuf.drain(..used);
                    open
                }
                Some((stream, Conn::Answer { outbuf })) => {
                    // Closed (dropped) as soon as the RESP is written, or the connection
                    // failed: the client's close is not waited for.
                    write_some(stream, outbuf)
                }
            };
            if !keep {
                conns.remove(&token);
            }
            for (to, resp) in answers {
                if let Ok(mut stream) = TcpStream::connect(SocketAddr::V4(to)) {
                    let token = Token(next);
                    next += 1;
                    if poll
                        .registry()
                        .register(&mut stream, token, Interest::WRITABLE)
                        .is_ok()
                    {
                        conns.insert(token, (stream, Conn::Answer { outbuf: resp }));
                    }
                }
            }
        }
    }
}

/// Writes what the socket takes of `outbuf`; true while some is left to write (false
/// once it is all written, or the connection failed).
fn write_some(stream: &mut TcpStream, outbuf: &mut Vec<u8>) -> bool {
    while !outbuf.is_empty() {
        match stream.write(outbuf) {
            Ok(0) => return false,
            Ok(n) => {
                outbuf.drain(..n);
            }
            // Not connected yet, or the socket is full: on the next writable event.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    false
}

/// Reads what is there into `inbuf`; false once the peer has closed or failed.
fn read_all(stream: &mut TcpStream, inbuf: &mut Vec<u8>, buf: &mut [u8]) -> bool {
    loop {
        match stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => inbuf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
