//! `--trace`: the driver's side of tracing. Every frame received, sent, answered or
//! dropped becomes an event; all of it out of line, so a servent not tracing pays a
//! branch per frame.

use super::Driver;
use crate::protocol::{self, Frame, KeyFloodRef};
use crate::servent::{LinkId, Verdict};
use crate::trace::{Event as TraceEvent, EventKind, FrameFields};

impl Driver {
    /// Writes a trace event, if tracing. A trace that cannot be written is given up.
    pub(super) fn record(&mut self, event: TraceEvent) {
        if let Some(tracer) = self.tracer.as_mut() {
            if !tracer.record(event) {
                self.tracer = None;
            }
        }
    }

    pub(super) fn flush_trace(&mut self) {
        if let Some(tracer) = self.tracer.as_mut() {
            if !tracer.flush() {
                self.tracer = None;
            }
        }
    }

    /// An event on `link`, with the link's two ends (while the servent knows them).
    pub(super) fn link_event(&self, link: LinkId, kind: EventKind) -> TraceEvent {
        let event = TraceEvent::new(kind);
        match self.servent.link_addresses(link) {
            Some((local, peer)) => event.on(local, peer),
            None => event,
        }
    }

    /// An event about a frame on `link`.
    pub(super) fn trace_frame(&mut self, link: LinkId, kind: EventKind, frame: FrameFields) {
        let event = self.link_event(link, kind);
        self.record(TraceEvent {
            query: frame.flood_query(),
            frame: Some(frame),
            ..event
        });
    }

    /// The copies of one flood just queued to `targets` (`ttl`: as rewritten in each).
    /// Out of line, so the forwarding loop carries no tracing code.
    #[inline(never)]
    pub(super) fn trace_sent(&mut self, targets: &[LinkId], frame: &[u8], ttl: Option<u16>) {
        let Ok(Some((mut frame, _))) = protocol::decode(frame) else {
            return;
        };
        if let (Some(ttl), Frame::KeyFlood(flood) | Frame::TopoFlood(flood)) = (ttl, &mut frame) {
            flood.ttl = ttl;
        }
        let fields = FrameFields::of(&frame);
        for &target in targets {
            // A link the sending itself closed got nothing.
            if self.servent.link_addresses(target).is_some() {
                self.trace_frame(target, EventKind::Sent, fields.clone());
            }
        }
    }

    /// [`Driver::trace_handled`] for a KEYFLOOD of the fast path, given its bytes.
    #[inline(never)]
    pub(super) fn trace_key_flood(&mut self, link: LinkId, frame: &[u8]) {
        if let Some(flood) = KeyFloodRef::parse(frame) {
            self.trace_handled(link, FrameFields::of_key_flood(&flood));
        }
    }

    /// A frame just handed to the servent on `link`, and what it decided about it: the
    /// query a client's request became, and why a query went no further.
    pub(super) fn trace_handled(&mut self, link: LinkId, frame: FrameFields) {
        let mut received = self.link_event(link, EventKind::Received);
        received.query = frame.flood_query();
        received.frame = Some(frame);
        let mut dropped = Vec::new();
        while let Some(verdict) = self.servent.poll_verdict() {
            match verdict {
                Verdict::Started(query) => received.query = Some(query.to_string()),
                Verdict::Dropped(query, reason) => dropped.push(TraceEvent {
                    event: EventKind::Dropped,
                    query: Some(query.to_string()),
                    reason: Some(reason.name().to_string()),
                    ..received.clone()
                }),
            }
        }
        self.record(received);
        for event in dropped {
            self.record(event);
        }
    }

    /// A link closed for `reason` (before it is gone, so its addresses are known).
    pub(super) fn trace_drop(&mut self, link: LinkId, reason: &str) {
        if self.tracer.is_none() {
            return;
        }
        let event = TraceEvent {
            reason: Some(reason.to_string()),
            ..self.link_event(link, EventKind::Dropped)
        };
        self.record(event);
    }
}
