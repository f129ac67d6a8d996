#![no_main]

use libfuzzer_sys::fuzz_target;
use tp3kv::protocol::{decode, decode_all, DecodeError, MAX_TEXT};

fuzz_target!(|data: &[u8]| {
    let (frames, used, err) = decode_all(data);
    assert!(used <= data.len());
    // Every decoded frame re-encodes to exactly the bytes it came from.
    let mut again = Vec::with_capacity(used);
    for frame in &frames {
        let start = again.len();
        frame.encode(&mut again);
        assert_eq!(again.len() - start, frame.encoded_len());
        assert_eq!(
            decode(&again[start..]),
            Ok(Some((frame.clone(), frame.encoded_len())))
        );
    }
    assert_eq!(&again[..], &data[..used]);
    // decode_all stops exactly where decode would, and an error shows in the header.
    let rest = &data[used..];
    match err {
        None => assert_eq!(decode(rest), Ok(None)),
        Some(e) => {
            assert_eq!(decode(rest), Err(e));
            let header = match e {
                DecodeError::UnknownType(_) => 2,
                DecodeError::TooLong { kind, len } => {
                    assert!(usize::from(len) > MAX_TEXT);
                    match kind {
                        5 | 9 => 8,
                        7 | 8 => 16,
                        other => panic!("TooLong for type {other}, which has no len"),
                    }
                }
            };
            assert_eq!(decode(&rest[..header]), Err(e));
        }
    }
});
