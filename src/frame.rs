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
//!   absent means one at a time), `probe` ([`ENVIRON_PROBE`] encoded as an
//!   environ, below).
//! - `R` request: `flags:u8` (bit 0: the body below is the whole body; bit 1:
//!   the scheme is https), `content_length:u64` (CONTENT_LENGTH as the shim
//!   parsed it; [`NO_LENGTH`] when absent or not a number), `environ_len:u32`,
//!   then `environ` (the CGI params, below), then the rest of the payload is
//!   the first part of the body (may be empty).
//! - `I` input: more body bytes, in answer to `G`, never empty.
//! - `Z` end of input, in answer to `G`: empty payload.
//!
//! Worker to shim:
//! - `K` ready, once after `C`: `pairs` with `python` (version), `executable`,
//!   `sys_path` (entries joined by "\n"), `import_ms`, and `django_debug`
//!   ("1" or "0") when the app loaded Django's settings.
//! - `F` failed to load the app, once after `C` instead of `K`: `pairs` with
//!   `python`, `executable` and `sys_path` as in `K`, and `traceback` (UTF-8);
//!   the worker then exits.
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
//!
//! # The environ of an `R` frame
//!
//! The params travel as a dict in the format of Python's `marshal` module,
//! so that the worker builds the whole environ with one `marshal.loads`, in
//! C (a quarter of the time a decoding loop in Python takes). Only four of
//! marshal's type codes are used, all of them read by every Python since
//! 3.4:
//!
//! ```text
//! environ = '{' (str str)* '0'                    a dict; a later key wins
//! str     = 'z' len:u8 ascii[len]                 ASCII, shorter than 256
//!         | 'a' len:u32 ascii[len]                ASCII
//!         | 'u' len:u32 utf8[len]                 anything else
//! ```
//!
//! Each param is bytes, and PEP 3333 wants it as the native string whose
//! code points are those bytes (latin-1): a byte of 0x80 or more becomes
//! that code point, written in UTF-8 (two bytes). The worker checks at start
//! that its `marshal` reads a sample of this encoding back exactly (the `C`
//! frame's `probe`), so a Python that ever changed the format would fail
//! with a clear message instead of misreading requests.

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
/// `R` content_length when CONTENT_LENGTH is absent or not a number.
pub const NO_LENGTH: u64 = u64::MAX;
/// Bytes of an `R` payload before its environ: flags, content_length,
/// environ_len.
pub const REQUEST_HEAD_LEN: usize = 13;

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

/// The `C` frame's `probe`: these params, encoded by [`push_environ`]. The
/// worker decodes them with its `marshal` and compares with the same list in
/// worker.py (`_PROBE`): each type code, and latin-1 past 0x7f.
pub const ENVIRON_PROBE: [(&[u8], &[u8]); 3] = [
    (b"SHORT", b""),
    (b"LATIN_1", b"caf\xe9 \x80\xff"),
    (b"LONG", &[b'-'; 300]),
];

/// Bytes of `s` at or past 0x80: each takes two bytes in UTF-8.
#[inline]
fn high_bytes(s: &[u8]) -> usize {
    s.iter().map(|&b| usize::from(b >> 7)).sum()
}

/// `dst.copy_from_slice(src)` for the short strings of an environ, without
/// a call to memcpy. musl's memcpy (src/string/x86_64/memcpy.s) moves what
/// is not a whole word one byte at a time (`movsb`) and starts `rep movsq`
/// even when there is no word to move. An environ is forty such strings
/// (42 of the 55 memcpy calls of a request), and a profile of the shim
/// behind nginx had memcpy at 9.8% of its samples (1.8% with this). Two
/// copies of a fixed size that overlap in the middle cover any length in
/// between, and compile to plain loads and stores.
#[inline]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    debug_assert_eq!(dst.len(), src.len());
    fn two<const N: usize>(dst: &mut [u8], src: &[u8]) {
        let n = src.len();
        dst[..N].copy_from_slice(&src[..N]);
        dst[n - N..].copy_from_slice(&src[n - N..]);
    }
    match src.len() {
        0 => {}
        n @ 1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => two::<4>(dst, src),
        8..=16 => two::<8>(dst, src),
        17..=32 => two::<16>(dst, src),
        33..=64 => two::<32>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// Writes one param at the front of `out` as a marshal str of its bytes
/// read as latin-1 (see the module docs), `high` of them past 0x7f; returns
/// the bytes written. `out` has room for them.
#[inline]
fn put_str(out: &mut [u8], s: &[u8], high: usize) -> usize {
    if high == 0 && s.len() < 256 {
        out[0] = b'z';
        out[1] = s.len() as u8;
        copy_short(&mut out[2..2 + s.len()], s);
        return 2 + s.len();
    }
    let len = s.len() + high;
    out[0] = if high == 0 { b'a' } else { b'u' };
    out[1..5].copy_from_slice(&(len as u32).to_le_bytes());
    let utf8 = &mut out[5..5 + len];
    if high == 0 {
        utf8.copy_from_slice(s);
    } else {
        let mut at = 0;
        for &b in s {
            if b < 0x80 {
                utf8[at] = b;
                at += 1;
            } else {
                utf8[at] = 0xc0 | b >> 6;
                utf8[at + 1] = 0x80 | (b & 0x3f);
                at += 2;
            }
        }
    }
    5 + len
}

/// Appends `items` as an `R` frame's environ (a marshal dict).
pub fn push_environ<'a>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
) {
    // One pass for the room (a tag and up to 4 length bytes a string, and
    // UTF-8's second bytes) and whether any byte is past 0x7f at all:
    // nearly always none, and then no string is looked at again. The
    // strings are then written in place: at opt-level "s" a Vec append per
    // string costs more than the copy.
    let (mut room, mut high) = (2, 0);
    for (name, value) in items.clone() {
        room += 10 + name.len() + value.len();
        high += high_bytes(name) + high_bytes(value);
    }
    let start = out.len();
    out.resize(start + room + high, 0);
    let body = &mut out[start..];
    body[0] = b'{';
    let mut at = 1;
    for (name, value) in items {
        for s in [name, value] {
            let h = if high == 0 { 0 } else { high_bytes(s) };
            at += put_str(&mut body[at..], s, h);
        }
    }
    body[at] = b'0';
    out.truncate(start + at + 1);
}

/// An environ as [`decode_environ`] returns it: (name, value) in order.
pub type Environ = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes what [`push_environ`] writes, in order, duplicates kept; the
/// bytes it took. None for anything else, a non-canonical tag included
/// ('a' for a short string, 'u' for ASCII). For tests and the fuzzers: the
/// worker decodes it with `marshal.loads`.
pub fn decode_environ(buf: &[u8]) -> Option<(Environ, usize)> {
    fn take_str(buf: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
        let kind = *buf.get(*pos)?;
        let (len, at) = match kind {
            b'z' => (usize::from(*buf.get(*pos + 1)?), *pos + 2),
            b'a' | b'u' => {
                let l = buf.get(*pos + 1..*pos + 5)?;
                (
                    u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize,
                    *pos + 5,
                )
            }
            _ => return None,
        };
        let bytes = buf.get(at..at.checked_add(len)?)?;
        *pos = at + len;
        match kind {
            b'z' => bytes.is_ascii().then(|| bytes.to_vec()),
            b'a' => (bytes.is_ascii() && len >= 256).then(|| bytes.to_vec()),
            // latin-1 back from UTF-8: only code points below 256 are ours.
            _ => std::str::from_utf8(bytes)
                .ok()
                .filter(|s| !s.is_ascii())?
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect(),
        }
    }
    if buf.first() != Some(&b'{') {
        return None;
    }
    let mut pos = 1;
    let mut out = Vec::new();
    while *buf.get(pos)? != b'0' {
        let name = take_str(buf, &mut pos)?;
        let value = take_str(buf, &mut pos)?;
        out.push((name, value));
    }
    Some((out, pos + 1))
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
    fn copy_short_copies_every_length_exactly() {
        // Each length crosses a different pair of fixed-size copies; the
        // bytes around the destination must stay as they were.
        let src: Vec<u8> = (1..=200).collect();
        for n in 0..=src.len() {
            let mut buf = [0xee_u8; 210];
            copy_short(&mut buf[5..5 + n], &src[..n]);
            assert_eq!(&buf[5..5 + n], &src[..n], "length {n}");
            assert!(
                buf[..5].iter().chain(&buf[5 + n..]).all(|&b| b == 0xee),
                "length {n}"
            );
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
    fn environ_literal_bytes() {
        let mut out = Vec::new();
        let long = [b'x'; 256];
        push_environ(
            &mut out,
            [
                (&b"A"[..], &b""[..]),
                (&b"B"[..], &b"caf\xe9"[..]),
                (&b"C"[..], &long[..]),
            ]
            .into_iter(),
        );
        let mut want = b"{z\x01Az\0z\x01Bu\x05\0\0\0caf\xc3\xa9z\x01Ca\0\x01\0\0".to_vec();
        want.extend_from_slice(&long);
        want.push(b'0');
        assert_eq!(out, want);
        let (got, used) = decode_environ(&out).expect("our own environ");
        assert_eq!(used, out.len());
        assert_eq!(got[1], (b"B".to_vec(), b"caf\xe9".to_vec()));
        assert_eq!(got[2].1.len(), 256);
    }

    #[test]
    fn environ_survives_any_bytes_and_boundary_lengths() {
        let all: Vec<u8> = (0..=255).collect();
        for len in [0usize, 127, 128, 255, 256, 65535, 65536] {
            for value in [
                vec![b'v'; len],
                all.iter().copied().cycle().take(len).collect(),
            ] {
                let mut out = Vec::new();
                push_environ(&mut out, [(&b"\0\xff"[..], &value[..])].into_iter());
                let (got, used) = decode_environ(&out).expect("our own environ");
                assert_eq!((used, got), (out.len(), vec![(b"\0\xff".to_vec(), value)]));
            }
        }
    }

    #[test]
    fn truncated_environ_is_none() {
        let mut out = Vec::new();
        push_environ(&mut out, [(&b"NAME"[..], &b"caf\xe9"[..])].into_iter());
        for cut in 0..out.len() {
            assert_eq!(decode_environ(&out[..cut]), None, "cut {cut}");
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
