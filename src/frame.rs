//! The bridge's wire format: frames between the shim and its Python worker.
//!
//! Sits between the transports (FastCGI, CGI), which produce one request
//! model, and the Python worker (`src/worker.py`), which runs the WSGI app.
//! Pure codec: `&[u8]` in, values out; no I/O.
//!
//! # The protocol
//!
//! The worker is started as `python -c LOADER fcgi-shim-worker` with
//! fd 0 = /dev/null, fd 1 and fd 2 = the shim's log pipe, fd 3 = frames from
//! the shim, fd 4 = frames to the shim. The loader reads a 4-byte
//! little-endian length and then that many bytes of Python source (the
//! worker, shipped inside the binary) from fd 3 and runs it.
//!
//! After that, both directions carry frames. All integers little-endian.
//!
//! ```text
//! frame  = type:u8  id:u16  len:u32  payload[len]      (7-byte header)
//! pairs  = n:u32  len[2n]:u32  bytes                  (name0 value0 name1 ...)
//! ```
//!
//! `id` is the request id; the single-request worker echoes it.
//!
//! Shim to worker:
//! - `C` config, once, first: `pairs` with keys `app` ("module:name" or
//!   ""), `django` ("1" when settings_module is set), `path` (repeated, one
//!   search_path entry each, in order), `run_once` ("1" under CGI), `threads`
//!   (runfcgi method=threaded: run requests in that many threads at once;
//!   absent means one at a time).
//! - `R` request: `flags:u8` (bit 0: the body below is the whole body; bit 1:
//!   the scheme is https), then `pairs` (the CGI params, bytes), then the rest
//!   of the payload is the first part of the body (may be empty).
//! - `I` input: more body bytes, in answer to `G`, never empty.
//! - `Z` end of input, in answer to `G`: empty payload.
//!
//! Worker to shim:
//! - `K` ready, once after `C`: `pairs` with `python` (version), `executable`,
//!   `sys_path` (entries joined by "\n"), `import_ms`.
//! - `F` failed to load the app, once after `C` instead of `K`: payload is the
//!   traceback (UTF-8); the worker then exits.
//! - `G` get input: `max:u32`, the most bytes wanted.
//! - `O` output: response bytes, at most [`MAX_OUTPUT`] per frame. The first
//!   output of a response begins with the CGI header block
//!   (`Status: 200 OK\r\nName: value\r\n\r\n`).
//! - `D` done: `code:u8`: 0 the response is complete; 1 the app failed before
//!   any output (the shim sends its fixed 500 page; the rest of the payload
//!   is the traceback, shown only to clients site.toml's `debug_allow`
//!   lists); 2 the app failed after output started (the shim ends the
//!   response as it is). Bit 0x80 of the code: the worker exits after this
//!   request (the app called sys.exit()); the next request needs a new one.
//!
//! EOF on fd 3 tells the worker to exit.

/// Size of a frame header: type, id, length.
pub const HEADER_LEN: usize = 7;

/// Largest `O` payload; one output frame fits one FastCGI STDOUT record.
pub const MAX_OUTPUT: usize = 65535;

/// Largest frame the shim accepts from the worker (a `K` or `F` with a long
/// traceback is the biggest). Anything larger is a broken worker.
pub const MAX_FROM_WORKER: usize = 1 << 20;

// Frame types, named by the letter on the wire.
pub const CONFIG: u8 = b'C';
pub const REQUEST: u8 = b'R';
pub const INPUT: u8 = b'I';
pub const INPUT_END: u8 = b'Z';
pub const READY: u8 = b'K';
pub const FAILED: u8 = b'F';
pub const GET_INPUT: u8 = b'G';
pub const OUTPUT: u8 = b'O';
pub const DONE: u8 = b'D';

/// `R` flag: the body in this frame is the whole body.
pub const FLAG_BODY_COMPLETE: u8 = 1;
/// `R` flag: the request came over https.
pub const FLAG_HTTPS: u8 = 2;

/// `D` codes.
pub const DONE_OK: u8 = 0;
pub const DONE_FAILED_BEFORE_OUTPUT: u8 = 1;
pub const DONE_FAILED_AFTER_OUTPUT: u8 = 2;
/// `D` code bit: the worker exits after this request.
pub const DONE_EXITING: u8 = 0x80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub id: u16,
    pub len: u32,
}

pub fn header(kind: u8, id: u16, len: usize) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_le_bytes();
    let i = id.to_le_bytes();
    [kind, i[0], i[1], l[0], l[1], l[2], l[3]]
}

/// Decodes a frame header from the front of `buf`; None if fewer than
/// [`HEADER_LEN`] bytes are there.
pub fn decode_header(buf: &[u8]) -> Option<Header> {
    let b = buf.get(..HEADER_LEN)?;
    Some(Header {
        kind: b[0],
        id: u16::from_le_bytes([b[1], b[2]]),
        len: u32::from_le_bytes([b[3], b[4], b[5], b[6]]),
    })
}

/// Bytes that `pairs` of these names and values take on the wire.
pub fn pairs_len<'a>(items: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> usize {
    items.fold(4, |acc, (n, v)| acc + 8 + n.len() + v.len())
}

/// Appends `pairs`: a count, all the lengths, then all the bytes. The
/// lengths come first so that the worker unpacks them with one
/// `struct.unpack_from` call.
pub fn push_pairs<'a, I>(out: &mut Vec<u8>, items: I)
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let n = items.clone().count();
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for (name, value) in items.clone() {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in items {
        out.extend_from_slice(name);
        out.extend_from_slice(value);
    }
}

pub type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Decodes `pairs` from the front of `buf`. Returns the pairs and the bytes
/// they took, or None when the lengths do not fit the buffer.
pub fn decode_pairs(buf: &[u8]) -> Option<(Pairs<'_>, usize)> {
    let n = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let lens_end = n.checked_mul(8)?.checked_add(4)?;
    let lens = buf.get(4..lens_end)?;
    let mut pos = lens_end;
    let mut out = Vec::with_capacity(n.min(1024));
    for l in lens.chunks_exact(8) {
        let nl = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let vl = u32::from_le_bytes([l[4], l[5], l[6], l[7]]) as usize;
        let name = buf.get(pos..pos.checked_add(nl)?)?;
        pos += nl;
        let value = buf.get(pos..pos.checked_add(vl)?)?;
        pos += vl;
        out.push((name, value));
    }
    Some((out, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_literal_bytes_and_round_trip() {
        let h = header(OUTPUT, 0x0102, 65535);
        assert_eq!(h, [b'O', 0x02, 0x01, 0xff, 0xff, 0, 0]);
        assert_eq!(
            decode_header(&h),
            Some(Header {
                kind: OUTPUT,
                id: 0x0102,
                len: 65535
            })
        );
        for cut in 0..HEADER_LEN {
            assert_eq!(decode_header(&h[..cut]), None);
        }
    }

    #[test]
    fn pairs_literal_bytes() {
        let items = [(&b"A"[..], &b"bc"[..]), (&b""[..], &b""[..])];
        let mut out = Vec::new();
        push_pairs(&mut out, items.iter().copied());
        assert_eq!(
            out,
            [
                2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'A', b'b', b'c'
            ]
        );
        assert_eq!(pairs_len(items.iter().copied()), out.len());
        let (got, used) = decode_pairs(&out).expect("valid pairs");
        assert_eq!(used, out.len());
        assert_eq!(got, items);
    }

    #[test]
    fn pairs_survive_any_bytes_and_boundary_lengths() {
        for len in [0usize, 127, 128, 65535, 65536] {
            let v: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
            let mut out = Vec::new();
            push_pairs(&mut out, [(&b"\0\xff"[..], &v[..])].into_iter());
            let (got, _) = decode_pairs(&out).expect("valid pairs");
            assert_eq!(got, [(&b"\0\xff"[..], &v[..])]);
        }
    }

    #[test]
    fn truncated_or_lying_pairs_are_none() {
        let mut out = Vec::new();
        push_pairs(&mut out, [(&b"NAME"[..], &b"value"[..])].into_iter());
        for cut in 0..out.len() {
            assert_eq!(decode_pairs(&out[..cut]), None, "cut {cut}");
        }
        assert_eq!(decode_pairs(&[0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            decode_pairs(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            None
        );
    }
}
