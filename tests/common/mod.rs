//! Shared by the integration tests: a FastCGI client that speaks the wire
//! format byte by byte, a way to spawn the real binary the way mod_fcgid does
//! (listening unix socket on fd 0, environment with only PATH), a runner for
//! CGI and CLI invocations with a timeout, and small /proc and log helpers.
//!
//! Each test file uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fcgi-shim");

// FastCGI 1.0, section 8: record types, roles, flags, protocol statuses.
pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

pub const RESPONDER: u16 = 1;
pub const AUTHORIZER: u16 = 2;
pub const FILTER: u16 = 3;
pub const KEEP_CONN: u8 = 1;

pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const UNKNOWN_ROLE: u8 = 3;

/// Longest wait for anything the shim should do promptly.
pub const TIMEOUT: Duration = Duration::from_secs(15);

pub fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

/// One of the shipped .htaccess files (htaccess/NAME).
pub fn shipped_htaccess(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("htaccess")
        .join(name)
}

/// A fresh directory per test; removed on success, kept (and printed) when
/// the test fails so the log can be read.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        // Short: a unix socket path must fit in 108 bytes.
        let tag: String = tag.chars().take(24).collect();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fshim-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A site.toml for `app`, looking in the temp dir (for modules a test writes)
/// and in tests/apps, logging to `<dir>/shim.log`.
pub fn site_toml(dir: &Path, app: &str) -> String {
    format!(
        "python = \"python3\"\nsearch_path = [{}, {}]\nwsgi_app = {}\nlog_file = {}\n",
        toml_str(&dir.to_string_lossy()),
        toml_str(&apps_dir().to_string_lossy()),
        toml_str(app),
        toml_str(&dir.join("shim.log").to_string_lossy()),
    )
}

/// As [`site_toml`], looking in `dir` only: for a site run as another
/// user, who may not be able to read the checkout's tests/apps.
pub fn own_site_toml(dir: &Path, app: &str) -> String {
    format!(
        "python = \"python3\"\nsearch_path = [{}]\nwsgi_app = {}\nlog_file = {}\n",
        toml_str(&dir.to_string_lossy()),
        toml_str(app),
        toml_str(&dir.join("shim.log").to_string_lossy()),
    )
}

pub fn write_site(dir: &Path, app: &str) -> PathBuf {
    let path = dir.join("site.toml");
    fs::write(&path, site_toml(dir, app)).expect("write site.toml");
    path
}

pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Polls `path` until `pred` holds on its content; returns the last content.
pub fn wait_for_file(path: &Path, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = read_lossy(path);
        if pred(&text) || Instant::now() > deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The PATH a web server gives its programs (suEXEC's safe path): not the
/// test runner's, whose python3 may be pyenv's or a virtualenv's.
pub const SERVER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment a web server gives: mod_fcgid passes only PATH. And
/// the signals at their defaults, as a web server leaves them, whatever
/// this suite was started under (`nohup tests/run` ignores SIGHUP, which
/// the shim would then keep ignoring). A caller's own pre_exec runs after
/// this one, so it may ignore a signal again.
pub fn server_env(cmd: &mut Command) -> &mut Command {
    // SAFETY: signal(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.env_clear().env("PATH", SERVER_PATH)
}

/// The shim running as a spawned FastCGI server, killed on drop.
pub struct Server {
    pub dir: TempDir,
    pub sock: PathBuf,
    pub child: Child,
}

impl Server {
    /// Writes a site.toml serving `app` and starts the shim on it.
    pub fn start(tag: &str, app: &str) -> Server {
        let dir = TempDir::new(tag);
        write_site(dir.path(), app);
        Server::start_in(dir)
    }

    /// Starts the shim on `<dir>/site.toml`, already written.
    pub fn start_in(dir: TempDir) -> Server {
        Server::start_in_with(dir, &[])
    }

    /// As [`Server::start_in`], with more descriptors inherited: each
    /// `(fd, at)` is open as `at` in the shim (no CLOEXEC), as a careless
    /// web server's spawner leaves them.
    pub fn start_in_with(dir: TempDir, inherited: &[(i32, i32)]) -> Server {
        let site = dir.join("site.toml");
        Server::spawn(dir, &site, inherited, None)
    }

    /// As [`Server::start_in`], run as `uid` (and gid): `dir` is given to
    /// it and the binary linked into it, as a web root holds it (after the
    /// chown: the link is BIN's inode).
    pub fn start_as(dir: TempDir, uid: u32) -> Server {
        chown_tree(dir.path(), uid);
        let exe = install_binary(dir.path());
        let site = dir.join("site.toml");
        Server::spawn(dir, &site, &[], Some((&exe, uid)))
    }

    /// As [`Server::start_in`], with site.toml at `site` (FCGI_SHIM_SITE)
    /// instead of in `dir`.
    pub fn start_site(dir: TempDir, site: &Path) -> Server {
        Server::spawn(dir, site, &[], None)
    }

    /// `as_user`: the installed program and the uid (and gid) it runs as;
    /// else BIN, as root.
    fn spawn(
        dir: TempDir,
        site: &Path,
        inherited: &[(i32, i32)],
        as_user: Option<(&Path, u32)>,
    ) -> Server {
        let inherited = inherited.to_vec();
        let sock = dir.join("fcgi.sock");
        let listener = UnixListener::bind(&sock).expect("bind unix socket");
        let fd = listener.as_raw_fd();
        let mut cmd = match as_user {
            Some((exe, uid)) => {
                let mut cmd = Command::new(exe);
                cmd.uid(uid).gid(uid);
                cmd
            }
            None => Command::new(BIN),
        };
        server_env(&mut cmd)
            .env("FCGI_SHIM_SITE", site)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout")).expect("create stdout file"))
            .stderr(File::create(dir.join("stderr")).expect("create stderr file"));
        // SAFETY: dup2 is async-signal-safe; `fd` stays open in the parent
        // until after spawn returns. The copy on fd 0 has no CLOEXEC.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                for &(from, at) in &inherited {
                    if libc::dup2(from, at) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn fcgi-shim");
        // Only the shim holds the socket now: if it exits, connect() is
        // refused instead of queueing forever.
        drop(listener);
        Server { dir, sock, child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("shim.log")
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    pub fn wait_log(&self, pred: impl Fn(&str) -> bool) -> String {
        wait_for_file(&self.log_path(), Duration::from_secs(3), pred)
    }

    pub fn connect(&self) -> Conn {
        let s = UnixStream::connect(&self.sock).unwrap_or_else(|e| {
            panic!(
                "connect to the shim: {e} (is it still running? {:?})",
                self.describe()
            )
        });
        s.set_read_timeout(Some(TIMEOUT)).expect("set read timeout");
        s.set_write_timeout(Some(TIMEOUT))
            .expect("set write timeout");
        Conn { s }
    }

    /// One request on a fresh connection.
    pub fn request(&self, req: &Req) -> Response {
        self.connect().roundtrip(req)
    }

    pub fn get(&self, route: &str) -> Response {
        self.request(&Req::get(route))
    }

    /// `Some(status)` once the shim has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill({sig})");
    }

    /// Stdout, stderr and log of the shim, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "stdout: {:?}\nstderr: {:?}\nlog: {:?}",
            read_lossy(&self.dir.join("stdout")),
            read_lossy(&self.dir.join("stderr")),
            self.log()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The shim's own children (the Python worker) are killed too, so a
        // shim that leaks its worker on SIGKILL (tested separately) does not
        // leave processes behind after every test.
        let children = children_of(self.pid());
        // Kill errors mean it already exited; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in children {
            if !process_gone(pid) {
                // SAFETY: plain kill(2) of a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A request as a web server would send it.
#[derive(Clone)]
pub struct Req {
    pub id: u16,
    pub role: u16,
    pub flags: u8,
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Req {
    /// What Apache sends after `RewriteRule ^(.*)$ mysite.fcgi/$1`.
    pub fn get(route: &str) -> Req {
        let path = format!("/{route}");
        let mut req = Req {
            id: 1,
            role: RESPONDER,
            flags: 0,
            params: vec![],
            body: vec![],
        };
        for (k, v) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", "Apache"),
            ("SERVER_NAME", "example.test"),
            ("SERVER_ADDR", "127.0.0.1"),
            ("SERVER_PORT", "80"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", &path),
            ("SCRIPT_NAME", "/mysite.fcgi"),
            ("PATH_INFO", &path),
            ("QUERY_STRING", ""),
            ("HTTP_HOST", "example.test"),
        ] {
            req.params.push((k.into(), v.into()));
        }
        req
    }

    pub fn post(route: &str, body: &[u8]) -> Req {
        Req::get(route)
            .param("REQUEST_METHOD", "POST")
            .param("CONTENT_TYPE", "application/octet-stream")
            .param("CONTENT_LENGTH", body.len().to_string())
            .body(body)
    }

    /// Sets (replacing) or adds a param.
    pub fn param(mut self, name: &str, value: impl AsRef<[u8]>) -> Req {
        let value = value.as_ref().to_vec();
        match self.params.iter_mut().find(|(k, _)| k == name.as_bytes()) {
            Some(pair) => pair.1 = value,
            None => self.params.push((name.into(), value)),
        }
        self
    }

    pub fn body(mut self, body: &[u8]) -> Req {
        self.body = body.to_vec();
        self
    }

    pub fn id(mut self, id: u16) -> Req {
        self.id = id;
        self
    }

    pub fn flags(mut self, flags: u8) -> Req {
        self.flags = flags;
        self
    }

    pub fn role(mut self, role: u16) -> Req {
        self.role = role;
        self
    }

    pub fn params_stream(&self) -> Vec<u8> {
        encode_pairs(&self.params)
    }
}

/// Name-value pairs, FastCGI 1.0 section 3.4: 1-byte lengths below 128,
/// else 4 bytes with the high bit set.
pub fn encode_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let mut out = vec![];
    for (n, v) in pairs {
        let (n, v) = (n.as_ref(), v.as_ref());
        push_len(&mut out, n.len());
        push_len(&mut out, v.len());
        out.extend_from_slice(n);
        out.extend_from_slice(v);
    }
    out
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    if n < 128 {
        out.push(n as u8);
    } else {
        out.extend_from_slice(&(n as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// Strict decoder for what the shim sends (GET_VALUES_RESULT).
pub fn decode_pairs(mut buf: &[u8]) -> Vec<(String, String)> {
    fn len(buf: &mut &[u8]) -> usize {
        if buf[0] < 128 {
            let n = buf[0] as usize;
            *buf = &buf[1..];
            n
        } else {
            let n = u32::from_be_bytes(buf[..4].try_into().unwrap()) & 0x7fff_ffff;
            *buf = &buf[4..];
            n as usize
        }
    }
    let mut out = vec![];
    while !buf.is_empty() {
        let n = len(&mut buf);
        let v = len(&mut buf);
        let name = String::from_utf8(buf[..n].to_vec()).unwrap();
        let value = String::from_utf8(buf[n..n + v].to_vec()).unwrap();
        buf = &buf[n + v..];
        out.push((name, value));
    }
    out
}

/// One record: header (version 1, type, id, content length, padding length,
/// reserved), content, padding to a multiple of 8 as libfcgi does.
pub fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    assert!(content.len() <= 65535, "record content too long");
    let pad = content.len().wrapping_neg() & 7;
    let mut out = vec![1, kind];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[pad as u8, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, pad));
    out
}

pub fn begin_body(role: u16, flags: u8) -> Vec<u8> {
    let mut b = role.to_be_bytes().to_vec();
    b.extend_from_slice(&[flags, 0, 0, 0, 0, 0]);
    b
}

/// A stream (PARAMS or STDIN) as records of at most 65535 bytes, then the
/// empty record that ends it.
pub fn stream_records(kind: u8, id: u16, data: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    for chunk in data.chunks(65535) {
        out.extend(record(kind, id, chunk));
    }
    out.extend(record(kind, id, b""));
    out
}

/// A stream split at the given offsets (ascending), then the empty record.
pub fn split_records(kind: u8, id: u16, data: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = vec![];
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        out.extend(record(kind, id, &data[start..cut]));
        start = cut;
    }
    out.extend(record(kind, id, b""));
    out
}

/// All records of a complete request.
pub fn request_bytes(req: &Req) -> Vec<u8> {
    let mut out = record(BEGIN_REQUEST, req.id, &begin_body(req.role, req.flags));
    out.extend(stream_records(PARAMS, req.id, &req.params_stream()));
    out.extend(stream_records(STDIN, req.id, &req.body));
    out
}

/// Records in `bytes`; a trailing partial record is ignored.
pub fn parse_records(mut bytes: &[u8]) -> Vec<Record> {
    let mut out = vec![];
    while bytes.len() >= 8 {
        let len = u16::from_be_bytes([bytes[4], bytes[5]]) as usize;
        let total = 8 + len + bytes[6] as usize;
        if bytes.len() < total {
            break;
        }
        let id = u16::from_be_bytes([bytes[2], bytes[3]]);
        out.push(Record {
            kind: bytes[1],
            id,
            content: bytes[8..8 + len].to_vec(),
        });
        bytes = &bytes[total..];
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

impl Record {
    /// (appStatus, protocolStatus) of an END_REQUEST.
    pub fn end(&self) -> (u32, u8) {
        assert_eq!(self.kind, END_REQUEST, "not an END_REQUEST: {self:?}");
        assert_eq!(
            self.content.len(),
            8,
            "END_REQUEST body must be 8 bytes: {self:?}"
        );
        (
            u32::from_be_bytes(self.content[..4].try_into().unwrap()),
            self.content[4],
        )
    }
}

pub struct Conn {
    pub s: UnixStream,
}

impl Conn {
    pub fn write(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to the shim");
    }

    /// For malformed input: the shim may already have closed.
    pub fn write_lossy(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    pub fn send(&mut self, req: &Req) {
        self.write(&request_bytes(req));
    }

    /// The next record; `None` when the shim closed the connection at a
    /// record boundary. Panics on a truncated record or a bad header.
    pub fn read_record(&mut self) -> Option<Record> {
        let mut header = [0u8; 8];
        match self.s.read(&mut header[..1]) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => panic!("reading a record header: {e}"),
        }
        self.s
            .read_exact(&mut header[1..])
            .expect("truncated record header");
        assert_eq!(header[0], 1, "record version must be 1: {header:?}");
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        let mut buf = vec![0; len + header[6] as usize];
        self.s
            .read_exact(&mut buf)
            .expect("truncated record content");
        buf.truncate(len);
        Some(Record {
            kind: header[1],
            id: u16::from_be_bytes([header[2], header[3]]),
            content: buf,
        })
    }

    /// Reads until the END_REQUEST for `id`, checking the shape of the
    /// stream: STDOUT/STDERR only for `id`, STDOUT ended by an empty record
    /// before END_REQUEST.
    pub fn read_response(&mut self, id: u16) -> Response {
        let mut resp = Response::default();
        let mut stdout_closed = false;
        loop {
            let rec = self.read_record().unwrap_or_else(|| {
                panic!(
                    "connection closed before END_REQUEST; got {:?}",
                    String::from_utf8_lossy(&resp.stdout)
                )
            });
            resp.records.push(rec.clone());
            assert_eq!(rec.id, id, "record for another request id: {rec:?}");
            match rec.kind {
                STDOUT if rec.content.is_empty() => stdout_closed = true,
                STDOUT => {
                    assert!(!stdout_closed, "STDOUT data after the empty STDOUT record");
                    resp.stdout.extend_from_slice(&rec.content)
                }
                STDERR => resp.stderr.extend_from_slice(&rec.content),
                END_REQUEST => {
                    (resp.app_status, resp.protocol_status) = rec.end();
                    if resp.protocol_status == REQUEST_COMPLETE {
                        assert!(stdout_closed, "END_REQUEST without the empty STDOUT first");
                    }
                    return resp;
                }
                other => panic!("unexpected record type {other}: {rec:?}"),
            }
        }
    }

    pub fn roundtrip(&mut self, req: &Req) -> Response {
        self.send(req);
        self.read_response(req.id)
    }

    /// Waits for the shim to close the connection. Returns the bytes that
    /// came first; `Err` if it stayed open for `timeout`. A reset counts as
    /// closed (the kernel resets when the shim closes with input unread).
    pub fn read_to_close(&mut self, timeout: Duration) -> Result<Vec<u8>, Vec<u8>> {
        self.s
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
        let mut got = vec![];
        let mut buf = [0u8; 65536];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(got),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(got),
            }
        }
    }
}

/// A CGI-style response: the STDOUT stream of a FastCGI response, or the
/// stdout of a CGI run.
#[derive(Default, Debug)]
pub struct Response {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub records: Vec<Record>,
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Response {
    pub fn from_cgi(stdout: Vec<u8>) -> Response {
        Response {
            stdout,
            ..Response::default()
        }
    }

    fn split(&self) -> (&[u8], &[u8]) {
        match self.stdout.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => (&self.stdout[..i], &self.stdout[i + 4..]),
            None => panic!("no header block in {:?}", self.text()),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn head(&self) -> String {
        String::from_utf8_lossy(self.split().0).into_owned()
    }

    pub fn body(&self) -> &[u8] {
        self.split().1
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head().split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The status code from the `Status:` header (CGI: absent means 200).
    pub fn status(&self) -> u16 {
        match self.header("Status") {
            Some(v) => v[..3]
                .parse()
                .unwrap_or_else(|_| panic!("bad Status header {v:?}")),
            None => 200,
        }
    }

    /// `/environ` output as (name, raw value) pairs.
    pub fn environ(&self) -> Vec<(String, Vec<u8>)> {
        assert_eq!(
            self.status(),
            200,
            "environ request failed: {}",
            self.text()
        );
        self.body()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let eq = l.iter().position(|&b| b == b'=').expect("name=value line");
                (
                    String::from_utf8_lossy(&l[..eq]).into_owned(),
                    l[eq + 1..].to_vec(),
                )
            })
            .collect()
    }

    pub fn env(&self, name: &str) -> Option<Vec<u8>> {
        self.environ()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn env_str(&self, name: &str) -> Option<String> {
        self.env(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

/// Deterministic bytes (xorshift), for bodies and garbage.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// FNV-1a, to report a body mismatch without printing a mebibyte.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Result of a CGI or CLI run.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stdout and stderr together: where a message goes is not specified.
    pub fn all_text(&self) -> String {
        format!(
            "{}{}",
            self.stdout_text(),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

/// Runs `cmd` with `stdin` written to a pipe and then closed (`None`: the
/// pipe stays open and empty until exit). Panics if it runs past `timeout`.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_retrying(cmd);
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let input = stdin.map(<[u8]>::to_vec);
    let writer = thread::spawn(move || {
        if let Some(input) = input {
            // A shim that does not read its body gets EPIPE: not our concern.
            let _ = pipe.write_all(&input);
            drop(pipe);
            None
        } else {
            Some(pipe)
        }
    });
    let out = drain(child.stdout.take().expect("stdout pipe"));
    let err = drain(child.stderr.take().expect("stderr pipe"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let kept_open = writer.join().expect("stdin writer");
    drop(kept_open);
    // Bounded: a leaked grandchild holding the pipe must not hang the test.
    let collect = |rx: mpsc::Receiver<Vec<u8>>, name| {
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{name} still open 5 s after exit: a leaked child?"))
    };
    Output {
        status,
        stdout: collect(out, "stdout"),
        stderr: collect(err, "stderr"),
    }
}

/// Reads `r` to the end on another thread.
fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut v = vec![];
        let _ = r.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

/// Spawn, retrying on ETXTBSY: another test thread may be forking while it
/// still holds a just-copied executable open for writing.
pub fn spawn_retrying(cmd: &mut Command) -> Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("spawn {cmd:?}: {e}"),
        }
    }
    panic!("spawn {cmd:?}: text file busy");
}

/// `chown -R uid:uid dir`.
pub fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).expect("chown");
    for entry in fs::read_dir(dir).expect("list dir").flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            chown_tree(&path, uid);
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).expect("chown");
        }
    }
}

/// Every inotify instance `uid` may hold, held by a Python child running as
/// that uid until dropped: a shared account whose other sites, editors and
/// file managers took them all (fs.inotify.max_user_instances, 128 by
/// default). `uid` must be one no other process uses.
pub struct InotifyHog {
    child: Child,
    /// fs.inotify.max_user_instances: all of them.
    pub held: usize,
}

impl InotifyHog {
    pub fn new(uid: u32) -> InotifyHog {
        const HOG: &str = r#"
import ctypes, resource, sys
libc = ctypes.CDLL(None, use_errno=True)
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
while True:
    fd = libc.inotify_init1(0o2000000)
    if fd < 0:
        break
    held.append(fd)
print(len(held), ctypes.get_errno(), flush=True)
sys.stdin.read()
"#;
        let max: usize = fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
            .expect("read fs.inotify.max_user_instances")
            .trim()
            .parse()
            .expect("a number");
        let mut child = Command::new("python3")
            .args(["-c", HOG])
            .env_clear()
            .env("PATH", SERVER_PATH)
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the inotify hog");
        let mut line = String::new();
        io::BufRead::read_line(
            &mut io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read the hog");
        let (held, errno) = line
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("the hog said {line:?}"));
        assert_eq!(
            (held.parse::<usize>().ok(), errno.parse::<i32>().ok()),
            (Some(max), Some(libc::EMFILE)),
            "the hog must hold all {max} instances of uid {uid} and be refused with EMFILE"
        );
        InotifyHog { child, held: max }
    }
}

impl Drop for InotifyHog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs the binary as `<dir>/mysite.fcgi`, the way a user deploys it.
pub fn install_binary(dir: &Path) -> PathBuf {
    let dest = dir.join("mysite.fcgi");
    // Already installed: a copy onto a hard link of BIN would truncate BIN.
    if dest.exists() {
        return dest;
    }
    if fs::hard_link(BIN, &dest).is_err() {
        fs::copy(BIN, &dest).expect("copy the binary");
    }
    dest
}

/// The step check and init print to put the program `by` at `at` (paths
/// with nothing in them that sh would need quoted).
pub fn install_step(by: &Path, at: &Path) -> String {
    format!(
        "cp {} {s}.new && chmod 755 {s}.new && mv {s}.new {s}",
        by.display(),
        s = at.display()
    )
}

/// The binary installed as `<bin>/fcgi-shim` and run by that bare name,
/// as from a shell whose PATH has `bin` first (the web server's after it).
pub fn from_path(bin: &Path) -> Command {
    fs::create_dir_all(bin).expect("bin folder");
    let dest = bin.join("fcgi-shim");
    if !dest.exists() && fs::hard_link(BIN, &dest).is_err() {
        fs::copy(BIN, &dest).expect("copy the binary");
    }
    let mut cmd = Command::new("fcgi-shim");
    server_env(&mut cmd).env("PATH", format!("{}:{SERVER_PATH}", bin.display()));
    cmd
}

/// (state, ppid) from /proc/<pid>/stat; `None` if there is no such process.
pub fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields resume
    // after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Gone or a zombie: either way the process no longer runs.
pub fn process_gone(pid: i32) -> bool {
    !matches!(proc_stat(pid), Some((state, _)) if state != 'Z')
}

/// (pid, state) of every child of `ppid`.
pub fn children(ppid: i32) -> Vec<(i32, char)> {
    let mut out = vec![];
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some((state, parent)) = proc_stat(pid)
            && parent == ppid
        {
            out.push((pid, state));
        }
    }
    out
}

pub fn children_of(ppid: i32) -> Vec<i32> {
    children(ppid).into_iter().map(|(pid, _)| pid).collect()
}

/// Pids of the children of `ppid` that are zombies.
pub fn zombie_children(ppid: i32) -> Vec<i32> {
    children(ppid)
        .into_iter()
        .filter(|&(_, s)| s == 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// Sets a file's mtime (and atime) to `secs` since the epoch.
pub fn set_mtime(path: &Path, secs: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in path");
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: `c` is a valid C string and `times` two valid timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
    assert_eq!(
        rc,
        0,
        "utimensat {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

pub fn mtime_secs(path: &Path) -> i64 {
    let m = fs::metadata(path).expect("stat").modified().expect("mtime");
    m.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// The version of the python3 a web server finds, e.g. "3.11.2".
pub fn python_version() -> String {
    let out = Command::new("python3")
        .env("PATH", SERVER_PATH)
        .args(["-c", "import platform; print(platform.python_version())"])
        .output()
        .expect("run python3");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}
