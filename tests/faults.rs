//! The fault suite: malformed FastCGI, web servers that hang up, dawdle or
//! say nothing, apps that misbehave (tests/apps/faulty.py), signals and edits
//! to a running shim, and the limits of site.toml.
//!
//! Every case checks three things: the response (exact bytes, or exactly no
//! bytes), the log line that says what happened, and that the process is
//! unharmed: the next request is served, and the shim holds no more
//! descriptors, memory or child processes than before ([`Probe`]).

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const HELLO: &str =
    "Status: 200 OK\r\nContent-Type: text/plain\r\nX-Test: a b\r\n\r\nhello world\n";

/// How much the shim's resident memory may grow across a case. The shim
/// idles at about 0.8 MiB; the cases here move it by 0 to about 0.3 MiB
/// (allocator noise). A buffer kept from a big request counts as growth: it
/// is memory the process holds from then on.
const RSS_SLACK_KB: u64 = 512;

// --- servers, pages and log events -------------------------------------------

/// A shim serving tests/apps/faulty.py, with `extra` lines in site.toml.
fn start(tag: &str, extra: &str) -> Server {
    let dir = TempDir::new(tag);
    let site = site_toml(dir.path(), "faulty:app") + extra;
    fs::write(dir.join("site.toml"), site).expect("write site.toml");
    Server::start_in(dir)
}

/// The shim's fixed error pages (src/bridge.rs `error_page`), written out
/// here so that a change to them is a visible test change.
fn error_page(status: u16) -> String {
    let (reason, text) = match status {
        400 => ("Bad Request", "The request could not be understood."),
        413 => (
            "Content Too Large",
            "The request body is larger than this site accepts.",
        ),
        500 => (
            "Internal Server Error",
            "The application could not answer this request. The details are in the site's log.",
        ),
        502 => (
            "Bad Gateway",
            "The application ended unexpectedly while answering. The details are in the site's log.",
        ),
        503 => (
            "Service Unavailable",
            "The application is restarting or shutting down. Please try again.",
        ),
        504 => (
            "Gateway Timeout",
            "The application took too long to answer. The details are in the site's log.",
        ),
        other => panic!("no page for {other} in this suite"),
    };
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n\
         <body><h1>{reason}</h1>\n<p>{text}</p></body></html>\n"
    );
    let retry = if status == 503 {
        "Retry-After: 5\r\n"
    } else {
        ""
    };
    format!(
        "Status: {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\n{retry}\r\n{body}",
        body.len()
    )
}

/// `text` as the app's 200 text/plain response.
fn plain(text: &str) -> String {
    format!("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n{text}")
}

fn pid_of(r: &Response) -> i32 {
    assert_eq!(r.status(), 200, "{}", r.text());
    r.body_text()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a pid: {:?}", r.text()))
}

/// Where the log ends now: events after this belong to what comes next.
fn mark(srv: &Server) -> usize {
    srv.log().len()
}

/// Log lines from byte `from` on, as `level: message` (the timestamp and
/// `fcgi-shim[pid]` cut off).
fn events_since(srv: &Server, from: usize) -> Vec<String> {
    let log = srv.log();
    log.get(from..)
        .unwrap_or("")
        .lines()
        .map(|line| match line.find("fcgi-shim[") {
            Some(at) => match line[at..].find("] ") {
                Some(end) => line[at + end + 2..].to_string(),
                None => line.to_string(),
            },
            None => line.to_string(),
        })
        .collect()
}

/// Waits (3 s) until an event after `from` satisfies `pred`; returns it.
fn wait_event(srv: &Server, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let events = events_since(srv, from);
        if let Some(e) = events.iter().find(|e| pred(e)) {
            return e.clone();
        }
        if Instant::now() > deadline {
            panic!(
                "no log line {what}; the log since the case began:\n{}",
                events.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the event `want` (exact, without timestamp and pid) and checks
/// that it was logged once.
fn expect_event(srv: &Server, from: usize, want: &str) {
    wait_event(srv, from, &format!("{want:?}"), |e| e == want);
    let events = events_since(srv, from);
    let n = events.iter().filter(|e| *e == want).count();
    assert_eq!(n, 1, "{want:?} logged {n} times:\n{}", events.join("\n"));
}

/// The warnings and errors logged after `from`.
fn complaints_since(srv: &Server, from: usize) -> Vec<String> {
    events_since(srv, from)
        .into_iter()
        .filter(|e| e.starts_with("warning:") || e.starts_with("error:"))
        .collect()
}

// --- the process is unharmed -----------------------------------------------

/// What the shim holds: open descriptors, resident memory, live children.
#[derive(Debug)]
struct Probe {
    fds: Vec<String>,
    rss_kb: u64,
    children: Vec<i32>,
}

impl Probe {
    fn take(pid: i32) -> Probe {
        let mut fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("read /proc/<shim>/fd")
            .flatten()
            .map(|e| {
                let target = fs::read_link(e.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                format!("{} -> {target}", e.file_name().to_string_lossy())
            })
            .collect();
        fds.sort();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        let children = children(pid)
            .into_iter()
            .filter(|&(_, state)| state != 'Z')
            .map(|(p, _)| p)
            .collect();
        Probe {
            fds,
            rss_kb,
            children,
        }
    }
}

/// Serves one request (so that the worker is up) and probes the shim once
/// it has let go of that connection.
fn baseline(srv: &Server) -> Probe {
    let mut c = srv.connect();
    let r = c.roundtrip(&Req::get("hello"));
    assert_eq!(
        r.text(),
        HELLO,
        "the first request failed\n{}",
        srv.describe()
    );
    assert_eq!(c.read_to_close(Duration::from_secs(3)), Ok(vec![]));
    settled_probe(srv.pid())
}

/// A probe taken once two in a row, 50 ms apart, agree on the descriptors.
fn settled_probe(pid: i32) -> Probe {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = Probe::take(pid);
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = Probe::take(pid);
        if now.fds == last.fds || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// The next request is served, and the shim holds no more descriptors,
/// memory or child processes than at `before`. Workers that were replaced
/// must be gone, not zombies.
fn assert_unharmed(srv: &Server, before: &Probe) {
    let r = srv.get("hello");
    assert_eq!(
        r.text(),
        HELLO,
        "the next request must be served normally\n{}",
        srv.describe()
    );
    let pid = srv.pid();
    // The shim closes the connection after END_REQUEST and may still be
    // draining or replacing a worker: give it a moment to settle.
    let deadline = Instant::now() + Duration::from_secs(3);
    let now = loop {
        let now = Probe::take(pid);
        let settled = now.fds.len() <= before.fds.len()
            && now.children.len() == before.children.len()
            && zombie_children(pid).is_empty();
        if settled || Instant::now() > deadline {
            break now;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        now.fds.len(),
        before.fds.len(),
        "descriptors of the shim grew:\nbefore {:#?}\nafter {:#?}",
        before.fds,
        now.fds
    );
    assert_eq!(
        now.children.len(),
        before.children.len(),
        "children of the shim: before {:?}, after {:?}",
        before.children,
        now.children
    );
    assert_eq!(zombie_children(pid), Vec::<i32>::new(), "zombie children");
    for old in &before.children {
        if !now.children.contains(old) {
            assert!(process_gone(*old), "replaced worker {old} still runs");
        }
    }
    assert!(
        now.rss_kb <= before.rss_kb + RSS_SLACK_KB,
        "the shim's VmRSS grew from {} kB to {} kB (allowed: {RSS_SLACK_KB} kB) \
         and stays there while it idles",
        before.rss_kb,
        now.rss_kb
    );
}

// --- raw connections ----------------------------------------------------------

/// Sends `bytes` from another thread (the shim may stop reading), then
/// half-closes; returns what the shim sent before it closed. Panics if the
/// connection stays open for 5 s after that.
fn exchange(srv: &Server, bytes: Vec<u8>) -> Vec<u8> {
    let mut c = srv.connect();
    let mut w = c.s.try_clone().expect("clone socket");
    let writer = thread::spawn(move || {
        // The shim may close first: EPIPE is an expected outcome here.
        let _ = w.write_all(&bytes);
        let _ = w.shutdown(Shutdown::Write);
    });
    let got = c
        .read_to_close(Duration::from_secs(5))
        .unwrap_or_else(|got| panic!("connection left open; got {:?}", parse_records(&got)));
    writer.join().expect("writer thread");
    got
}

/// A malformed stream: the connection is closed without a byte sent, the
/// log says why (exactly `event`), and nothing else complains.
fn assert_dropped(srv: &Server, what: &str, bytes: Vec<u8>, event: &str) {
    let from = mark(srv);
    let got = exchange(srv, bytes);
    assert!(
        got.is_empty(),
        "{what}: the shim answered {:?}",
        parse_records(&got)
    );
    expect_event(srv, from, event);
    let complaints = complaints_since(srv, from);
    assert_eq!(complaints, [event], "{what}: other complaints in the log");
}

/// A record with the given padding length and `padding` bytes of it
/// actually sent (fewer than it says, to run past the end of the stream).
fn padded_record(kind: u8, id: u16, content: &[u8], pad_len: u8, padding: usize) -> Vec<u8> {
    let mut out = vec![1, kind];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[pad_len, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
    out
}

fn begin(id: u16, flags: u8) -> Vec<u8> {
    record(BEGIN_REQUEST, id, &begin_body(RESPONDER, flags))
}

/// Reads records until END_REQUEST for each id in `ids` (or the close).
fn read_until_ends(c: &mut Conn, ids: &[u16]) -> Vec<Record> {
    let mut records = vec![];
    let done = |rs: &Vec<Record>| {
        ids.iter()
            .all(|id| rs.iter().any(|r| r.kind == END_REQUEST && r.id == *id))
    };
    while !done(&records) {
        match c.read_record() {
            Some(rec) => records.push(rec),
            None => break,
        }
    }
    records
}

/// The STDOUT stream of request `id` in `records`, checked for shape:
/// data, one empty STDOUT, then END_REQUEST(0, REQUEST_COMPLETE).
fn stdout_of(records: &[Record], id: u16) -> String {
    let mine: Vec<&Record> = records.iter().filter(|r| r.id == id).collect();
    let n = mine.len();
    assert!(n >= 2, "request {id}: {records:?}");
    assert_eq!(
        (mine[n - 2].kind, mine[n - 2].content.len()),
        (STDOUT, 0),
        "request {id}: empty STDOUT before the end: {records:?}"
    );
    assert_eq!(mine[n - 1].end(), (0, REQUEST_COMPLETE), "{records:?}");
    let mut out = vec![];
    for r in &mine[..n - 2] {
        assert_eq!(r.kind, STDOUT, "request {id}: {records:?}");
        assert!(
            !r.content.is_empty(),
            "empty STDOUT mid-stream: {records:?}"
        );
        out.extend_from_slice(&r.content);
    }
    String::from_utf8_lossy(&out).into_owned()
}

// --- malformed records ----------------------------------------------------------

#[test]
fn bad_version_in_any_record_drops_the_connection() {
    let srv = start("bad-version", "");
    let before = baseline(&srv);
    let good = request_bytes(&Req::get("hello"));
    // The first record (BEGIN_REQUEST), the second (first PARAMS), with
    // versions 0, 2 and 255.
    for (at, version) in [(0, 2u8), (0, 0), (16, 2), (16, 255)] {
        let mut bytes = good.clone();
        bytes[at] = version;
        assert_dropped(
            &srv,
            &format!("version {version} at byte {at}"),
            bytes,
            &format!(
                "warning: connection dropped: malformed FastCGI: record version {version}, expected 1"
            ),
        );
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn truncated_header_drops_the_connection() {
    let srv = start("trunc-header", "");
    let before = baseline(&srv);
    let good = request_bytes(&Req::get("hello"));
    // Inside the BEGIN_REQUEST header, inside the first PARAMS header,
    // inside the empty PARAMS header that would end the stream.
    let params_end = 16 + record(PARAMS, 1, &Req::get("hello").params_stream()).len();
    for cut in [1, 3, 7, 16 + 4, params_end + 5] {
        assert_dropped(
            &srv,
            &format!("cut at {cut}"),
            good[..cut].to_vec(),
            "warning: connection dropped: malformed FastCGI: connection closed in the middle of a record",
        );
    }
    // At a record boundary, before PARAMS ended.
    for cut in [16, params_end] {
        assert_dropped(
            &srv,
            &format!("cut at {cut}"),
            good[..cut].to_vec(),
            "warning: connection dropped: malformed FastCGI: connection closed before the end of PARAMS",
        );
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn truncated_content_drops_the_connection() {
    let srv = start("trunc-content", "");
    let before = baseline(&srv);
    let params = Req::get("hello").params_stream();
    let cases = [
        // BEGIN_REQUEST says 8 bytes, 4 come.
        ("begin body", begin(1, 0)[..12].to_vec()),
        // PARAMS says params.len() bytes, half come.
        ("params content", {
            let mut b = begin(1, 0);
            b.extend_from_slice(&record(PARAMS, 1, &params)[..8 + params.len() / 2]);
            b
        }),
        // A GET_VALUES (management) record cut short.
        (
            "get_values content",
            record(GET_VALUES, 0, b"\x0eFCGI_MAX_CONNS")[..12].to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        assert_dropped(
            &srv,
            what,
            bytes,
            "warning: connection dropped: malformed FastCGI: connection closed in the middle of a record",
        );
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn padding_beyond_the_end_of_the_stream_drops_the_connection() {
    let srv = start("padding", "");
    let before = baseline(&srv);
    let params = Req::get("hello").params_stream();
    let cases = [
        // The whole PARAMS content, then 10 of the 200 padding bytes it announces.
        ("params padding", {
            let mut b = begin(1, 0);
            b.extend(padded_record(PARAMS, 1, &params, 200, 10));
            b
        }),
        // The empty PARAMS that ends the stream announces 255 bytes of padding.
        ("end-of-params padding", {
            let mut b = begin(1, 0);
            b.extend(record(PARAMS, 1, &params));
            b.extend(padded_record(PARAMS, 1, b"", 255, 0));
            b
        }),
        // BEGIN_REQUEST with 8 bytes of padding announced, none sent.
        (
            "begin padding",
            padded_record(BEGIN_REQUEST, 1, &begin_body(RESPONDER, 0), 8, 0),
        ),
    ];
    for (what, bytes) in cases {
        assert_dropped(
            &srv,
            what,
            bytes,
            "warning: connection dropped: malformed FastCGI: connection closed in the middle of a record",
        );
    }
    // A POST whose body record announces padding that never comes: the app
    // is running and reading; it must get the end of its input, and the
    // client nothing.
    let req = Req::post("echo", b"0123456789");
    let mut bytes = begin(1, 0);
    bytes.extend(stream_records(PARAMS, 1, &req.params_stream()));
    bytes.extend(padded_record(STDIN, 1, b"0123456789", 100, 3));
    assert_dropped(
        &srv,
        "stdin padding",
        bytes,
        "warning: connection dropped: malformed FastCGI: connection closed in the middle of a record",
    );
    assert_unharmed(&srv, &before);
}

/// The request `hello`, with `extra` appended to its PARAMS stream.
fn with_params_tail(extra: &[u8]) -> (Vec<u8>, usize) {
    let mut params = Req::get("hello").params_stream();
    let at = params.len();
    params.extend_from_slice(extra);
    let mut bytes = begin(1, 0);
    bytes.extend(stream_records(PARAMS, 1, &params));
    bytes.extend(stream_records(STDIN, 1, b""));
    (bytes, at)
}

fn assert_400(srv: &Server, what: &str, bytes: &[u8], at: usize) {
    let from = mark(srv);
    let mut c = srv.connect();
    c.write(bytes);
    let r = c.read_response(1);
    assert_eq!(r.text(), error_page(400), "{what}");
    assert_eq!(
        c.read_to_close(Duration::from_secs(3)),
        Ok(vec![]),
        "{what}: connection kept open"
    );
    let event = format!(
        "warning: request 1: name-value pair at byte {at} of PARAMS runs past the end; answering 400"
    );
    expect_event(srv, from, &event);
    assert_eq!(complaints_since(srv, from), [event], "{what}");
}

#[test]
fn name_or_value_length_0x7fffffff_answers_400() {
    let srv = start("len-7fffffff", "");
    let before = baseline(&srv);
    // CVE-2025-23016's shape: a 4-byte length of 0x7fffffff.
    for (what, evil) in [
        ("name length", &[0xff, 0xff, 0xff, 0xff, 1, b'a', b'b'][..]),
        ("value length", &[1, 0xff, 0xff, 0xff, 0xff, b'a'][..]),
        (
            "both",
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        ),
        // 0x80000000 with the high bit as the marker: a length of 0.
        // Then 0x7fffffff for the value: still past the end.
        (
            "zero name",
            &[0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, b'z'][..],
        ),
    ] {
        let (bytes, at) = with_params_tail(evil);
        assert_400(&srv, what, &bytes, at);
    }
    // Alone, at byte 0 of the stream.
    let mut bytes = begin(1, 0);
    bytes.extend(stream_records(
        PARAMS,
        1,
        &[0xff, 0xff, 0xff, 0xff, 1, b'a'],
    ));
    bytes.extend(stream_records(STDIN, 1, b""));
    assert_400(&srv, "alone", &bytes, 0);
    assert_unharmed(&srv, &before);
}

#[test]
fn pair_overrunning_params_answers_400() {
    let srv = start("pair-overrun", "");
    let before = baseline(&srv);
    for (what, tail) in [
        // Name 5, value 100: only 10 bytes follow.
        ("value past the end", &b"\x05\x64HTTP_0123456789"[..]),
        // One byte over: name 2 + value 3 with 4 bytes left.
        ("one byte over", &b"\x02\x03ABcd"[..]),
        // A 4-byte length cut short by the end of the stream.
        ("length cut short", &b"\x01\x80\x00"[..]),
        // A lone length byte.
        ("lone length", &b"\x07"[..]),
    ] {
        let (bytes, at) = with_params_tail(tail);
        assert_400(&srv, what, &bytes, at);
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn ten_thousand_params_all_reach_the_app() {
    let srv = start("10k-params", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let mut req = Req::get("count_params");
    for i in 0..10_000 {
        req.params.push((
            format!("HTTP_X_P{i:05}").into_bytes(),
            format!("{i}").into_bytes(),
        ));
    }
    let r = srv.request(&req);
    assert_eq!(r.text(), plain("10000"));
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

#[test]
fn one_mib_value_reaches_the_app_intact() {
    let srv = start("1mib-value", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let mut value = b"BEGIN-".to_vec();
    value.extend(std::iter::repeat_n(b'x', (1 << 20) - 10));
    value.extend_from_slice(b"-END");
    assert_eq!(value.len(), 1 << 20);
    let r = srv.request(&Req::get("big_value").param("HTTP_X_BIG", &value));
    assert_eq!(
        r.text(),
        plain(&format!("1048576 BEGIN- -END {}", (1 << 20) - 10))
    );
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

#[test]
fn params_of_exactly_4_mib_are_served_and_one_byte_more_is_refused() {
    let srv = start("max-params", "");
    let before = baseline(&srv);
    let base = Req::get("big_value").params_stream();
    // The value that makes the whole stream `total` bytes long.
    let value_for = |total: usize| {
        let fixed = base.len() + 1 + 4 + "HTTP_X_BIG".len();
        let mut v = b"BEGIN-".to_vec();
        v.extend(std::iter::repeat_n(b'x', total - fixed - 10));
        v.extend_from_slice(b"-END");
        v
    };
    let v = value_for(4 << 20);
    let req = Req::get("big_value").param("HTTP_X_BIG", &v);
    assert_eq!(req.params_stream().len(), 4 << 20);
    let from = mark(&srv);
    let r = srv.request(&req);
    assert_eq!(
        r.text(),
        plain(&format!("{} BEGIN- -END {}", v.len(), v.len() - 10))
    );
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());

    let v = value_for((4 << 20) + 1);
    let req = Req::get("big_value").param("HTTP_X_BIG", &v);
    assert_eq!(req.params_stream().len(), (4 << 20) + 1);
    assert_dropped(
        &srv,
        "4 MiB + 1",
        request_bytes(&req),
        "warning: connection dropped: malformed FastCGI: PARAMS over 4194304 bytes",
    );
    assert_unharmed(&srv, &before);
}

#[test]
fn empty_params_record_mid_stream_ends_params_and_later_params_never_reach_the_app() {
    // FastCGI 1.0, 3.3: a stream ends with its empty record. What comes
    // after it for the same stream is not part of the request: the app sees
    // the params before the empty record, and the request is served.
    let srv = start("empty-params-mid", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let early = Req::get("environ")
        .param("HTTP_X_EARLY", "yes")
        .params_stream();
    let late = encode_pairs(&[("HTTP_X_LATE", "yes"), ("PATH_INFO", "/hello")]);
    let mut bytes = begin(1, 0);
    bytes.extend(record(PARAMS, 1, &early));
    bytes.extend(record(PARAMS, 1, b""));
    bytes.extend(record(PARAMS, 1, &late));
    bytes.extend(record(PARAMS, 1, b""));
    bytes.extend(record(STDIN, 1, b""));
    let mut c = srv.connect();
    c.write(&bytes);
    let r = c.read_response(1);
    assert_eq!(r.env_str("HTTP_X_EARLY").as_deref(), Some("yes"));
    assert_eq!(
        r.env_str("HTTP_X_LATE"),
        None,
        "a param after the end of PARAMS"
    );
    assert_eq!(r.env_str("PATH_INFO").as_deref(), Some("/environ"));
    // A first PARAMS record that is empty: a request with no params at all.
    // The app still runs (PATH_INFO "" routes to hello).
    let mut bytes = begin(1, 0);
    bytes.extend(record(PARAMS, 1, b""));
    bytes.extend(record(PARAMS, 1, &early));
    bytes.extend(record(STDIN, 1, b""));
    let mut c = srv.connect();
    c.write(&bytes);
    let r = c.read_response(1);
    assert_eq!(r.text(), HELLO);
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

#[test]
fn empty_stdin_record_mid_body_ends_the_body() {
    let srv = start("empty-stdin-mid", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    // CONTENT_LENGTH says 6; the stream ends after 3: the app gets 3 bytes.
    let req = Req::post("echo", b"abcdef");
    let mut bytes = begin(1, 0);
    bytes.extend(stream_records(PARAMS, 1, &req.params_stream()));
    bytes.extend(record(STDIN, 1, b"abc"));
    bytes.extend(record(STDIN, 1, b""));
    bytes.extend(record(STDIN, 1, b"def"));
    bytes.extend(record(STDIN, 1, b""));
    let mut c = srv.connect();
    c.write(&bytes);
    let r = c.read_response(1);
    assert_eq!(
        r.text(),
        "Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nabc"
    );
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

#[test]
fn zero_length_records_of_every_other_kind_are_answered_or_ignored() {
    let srv = start("zero-len", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let req = Req::post("echo", b"payload");
    let empty = |kind, id| record(kind, id, b"");
    let mut bytes = vec![];
    // Before BEGIN_REQUEST: records of a request that is not open (ignored),
    // empty management records (answered).
    for (kind, id) in [
        (STDIN, 1),
        (PARAMS, 1),
        (STDOUT, 1),
        (END_REQUEST, 1),
        (99, 1),
    ] {
        bytes.extend(empty(kind, id));
    }
    bytes.extend(empty(GET_VALUES, 0)); // -> empty GET_VALUES_RESULT
    bytes.extend(empty(99, 0)); // -> UNKNOWN_TYPE 99
    bytes.extend(begin(1, 0));
    // During PARAMS: other ids and management.
    bytes.extend(empty(STDIN, 2));
    bytes.extend(empty(ABORT_REQUEST, 2));
    bytes.extend(empty(GET_VALUES, 0)); // -> empty GET_VALUES_RESULT
    let params = req.params_stream();
    let (a, b) = params.split_at(params.len() / 2);
    bytes.extend(record(PARAMS, 1, a));
    bytes.extend(empty(STDOUT, 2));
    bytes.extend(record(PARAMS, 1, b));
    bytes.extend(empty(PARAMS, 1)); // the end of PARAMS
    // During STDIN: empty records of every kind that is not this request's
    // STDIN or a second BEGIN_REQUEST for it.
    for (kind, id) in [
        (PARAMS, 1),
        (STDOUT, 1),
        (STDERR, 1),
        (END_REQUEST, 1),
        (99, 1),
        (ABORT_REQUEST, 3),
        (STDIN, 3),
    ] {
        bytes.extend(empty(kind, id));
    }
    bytes.extend(record(STDIN, 1, b"pay"));
    bytes.extend(empty(UNKNOWN_TYPE, 0)); // -> UNKNOWN_TYPE 11
    bytes.extend(record(STDIN, 1, b"load"));
    bytes.extend(empty(STDIN, 1)); // the end of STDIN
    let mut c = srv.connect();
    c.write(&bytes);
    let records = read_until_ends(&mut c, &[1]);
    let management: Vec<&Record> = records.iter().filter(|r| r.id == 0).collect();
    assert_eq!(
        management,
        [
            &Record {
                kind: GET_VALUES_RESULT,
                id: 0,
                content: vec![]
            },
            &Record {
                kind: UNKNOWN_TYPE,
                id: 0,
                content: vec![99, 0, 0, 0, 0, 0, 0, 0]
            },
            &Record {
                kind: GET_VALUES_RESULT,
                id: 0,
                content: vec![]
            },
            &Record {
                kind: UNKNOWN_TYPE,
                id: 0,
                content: vec![UNKNOWN_TYPE, 0, 0, 0, 0, 0, 0, 0]
            },
        ],
        "{records:?}"
    );
    assert!(
        records.iter().all(|r| r.id == 0 || r.id == 1),
        "records for ids never begun: {records:?}"
    );
    assert_eq!(
        stdout_of(&records, 1),
        "Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 7\r\n\r\npayload"
    );
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());

    // An empty BEGIN_REQUEST body is not a request: dropped.
    assert_dropped(
        &srv,
        "empty BEGIN_REQUEST",
        empty(BEGIN_REQUEST, 1),
        "warning: connection dropped: malformed FastCGI: BEGIN_REQUEST body of 0 bytes, expected 8",
    );
    assert_unharmed(&srv, &before);
}

#[test]
fn unknown_record_types() {
    let srv = start("unknown-types", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    // Management records of types we do not know (or that only we send):
    // UNKNOWN_TYPE each, and the connection goes on to serve a request.
    let mut bytes = vec![];
    let kinds = [0u8, 12, 99, 255, END_REQUEST, STDOUT, GET_VALUES_RESULT];
    for kind in kinds {
        bytes.extend(record(kind, 0, b"junk"));
    }
    // An unknown type for a request that is not open: ignored.
    bytes.extend(record(99, 1, b"junk"));
    bytes.extend(request_bytes(&Req::get("hello")));
    let mut c = srv.connect();
    c.write(&bytes);
    let records = read_until_ends(&mut c, &[1]);
    let management: Vec<Record> = records.iter().filter(|r| r.id == 0).cloned().collect();
    let want: Vec<Record> = kinds
        .iter()
        .map(|&k| Record {
            kind: UNKNOWN_TYPE,
            id: 0,
            content: vec![k, 0, 0, 0, 0, 0, 0, 0],
        })
        .collect();
    assert_eq!(management, want);
    assert_eq!(stdout_of(&records, 1), HELLO);

    // An unknown type for the open request while its STDIN streams: ignored.
    let req = Req::post("echo", b"abc");
    let mut bytes = begin(1, 0);
    bytes.extend(stream_records(PARAMS, 1, &req.params_stream()));
    bytes.extend(record(STDIN, 1, b"a"));
    bytes.extend(record(99, 1, b"junk"));
    bytes.extend(record(STDIN, 1, b"bc"));
    bytes.extend(record(STDIN, 1, b""));
    let mut c = srv.connect();
    c.write(&bytes);
    let r = c.read_response(1);
    assert_eq!(r.body(), b"abc");
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());

    // An unknown type for the open request before its PARAMS ended: the
    // stream is out of order (libfcgi: FCGX_PROTOCOL_ERROR), dropped.
    let mut bytes = begin(1, 0);
    bytes.extend(record(PARAMS, 1, &Req::get("hello").params_stream()));
    bytes.extend(record(99, 1, b"junk"));
    bytes.extend(record(PARAMS, 1, b""));
    bytes.extend(record(STDIN, 1, b""));
    assert_dropped(
        &srv,
        "type 99 during PARAMS",
        bytes,
        "warning: connection dropped: malformed FastCGI: record type 99 before the end of PARAMS",
    );
    assert_unharmed(&srv, &before);
}

#[test]
fn begin_request_twice_with_the_same_id_drops_the_connection() {
    let srv = start("begin-twice-same", "");
    let before = baseline(&srv);
    let req = Req::post("echo", b"abc");
    // Right after the first BEGIN_REQUEST.
    let mut bytes = begin(1, 0);
    bytes.extend(begin(1, 0));
    bytes.extend(stream_records(PARAMS, 1, &req.params_stream()));
    bytes.extend(stream_records(STDIN, 1, b"abc"));
    assert_dropped(
        &srv,
        "before PARAMS",
        bytes,
        "warning: connection dropped: malformed FastCGI: record type 1 before the end of PARAMS",
    );
    // While the body streams: the app is never given a request that
    // another BEGIN_REQUEST contradicts, and the client gets nothing.
    let mut bytes = begin(1, 0);
    bytes.extend(stream_records(PARAMS, 1, &req.params_stream()));
    bytes.extend(record(STDIN, 1, b"a"));
    bytes.extend(begin(1, 0));
    bytes.extend(stream_records(STDIN, 1, b"bc"));
    assert_dropped(
        &srv,
        "during STDIN",
        bytes,
        "warning: connection dropped: malformed FastCGI: BEGIN_REQUEST for a request already open",
    );
    assert_unharmed(&srv, &before);
}

#[test]
fn begin_request_twice_with_another_id_gets_cant_mpx_conn_and_the_first_is_served() {
    let srv = start("begin-twice-other", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let req = Req::post("echo", b"abc");
    let params = req.params_stream();
    let (a, b) = params.split_at(10);
    let cases = [
        ("during PARAMS", {
            let mut bytes = begin(1, 0);
            bytes.extend(record(PARAMS, 1, a));
            bytes.extend(begin(2, 0));
            bytes.extend(record(PARAMS, 1, b));
            bytes.extend(record(PARAMS, 1, b""));
            bytes.extend(stream_records(STDIN, 1, b"abc"));
            bytes
        }),
        ("during STDIN", {
            let mut bytes = begin(1, 0);
            bytes.extend(stream_records(PARAMS, 1, &params));
            bytes.extend(record(STDIN, 1, b"a"));
            bytes.extend(begin(2, KEEP_CONN));
            bytes.extend(stream_records(STDIN, 1, b"bc"));
            bytes
        }),
    ];
    for (what, bytes) in cases {
        let mut c = srv.connect();
        c.write(&bytes);
        let records = read_until_ends(&mut c, &[1, 2]);
        let for2: Vec<&Record> = records.iter().filter(|r| r.id == 2).collect();
        assert_eq!(
            for2,
            [&Record {
                kind: END_REQUEST,
                id: 2,
                content: vec![0, 0, 0, 0, CANT_MPX_CONN, 0, 0, 0]
            }],
            "{what}: {records:?}"
        );
        assert_eq!(
            stdout_of(&records, 1),
            "Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nabc",
            "{what}"
        );
        assert_eq!(
            c.read_to_close(Duration::from_secs(3)),
            Ok(vec![]),
            "{what}: no KEEP_CONN on request 1: the shim must close"
        );
    }
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

#[test]
fn stdin_before_the_end_of_params_drops_the_connection() {
    let srv = start("stdin-early", "");
    let before = baseline(&srv);
    let req = Req::post("echo", b"abc");
    for (what, stdin) in [("data", &b"abc"[..]), ("empty", &b""[..])] {
        let mut bytes = begin(1, 0);
        bytes.extend(record(PARAMS, 1, &req.params_stream()));
        bytes.extend(record(STDIN, 1, stdin));
        bytes.extend(record(PARAMS, 1, b""));
        bytes.extend(stream_records(STDIN, 1, b"abc"));
        assert_dropped(
            &srv,
            what,
            bytes,
            "warning: connection dropped: malformed FastCGI: record type 5 before the end of PARAMS",
        );
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn abort_mid_body_ends_the_request_with_one_end_request_and_no_output() {
    let srv = start("abort-mid-body", "");
    let before = baseline(&srv);
    let body = noise(100_000, 7);
    let req = Req::post("echo", &body);
    // Each part in its own write, with pauses, so that the abort arrives
    // while the app is reading the body (and, the second time, while the
    // body is still in the shim's buffer).
    for pause in [Duration::from_millis(300), Duration::ZERO] {
        let from = mark(&srv);
        let mut c = srv.connect();
        c.write(&begin(1, 0));
        c.write(&stream_records(PARAMS, 1, &req.params_stream()));
        c.write(&record(STDIN, 1, &body[..30_000]));
        thread::sleep(pause);
        c.write(&record(ABORT_REQUEST, 1, b""));
        let got = c
            .read_to_close(Duration::from_secs(5))
            .expect("the shim must close after the abort");
        assert_eq!(
            parse_records(&got),
            [Record {
                kind: END_REQUEST,
                id: 1,
                content: vec![0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0]
            }],
            "pause {pause:?}: exactly one END_REQUEST and nothing else"
        );
        expect_event(
            &srv,
            from,
            "info: request POST /echo: the client went away before the response was complete",
        );
        assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn kept_connection_survives_an_abort_an_app_failure_and_an_unread_body() {
    // nginx's fastcgi_keep_conn: one connection, request after request.
    // Each failure ends its own request only; a malformed record then ends
    // the connection, and the process serves on.
    let srv = start("keep-conn-faults", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let mut c = srv.connect();
    // 1: the app raises: the fixed 500, and the connection stays.
    let r = c.roundtrip(&Req::get("raise_before").id(1).flags(KEEP_CONN));
    assert_eq!(r.text(), error_page(500));
    // 2: aborted before the end of its PARAMS: one END_REQUEST.
    c.write(&begin(2, KEEP_CONN));
    c.write(&record(PARAMS, 2, &Req::get("hello").params_stream()));
    c.write(&record(ABORT_REQUEST, 2, b""));
    let rec = c.read_record().expect("END_REQUEST for the abort");
    assert_eq!(
        rec,
        Record {
            kind: END_REQUEST,
            id: 2,
            content: vec![0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0]
        }
    );
    // 3: the worker dies mid-request: 502.
    let r = c.roundtrip(&Req::get("kill9").id(3).flags(KEEP_CONN));
    assert_eq!(r.text(), error_page(502));
    // 4: a body the app never reads: read away, and the connection stays
    // in step for the next request.
    let body = noise(200_000, 5);
    let req = Req::post("hello", &body).id(4).flags(KEEP_CONN);
    let mut w = c.s.try_clone().expect("clone");
    let bytes = request_bytes(&req);
    let writer = thread::spawn(move || w.write_all(&bytes));
    let r = c.read_response(4);
    writer.join().expect("writer").expect("the body was read");
    assert_eq!(r.text(), HELLO);
    // 5: an ordinary request.
    let r = c.roundtrip(&Req::post("echo", b"five").id(5).flags(KEEP_CONN));
    assert_eq!(r.body(), b"five");
    // 6: garbage: the connection ends, without a byte.
    c.write_lossy(&[2, 1, 0, 6, 0, 0, 0, 0]);
    assert_eq!(c.read_to_close(Duration::from_secs(5)), Ok(vec![]));
    let dropped = "warning: connection dropped: malformed FastCGI: record version 2, expected 1";
    expect_event(&srv, from, dropped);
    let complaints = complaints_since(&srv, from);
    assert_eq!(
        complaints.last().map(String::as_str),
        Some(dropped),
        "{complaints:#?}"
    );
    assert_unharmed(&srv, &before);
}

/// xorshift64*, seeded: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// What the shim sent back on a connection of garbage: whole records of
/// version 1, of the types a responder sends, and nothing else.
fn assert_well_formed(what: &str, got: &[u8]) {
    let records = parse_records(got);
    let used: usize = {
        let mut n = 0;
        let mut rest = got;
        while rest.len() >= 8 {
            let total = 8 + u16::from_be_bytes([rest[4], rest[5]]) as usize + rest[6] as usize;
            if rest.len() < total {
                break;
            }
            assert_eq!(rest[0], 1, "{what}: version of a record sent: {got:?}");
            n += total;
            rest = &rest[total..];
        }
        n
    };
    assert_eq!(used, got.len(), "{what}: a partial record at the end");
    for r in &records {
        assert!(
            matches!(
                r.kind,
                STDOUT | END_REQUEST | GET_VALUES_RESULT | UNKNOWN_TYPE
            ),
            "{what}: sent a record of type {}: {records:?}",
            r.kind
        );
    }
}

#[test]
fn random_bytes_many_seeds() {
    let srv = start("random-bytes", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let mut rng = Rng(0x5eed_f00d);
    for i in 0..300 {
        let len = rng.pick(&[1usize, 7, 8, 9, 100, 4096, 70_000]);
        let mut bytes = noise(len, rng.next());
        // Half of them look like FastCGI for a byte or two.
        if i % 2 == 0 {
            bytes[0] = 1;
        }
        let got = exchange(&srv, bytes);
        assert_well_formed(&format!("iteration {i}"), &got);
    }
    assert!(srv.log().contains("connection dropped"), "{}", srv.log());
    let log = srv.log();
    assert!(!log.contains("panicked"), "{log}");
    // One line per dropped connection, all warnings of the same kind.
    for e in complaints_since(&srv, from) {
        assert!(
            e.starts_with("warning: connection dropped: malformed FastCGI: ")
                || e.starts_with("warning: request 1: "),
            "unexpected complaint: {e}"
        );
    }
    assert_unharmed(&srv, &before);
}

/// A random record: type, id, content, padding and (now and then) version
/// drawn so that it is often meaningful to a responder.
fn random_record(rng: &mut Rng, good_params: &[u8]) -> Vec<u8> {
    let kind = rng.pick(&[
        BEGIN_REQUEST,
        ABORT_REQUEST,
        END_REQUEST,
        PARAMS,
        PARAMS,
        STDIN,
        STDIN,
        STDOUT,
        GET_VALUES,
        GET_VALUES,
        UNKNOWN_TYPE,
        0,
        99,
    ]);
    let id = rng.pick(&[0u16, 0, 1, 1, 1, 2, 0xffff]);
    let content = match (kind, rng.below(4)) {
        (BEGIN_REQUEST, 0..=2) => begin_body(
            rng.pick(&[RESPONDER, RESPONDER, AUTHORIZER, FILTER, 0, 0xffff]),
            rng.below(2) as u8,
        ),
        (PARAMS, 0) => good_params.to_vec(),
        (PARAMS, 1) => good_params[..rng.below(good_params.len())].to_vec(),
        (GET_VALUES, 0..=1) => encode_pairs(&[("FCGI_MAX_CONNS", ""), ("X", "y")]),
        _ => {
            let len = rng.pick(&[0usize, 0, 1, 8, 127, 128, 1000, 65535]);
            noise(len, rng.next())
        }
    };
    let mut rec = record(kind, id, &content);
    if rng.below(8) == 0 {
        rec[6] = rng.below(256) as u8; // padding that may not come
    }
    if rng.below(16) == 0 {
        rec[0] = rng.below(256) as u8; // a bad version, now and then
    }
    rec
}

#[test]
fn random_records_many_seeds() {
    // Half the cases are a valid request with a few mutations (a record
    // inserted, dropped, duplicated or swapped, a header byte changed), so
    // that every state of the responder is reached, the app included; the
    // other half are random record soup. A third are cut short at a random
    // byte.
    let srv = start("random-records", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let mut rng = Rng(0xfa17_5eed);
    let req = Req::post("echo", b"0123456789");
    let good_params = req.params_stream();
    let (mut answered, mut values, mut unknown) = (0, 0, 0);
    for i in 0..1000 {
        let mut records: Vec<Vec<u8>> = if i % 2 == 0 {
            let flags = rng.below(2) as u8;
            let mut rs = vec![begin(1, flags)];
            let cut = rng.below(good_params.len() + 1);
            rs.push(record(PARAMS, 1, &good_params[..cut]));
            rs.push(record(PARAMS, 1, &good_params[cut..]));
            rs.push(record(PARAMS, 1, b""));
            rs.push(record(STDIN, 1, b"01234"));
            rs.push(record(STDIN, 1, b"56789"));
            rs.push(record(STDIN, 1, b""));
            for _ in 0..rng.below(4) {
                let at = rng.below(rs.len());
                match rng.below(5) {
                    0 => rs.insert(at, random_record(&mut rng, &good_params)),
                    1 => {
                        rs.remove(at);
                    }
                    2 => {
                        let dup = rs[at].clone();
                        rs.insert(at, dup);
                    }
                    3 => {
                        let other = rng.below(rs.len());
                        rs.swap(at, other);
                    }
                    _ => {
                        // One header byte: type, id, length or padding.
                        let byte = rng.pick(&[1usize, 3, 5, 6]);
                        rs[at][byte] = rng.below(256) as u8;
                    }
                }
            }
            rs
        } else {
            (0..rng.below(10))
                .map(|_| random_record(&mut rng, &good_params))
                .collect()
        };
        if rng.below(8) == 0 {
            // Management records first: answered before anything else.
            records.insert(0, random_record(&mut rng, &good_params));
        }
        let mut bytes = records.concat();
        if !bytes.is_empty() && rng.below(3) == 0 {
            let cut = rng.below(bytes.len());
            bytes.truncate(cut);
        }
        let got = exchange(&srv, bytes);
        assert_well_formed(&format!("iteration {i}"), &got);
        let records = parse_records(&got);
        for (kind, seen) in [
            (STDOUT, &mut answered),
            (GET_VALUES_RESULT, &mut values),
            (UNKNOWN_TYPE, &mut unknown),
        ] {
            *seen += usize::from(records.iter().any(|r| r.kind == kind));
        }
    }
    // The generator must reach every state, the app included; otherwise
    // this test proves little.
    assert!(
        answered >= 150 && values >= 25 && unknown >= 100,
        "requests answered {answered}, GET_VALUES {values}, UNKNOWN_TYPE {unknown}"
    );
    let log = srv.log();
    assert!(!log.contains("panicked"), "{log}");
    for e in complaints_since(&srv, from) {
        assert!(
            e.starts_with("warning: connection dropped: malformed FastCGI: ")
                || e.starts_with("warning: request 1: "),
            "unexpected complaint: {e}"
        );
    }
    assert!(!process_gone(srv.pid()), "the shim died");
    assert_unharmed(&srv, &before);
}

// --- the web server hangs up, dawdles or says nothing --------------------------

#[test]
fn web_server_hanging_up_mid_body() {
    let srv = start("hangup-body", "");
    let before = baseline(&srv);
    let body = noise(1 << 20, 3);
    let req = Req::post("echo", &body);
    let mut bytes = begin(1, 0);
    bytes.extend(stream_records(PARAMS, 1, &req.params_stream()));
    let head = bytes.len();
    for chunk in body[..300_000].chunks(10_000) {
        bytes.extend(record(STDIN, 1, chunk));
    }
    // Each STDIN record is 8 + 10,000 bytes (no padding): after 20 of them
    // is a record boundary; 108 bytes further is inside the 21st.
    let boundary = head + 20 * 10_008;
    for (what, cut) in [("boundary", boundary), ("mid-record", boundary + 108)] {
        let from = mark(&srv);
        let mut c = srv.connect();
        c.write(&bytes[..cut]);
        drop(c);
        let event =
            "info: request POST /echo: the client went away before the response was complete";
        expect_event(&srv, from, event);
        if what == "boundary" {
            assert_eq!(complaints_since(&srv, from), Vec::<String>::new(), "{what}");
        } else {
            let want = "warning: connection dropped: malformed FastCGI: connection closed in the middle of a record";
            wait_event(&srv, from, want, |e| e == want);
        }
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn web_server_hanging_up_mid_response() {
    let srv = start("hangup-response", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let mut c = srv.connect();
    c.send(&Req::get("big8m"));
    for _ in 0..3 {
        let rec = c.read_record().expect("a STDOUT record");
        assert_eq!((rec.kind, rec.id), (STDOUT, 1));
    }
    drop(c);
    expect_event(
        &srv,
        from,
        "info: request GET /big8m: the client went away before the response was complete",
    );
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

/// The body of faulty.py's big1m/big8m: 11-byte numbered lines.
fn numbered(size: usize) -> Vec<u8> {
    (0..size / 11)
        .flat_map(|i| format!("{i:010}\n").into_bytes())
        .collect()
}

#[test]
fn slow_reader_gets_the_whole_response() {
    let srv = start("slow-reader", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let mut c = srv.connect();
    c.send(&Req::get("big1m"));
    // One byte per read(); the first 300 bytes one every 3 ms, then a 2 ms
    // pause every KiB: the shim finds the socket full again and again.
    let mut raw = vec![];
    let mut byte = [0u8; 1];
    loop {
        match c.s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => raw.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("after {} bytes: {e}", raw.len()),
        }
        if raw.len() <= 300 {
            thread::sleep(Duration::from_millis(3));
        } else if raw.len() % 1024 == 0 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let records = parse_records(&raw);
    let text = stdout_of(&records, 1);
    let body = numbered(1 << 20);
    let head = format!(
        "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    assert!(
        text.starts_with(&head),
        "{:?}",
        &text[..200.min(text.len())]
    );
    let got = &text.as_bytes()[head.len()..];
    assert_eq!(got.len(), body.len());
    assert!(
        got == &body[..],
        "body differs: {:016x} vs {:016x}",
        checksum(got),
        checksum(&body)
    );
    assert_well_formed("slow reader", &raw);
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

#[test]
fn silent_connection_is_dropped_after_io_timeout_and_the_next_is_served() {
    let srv = start("silent", "io_timeout = 2\n");
    let before = baseline(&srv);
    let from = mark(&srv);
    let t0 = Instant::now();
    let mut silent = srv.connect();
    let mut next = srv.connect();
    next.send(&Req::get("hello"));
    let r = next.read_response(1);
    let served_at = t0.elapsed();
    assert_eq!(r.text(), HELLO);
    assert_eq!(
        silent.read_to_close(Duration::from_secs(1)),
        Ok(vec![]),
        "the silent connection must be closed by now"
    );
    assert!(
        served_at >= Duration::from_millis(1800) && served_at < Duration::from_secs(4),
        "the silent connection held the shim for {served_at:?}, io_timeout is 2 s"
    );
    let event = "warning: connection dropped: the web server sent nothing within io_timeout";
    expect_event(&srv, from, event);
    assert_eq!(complaints_since(&srv, from), [event]);
    assert_unharmed(&srv, &before);
}

#[test]
fn web_server_silent_in_the_middle_of_a_request_is_dropped_after_io_timeout() {
    let srv = start("silent-mid", "io_timeout = 2\n");
    let before = baseline(&srv);
    let params = Req::post("echo", b"abc").params_stream();
    for (what, bytes) in [
        ("mid-PARAMS", {
            let mut b = begin(1, 0);
            b.extend(record(PARAMS, 1, &params));
            b
        }),
        ("mid-body", {
            let mut b = begin(1, 0);
            b.extend(stream_records(PARAMS, 1, &params));
            b.extend(record(STDIN, 1, b"a"));
            b
        }),
    ] {
        let from = mark(&srv);
        let t0 = Instant::now();
        let mut c = srv.connect();
        c.write(&bytes);
        let got = c.read_to_close(Duration::from_secs(5));
        let took = t0.elapsed();
        assert_eq!(got, Ok(vec![]), "{what}");
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
            "{what}: closed after {took:?}"
        );
        let event = "warning: connection dropped: the web server sent nothing within io_timeout";
        expect_event(&srv, from, event);
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn web_server_that_stops_reading_is_dropped_after_io_timeout_and_the_log_says_so() {
    let srv = start("stops-reading", "io_timeout = 2\n");
    let before = baseline(&srv);
    let from = mark(&srv);
    let t0 = Instant::now();
    let mut c = srv.connect();
    c.send(&Req::get("big8m"));
    // Read nothing: the shim's writes fill the socket and block.
    let event = wait_event_for(
        &srv,
        from,
        Duration::from_secs(6),
        "connection dropped",
        |e| e.starts_with("warning: connection dropped:"),
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "dropped after {took:?}, io_timeout is 2 s"
    );
    drop(c);
    assert!(
        event.contains("io_timeout") && !event.contains("sent nothing"),
        "the log must say that the web server stopped reading the response, \
         not that it sent nothing: {event:?}"
    );
    assert_unharmed(&srv, &before);
}

fn wait_event_for(
    srv: &Server,
    from: usize,
    limit: Duration,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(e) = events_since(srv, from).into_iter().find(|e| pred(e)) {
            return e;
        }
        if Instant::now() > deadline {
            panic!(
                "no log line {what} within {limit:?}:\n{}",
                events_since(srv, from).join("\n")
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// --- the app misbehaves -----------------------------------------------------------

/// The app's lines in the log, without the `info: app[pid]: ` prefix.
fn app_lines(srv: &Server, from: usize) -> Vec<String> {
    events_since(srv, from)
        .into_iter()
        .filter_map(|e| {
            let rest = e.strip_prefix("info: app[")?;
            let (_, line) = rest.split_once("]: ")?;
            Some(line.to_string())
        })
        .collect()
}

/// Fails unless the app's output after `from` has each of `want` as a line.
fn assert_app_lines(srv: &Server, from: usize, want: &[&str]) {
    let lines = app_lines(srv, from);
    for w in want {
        assert!(lines.iter().any(|l| l == w), "{w:?} not in {lines:#?}");
    }
}

#[test]
fn a_request_without_request_uri_is_still_named_in_the_log() {
    // Not every server sends REQUEST_URI: the log names SCRIPT_NAME +
    // PATH_INFO + ?QUERY_STRING instead of an empty path.
    let srv = start("no-request-uri", "");
    let from = mark(&srv);
    let mut req = Req::get("raise_before")
        .param("SCRIPT_NAME", "/blog")
        .param("QUERY_STRING", "a=1");
    req.params.retain(|(k, _)| k != b"REQUEST_URI");
    let r = srv.request(&req);
    assert_eq!(r.text(), error_page(500));
    expect_event(
        &srv,
        from,
        "error: request GET /blog/raise_before?a=1: the app failed (traceback above)",
    );
}

#[test]
fn app_raising_before_headers_gets_a_fixed_500_and_the_traceback_is_logged() {
    let srv = start("raise-before", "");
    let before = baseline(&srv);
    let worker = pid_of(&srv.get("pid"));
    for (route, marker) in [
        ("raise_before", "RuntimeError: marker-raise-before-headers"),
        (
            "raise_after_start",
            "RuntimeError: marker-raise-after-start-response",
        ),
    ] {
        let from = mark(&srv);
        let r = srv.get(route);
        assert_eq!(r.text(), error_page(500), "{route}");
        assert_eq!(
            r.records.last().map(Record::end),
            Some((0, REQUEST_COMPLETE))
        );
        expect_event(
            &srv,
            from,
            &format!("error: request GET /{route}: the app failed (traceback above)"),
        );
        assert_app_lines(
            &srv,
            from,
            &[
                "Traceback (most recent call last):",
                marker,
                &format!("fcgi-shim-worker: app failed on GET /{route}:"),
            ],
        );
    }
    assert_eq!(
        pid_of(&srv.get("pid")),
        worker,
        "an exception is no reason to replace the worker"
    );
    assert_unharmed(&srv, &before);
}

#[test]
fn app_raising_after_headers_cuts_the_response_and_logs_it() {
    let srv = start("raise-after", "");
    let before = baseline(&srv);
    let from = mark(&srv);
    let r = srv.get("raise_after_body");
    assert_eq!(r.text(), plain("partial-"));
    assert_eq!(
        r.records.last().map(Record::end),
        Some((0, REQUEST_COMPLETE))
    );
    expect_event(
        &srv,
        from,
        "error: request GET /raise_after_body: the app failed (traceback above)",
    );
    assert_app_lines(&srv, from, &["RuntimeError: marker-raise-after-body"]);
    assert_unharmed(&srv, &before);
}

#[test]
fn app_raising_in_close_is_logged_and_close_failure_of_a_held_back_body_is_a_500() {
    let srv = start("close-raises", "");
    let before = baseline(&srv);
    // Streamed: the body went out before close(); the response ends as is.
    let from = mark(&srv);
    let r = srv.get("close_raises_streamed");
    assert_eq!(r.text(), plain("streamed body\n"));
    expect_event(
        &srv,
        from,
        "error: request GET /close_raises_streamed: the app failed (traceback above)",
    );
    assert_app_lines(
        &srv,
        from,
        &[
            "fcgi-shim-worker: close() failed on GET /close_raises_streamed:",
            "RuntimeError: marker-close-raises-streamed",
        ],
    );
    // A list body waits for close() (it goes out with D): nothing was sent
    // when close() failed, so the visitor gets the fixed 500.
    let from = mark(&srv);
    let r = srv.get("close_raises_buffered");
    assert_eq!(r.text(), error_page(500));
    expect_event(
        &srv,
        from,
        "error: request GET /close_raises_buffered: the app failed (traceback above)",
    );
    assert_app_lines(&srv, from, &["RuntimeError: marker-close-raises-buffered"]);
    assert_unharmed(&srv, &before);
}

#[test]
fn app_returning_a_non_iterable_gets_a_500() {
    let srv = start("non-iterable", "");
    let before = baseline(&srv);
    for (route, marker) in [
        ("non_iterable", "TypeError: 'int' object is not iterable"),
        (
            "returns_none",
            "TypeError: 'NoneType' object is not iterable",
        ),
    ] {
        let from = mark(&srv);
        let r = srv.get(route);
        assert_eq!(r.text(), error_page(500), "{route}");
        expect_event(
            &srv,
            from,
            &format!("error: request GET /{route}: the app failed (traceback above)"),
        );
        assert_app_lines(&srv, from, &[marker]);
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn bad_status_or_header_values_never_inject_a_header() {
    let srv = start("injection", "");
    let before = baseline(&srv);
    for route in [
        "status_crlf",
        "status_lf",
        "status_no_reason",
        "value_crlf",
        "value_lf",
        "value_cr",
        "value_nul",
        "value_del",
        "value_not_latin1",
        "name_crlf",
        "name_colon",
        "status_header",
    ] {
        let from = mark(&srv);
        let r = srv.get(route);
        // The fixed page, byte for byte: no X-Injected anywhere.
        assert_eq!(r.text(), error_page(500), "{route}");
        assert!(!r.text().contains("Injected"), "{route}");
        expect_event(
            &srv,
            from,
            &format!("error: request GET /{route}: the app failed (traceback above)"),
        );
        let lines = app_lines(&srv, from);
        assert!(
            lines.iter().any(|l| l.starts_with("ValueError: ")),
            "{route}: the log must say what was refused: {lines:#?}"
        );
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn app_never_answering_gets_504_after_request_timeout_and_a_new_worker() {
    let srv = start("hang", "request_timeout = 2\n");
    let before = baseline(&srv);
    let worker = pid_of(&srv.get("pid"));
    let from = mark(&srv);
    let t0 = Instant::now();
    let r = srv.get("hang");
    let took = t0.elapsed();
    assert_eq!(r.text(), error_page(504));
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "504 after {took:?}, request_timeout is 2 s"
    );
    expect_event(
        &srv,
        from,
        &format!(
            "error: request GET /hang: no answer within the request_timeout; killing python worker {worker}"
        ),
    );
    expect_event(
        &srv,
        from,
        &format!(
            "error: python worker {worker} killed by signal 9 (SIGKILL); the next request starts a new one"
        ),
    );
    assert!(process_gone(worker), "the hung worker {worker} still runs");
    let next = pid_of(&srv.get("pid"));
    assert_ne!(next, worker);
    assert_unharmed(&srv, &before);
}

#[test]
fn app_killing_its_own_process_gets_502_and_a_new_worker() {
    let srv = start("kill9", "");
    let before = baseline(&srv);
    let worker = pid_of(&srv.get("pid"));
    let from = mark(&srv);
    let r = srv.get("kill9");
    assert_eq!(r.text(), error_page(502));
    expect_event(
        &srv,
        from,
        &format!(
            "error: request GET /kill9: python worker {worker} died in the middle of the request; answering 502"
        ),
    );
    expect_event(
        &srv,
        from,
        &format!(
            "error: python worker {worker} killed by signal 9 (SIGKILL); the next request starts a new one"
        ),
    );
    let next = pid_of(&srv.get("pid"));
    assert_ne!(next, worker);
    assert_unharmed(&srv, &before);
}

#[test]
fn app_calling_sys_exit_fails_only_its_own_request() {
    // SystemExit in the app: that request is a 500 and the worker exits
    // after answering it. The request that comes right after must not pay
    // for it (it is sent at once, before the shim can notice while idle).
    let srv = start("sysexit", "");
    let before = baseline(&srv);
    for round in 0..5 {
        let from = mark(&srv);
        let r = srv.get("sysexit");
        assert_eq!(r.text(), error_page(500), "round {round}");
        let next = srv.get("hello");
        assert_eq!(
            next.text(),
            HELLO,
            "round {round}: the request after a sys.exit() failed\n{}",
            events_since(&srv, from).join("\n")
        );
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn app_printing_to_stdout_goes_to_the_log_not_the_response() {
    let srv = start("print", "");
    let before = baseline(&srv);
    let worker = pid_of(&srv.get("pid"));
    let from = mark(&srv);
    let r = srv.get("print_stdout");
    assert_eq!(r.text(), plain("printed\n"));
    assert!(r.stderr.is_empty());
    expect_event(
        &srv,
        from,
        &format!("info: app[{worker}]: marker-print-stdout"),
    );
    assert_unharmed(&srv, &before);
}

#[test]
fn app_writing_to_fd_1_directly_goes_to_the_log_not_the_response() {
    let srv = start("fd1", "");
    let before = baseline(&srv);
    let worker = pid_of(&srv.get("pid"));
    let from = mark(&srv);
    let r = srv.get("write_fd1");
    assert_eq!(r.text(), plain("wrote fd 1\n"));
    assert!(r.stderr.is_empty());
    for line in [
        "marker-write-fd1",
        "Status: 302 Found\r",
        "X-Injected: fd1\r",
        "fd1 body",
    ] {
        let want = format!("info: app[{worker}]: {line}");
        // The log keeps the CR: what the app wrote, as it wrote it.
        wait_event(&srv, from, &format!("{want:?}"), |e| {
            e == want || e == want.trim_end_matches('\r')
        });
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn app_flooding_fd_1_does_not_block_the_response_and_every_byte_is_logged() {
    let srv = start("flood-fd1", "");
    let before = baseline(&srv);
    let worker = pid_of(&srv.get("pid"));
    let from = mark(&srv);
    let r = srv.get("flood_fd1");
    assert_eq!(r.text(), plain("flooded\n"));
    let prefix = format!("info: app[{worker}]: ");
    let deadline = Instant::now() + Duration::from_secs(3);
    let logged = loop {
        let n: usize = events_since(&srv, from)
            .iter()
            .filter_map(|e| e.strip_prefix(&prefix))
            .filter(|l| l.bytes().all(|b| b == b'x'))
            .map(str::len)
            .sum();
        if n >= 1 << 20 || Instant::now() > deadline {
            break n;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(logged, 1 << 20, "bytes of the flood in the log");
    assert_unharmed(&srv, &before);
}

#[test]
fn app_leaking_memory_is_recycled_between_requests_past_max_rss() {
    let srv = start("leak", "max_rss = \"100M\"\n");
    let before = baseline(&srv);
    let from = mark(&srv);
    let mut pids = vec![];
    for i in 0..4 {
        let r = srv.get("leak");
        assert_eq!(r.status(), 200, "leak request {i} failed: {}", r.text());
        pids.push(pid_of(&r));
    }
    let after = pid_of(&srv.get("pid"));
    // Each leak adds 50 MiB: the second pushes a worker past 100 MiB.
    let (p1, p2) = (pids[0], pids[2]);
    assert_eq!(pids, [p1, p1, p2, p2], "worker pids");
    assert!(
        p1 != p2 && after != p2 && after != p1,
        "{pids:?} then {after}"
    );
    for p in [p1, p2] {
        let e = wait_event(&srv, from, &format!("recycling {p}"), |e| {
            e.starts_with(&format!("info: recycling python worker {p}: uses "))
        });
        let mib: u64 = e
            .strip_prefix(&format!("info: recycling python worker {p}: uses "))
            .and_then(|r| r.strip_suffix(" MiB, over max_rss (100 MiB)"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad recycle line {e:?}"));
        assert!((100..400).contains(&mib), "{e}");
        assert!(process_gone(p), "recycled worker {p} still runs");
    }
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

// --- the shim itself ------------------------------------------------------------

#[test]
fn sigterm_during_a_request_lets_it_complete_then_exits_zero() {
    let mut srv = start("sigterm", "");
    let worker = pid_of(&srv.get("pid"));
    let from = mark(&srv);
    let mut c = srv.connect();
    c.send(&Req::get("sleep"));
    thread::sleep(Duration::from_millis(300));
    srv.signal(libc::SIGTERM);
    let r = c.read_response(1);
    assert_eq!(r.text(), plain("slept\n"));
    let status = srv.wait_exit(Duration::from_secs(3));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(
        process_gone(worker),
        "python worker {worker} outlived the shim"
    );
    let events = events_since(&srv, from);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("info:") && e.contains("SIGTERM")),
        "the log must say that SIGTERM stopped the shim:\n{}",
        events.join("\n")
    );
}

#[test]
fn sigusr1_sighup_and_sigint_during_a_request_let_it_complete_too() {
    // mod_fastcgi asks for SIGUSR1 to mean "finish and exit"; Apache's
    // restart sends its process group SIGHUP; Ctrl-C is SIGINT.
    for (sig, name) in [
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
    ] {
        let mut srv = start(&format!("sig-{}", name.to_lowercase()), "");
        let worker = pid_of(&srv.get("pid"));
        let from = mark(&srv);
        let mut c = srv.connect();
        c.send(&Req::get("sleep"));
        thread::sleep(Duration::from_millis(300));
        srv.signal(sig);
        let r = c.read_response(1);
        assert_eq!(r.text(), plain("slept\n"), "{name}");
        let status = srv.wait_exit(Duration::from_secs(3));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{name}: {status:?}");
        assert!(
            process_gone(worker),
            "{name}: python worker {worker} outlived the shim"
        );
        expect_event(&srv, from, &format!("info: {name} received: stopping"));
    }
}

#[test]
fn sigterm_serves_the_connection_queued_behind_the_request_in_flight() {
    // FIELD_NOTES: exiting with a connection in the listen queue loses it.
    let mut srv = start("sigterm-queued", "");
    let from = mark(&srv);
    let mut first = srv.connect();
    first.send(&Req::get("sleep"));
    thread::sleep(Duration::from_millis(300));
    let mut queued = srv.connect();
    queued.send(&Req::get("hello"));
    srv.signal(libc::SIGTERM);
    assert_eq!(first.read_response(1).text(), plain("slept\n"));
    assert!(
        queued
            .read_response(1)
            .text()
            .ends_with("\r\n\r\nhello world\n"),
        "the queued request was not served"
    );
    let status = srv.wait_exit(Duration::from_secs(3));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    expect_event(
        &srv,
        from,
        "info: serving a request that was queued before the exit",
    );
}

#[test]
fn a_request_longer_than_the_grace_period_gets_a_503_and_the_shim_exits_at_about_3_s() {
    let mut srv = start("grace", "");
    let worker = pid_of(&srv.get("pid"));
    let from = mark(&srv);
    let mut c = srv.connect();
    c.send(&Req::get("sleep10"));
    thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    srv.signal(libc::SIGTERM);
    let r = c.read_response(1);
    let took = stopped.elapsed();
    assert_eq!(r.text(), error_page(503));
    assert!(
        (Duration::from_millis(2700)..Duration::from_millis(4000)).contains(&took),
        "answered {took:?} after SIGTERM; the grace is 2.9 s"
    );
    let status = srv.wait_exit(Duration::from_secs(2));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(
        process_gone(worker),
        "python worker {worker} outlived the shim"
    );
    expect_event(
        &srv,
        from,
        &format!(
            "error: request GET /sleep10: still running when the stop grace period ended; \
             killing python worker {worker}"
        ),
    );
    expect_event(
        &srv,
        from,
        &format!("error: python worker {worker} killed by signal 9 (SIGKILL); stopping"),
    );
    let events = events_since(&srv, from);
    assert!(
        !events
            .iter()
            .any(|e| e.contains("the next request starts a new one")),
        "no next request is coming:\n{}",
        events.join("\n")
    );
}

#[test]
fn a_stop_signal_while_idle_is_logged_and_the_shim_exits_at_once() {
    let mut srv = start("idle-stop", "");
    let worker = pid_of(&srv.get("pid"));
    let from = mark(&srv);
    thread::sleep(Duration::from_millis(200));
    let stopped = Instant::now();
    srv.signal(libc::SIGTERM);
    let status = srv.wait_exit(Duration::from_secs(3));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(
        stopped.elapsed() < Duration::from_millis(1500),
        "{:?}",
        stopped.elapsed()
    );
    assert!(
        process_gone(worker),
        "python worker {worker} outlived the shim"
    );
    expect_event(&srv, from, "info: SIGTERM received: stopping");
}

#[test]
fn sigkill_during_a_request_takes_the_python_worker_down() {
    let mut srv = start("sigkill", "");
    let worker = pid_of(&srv.get("pid"));
    let mut c = srv.connect();
    c.send(&Req::get("sleep3"));
    thread::sleep(Duration::from_millis(300));
    srv.signal(libc::SIGKILL);
    srv.child.wait().expect("reap the shim");
    let deadline = Instant::now() + Duration::from_secs(1);
    while !process_gone(worker) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let gone = process_gone(worker);
    if !gone {
        // SAFETY: kill(2) of the worker this test started; do not leak it.
        unsafe { libc::kill(worker, libc::SIGKILL) };
    }
    assert!(gone, "python worker {worker} outlived the SIGKILLed shim");
    assert_eq!(
        c.read_to_close(Duration::from_secs(2)),
        Ok(vec![]),
        "the connection ends with the shim"
    );
}

#[test]
fn site_toml_edited_to_garbage_keeps_the_last_good_config_and_names_file_and_line() {
    let dir = TempDir::new("garbage-toml");
    let good = site_toml(dir.path(), "faulty:app");
    let site = dir.join("site.toml");
    fs::write(&site, format!("{good}[env]\nFAULT_MARK = \"one\"\n")).expect("write");
    let srv = Server::start_in(dir);
    let r = srv.get("mark");
    assert_eq!(r.text(), plain("one"));
    let before = settled_probe(srv.pid());
    let from = mark(&srv);
    // Line numbers: `good` has 4 lines; the garbage is on line 7.
    assert_eq!(good.lines().count(), 4);
    fs::write(
        &site,
        format!("{good}[env]\nFAULT_MARK = \"two\"\nthis is not toml\n"),
    )
    .expect("write garbage");
    for _ in 0..3 {
        let r = srv.get("mark");
        assert_eq!(r.text(), plain("one"), "the last good config must serve");
    }
    let prefix = format!("error: {}, line 7: not valid TOML", site.display());
    let e = wait_event(&srv, from, &prefix, |e| e.starts_with(&prefix));
    assert!(e.ends_with("; keeping the last good config"), "{e}");
    let n = events_since(&srv, from)
        .iter()
        .filter(|e| e.starts_with(&prefix))
        .count();
    assert_eq!(n, 1, "the error is logged once, not per request");
    // Fixed: the new config is taken.
    fs::write(&site, format!("{good}[env]\nFAULT_MARK = \"three\"\n")).expect("write");
    let r = srv.get("mark");
    assert_eq!(r.text(), plain("three"));
    assert_unharmed(&srv, &before);
}

/// The shim installed as `<dir>/mysite.fcgi` (a hard link of the built
/// binary) and run under that name, with site.toml beside it.
fn start_installed(dir: TempDir) -> Server {
    let script = install_binary(dir.path());
    let sock = dir.join("fcgi.sock");
    let listener = UnixListener::bind(&sock).expect("bind unix socket");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut cmd = Command::new(&script);
    server_env(&mut cmd)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("stdout")).expect("stdout file"))
        .stderr(fs::File::create(dir.join("stderr")).expect("stderr file"));
    // SAFETY: dup2 is async-signal-safe; `fd` stays open in the parent
    // until spawn returns. The copy on fd 0 has no CLOEXEC.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = spawn_retrying(&mut cmd);
    drop(listener);
    Server { dir, sock, child }
}

/// Deploys a new binary the documented way: copy beside, then `mv` over.
/// The copy carries a marker at its end, so it differs from the running one.
fn deploy_new_binary(dir: &Path, marker: &str) -> PathBuf {
    let new = dir.join("mysite.fcgi.new");
    fs::copy(BIN, &new).expect("copy the binary");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&new)
        .expect("open the copy");
    f.write_all(marker.as_bytes()).expect("append marker");
    drop(f);
    // Another test thread forking right now would hold the copy open for
    // writing until its exec: let that pass before anyone execs the copy.
    thread::sleep(Duration::from_millis(100));
    let dest = dir.join("mysite.fcgi");
    fs::rename(&new, &dest).expect("mv over mysite.fcgi");
    dest
}

fn exe_of(pid: i32) -> (String, u64) {
    let link = fs::read_link(format!("/proc/{pid}/exe"))
        .expect("readlink exe")
        .display()
        .to_string();
    let ino = fs::metadata(format!("/proc/{pid}/exe"))
        .expect("stat exe")
        .ino();
    (link, ino)
}

#[test]
fn binary_replaced_by_mv_is_re_executed_in_place() {
    let dir = TempDir::new("mv-binary");
    write_site(dir.path(), "faulty:app");
    let mut srv = start_installed(dir);
    let before = baseline(&srv);
    let pid = srv.pid();
    let script = srv.dir.join("mysite.fcgi");
    let first_worker = pid_of(&srv.get("pid"));
    let (link0, ino0) = exe_of(pid);
    assert_eq!(link0, script.display().to_string());

    // Replaced, then a request at once: the connection that finds the
    // change is handed to the new image.
    let from = mark(&srv);
    let dest = deploy_new_binary(srv.dir.path(), "fcgi-shim-test-marker-2");
    let new_ino = fs::metadata(&dest).expect("stat").ino();
    assert_ne!(new_ino, ino0);
    let r = srv.get("hello");
    assert_eq!(r.text(), HELLO, "{}", srv.describe());
    assert_eq!(srv.exited(), None, "the shim must not exit");
    assert_eq!(
        exe_of(pid),
        (script.display().to_string(), new_ino),
        "pid {pid} must run the new binary (same pid: re-exec in place)"
    );
    expect_event(
        &srv,
        from,
        &format!("info: {} was replaced; re-executing it", script.display()),
    );
    let second_worker = pid_of(&srv.get("pid"));
    assert_ne!(
        second_worker, first_worker,
        "the worker restarts with the new image"
    );
    assert!(process_gone(first_worker));

    // Replaced while idle: the idle check (once a second) re-executes.
    let from = mark(&srv);
    let dest = deploy_new_binary(srv.dir.path(), "fcgi-shim-test-marker-3");
    let newer_ino = fs::metadata(&dest).expect("stat").ino();
    let deadline = Instant::now() + Duration::from_secs(3);
    while exe_of(pid).1 != newer_ino && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(exe_of(pid), (script.display().to_string(), newer_ino));
    expect_event(
        &srv,
        from,
        &format!("info: {} was replaced; re-executing it", script.display()),
    );
    assert_eq!(srv.exited(), None);
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    assert_unharmed(&srv, &before);
}

// --- limits ----------------------------------------------------------------------

#[test]
fn max_requests_recycles_the_worker_every_3_requests_without_a_failed_request() {
    let srv = start("max-requests", "max_requests = 3\n");
    let first = srv.get("pid");
    let before = settled_probe(srv.pid());
    let from = mark(&srv);
    let mut pids = vec![pid_of(&first)];
    for _ in 0..8 {
        pids.push(pid_of(&srv.get("pid")));
    }
    let (a, b, c) = (pids[0], pids[3], pids[6]);
    assert_eq!(pids, [a, a, a, b, b, b, c, c, c]);
    assert!(a != b && b != c && a != c, "{pids:?}");
    for p in [a, b, c] {
        expect_event(
            &srv,
            from,
            &format!("info: recycling python worker {p}: served max_requests (3)"),
        );
    }
    for p in [a, b] {
        assert!(process_gone(p), "recycled worker {p} still runs");
    }
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
    // The next request (the 10th) starts a fourth worker: the probe's
    // worker count is the same.
    assert_unharmed(&srv, &before);
}

#[test]
fn max_body_answers_413_before_the_app_sees_the_body() {
    let srv = start("max-body", "max_body = \"1K\"\n");
    let before = baseline(&srv);
    let from = mark(&srv);
    let r = srv.request(&Req::post("upload", &noise(1025, 1)));
    assert_eq!(r.text(), error_page(413));
    let event =
        "warning: request POST /upload: body of 1025 bytes is over max_body (1024); answering 413";
    expect_event(&srv, from, event);
    assert_eq!(complaints_since(&srv, from), [event]);
    // A big one, sent while the shim answers: the same, and the rest of the
    // body is read away rather than reset.
    let big = noise(300_000, 2);
    let req = Req::post("upload", &big);
    let mut c = srv.connect();
    let mut w = c.s.try_clone().expect("clone");
    let bytes = request_bytes(&req);
    let writer = thread::spawn(move || w.write_all(&bytes));
    let r = c.read_response(1);
    writer
        .join()
        .expect("writer")
        .expect("the whole body was read");
    assert_eq!(r.text(), error_page(413));
    // The app never ran...
    assert!(
        !srv.log().contains("marker-upload-app-ran"),
        "{}",
        srv.log()
    );
    // ...and would have: at the limit, it runs and logs its marker.
    let r = srv.request(&Req::post("upload", &noise(1024, 3)));
    assert_eq!(r.text(), plain("1024"));
    wait_event(&srv, from, "marker-upload-app-ran", |e| {
        e.ends_with("]: marker-upload-app-ran")
    });
    assert_unharmed(&srv, &before);
}

#[test]
fn max_body_also_holds_without_a_usable_content_length() {
    // nginx with fastcgi_request_buffering off sends a chunked upload with
    // no CONTENT_LENGTH; a broken server may send garbage. wsgi.input then
    // reads to the end of STDIN: max_body must still bound what the app gets.
    let srv = start("max-body-no-cl", "max_body = \"1K\"\n");
    let before = baseline(&srv);
    for content_length in [None, Some("lots"), Some("-1")] {
        let mut req = Req::post("read_all", &noise(4096, 4));
        req.params.retain(|(k, _)| k != b"CONTENT_LENGTH");
        if let Some(v) = content_length {
            req = req.param("CONTENT_LENGTH", v);
        }
        let r = srv.request(&req);
        assert_eq!(
            r.text(),
            error_page(413),
            "CONTENT_LENGTH {content_length:?}: a 4096-byte body with max_body = 1K"
        );
    }
    assert_unharmed(&srv, &before);
}

#[test]
fn idle_timeout_exits_zero_after_idling_but_never_during_a_request() {
    let mut srv = start("idle", "idle_timeout = 2\n");
    let worker = pid_of(&srv.get("pid"));
    // A request longer than idle_timeout: the shim stays for it.
    let from = mark(&srv);
    let r = srv.get("sleep3");
    let done = Instant::now();
    assert_eq!(r.text(), plain("slept 3\n"));
    assert_eq!(srv.exited(), None, "exited right after a long request");
    let status = srv.wait_exit(Duration::from_secs(6));
    let idle = done.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(
        idle >= Duration::from_millis(1800) && idle < Duration::from_millis(3800),
        "exited {idle:?} after the last request, idle_timeout is 2 s"
    );
    expect_event(
        &srv,
        from,
        "info: no request for 2 s (idle_timeout); exiting",
    );
    assert!(process_gone(worker), "the worker outlived the shim");
    assert_eq!(complaints_since(&srv, from), Vec::<String>::new());
}

/// Regression: an ABORT_REQUEST on a KEEP_CONN request used to start the
/// next request by recursion, so one connection aborting without end
/// overflowed the stack (SIGSEGV after ~75,000 aborts; found by reading
/// the responder while writing the fuzz targets).
#[test]
fn endless_aborts_on_one_kept_connection_do_not_overflow_the_stack() {
    use std::io::{Read, Write};
    const CYCLES: usize = 200_000;
    let srv = Server::start("abort-loop", "echo:app");
    let mut s = std::os::unix::net::UnixStream::connect(&srv.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reader = s.try_clone().expect("clone");
    // BEGIN_REQUEST(id 1, RESPONDER, KEEP_CONN), then ABORT_REQUEST(id 1).
    let cycle: [u8; 24] = [
        1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, //
        1, 2, 0, 1, 0, 0, 0, 0,
    ];
    let count = std::thread::spawn(move || {
        let mut ends = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let mut have = 0usize;
        while ends < CYCLES {
            match reader.read(&mut buf[have..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => have += n,
            }
            // Every reply is one 16-byte END_REQUEST record.
            let whole = have / 16 * 16;
            for rec in buf[..whole].chunks_exact(16) {
                assert_eq!(
                    &rec[..4],
                    &[1, 3, 0, 1],
                    "not an END_REQUEST for id 1: {rec:?}"
                );
            }
            ends += whole / 16;
            buf.copy_within(whole..have, 0);
            have -= whole;
        }
        ends
    });
    let all: Vec<u8> = cycle
        .iter()
        .copied()
        .cycle()
        .take(cycle.len() * CYCLES)
        .collect();
    s.write_all(&all).expect("write the aborts");
    assert_eq!(
        count.join().expect("reader"),
        CYCLES,
        "one END_REQUEST per abort"
    );
    drop(s);
    let r = srv.get("hello");
    assert_eq!(r.status(), 200, "{}", r.text());
}
