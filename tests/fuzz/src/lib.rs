//! Checks shared by the fuzz targets: what must hold for any input bytes.
//!
//! The targets in `fuzz_targets/` are thin: each feeds the fuzzer's bytes to
//! one codec and calls these. A panic here or in the shim is a finding; the
//! codecs must answer any bytes with a value or an error, never a panic.
//! `params` and `stream` share the params checks: `stream` reaches them with
//! PARAMS reassembled from records, as the responder does.

use std::borrow::Cow;
use std::net::IpAddr;

use fcgi_shim::config::{Net, Site};
use fcgi_shim::environ::{self, Param};
use fcgi_shim::{frame, record};

/// Where `part` starts inside `whole`; panics unless `part` is a subslice
/// (the decoders borrow from their input and must never point outside it).
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    let off = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    assert!(
        off <= whole.len() && part.len() <= whole.len() - off,
        "decoded slice lies outside the input"
    );
    off
}

/// Decodes a whole PARAMS (or GET_VALUES) stream with `record::pairs` and
/// checks it. Some(pairs) when every pair decoded, None when the stream
/// ends in an overrun (the responder answers 400 then).
pub fn fastcgi_pairs(stream: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut it = record::pairs(stream);
    let mut out = Vec::new();
    // End of the last pair decoded: where the next one must start.
    let mut pos = 0;
    let mut failed = false;
    for item in it.by_ref() {
        assert!(!failed, "pairs yielded more after an error");
        match item {
            Ok((name, value)) => {
                let n = offset_in(stream, name);
                let v = offset_in(stream, value);
                assert_eq!(v, n + name.len(), "value does not follow its name");
                // Two lengths of 1 or 4 bytes each (spec 3.4), then the name.
                let prefix = n - pos;
                assert!(
                    matches!(prefix, 2 | 5 | 8),
                    "length prefix of {prefix} bytes"
                );
                pos = v + value.len();
                out.push((name, value));
            }
            Err(record::Error::PairOverrun { offset }) => {
                assert_eq!(offset, pos, "overrun reported at the wrong offset");
                assert!(offset < stream.len(), "overrun at the end of the stream");
                failed = true;
            }
            Err(e) => panic!("pairs returned {e:?}"),
        }
    }
    assert!(it.next().is_none(), "pairs yielded more after None");
    if failed {
        return None;
    }
    assert_eq!(pos, stream.len(), "pairs stopped before the end");
    // What we would send is what we read (canonical lengths are never
    // longer than the ones on the wire).
    let mut again = Vec::new();
    for (n, v) in &out {
        record::push_pair(&mut again, n, v);
    }
    assert!(again.len() <= stream.len());
    let back: Vec<_> = record::pairs(&again)
        .collect::<Result<_, _>>()
        .expect("pairs we encoded decode");
    assert_eq!(back, out);
    Some(out)
}

/// A site for `environ::prepare`, chosen by the bits of one input byte, so
/// that the fuzzer reaches the trusted-proxy and mount code.
pub fn site_for(selector: u8) -> Option<Site> {
    if selector & 0x08 != 0 {
        return None;
    }
    let script_name = match selector & 0x03 {
        0 => None,
        1 => Some(String::new()),
        2 => Some("/blog".to_owned()),
        _ => Some("/a/b".to_owned()),
    };
    let trusted_proxies = if selector & 0x04 != 0 {
        ["127.0.0.0/8", "10.0.0.0/8", "::1"]
            .iter()
            .map(|s| Net::parse(s).expect("literal CIDR block"))
            .collect()
    } else {
        Vec::new()
    };
    Some(Site {
        script_name,
        trusted_proxies,
        wsgi_app: Some("app:app".to_owned()),
        ..Site::default()
    })
}

/// The last value of `name`, as `environ` reads params.
fn last<'p>(params: &'p [Param<'_>], name: &[u8]) -> Option<&'p [u8]> {
    params
        .iter()
        .rev()
        .find(|(n, _)| n.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

/// Strict %XX decoding (two hex digits). None where environ's decoder may
/// be more lenient, so that a comparison is only made where both agree.
fn strict_percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let digit = |b: u8| (b as char).to_digit(16).expect("checked hex digit") as u8;
            out.push(digit(hex[0]) << 4 | digit(hex[1]));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Names `prepare` may remove, replace or add; every other param must come
/// out as it went in, in order.
const TOUCHED: &[&[u8]] = &[
    b"HTTP_PROXY",
    b"HTTP_CONTENT_TYPE",
    b"HTTP_CONTENT_LENGTH",
    b"HTTP_AUTHORIZATION",
    b"REMOTE_ADDR",
    b"SCRIPT_NAME",
    b"PATH_INFO",
    b"QUERY_STRING",
];

/// Runs decoded params through `environ::prepare` and `request_frame` as
/// `app::prepare_request` does, and checks the repairs and the `R` frame.
pub fn prepare_and_frame(pairs: &[(&[u8], &[u8])], selector: u8, body: &[u8]) {
    let site = site_for(selector);
    let mut params: Vec<Param<'_>> = pairs
        .iter()
        .map(|&(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)))
        .collect();
    let before = params.clone();
    let prep = environ::prepare(&mut params, site.as_ref());

    assert!(
        params.iter().all(|(n, _)| !matches!(
            n.as_ref(),
            b"HTTP_PROXY" | b"HTTP_CONTENT_TYPE" | b"HTTP_CONTENT_LENGTH"
        )),
        "httpoxy: HTTP_PROXY (or an HTTP_CONTENT_*) reached the app"
    );
    for name in [&b"SCRIPT_NAME"[..], b"PATH_INFO", b"QUERY_STRING"] {
        assert!(last(&params, name).is_some(), "a CGI param is missing");
    }
    assert!(
        params
            .iter()
            .all(|(n, v)| n.as_ref() != b"HTTP_AUTHORIZATION" || !v.is_empty()),
        "an empty HTTP_AUTHORIZATION reached the app"
    );
    let untouched = |list: &[Param<'_>]| -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .filter(|(n, _)| !TOUCHED.contains(&n.as_ref()))
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    };
    assert_eq!(
        untouched(&before),
        untouched(&params),
        "prepare changed a param it does not own"
    );

    // X-Forwarded-For is believed only from a trusted proxy, and the
    // address it yields is never one of the proxies.
    let proxies = site.as_ref().map_or(&[][..], |s| &s.trusted_proxies[..]);
    let remote = last(&params, b"REMOTE_ADDR");
    if remote != last(&before, b"REMOTE_ADDR") {
        assert!(
            !proxies.is_empty(),
            "REMOTE_ADDR changed with no trusted proxy"
        );
        let ip: IpAddr = std::str::from_utf8(remote.expect("REMOTE_ADDR was set"))
            .expect("an address set by prepare is text")
            .parse()
            .expect("an address set by prepare parses");
        assert!(
            !proxies.iter().any(|n| n.contains(ip)),
            "a proxy became the client"
        );
    }

    if prep.https {
        assert!(
            [
                &b"HTTPS"[..],
                b"REQUEST_SCHEME",
                b"SERVER_PORT",
                b"HTTP_X_FORWARDED_PROTO"
            ]
            .iter()
            .any(|n| last(&params, n).is_some()),
            "https from nothing"
        );
    }
    // CONTENT_LENGTH is a number only when it is all digits.
    let digits = last(&params, b"CONTENT_LENGTH")
        .filter(|v| !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit));
    let want = digits.map(|v| {
        std::str::from_utf8(v)
            .expect("digits are text")
            .parse::<u64>()
            .expect("19 digits fit a u64")
    });
    assert_eq!(prep.content_length, want, "CONTENT_LENGTH");

    // The mount repair: when PATH_INFO was reinterpreted, SCRIPT_NAME +
    // PATH_INFO is the decoded request path.
    let path_info = last(&params, b"PATH_INFO").unwrap_or(b"");
    if path_info != last(&before, b"PATH_INFO").unwrap_or(b"") {
        let uri = last(&before, b"REQUEST_URI").expect("PATH_INFO reinterpreted from REQUEST_URI");
        let raw = uri.split(|&b| b == b'?').next().unwrap_or(b"");
        if let Some(path) = strict_percent_decode(raw) {
            let script = last(&params, b"SCRIPT_NAME").expect("SCRIPT_NAME set with PATH_INFO");
            assert_eq!(
                [script, path_info].concat(),
                path,
                "SCRIPT_NAME + PATH_INFO"
            );
        }
    }

    // The R frame carries the params as they are now, and the body after.
    let complete = selector & 0x10 != 0;
    let mut f = Vec::new();
    environ::request_frame(&mut f, 7, &params, &prep, body, complete);
    let h = frame::decode_header(&f).expect("an R frame has a whole header");
    assert_eq!(
        (h.kind, h.id, h.len as usize),
        (frame::REQUEST, 7, f.len() - frame::HEADER_LEN)
    );
    let mut flags = 0;
    if complete {
        flags |= frame::FLAG_BODY_COMPLETE;
    }
    if prep.https {
        flags |= frame::FLAG_HTTPS;
    }
    let head = &f[frame::HEADER_LEN..frame::HEADER_LEN + frame::REQUEST_HEAD_LEN];
    assert_eq!(head[0], flags);
    let length = u64::from_le_bytes(head[1..9].try_into().expect("8 bytes"));
    assert_eq!(length, prep.content_length.unwrap_or(frame::NO_LENGTH));
    let environ_len = u32::from_le_bytes(head[9..13].try_into().expect("4 bytes")) as usize;
    let rest = &f[frame::HEADER_LEN + frame::REQUEST_HEAD_LEN..];
    let (got, used) = frame::decode_environ(rest).expect("the environ of an R frame decodes");
    assert_eq!(used, environ_len, "environ_len");
    let want: Vec<_> = params
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(&rest[used..], body);
}

/// Checks a `Partial { needed }` from `record::decode(buf)`.
pub fn check_partial(buf: &[u8], needed: usize) {
    assert!(needed > 0, "Partial with nothing missing");
    let want = if buf.len() < record::HEADER_LEN {
        record::HEADER_LEN
    } else {
        record::HEADER_LEN + usize::from(u16::from_be_bytes([buf[4], buf[5]])) + usize::from(buf[6])
    };
    assert_eq!(
        buf.len() + needed,
        want,
        "needed does not complete the record"
    );
    assert!(want <= record::MAX_RECORD);
}

/// Checks a record that `record::decode(buf)` found whole, and returns its
/// content as the responder slices it (`Conn::content`).
pub fn check_record(buf: &[u8], h: record::Header) -> &[u8] {
    assert!(h.record_len() <= buf.len(), "record runs past the buffer");
    assert!(h.record_len() <= record::MAX_RECORD);
    let mut wire = record::header(h.kind, h.id, usize::from(h.content_len));
    wire[6] = h.padding_len;
    assert_eq!(wire[..7], buf[..7], "header fields are not the wire bytes");
    // Every strict prefix of a record is Partial, never an error.
    for cut in [
        0,
        1,
        record::HEADER_LEN - 1,
        record::HEADER_LEN,
        h.record_len() - 1,
    ] {
        if cut < h.record_len() {
            match record::decode(&buf[..cut]) {
                Ok(record::Decoded::Partial { needed }) => check_partial(&buf[..cut], needed),
                other => panic!("prefix of {cut} bytes: {other:?}"),
            }
        }
    }
    &buf[record::HEADER_LEN..record::HEADER_LEN + usize::from(h.content_len)]
}

/// Checks what the responder does with a record whose id is 0: the reply
/// is one well-formed record whatever the request held.
pub fn check_management(kind: u8, content: &[u8]) {
    let reply = if kind == record::GET_VALUES {
        record::get_values_result(content)
    } else {
        record::unknown_type(kind)
    };
    let h = match record::decode(&reply) {
        Ok(record::Decoded::Record(h)) => h,
        other => panic!("management reply does not decode: {other:?}"),
    };
    assert_eq!(h.record_len(), reply.len());
    assert_eq!(h.id, 0);
    let body = &reply[record::HEADER_LEN..];
    if kind == record::GET_VALUES {
        assert_eq!(h.kind, record::GET_VALUES_RESULT);
        let got = fastcgi_pairs(body).expect("our GET_VALUES_RESULT decodes");
        let known: &[&[u8]] = &[b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"];
        for (i, (name, _)) in got.iter().enumerate() {
            assert!(known.contains(name), "answered an unknown name");
            assert!(
                !got[..i].iter().any(|(n, _)| n == name),
                "answered a name twice"
            );
        }
    } else {
        assert_eq!(h.kind, record::UNKNOWN_TYPE);
        assert_eq!(body, [kind, 0, 0, 0, 0, 0, 0, 0]);
    }
}

/// Checks `frame::decode_pairs` on any bytes: what it accepts is exactly
/// what `push_pairs` writes.
pub fn check_frame_pairs(buf: &[u8]) {
    let Some((pairs, used)) = frame::decode_pairs(buf) else {
        return;
    };
    assert!(used <= buf.len());
    for (n, v) in &pairs {
        offset_in(buf, n);
        offset_in(buf, v);
    }
    assert_eq!(frame::pairs_len(pairs.iter().copied()), used);
    let mut again = Vec::new();
    frame::push_pairs(&mut again, pairs.iter().copied());
    assert_eq!(again, buf[..used], "re-encoded pairs differ");
}

/// Checks `frame::decode_environ` on any bytes: what it accepts is exactly
/// what `push_environ` writes.
pub fn check_frame_environ(buf: &[u8]) {
    let Some((items, used)) = frame::decode_environ(buf) else {
        return;
    };
    assert!(used <= buf.len());
    let mut again = Vec::new();
    frame::push_environ(
        &mut again,
        items.iter().map(|(n, v)| (&n[..], &v[..])),
    );
    assert_eq!(again, buf[..used], "re-encoded environ differs");
}
