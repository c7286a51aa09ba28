//! A connection's bytes as the responder walks them: `record::decode` in a
//! loop, BEGIN_REQUEST through `decode_begin`, PARAMS joined across records
//! and decoded with `pairs` once the empty PARAMS ends them, then `environ`
//! and the `R` frame; management records answered on the way.
//!
//! The state machine is a model of `fastcgi.rs` (read_request, next_stdin),
//! whose connection code needs a socket; every codec it calls is the real
//! one. The site for `environ` is picked by BEGIN_REQUEST's first reserved
//! byte, which the responder ignores.
#![no_main]

use fcgi_shim::fastcgi::MAX_PARAMS;
use fcgi_shim::record::{self, Decoded};
use fcgi_shim_fuzz::{
    check_management, check_partial, check_record, fastcgi_pairs, prepare_and_frame,
};
use libfuzzer_sys::fuzz_target;

enum State {
    /// Waiting for BEGIN_REQUEST.
    Idle,
    Params {
        id: u16,
        keep: bool,
        selector: u8,
    },
    Stdin {
        id: u16,
        keep: bool,
    },
}

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    let mut state = State::Idle;
    let mut params = Vec::new();
    loop {
        let buf = &data[pos..];
        let h = match record::decode(buf) {
            Ok(Decoded::Record(h)) => h,
            Ok(Decoded::Partial { needed }) => {
                // The peer closed, cleanly or mid-record.
                check_partial(buf, needed);
                return;
            }
            Err(record::Error::BadVersion(v)) => {
                assert_eq!(v, buf[0]);
                return; // the connection ends
            }
            Err(e) => panic!("decode returned {e:?}"),
        };
        let content = check_record(buf, h);
        pos += h.record_len();
        if h.id == 0 {
            check_management(h.kind, content);
            continue;
        }
        state = match state {
            State::Idle if h.kind != record::BEGIN_REQUEST => State::Idle, // ignored
            State::Idle => {
                let Ok(begin) = record::decode_begin(content) else {
                    return; // bad BEGIN_REQUEST body ends the connection
                };
                let keep = begin.flags & record::KEEP_CONN != 0;
                if begin.role != record::RESPONDER {
                    if !keep {
                        return; // UNKNOWN_ROLE, then close
                    }
                    State::Idle
                } else {
                    params.clear();
                    State::Params {
                        id: h.id,
                        keep,
                        selector: content[3],
                    }
                }
            }
            State::Params { id, keep, selector } => match h.kind {
                record::PARAMS if h.id == id && content.is_empty() => {
                    if let Some(pairs) = fastcgi_pairs(&params) {
                        prepare_and_frame(&pairs, selector, b"");
                    }
                    State::Stdin { id, keep }
                }
                record::PARAMS if h.id == id => {
                    if params.len() + content.len() > MAX_PARAMS {
                        return;
                    }
                    params.extend_from_slice(content);
                    State::Params { id, keep, selector }
                }
                record::ABORT_REQUEST if h.id == id => {
                    if !keep {
                        return;
                    }
                    State::Idle
                }
                // BEGIN_REQUEST for another id: CANT_MPX_CONN; others ignored.
                _ if h.id != id => State::Params { id, keep, selector },
                _ => return, // another record type before the end of PARAMS
            },
            State::Stdin { id, keep } => match h.kind {
                record::STDIN if h.id == id && content.is_empty() => {
                    if !keep {
                        return;
                    }
                    State::Idle
                }
                // Body bytes go to the app as they come; nothing to keep.
                record::STDIN if h.id == id => State::Stdin { id, keep },
                record::ABORT_REQUEST if h.id == id => {
                    if !keep {
                        return;
                    }
                    State::Idle
                }
                record::BEGIN_REQUEST if h.id == id => return, // already open
                _ => State::Stdin { id, keep },
            },
        };
    }
});
