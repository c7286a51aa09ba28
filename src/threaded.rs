//! runfcgi `method=threaded`: one process, up to N requests at once, one
//! Python interpreter running the app in threads (`wsgi.multithread` True).
//!
//! Sits where `fastcgi::serve` sits for the single-request process: N
//! threads accept connections from the same listening socket and parse
//! FastCGI with the same code (`fastcgi::serve_request`); what differs is
//! the worker, which is shared. A [`Mux`] owns it: requests get ids of their
//! own, frames to the worker are written whole under a lock, and one reader
//! thread routes the worker's frames to each request's channel. The relay
//! itself is the same `bridge::relay`, through a [`Port`] per request.
//!
//! A worker that must go (a reload, a request that timed out, max_requests)
//! is retired, not killed: new requests start a new worker, and the old one
//! is ended when its last request is done, so no request fails.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::app::{self, App, Change, Handler};
use crate::bridge::{Fate, Outcome, Port, Transport};
use crate::environ::Param;
use crate::fastcgi::{self, Conn};
use crate::frame;
use crate::log::LineBuffer;
use crate::signals;
use crate::sys;
use crate::worker::{Event, Worker};

/// Frames buffered per request before the reader waits for that request:
/// bounds memory when a client reads a large response slowly.
const QUEUE_FRAMES: usize = 64;

enum Msg {
    Frame(frame::Header, Vec<u8>),
    Closed,
}

/// A worker shared by concurrent requests.
struct Mux {
    pid: libc::pid_t,
    to: Mutex<Option<OwnedFd>>,
    routes: Mutex<HashMap<u16, SyncSender<Msg>>>,
    next_id: Mutex<u16>,
    dead: Arc<AtomicBool>,
    served: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, so a panic
    // elsewhere (none is expected: panic = "abort") cannot poison meaning.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Mux {
    fn new(w: Worker) -> io::Result<Arc<Mux>> {
        let pid = w.pid;
        let (to, from, log) = w.into_parts();
        // Threads block on these instead of polling.
        sys::set_nonblocking(to.as_raw_fd(), false)?;
        sys::set_nonblocking(from.as_raw_fd(), false)?;
        let mux = Arc::new(Mux {
            pid,
            to: Mutex::new(Some(to)),
            routes: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
            dead: Arc::new(AtomicBool::new(false)),
            served: AtomicU64::new(0),
        });
        if let Some(log) = log {
            sys::set_nonblocking(log.as_raw_fd(), false)?;
            std::thread::Builder::new()
                .name("worker-log".into())
                .spawn(move || read_log(pid, log))?;
        }
        let m = Arc::downgrade(&mux);
        let dead = mux.dead.clone();
        std::thread::Builder::new()
            .name("worker-reader".into())
            .spawn(move || read_frames(pid, from, m, dead))?;
        Ok(mux)
    }

    /// A port for one request, with an id no other open request has.
    fn open(self: &Arc<Self>) -> MuxPort {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_FRAMES);
        let mut routes = lock(&self.routes);
        let mut next = lock(&self.next_id);
        let id = loop {
            *next = next.wrapping_add(1).max(1);
            if !routes.contains_key(&*next) {
                break *next;
            }
        };
        routes.insert(id, tx);
        MuxPort {
            mux: self.clone(),
            id,
            rx,
            cur: None,
        }
    }

    /// Closes the request pipe (the worker finishes what runs, then exits),
    /// waits up to `limit`, then kills it.
    fn shutdown(&self, limit: Duration) {
        lock(&self.to).take();
        let until = Instant::now() + limit;
        while !self.dead.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !self.dead.load(Ordering::SeqCst) {
            // SAFETY: kill has no memory effects; the reader reaps the pid.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Mux {
    /// The last request of a retired worker is done: end it, off the
    /// request path.
    fn drop(&mut self) {
        let to = lock(&self.to).take();
        let (pid, dead) = (self.pid, self.dead.clone());
        let _ = std::thread::Builder::new()
            .name("worker-stop".into())
            .spawn(move || {
                drop(to);
                let until = Instant::now() + Duration::from_secs(2);
                while !dead.load(Ordering::SeqCst) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if !dead.load(Ordering::SeqCst) {
                    // SAFETY: as in shutdown.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }); // dropped: if no thread can start, the reader still reaps it at EOF
    }
}

/// Routes the worker's frames to their requests; at EOF tells every open
/// request, reaps the worker and logs how it ended.
fn read_frames(pid: libc::pid_t, from: OwnedFd, mux: std::sync::Weak<Mux>, dead: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 256 << 10];
    let (mut start, mut end) = (0, 0);
    let fd = from.as_raw_fd();
    'read: loop {
        while let Some(h) = frame::decode_header(&buf[start..end]) {
            let need = frame::HEADER_LEN + h.len as usize;
            if h.len as usize > frame::MAX_FROM_WORKER {
                crate::error!(
                    "python worker {pid} sent a frame of {} bytes; killing it",
                    h.len
                );
                // SAFETY: kill has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break 'read;
            }
            if end - start < need {
                if need > buf.len() {
                    buf.resize(need, 0);
                }
                break;
            }
            let payload = buf[start + frame::HEADER_LEN..start + need].to_vec();
            start += need;
            let route = mux
                .upgrade()
                .and_then(|m| lock(&m.routes).get(&h.id).cloned());
            if let Some(tx) = route {
                // A request that went away drops its receiver: nothing to do.
                let _ = tx.send(Msg::Frame(h, payload));
            }
        }
        if start == end {
            (start, end) = (0, 0);
        } else if end == buf.len() {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        match sys::read(fd, &mut buf[end..]) {
            Ok(0) => break,
            Ok(n) => end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                crate::error!("reading from python worker {pid}: {e}");
                break;
            }
        }
    }
    dead.store(true, Ordering::SeqCst);
    if let Some(m) = mux.upgrade() {
        for tx in lock(&m.routes).values() {
            let _ = tx.send(Msg::Closed); // dropped: that request already ended
        }
    }
    let status = sys::reap(pid, Duration::from_secs(2));
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        crate::warn!("python worker {pid} {}", sys::describe_status(status));
    }
}

fn read_log(pid: libc::pid_t, log: OwnedFd) {
    let mut lines = LineBuffer::new();
    let mut chunk = [0u8; 8192];
    loop {
        match sys::read(log.as_raw_fd(), &mut chunk) {
            Ok(0) => break,
            Ok(n) => lines.push(&chunk[..n], |l| crate::info!("app[{pid}]: {l}")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    lines.finish(|l| crate::info!("app[{pid}]: {l}"));
}

/// One request's share of a [`Mux`].
struct MuxPort {
    mux: Arc<Mux>,
    id: u16,
    rx: Receiver<Msg>,
    cur: Option<(frame::Header, Vec<u8>)>,
}

impl Drop for MuxPort {
    fn drop(&mut self) {
        lock(&self.mux.routes).remove(&self.id);
    }
}

impl Port for MuxPort {
    fn pid(&self) -> libc::pid_t {
        self.mux.pid
    }

    /// Blocking write under the lock: the worker's main thread only routes
    /// frames, so it always reads promptly.
    fn send(&mut self, parts: &[&[u8]], _deadline: Option<Instant>) -> io::Result<bool> {
        let to = lock(&self.mux.to);
        let Some(fd) = to.as_ref() else {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the worker is stopping",
            ));
        };
        for part in parts {
            let mut done = 0;
            while done < part.len() {
                match sys::write(fd.as_raw_fd(), &part[done..]) {
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }

    fn has_frame(&self) -> bool {
        self.cur.is_some()
    }

    fn next(&mut self, deadline: Option<Instant>) -> io::Result<Event> {
        if let Some((h, _)) = &self.cur {
            return Ok(Event::Frame(*h));
        }
        loop {
            let deadline = signals::bounded(deadline).or(deadline);
            // Wake now and then to notice a stop signal's grace period.
            let mut wait = Duration::from_millis(250);
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Event::TimedOut);
                }
                wait = wait.min(left);
            }
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Frame(h, payload)) => {
                    self.cur = Some((h, payload));
                    return Ok(Event::Frame(h));
                }
                Ok(Msg::Closed) | Err(RecvTimeoutError::Disconnected) => return Ok(Event::Closed),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn payload(&self, _h: frame::Header) -> &[u8] {
        self.cur.as_ref().map_or(&[], |(_, p)| p.as_slice())
    }

    fn consume(&mut self, _h: frame::Header) {
        self.cur = None;
    }
}

/// What the threads share: the App (config, reload checks) and the worker.
struct Shared<'a> {
    app: Mutex<&'a mut App>,
    mux: Mutex<Option<Arc<Mux>>>,
    /// Asks the main thread to start a worker (see [`Shared::worker`]).
    spawn: Mutex<std::sync::mpsc::Sender<SyncSender<Option<Worker>>>>,
    running: AtomicUsize,
}

impl Shared<'_> {
    /// The current worker, started if there is none.
    fn worker(&self) -> Option<Arc<Mux>> {
        let mut cur = lock(&self.mux);
        if let Some(m) = cur.as_ref().filter(|m| !m.dead.load(Ordering::SeqCst)) {
            return Some(m.clone());
        }
        // PR_SET_PDEATHSIG kills the worker when the *thread* that forked it
        // ends; pool threads end one by one at a stop, so the main thread,
        // which outlives them all, does the forking.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        lock(&self.spawn).send(tx).ok()?;
        let w = rx.recv().ok()??;
        match Mux::new(w) {
            Ok(m) => {
                *cur = Some(m.clone());
                Some(m)
            }
            Err(e) => {
                crate::error!("cannot share the python worker between threads: {e}");
                None
            }
        }
    }

    /// New requests go to a new worker; this one ends after its last.
    fn retire(&self, m: &Arc<Mux>) {
        let mut cur = lock(&self.mux);
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, m)) {
            *cur = None;
        }
    }

    fn check_reload(&self) {
        let mut app = lock(&self.app);
        if app.changed() != Change::None {
            app.restart("mysite.fcgi or site.toml changed");
            drop(app);
            *lock(&self.mux) = None;
        }
    }
}

/// A pool thread's handler: requests go to the shared worker.
struct ThreadHandler<'s, 'a> {
    shared: &'s Shared<'a>,
    /// This thread's request buffers, kept from request to request.
    bufs: Option<app::Buffers>,
}

impl Handler for ThreadHandler<'_, '_> {
    fn handle(
        &mut self,
        _id: u16,
        params: &mut Vec<Param<'_>>,
        body: &[u8],
        body_complete: bool,
        t: &mut dyn Transport,
    ) -> Outcome {
        let site = lock(&self.shared.app).site().cloned();
        let Some(mux) = self.shared.worker() else {
            return Outcome::Failed(500);
        };
        let mut port = mux.open();
        // The worker sees this request under the port's id, unique among
        // the requests open on it.
        let bufs = self.bufs.take().unwrap_or_default();
        let req =
            match app::prepare_request(site.as_ref(), port.id, params, body, body_complete, bufs) {
                Ok(req) => req,
                Err(outcome) => return outcome,
            };
        let (outcome, fate) = req.relay(&mut port, t);
        drop(port);
        if lock(&self.shared.app).log_requests {
            req.log_outcome(&outcome);
        }
        let served = mux.served.fetch_add(1, Ordering::SeqCst) + 1;
        let max = req.limits.max_requests;
        self.bufs = Some(req.into_buffers());
        if fate != Fate::Keep {
            crate::error!(
                "python worker {} is retired; new requests go to a new one",
                mux.pid
            );
            self.shared.retire(&mux);
        } else if max > 0 && served >= max {
            crate::info!(
                "recycling python worker {}: served max_requests ({max})",
                mux.pid
            );
            self.shared.retire(&mux);
        }
        outcome
    }

    fn io_timeout(&self) -> Duration {
        lock(&self.shared.app).io_timeout()
    }
}

/// Serves `listener` with `threads` request threads until a stop signal.
pub fn serve(app: &mut App, listener: RawFd, threads: usize) -> i32 {
    if let Err(e) = sys::set_nonblocking(listener, true) {
        crate::error!("cannot use the listening socket on fd {listener}: {e}");
        return 1;
    }
    app.threads = threads.max(2);
    // One process for the site: a replaced binary restarts the worker; the
    // runfcgi command re-executes the whole server.
    app.reexec_allowed = false;
    if app.process_max_requests > 0 {
        // maxrequests recycles the shared worker (the process stays).
        if let Ok(site) = app.site.as_mut() {
            site.limits.max_requests = app.process_max_requests;
        }
    }
    let (spawn_tx, spawn_rx) = std::sync::mpsc::channel::<SyncSender<Option<Worker>>>();
    let shared = Shared {
        app: Mutex::new(app),
        mux: Mutex::new(None),
        spawn: Mutex::new(spawn_tx),
        running: AtomicUsize::new(0),
    };
    let start_worker = |shared: &Shared<'_>| {
        let mut app = lock(&shared.app);
        app.ensure_worker();
        app.take_worker()
    };
    // The first worker, before any request arrives.
    if let Some(w) = start_worker(&shared) {
        match Mux::new(w) {
            Ok(m) => *lock(&shared.mux) = Some(m),
            Err(e) => crate::error!("cannot share the python worker between threads: {e}"),
        }
    }
    let addrs = &fastcgi::web_server_addrs();
    std::thread::scope(|s| {
        for n in 0..threads {
            let shared = &shared;
            shared.running.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("request-{n}"))
                .spawn_scoped(s, move || {
                    accept_loop(shared, listener, n == 0, addrs);
                    shared.running.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                shared.running.fetch_sub(1, Ordering::SeqCst);
                crate::error!("cannot start request thread {n}: {e}");
                break;
            }
        }
        // The main thread starts workers for the pool until it is done.
        while shared.running.load(Ordering::SeqCst) > 0 {
            if let Ok(reply) = spawn_rx.recv_timeout(Duration::from_millis(100)) {
                // Dropped: the asking thread may have given up.
                let _ = reply.send(start_worker(&shared));
            }
        }
    });
    if let Some(m) = lock(&shared.mux).take() {
        m.shutdown(Duration::from_secs(2));
    }
    lock(&shared.app).shutdown();
    0
}

fn accept_loop(
    shared: &Shared<'_>,
    listener: RawFd,
    first: bool,
    addrs: &Option<Vec<crate::config::Net>>,
) {
    let mut params = Vec::new();
    let mut conn = Conn::new();
    let mut serve = |fd, peer: Option<std::net::IpAddr>| {
        if !fastcgi::allowed(addrs, peer) {
            let ip = peer.map(|p| p.to_string()).unwrap_or_default();
            crate::warn!("refused a connection from {ip}: not in FCGI_WEB_SERVER_ADDRS");
            return;
        }
        shared.check_reload();
        let io = lock(&shared.app).io_timeout();
        conn.attach(fd, io, true);
        let mut handler = ThreadHandler { shared, bufs: None };
        while let Ok(true) = fastcgi::serve_request(&mut conn, &mut handler, &mut params) {
            if signals::stop_requested().is_some() {
                break;
            }
        }
        conn.close();
    };
    while signals::stop_requested().is_none() {
        match sys::accept(listener) {
            Ok((fd, peer)) => serve(fd, peer),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR | libc::ECONNABORTED | libc::EPROTO)
                ) =>
            {
                match signals::wait(
                    &[(listener, libc::POLLIN)],
                    Some(Instant::now() + Duration::from_secs(1)),
                ) {
                    Ok(w) if w.timed_out && first => shared.check_reload(),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
            Err(e) => {
                crate::error!("accept on fd {listener}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // Connections the web server queued before the stop: served, not reset.
    fastcgi::serve_queued(listener, serve);
}
