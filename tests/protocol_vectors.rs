//! The codec against `tests/data/wire-vectors.json` (docs/PROTOCOL.md's examples) and
//! against itself: every vector decodes to its frame and encodes back byte for byte,
//! invalid headers are refused before their body, and a stream decodes the same
//! whether it arrives whole or one byte at a time.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::Value;
use tp3kv::protocol::{decode, decode_all, DecodeError, Flood, Frame, Text, MAX_TEXT};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wire-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn text(v: &Value) -> Text {
    Text::try_from(v.as_str().unwrap()).unwrap()
}

fn num<T: TryFrom<u64>>(v: &Value) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(v.as_u64().unwrap()).unwrap()
}

/// The frame a vector's JSON describes.
fn frame_of(v: &Value) -> Frame {
    let flood = |key: &str| Flood {
        ttl: num(&v["ttl"]),
        seq: num(&v["seq"]),
        client: SocketAddrV4::new(
            v["ip"].as_str().unwrap().parse::<Ipv4Addr>().unwrap(),
            num(&v["port"]),
        ),
        text: text(&v[key]),
    };
    match v["type"].as_str().unwrap() {
        "ID" => Frame::Id {
            port: num(&v["port"]),
        },
        "KEYREQ" => Frame::KeyReq {
            seq: num(&v["seq"]),
            key: text(&v["key"]),
        },
        "TOPOREQ" => Frame::TopoReq {
            seq: num(&v["seq"]),
        },
        "KEYFLOOD" => Frame::KeyFlood(flood("key")),
        "TOPOFLOOD" => Frame::TopoFlood(flood("info")),
        "RESP" => Frame::Resp {
            seq: num(&v["seq"]),
            value: text(&v["value"]),
        },
        other => panic!("vector of unknown type {other}"),
    }
}

#[test]
fn valid_vectors_decode_and_encode_exactly() {
    let vectors = vectors();
    let valid = vectors["valid"].as_array().unwrap();
    assert!(valid.len() >= 6);
    for v in valid {
        let bytes = hex(v["hex"].as_str().unwrap());
        let expected = frame_of(&v["frame"]);
        let (frame, used) = decode(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", v["name"]))
            .unwrap_or_else(|| panic!("{}: incomplete", v["name"]));
        assert_eq!(frame, expected, "{}", v["name"]);
        assert_eq!(used, bytes.len(), "{}", v["name"]);
        assert_eq!(expected.to_bytes(), bytes, "{}", v["name"]);
        assert_eq!(expected.encoded_len(), bytes.len(), "{}", v["name"]);
        // Every strict prefix is "need more", never an error.
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Ok(None),
                "{} cut at {cut}",
                v["name"]
            );
        }
    }
}

#[test]
fn invalid_vectors_are_refused_from_the_header() {
    for v in vectors()["invalid"].as_array().unwrap() {
        let bytes = hex(v["hex"].as_str().unwrap());
        let result = decode(&bytes);
        assert!(result.is_err(), "{}: {result:?}", v["name"]);
        // The header alone is enough: a body never needs to arrive.
        let header_len = match result.unwrap_err() {
            DecodeError::UnknownType(_) => 2,
            DecodeError::TooLong { .. } => bytes.len(),
        };
        assert!(decode(&bytes[..header_len]).is_err(), "{}", v["name"]);
    }
}

#[test]
fn stream_vectors() {
    for v in vectors()["stream"].as_array().unwrap() {
        let bytes = hex(v["hex"].as_str().unwrap());
        let (frames, used, error) = decode_all(&bytes);
        assert_eq!(error, None, "{}", v["name"]);
        if v["incomplete"].as_bool() == Some(true) {
            assert!(frames.is_empty() && used == 0, "{}", v["name"]);
        } else {
            let expected: Vec<Frame> = v["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(frame_of)
                .collect();
            assert_eq!(frames, expected, "{}", v["name"]);
            assert_eq!(used, bytes.len(), "{}", v["name"]);
        }
    }
}

fn sample_frames() -> Vec<Frame> {
    let client = SocketAddrV4::new(Ipv4Addr::new(192, 168, 7, 9), 65535);
    vec![
        Frame::Id { port: 0 },
        Frame::Id { port: 1 },
        Frame::KeyReq {
            seq: 0,
            key: Text::try_from("ssh").unwrap(),
        },
        Frame::TopoReq { seq: u32::MAX },
        Frame::KeyFlood(Flood {
            ttl: 0,
            seq: 12,
            client,
            text: Text::new(vec![0xff, 0x00, b'k']).unwrap(),
        }),
        Frame::TopoFlood(Flood {
            ttl: u16::MAX,
            seq: 1,
            client,
            text: Text::new(vec![b'i'; MAX_TEXT]).unwrap(),
        }),
        Frame::Resp {
            seq: 99,
            value: Text::default(),
        },
    ]
}

#[test]
fn every_type_round_trips() {
    for frame in sample_frames() {
        let bytes = frame.to_bytes();
        assert_eq!(decode(&bytes), Ok(Some((frame.clone(), bytes.len()))));
    }
}

#[test]
fn one_byte_at_a_time_yields_the_same_frames() {
    let frames = sample_frames();
    let mut stream = Vec::new();
    for frame in &frames {
        frame.encode(&mut stream);
    }
    // Feed the stream as a reader would: append, decode what is whole, compact.
    let mut buffer = Vec::new();
    let mut decoded = Vec::new();
    for &byte in &stream {
        buffer.push(byte);
        let (mut got, used, error) = decode_all(&buffer);
        assert_eq!(error, None);
        buffer.drain(..used);
        decoded.append(&mut got);
    }
    assert!(buffer.is_empty());
    assert_eq!(decoded, frames);
    // And all at once.
    assert_eq!(decode_all(&stream), (frames, stream.len(), None));
}
