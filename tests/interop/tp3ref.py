#!/usr/bin/env python3
"""tp3ref: an independent reference implementation of the TP3 key-value protocol.

Written from the protocol's specification alone (as described in docs/PROTOCOL.md),
without looking at the Rust sources, standard library only, for the interoperability
tests: ours with theirs, both ways.

  tp3ref.py servent [--bytewise] [--defect NAME]... <port> <keyvalues-file> [ip:port ...]
  tp3ref.py client [--timeout SECS] [--bytewise] [--defect NAME]... [<local-port>] <servent-ip:port>
  tp3ref.py send-raw <ip:port> <hex>...
  tp3ref.py selftest <wire-vectors.json>
  tp3ref.py --list-defects

--bytewise writes every frame one byte at a time (TCP_NODELAY, ~1 ms apart).
--defect NAME switches on one deliberate mistake (see --list-defects), so that a
conformance checker can be tested against broken variants. Without it the reference
follows the protocol.
"""
import json
import re
import selectors
import socket
import struct
import sys
import time

MAXLEN = 400
CODES = {"ID": 4, "KEYREQ": 5, "TOPOREQ": 6, "KEYFLOOD": 7, "TOPOFLOOD": 8, "RESP": 9}
NAMES = {v: k for k, v in CODES.items()}
HDR = {"ID": 4, "KEYREQ": 8, "TOPOREQ": 6, "KEYFLOOD": 16, "TOPOFLOOD": 16, "RESP": 8}
TEXT = {"KEYREQ": "key", "KEYFLOOD": "key", "TOPOFLOOD": "info", "RESP": "value"}
FIRST_TTL = 3

# Deliberate mistakes, each one students really make: name -> (modes, description).
KNOWN_DEFECTS = {
    "little-endian-lengths": ("servent client",
                              "text length fields written and read little-endian"),
    "signed-ports": ("servent client",
                     "ports packed/unpacked as signed 16-bit ('h'): a port >= 32768 reads "
                     "as negative (servent cannot answer it; client dies sending its ID)"),
    "one-read-per-message": ("servent client",
                             "one recv() taken as one whole message: a split frame is "
                             "dropped, frames after the first in one segment are lost"),
    "exits-on-disconnect": ("servent",
                            "the servent process exits when a neighbour or client disconnects"),
    "floods-back": ("servent",
                    "forwards a flood to the neighbour it came from too"),
    "forgets-own-request": ("servent",
                            "a client's request is not recorded as seen, so its echo from "
                            "a neighbour is answered and forwarded again"),
    "decrement-first": ("servent",
                        "TTL decremented before it is tested (the 2019 rule): forwards "
                        "only if ttl-1 > 0"),
    "no-flood-when-found": ("servent",
                            "does not flood a key query when it holds the key itself"),
    "topology-no-space": ("servent",
                          "appends its ip:port to topology info without the separating space"),
    "topology-trailing-space": ("servent",
                                "every topology string it writes ends with a trailing space"),
    "listen-address-in-topology": ("servent",
                                   "names itself in topology strings by its listening "
                                   "socket's address, 0.0.0.0, not the one it was reached at"),
    "localhost-in-floods": ("servent",
                            "writes 127.0.0.1 as the client's IP in KEYFLOOD/TOPOFLOOD "
                            "instead of the client connection's source address"),
    "late-listener": ("client",
                      "opens its reply listener only ~200 ms after sending its first request"),
    "ignore-wrong-seq": ("client",
                         "silently drops a wrong-seq or non-RESP message (no error naming "
                         "its source)"),
    "answer-without-port": ("client",
                            "prints an answer as 'VALUE IP' without the source port"),
    "seq-from-1": ("client",
                   "first seq is 1, then +1 per command (ours starts at 0)"),
}
DEFECTS = set()  # the ones switched on for this run


def defect(name):
    assert name in KNOWN_DEFECTS, name
    return name in DEFECTS


def len_fmt():
    """Format of a text length field: big-endian, unless the defect says otherwise."""
    return "<H" if defect("little-endian-lengths") else ">H"


def port_fmt():
    """Format of a port field: unsigned, unless the defect makes it signed."""
    return ">h" if defect("signed-ports") else ">H"


class ProtocolError(Exception):
    """The stream cannot be decoded any further: close the connection."""


# ----------------------------------------------------------------------------- codec
def encode(f):
    """Frame dict (text fields as bytes) -> wire bytes."""
    name = f["type"]
    code = CODES[name]
    if name == "ID":
        return struct.pack("!H", code) + struct.pack(port_fmt(), f["port"])
    if name == "TOPOREQ":
        return struct.pack("!HI", code, f["seq"])
    text = f[TEXT[name]]
    if len(text) > MAXLEN:
        raise ValueError(f"{TEXT[name]} is {len(text)} bytes, over {MAXLEN}")
    length = struct.pack(len_fmt(), len(text))
    if name in ("KEYREQ", "RESP"):
        return struct.pack("!HI", code, f["seq"]) + length + text
    return (struct.pack("!HHI", code, f["ttl"], f["seq"]) + socket.inet_aton(f["ip"])
            + struct.pack(port_fmt(), f["port"]) + length + text)


def decode(buf):
    """First frame of buf as (frame, size); None if incomplete; ProtocolError if bad."""
    if len(buf) < 2:
        return None
    (code,) = struct.unpack_from("!H", buf)
    name = NAMES.get(code)
    if name is None:
        raise ProtocolError(f"unknown type {code}")
    hdr = HDR[name]
    if len(buf) < hdr:
        return None
    if name == "ID":
        return {"type": name, "port": struct.unpack_from(port_fmt(), buf, 2)[0]}, hdr
    if name == "TOPOREQ":
        return {"type": name, "seq": struct.unpack_from("!I", buf, 2)[0]}, hdr
    if name in ("KEYREQ", "RESP"):
        (seq,) = struct.unpack_from("!I", buf, 2)
        (n,) = struct.unpack_from(len_fmt(), buf, 6)
        f = {"type": name, "seq": seq}
    else:
        ttl, seq, ip = struct.unpack_from("!HI4s", buf, 2)
        (port,) = struct.unpack_from(port_fmt(), buf, 12)
        (n,) = struct.unpack_from(len_fmt(), buf, 14)
        f = {"type": name, "ttl": ttl, "seq": seq, "ip": socket.inet_ntoa(ip), "port": port}
    if n > MAXLEN:
        raise ProtocolError(f"{name} length {n} over {MAXLEN}")
    if len(buf) < hdr + n:
        return None
    f[TEXT[name]] = bytes(buf[hdr:hdr + n])
    return f, hdr + n


def text(b):
    return b.decode("utf-8", "replace")


def describe(f):
    parts = [f["type"]] + [f"{k}={text(v)!r}" if isinstance(v, bytes) else f"{k}={v}"
                           for k, v in f.items() if k != "type"]
    return " ".join(parts)


def write_frame(sock, data, bytewise):
    if not bytewise:
        sock.sendall(data)
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        sock.sendall(data[i:i + 1])
        time.sleep(0.001)


def parse_addr(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def fmt(addr):
    return f"{addr[0]}:{addr[1]}"


def err(msg):
    print(msg, file=sys.stderr, flush=True)


def listen(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(64)
    return sock


# --------------------------------------------------------------------------- servent
def load_store(path, log):
    store = {}
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if not line.strip() or line.lstrip().startswith(b"#"):  # §12: indented comments too
                continue
            parts = line.split(None, 1)
            value = parts[1].strip() if len(parts) > 1 else b""
            if len(value) > MAXLEN:
                log(f"value of {text(parts[0])!r} truncated to {MAXLEN} bytes")
                value = value[:MAXLEN]
            store[parts[0]] = value
    return store


class Conn:
    def __init__(self, sock, peer, kind=None):
        self.sock, self.peer, self.kind = sock, peer, kind  # kind: None/"servent"/"client"
        self.client_port = 0
        self.buf = bytearray()


class Servent:
    def __init__(self, port, store_path, neighbours, bytewise):
        self.bytewise = bytewise
        self.sel = selectors.DefaultSelector()
        self.lsock = listen(port)
        self.port = self.lsock.getsockname()[1]
        print(f"listening on 0.0.0.0:{self.port}", flush=True)
        self.sel.register(self.lsock, selectors.EVENT_READ)
        self.store = load_store(store_path, self.log)
        self.log(f"loaded {len(self.store)} keys from {store_path}")
        self.conns = {}  # socket -> Conn
        self.seen = set()  # (client ip, client port, seq)
        self.pending = [[parse_addr(n), 0.0, False] for n in neighbours]  # addr, next try, warned
        # Dial the neighbours now, not on the first loop turn, so the links are up as
        # soon as possible after the port is seen listening.
        for p in list(self.pending):
            self.try_connect(p)

    def log(self, msg):
        err(f"[ref-servent {getattr(self, 'port', '?')}] {msg}")

    def run(self):
        while True:
            now = time.monotonic()
            for p in [p for p in self.pending if p[1] <= now]:
                self.try_connect(p)
            timeout = None
            if self.pending:
                timeout = max(0.0, min(p[1] for p in self.pending) - time.monotonic())
            for key, _ in self.sel.select(timeout):
                if key.fileobj is self.lsock:
                    try:
                        sock, peer = self.lsock.accept()
                    except OSError as e:
                        self.log(f"accept failed: {e}")
                        continue
                    self.add_conn(Conn(sock, peer))
                    self.log(f"accepted connection from {fmt(peer)}")
                else:
                    self.on_readable(self.conns[key.fileobj])

    def try_connect(self, p):
        addr = p[0]
        try:
            sock = socket.create_connection(addr, timeout=0.5)
            sock.settimeout(None)
            self.add_conn(Conn(sock, addr, "servent"))
            self.send(self.conns[sock], {"type": "ID", "port": 0}, "send")
            self.pending.remove(p)
        except OSError as e:
            if not p[2]:
                self.log(f"connect to neighbour {fmt(addr)} failed ({e}); retrying every 0.2 s")
                p[2] = True
            p[1] = time.monotonic() + 0.2

    def add_conn(self, conn):
        self.conns[conn.sock] = conn
        self.sel.register(conn.sock, selectors.EVENT_READ)

    def close(self, conn, why):
        self.log(f"closing connection with {fmt(conn.peer)}: {why}")
        self.sel.unregister(conn.sock)
        del self.conns[conn.sock]
        conn.sock.close()
        gone = why == "closed by peer" or why.startswith("recv failed")
        if defect("exits-on-disconnect") and conn.kind is not None and gone:
            self.log(f"{conn.kind} {fmt(conn.peer)} disconnected: exiting (defect)")
            sys.exit(0)

    def send_all(self, conns, f, verb):
        """Writes a flood to every neighbour first and logs after, so a slow log write
        cannot let a copy sent later overtake this one round a cycle."""
        done, data = [], encode(f)
        for conn in conns:
            try:
                write_frame(conn.sock, data, self.bytewise)
                done.append(conn)
            except OSError as e:
                self.close(conn, f"send failed: {e}")
        for conn in done:
            self.log(f"{verb} {describe(f)} to {fmt(conn.peer)}")

    def send(self, conn, f, verb):
        try:
            write_frame(conn.sock, encode(f), self.bytewise)
            self.log(f"{verb} {describe(f)} to {fmt(conn.peer)}")
        except OSError as e:
            self.close(conn, f"send failed: {e}")

    def on_readable(self, conn):
        try:
            data = conn.sock.recv(4096)
        except OSError as e:
            return self.close(conn, f"recv failed: {e}")
        if not data:
            return self.close(conn, "closed by peer")
        if defect("one-read-per-message"):
            return self.on_one_read(conn, data)
        conn.buf += data
        while conn.sock in self.conns:
            try:
                got = decode(conn.buf)
            except ProtocolError as e:
                return self.close(conn, f"protocol error: {e}")
            if got is None:
                return
            f, size = got
            del conn.buf[:size]
            self.log(f"recv {describe(f)} from {fmt(conn.peer)}")
            self.handle(conn, f)

    def on_one_read(self, conn, data):
        """The defect: whatever one recv() returned is taken as exactly one message."""
        try:
            got = decode(data)
        except ProtocolError as e:
            return self.close(conn, f"protocol error: {e}")
        if got is None:
            return self.log(f"ignored a short message of {len(data)} bytes from {fmt(conn.peer)}")
        self.log(f"recv {describe(got[0])} from {fmt(conn.peer)}")
        self.handle(conn, got[0])

    def handle(self, conn, f):
        t = f["type"]
        if conn.kind is None:
            if t != "ID":
                return self.close(conn, "first frame is not ID")
            conn.kind = "client" if f["port"] else "servent"
            conn.client_port = f["port"]
        elif t in ("KEYREQ", "TOPOREQ") and conn.kind == "client":
            self.on_request(conn, f)
        elif t in ("KEYFLOOD", "TOPOFLOOD") and conn.kind == "servent":
            self.on_flood(conn, f)
        else:
            self.log(f"ignored {t} from {conn.kind} {fmt(conn.peer)}")

    def myaddr(self, conn):
        """§8: the connection's local IP with this servent's listening port (never the
        ephemeral port of a link it dialled)."""
        if defect("listen-address-in-topology"):
            return fmt((self.lsock.getsockname()[0], self.port)).encode()
        return fmt((conn.sock.getsockname()[0], self.port)).encode()

    def on_request(self, conn, f):
        ip, port, seq = conn.peer[0], conn.client_port, f["seq"]
        if not defect("forgets-own-request"):
            self.seen.add((ip, port, seq))
        flood_ip = "127.0.0.1" if defect("localhost-in-floods") else ip
        flood = {"type": "KEYFLOOD", "ttl": FIRST_TTL, "seq": seq, "ip": flood_ip, "port": port}
        if f["type"] == "KEYREQ":
            flood["key"] = f["key"]
            if f["key"] in self.store:
                self.answer(ip, port, seq, self.store[f["key"]])
                if defect("no-flood-when-found"):
                    return self.log("key found: not flooding (defect)")
        else:
            me = self.myaddr(conn)
            if defect("topology-trailing-space"):
                me += b" "
            flood["type"], flood["info"] = "TOPOFLOOD", me
            self.answer(ip, port, seq, flood["info"])
        self.send_all(self.neighbours(), flood, "send")

    def on_flood(self, conn, f):
        qid = (f["ip"], f["port"], f["seq"])
        if qid in self.seen:
            return self.log(f"drop {describe(f)} from {fmt(conn.peer)}: already seen")
        self.seen.add(qid)
        if f["type"] == "KEYFLOOD":
            if f["key"] in self.store:
                self.answer(f["ip"], f["port"], f["seq"], self.store[f["key"]])
                if defect("no-flood-when-found"):
                    return self.log("key found: not forwarding (defect)")
        else:
            info = self.append_me(f["info"], conn)
            if len(info) > MAXLEN:
                self.log(f"topology info is {len(info)} bytes, truncated to {MAXLEN}")
                info = info[:MAXLEN]
            f = dict(f, info=info)
            self.answer(f["ip"], f["port"], f["seq"], info)
        ttl = f["ttl"] - 1
        # The seed's rule tests, then decrements; the defect tests what is left.
        forward = ttl > 0 if defect("decrement-first") else f["ttl"] > 0
        if forward:
            fwd = dict(f, ttl=ttl)
            to = [n for n in self.neighbours() if n is not conn or defect("floods-back")]
            self.send_all(to, fwd, "forward")

    def append_me(self, info, conn):
        """Topology info with this servent appended: one space between entries."""
        me = self.myaddr(conn)
        if defect("topology-no-space"):
            return info + me
        if defect("topology-trailing-space"):
            sep = b"" if info.endswith(b" ") else b" "
            return info + sep + me + b" "
        return info.rstrip() + b" " + me  # §8: a string ending in whitespace is trimmed

    def neighbours(self):
        return [c for c in list(self.conns.values()) if c.kind == "servent"]

    def answer(self, ip, port, seq, value):
        f = {"type": "RESP", "seq": seq, "value": value}
        try:
            with socket.create_connection((ip, port), timeout=2) as s:
                write_frame(s, encode(f), self.bytewise)
            self.log(f"send {describe(f)} to {ip}:{port}")
        except (OSError, OverflowError) as e:  # OverflowError: a negative (signed) port
            self.log(f"answer {describe(f)} to {ip}:{port} failed: {e}")


# ---------------------------------------------------------------------------- client
class Client:
    def __init__(self, servent, local_port, timeout, bytewise):
        self.timeout, self.bytewise = timeout, bytewise
        self.seq = 1 if defect("seq-from-1") else 0
        self.sel = selectors.DefaultSelector()
        if defect("late-listener"):
            # The defect: only the port is chosen now; the listener opens after a request.
            if not local_port:
                probe = listen(0)
                local_port = probe.getsockname()[1]
                probe.close()
            self.lsock, self.reply_port = None, local_port
        else:
            self.open_listener(local_port)
        try:
            self.srv = socket.create_connection(parse_addr(servent))
        except OSError as e:
            err(f"cannot connect to servent {servent}: {e}")
            sys.exit(1)
        self.sel.register(self.srv, selectors.EVENT_READ)
        self.send({"type": "ID", "port": self.reply_port})

    def open_listener(self, port):
        self.lsock = listen(port)
        self.lsock.setblocking(False)
        self.reply_port = self.lsock.getsockname()[1]
        self.sel.register(self.lsock, selectors.EVENT_READ)

    def wrong_message(self, source):
        if not defect("ignore-wrong-seq"):
            err(f"unexpected message from {source}")

    def send(self, f):
        try:
            write_frame(self.srv, encode(f), self.bytewise)
        except OSError as e:
            err(f"connection to servent lost: {e}")
            sys.exit(1)

    def run(self):
        for line in sys.stdin.buffer:
            line = line.rstrip(b"\r\n")
            m = re.fullmatch(rb"\?[ \t]+(\S+)\s*", line)
            if line.strip() == b"Q":
                return
            if m and len(m.group(1)) > MAXLEN:
                err(f"key longer than {MAXLEN} bytes")
            elif m:
                self.send({"type": "KEYREQ", "seq": self.seq, "key": m.group(1)})
                self.wait_answers()
            elif line.strip() == b"T":
                self.send({"type": "TOPOREQ", "seq": self.seq})
                self.wait_answers()
            else:
                err("unknown command")

    def wait_answers(self):
        seq, self.seq = self.seq, (self.seq + 1) & 0xFFFFFFFF
        if self.lsock is None:  # late-listener: too late for a quick answer
            time.sleep(0.2)
            self.open_listener(self.reply_port)
        deadline, answers = time.monotonic() + self.timeout, 0
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in self.sel.select(left):
                sock = key.fileobj
                if sock is self.lsock:
                    try:
                        conn, peer = self.lsock.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    self.sel.register(conn, selectors.EVENT_READ, (peer, bytearray()))
                elif sock is self.srv:
                    if not sock.recv(4096):
                        err("servent closed the connection")
                        sys.exit(1)
                    self.wrong_message(fmt(sock.getpeername()))
                elif self.on_reply(sock, *key.data, seq):
                    answers += 1
                    deadline = time.monotonic() + self.timeout
        if not answers:
            err("no answer received")

    def on_reply(self, sock, peer, buf, seq):
        """Read from one reply connection; True if it brought a valid answer."""
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        buf += data
        try:
            got = decode(buf)
        except ProtocolError:
            got = None
            data = b""
        if defect("one-read-per-message"):
            data = b""  # the defect: one recv() is the whole message, complete or not
        if got is None and data:
            return False  # wait for the rest of the frame
        self.sel.unregister(sock)
        sock.close()
        if got and got[0]["type"] == "RESP" and got[0]["seq"] == seq:
            source = peer[0] if defect("answer-without-port") else fmt(peer)
            print(f"{text(got[0]['value'])} {source}", flush=True)
            return True
        self.wrong_message(fmt(peer))
        return False


# ------------------------------------------------------------------ send-raw, selftest
def send_raw(addr, hexes):
    with socket.create_connection(parse_addr(addr)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, h in enumerate(hexes):
            if i:
                time.sleep(0.05)
            s.sendall(bytes.fromhex(h))
        time.sleep(0.3)


def selftest(path):
    with open(path) as fh:
        vectors = json.load(fh)
    fails = []

    def check(ok, what):
        if not ok:
            fails.append(what)

    def as_bytes(frame):
        return {k: v.encode() if isinstance(v, str) and k in TEXT.values() else v
                for k, v in frame.items()}

    for v in vectors["valid"]:
        raw, want = bytes.fromhex(v["hex"]), as_bytes(v["frame"])
        check(decode(raw) == (want, len(raw)), f"decode {v['name']}")
        check(encode(want) == raw, f"encode {v['name']}")
        check(all(decode(raw[:i]) is None for i in range(len(raw))), f"prefix {v['name']}")
    for v in vectors["invalid"]:
        try:
            decode(bytes.fromhex(v["hex"]))
            fails.append(f"invalid accepted: {v['name']}")
        except ProtocolError:
            pass
    for v in vectors["stream"]:
        buf, frames = bytearray.fromhex(v["hex"]), []
        while (got := decode(buf)) is not None:
            frames.append(got[0])
            del buf[:got[1]]
        if v.get("incomplete"):
            check(not frames and len(buf) == len(bytes.fromhex(v["hex"])), v["name"])
        else:
            check(frames == [as_bytes(f) for f in v["frames"]] and not buf, v["name"])
    for f in fails:
        print(f"selftest FAILED: {f}", file=sys.stderr)
    if fails:
        sys.exit(1)
    print("selftest ok")


def usage_error(msg):
    err(f"tp3ref.py: error: {msg}")
    sys.exit(2)


def list_defects():
    width = max(map(len, KNOWN_DEFECTS))
    for name, (modes, what) in KNOWN_DEFECTS.items():
        print(f"{name:<{width}}  {modes.replace(' ', ' and ')}: {what}")


def take_defects(argv, cmd):
    """Removes every `--defect NAME` from argv into DEFECTS; unknown or misplaced: exit 2."""
    while "--defect" in argv:
        i = argv.index("--defect")
        if i + 1 >= len(argv):
            usage_error("--defect needs a NAME; known: " + ", ".join(KNOWN_DEFECTS))
        name = argv[i + 1]
        del argv[i:i + 2]
        if name not in KNOWN_DEFECTS:
            usage_error(f"unknown defect {name!r}; known defects: " + ", ".join(KNOWN_DEFECTS))
        modes = KNOWN_DEFECTS[name][0].split()
        if cmd not in modes:
            usage_error(f"defect {name!r} is for the {' and '.join(modes)} only, not {cmd!r}")
        DEFECTS.add(name)
    if DEFECTS:
        err(f"[tp3ref] defects on: {', '.join(sorted(DEFECTS))}")


def main(argv):
    def flag(name):
        present = name in argv
        if present:
            argv.remove(name)
        return present

    if argv == ["--list-defects"]:
        return list_defects()
    cmd = argv.pop(0) if argv else ""
    take_defects(argv, cmd)
    bytewise = flag("--bytewise")
    timeout = 4.0
    if "--timeout" in argv:
        i = argv.index("--timeout")
        timeout = float(argv[i + 1])
        del argv[i:i + 2]
    if cmd == "servent" and len(argv) >= 2:
        Servent(int(argv[0]), argv[1], argv[2:], bytewise).run()
    elif cmd == "client" and len(argv) in (1, 2):
        local_port = int(argv[0]) if len(argv) == 2 else 0
        Client(argv[-1], local_port, timeout, bytewise).run()
    elif cmd == "send-raw" and argv:
        send_raw(argv[0], argv[1:])
    elif cmd == "selftest" and len(argv) == 1:
        selftest(argv[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        sys.exit(130)
