//! What `std` and `mio` cannot express: a listener whose port answer connections may
//! share, non-blocking outgoing connects from a chosen port, the descriptor limit, and
//! signal dispositions.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};

/// Why the listener could not be opened.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.source.kind() == io::ErrorKind::AddrInUse {
            write!(
                f,
                "cannot listen on {}: the port is already in use",
                self.addr
            )
        } else {
            write!(f, "cannot listen on {}: {}", self.addr, self.source)
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Opens the servent's listener.
///
/// The bind happens *without* `SO_REUSEPORT`, so a port that anyone already holds is
/// refused here, at start-up, with a clear error. Only then is `SO_REUSEPORT` switched
/// on, which lets answer connections bind their source to this same port (so a client
/// sees which servent answered) while a second servent on the port still fails.
///
/// An IPv6 address (`::`) makes a dual-stack listener: IPv4 peers arrive as mapped
/// addresses (see [`unmap`]), and IPv6 clients can at least be told, in the log, that
/// the wire format cannot carry their address.
pub fn listen(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let fail = |source| BindError { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(fail)?;
    }
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Starts a non-blocking connect to `to`. With `source_port`, the connection leaves
/// from that port of ours (shared with our listener through `SO_REUSEPORT`).
///
/// The connect is only begun: the caller waits for writability, then confirms it (or
/// just writes: a write before the connect is done says `WouldBlock`, and one after it
/// failed returns the connect's error).
pub fn connect_from(to: SocketAddrV4, source_port: Option<u16>) -> io::Result<TcpStream> {
    // Non-blocking from the start: two fcntl calls fewer on every answer. No
    // TCP_NODELAY here: an answer is one write, which Nagle never holds back, and links
    // get it when they are set up.
    let socket = Socket::new(
        Domain::IPV4,
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    if let Some(port) = source_port {
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    }
    match socket.connect(&SocketAddr::V4(to).into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Whether a non-blocking connect has finished: `Ok(true)` connected, `Ok(false)` still
/// in progress (a spurious wake-up), `Err` failed.
pub fn connect_finished(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Resolves `host:port` to an IPv4 address with a non-zero port (the wire format has
/// no room for IPv6). The error is one line naming the text and what is wrong with it,
/// in plain words rather than the resolver's.
pub fn resolve_v4(text: &str) -> Result<SocketAddrV4, String> {
    let bad = |why: &str| format!("bad address {text:?}: {why}");
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("expected ip:port"));
    };
    if host.contains(':') || host.starts_with('[') {
        let v6 = host.trim_start_matches('[').trim_end_matches(']');
        return Err(bad(if v6.parse::<Ipv6Addr>().is_ok() {
            "an IPv6 address; the protocol carries IPv4 addresses only"
        } else {
            "expected ip:port, with a single colon"
        }));
    }
    if host.is_empty() {
        return Err(bad("expected ip:port, with the ip before the colon"));
    }
    let port = crate::cli::parse_port(port, "port", 1).map_err(|why| bad(&why))?;
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(SocketAddrV4::new(ip, port));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad(&format!(
            "{host} is not an IPv4 address (four numbers from 0 to 255, such as 127.0.0.1)"
        )));
    }
    let unresolved = || bad("not an IPv4 address or a host name this machine can resolve");
    (host, port)
        .to_socket_addrs()
        .map_err(|_| unresolved())?
        .find_map(|a| match a {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| bad(&format!("{host} has no IPv4 address")))
}

/// Raises the soft limit on open descriptors towards `wanted` (never above the hard
/// limit). Returns the soft limit now in force.
pub fn raise_fd_limit(wanted: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = wanted.min(limit.rlim_max);
    if target > limit.rlim_cur {
        limit.rlim_cur = target;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Whether `signal` is set to be ignored (as a shell does for background jobs' SIGINT).
pub fn is_ignored(signal: i32) -> io::Result<bool> {
    // SAFETY: with a null new action, sigaction only writes the current one into `old`.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old.sa_sigaction == libc::SIG_IGN)
}

/// An IPv4 peer of a dual-stack socket shows as `::ffff:a.b.c.d`: give it back as IPv4.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_v4;

    #[test]
    fn addresses_are_resolved_or_say_what_is_wrong() {
        assert_eq!(
            resolve_v4("127.0.0.1:5001").unwrap().to_string(),
            "127.0.0.1:5001"
        );
        assert_eq!(
            resolve_v4("localhost:5001").unwrap().to_string(),
            "127.0.0.1:5001"
        );
        let error = |text: &str| resolve_v4(text).unwrap_err();
        assert_eq!(error("5001"), "bad address \"5001\": expected ip:port");
        assert_eq!(
            error("127.0.0.1:99999"),
            "bad address \"127.0.0.1:99999\": bad port 99999: expected a number from 1 to 65535"
        );
        assert_eq!(
            error("127.0.0.1:0"),
            "bad address \"127.0.0.1:0\": bad port 0: expected a number from 1 to 65535"
        );
        assert_eq!(
            error("127.0.0.1:x"),
            "bad address \"127.0.0.1:x\": bad port \"x\": expected a number from 1 to 65535"
        );
        assert_eq!(
            error("256.0.0.1:5012"),
            "bad address \"256.0.0.1:5012\": 256.0.0.1 is not an IPv4 address (four numbers \
             from 0 to 255, such as 127.0.0.1)"
        );
        assert_eq!(
            error("127.0.0.1:5011:1"),
            "bad address \"127.0.0.1:5011:1\": expected ip:port, with a single colon"
        );
        assert!(error("[::1]:5000").contains("IPv6"));
        assert_eq!(
            error("no-such-host.invalid:5000"),
            "bad address \"no-such-host.invalid:5000\": not an IPv4 address or a host name \
             this machine can resolve"
        );
        assert!(error(":5000").contains("expected ip:port"));
    }
}
