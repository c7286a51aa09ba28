//! The bridge: carries one request to the Python worker and the response
//! back, whatever the transport.
//!
//! Middle of the data path. A transport (FastCGI or CGI) hands over the
//! request frame and implements [`Transport`] for the body and the
//! response; the relay streams both ways (the body only when the app asks
//! for it, so it is never held whole) and decides what the client sees when
//! something fails: before any output, a fixed error page; after, the
//! response just ends (wsgiref's rule).

use std::time::Instant;

use crate::frame;
use crate::signals;
use crate::worker::{Event, Worker};

/// One request's view of a Python worker: the whole worker when it serves
/// one request at a time, or a share of a threaded one (`threaded.rs`).
pub trait Port {
    fn pid(&self) -> libc::pid_t;
    /// Writes all of `parts` as one frame's bytes; Ok(false) on timeout.
    fn send(&mut self, parts: &[&[u8]], deadline: Option<Instant>) -> std::io::Result<bool>;
    /// True when the next frame is already at hand.
    fn has_frame(&self) -> bool;
    fn next(&mut self, deadline: Option<Instant>) -> std::io::Result<Event>;
    fn payload(&self, h: frame::Header) -> &[u8];
    fn consume(&mut self, h: frame::Header);

    fn send_frame(
        &mut self,
        kind: u8,
        id: u16,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> std::io::Result<bool> {
        let len = parts.iter().map(|p| p.len()).sum();
        let h = frame::header(kind, id, len);
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&h);
        all.extend_from_slice(parts);
        self.send(&all, deadline)
    }
}

impl Port for Worker {
    fn pid(&self) -> libc::pid_t {
        self.pid
    }
    fn send(&mut self, parts: &[&[u8]], deadline: Option<Instant>) -> std::io::Result<bool> {
        Worker::send(self, parts, deadline)
    }
    fn has_frame(&self) -> bool {
        Worker::has_frame(self)
    }
    fn next(&mut self, deadline: Option<Instant>) -> std::io::Result<Event> {
        Worker::next(self, deadline)
    }
    fn payload(&self, h: frame::Header) -> &[u8] {
        Worker::payload(self, h)
    }
    fn consume(&mut self, h: frame::Header) {
        Worker::consume(self, h)
    }
}

/// The client went away (or the web server aborted the request): stop
/// relaying, but let the app finish.
#[derive(Debug)]
pub struct Gone;

pub trait Transport {
    /// Up to `max` more body bytes; empty at the end of the body.
    fn body(&mut self, max: usize) -> Result<&[u8], Gone>;
    /// Response bytes (the CGI header block, then the body). May buffer.
    fn output(&mut self, data: &[u8]) -> Result<(), Gone>;
    /// Sends what `output` buffered.
    fn flush(&mut self) -> Result<(), Gone>;
}

/// How a relayed request ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The response went out as the app made it.
    Complete,
    /// Nothing was sent: the transport sends the error page for this status.
    Failed(u16),
    /// Output had started when something failed: end the response as is.
    Cut,
    /// The app failed before any output; its traceback, for a debug page.
    AppFailed(String),
    /// Send this complete response instead (a debug page).
    Page(Vec<u8>),
}

impl Outcome {
    /// The response a transport sends itself, if the app's did not go out.
    pub fn page(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            Outcome::Failed(status) => Some(error_page(*status).into()),
            Outcome::AppFailed(_) => Some(error_page(500).into()),
            Outcome::Page(bytes) => Some(bytes.as_slice().into()),
            Outcome::Complete | Outcome::Cut => None,
        }
    }
}

/// Whether the worker can serve another request.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    Keep,
    /// It was gone before it took the request (it died while idle: the OOM
    /// killer, a thread of the app calling os._exit): nothing of the request
    /// ran, so it may go to a new worker.
    Refused,
    /// It finished the request and is exiting on its own (sys.exit()).
    Exiting,
    /// Dead or killed; how it ended is in the log.
    Gone,
}

/// Context for log lines about one request.
pub struct Summary<'a> {
    pub method: &'a [u8],
    pub uri: &'a [u8],
}

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uri = String::from_utf8_lossy(self.uri);
        let uri: String = uri.chars().take(200).collect();
        write!(
            f,
            "{} {}",
            String::from_utf8_lossy(self.method),
            uri.escape_debug()
        )
    }
}

/// max_body, for bodies whose CONTENT_LENGTH did not tell in advance.
#[derive(Clone, Copy, Debug, Default)]
pub struct BodyLimit {
    /// Most body bytes the app may read; 0 = no limit.
    pub max_body: u64,
    /// Bytes already sent in the request frame.
    pub seen: u64,
}

/// Largest body chunk handed to the worker per `G`.
const MAX_INPUT_CHUNK: usize = 256 << 10;

/// Sends `request` (a whole `R` frame) to the worker and relays until the
/// app is done. `deadline` is the request timeout.
pub fn relay(
    w: &mut dyn Port,
    request: &[u8],
    id: u16,
    t: &mut dyn Transport,
    deadline: Option<Instant>,
    what: &Summary<'_>,
    body: BodyLimit,
) -> (Outcome, Fate) {
    let BodyLimit { max_body, mut seen } = body;
    let mut over_limit = false;
    let pid = w.pid();
    let mut started = false;
    let mut gone = false;
    let mut input_ended = false;
    let fail = |started: bool, status: u16| {
        if started {
            Outcome::Cut
        } else {
            Outcome::Failed(status)
        }
    };

    match w.send(&[request], deadline) {
        Ok(true) => {}
        Ok(false) => {
            crate::error!(
                "request {what}: python worker {pid} did not take the request in time; killing it"
            );
            return (Outcome::Failed(503), Fate::Gone);
        }
        // EPIPE: no process reads the pipe; nothing of the request was read.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return (Outcome::Failed(502), Fate::Refused);
        }
        Err(e) => {
            crate::error!("request {what}: python worker {pid} is gone ({e}); answering 502");
            return (Outcome::Failed(502), Fate::Gone);
        }
    }
    loop {
        if !w.has_frame() && started && !gone && t.flush().is_err() {
            gone = true;
        }
        let event = match w.next(deadline) {
            Ok(e) => e,
            Err(e) => {
                crate::error!(
                    "request {what}: python worker {pid} broke the protocol ({e}); killing it"
                );
                return (fail(started, 502), Fate::Gone);
            }
        };
        let h = match event {
            Event::Frame(h) => h,
            Event::Signalled => continue,
            Event::Closed => {
                crate::error!(
                    "request {what}: python worker {pid} died in the middle of the request; answering 502"
                );
                return (fail(started, 502), Fate::Gone);
            }
            Event::TimedOut => {
                let status = if signals::stop_requested().is_some() {
                    crate::error!(
                        "request {what}: still running when the stop grace period ended; killing python worker {pid}"
                    );
                    503
                } else {
                    crate::error!(
                        "request {what}: no answer within the request_timeout; killing python worker {pid}"
                    );
                    504
                };
                return (fail(started, status), Fate::Gone);
            }
        };
        let payload = w.payload(h);
        match h.kind {
            frame::OUTPUT => {
                if payload.len() > frame::MAX_OUTPUT {
                    crate::error!(
                        "request {what}: python worker {pid} sent an output frame of {} bytes; killing it",
                        payload.len()
                    );
                    return (fail(started, 502), Fate::Gone);
                }
                started |= !payload.is_empty();
                if !gone && t.output(payload).is_err() {
                    gone = true;
                }
                w.consume(h);
            }
            frame::GET_INPUT => {
                let max = payload
                    .get(..4)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                w.consume(h);
                // The app may wait for the client after sending headers
                // (a progress page, 100-continue logic): send what we have.
                if started && !gone && t.flush().is_err() {
                    gone = true;
                }
                let sent = if gone || input_ended {
                    w.send_frame(frame::INPUT_END, id, &[], deadline)
                } else {
                    match t.body(max.clamp(1, MAX_INPUT_CHUNK)) {
                        Ok([]) => {
                            input_ended = true;
                            w.send_frame(frame::INPUT_END, id, &[], deadline)
                        }
                        Ok(chunk) if max_body > 0 && seen + chunk.len() as u64 > max_body => {
                            // A body without a usable CONTENT_LENGTH ran past
                            // max_body: the app gets no more of it.
                            over_limit = true;
                            input_ended = true;
                            w.send_frame(frame::INPUT_END, id, &[], deadline)
                        }
                        Ok(chunk) => {
                            seen += chunk.len() as u64;
                            w.send_frame(frame::INPUT, id, &[chunk], deadline)
                        }
                        Err(Gone) => {
                            gone = true;
                            input_ended = true;
                            w.send_frame(frame::INPUT_END, id, &[], deadline)
                        }
                    }
                };
                if !matches!(sent, Ok(true)) {
                    crate::error!("request {what}: python worker {pid} stopped reading its input");
                    return (fail(started, 502), Fate::Gone);
                }
            }
            frame::DONE => {
                let code = payload.first().copied().unwrap_or(frame::DONE_OK);
                let fate = if code & frame::DONE_EXITING != 0 {
                    Fate::Exiting
                } else {
                    Fate::Keep
                };
                let code = code & !frame::DONE_EXITING;
                let detail = String::from_utf8_lossy(payload.get(1..).unwrap_or(&[])).into_owned();
                w.consume(h);
                if gone {
                    crate::info!(
                        "request {what}: the client went away before the response was complete"
                    );
                }
                if over_limit {
                    crate::warn!(
                        "request {what}: body over max_body ({max_body} bytes); answering 413"
                    );
                    return (fail(started, 413), fate);
                }
                let outcome = match code {
                    frame::DONE_OK => Outcome::Complete,
                    frame::DONE_FAILED_BEFORE_OUTPUT if !started => Outcome::AppFailed(detail),
                    frame::DONE_FAILED_AFTER_OUTPUT => Outcome::Cut,
                    _ => {
                        crate::error!("request {what}: python worker {pid} sent done code {code}");
                        Outcome::Cut
                    }
                };
                if outcome != Outcome::Complete {
                    crate::error!("request {what}: the app failed (traceback above)");
                }
                return (outcome, fate);
            }
            other => {
                crate::error!(
                    "request {what}: python worker {pid} sent unexpected frame type {other}; killing it"
                );
                return (fail(started, 502), Fate::Gone);
            }
        }
    }
}

/// A 500 page with the app's traceback, for clients that site.toml's
/// `debug = true` and `debug_allow` name. Never sent to anyone else.
pub fn debug_page(traceback: &str) -> Vec<u8> {
    let escaped = traceback
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\n\
         <body><h1>Internal Server Error</h1>\n<p>The app raised an exception \
         (shown because site.toml has debug = true and your address is in debug_allow):</p>\n\
         <pre>{escaped}</pre></body></html>\n"
    );
    format!(
        "Status: 500 Internal Server Error\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A complete CGI-style response for an error: fixed text, never a
/// traceback or a config value (those go to the log).
pub fn error_page(status: u16) -> Vec<u8> {
    let (reason, text) = match status {
        400 => ("Bad Request", "The request could not be understood."),
        413 => (
            "Content Too Large",
            "The request body is larger than this site accepts.",
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
        _ => (
            "Internal Server Error",
            "The application could not answer this request. The details are in the site's log.",
        ),
    };
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n\
         <body><h1>{reason}</h1>\n<p>{text}</p></body></html>\n"
    );
    let mut out = format!(
        "Status: {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\n",
        body.len()
    );
    if status == 503 {
        out.push_str("Retry-After: 5\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_are_complete_cgi_responses() {
        for status in [400, 413, 500, 502, 503, 504] {
            let page = String::from_utf8(error_page(status)).expect("ascii");
            assert!(page.starts_with(&format!("Status: {status} ")), "{page}");
            let (head, body) = page.split_once("\r\n\r\n").expect("header block");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.parse().ok())
                .expect("content length");
            assert_eq!(len, body.len());
        }
    }

    #[test]
    fn summary_is_one_safe_line() {
        let s = Summary {
            method: b"GET",
            uri: b"/a\nb\xff",
        };
        assert_eq!(s.to_string(), "GET /a\\nb\u{fffd}");
    }
}
