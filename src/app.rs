//! The site as a running thing: its config, its worker, and reloads.
//!
//! Lifecycle, beside the data path: the transports ask [`App::handle`] to
//! serve a request; this module makes sure a worker is there to take it,
//! and between requests notices when mysite.fcgi or site.toml changed.
//!
//! Failure never becomes a crash loop (mod_fcgid punishes quick exits with
//! 503s): a bad config or an app that fails to import leaves the process up,
//! answering 500 and logging the reason once, until a watched file changes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::affinity::Pair;
use crate::bridge::{self, Fate, Outcome, Port, Summary, Transport};
use crate::config::{self, Site};
use crate::environ::{self, Param};
use crate::sys::{self, Stamp};
use crate::watch::Gate;
use crate::worker::Worker;

/// The buffers a request is prepared in. [`App`] keeps them from request
/// to request, so that preparing one allocates nothing once they have grown.
#[derive(Default)]
pub struct Buffers {
    frame: Vec<u8>,
    method: Vec<u8>,
    uri: Vec<u8>,
}

/// A request ready for a worker: the `R` frame and what the relay and the
/// log need to know about it.
pub struct Prepared {
    pub id: u16,
    bufs: Buffers,
    /// May this client see a traceback (site.toml debug + debug_allow)?
    debug_client: bool,
    pub limits: config::Limits,
    /// Body bytes already in the frame.
    body_prefix: u64,
}

impl Prepared {
    /// The whole `R` frame.
    pub fn frame(&self) -> &[u8] {
        &self.bufs.frame
    }

    fn summary(&self) -> Summary<'_> {
        Summary {
            method: &self.bufs.method,
            uri: &self.bufs.uri,
        }
    }

    /// One log line for the request and how it ended (runfcgi debug=true).
    pub fn log_outcome(&self, outcome: &Outcome) {
        let how = match outcome {
            Outcome::Complete => "answered".to_owned(),
            Outcome::Cut => "cut short".to_owned(),
            Outcome::Failed(s) => format!("answered {s} by the shim"),
            Outcome::AppFailed(_) | Outcome::Page(_) => "answered 500: the app failed".to_owned(),
        };
        crate::info!("request {}: {how}", self.summary());
    }

    /// Relays the request through `port`, with the site's request_timeout.
    pub fn relay(&self, port: &mut dyn Port, t: &mut dyn Transport) -> (Outcome, Fate) {
        let timeout = self.limits.request_timeout;
        let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
        let limit = bridge::BodyLimit {
            max_body: self.limits.max_body,
            seen: self.body_prefix,
        };
        let what = self.summary();
        let (outcome, fate) = bridge::relay(port, self.frame(), self.id, t, deadline, &what, limit);
        let outcome = match outcome {
            Outcome::AppFailed(tb) if self.debug_client => Outcome::Page(bridge::debug_page(&tb)),
            other => other,
        };
        (outcome, fate)
    }

    /// Gives the buffers back for the next request.
    pub fn into_buffers(self) -> Buffers {
        self.bufs
    }
}

/// Repairs the params (`environ.rs`), applies max_body, and encodes the
/// request frame in `bufs`. Err: the request is answered without the app.
pub fn prepare_request(
    site: Option<&Site>,
    id: u16,
    params: &mut Vec<Param<'_>>,
    body: &[u8],
    body_complete: bool,
    mut bufs: Buffers,
) -> Result<Prepared, Outcome> {
    let prep = environ::prepare(params, site);
    // The last of duplicate params wins, as in environ.rs and the worker.
    let find = |name: &[u8]| {
        params
            .iter()
            .rev()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    };
    // Tracebacks reach a browser only when site.toml says debug = true
    // and lists the client's address in debug_allow (default: nobody).
    let debug_client = site.is_some_and(|s| {
        s.debug
            && find(b"REMOTE_ADDR")
                .and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|a| a.parse().ok())
                .is_some_and(|ip| s.debug_allow.iter().any(|n| n.contains(ip)))
    });
    let limits = site.map(|s| s.limits).unwrap_or_default();
    bufs.method.clear();
    bufs.method
        .extend_from_slice(find(b"REQUEST_METHOD").unwrap_or(b""));
    bufs.uri.clear();
    match find(b"REQUEST_URI") {
        Some(uri) => bufs.uri.extend_from_slice(uri),
        // Not every server sends REQUEST_URI: the log still names the page.
        None => {
            for name in [&b"SCRIPT_NAME"[..], b"PATH_INFO"] {
                bufs.uri.extend_from_slice(find(name).unwrap_or(b""));
            }
            if let Some(q) = find(b"QUERY_STRING").filter(|q| !q.is_empty()) {
                bufs.uri.push(b'?');
                bufs.uri.extend_from_slice(q);
            }
        }
    }
    // CONTENT_LENGTH tells in advance; without a usable one, the bytes
    // already here may, and the relay counts the rest.
    let known = prep.content_length.unwrap_or(0).max(body.len() as u64);
    if limits.max_body > 0 && known > limits.max_body {
        let what = Summary {
            method: &bufs.method,
            uri: &bufs.uri,
        };
        let size = match prep.content_length {
            Some(n) if n >= body.len() as u64 => format!("{n} bytes"),
            _ => format!("at least {known} bytes"),
        };
        crate::warn!(
            "request {what}: body of {size} is over max_body ({}); answering 413",
            limits.max_body
        );
        return Err(Outcome::Failed(413));
    }
    environ::request_frame(&mut bufs.frame, id, params, &prep, body, body_complete);
    Ok(Prepared {
        id,
        bufs,
        debug_client,
        limits,
        body_prefix: body.len() as u64,
    })
}

/// What serves the requests of a FastCGI connection: the [`App`] one at a
/// time, or a thread of `threaded.rs`.
pub trait Handler {
    fn handle(
        &mut self,
        id: u16,
        params: &mut Vec<Param<'_>>,
        body: &[u8],
        body_complete: bool,
        t: &mut dyn Transport,
    ) -> Outcome;
    /// How long the web server may stay silent mid-request.
    fn io_timeout(&self) -> Duration;
}

impl Handler for App {
    fn handle(
        &mut self,
        id: u16,
        params: &mut Vec<Param<'_>>,
        body: &[u8],
        body_complete: bool,
        t: &mut dyn Transport,
    ) -> Outcome {
        App::handle(self, id, params, body, body_complete, t)
    }
    fn io_timeout(&self) -> Duration {
        self.site()
            .map_or(config::Limits::default().io_timeout, |s| {
                s.limits.io_timeout
            })
    }
}

/// The files whose change reloads the site, beside the executable:
/// site.toml and its `watch` list.
fn watched_files(site_file: &Path, site: Option<&Site>) -> Vec<PathBuf> {
    let mut files = vec![site_file.to_path_buf()];
    if let Some(site) = site {
        files.extend(site.watch.iter().cloned());
    }
    files
}

/// What the reload check watches ([`Gate`]): [`watched_files`] and the
/// executable.
pub fn reload_paths(script: &Path, site_file: &Path, site: Option<&Site>) -> Vec<PathBuf> {
    let mut paths = watched_files(site_file, site);
    paths.push(script.to_path_buf());
    paths
}

/// What a watched-file check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// Restart the worker (site.toml or the app changed, or a touch).
    Restart,
    /// The executable itself was replaced: exec the new one.
    Reexec,
}

pub struct App {
    /// The executable as invoked (argv[0] or SCRIPT_FILENAME), absolute.
    pub script: PathBuf,
    pub site_file: PathBuf,
    pub site: Result<Site, config::Error>,
    worker: Option<Worker>,
    /// Why the app is not available, while it is not; logged once.
    broken: Option<String>,
    run_once: bool,
    stamps: Vec<(PathBuf, Option<Stamp>)>,
    script_stamp: Option<Stamp>,
    /// Tells [`Self::changed`] when the stamps need comparing at all.
    gate: Gate,
    /// May this process exec a replaced binary? Not in a runfcgi prefork
    /// child: its supervisor re-executes itself instead.
    pub reexec_allowed: bool,
    /// Serve this many requests, then return from `fastcgi::serve` (runfcgi
    /// maxrequests); 0 = no limit.
    pub process_max_requests: u64,
    /// Requests the worker runs at once in threads (runfcgi
    /// method=threaded); 1 otherwise.
    pub threads: usize,
    /// Told when this process takes a connection (true) and is idle again
    /// (false): how a runfcgi prefork child reports to its supervisor.
    pub on_busy: Option<fn(bool)>,
    /// Log one line per request with its status (runfcgi debug=true).
    pub log_requests: bool,
    /// Kept for the next request's [`prepare_request`].
    bufs: Option<Buffers>,
    /// The shim and its worker on one CPU (site.toml `pin_cpu`).
    pair: Pair,
}

impl App {
    pub fn new(script: PathBuf, run_once: bool) -> App {
        let site_file = config::locate(&script);
        // Before the load: an edit while it loads must count as a change.
        let site_stamp = sys::stamp(&site_file);
        let site = config::load(&site_file);
        let mut app = App {
            script_stamp: None,
            script,
            site_file,
            site,
            worker: None,
            broken: None,
            run_once,
            stamps: Vec::new(),
            gate: Gate::never(),
            reexec_allowed: true,
            process_max_requests: 0,
            threads: 1,
            on_busy: None,
            log_requests: false,
            bufs: None,
            // One request under CGI: nothing to gain.
            pair: Pair::new(!run_once),
        };
        app.apply_site();
        app.watch_and_stamp(site_stamp);
        app.script_stamp = sys::stamp(&app.script);
        app
    }

    /// Places the watches, then stamps the watched files: in that order, so
    /// that a change in between is an event (watch.rs). site.toml keeps
    /// `site_stamp`, taken before it was loaded, so that an edit during the
    /// load is a change at the next check. The executable's stamp is kept:
    /// [`Self::changed`] moves it, and a reload must not forget a
    /// replacement seen only by the stamp.
    fn watch_and_stamp(&mut self, site_stamp: Option<Stamp>) {
        if !self.run_once {
            let paths = reload_paths(&self.script, &self.site_file, self.site());
            self.gate.arm(paths);
        }
        self.stamps = self
            .watched()
            .into_iter()
            .map(|p| {
                let s = if p == self.site_file {
                    site_stamp
                } else {
                    sys::stamp(&p)
                };
                (p, s)
            })
            .collect();
    }

    /// Acts on a freshly loaded config: log file, and the error if any.
    fn apply_site(&mut self) {
        match &self.site {
            Ok(site) => {
                if let Err(e) = crate::log::set_file(site.log_file.as_deref()) {
                    let path = site
                        .log_file
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                        .to_string();
                    crate::error!("cannot open log_file {path}: {e}; logging to stderr only");
                }
                self.broken = None;
            }
            Err(e) => {
                crate::error!("{e}");
                self.broken = Some(e.to_string());
            }
        }
    }

    fn watched(&self) -> Vec<PathBuf> {
        watched_files(&self.site_file, self.site())
    }

    /// The site, if its config loaded.
    pub fn site(&self) -> Option<&Site> {
        self.site.as_ref().ok()
    }

    /// Starts the worker unless it runs or the app is known broken.
    pub fn ensure_worker(&mut self) -> Option<&mut Worker> {
        if self.worker.is_none() && self.broken.is_none() {
            let site = self.site.as_ref().ok()?;
            let began = Instant::now();
            match Worker::start(site, self.run_once, self.threads) {
                Ok(w) if self.run_once => self.worker = Some(w),
                Ok(w) => {
                    crate::info!(
                        "python worker {} ready: python {}, app imported in {} ms (started in {} ms)",
                        w.pid,
                        w.ready.python,
                        w.ready.import_ms,
                        began.elapsed().as_millis()
                    );
                    self.worker = Some(w);
                }
                Err(e) => {
                    crate::worker::log_traceback(&e);
                    let msg = crate::worker::load_error(site, &e);
                    if self.run_once {
                        crate::error!("{msg}; answering 500");
                    } else {
                        crate::error!(
                            "{msg}; answering 500 until mysite.fcgi or site.toml changes"
                        );
                    }
                    self.broken = Some(msg);
                }
            }
        }
        self.worker.as_mut()
    }

    /// Hands the running worker over (to `threaded.rs`).
    pub fn take_worker(&mut self) -> Option<Worker> {
        self.worker.take()
    }

    /// Why the app cannot serve, if it cannot.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Relays `req` on the worker, started if need be and placed on the
    /// shim's CPU when site.toml has `pin_cpu`. None: no worker would start.
    fn relay_on_worker(
        &mut self,
        req: &Prepared,
        t: &mut dyn Transport,
    ) -> Option<(Outcome, Fate)> {
        let pin = self.site().is_some_and(|s| s.pin_cpu);
        let pid = self.ensure_worker()?.pid;
        if pin {
            self.pair.place(pid);
        }
        let w = self.worker.as_mut().expect("ensure_worker returned it");
        w.same_cpu = self.pair.holds(pid);
        Some(req.relay(w, t))
    }

    /// Serves one request. Returns how it ended, for the transport to
    /// finish (error page, or end of response).
    pub fn handle(
        &mut self,
        id: u16,
        params: &mut Vec<Param<'_>>,
        body: &[u8],
        body_complete: bool,
        t: &mut dyn Transport,
    ) -> Outcome {
        let bufs = self.bufs.take().unwrap_or_default();
        let req = match prepare_request(self.site(), id, params, body, body_complete, bufs) {
            Ok(req) => req,
            Err(outcome) => return outcome,
        };
        let Some((mut outcome, mut fate)) = self.relay_on_worker(&req, t) else {
            return Outcome::Failed(500);
        };
        if fate == Fate::Refused {
            // The worker died while idle, and the request never reached it:
            // it goes to a new worker (once), so that no request is lost.
            if let Some(w) = self.worker.take() {
                let pid = w.pid;
                let how = w.kill();
                crate::error!("python worker {pid} {how} while idle; starting a new one");
            }
            (outcome, fate) = self
                .relay_on_worker(&req, t)
                .unwrap_or((Outcome::Failed(500), Fate::Keep));
            if fate == Fate::Refused {
                crate::error!(
                    "request {}: the new python worker is gone too; answering 502",
                    req.summary()
                );
                fate = Fate::Gone;
            }
        }
        if self.log_requests {
            req.log_outcome(&outcome);
        }
        self.pair.review();
        let limits = req.limits;
        let mut bufs = req.into_buffers();
        // One huge request must not keep its memory for the life of the
        // process (a frame is a few KiB, and at most 64 KiB of body).
        if bufs.frame.capacity() > 128 << 10 {
            bufs = Buffers::default();
        }
        self.bufs = Some(bufs);
        match fate {
            Fate::Gone | Fate::Refused => {
                if let Some(w) = self.worker.take() {
                    let pid = w.pid;
                    let how = w.kill();
                    let next = if crate::signals::stop_requested().is_some() {
                        "stopping"
                    } else {
                        "the next request starts a new one"
                    };
                    crate::error!("python worker {pid} {how}; {next}");
                }
            }
            Fate::Exiting => {
                if let Some(w) = self.worker.take() {
                    crate::info!(
                        "python worker {} is exiting (the app called sys.exit()); \
                         the next request starts a new one",
                        w.pid
                    );
                    w.stop(Duration::from_secs(2));
                }
            }
            Fate::Keep => {
                if let Some(w) = self.worker.as_mut() {
                    w.served += 1;
                    self.recycle_if_due(&limits);
                }
            }
        }
        outcome
    }

    /// Ends the worker after max_requests or past max_rss; the next request
    /// starts a fresh one. Between requests, so no request fails.
    fn recycle_if_due(&mut self, limits: &config::Limits) {
        let Some(w) = self.worker.as_ref() else {
            return;
        };
        let reason = if limits.max_requests > 0 && w.served >= limits.max_requests {
            Some(format!("served max_requests ({})", limits.max_requests))
        } else if limits.max_rss > 0 {
            w.rss().filter(|&rss| rss > limits.max_rss).map(|rss| {
                format!(
                    "uses {} MiB, over max_rss ({} MiB)",
                    rss >> 20,
                    limits.max_rss >> 20
                )
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            let w = self.worker.take().expect("checked above");
            crate::info!("recycling python worker {}: {reason}", w.pid);
            w.stop(Duration::from_secs(2));
        }
    }

    /// Checks the watched files for a change (any change: a restored backup
    /// with an older mtime counts, FIELD_NOTES "Lifecycle and reload").
    /// Stats only when the [`Gate`] saw an event that may have changed a
    /// stamp (or cannot watch these paths).
    pub fn changed(&mut self) -> Change {
        if !self.gate.must_check() {
            return Change::None;
        }
        let script_now = sys::stamp(&self.script);
        let script_changed = script_now != self.script_stamp;
        let mut files_changed = false;
        for (path, stamp) in &mut self.stamps {
            let now = sys::stamp(path);
            if now != *stamp {
                *stamp = now;
                files_changed = true;
            }
        }
        if !script_changed && !files_changed {
            return Change::None;
        }
        let replaced = match (script_now, self.script_stamp) {
            (Some(a), Some(b)) => (a.dev, a.ino) != (b.dev, b.ino),
            _ => false,
        };
        self.script_stamp = script_now;
        if replaced && self.reexec_allowed {
            Change::Reexec
        } else {
            Change::Restart
        }
    }

    /// Reloads site.toml and drops the worker, so that the next request (or
    /// [`Self::ensure_worker`]) runs the new code. A site.toml that no longer
    /// parses keeps the last good config running.
    pub fn restart(&mut self, why: &str) {
        crate::info!("reloading: {why}");
        let site_stamp = sys::stamp(&self.site_file);
        match config::load(&self.site_file) {
            Ok(site) => {
                self.site = Ok(site);
                self.apply_site();
            }
            Err(e) if self.site.is_ok() => {
                crate::error!("{e}; keeping the last good config");
            }
            Err(e) => {
                self.site = Err(e);
                self.apply_site();
            }
        }
        if self.site.is_ok() {
            self.broken = None;
        }
        self.watch_and_stamp(site_stamp);
        if let Some(w) = self.worker.take() {
            w.stop(Duration::from_secs(1));
        }
    }

    /// Ends the worker for good (exit or exec).
    pub fn shutdown(&mut self) {
        if let Some(w) = self.worker.take() {
            w.stop(Duration::from_secs(1));
        }
    }

    /// While idle: the worker's descriptors (log output, death).
    pub fn idle_fds(&self) -> Option<[std::os::fd::RawFd; 2]> {
        self.worker.as_ref().map(Worker::idle_fds)
    }

    /// Once a second while idle.
    pub fn tick(&mut self) {
        self.pair.review();
    }

    /// Called when an idle worker's descriptors woke us: log its output, and
    /// notice if it died.
    pub fn idle_event(&mut self) {
        let Some(w) = self.worker.as_mut() else {
            return;
        };
        w.poll_log();
        let mut probe = [0u8; 1];
        let from = w.idle_fds()[0];
        // The frame pipe is readable while idle only at EOF (or if the
        // worker misbehaves): either way this worker is done.
        // EAGAIN means it only printed something.
        if sys::read(from, &mut probe).is_ok() {
            let w = self.worker.take().expect("checked above");
            let pid = w.pid;
            let how = w.kill();
            crate::error!(
                "python worker {pid} {how} while idle; the next request starts a new one"
            );
        }
    }
}
