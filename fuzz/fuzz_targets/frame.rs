//! Arbitrary bytes through every frame decoder: nothing may panic, allocate beyond the frame bound,
//! or decode to something that does not encode back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_ps::frame::{self, Hello, HEADER_LEN};

/// Frame bound for the fuzzer: small, so an over-trusting length shows up as a huge allocation.
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = data.first_chunk::<HEADER_LEN>() {
        if let Ok(header) = frame::decode_header(h, MAX) {
            assert!(header.len <= MAX);
            assert_eq!(&frame::encode_header(header.kind, header.flags, header.id, header.len), h);
        }
    }

    if let Ok(hello) = Hello::decode(data) {
        let mut again = Vec::new();
        hello.encode(&mut again);
        assert_eq!(again, data);
    }

    let mut keys = Vec::new();
    let mut values = Vec::new();
    for key_flags in [0, frame::FLAG_DELTA_KEYS] {
        if let Ok((table, got)) = frame::decode_pull(data, key_flags, &mut keys) {
            // Every key list has one encoding: decoding and encoding again gives the same bytes.
            let mut again = Vec::new();
            frame::encode_pull(table, got, key_flags, &mut again);
            assert_eq!(again, data);
        }
        for flags in [key_flags, key_flags | frame::FLAG_F16] {
            // A few tables of the usual row widths, and one the server does not have.
            let dim = |t: u32| [Some(1), Some(9), Some(17), None][t as usize % 4];
            if let Ok(view) = frame::decode_push(data, flags, dim, &mut keys, &mut values) {
                if let Some((ks, vs)) = view.rows {
                    assert_eq!(vs.len(), ks.len() * dim(view.table).unwrap());
                    let mut again = Vec::new();
                    frame::encode_push(view.table, ks, vs, flags, &mut again);
                    if flags & frame::FLAG_F16 == 0 {
                        assert_eq!(again, data);
                    } else {
                        assert_eq!(again.len(), data.len());
                    }
                }
            }
        }
    }

    // A stream of frames: read until the first error, never past the bound.
    let mut stream = data;
    let mut payload = Vec::new();
    while let Ok(h) = frame::read_frame(&mut stream, MAX, &mut payload) {
        assert_eq!(payload.len(), h.len);
        let _ = frame::decode_text(&payload);
    }
});
