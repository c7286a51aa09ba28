//! Stop signals, and the one wait that every blocking point goes through.
//!
//! Lifecycle, beside the data path. SIGTERM, SIGUSR1, SIGHUP and SIGINT all
//! mean "finish the request in flight, at most [`GRACE`], then exit"
//! (FIELD_NOTES, "Lifecycle and reload"): mod_fcgid sends SIGTERM and
//! SIGKILL 3 s later, mod_fastcgi asks for SIGUSR1, Apache's restart can send
//! SIGHUP to the process group, Ctrl-C is SIGINT. SIGPIPE is ignored: a web
//! server that hangs up is an ordinary outcome, seen as EPIPE. A SIGHUP
//! or SIGINT ignored when we start stays ignored, as `nohup` (SIGHUP) and a
//! shell starting a background job (SIGINT) mean it: `nohup mysite.fcgi
//! runfcgi daemonize=false ... &` outlives the SSH session.
//!
//! The handler only records the signal and writes a byte to a self-pipe;
//! [`wait`] polls that pipe beside the descriptors it waits for, so a signal
//! can never slip in between a check and a blocking call (tini's lesson:
//! act on signals outside the handler).

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// How long a request in flight may run on after a stop signal.
pub const GRACE: Duration = Duration::from_millis(2900);

static RECEIVED: AtomicI32 = AtomicI32::new(0);
static PIPE_READ: AtomicI32 = AtomicI32::new(-1);
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static STOP_AT: Mutex<Option<Instant>> = Mutex::new(None);

extern "C" fn on_signal(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
    let fd = PIPE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = [sig as u8];
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, so
        // a full pipe (a byte is already waiting) just drops this one.
        unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
    }
}

/// Installs the handlers. Called at start, and again in a forked child
/// (runfcgi prefork) so that it gets a self-pipe of its own instead of
/// sharing its parent's, and forgets a signal meant for the parent.
pub fn install() -> io::Result<()> {
    for old in [
        PIPE_READ.swap(-1, Ordering::SeqCst),
        PIPE_WRITE.swap(-1, Ordering::SeqCst),
    ] {
        if old >= 0 {
            // SAFETY: these descriptors were created by an earlier install
            // and are owned by this module alone.
            unsafe { libc::close(old) };
        }
    }
    RECEIVED.store(0, Ordering::SeqCst);
    *STOP_AT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let (r, w) = sys::pipe()?;
    sys::set_nonblocking(r.as_raw_fd(), true)?;
    sys::set_nonblocking(w.as_raw_fd(), true)?;
    // The pipe lives as long as the process (and is close-on-exec).
    PIPE_READ.store(r.into_raw_fd(), Ordering::SeqCst);
    PIPE_WRITE.store(w.into_raw_fd(), Ordering::SeqCst);
    // SAFETY: a zeroed sigaction with a handler and an empty mask is valid;
    // no SA_RESTART, so blocking calls return EINTR and we look at once.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        let ignored = |sig: libc::c_int| {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        };
        for sig in [libc::SIGTERM, libc::SIGUSR1, libc::SIGHUP, libc::SIGINT] {
            // The terminal's signals, ignored by nohup (SIGHUP) or by a
            // shell for a background job (SIGINT): left so.
            if (sig == libc::SIGHUP || sig == libc::SIGINT) && ignored(sig) {
                continue;
            }
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // lighttpd resets every signal to default before exec, SIGPIPE too.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // Handlers survive nothing across exec, but a blocked mask would;
        // start from an empty one whatever the parent left us.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    Ok(())
}

/// The stop signal received, if any.
pub fn stop_requested() -> Option<libc::c_int> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => {
            let mut at = STOP_AT.lock().unwrap_or_else(|e| e.into_inner());
            at.get_or_insert_with(Instant::now);
            Some(sig)
        }
    }
}

/// `deadline` shortened to the end of the grace period once a stop signal
/// has arrived.
pub fn bounded(deadline: Option<Instant>) -> Option<Instant> {
    stop_requested()?;
    let at = STOP_AT.lock().unwrap_or_else(|e| e.into_inner());
    let grace_end = at.map(|t| t + GRACE);
    match (deadline, grace_end) {
        (Some(d), Some(g)) => Some(d.min(g)),
        (d, g) => d.or(g),
    }
}

/// True when the grace period after a stop signal is over.
pub fn grace_over() -> bool {
    stop_requested().is_some()
        && STOP_AT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() >= GRACE)
}

/// What woke [`wait`].
#[derive(Debug, Default)]
pub struct Woken {
    /// `revents` of each descriptor asked for, in order.
    pub revents: [libc::c_short; 4],
    pub timed_out: bool,
    pub signalled: bool,
}

impl Woken {
    pub fn ready(&self, i: usize) -> bool {
        self.revents[i] != 0
    }
}

/// Waits until one of `fds` (at most four) is ready, a stop signal arrives,
/// or the deadline (shortened by a stop, see [`bounded`]) passes.
pub fn wait(fds: &[(RawFd, libc::c_short)], deadline: Option<Instant>) -> io::Result<Woken> {
    debug_assert!(fds.len() <= 4, "wait takes at most four descriptors");
    let deadline = bounded(deadline).or(deadline);
    let mut set = [sys::pollfd(-1, 0); 5];
    for (slot, &(fd, ev)) in set.iter_mut().zip(fds) {
        *slot = sys::pollfd(fd, ev);
    }
    let n = fds.len();
    set[n] = sys::pollfd(PIPE_READ.load(Ordering::SeqCst), libc::POLLIN);
    let mut woken = Woken::default();
    match sys::poll(&mut set[..=n], deadline) {
        Ok(0) => woken.timed_out = true,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => return Err(e),
    }
    for (i, p) in set[..n].iter().enumerate() {
        woken.revents[i] = p.revents;
    }
    if set[n].revents != 0 {
        let mut junk = [0u8; 16];
        // Drained so that the next wait sleeps again; the flag stays set.
        while sys::read(set[n].fd, &mut junk).is_ok_and(|k| k > 0) {}
    }
    woken.signalled = stop_requested().is_some();
    if !woken.timed_out && deadline.is_some_and(|d| Instant::now() >= d) {
        woken.timed_out = true;
    }
    Ok(woken)
}
