//! Plain CGI: one request from the environment and stdin, the response to
//! stdout, then exit.
//!
//! First stage of the data path on a host with no FastCGI module (Apache
//! mod_cgi/mod_cgid). The same bridge and worker serve it, with
//! `wsgi.run_once` true. argv is ignored: Apache passes a query string
//! without '=' as arguments (CVE-2012-1823 in php-cgi).

use std::borrow::Cow;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::bridge::{Gone, Transport};
use crate::signals;
use crate::sys;

struct Stdio {
    /// Body bytes still to read (CONTENT_LENGTH; the CGI spec says the
    /// server need not send EOF after it).
    remaining: u64,
    buf: Vec<u8>,
    out: Vec<u8>,
    io_timeout: Duration,
    broken: bool,
}

impl Stdio {
    fn wait(&self, fd: i32, events: libc::c_short) -> Result<(), Gone> {
        let deadline = Some(Instant::now() + self.io_timeout);
        match signals::wait(&[(fd, events)], deadline) {
            Ok(w) if !w.timed_out => Ok(()),
            _ => Err(Gone),
        }
    }
}

impl Transport for Stdio {
    fn body(&mut self, max: usize) -> Result<&[u8], Gone> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let want = max
            .min(self.buf.len())
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        loop {
            match sys::read(0, &mut self.buf[..want]) {
                Ok(0) => {
                    self.remaining = 0;
                    return Ok(&[]);
                }
                Ok(n) => {
                    self.remaining -= n as u64;
                    return Ok(&self.buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(0, libc::POLLIN)?,
                Err(_) => return Err(Gone),
            }
        }
    }

    fn output(&mut self, data: &[u8]) -> Result<(), Gone> {
        if self.broken {
            return Err(Gone);
        }
        self.out.extend_from_slice(data);
        if self.out.len() >= 64 << 10 {
            return self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Gone> {
        let mut done = 0;
        while done < self.out.len() && !self.broken {
            match sys::write(1, &self.out[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.wait(1, libc::POLLOUT).is_err() {
                        self.broken = true;
                    }
                }
                Err(_) => self.broken = true,
            }
        }
        self.out.clear();
        if self.broken { Err(Gone) } else { Ok(()) }
    }
}

/// Serves the one request described by the environment. Returns the exit
/// code (0 whenever a response was written, even an error page: the server
/// has its answer).
pub fn serve(app: &mut App) -> i32 {
    let env: Vec<(Vec<u8>, Vec<u8>)> = std::env::vars_os()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    let mut params: Vec<_> = env
        .iter()
        .map(|(k, v)| (Cow::Borrowed(&k[..]), Cow::Borrowed(&v[..])))
        .collect();
    let content_length = env
        .iter()
        .find(|(k, _)| k == b"CONTENT_LENGTH")
        .and_then(|(_, v)| crate::environ::parse_content_length(v))
        .unwrap_or(0);
    let io_timeout = app
        .site()
        .map_or(crate::config::Limits::default().io_timeout, |s| {
            s.limits.io_timeout
        });
    let mut t = Stdio {
        remaining: content_length,
        buf: vec![0; 256 << 10],
        out: Vec::new(),
        io_timeout,
        broken: false,
    };
    let complete = content_length == 0;
    let outcome = app.handle(1, &mut params, &[], complete, &mut t);
    if let Some(page) = outcome.page() {
        t.out.clear();
        t.out.extend_from_slice(&page);
    }
    // Dropped: a server that stopped reading is not ours to report on.
    let _ = t.flush();
    app.shutdown();
    0
}
