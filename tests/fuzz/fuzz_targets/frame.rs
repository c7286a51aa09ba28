//! The worker frame decoders (`frame::decode_header`, `decode_pairs`,
//! `decode_environ`) on any bytes, and a stream of frames walked as
//! `worker.rs` reads the worker's.
#![no_main]

use fcgi_shim::frame;
use fcgi_shim_fuzz::{check_frame_environ, check_frame_pairs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match frame::decode_header(data) {
        Some(h) => {
            assert!(data.len() >= frame::HEADER_LEN);
            let wire = frame::header(h.kind, h.id, h.len as usize);
            assert_eq!(
                wire[..],
                data[..frame::HEADER_LEN],
                "header fields are not the wire bytes"
            );
        }
        None => assert!(data.len() < frame::HEADER_LEN),
    }
    check_frame_pairs(data);
    check_frame_environ(data);

    // Frames one after another, as Worker::next walks its buffer.
    let mut pos = 0;
    while let Some(h) = frame::decode_header(&data[pos..]) {
        if h.len as usize > frame::MAX_FROM_WORKER {
            break; // a broken worker: killed
        }
        let need = frame::HEADER_LEN + h.len as usize;
        let Some(payload) = data.get(pos + frame::HEADER_LEN..pos + need) else {
            break; // waits for more
        };
        match h.kind {
            frame::READY | frame::FAILED | frame::CONFIG => check_frame_pairs(payload),
            frame::REQUEST => {
                if let Some(rest) = payload.get(frame::REQUEST_HEAD_LEN..) {
                    check_frame_environ(rest);
                }
            }
            frame::DONE => {
                // As bridge::relay reads it.
                let _code = payload.first().copied().unwrap_or(frame::DONE_OK);
                let _detail = String::from_utf8_lossy(payload.get(1..).unwrap_or(&[]));
            }
            _ => {}
        }
        pos += need;
    }
});
