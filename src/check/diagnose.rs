//! Bytes shown to people, and the guesses that turn a difference in bytes into a
//! sentence: a byte-swapped field is little-endian, a topology string with two spaces
//! was appended without trimming, and so on.

use std::net::Ipv4Addr;

use crate::protocol::{self, Frame};

/// Bytes as `00 09 00 00 ...`, cut after 64 with the total.
pub fn hex(bytes: &[u8]) -> String {
    const SHOWN: usize = 64;
    let mut s = bytes
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if bytes.len() > SHOWN {
        s.push_str(&format!(" … ({} bytes)", bytes.len()));
    }
    if bytes.is_empty() {
        s.push_str("(no bytes)");
    }
    s
}

/// A frame in words and in hex: `RESP seq=7 value="x" [00 09 ...]`.
pub fn show_frame(bytes: &[u8]) -> String {
    match protocol::decode(bytes) {
        Ok(Some((frame, n))) if n == bytes.len() => format!("{frame} [{}]", hex(bytes)),
        _ => format!("[{}]", hex(bytes)),
    }
}

/// The frame in `bytes`, when it is exactly one.
pub fn parse(bytes: &[u8]) -> Option<Frame> {
    match protocol::decode(bytes) {
        Ok(Some((frame, n))) if n == bytes.len() => Some(frame),
        _ => None,
    }
}

/// One fixed-width big-endian field of a frame layout.
struct Field {
    name: &'static str,
    at: usize,
    width: usize,
}

const fn f(name: &'static str, at: usize, width: usize) -> Field {
    Field { name, at, width }
}

fn layout(kind: u16) -> &'static [Field] {
    const ID: &[Field] = &[f("type", 0, 2), f("port", 2, 2)];
    const REQ: &[Field] = &[f("type", 0, 2), f("seq", 2, 4), f("length", 6, 2)];
    const TOPOREQ: &[Field] = &[f("type", 0, 2), f("seq", 2, 4)];
    const FLOOD: &[Field] = &[
        f("type", 0, 2),
        f("ttl", 2, 2),
        f("seq", 4, 4),
        f("ip", 8, 4),
        f("port", 12, 2),
        f("length", 14, 2),
    ];
    match kind {
        protocol::TYPE_ID => ID,
        protocol::TYPE_KEYREQ | protocol::TYPE_RESP => REQ,
        protocol::TYPE_TOPOREQ => TOPOREQ,
        _ => FLOOD,
    }
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// Sentences explaining how `got` differs from the frame `expected`, field by field.
pub fn compare(expected: &Frame, got: &[u8]) -> Vec<String> {
    let want = expected.to_bytes();
    let kind = u16::from_be_bytes([want[0], want[1]]);
    let mut out = Vec::new();
    for field in layout(kind) {
        let range = field.at..field.at + field.width;
        let (Some(w), Some(g)) = (want.get(range.clone()), got.get(range)) else {
            continue;
        };
        if w == g {
            continue;
        }
        let (wv, gv) = (be(w), be(g));
        if le(g) == wv {
            out.push(format!(
                "the {} field is little-endian: {} = {gv}; read little-endian it is {wv}, the \
                 expected {} (§3: every integer is big-endian)",
                field.name,
                hex(g),
                field.name
            ));
        } else if field.name == "type" {
            out.push(format!(
                "expected a frame of type {wv} ({}), got type {gv}",
                protocol_name(wv as u16),
            ));
        } else if field.name == "ip" {
            let ip = Ipv4Addr::from(gv as u32);
            let hint = if ip == Ipv4Addr::LOCALHOST {
                ": 127.0.0.1 written instead of the client's own address (hard-coded?)"
            } else if ip.is_unspecified() {
                ": 0.0.0.0, the listening address, is no address to answer to"
            } else {
                ""
            };
            out.push(format!(
                "the ip field is {ip}, expected {}{hint}",
                Ipv4Addr::from(wv as u32)
            ));
        } else if field.name == "seq" {
            // Another query's frame: its other fields say nothing about this one.
            return vec![format!(
                "another query's frame came (seq {gv}, expected {wv})"
            )];
        } else if field.name == "ttl" {
            out.push(ttl_hint(wv, gv));
        } else {
            out.push(format!("the {} field is {gv}, expected {wv}", field.name));
        }
    }
    if got.len() != want.len() && out.is_empty() {
        out.push(format!(
            "{} bytes where {} were expected",
            got.len(),
            want.len()
        ));
    }
    out
}

/// Why bytes that announce a frame are none: a length field over 400 that reads as a
/// fitting length little-endian.
pub fn unframed(bytes: &[u8]) -> Vec<String> {
    let Some(kind) = bytes.get(..2).map(|t| u16::from_be_bytes([t[0], t[1]])) else {
        return Vec::new();
    };
    if !(protocol::TYPE_ID..=protocol::TYPE_RESP).contains(&kind) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for field in layout(kind).iter().filter(|f| f.name == "length") {
        let end = field.at + field.width;
        let Some(g) = bytes.get(field.at..end) else {
            continue;
        };
        let (big, little) = (be(g), le(g));
        if big <= protocol::MAX_TEXT as u64 || little > protocol::MAX_TEXT as u64 {
            continue;
        }
        let after = bytes.len() - end;
        let fits = if after as u64 == little {
            format!(", the size of the {after} bytes that follow")
        } else {
            String::new()
        };
        out.push(format!(
            "the length field is little-endian: {} = {big}; read little-endian it is \
             {little}{fits} (§3: every integer is big-endian)",
            hex(g)
        ));
    }
    out
}

/// Why a TTL came out as it did.
pub fn ttl_hint(want: u64, got: u64) -> String {
    if got + 1 == want {
        format!(
            "TTL {got} where {want} was expected: decremented once too often (the 2019 \
             assignment's decrement-then-test rule, §7?)"
        )
    } else if got == want + 1 {
        format!("TTL {got} where {want} was expected: not decremented (§7)")
    } else {
        format!("TTL {got}, expected {want} (§7)")
    }
}

fn protocol_name(kind: u16) -> &'static str {
    match kind {
        4 => "ID",
        5 => "KEYREQ",
        6 => "TOPOREQ",
        7 => "KEYFLOOD",
        8 => "TOPOFLOOD",
        9 => "RESP",
        _ => "no such type",
    }
}

/// Why a topology string is not `expected` (§8).
pub fn topology(expected: &str, got: &[u8]) -> Vec<String> {
    let got = String::from_utf8_lossy(got);
    let mut out = Vec::new();
    if got.starts_with(' ') || got.ends_with(' ') {
        out.push("a leading or trailing space (§8: none)".into());
    }
    if got.contains("  ") {
        out.push("two spaces between entries (§8: one; trim before appending)".into());
    }
    if got.contains("0.0.0.0") {
        out.push("0.0.0.0 named: the listening address, not the one the peer reached (§8)".into());
    }
    if got.replace(' ', "") == expected.replace(' ', "") && !got.contains(' ') {
        out.push("appended without the space (§8: one space between entries)".into());
    }
    let (want, have): (Vec<&str>, Vec<&str>) = (
        expected.split_whitespace().collect(),
        got.split_whitespace().collect(),
    );
    for (w, h) in want.iter().zip(&have) {
        let (Some((wip, wport)), Some((hip, hport))) = (w.rsplit_once(':'), h.rsplit_once(':'))
        else {
            continue;
        };
        if wip == hip && wport != hport {
            out.push(format!(
                "{h} names the right address but port {hport}, not the listening port \
                 {wport}: the connection's own (ephemeral) port? (§8: the port it listens on)"
            ));
        } else if wport == hport && wip != hip {
            out.push(format!(
                "{h}: address {hip}, expected {wip}, the address it was reached at (§8)"
            ));
        }
    }
    if out.is_empty() {
        out.push(format!("{got:?} is not {expected:?}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Flood, Text};
    use std::net::SocketAddrV4;

    fn resp(seq: u32, value: &str) -> Frame {
        Frame::Resp {
            seq,
            value: Text::new(value).unwrap(),
        }
    }

    #[test]
    fn a_byte_swapped_length_is_called_little_endian() {
        let mut got = resp(7, "RedesRules").to_bytes();
        got.swap(6, 7);
        let hints = compare(&resp(7, "RedesRules"), &got);
        assert_eq!(hints.len(), 1, "{hints:?}");
        assert!(
            hints[0].contains("length field is little-endian"),
            "{hints:?}"
        );
        assert!(hints[0].contains("0a 00 = 2560"), "{hints:?}");
    }

    #[test]
    fn an_over_long_length_that_fits_little_endian_is_named() {
        let mut got = Frame::KeyReq {
            seq: 0,
            key: Text::new("alpha").unwrap(),
        }
        .to_bytes();
        got.swap(6, 7);
        let hints = unframed(&got);
        assert_eq!(hints.len(), 1, "{hints:?}");
        assert!(hints[0].contains("05 00 = 1280"), "{hints:?}");
        assert!(
            hints[0].contains("it is 5, the size of the 5 bytes"),
            "{hints:?}"
        );
        // A length over 400 either way is no endianness slip.
        assert!(unframed(&[0, 5, 0, 0, 0, 0, 0xff, 0xff]).is_empty());
        assert!(unframed(&[0x48, 0x54, 0x54, 0x50]).is_empty());
    }

    #[test]
    fn another_query_is_named_as_such_and_nothing_else() {
        let hints = compare(&resp(7, "a"), &resp(8, "bb").to_bytes());
        assert_eq!(hints, ["another query's frame came (seq 8, expected 7)"]);
    }

    #[test]
    fn loopback_in_a_flood_is_called_hard_coded() {
        let flood = |ip: [u8; 4]| {
            Frame::KeyFlood(Flood {
                ttl: 3,
                seq: 1,
                client: SocketAddrV4::new(ip.into(), 5151),
                text: Text::new("k").unwrap(),
            })
        };
        let hints = compare(&flood([10, 0, 0, 2]), &flood([127, 0, 0, 1]).to_bytes());
        assert!(hints[0].contains("hard-coded"), "{hints:?}");
    }

    #[test]
    fn ttl_one_short_is_the_2019_rule() {
        assert!(ttl_hint(2, 1).contains("2019"));
        assert!(ttl_hint(2, 3).contains("not decremented"));
    }

    #[test]
    fn topology_strings_are_diagnosed() {
        let want = "10.0.0.1:5001 10.0.0.2:5002";
        assert!(topology(want, b"10.0.0.1:500110.0.0.2:5002")[0].contains("without the space"));
        assert!(topology(want, b"10.0.0.1:5001  10.0.0.2:5002")[0].contains("two spaces"));
        assert!(topology(want, b"10.0.0.1:5001 10.0.0.2:5002 ")[0].contains("trailing"));
        let port = topology(want, b"10.0.0.1:5001 10.0.0.2:41234");
        assert!(port[0].contains("not the listening port 5002"), "{port:?}");
        assert!(topology(want, b"10.0.0.1:5001 0.0.0.0:5002")
            .iter()
            .any(|h| h.contains("0.0.0.0")));
    }

    #[test]
    fn hex_is_cut_after_64_bytes() {
        assert_eq!(hex(&[0, 9]), "00 09");
        assert!(hex(&[0; 100]).ends_with("… (100 bytes)"));
        assert_eq!(hex(&[]), "(no bytes)");
    }
}
