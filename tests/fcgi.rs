//! The shim as a spawned FastCGI responder: a listening unix socket on fd 0,
//! driven record by record through the client in `common`.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

const HELLO: &str =
    "Status: 200 OK\r\nContent-Type: text/plain\r\nX-Test: a b\r\n\r\nhello world\n";

fn assert_serves(srv: &Server) {
    let r = srv.get("hello");
    assert_eq!(
        r.text(),
        HELLO,
        "a fresh connection must be served normally\n{}",
        srv.describe()
    );
}

fn pid_of(r: &Response) -> i32 {
    assert_eq!(r.status(), 200, "{}", r.text());
    r.body_text()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a pid: {:?}", r.text()))
}

// --- the request/response cycle -------------------------------------------

#[test]
fn get_sends_stdout_then_empty_stdout_then_end_request_then_closes() {
    let srv = Server::start("get", "echo:app");
    let mut c = srv.connect();
    let r = c.roundtrip(&Req::get("hello"));
    assert_eq!(r.text(), HELLO);
    let n = r.records.len();
    assert!(n >= 3, "records: {:?}", r.records);
    for rec in &r.records[..n - 2] {
        assert_eq!(
            rec.kind, STDOUT,
            "only STDOUT before the end: {:?}",
            r.records
        );
        assert!(
            !rec.content.is_empty(),
            "empty STDOUT before the last: {:?}",
            r.records
        );
    }
    assert_eq!(
        r.records[n - 2],
        Record {
            kind: STDOUT,
            id: 1,
            content: vec![]
        }
    );
    assert_eq!(r.records[n - 1].end(), (0, REQUEST_COMPLETE));
    assert_eq!(
        c.read_to_close(Duration::from_secs(2)),
        Ok(vec![]),
        "without KEEP_CONN the connection must be closed right after END_REQUEST"
    );
}

#[test]
fn post_body_split_over_stdin_records_is_echoed_exactly() {
    let srv = Server::start("post-split", "echo:app");
    let body = b"first|second part|3|the last piece of the body";
    let req = Req::post("echo", body);
    let mut c = srv.connect();
    // Each record in its own write, so the shim sees them arrive piecemeal.
    c.write(&record(BEGIN_REQUEST, 1, &begin_body(RESPONDER, 0)));
    for rec in parse_records(&stream_records(PARAMS, 1, &req.params_stream())) {
        c.write(&record(rec.kind, rec.id, &rec.content));
        thread::sleep(Duration::from_millis(5));
    }
    for rec in parse_records(&split_records(STDIN, 1, body, &[1, 6, 17, 18])) {
        c.write(&record(rec.kind, rec.id, &rec.content));
        thread::sleep(Duration::from_millis(5));
    }
    let r = c.read_response(1);
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.body(), body);
    assert_eq!(r.header("Content-Length"), Some(body.len().to_string()));
}

#[test]
fn post_with_only_the_empty_stdin_record_has_empty_body() {
    let srv = Server::start("post-empty", "echo:app");
    let r = srv.request(&Req::post("echo", b""));
    assert_eq!(
        r.text(),
        "Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn post_one_mib_body_round_trips_byte_for_byte() {
    let srv = Server::start("post-1mib", "echo:app");
    let body = noise(1 << 20, 0x5eed);
    let req = Req::post("echo", &body);
    let mut c = srv.connect();
    // Write from another thread: the shim may start answering before it has
    // read everything, and a full socket buffer must not deadlock the test.
    let mut w = c.s.try_clone().expect("clone socket");
    let bytes = request_bytes(&req);
    let writer = thread::spawn(move || w.write_all(&bytes));
    let r = c.read_response(1);
    writer
        .join()
        .expect("writer thread")
        .expect("write request");
    assert_eq!(
        r.status(),
        200,
        "{}",
        String::from_utf8_lossy(&r.stdout[..200.min(r.stdout.len())])
    );
    assert_eq!(r.header("Content-Length").as_deref(), Some("1048576"));
    assert_eq!(r.body().len(), body.len());
    assert!(
        r.body() == &body[..],
        "body differs: checksum {:016x}, sent {:016x}",
        checksum(r.body()),
        checksum(&body)
    );
}

// --- PARAMS decoding ----------------------------------------------------

#[test]
fn params_split_inside_a_length_and_inside_a_pair_are_reassembled() {
    let srv = Server::start("params-split", "echo:app");
    let long = "v".repeat(128);
    let req = Req::get("environ")
        .param("HTTP_X_SPLIT", &long)
        .param("HTTP_X_AFTER", "after");
    let stream = req.params_stream();
    let pair = encode_pairs(&[("HTTP_X_SPLIT", long.as_str())]);
    let at = stream
        .windows(pair.len())
        .position(|w| w == pair)
        .expect("pair in stream");
    // at: name length (1 byte); at+1..at+5: value length (4 bytes, 128);
    // at+5..at+17: name; then 128 bytes of value.
    let cuts = [
        1,
        at,
        at + 1,
        at + 3,
        at + 5,
        at + 11,
        at + 17 + 64,
        at + 17 + 127,
    ];
    let mut c = srv.connect();
    c.write(&record(BEGIN_REQUEST, 1, &begin_body(RESPONDER, 0)));
    c.write(&split_records(PARAMS, 1, &stream, &cuts));
    c.write(&stream_records(STDIN, 1, b""));
    let r = c.read_response(1);
    assert_eq!(r.env_str("HTTP_X_SPLIT"), Some(long.clone()));
    assert_eq!(r.env_str("HTTP_X_AFTER").as_deref(), Some("after"));
    assert_eq!(r.env_str("REQUEST_METHOD").as_deref(), Some("GET"));

    // The extreme: one byte per record, i.e. a split at every position.
    let every: Vec<usize> = (1..stream.len()).collect();
    let mut c = srv.connect();
    c.write(&record(BEGIN_REQUEST, 1, &begin_body(RESPONDER, 0)));
    c.write(&split_records(PARAMS, 1, &stream, &every));
    c.write(&stream_records(STDIN, 1, b""));
    let r = c.read_response(1);
    assert_eq!(r.env_str("HTTP_X_SPLIT"), Some(long));
    assert_eq!(r.env_str("HTTP_X_AFTER").as_deref(), Some("after"));
}

#[test]
fn params_with_127_128_and_65536_byte_values_reach_the_app() {
    // The client's encoding is the thing under test here: check it first.
    assert_eq!(encode_pairs(&[("n", "a".repeat(127))])[..2], [1, 127]);
    assert_eq!(
        encode_pairs(&[("n", "a".repeat(128))])[..5],
        [1, 0x80, 0, 0, 128]
    );
    assert_eq!(
        encode_pairs(&[("n", "a".repeat(65536))])[..5],
        [1, 0x80, 1, 0, 0]
    );

    let srv = Server::start("params-len", "echo:app");
    let long_name = format!("HTTP_X_{}", "N".repeat(121));
    assert_eq!(long_name.len(), 128);
    let req = Req::get("environ")
        .param("HTTP_X_V127", "a".repeat(127))
        .param("HTTP_X_V128", "b".repeat(128))
        .param("HTTP_X_V65536", "c".repeat(65536))
        .param(&long_name, "long-name");
    let r = srv.request(&req);
    assert_eq!(r.env_str("HTTP_X_V127"), Some("a".repeat(127)));
    assert_eq!(r.env_str("HTTP_X_V128"), Some("b".repeat(128)));
    assert_eq!(r.env_str("HTTP_X_V65536"), Some("c".repeat(65536)));
    assert_eq!(r.env_str(&long_name).as_deref(), Some("long-name"));
}

#[test]
fn request_ids_other_than_one_are_echoed_in_every_record() {
    let srv = Server::start("req-id", "echo:app");
    for id in [2, 0x1234, 0xffff] {
        // read_response fails on any record carrying another id.
        let r = srv.request(&Req::get("hello").id(id));
        assert_eq!(r.text(), HELLO, "request id {id}");
        assert_eq!(
            r.records.last().map(|e| (e.id, e.end())),
            Some((id, (0, REQUEST_COMPLETE)))
        );
    }
}

#[test]
fn keep_conn_serves_two_requests_on_one_connection() {
    let srv = Server::start("keep-conn", "echo:app");
    let mut c = srv.connect();
    let first = c.roundtrip(&Req::get("hello").id(1).flags(KEEP_CONN));
    assert_eq!(first.text(), HELLO);
    // The connection must still be open: the second request uses it.
    let second = c.roundtrip(&Req::post("echo", b"second request").id(2));
    assert_eq!(second.body(), b"second request");
    assert_eq!(
        c.read_to_close(Duration::from_secs(2)),
        Ok(vec![]),
        "the second request had no KEEP_CONN: the shim must close"
    );
}

// --- what the spec says a responder must refuse ---------------------------

#[test]
fn authorizer_and_filter_roles_get_unknown_role_and_process_keeps_serving() {
    let srv = Server::start("roles", "echo:app");
    for role in [AUTHORIZER, FILTER] {
        let mut c = srv.connect();
        c.send(&Req::get("hello").role(role).id(7));
        let rec = c
            .read_record()
            .expect("an END_REQUEST, not a closed connection");
        assert_eq!((rec.kind, rec.id), (END_REQUEST, 7), "role {role}: {rec:?}");
        assert_eq!(rec.end().1, UNKNOWN_ROLE, "role {role}");
        assert_eq!(
            c.read_to_close(Duration::from_secs(2)),
            Ok(vec![]),
            "role {role}"
        );
    }
    assert_serves(&srv);
}

#[test]
fn second_begin_request_while_busy_gets_cant_mpx_conn() {
    let srv = Server::start("mpx", "echo:app");
    let req = Req::post("echo", b"hello");
    let mut c = srv.connect();
    c.write(&record(BEGIN_REQUEST, 1, &begin_body(RESPONDER, 0)));
    c.write(&stream_records(PARAMS, 1, &req.params_stream()));
    // Request 1 still waits for its body: it is in progress.
    c.write(&record(BEGIN_REQUEST, 2, &begin_body(RESPONDER, 0)));
    c.write(&stream_records(STDIN, 1, b"hello"));
    let mut records = vec![];
    let done = |rs: &Vec<Record>, id| rs.iter().any(|r| r.kind == END_REQUEST && r.id == id);
    while !(done(&records, 1) && done(&records, 2)) {
        match c.read_record() {
            Some(rec) => records.push(rec),
            None => break,
        }
    }
    let for2: Vec<&Record> = records.iter().filter(|r| r.id == 2).collect();
    assert_eq!(for2.len(), 1, "exactly one record for id 2: {records:?}");
    assert_eq!(for2[0].kind, END_REQUEST, "{records:?}");
    assert_eq!(for2[0].end().1, CANT_MPX_CONN);
    let stdout: Vec<u8> = records
        .iter()
        .filter(|r| r.id == 1 && r.kind == STDOUT)
        .flat_map(|r| r.content.clone())
        .collect();
    let r1 = Response::from_cgi(stdout);
    assert_eq!(r1.status(), 200, "{}", r1.text());
    assert_eq!(r1.body(), b"hello");
    let end1 = records
        .iter()
        .find(|r| r.id == 1 && r.kind == END_REQUEST)
        .expect("END_REQUEST 1");
    assert_eq!(end1.end().1, REQUEST_COMPLETE);
}

#[test]
fn get_values_answers_only_the_known_names() {
    let srv = Server::start("get-values", "echo:app");
    let mut c = srv.connect();
    let query = encode_pairs(&[
        ("FCGI_MAX_CONNS", ""),
        ("FCGI_MAX_REQS", ""),
        ("FCGI_MPXS_CONNS", ""),
        ("FCGI_NO_SUCH_VARIABLE", ""),
    ]);
    c.write(&record(GET_VALUES, 0, &query));
    let rec = c.read_record().expect("GET_VALUES_RESULT");
    assert_eq!((rec.kind, rec.id), (GET_VALUES_RESULT, 0), "{rec:?}");
    let mut got = decode_pairs(&rec.content);
    got.sort();
    let want = [
        ("FCGI_MAX_CONNS", "1"),
        ("FCGI_MAX_REQS", "1"),
        ("FCGI_MPXS_CONNS", "0"),
    ];
    assert_eq!(got, want.map(|(n, v)| (n.to_string(), v.to_string())));
    drop(c);
    assert_serves(&srv);
}

#[test]
fn unknown_management_record_type_gets_unknown_type() {
    let srv = Server::start("unknown-type", "echo:app");
    let mut c = srv.connect();
    c.write(&record(99, 0, b"whatever"));
    let rec = c.read_record().expect("UNKNOWN_TYPE");
    assert_eq!(
        rec,
        Record {
            kind: UNKNOWN_TYPE,
            id: 0,
            content: vec![99, 0, 0, 0, 0, 0, 0, 0]
        }
    );
    drop(c);
    assert_serves(&srv);
}

/// Reads the rest of a response after an ABORT_REQUEST: all records until
/// the shim closes (or 3 s of silence).
fn records_after_abort(c: &mut Conn) -> (Vec<Record>, bool) {
    let (bytes, closed) = match c.read_to_close(Duration::from_secs(3)) {
        Ok(b) => (b, true),
        Err(b) => (b, false),
    };
    (parse_records(&bytes), closed)
}

#[test]
fn abort_request_after_params_ends_the_request_exactly_once() {
    let srv = Server::start("abort-params", "echo:app");
    let req = Req::post("echo", b"0123456789");
    let mut c = srv.connect();
    c.write(&record(BEGIN_REQUEST, 1, &begin_body(RESPONDER, 0)));
    c.write(&stream_records(PARAMS, 1, &req.params_stream()));
    // No STDIN yet: the app would be waiting for the body.
    thread::sleep(Duration::from_millis(200));
    c.write(&record(ABORT_REQUEST, 1, b""));
    let (records, closed) = records_after_abort(&mut c);
    let ends: Vec<&Record> = records.iter().filter(|r| r.kind == END_REQUEST).collect();
    assert_eq!(ends.len(), 1, "exactly one END_REQUEST: {records:?}");
    assert_eq!(ends[0].id, 1);
    assert!(
        closed,
        "no KEEP_CONN: the connection must close after END_REQUEST"
    );
    drop(c);
    assert_serves(&srv);
}

#[test]
fn abort_request_while_the_app_runs_ends_the_request_exactly_once() {
    let srv = Server::start("abort-running", "echo:app");
    let mut c = srv.connect();
    c.send(&Req::get("sleep"));
    thread::sleep(Duration::from_millis(300));
    c.write(&record(ABORT_REQUEST, 1, b""));
    let (records, closed) = records_after_abort(&mut c);
    let ends: Vec<&Record> = records.iter().filter(|r| r.kind == END_REQUEST).collect();
    assert_eq!(ends.len(), 1, "exactly one END_REQUEST: {records:?}");
    assert!(
        closed,
        "no KEEP_CONN: the connection must close after END_REQUEST"
    );
    drop(c);
    assert_serves(&srv);
}

// --- untrusted bytes: a bad connection never takes the process down ----------

#[test]
fn bad_version_byte_closes_the_connection_not_the_process() {
    let srv = Server::start("bad-version", "echo:app");
    let mut bytes = request_bytes(&Req::get("hello"));
    bytes[0] = 2;
    let mut c = srv.connect();
    c.write_lossy(&bytes);
    assert!(
        c.read_to_close(Duration::from_secs(5)).is_ok(),
        "connection left open"
    );
    assert_serves(&srv);
}

#[test]
fn name_value_length_0x7fffffff_closes_the_connection_not_the_process() {
    let srv = Server::start("huge-length", "echo:app");
    // A name length of 0x7fffffff (4-byte form), then a value length of 1:
    // far more than the stream holds (CVE-2025-23016 in libfcgi).
    let evil = [0xff, 0xff, 0xff, 0xff, 1, b'a', b'b'];
    for params in [
        evil.to_vec(),
        [Req::get("hello").params_stream(), evil.to_vec()].concat(),
    ] {
        let mut c = srv.connect();
        c.write_lossy(&record(BEGIN_REQUEST, 1, &begin_body(RESPONDER, 0)));
        c.write_lossy(&stream_records(PARAMS, 1, &params));
        c.write_lossy(&stream_records(STDIN, 1, b""));
        assert!(
            c.read_to_close(Duration::from_secs(5)).is_ok(),
            "connection left open"
        );
    }
    assert_serves(&srv);
}

#[test]
fn truncated_record_then_close_does_not_kill_the_process() {
    let srv = Server::start("truncated", "echo:app");
    let full = request_bytes(&Req::get("hello"));
    for cut in [3, 8 + 4] {
        // Inside the first header, then inside the BEGIN_REQUEST body.
        let mut c = srv.connect();
        c.write_lossy(&full[..cut]);
        let _ = c.s.shutdown(Shutdown::Both);
        drop(c);
        thread::sleep(Duration::from_millis(50));
    }
    assert_serves(&srv);
}

#[test]
fn random_bytes_close_the_connection_not_the_process() {
    let srv = Server::start("random", "echo:app");
    for seed in 1..=4u64 {
        let mut c = srv.connect();
        c.write_lossy(&noise(4096, seed));
        let _ = c.s.shutdown(Shutdown::Write);
        assert!(
            c.read_to_close(Duration::from_secs(5)).is_ok(),
            "seed {seed}: left open"
        );
    }
    assert_serves(&srv);
}

// --- what the app sees ----------------------------------------------------

#[test]
fn httpoxy_http_proxy_param_is_not_visible_to_the_app() {
    let srv = Server::start("httpoxy", "echo:app");
    let r = srv.request(
        &Req::get("environ")
            .param("HTTP_PROXY", "http://evil.test:3128")
            .param("HTTP_X_KEPT", "yes"),
    );
    assert_eq!(
        r.env_str("HTTP_X_KEPT").as_deref(),
        Some("yes"),
        "other headers must pass"
    );
    assert_eq!(r.env_str("HTTP_PROXY"), None, "HTTP_PROXY in environ");
    assert_eq!(
        r.env_str("os.environ.HTTP_PROXY"),
        None,
        "HTTP_PROXY in os.environ"
    );
}

#[test]
fn non_utf8_param_bytes_reach_the_app_as_latin1() {
    let srv = Server::start("latin1", "echo:app");
    let raw: &[u8] = b"\xff\xfe caf\xc3\xa9 \x80\x00end";
    let r = srv.request(
        &Req::get("environ")
            .param("HTTP_X_RAW", raw)
            .param("QUERY_STRING", b"q=\xe9\xff"),
    );
    assert_eq!(r.env("HTTP_X_RAW").as_deref(), Some(raw));
    assert_eq!(r.env("QUERY_STRING").as_deref(), Some(&b"q=\xe9\xff"[..]));
}

#[test]
fn wsgi_environ_flags_for_a_persistent_fastcgi_worker() {
    let srv = Server::start("environ", "echo:app");
    let r = srv.get("environ");
    assert_eq!(r.env_str("wsgi.multithread").as_deref(), Some("False"));
    assert_eq!(r.env_str("wsgi.multiprocess").as_deref(), Some("True"));
    assert_eq!(r.env_str("wsgi.run_once").as_deref(), Some("False"));
    assert_eq!(r.env_str("wsgi.version").as_deref(), Some("(1, 0)"));
    assert_eq!(r.env_str("wsgi.url_scheme").as_deref(), Some("http"));
    assert_eq!(r.env_str("REQUEST_METHOD").as_deref(), Some("GET"));
    let https = srv.request(
        &Req::get("environ")
            .param("HTTPS", "on")
            .param("SERVER_PORT", "8443"),
    );
    assert_eq!(https.env_str("wsgi.url_scheme").as_deref(), Some("https"));
}

#[test]
fn app_exception_before_start_response_gives_500_without_traceback() {
    let srv = Server::start("raise", "echo:app");
    let r = srv.get("raise");
    assert_eq!(r.status(), 500, "{}", r.text());
    assert_eq!(r.protocol_status, REQUEST_COMPLETE);
    let seen = format!("{}{}", r.text(), String::from_utf8_lossy(&r.stderr));
    for leak in [
        "Traceback",
        "marker-raise-before-start-response",
        "RuntimeError",
        "echo.py",
    ] {
        assert!(
            !seen.contains(leak),
            "{leak:?} shown to the visitor: {seen:?}"
        );
    }
    let log = srv.wait_log(|l| l.contains("marker-raise-before-start-response"));
    assert!(
        log.contains("Traceback (most recent call last)"),
        "no traceback in log: {log:?}"
    );
    assert!(
        log.contains("marker-raise-before-start-response"),
        "log: {log:?}"
    );
    assert_serves(&srv);
}

#[test]
fn app_output_to_stdout_is_not_part_of_the_response() {
    let srv = Server::start("print", "echo:app");
    let r = srv.get("print");
    assert_eq!(
        r.text(),
        "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nprinted\n"
    );
    assert!(
        r.stderr.is_empty(),
        "STDERR records: {:?}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_serves(&srv);
}

#[test]
fn wsgiref_validator_accepts_get_and_post() {
    let srv = Server::start("validator", "validated:app");
    let r = srv.get("hello");
    assert_eq!(
        r.text(),
        HELLO,
        "validator rejected a GET; log: {}",
        srv.log()
    );
    let r = srv.get("environ");
    assert_eq!(
        r.status(),
        200,
        "validator rejected a GET; log: {}",
        srv.log()
    );
    let body = noise(100_000, 9);
    let r = srv.request(&Req::post("echo", &body));
    assert_eq!(
        r.status(),
        200,
        "validator rejected a POST; log: {}",
        srv.log()
    );
    assert!(
        r.body() == &body[..],
        "POST body differs through the validator"
    );
    // One more request so anything logged about the previous ones is out.
    assert_serves(&srv);
    let log = srv.wait_log(|l| l.contains("AssertionError"));
    assert!(
        !log.contains("AssertionError"),
        "validator complained: {log}"
    );
    assert!(
        !log.contains("without being closed"),
        "close() not called: {log}"
    );
}

// --- lifecycle: reload, crashes, signals ------------------------------------

const RELOAD_PROBE: &str = r#"
import os

# Read once, at import: only a new worker can see a new value.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "value.txt")) as f:
    VALUE = f.read().strip()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %d" % (VALUE, os.getpid())).encode()]
"#;

fn value_and_pid(r: &Response) -> (String, i32) {
    assert_eq!(r.status(), 200, "{}", r.text());
    let text = r.body_text();
    let (v, p) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("bad body {text:?}"));
    (v.to_string(), p.parse().expect("pid"))
}

fn reload_server(tag: &str) -> (Server, std::path::PathBuf) {
    let dir = TempDir::new(tag);
    release(dir.path(), dir.path(), "one");
    let site = dir.join("site.toml");
    (Server::start_in(dir), site)
}

fn check_reload(srv: &Server, site: &std::path::Path, new_mtime: i64) {
    let (v1, p1) = value_and_pid(&srv.get("x"));
    assert_eq!(v1, "one");
    let (v1b, p1b) = value_and_pid(&srv.get("x"));
    assert_eq!(
        (v1b.as_str(), p1b),
        ("one", p1),
        "restarted the worker without a change"
    );
    fs::write(srv.dir.join("value.txt"), "two").expect("write value");
    set_mtime(site, new_mtime);
    let (v2, p2) = value_and_pid(&srv.get("x"));
    assert_eq!(
        v2, "two",
        "site.toml mtime changed, the next request must see the new code"
    );
    assert_ne!(p2, p1, "the worker must be a new process");
}

#[test]
fn touching_site_toml_reloads_the_app_in_a_new_worker() {
    let (srv, site) = reload_server("reload");
    let new = mtime_secs(&site) + 10;
    check_reload(&srv, &site, new);
}

#[test]
fn site_toml_mtime_moving_backwards_also_reloads() {
    // Restored backups and clock skew: compare for change, not for "newer".
    let (srv, site) = reload_server("reload-back");
    check_reload(&srv, &site, 1_000_000_000);
}

/// A release folder for the reload probe: site.toml (naming `home`, where
/// the folder will be served from), value.txt and the module.
fn release(at: &std::path::Path, home: &std::path::Path, value: &str) {
    fs::create_dir_all(at).expect("mkdir release");
    fs::write(at.join("value.txt"), value).expect("write value");
    fs::write(at.join("reload_probe.py"), RELOAD_PROBE).expect("write module");
    fs::write(at.join("site.toml"), site_toml(home, "reload_probe:app")).expect("write site");
}

#[test]
fn with_no_inotify_instance_left_a_touch_still_reloads_and_the_gate_arms_once_one_is_free() {
    // A uid of its own: the limit is per user, and root's tests use inotify.
    const UID: u32 = 48232;
    let dir = TempDir::new("no-inotify");
    fs::write(dir.join("value.txt"), "one").expect("write value");
    fs::write(dir.join("reload_probe.py"), RELOAD_PROBE).expect("write module");
    let site = dir.join("site.toml");
    fs::write(&site, own_site_toml(dir.path(), "reload_probe:app")).expect("write site");
    let hog = InotifyHog::new(UID);
    let srv = Server::start_as(dir, UID);
    check_reload(&srv, &site, mtime_secs(&site) + 10);
    assert!(
        inotify_watched(srv.pid()).is_empty(),
        "no instance was free, yet the shim watches something"
    );
    // With one free, the gate tries again within 5 s (at a request or
    // while idle) and then watches; a touch is seen as before.
    drop(hog);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while inotify_watched(srv.pid()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gate did not arm once an instance was free\n{}",
            srv.describe()
        );
        let _ = srv.get("x");
        thread::sleep(Duration::from_millis(250));
    }
    let (_, before) = value_and_pid(&srv.get("x"));
    fs::write(srv.dir.join("value.txt"), "three").expect("write value");
    set_mtime(&site, mtime_secs(&site) + 10);
    let (value, after) = value_and_pid(&srv.get("x"));
    assert_eq!(value, "three", "a touch under the armed gate must reload");
    assert_ne!(after, before, "the worker must be a new process");
}

/// The inodes the shim's inotify descriptors watch (/proc/PID/fdinfo).
fn inotify_watched(pid: i32) -> Vec<u64> {
    let mut inodes = Vec::new();
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).expect("list fds");
    for fd in fds.flatten() {
        let target = fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy() != "anon_inode:inotify" {
            continue;
        }
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().display()))
            .unwrap_or_default();
        for line in info.lines().filter(|l| l.starts_with("inotify wd:")) {
            let ino = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ino:"))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("no inode in {line:?}"));
            inodes.push(ino);
        }
    }
    inodes
}

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).expect("stat").ino()
}

#[test]
fn a_site_folder_replaced_by_rename_reloads_the_app() {
    // A deploy that moves the new release into place: site.toml is a new
    // file at the same path, and so is everything beside it.
    let dir = TempDir::new("folder-mv");
    let www = dir.join("www");
    release(&www, &www, "one");
    let srv = Server::start_site(dir, &www.join("site.toml"));
    let (v1, p1) = value_and_pid(&srv.get("x"));
    assert_eq!(v1, "one");
    // The reload check watches site.toml and the folders above it.
    let watched = inotify_watched(srv.pid());
    for p in [
        www.join("site.toml"),
        www.clone(),
        srv.dir.path().to_path_buf(),
    ] {
        assert!(
            watched.contains(&inode(&p)),
            "{p:?} not watched: {watched:?}"
        );
    }
    release(&srv.dir.join("www.new"), &www, "two");
    fs::rename(&www, srv.dir.join("www.old")).expect("mv www away");
    fs::rename(srv.dir.join("www.new"), &www).expect("mv the release in");
    let (v2, p2) = value_and_pid(&srv.get("x"));
    assert_eq!(v2, "two", "the next request must run the new release");
    assert_ne!(p2, p1, "in a new worker");
    // And the new site.toml is the one watched now.
    set_mtime(
        &www.join("site.toml"),
        mtime_secs(&www.join("site.toml")) + 10,
    );
    let (_, p3) = value_and_pid(&srv.get("x"));
    assert_ne!(p3, p2, "a touch of the new site.toml reloads too");
    let (_, p4) = value_and_pid(&srv.get("x"));
    assert_eq!(p4, p3, "and only once");
}

#[test]
fn a_web_root_reached_through_a_swapped_symlink_reloads_the_app() {
    // `ln -sfn release-2 current`: no event reaches a watch on release-1,
    // so the shim stats such paths before every request.
    let dir = TempDir::new("symlink-swap");
    let current = dir.join("current");
    release(&dir.join("release-1"), &current, "one");
    release(&dir.join("release-2"), &current, "two");
    std::os::unix::fs::symlink("release-1", &current).expect("symlink");
    let srv = Server::start_site(dir, &current.join("site.toml"));
    let (v1, p1) = value_and_pid(&srv.get("x"));
    assert_eq!(v1, "one");
    assert!(
        !inotify_watched(srv.pid()).contains(&inode(&current.join("site.toml"))),
        "a path through a symbolic link is not left to inotify"
    );
    let (_, p1b) = value_and_pid(&srv.get("x"));
    assert_eq!(p1b, p1, "no reload without a change");
    std::os::unix::fs::symlink("release-2", srv.dir.join("next")).expect("symlink");
    fs::rename(srv.dir.join("next"), &current).expect("swap the link");
    let (v2, p2) = value_and_pid(&srv.get("x"));
    assert_eq!(v2, "two", "the next request must run release-2");
    assert_ne!(p2, p1);
}

/// A log line about an exit with status 7 ("exited with status 7",
/// "exit code 7", "exit status=7"...).
fn mentions_exit_7(log: &str) -> bool {
    log.lines().any(|line| {
        line.to_lowercase().contains("exit")
            && line
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|t| t == "7")
    })
}

#[test]
fn worker_exit_gives_5xx_then_a_new_worker_serves() {
    let srv = Server::start("crash", "echo:app");
    let p1 = pid_of(&srv.get("pid"));
    let r = srv.get("exit");
    assert!(
        matches!(r.status(), 500 | 502),
        "want 502 or 500: {}",
        r.text()
    );
    let p2 = pid_of(&srv.get("pid"));
    assert_ne!(p1, p2, "a crashed worker cannot serve again");
    let log = srv.wait_log(mentions_exit_7);
    assert!(
        mentions_exit_7(&log),
        "log does not mention exit status 7: {log:?}"
    );
}

#[test]
fn worker_crash_leaves_no_zombie_children() {
    let srv = Server::start("zombie", "echo:app");
    let p1 = pid_of(&srv.get("pid"));
    let r = srv.get("exit");
    assert!(matches!(r.status(), 500 | 502), "{}", r.text());
    assert_serves(&srv);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while !zombie_children(srv.pid()).is_empty() && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        zombie_children(srv.pid()),
        Vec::<i32>::new(),
        "<defunct> children of the shim"
    );
    assert!(process_gone(p1));
}

#[test]
fn import_error_answers_500_logs_traceback_and_keeps_running() {
    let mut srv = Server::start("import-error", "broken_import:app");
    for _ in 0..2 {
        let r = srv.get("hello");
        assert_eq!(r.status(), 500, "{}", r.text());
        for leak in ["Traceback", "marker-import-failure", "broken_import"] {
            assert!(
                !r.text().contains(leak),
                "{leak:?} shown to the visitor: {}",
                r.text()
            );
        }
    }
    let log = srv.wait_log(|l| l.contains("marker-import-failure"));
    assert!(
        log.contains("Traceback (most recent call last)"),
        "log: {log:?}"
    );
    assert!(log.contains("marker-import-failure"), "log: {log:?}");
    assert_eq!(
        srv.exited(),
        None,
        "the shim must stay up (mod_fcgid punishes crash loops)"
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let mut srv = Server::start("sigterm", "echo:app");
    assert_serves(&srv);
    let mut c = srv.connect();
    c.send(&Req::get("sleep"));
    thread::sleep(Duration::from_millis(300));
    srv.signal(libc::SIGTERM);
    let r = c.read_response(1);
    assert_eq!(
        r.text(),
        "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nslept\n"
    );
    let status = srv.wait_exit(Duration::from_secs(3));
    assert!(
        status.is_some(),
        "still running 3 s after the last response"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}

#[test]
fn sigkill_of_the_shim_takes_the_python_worker_down() {
    let mut srv = Server::start("sigkill", "echo:app");
    let worker = pid_of(&srv.get("pid"));
    assert!(!process_gone(worker), "worker {worker} should be running");
    srv.signal(libc::SIGKILL);
    srv.child.wait().expect("reap the shim");
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while !process_gone(worker) && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let gone = process_gone(worker);
    if !gone {
        // SAFETY: kill(2) of the worker this test started; do not leak it.
        unsafe { libc::kill(worker, libc::SIGKILL) };
    }
    assert!(
        gone,
        "python worker {worker} outlived the shim by more than 1 s"
    );
}

#[test]
fn debug_traceback_only_for_clients_in_debug_allow() {
    let dir = TempDir::new("debug-allow");
    let site = site_toml(dir.path(), "echo:app") + "debug = true\ndebug_allow = [\"192.0.2.7\"]\n";
    fs::write(dir.join("site.toml"), site).expect("write site.toml");
    let srv = Server::start_in(dir);
    // Listed client: the page carries the traceback, HTML-escaped.
    let r = srv.request(&Req::get("raise").param("REMOTE_ADDR", "192.0.2.7"));
    assert_eq!(r.status(), 500, "{}", r.text());
    assert!(
        r.text().contains("Traceback (most recent call last)"),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("marker-raise-before-start-response"),
        "{}",
        r.text()
    );
    // Anyone else: the fixed page, nothing of the traceback.
    for addr in ["127.0.0.1", "192.0.2.8"] {
        let r = srv.request(&Req::get("raise").param("REMOTE_ADDR", addr));
        assert_eq!(r.status(), 500, "{}", r.text());
        assert!(
            !r.text().contains("Traceback"),
            "{addr} saw it: {}",
            r.text()
        );
        assert!(
            !r.text().contains("marker-raise"),
            "{addr} saw it: {}",
            r.text()
        );
    }
    assert_serves(&srv);
}

#[test]
fn debug_allow_without_debug_shows_nothing() {
    let dir = TempDir::new("debug-off");
    let site = site_toml(dir.path(), "echo:app") + "debug_allow = [\"127.0.0.1\"]\n";
    fs::write(dir.join("site.toml"), site).expect("write site.toml");
    let srv = Server::start_in(dir);
    let r = srv.get("raise");
    assert_eq!(r.status(), 500, "{}", r.text());
    assert!(!r.text().contains("Traceback"), "{}", r.text());
}

/// Cpus_allowed_list of a process (/proc/PID/status), e.g. "0-1" or "1".
fn allowed_cpus(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .expect("Cpus_allowed_list")
}

/// How many CPUs this test may use.
fn cpus_here() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn the_shim_and_its_worker_are_bound_to_one_cpu_while_they_serve() {
    let srv = Server::start("pin-cpu", "echo:app");
    let worker = pid_of(&srv.get("pid"));
    // Read straight after the request: the binding is let go a second
    // after the last one (affinity.rs).
    let (shim_cpus, worker_cpus) = (allowed_cpus(srv.pid()), allowed_cpus(worker));
    // With one CPU there is nothing to bind, and this test would prove
    // nothing: it needs two.
    assert!(cpus_here() > 1, "this test needs 2 CPUs or more");
    assert!(
        worker_cpus.parse::<usize>().is_ok(),
        "the worker may run on {worker_cpus}, not one CPU"
    );
    assert_eq!(
        shim_cpus, worker_cpus,
        "the shim and its worker share a CPU"
    );
    assert_serves(&srv);
}

#[test]
fn pin_cpu_false_leaves_the_placement_to_the_scheduler() {
    let dir = TempDir::new("no-pin-cpu");
    let site = write_site(dir.path(), "echo:app");
    let toml = std::fs::read_to_string(&site).expect("site.toml");
    std::fs::write(&site, format!("{toml}pin_cpu = false\n")).expect("site.toml");
    let srv = Server::start_in(dir);
    let worker = pid_of(&srv.get("pid"));
    let all = allowed_cpus(std::process::id() as i32);
    assert!(cpus_here() > 1, "this test needs 2 CPUs or more, {all}");
    assert_eq!(allowed_cpus(srv.pid()), all);
    assert_eq!(allowed_cpus(worker), all);
}
