//! The wire format of `docs/PROTOCOL.md`: frames, their encoding, and an incremental decoder.
//!
//! There is no outer length on the wire: each type has a fixed header and, for the types
//! that carry text, a `len` field giving the rest. So the decoder must reject an unknown
//! type or a `len` over [`MAX_TEXT`] from the header alone — such a stream cannot be
//! resynchronised and the connection has to be closed.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The longest key, value or topology text a frame may carry, in bytes.
pub const MAX_TEXT: usize = 400;

/// The longest encoded frame: a flood header plus the longest text.
pub const MAX_FRAME: usize = FLOOD_HEADER + MAX_TEXT;

/// The TTL a servent gives a query it floods first (the seed: at most 4 retransmissions).
pub const INITIAL_TTL: u16 = 3;

/// The `type` field of each frame, its first two bytes (big-endian).
pub const TYPE_ID: u16 = 4;
pub const TYPE_KEYREQ: u16 = 5;
pub const TYPE_TOPOREQ: u16 = 6;
pub const TYPE_KEYFLOOD: u16 = 7;
pub const TYPE_TOPOFLOOD: u16 = 8;
pub const TYPE_RESP: u16 = 9;

const ID_SIZE: usize = 4;
const TOPOREQ_SIZE: usize = 6;
const KEYREQ_HEADER: usize = 8;
const RESP_HEADER: usize = 8;
const FLOOD_HEADER: usize = 16;

/// A key, value or topology string: at most [`MAX_TEXT`] bytes, not necessarily UTF-8.
///
/// The length limit is checked when a `Text` is made, so encoding can never fail.
///
/// Keys are short, and every flood a servent forwards carries one, so a text of up to
/// [`INLINE_TEXT`] bytes is stored in place: decoding and forwarding a KEYFLOOD
/// allocates nothing. Longer texts (values, grown topology strings) go to the heap.
#[derive(Clone)]
pub struct Text(Repr);

/// Texts up to this long are stored in place (the whole `Text` is then 64 bytes).
pub const INLINE_TEXT: usize = 62;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE_TEXT] },
    Heap(Box<[u8]>),
}

/// A text longer than [`MAX_TEXT`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTooLong {
    pub len: usize,
}

impl fmt::Display for TextTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes, over the limit of {MAX_TEXT}", self.len)
    }
}

impl std::error::Error for TextTooLong {}

impl Text {
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Text, TextTooLong> {
        let bytes = bytes.as_ref();
        if bytes.len() > MAX_TEXT {
            return Err(TextTooLong { len: bytes.len() });
        }
        Ok(Text::from_checked(bytes))
    }

    /// `bytes` is at most [`MAX_TEXT`] long.
    fn from_checked(bytes: &[u8]) -> Text {
        if bytes.len() <= INLINE_TEXT {
            let mut inline = [0u8; INLINE_TEXT];
            inline[..bytes.len()].copy_from_slice(bytes);
            Text(Repr::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            })
        } else {
            Text(Repr::Heap(bytes.into()))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(bytes) => bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// The text for people: invalid UTF-8 is shown lossily, never refused.
    pub fn to_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::from_checked(b"")
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Text {}

/// Lets a map keyed by `Text` be searched with plain bytes (the hash is the same).
impl std::borrow::Borrow<[u8]> for Text {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl TryFrom<&str> for Text {
    type Error = TextTooLong;
    fn try_from(s: &str) -> Result<Text, TextTooLong> {
        Text::new(s.as_bytes())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_lossy())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_lossy())
    }
}

/// A query travelling between servents: KEYFLOOD or TOPOFLOOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flood {
    pub ttl: u16,
    pub seq: u32,
    /// The client's reply address: where answers go.
    pub client: SocketAddrV4,
    /// The key (KEYFLOOD) or the topology collected so far (TOPOFLOOD).
    pub text: Text,
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame on every connection to a servent: port 0 for a servent, else the
    /// client's reply-listener port.
    Id {
        port: u16,
    },
    KeyReq {
        seq: u32,
        key: Text,
    },
    TopoReq {
        seq: u32,
    },
    KeyFlood(Flood),
    TopoFlood(Flood),
    Resp {
        seq: u32,
        value: Text,
    },
}

/// The frame in the wire's own words, as counters and traces name it:
/// `KEYFLOOD ttl=2 seq=7 client=127.0.0.1:41001 key="rtmp"`. Texts are quoted, shown
/// lossily as UTF-8 with quotes, backslashes and control characters escaped (as
/// `flood-view` shows them), so a log line is always one line.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Id { port } => write!(f, "ID port={port}"),
            Frame::KeyReq { seq, key } => write!(f, "KEYREQ seq={seq} key={key:?}"),
            Frame::TopoReq { seq } => write!(f, "TOPOREQ seq={seq}"),
            Frame::KeyFlood(flood) => flood.show(f, "KEYFLOOD", "key"),
            Frame::TopoFlood(flood) => flood.show(f, "TOPOFLOOD", "info"),
            Frame::Resp { seq, value } => write!(f, "RESP seq={seq} value={value:?}"),
        }
    }
}

impl Flood {
    /// `NAME ttl=.. seq=.. client=.. FIELD="text"`.
    fn show(&self, f: &mut fmt::Formatter<'_>, name: &str, field: &str) -> fmt::Result {
        show_flood(
            f,
            name,
            self.ttl,
            self.seq,
            self.client,
            field,
            self.text.as_bytes(),
        )
    }
}

fn show_flood(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    ttl: u16,
    seq: u32,
    client: SocketAddrV4,
    field: &str,
    text: &[u8],
) -> fmt::Result {
    write!(
        f,
        "{name} ttl={ttl} seq={seq} client={client} {field}={:?}",
        String::from_utf8_lossy(text)
    )
}

impl Frame {
    /// The protocol's name for this frame's type, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Id { .. } => "ID",
            Frame::KeyReq { .. } => "KEYREQ",
            Frame::TopoReq { .. } => "TOPOREQ",
            Frame::KeyFlood(_) => "KEYFLOOD",
            Frame::TopoFlood(_) => "TOPOFLOOD",
            Frame::Resp { .. } => "RESP",
        }
    }

    /// The number of bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Id { .. } => ID_SIZE,
            Frame::KeyReq { key, .. } => KEYREQ_HEADER + key.len(),
            Frame::TopoReq { .. } => TOPOREQ_SIZE,
            Frame::KeyFlood(f) | Frame::TopoFlood(f) => FLOOD_HEADER + f.text.len(),
            Frame::Resp { value, .. } => RESP_HEADER + value.len(),
        }
    }

    /// Appends this frame's wire bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        match self {
            Frame::Id { port } => {
                out.extend_from_slice(&TYPE_ID.to_be_bytes());
                out.extend_from_slice(&port.to_be_bytes());
            }
            Frame::KeyReq { seq, key } => {
                out.extend_from_slice(&TYPE_KEYREQ.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                put_text(out, key);
            }
            Frame::TopoReq { seq } => {
                out.extend_from_slice(&TYPE_TOPOREQ.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
            }
            Frame::KeyFlood(flood) => encode_flood(TYPE_KEYFLOOD, flood, out),
            Frame::TopoFlood(flood) => encode_flood(TYPE_TOPOFLOOD, flood, out),
            Frame::Resp { seq, value } => {
                out.extend_from_slice(&TYPE_RESP.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                put_text(out, value);
            }
        }
    }

    /// This frame's wire bytes in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }
}

fn put_text(out: &mut Vec<u8>, text: &Text) {
    // A Text is at most MAX_TEXT bytes, so its length always fits the u16 field.
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn encode_flood(kind: u16, flood: &Flood, out: &mut Vec<u8>) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&flood.ttl.to_be_bytes());
    out.extend_from_slice(&flood.seq.to_be_bytes());
    out.extend_from_slice(&flood.client.ip().octets());
    out.extend_from_slice(&flood.client.port().to_be_bytes());
    put_text(out, &flood.text);
}

/// Why a byte stream is not a stream of frames. Either way the connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A type number the protocol does not have.
    UnknownType(u16),
    /// A `len` field over [`MAX_TEXT`].
    TooLong { kind: u16, len: u16 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownType(t) => {
                // Shown as the bytes came, and as text when they are printable: another
                // protocol's first bytes (`HT` of HTTP) say what the peer is.
                write!(f, "unknown frame type 0x{t:04x}")?;
                let [a, b] = t.to_be_bytes();
                if [a, b].iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
                    write!(f, " (\"{}{}\")", a as char, b as char)?;
                }
                write!(f, ": not a tp3kv servent or client?")
            }
            DecodeError::TooLong { kind, len } => {
                write!(
                    f,
                    "frame type {kind} says length {len}, over the limit of {MAX_TEXT}"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Where the first frame in `buf` ends, from its header alone: `Ok(Some((type,
/// length)))` if it is all there, `Ok(None)` if more bytes are needed, `Err` if the
/// header already shows the stream is corrupt.
pub fn frame_extent(buf: &[u8]) -> Result<Option<(u16, usize)>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let kind = be_u16(buf, 0);
    let header = match kind {
        TYPE_ID => ID_SIZE,
        TYPE_TOPOREQ => TOPOREQ_SIZE,
        TYPE_KEYREQ => KEYREQ_HEADER,
        TYPE_RESP => RESP_HEADER,
        TYPE_KEYFLOOD | TYPE_TOPOFLOOD => FLOOD_HEADER,
        other => return Err(DecodeError::UnknownType(other)),
    };
    if buf.len() < header {
        return Ok(None);
    }
    // Text-carrying frames end their header with `len: u16`.
    let text_len = match kind {
        TYPE_ID | TYPE_TOPOREQ => 0,
        _ => {
            let len = be_u16(buf, header - 2);
            if usize::from(len) > MAX_TEXT {
                return Err(DecodeError::TooLong { kind, len });
            }
            usize::from(len)
        }
    };
    let total = header + text_len;
    Ok((buf.len() >= total).then_some((kind, total)))
}

/// A KEYFLOOD where it lies in the input: what forwarding it takes, borrowed, so a
/// servent can decide about it and pass its bytes on (with the TTL rewritten) without
/// building a [`Frame`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyFloodRef<'a> {
    pub ttl: u16,
    pub seq: u32,
    pub client: SocketAddrV4,
    pub key: &'a [u8],
}

impl<'a> KeyFloodRef<'a> {
    /// `frame`: exactly one whole KEYFLOOD, as [`frame_extent`] delimited it.
    pub fn parse(frame: &'a [u8]) -> Option<KeyFloodRef<'a>> {
        if frame.len() < FLOOD_HEADER || be_u16(frame, 0) != TYPE_KEYFLOOD {
            return None;
        }
        let key = &frame[FLOOD_HEADER..];
        (usize::from(be_u16(frame, FLOOD_HEADER - 2)) == key.len()).then_some(KeyFloodRef {
            ttl: be_u16(frame, 2),
            seq: be_u32(frame, 4),
            client: SocketAddrV4::new(Ipv4Addr::from(be_u32(frame, 8)), be_u16(frame, 12)),
            key,
        })
    }

    /// The owned frame, for the general path.
    pub fn to_frame(&self) -> Frame {
        Frame::KeyFlood(Flood {
            ttl: self.ttl,
            seq: self.seq,
            client: self.client,
            text: Text::from_checked(self.key),
        })
    }
}

/// Shown as the frame it is, so a log reads the same whichever path took it.
impl fmt::Debug for KeyFloodRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyFlood(Flood {{ ttl: {}, seq: {}, client: {}, text: {:?} }})",
            self.ttl,
            self.seq,
            self.client,
            String::from_utf8_lossy(self.key)
        )
    }
}

/// Shown as the KEYFLOOD it is, in the same words as [`Frame`]'s `Display`, so a log
/// reads the same whichever path took the frame.
impl fmt::Display for KeyFloodRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_flood(
            f,
            "KEYFLOOD",
            self.ttl,
            self.seq,
            self.client,
            "key",
            self.key,
        )
    }
}

/// Rewrites the TTL of a whole KEYFLOOD or TOPOFLOOD in place.
pub fn set_flood_ttl(frame: &mut [u8], ttl: u16) {
    frame[2..4].copy_from_slice(&ttl.to_be_bytes());
}

/// Decodes the first frame in `buf`.
///
/// `Ok(Some((frame, used)))`: a whole frame, `used` bytes long. `Ok(None)`: `buf` holds
/// only the start of a valid frame; nothing is consumed, call again with more bytes.
/// `Err`: the stream is corrupt, as shown by the header alone, however little of the
/// body has arrived.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some((kind, total)) = frame_extent(buf)? else {
        return Ok(None);
    };
    let header = match kind {
        TYPE_ID => ID_SIZE,
        TYPE_TOPOREQ => TOPOREQ_SIZE,
        TYPE_KEYREQ => KEYREQ_HEADER,
        TYPE_RESP => RESP_HEADER,
        _ => FLOOD_HEADER,
    };
    let text = || Text::from_checked(&buf[header..total]);
    let frame = match kind {
        TYPE_ID => Frame::Id {
            port: be_u16(buf, 2),
        },
        TYPE_TOPOREQ => Frame::TopoReq {
            seq: be_u32(buf, 2),
        },
        TYPE_KEYREQ => Frame::KeyReq {
            seq: be_u32(buf, 2),
            key: text(),
        },
        TYPE_RESP => Frame::Resp {
            seq: be_u32(buf, 2),
            value: text(),
        },
        _ => {
            let flood = Flood {
                ttl: be_u16(buf, 2),
                seq: be_u32(buf, 4),
                client: SocketAddrV4::new(Ipv4Addr::from(be_u32(buf, 8)), be_u16(buf, 12)),
                text: text(),
            };
            if kind == TYPE_KEYFLOOD {
                Frame::KeyFlood(flood)
            } else {
                Frame::TopoFlood(flood)
            }
        }
    };
    Ok(Some((frame, total)))
}

/// Decodes every whole frame at the front of `buf`, returning them and the bytes used.
///
/// Stops at the first error, returning the frames before it alongside it, so a caller
/// can act on the good frames a peer sent before its bad one.
pub fn decode_all(buf: &[u8]) -> (Vec<Frame>, usize, Option<DecodeError>) {
    let mut frames = Vec::new();
    let mut used = 0;
    loop {
        match decode(&buf[used..]) {
            Ok(Some((frame, n))) => {
                frames.push(frame);
                used += n;
            }
            Ok(None) => return (frames, used, None),
            Err(e) => return (frames, used, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Text {
        Text::try_from(s).unwrap()
    }

    #[test]
    fn protocol_md_example_keyreq() {
        let bytes = [0x00, 0x05, 0, 0, 0, 7, 0, 3, b'a', b'b', b'c'];
        let (frame, used) = decode(&bytes).unwrap().unwrap();
        assert_eq!(used, 11);
        assert_eq!(
            frame,
            Frame::KeyReq {
                seq: 7,
                key: text("abc")
            }
        );
        assert_eq!(frame.to_bytes(), bytes);
    }

    #[test]
    fn text_over_limit_is_refused() {
        assert!(Text::new(vec![b'x'; MAX_TEXT]).is_ok());
        assert_eq!(
            Text::new(vec![b'x'; MAX_TEXT + 1]),
            Err(TextTooLong { len: MAX_TEXT + 1 })
        );
    }

    #[test]
    fn texts_in_place_and_on_the_heap_behave_alike() {
        assert_eq!(std::mem::size_of::<Text>(), 64);
        for len in [
            0,
            1,
            INLINE_TEXT - 1,
            INLINE_TEXT,
            INLINE_TEXT + 1,
            MAX_TEXT,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let text = Text::new(&bytes).unwrap();
            assert_eq!(text.as_bytes(), &bytes[..]);
            assert_eq!(text.len(), len);
            let frame = Frame::KeyReq { seq: 7, key: text };
            let (decoded, used) = decode(&frame.to_bytes()).unwrap().unwrap();
            assert_eq!((decoded, used), (frame.clone(), frame.encoded_len()));
        }
        assert_eq!(Text::default(), Text::new(b"").unwrap());
        assert_ne!(Text::new(b"ab").unwrap(), Text::new(b"abc").unwrap());
    }

    #[test]
    fn a_keyflood_read_in_place_is_the_frame_and_takes_a_new_ttl() {
        let frame = Frame::KeyFlood(Flood {
            ttl: 3,
            seq: 0xDEAD_BEEF,
            client: "10.1.2.3:5151".parse().unwrap(),
            text: text("rtmp"),
        });
        let mut bytes = frame.to_bytes();
        assert_eq!(frame_extent(&bytes), Ok(Some((TYPE_KEYFLOOD, bytes.len()))));
        assert_eq!(frame_extent(&bytes[..bytes.len() - 1]), Ok(None));
        let view = KeyFloodRef::parse(&bytes).unwrap();
        assert_eq!(
            (view.ttl, view.seq, view.key),
            (3, 0xDEAD_BEEF, &b"rtmp"[..])
        );
        assert_eq!(view.to_frame(), frame);
        assert_eq!(format!("{view:?}"), format!("{frame:?}"));
        assert_eq!(view.to_string(), frame.to_string());
        set_flood_ttl(&mut bytes, 2);
        let Ok(Some((Frame::KeyFlood(moved_on), _))) = decode(&bytes) else {
            panic!("{bytes:?}")
        };
        assert_eq!(moved_on.ttl, 2);
        assert_eq!(moved_on.text, text("rtmp"));
        // Only a whole KEYFLOOD is read so.
        assert!(KeyFloodRef::parse(&bytes[..bytes.len() - 1]).is_none());
        let keyreq = Frame::KeyReq {
            seq: 1,
            key: text("rtmp"),
        }
        .to_bytes();
        assert!(KeyFloodRef::parse(&keyreq).is_none());
        let topo = Frame::TopoFlood(Flood {
            ttl: 3,
            seq: 1,
            client: "10.1.2.3:5151".parse().unwrap(),
            text: text("x"),
        });
        assert!(KeyFloodRef::parse(&topo.to_bytes()).is_none());
    }

    #[test]
    fn header_errors_need_no_body() {
        // KEYRESP with len 401: refused from the 8-byte header.
        assert_eq!(
            decode(&[0, 9, 0, 0, 0, 1, 0x01, 0x91]),
            Err(DecodeError::TooLong { kind: 9, len: 401 })
        );
        // Unknown type from two bytes.
        assert_eq!(decode(&[0, 0]), Err(DecodeError::UnknownType(0)));
        assert_eq!(decode(&[0]), Ok(None));
    }

    #[test]
    fn an_unknown_type_shows_its_bytes() {
        assert_eq!(
            DecodeError::UnknownType(0x4854).to_string(),
            "unknown frame type 0x4854 (\"HT\"): not a tp3kv servent or client?"
        );
        assert_eq!(
            DecodeError::UnknownType(10).to_string(),
            "unknown frame type 0x000a: not a tp3kv servent or client?"
        );
    }

    #[test]
    fn decode_all_keeps_frames_before_an_error() {
        let mut buf = Frame::Id { port: 0 }.to_bytes();
        buf.extend_from_slice(&[0xff, 0xff, 1, 2]);
        let (frames, used, err) = decode_all(&buf);
        assert_eq!(frames, vec![Frame::Id { port: 0 }]);
        assert_eq!(used, 4);
        assert_eq!(err, Some(DecodeError::UnknownType(0xffff)));
    }

    #[test]
    fn frames_display_in_the_wire_words() {
        let client: SocketAddrV4 = "127.0.0.1:41001".parse().unwrap();
        let cases = [
            (Frame::Id { port: 0 }, "ID port=0"),
            (Frame::Id { port: 5151 }, "ID port=5151"),
            (
                Frame::KeyReq {
                    seq: 7,
                    key: text("rtmp"),
                },
                r#"KEYREQ seq=7 key="rtmp""#,
            ),
            (Frame::TopoReq { seq: 9 }, "TOPOREQ seq=9"),
            (
                Frame::KeyFlood(Flood {
                    ttl: 2,
                    seq: 7,
                    client,
                    text: text("rtmp"),
                }),
                r#"KEYFLOOD ttl=2 seq=7 client=127.0.0.1:41001 key="rtmp""#,
            ),
            (
                Frame::TopoFlood(Flood {
                    ttl: 3,
                    seq: 9,
                    client,
                    text: text("127.0.0.1:5001 127.0.0.1:5002"),
                }),
                r#"TOPOFLOOD ttl=3 seq=9 client=127.0.0.1:41001 info="127.0.0.1:5001 127.0.0.1:5002""#,
            ),
            (
                Frame::Resp {
                    seq: 7,
                    value: text("1935/tcp"),
                },
                r#"RESP seq=7 value="1935/tcp""#,
            ),
            (
                Frame::Resp {
                    seq: 4294967295,
                    value: text(""),
                },
                r#"RESP seq=4294967295 value="""#,
            ),
        ];
        for (frame, shown) in cases {
            assert_eq!(frame.to_string(), shown);
        }
    }

    #[test]
    fn displayed_texts_stay_on_one_line() {
        let frame = Frame::Resp {
            seq: 1,
            value: Text::new(b"a\"b\\c\nforged\r\x1b[2J\0\xff").unwrap(),
        };
        assert_eq!(
            frame.to_string(),
            "RESP seq=1 value=\"a\\\"b\\\\c\\nforged\\r\\u{1b}[2J\\0\u{fffd}\""
        );
        let flood = Frame::KeyFlood(Flood {
            ttl: 1,
            seq: 2,
            client: "10.0.0.1:7".parse().unwrap(),
            text: Text::new(b"k\ney").unwrap(),
        });
        let bytes = flood.to_bytes();
        let view = KeyFloodRef::parse(&bytes).unwrap();
        assert_eq!(
            view.to_string(),
            r#"KEYFLOOD ttl=1 seq=2 client=10.0.0.1:7 key="k\ney""#
        );
        assert_eq!(view.to_string(), flood.to_string());
    }
}
