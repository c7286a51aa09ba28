//! The FastCGI responder: connections in, one request at a time.
//!
//! First stage of the data path under a web server that spawns us with a
//! listening socket on fd 0 (mod_fcgid, mod_fastcgi, lighttpd bin-path,
//! spawn-fcgi). Records come from `record.rs`; a request, once its PARAMS are
//! complete, goes to `App::handle`, with this module as its [`Transport`].
//! Between connections the accept loop checks for reloads and signals.
//!
//! Every byte from the web server is untrusted: a malformed record ends that
//! connection (logged), never the process; PARAMS are bounded; the body is
//! streamed record by record, never held whole.

use std::borrow::Cow;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::app::{App, Change, Handler};
use crate::bridge::{Gone, Outcome, Transport};
use crate::config::Net;
use crate::environ::Param;
use crate::record::{self, Decoded, Header};
use crate::signals;
use crate::sys;

/// Largest PARAMS stream accepted (the whole environ of one request).
/// Servers cap headers far below this (Apache: 8 KiB a line, 100 lines).
pub const MAX_PARAMS: usize = 4 << 20;
/// Body bytes sent along with the request frame when already at hand.
const BODY_PREFIX: usize = 64 << 10;
/// A wait for a connection shorter than this found one already queued.
const BACK_TO_BACK: Duration = Duration::from_micros(20);
/// How long a finished request waits for the rest of an unread body, so
/// that closing does not make the kernel answer with RST.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// The env var through which a re-executed image receives the connection it
/// must serve first.
pub const REEXEC_ENV: &str = "FCGI_SHIM_REEXEC";

#[derive(Debug)]
pub(crate) enum ConnError {
    /// The peer closed or reset the connection.
    Closed,
    TimedOut,
    /// The web server stopped reading our response.
    WriteTimedOut,
    Protocol(String),
    Io(io::Error),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Closed => write!(f, "the web server closed the connection"),
            ConnError::TimedOut => write!(f, "the web server sent nothing within io_timeout"),
            ConnError::WriteTimedOut => {
                write!(
                    f,
                    "the web server read nothing of the response within io_timeout"
                )
            }
            ConnError::Protocol(m) => write!(f, "malformed FastCGI: {m}"),
            ConnError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<record::Error> for ConnError {
    fn from(e: record::Error) -> Self {
        ConnError::Protocol(e.to_string())
    }
}

/// One connection from the web server at a time. The buffers outlive the
/// connections: a fresh 128 KiB buffer per request would cost an mmap, a
/// munmap and page faults on every request.
pub struct Conn {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Records to send, flushed at the end of each batch.
    out: Vec<u8>,
    io_timeout: Duration,
    /// The room of the last request's list of params (see [`relabel`]).
    list: Vec<Param<'static>>,
    /// The connection's first read is still to come (it peeks, see `fill`).
    first_read: bool,
    /// Bytes that first read copied into `buf` but left in the socket.
    peeked: usize,
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            fd: None,
            buf: vec![0; 2 * record::MAX_RECORD],
            start: 0,
            end: 0,
            out: Vec::with_capacity(64 << 10),
            io_timeout: Duration::ZERO,
            // What servers send: Apache about 30 params, nginx 20.
            list: Vec::with_capacity(48),
            first_read: false,
            peeked: 0,
        }
    }

    /// Starts on a new connection. `peek`: the first read leaves the bytes
    /// in the socket until the response is out (see `fill`).
    pub fn attach(&mut self, fd: OwnedFd, io_timeout: Duration, peek: bool) {
        self.fd = Some(fd);
        (self.start, self.end) = (0, 0);
        self.out.clear();
        self.io_timeout = io_timeout;
        self.first_read = peek;
        self.peeked = 0;
    }

    /// Closes the connection, keeping the buffers. What the first read left
    /// in the socket is taken out first: closing a socket with unread data
    /// resets the connection, and the web server could lose the response.
    pub fn close(&mut self) {
        if self.peeked > 0 {
            // Dropped: the connection is over either way.
            let _ = self.consume_peeked();
        }
        self.fd = None;
    }

    /// Takes the bytes the first read peeked at out of the socket (they
    /// are in `buf` already).
    fn consume_peeked(&mut self) -> Result<(), ConnError> {
        let mut scratch = [0u8; 4096];
        while self.peeked > 0 {
            let n = self.peeked.min(scratch.len());
            match sys::read(self.raw(), &mut scratch[..n]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(got) => self.peeked -= got.min(self.peeked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Peeked bytes are queued: nothing can be missing.
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        Ok(())
    }

    fn raw(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    fn deadline(&self) -> Option<Instant> {
        (!self.io_timeout.is_zero()).then(|| Instant::now() + self.io_timeout)
    }

    /// Reads more bytes. Ok(false) at EOF.
    ///
    /// The first read of a connection peeks (MSG_PEEK): the request is
    /// copied, but stays queued in the socket until the response has gone
    /// out (`close`) or more must be read. Taking bytes out of a unix socket
    /// wakes a writer that waits for room, and the web server always waits
    /// for room (nginx's epoll has EPOLLOUT on every upstream connection):
    /// waking it on another CPU costs this read ~12 µs (an IPI; measured in
    /// the benchmark's VM), for nothing, on every request. Taken out after
    /// the response, the web server is awake already and it costs nothing.
    fn fill(&mut self) -> Result<bool, ConnError> {
        if self.peeked > 0 {
            self.consume_peeked()?;
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.buf.len() - self.end < record::MAX_RECORD {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let deadline = self.deadline();
        loop {
            let end = self.end;
            let got = if self.first_read {
                sys::peek(self.raw(), &mut self.buf[end..])
            } else {
                sys::read(self.raw(), &mut self.buf[end..])
            };
            match got {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    if std::mem::take(&mut self.first_read) {
                        self.peeked = n;
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let w = signals::wait(&[(self.raw(), libc::POLLIN)], deadline)
                        .map_err(ConnError::Io)?;
                    if w.timed_out {
                        return Err(ConnError::TimedOut);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ConnError::Closed);
                }
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// The next whole record. None when the peer closed cleanly between
    /// records.
    fn next_record(&mut self) -> Result<Option<Header>, ConnError> {
        loop {
            match record::decode(&self.buf[self.start..self.end])? {
                Decoded::Record(h) => return Ok(Some(h)),
                Decoded::Partial { .. } => {
                    if !self.fill()? {
                        return if self.start == self.end {
                            Ok(None)
                        } else {
                            Err(ConnError::Protocol(
                                "connection closed in the middle of a record".into(),
                            ))
                        };
                    }
                }
            }
        }
    }

    fn content(&self, h: Header) -> &[u8] {
        let from = self.start + record::HEADER_LEN;
        &self.buf[from..from + h.content_len as usize]
    }

    fn consume(&mut self, h: Header) {
        self.start += h.record_len();
    }

    /// Writes everything in `out`.
    fn send(&mut self) -> Result<(), ConnError> {
        let mut done = 0;
        let deadline = self.deadline();
        let result = loop {
            if done == self.out.len() {
                break Ok(());
            }
            match sys::write(self.raw(), &self.out[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match signals::wait(&[(self.raw(), libc::POLLOUT)], deadline) {
                        Ok(w) if w.timed_out => break Err(ConnError::WriteTimedOut),
                        Ok(_) => {}
                        Err(e) => break Err(ConnError::Io(e)),
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    break Err(ConnError::Closed);
                }
                Err(e) => break Err(ConnError::Io(e)),
            }
        };
        self.out.clear();
        result
    }

    /// Answers a management record (request id 0), spec section 4.
    fn management(&mut self, h: Header) {
        let reply = match h.kind {
            record::GET_VALUES => record::get_values_result(self.content(h)),
            kind => record::unknown_type(kind),
        };
        self.out.extend_from_slice(&reply);
    }
}

/// A request whose PARAMS are complete.
struct Begun {
    id: u16,
    keep: bool,
}

/// Waits for BEGIN_REQUEST and the whole PARAMS stream, answering
/// management records, unknown roles and multiplexing attempts on the way.
/// None: the connection ended (cleanly, or after an unknown role).
fn read_request(conn: &mut Conn, params: &mut Vec<u8>) -> Result<Option<Begun>, ConnError> {
    // A loop, not recursion: a KEEP_CONN connection may abort requests
    // without end (found by reading for the fuzzer: 75,000 aborts on one
    // connection overflowed the stack).
    'request: loop {
        let begun = loop {
            let Some(h) = conn.next_record()? else {
                return Ok(None);
            };
            if h.id == 0 {
                conn.management(h);
                conn.consume(h);
                conn.send()?;
                continue;
            }
            if h.kind != record::BEGIN_REQUEST {
                // Records for requests that are not open: the spec says ignore.
                conn.consume(h);
                continue;
            }
            let begin = record::decode_begin(conn.content(h))?;
            conn.consume(h);
            let keep = begin.flags & record::KEEP_CONN != 0;
            if begin.role != record::RESPONDER {
                record::push_end_request(&mut conn.out, h.id, 0, record::UNKNOWN_ROLE);
                conn.send()?;
                if !keep {
                    return Ok(None);
                }
                continue;
            }
            break Begun { id: h.id, keep };
        };
        params.clear();
        loop {
            let Some(h) = conn.next_record()? else {
                return Err(ConnError::Protocol(
                    "connection closed before the end of PARAMS".into(),
                ));
            };
            match (h.kind, h.id) {
                (_, 0) => {
                    conn.management(h);
                    conn.consume(h);
                    conn.send()?;
                }
                (record::PARAMS, id) if id == begun.id => {
                    let content = conn.content(h);
                    if content.is_empty() {
                        conn.consume(h);
                        return Ok(Some(begun));
                    }
                    if params.len() + content.len() > MAX_PARAMS {
                        return Err(ConnError::Protocol(format!(
                            "PARAMS over {MAX_PARAMS} bytes"
                        )));
                    }
                    params.extend_from_slice(content);
                    conn.consume(h);
                }
                (record::ABORT_REQUEST, id) if id == begun.id => {
                    conn.consume(h);
                    record::push_end_request(&mut conn.out, id, 0, record::REQUEST_COMPLETE);
                    conn.send()?;
                    if begun.keep {
                        continue 'request;
                    }
                    return Ok(None);
                }
                (record::BEGIN_REQUEST, id) if id != begun.id => {
                    conn.consume(h);
                    record::push_end_request(&mut conn.out, id, 0, record::CANT_MPX_CONN);
                    conn.send()?;
                }
                (kind, id) if id == begun.id => {
                    return Err(ConnError::Protocol(format!(
                        "record type {kind} before the end of PARAMS"
                    )));
                }
                _ => conn.consume(h),
            }
        }
    }
}

/// The FastCGI side of one request, as the bridge sees it.
struct Exchange<'c> {
    conn: &'c mut Conn,
    id: u16,
    stdin_done: bool,
    aborted: bool,
    /// Set when the connection is unusable (closed, timed out, garbage).
    broken: Option<ConnError>,
    /// Current STDIN record being handed out: next byte, content end,
    /// record end (offsets into conn.buf).
    cur: Option<(usize, usize, usize)>,
    body_bytes: u64,
}

impl Exchange<'_> {
    /// Next STDIN content for this request; Ok(false) at the end of STDIN.
    fn next_stdin(&mut self) -> Result<bool, ConnError> {
        loop {
            let Some(h) = self.conn.next_record()? else {
                return Err(ConnError::Closed);
            };
            match (h.kind, h.id) {
                (_, 0) => {
                    self.conn.management(h);
                    self.conn.consume(h);
                    self.conn.send()?;
                }
                (record::STDIN, id) if id == self.id => {
                    if h.content_len == 0 {
                        self.conn.consume(h);
                        self.stdin_done = true;
                        return Ok(false);
                    }
                    let from = self.conn.start + record::HEADER_LEN;
                    let to = from + h.content_len as usize;
                    self.cur = Some((from, to, self.conn.start + h.record_len()));
                    return Ok(true);
                }
                (record::ABORT_REQUEST, id) if id == self.id => {
                    self.conn.consume(h);
                    self.aborted = true;
                    return Ok(false);
                }
                (record::BEGIN_REQUEST, id) if id != self.id => {
                    self.conn.consume(h);
                    record::push_end_request(&mut self.conn.out, id, 0, record::CANT_MPX_CONN);
                    self.conn.send()?;
                }
                (record::BEGIN_REQUEST, _) => {
                    return Err(ConnError::Protocol(
                        "BEGIN_REQUEST for a request already open".into(),
                    ));
                }
                _ => self.conn.consume(h),
            }
        }
    }

    /// Takes the STDIN records already buffered, without waiting: the body
    /// prefix that travels with the request frame.
    fn prefix(&mut self, into: &mut Vec<u8>) -> Result<(), ConnError> {
        while into.len() < BODY_PREFIX && !self.stdin_done && !self.aborted {
            if self.cur.is_none() {
                // Only a whole STDIN record of this request, already here:
                // anything else (a management record, a partial record)
                // could make next_stdin wait, and the prefix never waits.
                match record::decode(&self.conn.buf[self.conn.start..self.conn.end])? {
                    Decoded::Record(h) if h.kind == record::STDIN && h.id == self.id => {
                        if !self.next_stdin()? {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            let Some((pos, end, rec_end)) = self.cur else {
                break;
            };
            let n = (end - pos).min(BODY_PREFIX - into.len());
            into.extend_from_slice(&self.conn.buf[pos..pos + n]);
            self.body_bytes += n as u64;
            self.advance(pos + n, end, rec_end);
        }
        Ok(())
    }

    fn advance(&mut self, pos: usize, end: usize, rec_end: usize) {
        if pos == end {
            self.conn.start = rec_end;
            self.cur = None;
        } else {
            self.cur = Some((pos, end, rec_end));
        }
    }

    fn fail(&mut self, e: ConnError) -> Gone {
        if self.broken.is_none() {
            self.broken = Some(e);
        }
        Gone
    }
}

impl Transport for Exchange<'_> {
    fn body(&mut self, max: usize) -> Result<&[u8], Gone> {
        if self.aborted || self.broken.is_some() {
            return Err(Gone);
        }
        if self.stdin_done {
            return Ok(&[]);
        }
        if self.cur.is_none() {
            match self.next_stdin() {
                Ok(true) => {}
                Ok(false) if self.aborted => return Err(Gone),
                Ok(false) => return Ok(&[]),
                Err(e) => return Err(self.fail(e)),
            }
        }
        let (pos, end, rec_end) = self.cur.expect("next_stdin set the current record");
        let n = (end - pos).min(max);
        self.body_bytes += n as u64;
        self.advance(pos + n, end, rec_end);
        Ok(&self.conn.buf[pos..pos + n])
    }

    fn output(&mut self, data: &[u8]) -> Result<(), Gone> {
        if self.broken.is_some() {
            return Err(Gone);
        }
        record::push_stdout(&mut self.conn.out, self.id, data);
        if self.conn.out.len() >= 64 << 10 {
            return self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Gone> {
        if self.broken.is_some() {
            return Err(Gone);
        }
        self.conn.send().map_err(|e| self.fail(e))
    }
}

/// An empty list of params for another lifetime, in the same allocation
/// (std collects `into_iter().map()` in place when the element layouts
/// match, as here), so that a request's list allocates nothing once the
/// first has made room.
fn relabel<'b>(mut list: Vec<Param<'_>>) -> Vec<Param<'b>> {
    list.clear();
    list.into_iter()
        .map(|_| unreachable!("the list is empty"))
        .collect()
}

/// Serves the requests of one connection. Returns true when the
/// connection may be kept for another request (KEEP_CONN).
pub(crate) fn serve_request(
    conn: &mut Conn,
    app: &mut dyn Handler,
    params: &mut Vec<u8>,
) -> Result<bool, ConnError> {
    let Some(begun) = read_request(conn, params)? else {
        return Ok(false);
    };
    let mut list = relabel(std::mem::take(&mut conn.list));
    let parsed = record::pairs(params)
        .try_for_each(|r| r.map(|(n, v)| list.push((Cow::Borrowed(n), Cow::Borrowed(v)))));
    let mut x = Exchange {
        conn,
        id: begun.id,
        stdin_done: false,
        aborted: false,
        broken: None,
        cur: None,
        body_bytes: 0,
    };
    let outcome = match parsed {
        Ok(()) => {
            let mut prefix = Vec::new();
            x.prefix(&mut prefix)?;
            let complete = x.stdin_done;
            app.handle(begun.id, &mut list, &prefix, complete, &mut x)
        }
        Err(e) => {
            crate::warn!("request {}: {e}; answering 400", begun.id);
            Outcome::Failed(400)
        }
    };
    // Room for far more params than servers send (10,000 make 480 KiB) is
    // not kept for the life of the process.
    x.conn.list = if list.capacity() > 256 {
        Vec::with_capacity(48)
    } else {
        relabel(list)
    };
    if let Some(e) = x.broken.take() {
        // Nothing more can be said on this connection.
        return Err(e);
    }
    if let (Some(page), false) = (outcome.page(), x.aborted) {
        record::push_stdout(&mut x.conn.out, begun.id, &page);
    }
    if x.aborted {
        // One END_REQUEST, no more output (Go's responder sends it twice).
        record::push_end_request(&mut x.conn.out, begun.id, 0, record::REQUEST_COMPLETE);
    } else {
        record::push_end(&mut x.conn.out, begun.id, 0, record::REQUEST_COMPLETE);
    }
    x.conn.send()?;
    // The response is out: now what the first read peeked at may leave the
    // socket (see `fill`), so that a kept connection polls as it really is.
    if x.conn.peeked > 0 {
        x.conn.consume_peeked()?;
    }
    // Read the rest of an unread body so that close() does not RST, and so
    // that a kept connection stays in step.
    let until = Instant::now() + DRAIN_LIMIT;
    while !x.stdin_done && !x.aborted && Instant::now() < until {
        if let Some((_, end, rec_end)) = x.cur {
            x.advance(end, end, rec_end);
        }
        x.conn.io_timeout = DRAIN_LIMIT;
        if !x.next_stdin()? {
            break;
        }
    }
    let drained = x.stdin_done || x.aborted;
    x.conn.io_timeout = app.io_timeout();
    Ok(begun.keep && drained)
}

/// FCGI_WEB_SERVER_ADDRS: the TCP peers allowed to connect (FastCGI spec
/// 3.2). Unset: everyone. Unix-socket peers are always allowed: the socket
/// file's permissions are their access control.
pub(crate) fn web_server_addrs() -> Option<Vec<Net>> {
    let v = std::env::var("FCGI_WEB_SERVER_ADDRS").ok()?;
    let (list, invalid) = parse_web_server_addrs(&v);
    for a in invalid {
        crate::warn!("FCGI_WEB_SERVER_ADDRS: `{a}` is not an address; ignored");
    }
    Some(list)
}

/// A comma-separated FCGI_WEB_SERVER_ADDRS value: the addresses and CIDR
/// blocks, and the (non-empty) entries that are neither.
pub(crate) fn parse_web_server_addrs(value: &str) -> (Vec<Net>, Vec<&str>) {
    let mut invalid = Vec::new();
    let list = value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .filter_map(|a| {
            let n = Net::parse(a);
            if n.is_none() {
                invalid.push(a);
            }
            n
        })
        .collect();
    (list, invalid)
}

pub(crate) fn allowed(list: &Option<Vec<Net>>, peer: Option<IpAddr>) -> bool {
    match (list, peer) {
        (Some(list), Some(ip)) => list.iter().any(|n| n.contains(ip)),
        _ => true,
    }
}

/// Serves connections from `listener` until a stop signal or idle_timeout.
/// Returns the exit code.
pub fn serve(app: &mut App, listener: RawFd, mut first: Option<OwnedFd>) -> i32 {
    // Non-blocking so that a connection another process took between poll
    // and accept (spawn-fcgi -F, prefork) cannot block us.
    if let Err(e) = sys::set_nonblocking(listener, true) {
        crate::error!("cannot use the listening socket on fd {listener}: {e}");
        return 1;
    }
    let addrs = web_server_addrs();
    let mut params = Vec::new();
    let mut conn_bufs = Conn::new();
    let mut last_request = Instant::now();
    let mut served: u64 = 0;
    // Accept before waiting, or wait first: each is a wasted system call
    // when it guesses wrong. Under back-to-back load the next connection is
    // already queued; at a lower rate it is not. The last wait tells.
    let mut queued = false;
    app.ensure_worker();
    loop {
        if app.process_max_requests > 0 && served >= app.process_max_requests {
            crate::info!(
                "served {served} requests (maxrequests); exiting so that a fresh process takes over"
            );
            // The supervisor and the other children hold the listening
            // socket too: what is queued stays queued for them.
            app.shutdown();
            return 0;
        }
        if signals::stop_requested().is_some() {
            break;
        }
        let conn = match first.take() {
            Some(fd) => fd,
            None => {
                if !queued {
                    let began = Instant::now();
                    if idle(app, listener, &mut last_request) {
                        break;
                    }
                    queued = began.elapsed() < BACK_TO_BACK;
                }
                match sys::accept(listener) {
                    Ok((fd, peer)) => {
                        if !allowed(&addrs, peer) {
                            let ip = peer.map(|p| p.to_string()).unwrap_or_default();
                            crate::warn!(
                                "refused a connection from {ip}: not in FCGI_WEB_SERVER_ADDRS"
                            );
                            continue;
                        }
                        fd
                    }
                    Err(e) => {
                        queued = false;
                        match e.raw_os_error() {
                            Some(
                                libc::EAGAIN | libc::EINTR | libc::ECONNABORTED | libc::EPROTO,
                            ) => {}
                            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                                crate::error!("accept: {e}; retrying");
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            _ => {
                                crate::error!("accept on fd {listener} failed: {e}; exiting");
                                break;
                            }
                        }
                        continue;
                    }
                }
            }
        };
        if let Some(busy) = app.on_busy {
            busy(true);
        }
        if let Some(conn) = reload_if_changed(app, conn) {
            // A connection found queued comes from a web server that is
            // awake: taking its bytes wakes no one, and peeking would only
            // cost a read more.
            conn_bufs.attach(conn, app.io_timeout(), !queued);
            serve_conn(app, &mut conn_bufs, listener, &mut params);
            conn_bufs.close();
        }
        if let Some(busy) = app.on_busy {
            busy(false);
        }
        served += 1;
        last_request = Instant::now();
        // One huge request (4 MiB of headers) must not keep its memory for
        // the life of the process.
        if params.capacity() > 256 << 10 {
            params = Vec::new();
        }
    }
    if let Some(sig) = signals::stop_requested() {
        crate::info!("{} received: stopping", sys::signal_name(sig));
    }
    // Exiting with connections in the listen queue would reset them: the
    // web server sent those requests to this process, so it serves them
    // first (FIELD_NOTES, "Lifecycle and reload"). After a stop signal only
    // within its grace; the next connection may then find no one, as with
    // any server that stops.
    serve_queued(listener, |conn, peer| {
        if allowed(&addrs, peer) {
            crate::info!("serving a request that was queued before the exit");
            conn_bufs.attach(conn, app.io_timeout(), false);
            serve_conn(app, &mut conn_bufs, listener, &mut params);
            conn_bufs.close();
        }
    });
    app.shutdown();
    0
}

/// Hands `serve` the connections already in `listener`'s queue, within a
/// stop's grace: a process that exits with connections queued resets them.
pub(crate) fn serve_queued(listener: RawFd, mut serve: impl FnMut(OwnedFd, Option<IpAddr>)) {
    let until = Instant::now() + signals::GRACE;
    while !signals::grace_over() && Instant::now() < until {
        let Ok((conn, peer)) = sys::accept(listener) else {
            break;
        };
        serve(conn, peer);
    }
}

/// Waits (at most a second) for a connection, logging the idle worker's
/// output and checking for reloads. True when it is time to exit.
fn idle(app: &mut App, listener: RawFd, last_request: &mut Instant) -> bool {
    let worker = app.idle_fds();
    let fds = match worker {
        Some([from, log]) => &[
            (listener, libc::POLLIN),
            (from, libc::POLLIN),
            (log, libc::POLLIN),
        ][..],
        None => &[(listener, libc::POLLIN)][..],
    };
    let woken = match signals::wait(fds, Some(Instant::now() + Duration::from_secs(1))) {
        Ok(w) => w,
        Err(e) => {
            crate::error!("poll: {e}");
            std::thread::sleep(Duration::from_millis(100));
            return false;
        }
    };
    if woken.signalled {
        return true;
    }
    if woken.ready(1) || woken.ready(2) {
        app.idle_event();
    }
    if woken.ready(0) {
        return false;
    }
    app.tick();
    match app.changed() {
        Change::None => {}
        Change::Restart => {
            app.restart("a watched file changed");
            app.ensure_worker();
        }
        Change::Reexec => reexec(app, None),
    }
    let idle_timeout = app.site().map_or(Duration::ZERO, |s| s.limits.idle_timeout);
    if !idle_timeout.is_zero() && last_request.elapsed() >= idle_timeout {
        crate::info!(
            "no request for {} s (idle_timeout); exiting",
            idle_timeout.as_secs()
        );
        return true;
    }
    false
}

/// Checks for a change before serving `conn`. A replaced executable is
/// exec'ed with the connection handed over, so that it is served by the new
/// code and never lost.
fn reload_if_changed(app: &mut App, conn: OwnedFd) -> Option<OwnedFd> {
    match app.changed() {
        Change::None => Some(conn),
        Change::Restart => {
            app.restart("mysite.fcgi or site.toml changed");
            Some(conn)
        }
        Change::Reexec => {
            reexec(app, Some(&conn));
            Some(conn)
        }
    }
}

fn serve_conn(app: &mut App, conn: &mut Conn, listener: RawFd, params: &mut Vec<u8>) {
    loop {
        match serve_request(conn, app, params) {
            Ok(true) => {}
            Ok(false) => return,
            Err(ConnError::Closed) => return,
            Err(e) => {
                crate::warn!("connection dropped: {e}");
                return;
            }
        }
        if signals::stop_requested().is_some() {
            return;
        }
        // KEEP_CONN (nginx fastcgi_keep_conn): wait for the next request on
        // this connection, but a single-request process must not sit on an
        // idle connection while another waits in the listen queue.
        if conn.start == conn.end {
            let fds = [(conn.raw(), libc::POLLIN), (listener, libc::POLLIN)];
            match signals::wait(&fds, conn.deadline()) {
                Ok(w) if w.ready(0) => {}
                _ => return,
            }
        }
        if app.changed() != Change::None {
            // Close the kept connection; the next one is served after the reload.
            app.restart("mysite.fcgi or site.toml changed");
            return;
        }
    }
}

/// Replaces this process with the (new) executable, keeping fd 0 and
/// handing over `conn`. Queued connections wait in the listen queue and are
/// served by the new image (FIELD_NOTES: exiting would lose them). Returns
/// only if exec failed, after falling back to a worker restart.
fn reexec(app: &mut App, conn: Option<&OwnedFd>) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    crate::info!("{} was replaced; re-executing it", app.script.display());
    app.shutdown();
    let argv: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let Ok(path) = CString::new(app.script.as_os_str().as_bytes()) else {
        return;
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    if let Some(c) = conn {
        // Dropped results: if these fail, exec still runs and the new image
        // simply does not find the connection (it is closed on exec).
        let _ = sys::set_cloexec(c.as_raw_fd(), false);
        // SAFETY: single-threaded here; no other thread reads the environment.
        unsafe { std::env::set_var(REEXEC_ENV, c.as_raw_fd().to_string()) };
    }
    // SAFETY: path and every argv entry are NUL-terminated and outlive the
    // call; ptrs is NULL-terminated.
    unsafe { libc::execv(path.as_ptr(), ptrs.as_ptr()) };
    let e = io::Error::last_os_error();
    crate::error!(
        "cannot re-execute {}: {e}; restarting the python worker with the running binary",
        app.script.display()
    );
    if let Some(c) = conn {
        let _ = sys::set_cloexec(c.as_raw_fd(), true); // best effort, as above
        // SAFETY: as above.
        unsafe { std::env::remove_var(REEXEC_ENV) };
    }
    app.restart("re-exec failed");
}

/// The connection handed over by a previous image, if any.
pub fn inherited_conn() -> Option<OwnedFd> {
    let v = std::env::var(REEXEC_ENV).ok()?;
    // SAFETY: single-threaded at start; nothing else reads the environment.
    unsafe { std::env::remove_var(REEXEC_ENV) };
    let fd: RawFd = v.parse().ok().filter(|&fd| fd > 2)?;
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on an fd number has no memory effects beyond st.
    if unsafe { libc::fstat(fd, &mut st) } < 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    let _ = sys::set_cloexec(fd, true); // best effort: it must not reach Python
    // SAFETY: the previous image passed us this descriptor and no one else
    // owns it in this image.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}
