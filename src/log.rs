//! The shim's log: one line per event, with the pid, to up to three places.
//!
//! Plumbing beside the data path. stderr always (mod_fcgid and mod_fastcgi
//! put it in Apache's error log), syslog when /dev/log exists, and the
//! site's `log_file` when set, because shared-hosting users often cannot read
//! Apache's log. The syslog client is a datagram to /dev/log: the whole
//! protocol we need is one `<priority>tag[pid]: message` line. While
//! `check` runs, lines go to its report instead ([`capture`]).

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
        }
    }
    /// Syslog priority: facility user (1) and the matching severity.
    fn priority(self) -> u8 {
        8 + match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
        }
    }
}

struct Sinks {
    syslog: Option<UnixDatagram>,
    file: Option<File>,
    /// While `check` runs: the lines, kept instead of written anywhere.
    captured: Option<Vec<String>>,
    /// Lines not kept because `captured` was full.
    dropped: usize,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    syslog: None,
    file: None,
    captured: None,
    dropped: 0,
});

/// Most lines kept while capturing: a chatty app must not grow `check`
/// without bound.
const MAX_CAPTURED: usize = 10_000;

/// Turns on syslog when /dev/log is there. Called once by servers; the
/// command-line tools log to stderr only.
pub fn enable_syslog() {
    let sock = UnixDatagram::unbound().and_then(|s| s.connect("/dev/log").map(|()| s));
    if let Ok(s) = sock {
        // Never block the data path on a stalled syslog daemon.
        let _ = s.set_nonblocking(true); // best effort: a blocking socket still works
        lock().syslog = Some(s);
    }
}

/// Sends log lines to `path` too (appended, created 0600 so that a log in a
/// shared web root is not readable by other users), or stops when None.
/// While capturing, opens nothing.
pub fn set_file(path: Option<&Path>) -> std::io::Result<()> {
    if lock().captured.is_some() {
        return Ok(());
    }
    let file = match path {
        None => None,
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)?,
        ),
    };
    lock().file = file;
    Ok(())
}

/// For `check`, a person at a shell while nothing is being served: from now
/// on every line is kept in memory for [`take_captured`] and written
/// nowhere else, so that the site's `log_file` is neither opened nor
/// written to (a line such as "answering 500 until mysite.fcgi changes"
/// would mislead its reader), and so that the report can put the app's
/// output on stdout, where `check > out.txt` keeps it. `false` stops.
pub fn capture(on: bool) {
    let mut s = lock();
    s.captured = on.then(Vec::new);
    s.dropped = 0;
    if on {
        s.file = None;
    }
}

/// The lines captured since the last call, each `level: message`; the last
/// says how many were left out, if any were.
pub fn take_captured() -> Vec<String> {
    let mut guard = lock();
    let s = &mut *guard;
    let dropped = std::mem::take(&mut s.dropped);
    let Some(lines) = s.captured.as_mut() else {
        return Vec::new();
    };
    let mut lines = std::mem::take(lines);
    if dropped > 0 {
        lines.push(format!("({dropped} more lines not shown)"));
    }
    lines
}

fn lock() -> std::sync::MutexGuard<'static, Sinks> {
    // A panic while logging cannot leave Sinks half-updated: every field is
    // replaced whole. So a poisoned lock is still usable.
    SINKS.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn event(level: Level, args: fmt::Arguments<'_>) {
    let pid = std::process::id();
    let msg = args.to_string();
    // One event is one line: a stray newline would let a value fake an entry.
    let msg = msg.trim_end().replace('\n', "\\n");
    let mut guard = lock();
    let s = &mut *guard;
    if let Some(lines) = s.captured.as_mut() {
        if lines.len() < MAX_CAPTURED {
            lines.push(format!("{}: {msg}", level.word()));
        } else {
            s.dropped += 1;
        }
        return;
    }
    let line = format!("fcgi-shim[{pid}]: {}: {msg}\n", level.word());
    // Dropped: there is nowhere left to report a failing stderr.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(sock) = &s.syslog {
        let line = format!(
            "<{}>fcgi-shim[{pid}]: {}: {msg}",
            level.priority(),
            level.word()
        );
        let _ = sock.send(line.as_bytes()); // dropped: syslog is best effort
    }
    if let Some(f) = &mut s.file {
        let line = format!(
            "{} fcgi-shim[{pid}] {}: {msg}\n",
            timestamp(SystemTime::now()),
            level.word()
        );
        let _ = f.write_all(line.as_bytes()); // dropped: stderr still has it
    }
}

/// Writes to stdout for the commands run from a shell (`check`, `init`,
/// `help`). println! panics when the reader has gone (`check | head`);
/// this ends the process the way SIGPIPE ends any other tool, quietly. The
/// first other write error (a full disk under `check > out.txt`) is kept
/// for [`say_failed`], so that a cut report cannot pass for a whole one.
pub fn say(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let Err(e) = out.write_fmt(args) else {
        return;
    };
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        let mut failed = SAY_FAILED.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert_with(|| e.to_string());
    } else {
        // SAFETY: restoring the default action and raising the signal
        // touch no memory of ours; the process ends here.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
        std::process::exit(141); // 128 + SIGPIPE, if raise returned
    }
}

static SAY_FAILED: Mutex<Option<String>> = Mutex::new(None);

/// The first error [`say`] met writing stdout, after a flush.
pub fn say_failed() -> Option<String> {
    if let Err(e) = std::io::stdout().flush() {
        let mut failed = SAY_FAILED.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert_with(|| e.to_string());
    }
    SAY_FAILED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// println! through [`say`].
#[macro_export]
macro_rules! say {
    () => { $crate::log::say(format_args!("\n")) };
    ($($t:tt)*) => { $crate::log::say(format_args!("{}\n", format_args!($($t)*))) };
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::event($crate::log::Level::Error, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::event($crate::log::Level::Warn, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::event($crate::log::Level::Info, format_args!($($t)*)) };
}

/// `2026-11-25 06:30:00Z`, UTC, without a date library.
fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Buffers bytes from the worker's stdout/stderr pipe and logs them a line
/// at a time, so that a traceback arrives as lines, not as one blob.
pub struct LineBuffer {
    buf: Vec<u8>,
}

/// A line longer than this is logged in pieces rather than held forever.
const MAX_LINE: usize = 8192;

impl LineBuffer {
    pub fn new() -> Self {
        LineBuffer { buf: Vec::new() }
    }

    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&str)) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.buf[start..]) {
            emit(&String::from_utf8_lossy(&self.buf[start..start + nl]));
            start += nl + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            emit(&String::from_utf8_lossy(&self.buf));
            self.buf.clear();
        }
    }

    /// Emits what is left without a newline (the pipe closed).
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.buf.is_empty() {
            emit(&String::from_utf8_lossy(&self.buf));
            self.buf.clear();
        }
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_588_200); // 2026-11-25 06:30:00
        assert_eq!(timestamp(t), "2026-11-25 06:30:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn lines_split_across_pushes() {
        let mut lb = LineBuffer::new();
        let mut got = Vec::new();
        lb.push(b"Trace", |l| got.push(l.to_owned()));
        lb.push(b"back\n  File \"x\"\nValue", |l| got.push(l.to_owned()));
        lb.finish(|l| got.push(l.to_owned()));
        assert_eq!(got, ["Traceback", "  File \"x\"", "Value"]);
    }

    #[test]
    fn captured_lines_are_kept_and_no_file_is_opened() {
        let dir = std::env::temp_dir().join(format!("fshim-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("never.log");
        capture(true);
        set_file(Some(&file)).expect("a no-op while capturing");
        crate::warn!("marker {}", 1);
        let got = take_captured();
        capture(false);
        // Other tests may log meanwhile: look for ours among theirs.
        assert!(got.iter().any(|l| l == "warning: marker 1"), "{got:?}");
        assert!(!file.exists(), "opened {} while capturing", file.display());
        let _ = std::fs::remove_dir_all(&dir); // dropped: a leftover temp dir harms nothing
    }

    #[test]
    fn an_endless_line_is_cut() {
        let mut lb = LineBuffer::new();
        let mut n = 0;
        lb.push(&vec![b'x'; MAX_LINE + 1], |_| n += 1);
        assert_eq!(n, 1);
    }
}
