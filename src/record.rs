//! FastCGI wire format: records and name-value pairs (FastCGI spec 1.0).
//!
//! First stop of the data path for FastCGI: bytes from the web server become
//! records here, and the responder (`fastcgi.rs`) turns them into a request.
//! Pure codec: `&[u8]` in, values out, no I/O. Every length is checked
//! against what remains before it is used (libfcgi's CVE-2025-23016 was an
//! unchecked name-value length).

use std::fmt;

pub const VERSION_1: u8 = 1;
pub const HEADER_LEN: usize = 8;
/// Largest content of one record (the length field is 16 bits).
pub const MAX_CONTENT: usize = 65535;
/// Largest whole record: header, content, padding.
pub const MAX_RECORD: usize = HEADER_LEN + MAX_CONTENT + 255;

// Record types (spec section 8).
pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

// Roles and flags of BEGIN_REQUEST (spec 5.1).
pub const RESPONDER: u16 = 1;
pub const KEEP_CONN: u8 = 1;

// protocolStatus of END_REQUEST (spec 5.5).
pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const UNKNOWN_ROLE: u8 = 3;

/// A record header, as it stood on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub id: u16,
    pub content_len: u16,
    pub padding_len: u8,
}

impl Header {
    /// Bytes the whole record occupies: header, content and padding.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.content_len as usize + self.padding_len as usize
    }
}

/// Why bytes are not FastCGI. Any of these ends the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    BadVersion(u8),
    /// BEGIN_REQUEST whose body is not 8 bytes.
    BadBeginBody(usize),
    /// A name-value length runs past the end of the PARAMS stream.
    PairOverrun {
        offset: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadVersion(v) => write!(f, "record version {v}, expected 1"),
            Error::BadBeginBody(n) => write!(f, "BEGIN_REQUEST body of {n} bytes, expected 8"),
            Error::PairOverrun { offset } => {
                write!(
                    f,
                    "name-value pair at byte {offset} of PARAMS runs past the end"
                )
            }
        }
    }
}

/// Result of looking at the front of a buffer: a whole record, or how many
/// bytes are still missing (httparse's Partial vs Err distinction).
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Record(Header),
    Partial { needed: usize },
}

/// Decodes the record at the start of `buf`. A record is complete only when
/// its content and padding are in `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, Error> {
    if buf.is_empty() {
        return Ok(Decoded::Partial { needed: HEADER_LEN });
    }
    if buf[0] != VERSION_1 {
        return Err(Error::BadVersion(buf[0]));
    }
    if buf.len() < HEADER_LEN {
        return Ok(Decoded::Partial {
            needed: HEADER_LEN - buf.len(),
        });
    }
    let h = Header {
        kind: buf[1],
        id: u16::from_be_bytes([buf[2], buf[3]]),
        content_len: u16::from_be_bytes([buf[4], buf[5]]),
        padding_len: buf[6],
    };
    let total = h.record_len();
    if buf.len() < total {
        return Ok(Decoded::Partial {
            needed: total - buf.len(),
        });
    }
    Ok(Decoded::Record(h))
}

/// A record header for `content_len` bytes of content and no padding.
/// Padding is optional for senders (spec 3.3); we never pad.
pub fn header(kind: u8, id: u16, content_len: usize) -> [u8; HEADER_LEN] {
    debug_assert!(
        content_len <= MAX_CONTENT,
        "record content over 65535 bytes"
    );
    let [l1, l0] = (content_len as u16).to_be_bytes();
    let [i1, i0] = id.to_be_bytes();
    [VERSION_1, kind, i1, i0, l1, l0, 0, 0]
}

/// Appends one record to `out`.
pub fn push_record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    out.extend_from_slice(&header(kind, id, content.len()));
    out.extend_from_slice(content);
}

/// Appends `data` as STDOUT records of at most [`MAX_CONTENT`] bytes each.
/// An empty `data` appends nothing (an empty STDOUT means end of stream).
pub fn push_stdout(out: &mut Vec<u8>, id: u16, data: &[u8]) {
    for chunk in data.chunks(MAX_CONTENT) {
        push_record(out, STDOUT, id, chunk);
    }
}

/// Appends the end of a response: the empty STDOUT that closes the stream,
/// then END_REQUEST.
pub fn push_end(out: &mut Vec<u8>, id: u16, app_status: u32, protocol_status: u8) {
    push_record(out, STDOUT, id, &[]);
    push_end_request(out, id, app_status, protocol_status);
}

pub fn push_end_request(out: &mut Vec<u8>, id: u16, app_status: u32, protocol_status: u8) {
    let a = app_status.to_be_bytes();
    push_record(
        out,
        END_REQUEST,
        id,
        &[a[0], a[1], a[2], a[3], protocol_status, 0, 0, 0],
    );
}

/// The body of BEGIN_REQUEST: role and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Begin {
    pub role: u16,
    pub flags: u8,
}

pub fn decode_begin(content: &[u8]) -> Result<Begin, Error> {
    if content.len() != 8 {
        return Err(Error::BadBeginBody(content.len()));
    }
    Ok(Begin {
        role: u16::from_be_bytes([content[0], content[1]]),
        flags: content[2],
    })
}

/// Reads one length of a name-value pair: one byte, or four bytes with the
/// high bit set (spec 3.4). Returns the length and the bytes it took.
fn pair_len(buf: &[u8]) -> Option<(usize, usize)> {
    let first = *buf.first()?;
    if first & 0x80 == 0 {
        return Some((first as usize, 1));
    }
    let b = buf.get(..4)?;
    let n = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
    Some((n as usize, 4))
}

/// Iterates over the name-value pairs of a whole PARAMS (or GET_VALUES)
/// stream. The stream must be buffered whole first: a pair may span records.
pub fn pairs(buf: &[u8]) -> Pairs<'_> {
    Pairs { buf, pos: 0 }
}

pub struct Pairs<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let overrun = Error::PairOverrun { offset: start };
        let rest = &self.buf[start..];
        let parsed = (|| {
            let (nlen, a) = pair_len(rest)?;
            let (vlen, b) = pair_len(rest.get(a..)?)?;
            let body = rest.get(a + b..)?;
            // Both lengths are checked against what remains; the sum cannot
            // overflow because each is below 2^31 and usize is 64 bits.
            if nlen.checked_add(vlen)? > body.len() {
                return None;
            }
            Some((&body[..nlen], &body[nlen..nlen + vlen], a + b + nlen + vlen))
        })();
        match parsed {
            Some((name, value, used)) => {
                self.pos += used;
                Some(Ok((name, value)))
            }
            None => {
                self.pos = self.buf.len();
                Some(Err(overrun))
            }
        }
    }
}

/// Appends one name-value pair in wire form.
pub fn push_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Answers GET_VALUES (spec 4.1): only the variables asked for that we know,
/// so the reply is bounded whatever the request holds. A single-request
/// process: one connection, one request, no multiplexing.
pub fn get_values_result(query: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, _) in pairs(query).map_while(Result::ok) {
        let value: &[u8] = match name {
            b"FCGI_MAX_CONNS" | b"FCGI_MAX_REQS" => b"1",
            b"FCGI_MPXS_CONNS" => b"0",
            _ => continue,
        };
        // A name asked twice is answered once.
        if !pairs(&body).map_while(Result::ok).any(|(n, _)| n == name) {
            push_pair(&mut body, name, value);
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    push_record(&mut out, GET_VALUES_RESULT, 0, &body);
    out
}

/// The reply to a management record of a type we do not know (spec 4.2).
pub fn unknown_type(kind: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    push_record(&mut out, UNKNOWN_TYPE, 0, &[kind, 0, 0, 0, 0, 0, 0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_header_fields_and_partials() {
        let rec = [
            1, STDIN, 0x01, 0x02, 0x00, 0x03, 0x02, 0, b'a', b'b', b'c', 0, 0,
        ];
        assert_eq!(
            decode(&rec),
            Ok(Decoded::Record(Header {
                kind: STDIN,
                id: 0x0102,
                content_len: 3,
                padding_len: 2
            }))
        );
        // Every strict prefix is Partial and says how much is missing.
        for cut in 0..rec.len() {
            let needed = if cut < HEADER_LEN && cut > 0 {
                HEADER_LEN - cut
            } else {
                rec.len() - cut
            };
            let needed = if cut == 0 { HEADER_LEN } else { needed };
            assert_eq!(
                decode(&rec[..cut]),
                Ok(Decoded::Partial { needed }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bad_version_is_an_error_from_the_first_byte() {
        assert_eq!(decode(&[2]), Err(Error::BadVersion(2)));
        assert_eq!(decode(&[0, 1, 0, 1, 0, 0, 0, 0]), Err(Error::BadVersion(0)));
    }

    #[test]
    fn max_content_with_max_padding() {
        let mut rec = vec![1, STDOUT, 0, 1, 0xff, 0xff, 0xff, 0];
        rec.resize(MAX_RECORD, 7);
        assert_eq!(MAX_RECORD, 8 + 65535 + 255);
        match decode(&rec) {
            Ok(Decoded::Record(h)) => assert_eq!(h.record_len(), MAX_RECORD),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode(&rec[..MAX_RECORD - 1]),
            Ok(Decoded::Partial { needed: 1 })
        );
    }

    #[test]
    fn header_encoding_literal_bytes() {
        assert_eq!(header(STDOUT, 1, 0), [1, 6, 0, 1, 0, 0, 0, 0]);
        assert_eq!(
            header(STDOUT, 0x1234, 65535),
            [1, 6, 0x12, 0x34, 0xff, 0xff, 0, 0]
        );
        assert_eq!(header(STDOUT, 1, 128), [1, 6, 0, 1, 0, 0x80, 0, 0]);
    }

    #[test]
    fn stdout_of_66000_bytes_is_65535_plus_465() {
        let data = vec![b'x'; 66000];
        let mut out = Vec::new();
        push_stdout(&mut out, 1, &data);
        assert_eq!(out.len(), 66000 + 2 * HEADER_LEN);
        assert_eq!(&out[..8], &[1, 6, 0, 1, 0xff, 0xff, 0, 0]);
        assert_eq!(
            &out[8 + 65535..8 + 65535 + 8],
            &[1, 6, 0, 1, 0x01, 0xd1, 0, 0]
        );
        let mut none = Vec::new();
        push_stdout(&mut none, 1, &[]);
        assert!(none.is_empty());
    }

    #[test]
    fn end_of_response_literal_bytes() {
        let mut out = Vec::new();
        push_end(&mut out, 1, 0x01020304, REQUEST_COMPLETE);
        assert_eq!(
            out,
            [
                1, 6, 0, 1, 0, 0, 0, 0, 1, 3, 0, 1, 0, 8, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn begin_body_must_be_eight_bytes() {
        assert_eq!(
            decode_begin(&[0, 1, 1, 0, 0, 0, 0, 0]),
            Ok(Begin { role: 1, flags: 1 })
        );
        assert_eq!(decode_begin(&[0, 1, 0]), Err(Error::BadBeginBody(3)));
        assert_eq!(decode_begin(&[0; 9]), Err(Error::BadBeginBody(9)));
    }

    fn one_pair(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        push_pair(&mut b, name, value);
        b
    }

    #[test]
    fn pair_lengths_at_every_boundary() {
        for len in [0usize, 1, 127, 128, 65535, 65536] {
            let value = vec![b'v'; len];
            let enc = one_pair(b"N", &value);
            let prefix = if len < 128 { 1 } else { 4 };
            assert_eq!(enc.len(), 1 + prefix + 1 + len, "len {len}");
            if len >= 128 {
                assert_eq!(enc[1] & 0x80, 0x80);
                assert_eq!(
                    u32::from_be_bytes([enc[1] & 0x7f, enc[2], enc[3], enc[4]]) as usize,
                    len
                );
            }
            let got: Vec<_> = pairs(&enc).collect();
            assert_eq!(got, vec![Ok((&b"N"[..], &value[..]))], "len {len}");
        }
    }

    #[test]
    fn literal_pair_bytes() {
        assert_eq!(one_pair(b"A", b"bc"), [1, 2, b'A', b'b', b'c']);
        let long = one_pair(b"", &[b'z'; 128]);
        assert_eq!(&long[..5], &[0, 0x80, 0, 0, 128]);
    }

    #[test]
    fn every_truncation_of_a_stream_is_an_overrun_not_a_panic() {
        let mut stream = one_pair(b"REQUEST_METHOD", b"GET");
        stream.extend(one_pair(b"LONG", &[b'x'; 300]));
        for cut in 1..stream.len() {
            let got: Vec<_> = pairs(&stream[..cut]).collect();
            assert!(
                got.last().is_some_and(Result::is_err) || cut == 19,
                "cut {cut}: {got:?}"
            );
        }
        assert_eq!(pairs(&stream).filter(Result::is_ok).count(), 2);
    }

    #[test]
    fn huge_lengths_are_rejected() {
        // CVE-2025-23016 shape: 0x7fffffff for the name length.
        let evil = [0xff, 0xff, 0xff, 0xff, 0x01, b'a', b'b'];
        assert_eq!(
            pairs(&evil).collect::<Vec<_>>(),
            vec![Err(Error::PairOverrun { offset: 0 })]
        );
        let evil2 = [0x01, 0xff, 0xff, 0xff, 0xff, b'a'];
        assert_eq!(
            pairs(&evil2).collect::<Vec<_>>(),
            vec![Err(Error::PairOverrun { offset: 0 })]
        );
        // A four-byte length cut short.
        assert_eq!(
            pairs(&[0x80, 0]).collect::<Vec<_>>(),
            vec![Err(Error::PairOverrun { offset: 0 })]
        );
    }

    #[test]
    fn get_values_answers_only_known_names_once() {
        let mut q = Vec::new();
        for n in [
            "FCGI_MAX_CONNS",
            "FCGI_MAX_REQS",
            "FCGI_MPXS_CONNS",
            "FCGI_OTHER",
            "FCGI_MAX_REQS",
        ] {
            push_pair(&mut q, n.as_bytes(), b"");
        }
        let out = get_values_result(&q);
        assert_eq!(&out[..2], &[1, GET_VALUES_RESULT]);
        let got: Vec<_> = pairs(&out[8..]).map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![
                (&b"FCGI_MAX_CONNS"[..], &b"1"[..]),
                (&b"FCGI_MAX_REQS"[..], &b"1"[..]),
                (&b"FCGI_MPXS_CONNS"[..], &b"0"[..])
            ]
        );
        assert_eq!(get_values_result(&[0xff]).len(), HEADER_LEN);
    }

    #[test]
    fn unknown_type_reply_names_the_type() {
        assert_eq!(
            unknown_type(99),
            [1, 11, 0, 0, 0, 8, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
