//! The persistent Python worker: starting it, talking frames to it, ending it.
//!
//! Lifecycle and transport of the bridge. The worker is the site's own
//! interpreter running `worker.py` (shipped inside this binary), which
//! imports the app once and then serves requests framed as in `frame.rs`.
//! It never outlives the shim: PR_SET_PDEATHSIG kills it if the shim dies
//! (mod_fcgid may SIGKILL us), and it exits on EOF of its request pipe.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Site;
use crate::frame;
use crate::log::LineBuffer;
use crate::signals;
use crate::sys;

const WORKER_SOURCE: &str = include_str!("worker.py");
/// The most time between two reads of the worker's log pipe while it
/// answers requests back to back.
const LOG_EVERY: Duration = Duration::from_millis(100);
/// Run as `python -c LOADER fcgi-shim-worker [CACHE]`: reads a u32 LE
/// length and that much worker source from fd 3 (see `frame.rs`), then runs
/// it; EOF means exit quietly. It travels in argv, so `ps` shows it: kept to
/// bare code, comments here.
///
/// Compiling the worker takes ~3 ms, and a CGI request pays it every time:
/// so the compiled code is kept, as marshal data, in the file named CACHE
/// plus the interpreter's bytecode magic number (as Python keeps .pyc files),
/// written by the first worker (a temporary file renamed into place) and
/// read by the next. CACHE names the worker source by its hash, and lies
/// in a directory only this user may write (see [`code_cache`]): a cached
/// file is run as code. Anything wrong with it (missing, corrupt, another
/// Python's) means compiling as before.
const LOADER: &str = include_str!("loader.py");

/// FNV-1a of the worker source, to tell one build's cache from another's.
const SOURCE_HASH: u64 = {
    let bytes = WORKER_SOURCE.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
};

/// The CACHE argument of [`LOADER`]: `$TMPDIR/fcgi-shim-UID/worker-HASH-`,
/// once the directory is known to be this user's own and private (created
/// 0700 here, or found so: a directory someone else made, or one others
/// may write, is not used). None: no cache, the worker compiles.
fn code_cache() -> Option<&'static std::ffi::OsStr> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    static CACHE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| {
            // SAFETY: getuid has no memory effects and cannot fail.
            let uid = unsafe { libc::getuid() };
            let dir = std::env::temp_dir().join(format!("fcgi-shim-{uid}"));
            // Dropped: it may exist already; what counts is the check below.
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            let meta = std::fs::symlink_metadata(&dir).ok()?;
            let private = meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0;
            if !private {
                crate::warn!(
                    "{} is not a private directory of this user's; the python worker is \
                     compiled at every start",
                    dir.display()
                );
                return None;
            }
            Some(dir.join(format!("worker-{SOURCE_HASH:016x}-")))
        })
        .as_deref()
        .map(Path::as_os_str)
}

/// What the worker reported once the app was imported (`import_ms` is
/// empty when it failed to import: see [`StartError::Import`]).
#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub python: String,
    pub executable: String,
    pub sys_path: Vec<String>,
    pub import_ms: String,
    /// Django's settings.DEBUG, when the app loaded Django's settings.
    pub django_debug: Option<bool>,
}

#[derive(Debug)]
pub enum StartError {
    /// No interpreter, or it could not be run.
    Spawn(String),
    /// The app failed to import: its traceback, and the interpreter and
    /// sys.path it failed with.
    Import {
        traceback: String,
        facts: Box<Ready>,
    },
    /// The interpreter ended before it reported.
    Died(String),
    TimedOut(Duration),
    /// A stop signal came while the app was importing.
    Stopped,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Spawn(m) => write!(f, "{m}"),
            StartError::Import { .. } => {
                write!(f, "the app failed to import (traceback above)")
            }
            StartError::Died(how) => write!(f, "the Python worker {how} before the app was loaded"),
            StartError::TimedOut(d) => write!(
                f,
                "the app did not finish importing within {} s",
                d.as_secs()
            ),
            StartError::Stopped => write!(f, "stopped by a signal while the app was importing"),
        }
    }
}

/// What the worker did while we waited for it.
pub enum Event {
    /// A whole frame is at the front of the buffer: see [`Worker::payload`],
    /// then call [`Worker::consume`].
    Frame(frame::Header),
    /// The worker closed its end: it died or exited.
    Closed,
    TimedOut,
    /// A stop signal arrived; deadlines may have shrunk.
    Signalled,
}

pub struct Worker {
    pub pid: libc::pid_t,
    to: OwnedFd,
    from: OwnedFd,
    log: Option<OwnedFd>,
    log_lines: LineBuffer,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub ready: Ready,
    pub served: u64,
    /// A frame was just sent: the next read would find nothing.
    just_sent: bool,
    /// When the log pipe was last read (see `settle_log`).
    log_drained: Instant,
    /// The worker is bound to the CPU the shim runs on (`affinity.rs`).
    pub same_cpu: bool,
}

/// Environment variables of a CGI request: never copied into the worker's
/// environment (httpoxy: a `Proxy:` header arrives as HTTP_PROXY).
fn is_request_variable(name: &[u8]) -> bool {
    const EXACT: &[&[u8]] = &[
        b"GATEWAY_INTERFACE",
        b"SERVER_SOFTWARE",
        b"SERVER_NAME",
        b"SERVER_PROTOCOL",
        b"SERVER_PORT",
        b"SERVER_ADDR",
        b"SERVER_ADMIN",
        b"SERVER_SIGNATURE",
        b"REQUEST_METHOD",
        b"REQUEST_URI",
        b"REQUEST_SCHEME",
        b"QUERY_STRING",
        b"PATH_INFO",
        b"PATH_TRANSLATED",
        b"SCRIPT_NAME",
        b"SCRIPT_FILENAME",
        b"SCRIPT_URL",
        b"SCRIPT_URI",
        b"DOCUMENT_ROOT",
        b"AUTH_TYPE",
        b"CONTENT_TYPE",
        b"CONTENT_LENGTH",
        b"HTTPS",
        b"UNIQUE_ID",
        b"CONTEXT_PREFIX",
        b"CONTEXT_DOCUMENT_ROOT",
    ];
    const PREFIX: &[&[u8]] = &[b"HTTP_", b"REMOTE_", b"REDIRECT_", b"SSL_"];
    EXACT.contains(&name) || PREFIX.iter().any(|p| name.starts_with(p))
}

/// The interpreter to run: `python` from site.toml (relative to it, or a
/// bare name looked up on PATH), else python3 on PATH, else the standard
/// places (the seed's restart script runs us with an empty environment).
pub fn find_python(site: &Site) -> Result<PathBuf, String> {
    find_python_on(site, &std::env::var_os("PATH").unwrap_or_default())
}

/// The PATH a web server usually gives its programs (suEXEC's safe path;
/// Debian's Apache has the same directories and the sbin ones).
pub const SERVER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// [`find_python`] with `path` as PATH.
pub fn find_python_on(site: &Site, path: &std::ffi::OsStr) -> Result<PathBuf, String> {
    let dir = site.file.parent().unwrap_or(Path::new("/"));
    let search = |name: &str| -> Option<PathBuf> {
        std::env::split_paths(path)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    };
    match site.python.as_deref() {
        Some(p) if p.contains('/') => {
            let path = dir.join(p);
            if is_executable(&path) {
                Ok(path)
            } else {
                Err(format!(
                    "python = \"{p}\" in {}: {} is not an executable file",
                    site.file.display(),
                    path.display()
                ))
            }
        }
        Some(name) => search(name).ok_or_else(|| {
            format!("python = \"{name}\" in {}: not found on PATH; give a full path", site.file.display())
        }),
        None => search("python3")
            .or_else(|| {
                ["/usr/bin/python3", "/usr/local/bin/python3"]
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| is_executable(p))
            })
            .ok_or_else(|| {
                format!(
                    "no python3 on PATH, in /usr/bin or in /usr/local/bin; set python = \"/path/to/python3\" in {}",
                    site.file.display()
                )
            }),
    }
}

/// What runfcgi's options change for every worker it starts. Set once,
/// before the first worker starts.
#[derive(Debug, Default)]
pub struct RunfcgiWorkers {
    /// `workdir=`: the worker's directory unless site.toml says `chdir`
    /// (Django's runfcgi chdir'ed the app there).
    pub workdir: Option<PathBuf>,
    /// `outlog=` of a daemon: the app's stdout goes there, as under
    /// Django's runfcgi, instead of into the log line by line.
    pub stdout_to_outlog: bool,
}

static RUNFCGI: std::sync::OnceLock<RunfcgiWorkers> = std::sync::OnceLock::new();

pub fn set_runfcgi_workers(settings: RunfcgiWorkers) {
    // Dropped: a second call (none is made) would keep the first value.
    let _ = RUNFCGI.set(settings);
}

/// Where the worker runs: site.toml's `chdir`, else runfcgi's `workdir=`,
/// else site.toml's folder (relative paths in the app then mean what they
/// mean in site.toml).
pub fn working_dir(site: &Site) -> Option<&Path> {
    site.chdir
        .as_deref()
        .or(RUNFCGI.get().and_then(|r| r.workdir.as_deref()))
        .or(site.file.parent())
}

/// Logs the traceback of an app that failed to import, line by line: the
/// "traceback above" that [`load_error`]'s message points to.
pub fn log_traceback(e: &StartError) {
    if let StartError::Import { traceback, .. } = e {
        for line in traceback.lines() {
            crate::error!("app: {line}");
        }
    }
}

/// "cannot load the app NAME from SITE.TOML: why", for the log and `check`.
pub fn load_error(site: &Site, e: &StartError) -> String {
    let app = site
        .wsgi_app
        .as_deref()
        .or(site.settings_module.as_deref())
        .unwrap_or("?");
    let mut msg = format!(
        "cannot load the app {app} from {}: {e}",
        site.file.display()
    );
    // The usual first mistake: the app's own module is on no path at all.
    let top = app.split([':', '.']).next().unwrap_or(app);
    // (Not when search_path has it: then it is there but unreadable to
    // this user, which the traceback's own words do not say either.)
    let in_search_path = site
        .search_path
        .iter()
        .any(|d| d.join(format!("{top}.py")).exists() || d.join(top).is_dir());
    if let StartError::Import { traceback, .. } = e
        && !in_search_path
        && traceback.trim_end().lines().last()
            == Some(&*format!("ModuleNotFoundError: No module named '{top}'"))
    {
        msg.push_str(&format!(
            "; no folder of sys.path holds {top}.py or {top}/: add the one that does to \
             search_path in {} (search_path = [\".\"] for one beside it)",
            site.file.display()
        ));
    }
    msg
}

/// The pairs of a `K` or `F` frame: what the interpreter reported, and the
/// traceback (empty in `K`). None when they do not decode.
fn reported(payload: &[u8]) -> Option<(Ready, String)> {
    let (pairs, _) = frame::decode_pairs(payload)?;
    let get = |k: &[u8]| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map_or(String::new(), |(_, v)| {
                String::from_utf8_lossy(v).into_owned()
            })
    };
    let ready = Ready {
        python: get(b"python"),
        executable: get(b"executable"),
        sys_path: get(b"sys_path").lines().map(str::to_owned).collect(),
        import_ms: get(b"import_ms"),
        django_debug: match get(b"django_debug").as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        },
    };
    Some((ready, get(b"traceback")))
}

fn is_executable(p: &Path) -> bool {
    p.is_file() && sys::access(p, libc::X_OK).is_ok()
}

impl Worker {
    /// Starts the interpreter, sends it the worker and the config, and waits
    /// until the app is imported.
    pub fn start(site: &Site, run_once: bool, threads: usize) -> Result<Worker, StartError> {
        let python = find_python(site).map_err(StartError::Spawn)?;
        let spawn_err = |what: &str, e: io::Error| StartError::Spawn(format!("{what}: {e}"));
        let (to_child, to) = sys::pipe().map_err(|e| spawn_err("pipe", e))?;
        let (from, from_child) = sys::pipe().map_err(|e| spawn_err("pipe", e))?;
        let (log, log_child) = sys::pipe().map_err(|e| spawn_err("pipe", e))?;
        let log_child2 = log_child.try_clone().map_err(|e| spawn_err("dup", e))?;

        let mut cmd = Command::new(&python);
        cmd.arg("-c").arg(LOADER).arg("fcgi-shim-worker");
        if let Some(cache) = code_cache() {
            cmd.arg(cache);
        }
        let stdout = if RUNFCGI.get().is_some_and(|r| r.stdout_to_outlog) {
            Stdio::inherit()
        } else {
            Stdio::from(log_child)
        };
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(log_child2));
        if run_once {
            // Under CGI our environment is the request's: keep it out of the
            // process environment (the request reaches the app as environ).
            let keep: Vec<(OsString, OsString)> = std::env::vars_os()
                .filter(|(k, _)| {
                    use std::os::unix::ffi::OsStrExt;
                    !is_request_variable(k.as_bytes())
                })
                .collect();
            cmd.env_clear().envs(keep);
        }
        cmd.env_remove("FCGI_SHIM_REEXEC");
        if let Some(s) = &site.settings_module {
            cmd.env("DJANGO_SETTINGS_MODULE", s);
        }
        for (k, v) in &site.env {
            cmd.env(k, v);
        }
        if let Some(dir) = working_dir(site) {
            // Else the spawn fails with an ENOENT that reads as "no python".
            if let Err(e) = sys::can_enter(dir) {
                return Err(StartError::Spawn(format!(
                    "the app's working directory {} cannot be used: {e}",
                    dir.display()
                )));
            }
            cmd.current_dir(dir);
        }
        let (in_fd, out_fd) = (to_child.as_raw_fd(), from_child.as_raw_fd());
        let parent = sys::getpid() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and calls
        // only async-signal-safe functions (fcntl, dup2, close_range,
        // getrlimit, prctl, getppid, sigaction via signal, _exit).
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends above the target numbers first, so that
                // dup2 onto 3 cannot clobber a source that happens to be 3 or 4.
                let a = libc::fcntl(in_fd, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(out_fd, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Nothing else may reach Python: descriptors the shim itself
                // inherited (whatever started the web server's spawner left
                // open) would otherwise pass through exec. Marked
                // close-on-exec rather than closed, so that std's own pipe
                // that reports a failed exec keeps working.
                if libc::syscall(
                    libc::SYS_close_range,
                    5u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) != 0
                {
                    // Before Linux 5.11: one by one, bounded.
                    let mut rl = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
                    for fd in 5..(rl.rlim_cur.min(65536) as i32) {
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    }
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| StartError::Spawn(format!("cannot run {}: {e}", python.display())))?;
        drop(cmd); // closes our copies of the child's pipe ends
        drop(to_child);
        drop(from_child);
        let mut w = Worker {
            pid: child.id() as libc::pid_t,
            to,
            from,
            log: Some(log),
            log_lines: LineBuffer::new(),
            buf: vec![0; 256 << 10],
            start: 0,
            end: 0,
            ready: Ready::default(),
            served: 0,
            just_sent: false,
            log_drained: Instant::now(),
            same_cpu: false,
        };
        for fd in [w.to.as_raw_fd(), w.from.as_raw_fd(), w.log_fd()] {
            sys::set_nonblocking(fd, true).map_err(|e| spawn_err("fcntl", e))?;
        }
        let deadline = Some(Instant::now() + site.limits.startup_timeout);
        match w.handshake(site, run_once, threads, deadline) {
            Ok(()) => Ok(w),
            Err(e) => {
                w.kill();
                Err(e)
            }
        }
    }

    fn handshake(
        &mut self,
        site: &Site,
        run_once: bool,
        threads: usize,
        deadline: Option<Instant>,
    ) -> Result<(), StartError> {
        use std::os::unix::ffi::OsStrExt;
        let died = |w: &mut Worker| StartError::Died(w.reap_now());
        let mut boot = Vec::with_capacity(4 + WORKER_SOURCE.len() + 512);
        boot.extend_from_slice(&(WORKER_SOURCE.len() as u32).to_le_bytes());
        boot.extend_from_slice(WORKER_SOURCE.as_bytes());
        let mut items: Vec<(&[u8], &[u8])> = vec![
            (b"app", site.wsgi_app.as_deref().unwrap_or("").as_bytes()),
            (
                b"django",
                if site.settings_module.is_some() {
                    b"1"
                } else {
                    b"0"
                },
            ),
            (b"run_once", if run_once { b"1" } else { b"0" }),
        ];
        for p in &site.search_path {
            items.push((b"path", p.as_os_str().as_bytes()));
        }
        let threads = threads.to_string();
        if threads != "1" {
            items.push((b"threads", threads.as_bytes()));
        }
        let mut probe = Vec::new();
        frame::push_environ(&mut probe, frame::ENVIRON_PROBE.iter().copied());
        items.push((b"probe", &probe));
        let len = frame::pairs_len(items.iter().copied());
        boot.extend_from_slice(&frame::header(frame::CONFIG, 0, len));
        frame::push_pairs(&mut boot, items.iter().copied());
        match self.send(&[&boot], deadline) {
            Ok(true) => {}
            Ok(false) => return Err(StartError::Stopped),
            Err(_) => return Err(died(self)),
        }
        loop {
            match self.next(deadline) {
                Ok(Event::Frame(h)) if h.kind == frame::READY || h.kind == frame::FAILED => {
                    let reported = reported(self.payload(h));
                    self.consume(h);
                    let Some((facts, traceback)) = reported else {
                        return Err(StartError::Died(format!(
                            "sent a garbled {:?} frame",
                            h.kind as char
                        )));
                    };
                    if h.kind == frame::FAILED {
                        return Err(StartError::Import {
                            traceback,
                            facts: Box::new(facts),
                        });
                    }
                    self.ready = facts;
                    return Ok(());
                }
                Ok(Event::Frame(h)) => {
                    return Err(StartError::Died(format!(
                        "sent frame {:?} before ready",
                        h.kind as char
                    )));
                }
                Ok(Event::Closed) | Err(_) => return Err(died(self)),
                Ok(Event::TimedOut) => {
                    return Err(StartError::TimedOut(site.limits.startup_timeout));
                }
                Ok(Event::Signalled) => {
                    if signals::grace_over() {
                        return Err(StartError::Stopped);
                    }
                }
            }
        }
    }

    fn log_fd(&self) -> RawFd {
        self.log.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Reads what the worker printed and logs it line by line.
    fn drain_log(&mut self) {
        self.log_drained = Instant::now();
        let Some(fd) = self.log.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let mut chunk = [0u8; 8192];
        let pid = self.pid;
        loop {
            match sys::read(fd, &mut chunk) {
                Ok(0) => {
                    self.log_lines.finish(|l| crate::info!("app[{pid}]: {l}"));
                    self.log = None;
                    return;
                }
                Ok(n) => self
                    .log_lines
                    .push(&chunk[..n], |l| crate::info!("app[{pid}]: {l}")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // EAGAIN: nothing more for now
            }
        }
    }

    /// Writes all of `parts` to the worker (four at a time: a frame has at
    /// most a header and a payload). Ok(false) when a stop signal's grace
    /// ran out first.
    pub fn send(&mut self, parts: &[&[u8]], deadline: Option<Instant>) -> io::Result<bool> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut done = 0;
        while done < total {
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 4];
            let mut n = 0;
            let mut skip = done;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                if n == iov.len() {
                    break; // the rest goes in the next writev
                }
                iov[n] = libc::iovec {
                    iov_base: p[skip..].as_ptr() as *mut _,
                    iov_len: p.len() - skip,
                };
                n += 1;
                skip = 0;
            }
            // SAFETY: the first n iovecs point into live slices of `parts`.
            let r = unsafe { libc::writev(self.to.as_raw_fd(), iov.as_ptr(), n as libc::c_int) };
            if r >= 0 {
                done += r as usize;
                self.just_sent = true;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    let fds = [
                        (self.to.as_raw_fd(), libc::POLLOUT),
                        (self.log_fd(), libc::POLLIN),
                    ];
                    let w = signals::wait(&fds, deadline)?;
                    if w.ready(1) {
                        self.drain_log();
                    }
                    if w.timed_out {
                        return Ok(false);
                    }
                }
                _ => return Err(e),
            }
        }
        Ok(true)
    }

    /// True when a whole frame is already buffered.
    pub fn has_frame(&self) -> bool {
        frame::decode_header(&self.buf[self.start..self.end])
            .is_some_and(|h| self.end - self.start >= frame::HEADER_LEN + h.len as usize)
    }

    /// Waits for the next whole frame from the worker.
    pub fn next(&mut self, deadline: Option<Instant>) -> io::Result<Event> {
        let mut yield_once = false;
        loop {
            let avail = self.end - self.start;
            if let Some(h) = frame::decode_header(&self.buf[self.start..self.end]) {
                let need = frame::HEADER_LEN + h.len as usize;
                if h.len as usize > frame::MAX_FROM_WORKER {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the worker sent a frame of {} bytes", h.len),
                    ));
                }
                if avail >= need {
                    if h.kind == frame::DONE {
                        self.settle_log();
                    }
                    return Ok(Event::Frame(h));
                }
                if need > self.buf.len() {
                    self.buf.resize(need, 0);
                }
            }
            if self.end == self.buf.len() || (self.start > 0 && self.start == self.end) {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if std::mem::take(&mut self.just_sent) {
                if self.same_cpu {
                    // The worker, woken on this CPU by the request, often
                    // took the CPU from us at once, and then its answer is
                    // here: the read below takes it. Under back-to-back load
                    // it had in 88% of the requests (behind nginx, c=4); a
                    // shim just woken from its own sleep keeps the CPU (c=1:
                    // never), and the read finds nothing. Then we yield.
                    yield_once = true;
                } else if let Some(event) = self.wait_readable(deadline)? {
                    // Just after a request went out its answer cannot be
                    // there yet: wait first rather than try a read that
                    // returns EAGAIN (one system call less per request).
                    return Ok(event);
                }
            }
            let end = self.end;
            match sys::read(self.from.as_raw_fd(), &mut self.buf[end..]) {
                Ok(0) => {
                    self.drain_log();
                    return Ok(Event::Closed);
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::mem::take(&mut yield_once) {
                        // The worker runs: a quick answer is there when we
                        // come back, and we never slept. A slow one is not,
                        // and we sleep next.
                        // SAFETY: sched_yield has no memory effects.
                        unsafe { libc::sched_yield() };
                        continue;
                    }
                    if let Some(event) = self.wait_readable(deadline)? {
                        return Ok(event);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the frame pipe is readable, logging what the worker
    /// prints meanwhile. Some(event) when the wait ended otherwise.
    fn wait_readable(&mut self, deadline: Option<Instant>) -> io::Result<Option<Event>> {
        let fds = [
            (self.from.as_raw_fd(), libc::POLLIN),
            (self.log_fd(), libc::POLLIN),
        ];
        let w = signals::wait(&fds, deadline)?;
        if w.ready(1) {
            self.drain_log();
        }
        if w.ready(0) {
            return Ok(None);
        }
        if w.timed_out {
            return Ok(Some(Event::TimedOut));
        }
        Ok(w.signalled.then_some(Event::Signalled))
    }

    /// The payload of the frame [`next`](Self::next) returned.
    pub fn payload(&self, h: frame::Header) -> &[u8] {
        let from = self.start + frame::HEADER_LEN;
        &self.buf[from..from + h.len as usize]
    }

    pub fn consume(&mut self, h: frame::Header) {
        self.start += frame::HEADER_LEN + h.len as usize;
    }

    /// At the end of a request (its `D` is at the front of the buffer):
    /// logs what the worker printed, when it matters now. After a failure
    /// at once, so that the traceback is logged before the shim says the
    /// app failed; otherwise every 100 ms at most. Waits for an answer
    /// drain the log pipe too, but an answer found at once (see `next`)
    /// needs no wait, and a busy worker must neither fill the pipe and stall
    /// nor pay a read per request.
    fn settle_log(&mut self) {
        let failed = self.buf.get(self.start + frame::HEADER_LEN) != Some(&frame::DONE_OK);
        if failed || self.log_drained.elapsed() >= LOG_EVERY {
            self.drain_log();
        }
    }

    /// Drains pending log output without waiting (called while idle).
    pub fn poll_log(&mut self) {
        self.drain_log();
    }

    /// Descriptors to watch while idle: the log pipe, and the frame pipe
    /// (readable at EOF when the worker dies).
    pub fn idle_fds(&self) -> [RawFd; 2] {
        [self.from.as_raw_fd(), self.log_fd()]
    }

    /// Reaps an exited (or exiting) worker; describes how it ended.
    fn reap_now(&mut self) -> String {
        let status = sys::reap(self.pid, Duration::from_millis(500));
        self.drain_log();
        sys::describe_status(status)
    }

    /// Ends a worker that died or misbehaved: SIGKILL, reap, collect its last
    /// words. Returns how it ended.
    pub fn kill(mut self) -> String {
        // SAFETY: pid is our unreaped child; kill on it has no memory effects.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        self.reap_now()
    }

    /// Asks the worker to exit (EOF on its request pipe), waits up to `limit`,
    /// then kills it.
    pub fn stop(self, limit: Duration) {
        let Worker {
            pid,
            to,
            from,
            mut log,
            mut log_lines,
            ..
        } = self;
        drop(to);
        let status = sys::reap(pid, limit);
        drop(from);
        if let Some(fd) = log.take() {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = sys::read(fd.as_raw_fd(), &mut chunk) {
                log_lines.push(&chunk[..n], |l| crate::info!("app[{pid}]: {l}"));
            }
            log_lines.finish(|l| crate::info!("app[{pid}]: {l}"));
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            crate::warn!(
                "python worker {pid} {} on stop",
                sys::describe_status(status)
            );
        }
    }

    /// Takes the worker apart for `threaded.rs`, which reads and writes its
    /// pipes from several threads: (to, from, log). Nothing is buffered
    /// after the handshake.
    pub fn into_parts(self) -> (OwnedFd, OwnedFd, Option<OwnedFd>) {
        debug_assert_eq!(
            self.start, self.end,
            "no frame may be pending after the handshake"
        );
        (self.to, self.from, self.log)
    }

    /// Resident memory of the worker, in bytes (Linux /proc).
    pub fn rss(&self) -> Option<u64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * page.max(4096) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_variables_are_recognised() {
        for v in [
            "HTTP_PROXY",
            "REQUEST_METHOD",
            "REDIRECT_STATUS",
            "REMOTE_ADDR",
            "CONTENT_LENGTH",
        ] {
            assert!(is_request_variable(v.as_bytes()), "{v}");
        }
        for v in ["PATH", "HOME", "LANG", "PYTHONPATH", "TZ"] {
            assert!(!is_request_variable(v.as_bytes()), "{v}");
        }
    }
}
