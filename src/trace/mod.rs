//! Message traces: what a servent did with every frame, one JSON object per line.
//!
//! `servent --trace PATH` writes them through a [`Tracer`]; `flood-view` merges the
//! traces of several servents into each query's flood ([`view`]) and draws it as a
//! tree of text ([`text`]) or a Graphviz digraph ([`dot`]). Both sides use the one
//! schema, [`Event`]. A line looks like
//!
//! ```text
//! {"time_us":1764017643123456,"servent":"127.0.0.1:5004","event":"dropped",
//!  "link":"127.0.0.1:5003","local":"127.0.0.1:40122","query":"127.0.0.1:6000#7",
//!  "frame":{"type":"KEYFLOOD","ttl":1,"seq":7,"client":"127.0.0.1:6000","key":"rtmp"},
//!  "reason":"duplicate"}
//! ```
//! (on one line). `link` and `local` are the two ends of the connection the frame
//! travelled on, so the sender's `sent` event and the receiver's `received` event of one
//! copy name the same pair, reversed: that is how `flood-view` tells who got a query
//! from whom, with no other help from the servents.

pub mod dot;
pub mod text;
pub mod view;

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use log::error;
use serde::{Deserialize, Serialize};

use crate::protocol::{Frame, KeyFloodRef};
use crate::servent::QueryId;

/// One thing a servent did with a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Microseconds since the UNIX epoch: the traces of several processes merge by it.
    pub time_us: u64,
    /// The servent that wrote the event: its listening address.
    pub servent: String,
    pub event: EventKind,
    /// The other end of the connection: a neighbour, a client, or (for an answer) the
    /// client's reply address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// This servent's end of that connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// The query the frame belongs to, `client-ip:port#seq`, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameFields>,
    /// Why it was dropped: `duplicate`, `ttl`, `protocol error: ...`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Received,
    Sent,
    /// An answer decided on: a RESP queued for the client's reply address.
    Answered,
    Dropped,
}

/// A frame's fields, named as in `PROTOCOL.md`. Texts are shown as UTF-8, lossily.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameFields {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    /// ID's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A flood's client reply address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl FrameFields {
    pub fn of(frame: &Frame) -> FrameFields {
        let kind = frame.name().to_string();
        match frame {
            Frame::Id { port } => FrameFields {
                kind,
                port: Some(*port),
                ..FrameFields::default()
            },
            Frame::KeyReq { seq, key } => FrameFields {
                kind,
                seq: Some(*seq),
                key: Some(key.to_lossy().into_owned()),
                ..FrameFields::default()
            },
            Frame::TopoReq { seq } => FrameFields {
                kind,
                seq: Some(*seq),
                ..FrameFields::default()
            },
            Frame::KeyFlood(flood) | Frame::TopoFlood(flood) => {
                let text = Some(flood.text.to_lossy().into_owned());
                let is_key = matches!(frame, Frame::KeyFlood(_));
                FrameFields {
                    kind,
                    ttl: Some(flood.ttl),
                    seq: Some(flood.seq),
                    client: Some(flood.client.to_string()),
                    key: if is_key { text.clone() } else { None },
                    info: if is_key { None } else { text },
                    ..FrameFields::default()
                }
            }
            Frame::Resp { seq, value } => FrameFields {
                kind,
                seq: Some(*seq),
                value: Some(value.to_lossy().into_owned()),
                ..FrameFields::default()
            },
        }
    }

    pub fn of_key_flood(flood: &KeyFloodRef<'_>) -> FrameFields {
        FrameFields {
            kind: "KEYFLOOD".to_string(),
            ttl: Some(flood.ttl),
            seq: Some(flood.seq),
            client: Some(flood.client.to_string()),
            key: Some(String::from_utf8_lossy(flood.key).into_owned()),
            ..FrameFields::default()
        }
    }

    /// The fields of the whole frame `bytes` starts with, if it does.
    pub fn decode(bytes: &[u8]) -> Option<FrameFields> {
        match crate::protocol::decode(bytes) {
            Ok(Some((frame, _))) => Some(FrameFields::of(&frame)),
            _ => None,
        }
    }

    /// The query an answer (this RESP, to the reply address `to`) belongs to.
    pub fn answer_query(&self, to: SocketAddrV4) -> Option<String> {
        Some(QueryId::new(to, self.seq?).to_string())
    }

    /// The query a flood belongs to, named as [`QueryId`] shows it.
    pub fn flood_query(&self) -> Option<String> {
        Some(format!("{}#{}", self.client.as_ref()?, self.seq?))
    }
}

impl Event {
    /// An event of this kind with nothing else said yet; [`Tracer::record`] stamps
    /// the time and the servent.
    pub fn new(event: EventKind) -> Event {
        Event {
            time_us: 0,
            servent: String::new(),
            event,
            link: None,
            local: None,
            query: None,
            frame: None,
            reason: None,
        }
    }

    /// On the connection between `local` (ours) and `peer`.
    pub fn on(self, local: SocketAddr, peer: SocketAddr) -> Event {
        Event {
            link: Some(peer.to_string()),
            local: Some(local.to_string()),
            ..self
        }
    }
}

/// Writes a servent's trace. The driver holds it as an `Option`, so tracing off costs
/// a branch per frame and nothing else.
pub struct Tracer {
    out: Box<dyn Write + Send>,
    /// One event's line, serialised whole before it goes out: one call on `out` per
    /// event rather than one per JSON token.
    line: Vec<u8>,
    servent: String,
    /// Events written since the last flush.
    unflushed: bool,
}

impl Tracer {
    /// Opens the trace file at `path` for the servent named `servent`, appending: an
    /// earlier trace is kept, and several servents may share one file (the buffer goes
    /// out as runs of whole lines, and appends never overwrite each other).
    pub fn create(path: &Path, servent: String) -> io::Result<Tracer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Tracer::to_writer(
            BufWriter::with_capacity(64 * 1024, file),
            servent,
        ))
    }

    pub fn to_writer(out: impl Write + Send + 'static, servent: String) -> Tracer {
        Tracer {
            out: Box::new(out),
            line: Vec::with_capacity(512),
            servent,
            unflushed: false,
        }
    }

    /// Writes one event, stamped now. Returns false if the trace can no longer be
    /// written (the error is logged): the caller stops tracing.
    #[must_use]
    pub fn record(&mut self, mut event: Event) -> bool {
        event.time_us = now_us();
        event.servent.clone_from(&self.servent);
        self.line.clear();
        let written = serde_json::to_writer(&mut self.line, &event)
            .map_err(io::Error::from)
            .and_then(|()| {
                self.line.push(b'\n');
                self.out.write_all(&self.line)
            });
        self.unflushed = true;
        self.check(written)
    }

    /// Writes out what is buffered, so a trace can be followed while the servent
    /// runs (`tail -f`). Called once per loop turn. Same return as [`Tracer::record`].
    #[must_use]
    pub fn flush(&mut self) -> bool {
        if !self.unflushed {
            return true;
        }
        self.unflushed = false;
        let flushed = self.out.flush();
        self.check(flushed)
    }

    fn check(&self, result: io::Result<()>) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                error!("trace: cannot write ({e}); tracing stops");
                false
            }
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Flood, Text};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_is_one_json_line_that_reads_back_the_same() {
        let out = Shared::default();
        let mut tracer = Tracer::to_writer(out.clone(), "127.0.0.1:5004".into());
        let flood = Frame::KeyFlood(Flood {
            ttl: 1,
            seq: 7,
            client: "127.0.0.1:6000".parse().unwrap(),
            text: Text::new(b"r\"tmp\n\xff").unwrap(),
        });
        let event = Event {
            query: Some(QueryId::new("127.0.0.1:6000".parse().unwrap(), 7).to_string()),
            frame: Some(FrameFields::of(&flood)),
            reason: Some("duplicate".into()),
            ..Event::new(EventKind::Dropped).on(
                "127.0.0.1:40122".parse().unwrap(),
                "127.0.0.1:5003".parse().unwrap(),
            )
        };
        assert!(tracer.record(event.clone()));
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.matches('\n').count(), 1, "{written}");
        assert!(written.contains(r#""event":"dropped""#), "{written}");
        let back: Event = serde_json::from_str(written.trim_end()).unwrap();
        let key = back.frame.as_ref().and_then(|f| f.key.as_deref());
        assert_eq!(
            key,
            Some("r\"tmp\n\u{fffd}"),
            "bytes that are not UTF-8 shown lossily"
        );
        assert_eq!(back.servent, "127.0.0.1:5004");
        assert!(back.time_us > 1_600_000_000_000_000, "{}", back.time_us);
        assert_eq!(
            Event {
                time_us: 0,
                servent: String::new(),
                ..back
            },
            event
        );
    }

    #[test]
    fn the_fast_paths_fields_are_the_frames() {
        let flood = KeyFloodRef {
            ttl: 2,
            seq: 9,
            client: "10.0.0.1:7".parse().unwrap(),
            key: b"motd",
        };
        let fields = FrameFields::of_key_flood(&flood);
        assert_eq!(fields, FrameFields::of(&flood.to_frame()));
        let id = QueryId::new(flood.client, flood.seq).to_string();
        assert_eq!(fields.flood_query(), Some(id));
    }
}
