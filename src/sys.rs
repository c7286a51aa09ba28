//! Thin, safe wrappers over the few system calls the data path makes.
//!
//! Plumbing beside the data path. std's `Read`/`Write` retry EINTR silently,
//! which would hide a SIGTERM from a blocked read; these wrappers return
//! `ErrorKind::Interrupted` instead, and every wait in the shim goes through
//! [`poll`] with the signal pipe in its set, so no signal is missed.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

fn cvt(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// Copies queued bytes from a socket without taking them out (MSG_PEEK).
pub fn peek(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    cvt(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) })
}

pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid readable region of buf.len() bytes.
    cvt(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// Waits until one of `fds` is ready or the deadline passes. Returns the
/// number of ready descriptors (0 on timeout). EINTR is reported as
/// `Interrupted`; callers loop.
pub fn poll(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<usize> {
    let timeout = match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            // Round up so that a wait never returns just before its deadline.
            left.as_millis().min(i32::MAX as u128) as i32
                + i32::from(left.subsec_nanos() % 1_000_000 != 0)
        }
    };
    poll_ms(fds, timeout)
}

/// poll(2) with its own timeout in milliseconds (-1: none, 0: no wait).
pub fn poll_ms(fds: &mut [libc::pollfd], timeout: libc::c_int) -> io::Result<usize> {
    // SAFETY: fds is a valid slice of pollfd structures.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// A pipe with both ends close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor have no memory effects.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if new != flags && libc::fcntl(fd, libc::F_SETFL, new) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor have no memory effects.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let new = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if libc::fcntl(fd, libc::F_SETFD, new) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Accepts one connection, non-blocking and close-on-exec so that it can
/// never leak into the Python worker (FIELD_NOTES, protocol point 10).
pub fn accept(listener: RawFd) -> io::Result<(OwnedFd, Option<std::net::IpAddr>)> {
    // SAFETY: a zeroed sockaddr_storage is a valid out-parameter.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr/len describe a writable buffer of the stated size.
    let fd = unsafe {
        libc::accept4(
            listener,
            (&raw mut addr).cast(),
            &mut len,
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a fresh descriptor that we now own.
    let conn = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((conn, sockaddr_ip(&addr)))
}

/// The IP address of a TCP peer; None for unix sockets.
pub fn sockaddr_ip(addr: &libc::sockaddr_storage) -> Option<std::net::IpAddr> {
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into())
        }
        _ => None,
    }
}

/// True when `fd` is a socket in the listening state: how every FastCGI
/// server hands us our socket. getpeername alone misreads an unconnected
/// socket (FIELD_NOTES, "Telling FastCGI from CGI").
pub fn is_listening_socket(fd: RawFd) -> bool {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is writable; fstat fails harmlessly on a closed fd.
    if unsafe { libc::fstat(fd, &mut st) } < 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return false;
    }
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: val/len describe a writable c_int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut val).cast(),
            &mut len,
        )
    };
    r == 0 && val == 1
}

/// The file's identity and modification stamp, for reload detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: i64,
    pub mtime: (i64, i64),
}

pub fn stamp(path: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size() as i64,
        mtime: (m.mtime(), m.mtime_nsec()),
    })
}

/// access(2): Ok when this process may use `path` as `mode` says
/// (`libc::X_OK`, `libc::W_OK | libc::X_OK`, ...).
pub fn access(path: &std::path::Path, mode: libc::c_int) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated path; access has no memory effects.
    if unsafe { libc::access(c.as_ptr(), mode) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Could this process chdir into `dir`? A directory it may search.
pub fn can_enter(dir: &std::path::Path) -> io::Result<()> {
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    access(dir, libc::X_OK)
}

pub fn getpid() -> u32 {
    std::process::id()
}

/// Describes a wait status the way a person at a shell reads it.
pub fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        format!("killed by signal {sig} ({})", signal_name(sig))
    } else {
        format!("ended with wait status {status}")
    }
}

pub fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Waits for `pid` to end, at most `limit`, then kills it with SIGKILL and
/// reaps it. Returns the wait status. Never leaves a zombie.
pub fn reap(pid: libc::pid_t, limit: Duration) -> libc::c_int {
    let until = Instant::now() + limit;
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-parameter.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid || (r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
            return status;
        }
        if Instant::now() >= until {
            // SAFETY: pid is our own child that has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            loop {
                // SAFETY: as above; a blocking wait after SIGKILL is bounded.
                let r = unsafe { libc::waitpid(pid, &mut status, 0) };
                if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return status;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
