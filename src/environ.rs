//! From the web server's params to what the app sees, and into an `R` frame.
//!
//! Data path, between the transports and the bridge. Pure: params in, params
//! out. Here the shim repairs what the servers get wrong for a rewritten
//! site (FIELD_NOTES, "What users of shared hosting hit"):
//! - httpoxy: a `Proxy:` request header arrives as HTTP_PROXY; it is dropped.
//! - Apache strips Authorization for CGI/FastCGI; the .htaccess rewrite
//!   fallback delivers it as REDIRECT_HTTP_AUTHORIZATION (one REDIRECT_ per
//!   internal redirect): mapped back to HTTP_AUTHORIZATION.
//! - After `RewriteRule ^(.*)$ mysite.fcgi/$1`, SCRIPT_NAME names the .fcgi,
//!   so `reverse()`/`url_for()` would put it in every URL. When the request
//!   path (REQUEST_URI) does not start with SCRIPT_NAME, the request was
//!   rewritten: SCRIPT_NAME becomes the directory the site is mounted at and
//!   PATH_INFO the rest of the path. `script_name` in site.toml overrides.
//! - https is detected from HTTPS=on/1, REQUEST_SCHEME, port 443, and
//!   X-Forwarded-Proto only from trusted proxies.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::config::Site;
use crate::frame;

pub type Param<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// What the shim needs to know about a request besides its params.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    pub https: bool,
    /// CONTENT_LENGTH when present and a number.
    pub content_length: Option<u64>,
}

fn set<'a>(params: &mut Vec<Param<'a>>, name: &'static [u8], value: Vec<u8>) {
    params.retain(|(n, _)| n.as_ref() != name);
    params.push((Cow::Borrowed(name), Cow::Owned(value)));
}

/// Params that never reach the app. HTTP_PROXY: httpoxy. HTTP_CONTENT_TYPE
/// and HTTP_CONTENT_LENGTH: PEP 3333 has only CONTENT_TYPE/CONTENT_LENGTH.
fn dropped(name: &[u8], value: &[u8]) -> bool {
    matches!(
        name,
        b"HTTP_PROXY" | b"HTTP_CONTENT_TYPE" | b"HTTP_CONTENT_LENGTH"
    ) || (name == b"HTTP_AUTHORIZATION" && value.is_empty())
}

/// How many `REDIRECT_` prefixes stand before `HTTP_AUTHORIZATION` in
/// `name` (Apache adds one per internal redirect); None for other names.
fn redirect_depth(mut name: &[u8]) -> Option<usize> {
    let mut depth = 0;
    while let Some(rest) = name.strip_prefix(b"REDIRECT_") {
        name = rest;
        depth += 1;
    }
    (depth > 0 && name == b"HTTP_AUTHORIZATION").then_some(depth)
}

/// CONTENT_LENGTH as CGI defines it: digits (RFC 3875 4.1.2). Anything
/// else (a sign, blanks, a second number) is no length: the body then ends
/// where the web server ends it.
pub fn parse_content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Where the params that `prepare` reads stand: the index of the last of
/// each (the last of duplicates wins, as in the worker's dict). One pass
/// over the params instead of a search per name.
#[derive(Default)]
struct Found {
    script_name: Option<usize>,
    path_info: Option<usize>,
    query_string: Option<usize>,
    request_uri: Option<usize>,
    authorization: Option<usize>,
    remote_addr: Option<usize>,
    https: Option<usize>,
    request_scheme: Option<usize>,
    server_port: Option<usize>,
    forwarded_proto: Option<usize>,
    forwarded_for: Option<usize>,
    content_length: Option<usize>,
    /// A REDIRECT_...HTTP_AUTHORIZATION with a value: (prefixes, index),
    /// the fewest prefixes (the latest redirect), the last of equals.
    redirect_authorization: Option<(usize, usize)>,
    /// Something to drop (see [`dropped`]).
    dropped: bool,
}

impl Found {
    fn scan(params: &[Param<'_>]) -> Found {
        let mut f = Found::default();
        for (i, (name, value)) in params.iter().enumerate() {
            let slot = match name.as_ref() {
                b"SCRIPT_NAME" => &mut f.script_name,
                b"PATH_INFO" => &mut f.path_info,
                b"QUERY_STRING" => &mut f.query_string,
                b"REQUEST_URI" => &mut f.request_uri,
                b"HTTP_AUTHORIZATION" if !value.is_empty() => &mut f.authorization,
                b"REMOTE_ADDR" => &mut f.remote_addr,
                b"HTTPS" => &mut f.https,
                b"REQUEST_SCHEME" => &mut f.request_scheme,
                b"SERVER_PORT" => &mut f.server_port,
                b"HTTP_X_FORWARDED_PROTO" => &mut f.forwarded_proto,
                b"HTTP_X_FORWARDED_FOR" => &mut f.forwarded_for,
                b"CONTENT_LENGTH" => &mut f.content_length,
                n if dropped(n, value) => {
                    f.dropped = true;
                    continue;
                }
                n if n.starts_with(b"REDIRECT_") && !value.is_empty() => {
                    if let Some(depth) = redirect_depth(n).filter(|&d| d <= 4)
                        && f.redirect_authorization
                            .is_none_or(|(best, _)| depth <= best)
                    {
                        f.redirect_authorization = Some((depth, i));
                    }
                    continue;
                }
                _ => continue,
            };
            *slot = Some(i);
        }
        f
    }
}

/// Applies every repair above, in place.
pub fn prepare(params: &mut Vec<Param<'_>>, site: Option<&Site>) -> Prepared {
    let mut f = Found::scan(params);
    if f.dropped {
        // An empty Authorization is what a .htaccess rewrite fallback
        // without a RewriteCond guard delivers for a request that had none.
        params.retain(|(n, v)| !dropped(n, v));
        f = Found::scan(params);
    }
    let value = |i: Option<usize>| i.map(|i| params[i].1.as_ref());

    // What changes is worked out first, from the params as they came, and
    // applied at the end (each change moves the params after it).
    // Apache strips Authorization; the rewrite fallback delivers it as
    // REDIRECT_HTTP_AUTHORIZATION.
    let authorization = match (f.authorization, f.redirect_authorization) {
        (None, Some((_, i))) => Some(params[i].1.to_vec()),
        _ => None,
    };

    let proxies = site.map_or(&[][..], |s| &s.trusted_proxies[..]);
    let from_proxy = !proxies.is_empty() && {
        let peer: Option<IpAddr> = value(f.remote_addr)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok());
        peer.is_some_and(|ip| proxies.iter().any(|n| n.contains(ip)))
    };
    let https = match value(f.https) {
        Some(v) if v.eq_ignore_ascii_case(b"on") || v == b"1" => true,
        _ => {
            value(f.request_scheme).is_some_and(|v| v.eq_ignore_ascii_case(b"https"))
                || value(f.server_port) == Some(b"443")
                || (from_proxy
                    && value(f.forwarded_proto).is_some_and(|v| {
                        v.split(|&b| b == b',')
                            .next()
                            .is_some_and(|p| p.trim_ascii().eq_ignore_ascii_case(b"https"))
                    }))
        }
    };
    // The client is the right-most address that is not a trusted proxy.
    let client = value(f.forwarded_for).filter(|_| from_proxy).and_then(|v| {
        std::str::from_utf8(v)
            .ok()?
            .rsplit(',')
            .map(str::trim)
            .find(|a| {
                a.parse::<IpAddr>()
                    .is_ok_and(|ip| !proxies.iter().any(|n| n.contains(ip)))
            })
            .map(|a| a.as_bytes().to_vec())
    });
    let mount = mount(
        value(f.script_name).unwrap_or(b""),
        value(f.path_info).unwrap_or(b""),
        value(f.request_uri),
        site.and_then(|s| s.script_name.as_deref()),
    );
    let content_length = value(f.content_length).and_then(parse_content_length);

    // CGI requires these three; the app may rely on them.
    for (name, at) in [
        (&b"SCRIPT_NAME"[..], f.script_name),
        (b"PATH_INFO", f.path_info),
        (b"QUERY_STRING", f.query_string),
    ] {
        if at.is_none() {
            params.push((Cow::Borrowed(name), Cow::Borrowed(b"")));
        }
    }
    if let Some(v) = authorization {
        set(params, b"HTTP_AUTHORIZATION", v);
    }
    if let Some(c) = client {
        set(params, b"REMOTE_ADDR", c);
    }
    if let Some((script_name, path_info)) = mount {
        set(params, b"SCRIPT_NAME", script_name);
        set(params, b"PATH_INFO", path_info);
    }
    Prepared {
        https,
        content_length,
    }
}

/// Where the site is mounted and the rest of the path, (SCRIPT_NAME,
/// PATH_INFO), when they are not what the server sent; None when they are.
fn mount(
    script: &[u8],
    path_info: &[u8],
    uri: Option<&[u8]>,
    configured: Option<&str>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    if configured.is_none() && script.is_empty() {
        return None; // mounted at the root and not rewritten (nginx, lighttpd)
    }
    let raw_path = uri?.split(|&b| b == b'?').next().unwrap_or(b"");
    // A malformed escape: decide on the raw path, and keep the server's
    // PATH_INFO (below) rather than guess at the bytes.
    let decoded = percent_decode(raw_path);
    let escapes_ok = decoded.is_some();
    let path = decoded.unwrap_or(Cow::Borrowed(raw_path));
    let clean = escapes_ok
        && path.starts_with(b"/")
        && !path
            .split(|&b| b == b'/')
            .skip(1)
            .any(|seg| seg == b"." || seg == b"..");

    let mount: &[u8] = match configured {
        Some(s) => s.as_bytes(),
        None => {
            if starts_at_segment(&path, script) {
                return None; // not rewritten: the server's values are right
            }
            // "//mysite.fcgi" mounts at "", not "/": a mount never ends in a
            // slash, so that PATH_INFO keeps its own.
            let mut m = &script[..script.iter().rposition(|&b| b == b'/')?];
            while let Some(rest) = m.strip_suffix(b"/") {
                m = rest;
            }
            m
        }
    };
    let rest = if clean && starts_at_segment(&path, mount) {
        path[mount.len()..].to_vec()
    } else {
        // A path we will not reinterpret: keep the server's PATH_INFO.
        path_info.to_vec()
    };
    Some((mount.to_vec(), rest))
}

fn starts_at_segment(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path[prefix.len()] == b'/' || prefix.ends_with(b"/"))
}

/// %XX-decodes a URL path (borrowed when it has no escape); None when an
/// escape is malformed.
pub(crate) fn percent_decode(s: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !s.contains(&b'%') {
        return Some(Cow::Borrowed(s));
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            // Two hex digits, nothing else ("%+f" is no escape).
            let (hi, lo) = (hex(*s.get(i + 1)?)?, hex(*s.get(i + 2)?)?);
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

/// Encodes the whole `R` frame into `out` (cleared first): header, flags,
/// content length, the params as the environ, and the part of the body
/// already at hand. `out` is kept by the caller from request to request,
/// so that encoding allocates nothing once it has grown.
pub fn request_frame(
    out: &mut Vec<u8>,
    id: u16,
    params: &[Param<'_>],
    prep: &Prepared,
    body: &[u8],
    body_complete: bool,
) {
    out.clear();
    out.extend_from_slice(&[0; frame::HEADER_LEN + frame::REQUEST_HEAD_LEN]);
    let environ_at = out.len();
    frame::push_environ(out, params.iter().map(|(n, v)| (n.as_ref(), v.as_ref())));
    let environ_len = out.len() - environ_at;
    out.extend_from_slice(body);
    let mut flags = 0;
    if body_complete {
        flags |= frame::FLAG_BODY_COMPLETE;
    }
    if prep.https {
        flags |= frame::FLAG_HTTPS;
    }
    let len = out.len() - frame::HEADER_LEN;
    out[..frame::HEADER_LEN].copy_from_slice(&frame::header(frame::REQUEST, id, len));
    let head = &mut out[frame::HEADER_LEN..environ_at];
    head[0] = flags;
    head[1..9].copy_from_slice(
        &prep
            .content_length
            .unwrap_or(frame::NO_LENGTH)
            .to_le_bytes(),
    );
    head[9..13].copy_from_slice(&(environ_len as u32).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Net;

    fn get<'p>(params: &'p [Param<'_>], name: &[u8]) -> Option<&'p [u8]> {
        params
            .iter()
            .rev()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    }

    fn params(list: &[(&str, &str)]) -> Vec<Param<'static>> {
        list.iter()
            .map(|(n, v)| {
                (
                    Cow::Owned(n.as_bytes().to_vec()),
                    Cow::Owned(v.as_bytes().to_vec()),
                )
            })
            .collect()
    }

    fn value(p: &[Param<'_>], name: &str) -> Option<String> {
        get(p, name.as_bytes()).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn httpoxy_is_dropped() {
        let mut p = params(&[("HTTP_PROXY", "http://evil"), ("HTTP_HOST", "x")]);
        prepare(&mut p, None);
        assert_eq!(value(&p, "HTTP_PROXY"), None);
        assert_eq!(value(&p, "HTTP_HOST").as_deref(), Some("x"));
    }

    #[test]
    fn authorization_comes_back_from_redirect_forms() {
        let mut p = params(&[
            ("REDIRECT_REDIRECT_HTTP_AUTHORIZATION", "old"),
            ("REDIRECT_HTTP_AUTHORIZATION", "Bearer t"),
        ]);
        prepare(&mut p, None);
        assert_eq!(value(&p, "HTTP_AUTHORIZATION").as_deref(), Some("Bearer t"));
        let mut p = params(&[("REDIRECT_REDIRECT_HTTP_AUTHORIZATION", "Basic x")]);
        prepare(&mut p, None);
        assert_eq!(value(&p, "HTTP_AUTHORIZATION").as_deref(), Some("Basic x"));
        let mut p = params(&[
            ("HTTP_AUTHORIZATION", "real"),
            ("REDIRECT_HTTP_AUTHORIZATION", "other"),
        ]);
        prepare(&mut p, None);
        assert_eq!(value(&p, "HTTP_AUTHORIZATION").as_deref(), Some("real"));
        let mut p = params(&[("HTTP_AUTHORIZATION", "")]);
        prepare(&mut p, None);
        assert_eq!(value(&p, "HTTP_AUTHORIZATION"), None);
    }

    #[test]
    fn https_detection() {
        for (list, want) in [
            (&[("HTTPS", "on")][..], true),
            (&[("HTTPS", "1")][..], true),
            (&[("HTTPS", "off")][..], false),
            (&[("REQUEST_SCHEME", "https")][..], true),
            (&[("SERVER_PORT", "443")][..], true),
            (&[("SERVER_PORT", "80")][..], false),
            (
                &[
                    ("HTTP_X_FORWARDED_PROTO", "https"),
                    ("REMOTE_ADDR", "10.0.0.1"),
                ][..],
                false,
            ),
        ] {
            let mut p = params(list);
            assert_eq!(prepare(&mut p, None).https, want, "{list:?}");
        }
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let site = Site {
            trusted_proxies: vec![Net::parse("10.0.0.0/8").expect("net")],
            ..Site::default()
        };
        let mut p = params(&[
            ("HTTP_X_FORWARDED_PROTO", "https"),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4, 10.0.0.9"),
            ("REMOTE_ADDR", "10.0.0.1"),
        ]);
        assert!(prepare(&mut p, Some(&site)).https);
        assert_eq!(value(&p, "REMOTE_ADDR").as_deref(), Some("1.2.3.4"));
        let mut p = params(&[
            ("HTTP_X_FORWARDED_PROTO", "https"),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
            ("REMOTE_ADDR", "192.0.2.1"),
        ]);
        assert!(!prepare(&mut p, Some(&site)).https);
        assert_eq!(value(&p, "REMOTE_ADDR").as_deref(), Some("192.0.2.1"));
    }

    fn mount(list: &[(&str, &str)], configured: Option<&str>) -> (String, String) {
        let mut p = params(list);
        let site = Site {
            script_name: configured.map(str::to_owned),
            ..Site::default()
        };
        prepare(&mut p, Some(&site));
        (
            value(&p, "SCRIPT_NAME").unwrap_or_default(),
            value(&p, "PATH_INFO").unwrap_or_default(),
        )
    }

    #[test]
    fn rewritten_requests_get_the_mount_point() {
        // Apache .htaccess in the web root.
        let got = mount(
            &[
                ("SCRIPT_NAME", "/mysite.fcgi"),
                ("PATH_INFO", "/a/b"),
                ("REQUEST_URI", "/a/b?x=1"),
            ],
            None,
        );
        assert_eq!(got, ("".into(), "/a/b".into()));
        // In /blog/.
        let got = mount(
            &[
                ("SCRIPT_NAME", "/blog/mysite.fcgi"),
                ("PATH_INFO", "/a"),
                ("REQUEST_URI", "/blog/a"),
            ],
            None,
        );
        assert_eq!(got, ("/blog".into(), "/a".into()));
        // The mount itself.
        let got = mount(
            &[
                ("SCRIPT_NAME", "/blog/mysite.fcgi"),
                ("PATH_INFO", "/"),
                ("REQUEST_URI", "/blog/"),
            ],
            None,
        );
        assert_eq!(got, ("/blog".into(), "/".into()));
        // Percent-escapes are decoded like PATH_INFO, bytes kept.
        let got = mount(
            &[
                ("SCRIPT_NAME", "/mysite.fcgi"),
                ("REQUEST_URI", "/caf%C3%A9%2Fx"),
            ],
            None,
        );
        assert_eq!(got, ("".into(), "/café/x".into()));
    }

    #[test]
    fn direct_requests_are_left_alone() {
        let got = mount(
            &[
                ("SCRIPT_NAME", "/mysite.fcgi"),
                ("PATH_INFO", "/a"),
                ("REQUEST_URI", "/mysite.fcgi/a"),
            ],
            None,
        );
        assert_eq!(got, ("/mysite.fcgi".into(), "/a".into()));
        let got = mount(
            &[
                ("SCRIPT_NAME", "/app"),
                ("PATH_INFO", "/x"),
                ("REQUEST_URI", "/app/x"),
            ],
            None,
        );
        assert_eq!(got, ("/app".into(), "/x".into()));
    }

    #[test]
    fn odd_inputs_found_by_reading_for_the_fuzzer() {
        // "%+f" is not an escape: the server's PATH_INFO stays.
        let got = mount(
            &[
                ("SCRIPT_NAME", "/mysite.fcgi"),
                ("PATH_INFO", "/x"),
                ("REQUEST_URI", "/%+f"),
            ],
            None,
        );
        assert_eq!(got, ("".into(), "/x".into()));
        // A doubled slash in SCRIPT_NAME does not eat PATH_INFO's.
        let got = mount(
            &[("SCRIPT_NAME", "//mysite.fcgi"), ("REQUEST_URI", "/foo")],
            None,
        );
        assert_eq!(got, ("".into(), "/foo".into()));
    }

    #[test]
    fn dot_segments_keep_the_servers_path_info() {
        let got = mount(
            &[
                ("SCRIPT_NAME", "/mysite.fcgi"),
                ("PATH_INFO", "/b"),
                ("REQUEST_URI", "/a/../b"),
            ],
            None,
        );
        assert_eq!(got, ("".into(), "/b".into()));
    }

    #[test]
    fn configured_script_name_wins_and_fixes_lighttpd_root_mount() {
        // lighttpd 1.4.69 with "/" => bin-path splits after the first
        // segment: SCRIPT_NAME "/a", PATH_INFO "/b".
        let got = mount(
            &[
                ("SCRIPT_NAME", "/a"),
                ("PATH_INFO", "/b"),
                ("REQUEST_URI", "/a/b"),
            ],
            Some(""),
        );
        assert_eq!(got, ("".into(), "/a/b".into()));
        let got = mount(
            &[("SCRIPT_NAME", "/x.fcgi"), ("REQUEST_URI", "/shop/item")],
            Some("/shop"),
        );
        assert_eq!(got, ("/shop".into(), "/item".into()));
    }

    #[test]
    fn request_frame_layout() {
        let p = params(&[("A", "b")]);
        let prep = Prepared {
            https: true,
            content_length: Some(2),
        };
        let mut f = vec![9; 3]; // whatever the buffer held before
        request_frame(&mut f, 1, &p, &prep, b"xy", true);
        // 13 bytes of head + 8 bytes of environ + 2 body bytes.
        assert_eq!(&f[..7], &[b'R', 1, 0, 23, 0, 0, 0]);
        assert_eq!(f[7], frame::FLAG_BODY_COMPLETE | frame::FLAG_HTTPS);
        assert_eq!(&f[8..16], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&f[16..20], &[8, 0, 0, 0]);
        assert_eq!(&f[20..], b"{z\x01Az\x01b0xy");
        let prep = Prepared::default();
        request_frame(&mut f, 2, &[], &prep, b"", false);
        assert_eq!(&f[7..], b"\0\xff\xff\xff\xff\xff\xff\xff\xff\x02\0\0\0{0");
    }

    #[test]
    fn content_length_is_digits_only() {
        for (v, want) in [
            ("0", Some(0)),
            ("10", Some(10)),
            (" 7", None),
            ("18446744073709551615", None), // 20 digits
            ("9999999999999999999", Some(9_999_999_999_999_999_999)),
            ("+5", None),
            ("-1", None),
            ("", None),
            ("1 2", None),
            ("0x10", None),
        ] {
            assert_eq!(parse_content_length(v.as_bytes()), want, "{v:?}");
        }
    }

    #[test]
    fn cgi_required_params_are_there_and_pep_3333_extras_are_not() {
        let mut p = params(&[
            ("HTTP_CONTENT_TYPE", "x"),
            ("HTTP_CONTENT_LENGTH", "1"),
            ("REQUEST_METHOD", "GET"),
        ]);
        prepare(&mut p, None);
        let names: Vec<_> = p.iter().map(|(n, _)| String::from_utf8_lossy(n)).collect();
        assert_eq!(
            names,
            ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING"]
        );
        assert!(p[1..].iter().all(|(_, v)| v.is_empty()));
    }
}
