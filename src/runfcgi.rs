//! `mysite.fcgi runfcgi`: the shim as a FastCGI server of its own, option for
//! option Django's old `manage.py runfcgi` (flup), for a web server that
//! connects to a socket (mod_fastcgi's FastCGIExternalServer, nginx
//! `fastcgi_pass`, lighttpd without `bin-path`) instead of spawning us.
//!
//! Lifecycle, in front of the data path: this module binds the socket,
//! daemonizes, writes the pidfile and supervises. Requests take the same path
//! as under a web server: `fastcgi::serve` in each prefork child (one Python
//! worker each), or `threaded::serve` (one Python, threads).
//!
//! ```text
//!  foreground --fork--> session leader --fork--> daemon: supervisor (no Python)
//!   waits on the ready pipe, exits 0              | listening socket, pidfile
//!   once the daemon listens                       +-fork-> child: fastcgi::serve on fd 0 -> python worker
//!                                                 +-fork-> child ...
//!                                                 +-- status pipe <- "ready" (and, with the hook, idle/busy)
//! ```
//!
//! Spares follow flup's prefork server: at least `maxspare` children, more
//! (up to `maxchildren`) when fewer than `minspare` are idle, and idle ones
//! beyond `maxspare` retired. Only `fastcgi::serve` knows when a child is
//! busy; it reports that through `App::on_busy` ([`report_busy`]). The
//! supervisor also grows the pool when connections wait in the listen queue
//! with no child taking them, and never retires a child it cannot tell is
//! idle.
//!
//! `debug=true` logs one line per request with how it ended. It does not
//! show tracebacks to visitors as flup's `debug=True` did: that is site.toml's
//! `debug` with `debug_allow` (FIELD_NOTES: flup's default leaked them).
//!
//! site.toml is looked for as `config::locate_runfcgi` says (beside the
//! binary, else the current directory), and a missing or broken one stops
//! the start before anything listens: a daemon that answers 500 to every
//! request is worse than an error at the prompt.
//!
//! Stop (SIGTERM from `kill $(cat pidfile)`, Ctrl-C) removes the socket file
//! first, so that a restarted server can bind at once, then lets children
//! finish their requests. A replaced binary (`mv`, new inode) makes the
//! supervisor re-execute itself keeping the listening socket: connections
//! wait in the listen queue meanwhile (FIELD_NOTES, "Lifecycle and reload").

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::app::App;
use crate::{config, fastcgi, signals, sys};

/// How a re-executed supervisor finds its listening socket:
/// `fd:dev:ino` (dev and ino of the unix socket file, 0 for TCP).
const LISTENER_ENV: &str = "FCGI_SHIM_RUNFCGI_LISTENER";
/// Pids of the children the previous image told to finish, comma-separated.
const CHILDREN_ENV: &str = "FCGI_SHIM_RUNFCGI_CHILDREN";

/// How long to wait for a live unix socket to go away before refusing it: the
/// seed's restart script starts the new server right after `kill`, and the old
/// one needs a moment to remove its socket.
const LIVE_SOCKET_WAIT: Duration = Duration::from_secs(2);
/// The same for a TCP port, which the old children hold until they exit.
const PORT_WAIT: Duration = Duration::from_secs(5);
/// Without the busy hook: a listen queue seen non-empty at every look for
/// this long means no child is free ...
const QUEUE_PATIENCE: Duration = Duration::from_millis(30);
/// ... looking this often while it is non-empty ...
const QUEUE_LOOK_FAST: Duration = Duration::from_millis(10);
/// ... and this often otherwise. Not on every connection: an idle child
/// takes it within microseconds, and waking the supervisor each time would
/// catch it there and mistake a busy stream for a full queue.
const QUEUE_LOOK: Duration = Duration::from_millis(100);
/// How often the supervisor checks whether the binary was replaced.
const STAMP_EVERY: Duration = Duration::from_secs(1);
/// A child that ends sooner than this without reason counts as a crash.
const MIN_LIFE: Duration = Duration::from_secs(1);
/// A child that lived this long ends any crash loop.
const STABLE_LIFE: Duration = Duration::from_secs(10);
/// Crashes in a row tolerated before starts are delayed.
const FREE_CRASHES: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Children have GRACE to finish their request after SIGTERM; then this
/// margin to stop their worker and exit, then SIGKILL.
const STOP_MARGIN: Duration = Duration::from_secs(2);

// Status bytes a child sends the supervisor, after its pid (4 bytes LE).
const READY: u8 = b'R';
const IDLE: u8 = b'I';
const BUSY: u8 = b'B';
const MESSAGE_LEN: usize = 5;

// ---------------------------------------------------------------------------
// Options

#[derive(Clone, Debug, PartialEq, Eq)]
enum Bind {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Prefork,
    Threaded,
}

/// The options of `runfcgi`, with Django's names and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Options {
    bind: Bind,
    method: Method,
    max_requests: u64,
    max_spare: usize,
    min_spare: usize,
    max_children: usize,
    daemonize: bool,
    pidfile: Option<PathBuf>,
    /// As given. A daemon changes to it (default `/`, Django's); the Python
    /// worker runs in it unless site.toml says `chdir` (default: site.toml's
    /// folder, so that a daemon's `/` is not the app's).
    workdir: Option<PathBuf>,
    /// None: left as inherited in the foreground, 022 for a daemon (Django's
    /// `become_daemon`).
    umask: Option<u32>,
    outlog: Option<PathBuf>,
    errlog: Option<PathBuf>,
    debug: bool,
}

/// The daemon's working directory when workdir= is not given (Django's).
const DEFAULT_WORKDIR: &str = "/";

/// Every option, as `name=VALUE` and one line of help.
const OPTIONS: &[(&str, &str)] = &[
    (
        "protocol=fcgi",
        "the protocol: fcgi is the only one (flup's scgi and ajp are not offered)",
    ),
    (
        "host=ADDRESS",
        "listen on TCP: an IP address (127.0.0.1, ::1, 0.0.0.0) or a host name; needs port",
    ),
    ("port=NUMBER", "the TCP port, 1-65535; needs host"),
    (
        "socket=PATH",
        "listen on a unix socket instead, mode set by umask; a stale one is replaced",
    ),
    (
        "method=prefork",
        "prefork: child processes, one Python each (default); threaded: one Python, threads",
    ),
    (
        "maxrequests=N",
        "prefork: a child is replaced after N requests (default 0: no limit)",
    ),
    (
        "maxspare=N",
        "prefork: at most N idle children are kept (default 5)",
    ),
    (
        "minspare=N",
        "prefork: at least N idle children are kept (default 2)",
    ),
    (
        "maxchildren=N",
        "at most N children (prefork) or threads (threaded) (default 50)",
    ),
    ("daemonize=BOOL", "run in the background (default true)"),
    (
        "pidfile=PATH",
        "write the server's pid here once it listens; removed when it stops",
    ),
    (
        "workdir=DIR",
        "the daemon's cwd (default /); if given, the app's too unless site.toml sets chdir",
    ),
    (
        "umask=OCTAL",
        "the server's umask; sets the socket's mode (default 022 as a daemon), see below",
    ),
    (
        "outlog=PATH",
        "the daemon's stdout, appended (default /dev/null): what the app prints",
    ),
    (
        "errlog=PATH",
        "the daemon's stderr, appended (default /dev/null): the log, the app's stderr",
    ),
    (
        "debug=BOOL",
        "log one line per request (default false); no tracebacks to visitors, see below",
    ),
];

fn option_names() -> impl Iterator<Item = &'static str> {
    OPTIONS
        .iter()
        .map(|(spec, _)| spec.split('=').next().unwrap_or(spec))
}

fn help(prog: &str) -> String {
    let mut s = format!(
        "usage: {prog} runfcgi [option=value ...]

Serves the site over FastCGI on a socket of its own, as Django's
`manage.py runfcgi` did, for a web server that connects to it
(Apache mod_proxy_fcgi or FastCGIExternalServer, lighttpd \"socket\" or
\"host\"/\"port\", nginx fastcgi_pass). Give socket=PATH, or host=ADDRESS
and port=NUMBER. Paths are relative to the directory it is started from.
BOOL is true/false/yes/no/1/0.

site.toml is the file FCGI_SHIM_SITE names, else the one beside {prog} as
invoked, else ./site.toml in the current directory. A missing or invalid
site.toml is an error at start: nothing is started.

"
    );
    for (spec, text) in OPTIONS {
        s.push_str(&format!("  {spec:<16}{text}\n"));
    }
    s.push_str(&format!(
        "
A web server running as another user (www-data) needs write permission on
the socket to connect: with the default umask 022 the socket is rwxr-xr-x
and it fails with \"Permission denied\" (Apache: 503 and AH02454 in its
error log; lighttpd: 503, \"establishing connection failed\"; nginx: 502).
With umask=000 the socket is rwxrwxrwx: any local user can then connect
to it, so keep it in a directory only you and the web server can enter
(mkdir -m 0750 ~/run, group www-data). Or use umask=007 when the socket's
group is the web server's (a setgid directory of that group). The umask
also applies to files the app creates.

With debug=true one line per request is logged. Tracebacks are not shown
in the browser as with Django's runfcgi debug: set debug = true and
debug_allow in site.toml for that (for the listed addresses only).

The app runs in site.toml's chdir if it is set, else in workdir=DIR if
given, else in site.toml's folder. The daemon itself changes to workdir
(default /, as Django's did).

A host name is looked up (/etc/hosts, DNS); its first IPv4 address is used
if it has one. With host=0.0.0.0 or host=:: it listens on every address:
anyone who can reach the port can talk FastCGI to the app; set
FCGI_WEB_SERVER_ADDRS=127.0.0.1 (comma-separated addresses) to accept only
the web server.

examples:
  {prog} runfcgi method=threaded host=127.0.0.1 port=3033
  {prog} runfcgi method=prefork socket=/home/user/mysite.sock pidfile=django.pid
  {prog} runfcgi daemonize=false socket=/tmp/mysite.sock
  {prog} runfcgi socket=/home/user/run/mysite.sock umask=000 pidfile=/home/user/run/mysite.pid

Stop it with Ctrl-C in the foreground, or kill `cat PIDFILE`. Touching
site.toml (or this program) reloads the app; replacing this program with `mv`
restarts the server on the new binary without closing the socket. Started
again with the socket= and pidfile= of a server that runs, a new server takes
its place once it is ready (its socket moved over the old one's path, the
old server told to stop): no request finds no socket, and a daemon that
cannot import the app leaves the old server serving.
"
    ));
    s
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        // t and f: Django's runfcgi took them too.
        "true" | "yes" | "1" | "t" => Ok(true),
        "false" | "no" | "0" | "f" => Ok(false),
        _ => Err(format!(
            "{name}={v} is not valid; use true or false (also yes/no, 1/0)"
        )),
    }
}

/// A whole number up to u32::MAX. `zero`: what 0 means where 0 is allowed
/// (said in the message); None: at least 1.
fn parse_count(name: &str, v: &str, zero: Option<&str>) -> Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (n > 0 || zero.is_some()) && n <= u32::MAX as u64 => Ok(n),
        _ => Err(format!(
            "{name}={v} is not valid; give a whole number, {}",
            match zero {
                Some(meaning) => format!("0 or more (0: {meaning})"),
                None => "at least 1".to_owned(),
            }
        )),
    }
}

/// The address to listen on for `host=v`: an IP literal ("[::1]" as in
/// URLs, or bare "::1"), or a name looked up as Django's runfcgi did
/// (flup's socket.bind). musl's resolver, linked statically, reads
/// /etc/hosts and asks the DNS servers of /etc/resolv.conf; no NSS modules.
fn parse_host(v: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    // localhost without a lookup: 127.0.0.1 whatever /etc/hosts says first.
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    }
    let hint = "give an IP address (e.g. host=127.0.0.1, host=::1) or a name in /etc/hosts or DNS";
    if bare.is_empty() {
        return Err(format!("host= is empty; {hint}"));
    }
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("host={v}: cannot look up this name ({e}); {hint}"))?
        .collect();
    // flup bound an AF_INET socket: IPv4 first, as Django users expect of
    // a name that has both.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("host={v}: the name has no address; {hint}"))
}

fn parse_umask(v: &str) -> Result<u32, String> {
    let digits = v.strip_prefix("0o").unwrap_or(v);
    match u32::from_str_radix(digits, 8) {
        Ok(n) if n <= 0o777 && !digits.is_empty() => Ok(n),
        _ => Err(format!(
            "umask={v} is not valid; give octal digits from 000 to 777, e.g. umask=022 or umask=007"
        )),
    }
}

fn parse_path(name: &str, v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        let example = match name {
            "socket" => "/home/user/mysite.sock",
            "pidfile" => "/home/user/mysite.pid",
            "workdir" => "/home/user/myproject",
            "outlog" => "/home/user/logs/runfcgi-out.log",
            _ => "/home/user/logs/runfcgi-err.log",
        };
        return Err(format!(
            "{name}= is empty; give a path, e.g. {name}={example}"
        ));
    }
    Ok(PathBuf::from(v))
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn unknown(name: &str) -> String {
    let names: Vec<&str> = option_names().collect();
    let hint = names
        .iter()
        .map(|n| (distance(name, n), n))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, n)| format!("did you mean `{n}`? "))
        .unwrap_or_default();
    format!(
        "unknown option `{name}`; {hint}valid options are {}",
        names.join(", ")
    )
}

/// Parses `option=value` arguments as Django did (names are case-insensitive,
/// a later value wins). Ok(None) when help was asked for.
fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        bind: Bind::Unix(PathBuf::new()),
        method: Method::Prefork,
        max_requests: 0,
        max_spare: 5,
        min_spare: 2,
        max_children: 50,
        daemonize: true,
        pidfile: None,
        workdir: None,
        umask: None,
        outlog: None,
        errlog: None,
        debug: false,
    };
    let (mut socket, mut host, mut port) = (None, None, None);
    for arg in args {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(v)),
            None => (arg.to_ascii_lowercase(), None),
        };
        if name == "help" {
            return Ok(None);
        }
        // A bare boolean option means true (`runfcgi debug`).
        let Some(v) = value.or(matches!(name.as_str(), "daemonize" | "debug").then_some("true"))
        else {
            return Err(
                match OPTIONS
                    .iter()
                    .find(|(s, _)| s.split('=').next() == Some(&name))
                {
                    Some((spec, _)) => format!("option `{name}` needs a value, as in {spec}"),
                    None => unknown(&name),
                },
            );
        };
        match name.as_str() {
            "protocol" if v.eq_ignore_ascii_case("fcgi") => {}
            "protocol" => {
                return Err(format!(
                    "protocol={v} is not supported: fcgi-shim speaks FastCGI only (protocol=fcgi)"
                ));
            }
            "host" => host = Some(v),
            "port" => {
                port = Some(
                    v.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| p > 0)
                        .ok_or_else(|| {
                            format!("port={v} is not valid; give a TCP port from 1 to 65535")
                        })?,
                );
            }
            "socket" => socket = Some(parse_path("socket", v)?),
            "method" => {
                o.method = match v.to_ascii_lowercase().as_str() {
                    // fork and thread: the aliases Django accepted.
                    "prefork" | "fork" => Method::Prefork,
                    "threaded" | "thread" => Method::Threaded,
                    _ => {
                        return Err(format!(
                            "method={v} is not valid; use method=prefork (processes) or method=threaded (threads)"
                        ));
                    }
                }
            }
            "maxrequests" => o.max_requests = parse_count(&name, v, Some("no limit"))?,
            "maxspare" => o.max_spare = parse_count(&name, v, None)? as usize,
            "minspare" => {
                o.min_spare = parse_count(&name, v, Some("no idle child kept in reserve"))? as usize
            }
            "maxchildren" => o.max_children = parse_count(&name, v, None)? as usize,
            "daemonize" => o.daemonize = parse_bool(&name, v)?,
            "debug" => o.debug = parse_bool(&name, v)?,
            "pidfile" => o.pidfile = Some(parse_path(&name, v)?),
            "workdir" => o.workdir = Some(parse_path(&name, v)?),
            "outlog" => o.outlog = Some(parse_path(&name, v)?),
            "errlog" => o.errlog = Some(parse_path(&name, v)?),
            "umask" => o.umask = Some(parse_umask(v)?),
            _ => return Err(unknown(&name)),
        }
    }
    o.bind = match (socket, host, port) {
        (Some(s), None, None) => Bind::Unix(s),
        (None, Some(h), Some(p)) => Bind::Tcp(parse_host(h, p)?),
        (Some(_), _, _) => {
            return Err("give socket=PATH, or host=ADDRESS and port=NUMBER, not both".into());
        }
        (None, Some(_), None) => {
            return Err("host needs port=NUMBER too (or use socket=PATH instead)".into());
        }
        (None, None, Some(_)) => {
            return Err(
                "port needs host=ADDRESS too, e.g. host=127.0.0.1 (or use socket=PATH instead)"
                    .into(),
            );
        }
        (None, None, None) => {
            return Err(
                "give socket=PATH, or host=ADDRESS and port=NUMBER, to say where to listen".into(),
            );
        }
    };
    // flup's bounds, made consistent: maxchildren caps everything.
    o.max_spare = o.max_spare.min(o.max_children);
    o.min_spare = o.min_spare.min(o.max_spare);
    Ok(Some(o))
}

/// What `parse` changed or leaves unused of the options given, in words:
/// spares beyond their bounds, and prefork's options under method=threaded.
fn adjusted(args: &[String], o: &Options) -> Vec<String> {
    // The last value given for `name` (a later one wins, as in `parse`).
    let given = |name: &str| {
        args.iter().rev().find_map(|a| {
            let (n, v) = a.split_once('=')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    };
    let mut notes = Vec::new();
    if o.method == Method::Threaded {
        let unused: Vec<&str> = ["maxrequests", "minspare", "maxspare"]
            .into_iter()
            .filter(|n| given(n).is_some())
            .collect();
        if !unused.is_empty() {
            notes.push(format!(
                "{} apply to method=prefork only: method=threaded is one process (maxchildren \
                 caps its threads; site.toml's max_requests recycles its Python worker)",
                unused.join(", ")
            ));
        }
        return notes;
    }
    let number = |name: &str| given(name).and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = number("maxspare").filter(|&n| n > o.max_spare) {
        notes.push(format!(
            "maxspare={n} is more than maxchildren={}: at most {} idle children",
            o.max_children, o.max_spare
        ));
    }
    if let Some(n) = number("minspare").filter(|&n| n > o.min_spare) {
        notes.push(format!(
            "minspare={n} is more than maxspare={}: {} idle children kept in reserve",
            o.max_spare, o.min_spare
        ));
    }
    notes
}

impl Options {
    /// Paths made absolute against the directory runfcgi started in: a
    /// daemon changes to workdir before it uses them (where Django would
    /// have written `pidfile=django.pid` to /django.pid).
    fn absolute(mut self) -> Options {
        let abs = |p: &Path| config::absolute(p);
        if let Bind::Unix(p) = &self.bind {
            self.bind = Bind::Unix(abs(p));
        }
        self.pidfile = self.pidfile.as_deref().map(abs);
        self.workdir = self.workdir.as_deref().map(abs);
        self.outlog = self.outlog.as_deref().map(abs);
        self.errlog = self.errlog.as_deref().map(abs);
        self
    }

    /// The options as arguments again, for a re-executed image.
    fn to_args(&self) -> Vec<String> {
        let mut a = match &self.bind {
            Bind::Unix(p) => vec![format!("socket={}", p.display())],
            Bind::Tcp(addr) => vec![
                format!("host={}", addr.ip()),
                format!("port={}", addr.port()),
            ],
        };
        a.push(
            match self.method {
                Method::Prefork => "method=prefork",
                Method::Threaded => "method=threaded",
            }
            .into(),
        );
        a.push(format!("maxrequests={}", self.max_requests));
        a.push(format!("maxspare={}", self.max_spare));
        a.push(format!("minspare={}", self.min_spare));
        a.push(format!("maxchildren={}", self.max_children));
        a.push(format!("daemonize={}", self.daemonize));
        a.push(format!("debug={}", self.debug));
        if let Some(m) = self.umask {
            a.push(format!("umask={m:03o}"));
        }
        for (name, p) in [
            ("pidfile", &self.pidfile),
            ("workdir", &self.workdir),
            ("outlog", &self.outlog),
            ("errlog", &self.errlog),
        ] {
            if let Some(p) = p {
                a.push(format!("{name}={}", p.display()));
            }
        }
        a
    }
}

// ---------------------------------------------------------------------------
// The listening socket

struct Listener {
    fd: OwnedFd,
    bind: Bind,
    /// (dev, ino) of the socket file we created: removed at stop only if the
    /// path still names it (a restarted server may have bound its own).
    file: Option<(u64, u64)>,
    /// A restart's socket, bound beside the old one's path: that path, which
    /// it takes over once ready ([`Listener::take_over`]).
    takes_over: Option<PathBuf>,
}

impl Listener {
    fn describe(&self) -> String {
        match (&self.bind, &self.takes_over) {
            (_, Some(p)) | (Bind::Unix(p), None) => format!("unix socket {}", p.display()),
            (Bind::Tcp(a), None) => format!("{a}"),
        }
    }

    /// A restart's socket goes live: the new socket, bound beside the old
    /// one's path, is renamed over it (atomically: each connection finds
    /// one server or the other, never no socket), and the old server is
    /// told to stop. It finishes what it has queued, and leaves the path
    /// alone since it no longer names its socket.
    fn take_over(&mut self, path: &Path, old: libc::pid_t) -> Result<(), String> {
        let Bind::Unix(staged) = &self.bind else {
            return Ok(());
        };
        fs::rename(staged, path).map_err(|e| {
            format!(
                "cannot move the new socket {} over {}: {e}",
                staged.display(),
                path.display()
            )
        })?;
        self.bind = Bind::Unix(path.to_path_buf());
        self.takes_over = None;
        // SAFETY: kill(2) of the server the pidfile named and that listened.
        unsafe { libc::kill(old, libc::SIGTERM) };
        crate::info!(
            "runfcgi: took over {} from pid {old}, told to stop",
            path.display()
        );
        Ok(())
    }

    fn remove_file(&self) {
        let (Bind::Unix(path), Some(id)) = (&self.bind, self.file) else {
            return;
        };
        if fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id)
            && let Err(e) = fs::remove_file(path)
        {
            crate::warn!("cannot remove socket {}: {e}", path.display());
        }
    }
}

fn bind(b: &Bind) -> Result<Listener, String> {
    let (fd, file) = match b {
        Bind::Unix(path) => {
            let (fd, id) = bind_unix(path)?;
            (fd, Some(id))
        }
        Bind::Tcp(addr) => (bind_tcp(*addr)?, None),
    };
    // SAFETY: listen on a bound socket we own. Again for TCP: std's backlog
    // is small, and a full queue refuses connections (flup used SOMAXCONN).
    if unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) } < 0 {
        return Err(format!(
            "cannot listen on {}: {}",
            describe_bind(b),
            io::Error::last_os_error()
        ));
    }
    Ok(Listener {
        fd,
        bind: b.clone(),
        file,
        takes_over: None,
    })
}

fn describe_bind(b: &Bind) -> String {
    match b {
        Bind::Unix(p) => p.display().to_string(),
        Bind::Tcp(a) => a.to_string(),
    }
}

fn bind_tcp(addr: SocketAddr) -> Result<OwnedFd, String> {
    let until = Instant::now() + PORT_WAIT;
    loop {
        // std sets SO_REUSEADDR (a restart does not wait for TIME_WAIT) and
        // close-on-exec.
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(OwnedFd::from(l)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(format!(
                    "cannot listen on {addr}: {e}; another server uses this port (stop it, or choose another port=)"
                ));
            }
            Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
        }
    }
}

fn unix_addr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), String> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(format!(
            "socket={}: a unix socket path must be shorter than {} bytes (this one has {}); choose a shorter one",
            path.display(),
            addr.sun_path.len(),
            bytes.len()
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn unix_socket(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory effects.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | flags,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

enum Probe {
    Absent,
    /// A socket file nobody listens on (a server that was killed).
    Stale,
    Live,
    NotSocket,
    Failed(io::Error),
}

/// What is at `path`: connect() tells a live server from a stale file.
fn probe(path: &Path, addr: &libc::sockaddr_un, len: libc::socklen_t) -> Probe {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Probe::Absent,
        Err(e) => return Probe::Failed(e),
        Ok(m) if !m.file_type().is_socket() => return Probe::NotSocket,
        Ok(_) => {}
    }
    // Non-blocking, so that a live server with a full queue cannot hang us.
    let fd = match unix_socket(libc::SOCK_NONBLOCK) {
        Ok(fd) => fd,
        Err(e) => return Probe::Failed(e),
    };
    // SAFETY: addr is a sockaddr_un and len its used length.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if r == 0 {
        return Probe::Live;
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Probe::Stale,
        Some(libc::EAGAIN | libc::EINPROGRESS) => Probe::Live,
        Some(libc::ENOENT) => Probe::Absent,
        _ => Probe::Failed(e),
    }
}

/// Does process `pid` hold a socket listening on the unix socket `path`?
/// /proc/net/unix names each listening socket's path and inode, and
/// /proc/PID/fd links to `socket:[INODE]`. (Not the pid that called
/// listen(2), SO_PEERCRED's: a daemon listens before it forks.)
fn listens_on(pid: libc::pid_t, path: &Path) -> bool {
    let Ok(table) = fs::read("/proc/net/unix") else {
        return false;
    };
    let table = String::from_utf8_lossy(&table);
    // The name a socket was bound with stays in the table: a server that
    // took over is listed under its staged name, PATH.<pid>.new.
    let shown = format!(" {}", path.display());
    let named = |l: &str| {
        l.rfind(&shown).is_some_and(|at| {
            let rest = &l[at + shown.len()..];
            rest.is_empty()
                || rest
                    .strip_prefix('.')
                    .and_then(|r| r.strip_suffix(".new"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let inodes: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|l| named(l))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Flags __SO_ACCEPTCON: listening.
            (f.get(3) == Some(&"00010000"))
                .then(|| f.get(6).copied())
                .flatten()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| e.ok().and_then(|e| fs::read_link(e.path()).ok()))
        .any(|link| {
            let link = link.to_string_lossy();
            link.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .is_some_and(|n| inodes.contains(&n))
        })
}

/// A restart: `pidfile` names the server that listens on `path`, which
/// this one then replaces ([`Listener::take_over`]).
/// Not when the path answers no one (the old server, told to stop by a
/// kill-then-start script, already removed it): then binding the path at
/// once, as before, leaves no moment without a socket.
fn restarting(path: &Path, pidfile: &Path) -> Option<libc::pid_t> {
    let named: libc::pid_t = fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let (addr, len) = unix_addr(path).ok()?;
    (named != sys::getpid() as libc::pid_t
        && matches!(probe(path, &addr, len), Probe::Live)
        && listens_on(named, path))
    .then_some(named)
}

/// Takes the lock of the starts that use `pidfile`: an flock on
/// `PIDFILE.lock` (kept across daemonize's fork: the lock goes with the open
/// file), waiting while another start holds it. A file of its own, not the
/// pidfile: that one is replaced by rename, and a script may hold its own
/// lock on it (`flock site.pid ./mysite.fcgi runfcgi ...`). The file stays
/// (removing a lock file races with the next start). None where it cannot
/// be made or locked (a read-only folder, a file system without locks): the
/// start goes on unguarded, as before there was a lock.
fn lock_starts(pidfile: &Path) -> Result<Option<fs::File>, String> {
    let mut name = pidfile.as_os_str().to_owned();
    name.push(".lock");
    // Read-write: NFS emulates flock with POSIX locks, which need it.
    let Ok(f) = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&name)
    else {
        return Ok(None);
    };
    let mut told = false;
    loop {
        // SAFETY: flock on a descriptor we own; no memory effects.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(f));
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        if signals::stop_requested().is_some() {
            return Err(format!(
                "stopped while waiting for another start with pidfile={}",
                pidfile.display()
            ));
        }
        if !std::mem::replace(&mut told, true) {
            crate::info!(
                "runfcgi: another start with pidfile={} is under way; waiting for it",
                pidfile.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bind_unix(path: &Path) -> Result<(OwnedFd, (u64, u64)), String> {
    let (addr, len) = unix_addr(path)?;
    let shown = path.display();
    let until = Instant::now() + LIVE_SOCKET_WAIT;
    let fd = loop {
        match probe(path, &addr, len) {
            Probe::Absent => {}
            Probe::Stale => match fs::remove_file(path) {
                Ok(()) => {
                    crate::info!("removed the stale socket {shown} (no server listened on it)")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!(
                        "{shown} is a stale socket (no server listens on it) and cannot be removed: {e}"
                    ));
                }
            },
            Probe::Live if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Probe::Live => {
                return Err(format!(
                    "a server is already listening on {shown}; stop it first (kill `cat PIDFILE`) or choose another socket="
                ));
            }
            Probe::NotSocket => {
                return Err(format!(
                    "{shown} exists and is not a socket; remove it or choose another socket="
                ));
            }
            Probe::Failed(e) => return Err(format!("cannot check {shown}: {e}")),
        }
        let fd = unix_socket(0).map_err(|e| format!("cannot create a unix socket: {e}"))?;
        // SAFETY: addr is a sockaddr_un and len its used length.
        let r = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
        if r == 0 {
            break fd;
        }
        let e = io::Error::last_os_error();
        // Another process created the file between probe and bind: look again.
        if e.raw_os_error() != Some(libc::EADDRINUSE) || Instant::now() >= until {
            return Err(format!("cannot bind the unix socket {shown}: {e}"));
        }
    };
    let m =
        fs::symlink_metadata(path).map_err(|e| format!("cannot stat {shown} after bind: {e}"))?;
    Ok((fd, (m.dev(), m.ino())))
}

/// The listening socket a previous image of this supervisor handed over.
fn inherited(opts: &Options) -> Result<Option<(Listener, Vec<libc::pid_t>)>, String> {
    let Some(v) = std::env::var_os(LISTENER_ENV) else {
        return Ok(None);
    };
    let pids = std::env::var(CHILDREN_ENV).unwrap_or_default();
    // SAFETY: single-threaded at start; no other thread reads the environment.
    unsafe {
        std::env::remove_var(LISTENER_ENV);
        std::env::remove_var(CHILDREN_ENV);
    }
    let v = v.to_string_lossy();
    let mut parts = v.split(':').map(|p| p.parse::<u64>().ok());
    let (Some(Some(fd)), Some(Some(dev)), Some(Some(ino))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{LISTENER_ENV}={v} is not fd:dev:ino"));
    };
    let fd = RawFd::try_from(fd).map_err(|_| format!("{LISTENER_ENV}={v}: bad descriptor"))?;
    if fd <= 2 || !sys::is_listening_socket(fd) {
        return Err(format!(
            "{LISTENER_ENV}={v}: descriptor {fd} is not a listening socket"
        ));
    }
    // Dropped result: at worst the socket would leak into a re-exec.
    let _ = sys::set_cloexec(fd, true);
    let children = pids.split(',').filter_map(|p| p.parse().ok()).collect();
    Ok(Some((
        Listener {
            // SAFETY: the previous image passed this descriptor to us, and
            // nothing else in this image owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            bind: opts.bind.clone(),
            file: (ino != 0).then_some((dev, ino)),
            takes_over: None,
        },
        children,
    )))
}

// ---------------------------------------------------------------------------
// Daemon, pidfile

enum Forked {
    /// In the process started from the shell: exit with this code.
    Foreground(i32),
    /// In the daemon, with the pipe on which to say "ready" or why not.
    Daemon(ReadyPipe),
}

/// The daemon's half of the pipe the foreground process waits on.
struct ReadyPipe(Option<OwnedFd>);

impl ReadyPipe {
    fn send(&mut self, msg: &str) {
        if let Some(fd) = self.0.take() {
            let mut f = fs::File::from(fd);
            // Dropped: if the foreground is gone, nobody is waiting to hear.
            let _ = f.write_all(msg.as_bytes());
        }
    }
    fn ready(&mut self) {
        self.send(&format!("ok {}\n", sys::getpid()));
    }
    fn failed(&mut self, why: &str) {
        self.send(&format!("{why}\n"));
    }
}

/// Django's `become_daemon`: fork, setsid, fork. The foreground process
/// waits until the daemon says it is ready (or why it is not), so that a
/// script that starts the server can rely on it listening once we exit.
fn daemonize(listener: &Listener) -> Forked {
    let (r, w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            crate::error!("cannot create a pipe: {e}");
            listener.remove_file();
            return Forked::Foreground(1);
        }
    };
    // SAFETY: this process is single-threaded, so the child may run any code.
    match unsafe { libc::fork() } {
        -1 => {
            crate::error!("cannot fork the daemon: {}", io::Error::last_os_error());
            // Nothing started: no socket file of ours (a restart's staged
            // one included) is left behind.
            listener.remove_file();
            Forked::Foreground(1)
        }
        0 => {
            drop(r);
            let mut pipe = ReadyPipe(Some(w));
            // SAFETY: setsid has no memory effects; it cannot fail in a child
            // (which is no process group leader).
            unsafe { libc::setsid() };
            // Second fork: the daemon is no session leader, so it can never
            // acquire a controlling terminal.
            // SAFETY: single-threaded, as above.
            match unsafe { libc::fork() } {
                -1 => {
                    pipe.failed(&format!(
                        "cannot fork the daemon: {}",
                        io::Error::last_os_error()
                    ));
                    // SAFETY: _exit ends this intermediate process at once.
                    unsafe { libc::_exit(1) }
                }
                0 => Forked::Daemon(pipe),
                // SAFETY: as above; nothing of this process needs cleaning up.
                _ => unsafe { libc::_exit(0) },
            }
        }
        leader => {
            drop(w);
            let mut status = 0;
            // SAFETY: status is a valid out-parameter; the leader exits at once.
            while unsafe { libc::waitpid(leader, &mut status, 0) } < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
            let mut msg = String::new();
            let mut f = fs::File::from(r);
            // read_to_string retries EINTR; EOF comes when the daemon says
            // its word or dies.
            if let Err(e) = f.read_to_string(&mut msg) {
                msg = format!("cannot hear from the daemon: {e}");
            }
            match msg.trim_end().strip_prefix("ok ") {
                Some(pid) => {
                    crate::info!(
                        "runfcgi: listening on {}, in the background as pid {pid}",
                        listener.describe()
                    );
                    Forked::Foreground(0)
                }
                None => {
                    let msg = msg.trim_end();
                    crate::error!(
                        "{}",
                        if msg.is_empty() {
                            "the daemon ended before it was ready (see errlog or the log file)"
                        } else {
                            msg
                        }
                    );
                    listener.remove_file();
                    Forked::Foreground(1)
                }
            }
        }
    }
}

fn workdir_unusable(dir: &Path, e: &io::Error) -> String {
    format!("workdir={}: cannot change to it: {e}", dir.display())
}

/// The daemon's side after the forks: working directory and stdio.
fn settle_daemon(opts: &Options) -> Result<(), String> {
    let workdir = opts
        .workdir
        .as_deref()
        .unwrap_or(Path::new(DEFAULT_WORKDIR));
    std::env::set_current_dir(workdir).map_err(|e| workdir_unusable(workdir, &e))?;
    let open = |path: Option<&Path>, name: &str, write: bool| {
        let p = path.unwrap_or(Path::new("/dev/null"));
        OpenOptions::new()
            .read(!write)
            .append(write)
            .create(write && path.is_some())
            .mode(0o600)
            .open(p)
            .map_err(|e| format!("{name}={}: cannot open it: {e}", p.display()))
    };
    let files = [
        open(None, "stdin", false)?,
        open(opts.outlog.as_deref(), "outlog", true)?,
        open(opts.errlog.as_deref(), "errlog", true)?,
    ];
    for (target, f) in files.iter().enumerate() {
        // SAFETY: dup2 onto stdio of descriptors we own.
        if unsafe { libc::dup2(f.as_raw_fd(), target as RawFd) } < 0 {
            return Err(format!(
                "cannot redirect stdio: {}",
                io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Writes the pid atomically (temp file, then rename), so that a reader
/// never sees a half-written pid; in place when the directory does not let
/// us create the temp file but the pidfile itself is ours to write (made
/// beforehand by root in /run, say, as Django's runfcgi allowed).
fn write_pidfile(path: &Path) -> io::Result<()> {
    let pid = sys::getpid();
    let text = format!("{pid}\n");
    let name = path
        .file_name()
        .map_or("pid".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.{pid}.tmp"));
    let new_file = |p: &Path| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(p)
    };
    match new_file(&tmp) {
        Ok(mut f) => {
            let result = f
                .write_all(text.as_bytes())
                .and_then(|()| fs::rename(&tmp, path));
            if result.is_err() {
                let _ = fs::remove_file(&tmp); // dropped: it may not exist
            }
            result
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => new_file(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e2| {
                let dir = path.parent().unwrap_or(Path::new("/"));
                io::Error::new(
                    e2.kind(),
                    format!(
                        "{e2} (and {} does not let this user create files: {e})",
                        dir.display()
                    ),
                )
            }),
        Err(e) => Err(e),
    }
}

/// Warns, where the person starting the server sees it, when `path` names
/// another runfcgi server that is running: the new pid will replace it.
fn warn_if_pidfile_taken(path: &Path) {
    let Some(other) = fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&p| {
            p != sys::getpid()
                && fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"runfcgi"))
        })
    else {
        return;
    };
    crate::warn!(
        "pidfile={} names pid {other}, another runfcgi server that is running (or still \
         stopping); it will name this one, so `kill $(cat {})` will stop only this server: give \
         each server a pidfile of its own",
        path.display(),
        path.display()
    );
}

/// Removes the pidfile if it still names this process: the restart script
/// removes it and a new server writes its own while this one still stops.
/// One that was written in place (see [`write_pidfile`]) is emptied where
/// it cannot be removed: a pid left in it could later name another process.
fn remove_pidfile(path: &Path) {
    let ours = fs::read_to_string(path).is_ok_and(|s| s.trim() == sys::getpid().to_string());
    if !ours {
        return;
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            if let Err(e) = OpenOptions::new().write(true).truncate(true).open(path) {
                crate::warn!("cannot remove or empty pidfile {}: {e}", path.display());
            }
        }
        Err(e) => crate::warn!("cannot remove pidfile {}: {e}", path.display()),
    }
}

// ---------------------------------------------------------------------------
// Entry point

pub fn main(prog: &str, script: &Path, args: &[String]) -> i32 {
    let opts = match parse(args) {
        Ok(None) => {
            crate::log::say(format_args!("{}", help(prog)));
            return 0;
        }
        Ok(Some(o)) => o.absolute(),
        Err(msg) => {
            eprintln!("{prog} runfcgi: {msg}\n(`{prog} runfcgi help` lists the options)");
            return 2;
        }
    };
    if std::env::var_os(LISTENER_ENV).is_none() {
        for note in adjusted(args, &opts) {
            crate::warn!("runfcgi: {note}");
        }
    }
    // A re-executed image serves on whatever site.toml says now: a server
    // that is up must not die of a config being edited during an `mv`. (It
    // inherits its listener: `inherited` below takes it, or exits.)
    let reexecuting = std::env::var_os(LISTENER_ENV).is_some();
    // Located now, before any chdir: the children find it through the
    // environment (a relative FCGI_SHIM_SITE would be read against workdir).
    let (site_file, also_looked) = config::locate_runfcgi(script);
    // SAFETY: single-threaded; no other thread reads the environment.
    unsafe { std::env::set_var("FCGI_SHIM_SITE", &site_file) };
    let site = match config::load(&site_file) {
        Ok(site) => {
            if let Err(e) = crate::log::set_file(site.log_file.as_deref()) {
                crate::warn!("cannot open log_file: {e}");
            }
            Some(site)
        }
        // As under a web server: up, answering 500, until fixed and touched.
        Err(e) if reexecuting => {
            crate::warn!("{e}; requests get 500 until it is fixed");
            None
        }
        // Before anything listens or forks: the person at the prompt (or the
        // restart script) sees why, and no daemon answers 500 to everyone.
        Err(e) => {
            let also = also_looked
                .map(|p| format!(" (nor is there {})", p.display()))
                .unwrap_or_default();
            eprintln!("{prog} runfcgi: {e}{also}\nnothing was started");
            return 1;
        }
    };
    crate::log::enable_syslog();
    crate::worker::set_runfcgi_workers(crate::worker::RunfcgiWorkers {
        workdir: opts.workdir.clone(),
        stdout_to_outlog: opts.daemonize && opts.outlog.is_some(),
    });
    if let Bind::Tcp(addr) = &opts.bind
        && !reexecuting
        && addr.ip().is_unspecified()
        // Unset: everyone may connect (an empty value refuses every peer).
        && std::env::var_os("FCGI_WEB_SERVER_ADDRS").is_none()
    {
        crate::warn!(
            "runfcgi: listening on {addr}, every address of this machine: anyone who can reach \
             port {} can talk FastCGI to the app and set any CGI variable it sees; use \
             host=127.0.0.1, or set FCGI_WEB_SERVER_ADDRS=127.0.0.1 (the web server's \
             addresses, comma-separated) so that only those are accepted",
            addr.port()
        );
    }
    let inherited = match inherited(&opts) {
        Ok(i) => i,
        Err(msg) => {
            crate::error!("re-executed runfcgi: {msg}");
            return 1;
        }
    };
    if let Some(mask) = opts.umask.or(opts.daemonize.then_some(0o022)) {
        // SAFETY: umask has no memory effects.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    // Two restarts at once would both take over from the running server,
    // and the one whose socket was renamed over first would go on running,
    // reached by no one and named by no pidfile: a start holds the lock
    // until it has written its pidfile, and the next one waits, then takes
    // over from it.
    // (A start that may be a restart: a new one, on a unix socket, with a
    // pidfile.)
    let restartable = match (&opts.bind, &opts.pidfile, &inherited) {
        (Bind::Unix(path), Some(pidfile), None) => Some((path, pidfile)),
        _ => None,
    };
    let start_lock = match restartable.map(|(_, pidfile)| lock_starts(pidfile)) {
        Some(Ok(lock)) => lock,
        Some(Err(msg)) => {
            crate::error!("{msg}");
            return 1;
        }
        None => None,
    };
    // Started again with the socket= and pidfile= of a running server (a
    // restart): the new socket is bound beside the old one's path and takes
    // its place only once this server is ready, so that no connection
    // finds no socket, and a start that fails leaves the old one serving.
    let takeover = restartable
        .and_then(|(path, pidfile)| {
            restarting(path, pidfile).map(|old| {
                let mut staged = path.clone().into_os_string();
                staged.push(format!(".{}.new", sys::getpid()));
                (path.clone(), PathBuf::from(staged), old)
            })
        })
        // A name too long for a unix socket: the old way (wait for the old
        // server to go, then bind).
        .filter(|(_, staged, _)| unix_addr(staged).is_ok());
    let first_bind = match &takeover {
        Some((_, staged, _)) => Bind::Unix(staged.clone()),
        None => opts.bind.clone(),
    };
    let (mut listener, retiring) = match inherited {
        Some(i) => i,
        None => match bind(&first_bind) {
            Ok(mut l) => {
                match &takeover {
                    Some((path, _, _)) => l.takes_over = Some(path.clone()),
                    None => note_socket_mode(prog, &l, opts.umask.is_some()),
                }
                (l, Vec::new())
            }
            Err(msg) => {
                crate::error!("{msg}");
                return 1;
            }
        },
    };
    // A daemon that cannot load the app would answer 500 to everyone, the
    // reason in an errlog that defaults to /dev/null: the app is imported
    // once here first, where the person at the prompt sees the traceback.
    // (In the foreground the log shows it anyway, and a re-executed server
    // keeps serving whatever the app does.) After the bind: a restart's
    // requests wait in the new socket's queue meanwhile, instead of finding
    // no socket at all.
    if let Some(site) = site.as_ref().filter(|_| opts.daemonize && !reexecuting) {
        if let Some(dir) = &opts.workdir
            && let Err(e) = sys::can_enter(dir)
        {
            eprintln!(
                "{prog} runfcgi: {}\nnothing was started",
                workdir_unusable(dir, &e)
            );
            listener.remove_file();
            return 1;
        }
        match crate::worker::Worker::start(site, false, 1) {
            Ok(w) => w.stop(Duration::from_secs(5)),
            Err(e) => {
                crate::worker::log_traceback(&e);
                eprintln!(
                    "{prog} runfcgi: {}\nnothing was started",
                    crate::worker::load_error(site, &e)
                );
                listener.remove_file();
                return 1;
            }
        }
    }
    // A stop signal while starting (Ctrl-C while the app imports): nothing
    // starts, and a server this start would have taken over serves on.
    if !reexecuting && let Some(sig) = signals::stop_requested() {
        eprintln!(
            "{prog} runfcgi: {} received while starting\nnothing was started",
            sys::signal_name(sig)
        );
        listener.remove_file();
        return 1;
    }
    let mut ready = None;
    if let Some(p) = opts
        .pidfile
        .as_deref()
        .filter(|_| !reexecuting && takeover.is_none())
    {
        warn_if_pidfile_taken(p);
    }
    if opts.daemonize && !reexecuting {
        match daemonize(&listener) {
            Forked::Foreground(code) => return code,
            Forked::Daemon(pipe) => ready = Some(pipe),
        }
        let settled = settle_daemon(&opts).and_then(|()| {
            // A fresh self-pipe: the one made at start is shared with the
            // foreground process.
            signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))
        });
        if let Err(msg) = settled {
            // The foreground process prints it; stderr may still be the
            // same terminal, so here it goes to the log file only.
            if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
                // SAFETY: dup2 onto stderr of a descriptor we own.
                unsafe { libc::dup2(null.as_raw_fd(), 2) };
            }
            crate::error!("{msg}");
            ready.iter_mut().for_each(|p| p.failed(&msg));
            listener.remove_file();
            return 1;
        }
    }
    // A restart's socket goes live first: a failure to move it, or a stop
    // signal before it moved, leaves the old server serving and still
    // named by the pidfile.
    let moved = takeover
        .as_ref()
        .map(|(path, _, old)| match signals::stop_requested() {
            Some(sig) => Err(format!(
                "{} received before taking over {}; the server there serves on",
                sys::signal_name(sig),
                path.display()
            )),
            None => listener.take_over(path, *old),
        });
    if let Some(Err(msg)) = moved {
        crate::error!("{msg}");
        ready.iter_mut().for_each(|r| r.failed(&msg));
        listener.remove_file();
        return 1;
    }
    if let Some(p) = &opts.pidfile
        && let Err(e) = write_pidfile(p)
    {
        let msg = format!("pidfile={}: cannot write it: {e}", p.display());
        if takeover.is_some() {
            // The old server is stopping: serving on beats leaving no one.
            crate::error!("{msg}; serving on without it");
        } else {
            crate::error!("{msg}");
            ready.iter_mut().for_each(|r| r.failed(&msg));
            listener.remove_file();
            return 1;
        }
    }
    drop(start_lock); // before the prefork children: they must not hold it
    match &mut ready {
        Some(pipe) => pipe.ready(),
        None if !reexecuting => crate::info!(
            "runfcgi: listening on {} as pid {}; Ctrl-C stops it",
            listener.describe(),
            sys::getpid()
        ),
        None => crate::info!(
            "runfcgi: re-executed; still listening on {}",
            listener.describe()
        ),
    }
    let code = match opts.method {
        Method::Prefork => match Supervisor::new(&opts, script, &listener, retiring) {
            Ok(mut s) => s.run(),
            Err(e) => {
                crate::error!("cannot set up the prefork supervisor: {e}");
                1
            }
        },
        Method::Threaded => run_threaded(&opts, script, &listener),
    };
    listener.remove_file();
    if let Some(p) = &opts.pidfile {
        remove_pidfile(p);
    }
    crate::info!("runfcgi: stopped");
    code
}

/// Says so when nobody but the owner may connect to a new unix socket
/// (connect(2) needs write permission): the default umask 022 gives
/// rwxr-xr-x, and a web server running as another user then fails with
/// "Permission denied" (Apache: AH02454), which is hard to trace back here.
/// Not when umask= was given: then the mode is what was asked for.
fn note_socket_mode(prog: &str, l: &Listener, umask_given: bool) {
    let Bind::Unix(path) = &l.bind else {
        return;
    };
    let Ok(m) = fs::symlink_metadata(path) else {
        return;
    };
    if umask_given || m.mode() & 0o022 != 0 {
        return;
    }
    crate::info!(
        "runfcgi: socket {} has mode {:03o}: only uid {} (and root) can connect, a web server \
         running as another user gets \"Permission denied\"; for one, start with umask=000 and \
         keep the socket in a directory only you and the web server can enter, or umask=007 \
         when the socket's group is the web server's (see `{prog} runfcgi help`)",
        path.display(),
        m.mode() & 0o777,
        m.uid(),
    );
}

fn run_threaded(opts: &Options, script: &Path, listener: &Listener) -> i32 {
    let mut app = App::new(script.to_path_buf(), false);
    app.log_requests = opts.debug;
    // App::changed sees a replaced binary as a plain reload then; the
    // watcher below re-executes this process instead, keeping the socket.
    app.reexec_allowed = false;
    let (quit, wait) = std::sync::mpsc::channel::<()>();
    let (code, was_replaced) = std::thread::scope(|s| {
        let watcher = s.spawn(|| watch(script, listener, wait));
        let code = crate::threaded::serve(&mut app, listener.fd.as_raw_fd(), opts.max_children);
        drop(quit);
        // Dropped result: a watcher that panicked has nothing to report.
        (code, watcher.join().unwrap_or(false))
    });
    if was_replaced {
        let e = reexec(script, opts, listener, &[]);
        crate::error!("cannot re-execute {}: {e}; stopping", script.display());
    }
    code
}

/// Beside the threaded server until `wait` closes. At a stop signal it
/// removes the socket file at once, as the prefork supervisor does, so that
/// a restarted server can bind it while requests in flight finish here.
/// Once a second it looks at `script`: when it is replaced (`mv`), it stops
/// the server the graceful way (SIGTERM to this process) and ends with true:
/// the caller re-executes, keeping the socket.
fn watch(script: &Path, listener: &Listener, wait: std::sync::mpsc::Receiver<()>) -> bool {
    use std::sync::mpsc::RecvTimeoutError;
    const TICK: Duration = Duration::from_millis(50);
    let stamp = sys::stamp(script);
    let mut looked = Instant::now();
    loop {
        match wait.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return false,
        }
        if signals::stop_requested().is_some() {
            listener.remove_file();
            return false; // a stop wins over a re-exec
        }
        if looked.elapsed() < STAMP_EVERY {
            continue;
        }
        looked = Instant::now();
        if replaced(stamp, script) {
            crate::info!(
                "{} was replaced; finishing requests to re-execute it",
                script.display()
            );
            // SAFETY: kill(2) of this process; the handler only records it.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            return true;
        }
    }
}

/// True when `script` is now another file than `then` (`mv` over it).
fn replaced(then: Option<sys::Stamp>, script: &Path) -> bool {
    match (then, sys::stamp(script)) {
        (Some(a), Some(b)) => (a.dev, a.ino) != (b.dev, b.ino),
        _ => false,
    }
}

/// Replaces this process with the (new) binary, keeping the listening
/// socket and the pid (so the pidfile stays true). Returns only on failure.
fn reexec(
    script: &Path,
    opts: &Options,
    listener: &Listener,
    children: &[libc::pid_t],
) -> io::Error {
    crate::info!(
        "{} was replaced; re-executing it, keeping {}",
        script.display(),
        listener.describe()
    );
    let mut args = vec![script.as_os_str().as_bytes().to_vec(), b"runfcgi".to_vec()];
    args.extend(opts.to_args().into_iter().map(String::into_bytes));
    let argv: Result<Vec<CString>, _> = args.into_iter().map(CString::new).collect();
    let Ok(argv) = argv else {
        return io::Error::new(io::ErrorKind::InvalidInput, "a path contains a NUL byte");
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let fd = listener.fd.as_raw_fd();
    let (dev, ino) = listener.file.unwrap_or((0, 0));
    let pids: Vec<String> = children.iter().map(|p| p.to_string()).collect();
    if let Err(e) = sys::set_cloexec(fd, false) {
        return e;
    }
    // SAFETY: sigset operations on a local set; sigprocmask changes only the
    // mask. Stop signals stay pending across exec until the new image has
    // its handlers (signals::install unblocks them), instead of killing it
    // half-started. The environment is ours alone: single-threaded.
    let old = unsafe {
        std::env::set_var(LISTENER_ENV, format!("{fd}:{dev}:{ino}"));
        std::env::set_var(CHILDREN_ENV, pids.join(","));
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
        old
    };
    // SAFETY: argv[0] and every argument are NUL-terminated and outlive the
    // call; ptrs ends with NULL.
    unsafe { libc::execv(argv[0].as_ptr(), ptrs.as_ptr()) };
    let e = io::Error::last_os_error();
    // SAFETY: as above, restoring what was there.
    unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        std::env::remove_var(LISTENER_ENV);
        std::env::remove_var(CHILDREN_ENV);
    }
    let _ = sys::set_cloexec(fd, true); // best effort, as in inherited()
    e
}

// ---------------------------------------------------------------------------
// Prefork supervisor

/// Write end of the status pipe, in a child; -1 elsewhere.
static STATUS_FD: AtomicI32 = AtomicI32::new(-1);
/// Write end of the SIGCHLD self-pipe, in the supervisor.
static CHLD_PIPE: AtomicI32 = AtomicI32::new(-1);

fn report(state: u8) {
    let fd = STATUS_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let mut msg = [0u8; MESSAGE_LEN];
    msg[..4].copy_from_slice(&(sys::getpid()).to_le_bytes());
    msg[4] = state;
    // One write under PIPE_BUF is atomic, so messages from many children never
    // interleave. Dropped result: a full pipe or a supervisor that is gone
    // (re-executing) loses a status byte, which the next one corrects.
    let _ = sys::write(fd, &msg);
}

/// Tells the supervisor that this prefork child took a connection (true) or
/// is back waiting for one (false); `fastcgi::serve` calls it through
/// `App::on_busy`.
pub fn report_busy(busy: bool) {
    report(if busy { BUSY } else { IDLE });
}

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = CHLD_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; errno is saved and restored
        // so that the interrupted code sees its own. The pipe is non-blocking:
        // when full, a wake-up is already pending.
        unsafe {
            let saved = *libc::__errno_location();
            libc::write(fd, [0u8].as_ptr().cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

/// The pool as the supervisor sees it.
#[derive(Clone, Copy, Debug, Default)]
struct Pool {
    /// Children not told to exit.
    total: usize,
    starting: usize,
    /// Idle children, once the busy hook reports them.
    idle: Option<usize>,
}

/// flup's prefork policy: how many children to start, and how many idle
/// ones to retire. `queue_full`: without the hook, the only sign that no
/// child is free.
fn plan(o: &Options, p: Pool, queue_full: bool) -> (usize, usize) {
    // flup keeps at least maxspare children: an optimistic minimum.
    let mut start = o.max_spare.saturating_sub(p.total);
    let mut retire = 0;
    match p.idle {
        Some(idle) => {
            start = start.max(o.min_spare.saturating_sub(idle + p.starting));
            retire = idle.saturating_sub(o.max_spare);
        }
        // Children on their way count as spares: no second wave while the
        // first imports the app.
        None if queue_full => start = start.max(o.min_spare.max(1).saturating_sub(p.starting)),
        // Nothing says which child is idle: none is retired (SIGTERM would
        // cut a long request of a busy one). maxrequests still shrinks the
        // pool back to maxspare.
        None => {}
    }
    (start.min(o.max_children.saturating_sub(p.total)), retire)
}

/// How long to hold back the next start after `crashes` early ends in a
/// row: not at all for the first few, then 1, 2, 4 ... 30 s.
fn backoff(crashes: u32) -> Option<Duration> {
    (crashes > FREE_CRASHES)
        .then(|| Duration::from_secs(1 << (crashes - FREE_CRASHES - 1).min(5)).min(MAX_BACKOFF))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Forked; its app is importing.
    Starting,
    /// App imported; busy or not is unknown (no hook).
    Ready,
    Idle,
    Busy,
    /// Told to finish its request and exit.
    Retiring,
}

struct Child {
    pid: libc::pid_t,
    born: Instant,
    state: State,
}

struct Supervisor<'a> {
    opts: &'a Options,
    script: &'a Path,
    listener: &'a Listener,
    status_r: Option<OwnedFd>,
    status_w: Option<OwnedFd>,
    chld_r: Option<OwnedFd>,
    children: Vec<Child>,
    /// Some child reported idle or busy: the hook in fastcgi::serve exists.
    hook_seen: bool,
    crashes: u32,
    spawn_after: Instant,
    forks: VecDeque<Instant>,
    /// Since when a connection has been waiting in the listen queue.
    queued_since: Option<Instant>,
    stamp: Option<sys::Stamp>,
    next_stamp_check: Instant,
    partial: Vec<u8>,
}

impl<'a> Supervisor<'a> {
    fn new(
        opts: &'a Options,
        script: &'a Path,
        listener: &'a Listener,
        retiring: Vec<libc::pid_t>,
    ) -> io::Result<Supervisor<'a>> {
        let (status_r, status_w) = sys::pipe()?;
        for fd in [&status_r, &status_w] {
            sys::set_nonblocking(fd.as_raw_fd(), true)?;
        }
        let (chld_r, chld_w) = sys::pipe()?;
        for fd in [&chld_r, &chld_w] {
            sys::set_nonblocking(fd.as_raw_fd(), true)?;
        }
        // The write end lives as long as the process (close-on-exec).
        CHLD_PIPE.store(chld_w.into_raw_fd(), Ordering::SeqCst);
        // SAFETY: a zeroed sigaction with a handler and an empty mask is
        // valid. SA_NOCLDSTOP: only exits matter.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigchld as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let now = Instant::now();
        Ok(Supervisor {
            opts,
            script,
            listener,
            status_r: Some(status_r),
            status_w: Some(status_w),
            chld_r: Some(chld_r),
            children: retiring
                .into_iter()
                .map(|pid| Child {
                    pid,
                    born: now,
                    state: State::Retiring,
                })
                .collect(),
            hook_seen: false,
            crashes: 0,
            spawn_after: now,
            forks: VecDeque::new(),
            queued_since: None,
            stamp: sys::stamp(script),
            next_stamp_check: now + STAMP_EVERY,
            partial: Vec::new(),
        })
    }

    fn raw(fd: &Option<OwnedFd>) -> RawFd {
        fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    fn run(&mut self) -> i32 {
        loop {
            self.reap();
            self.read_status();
            if let Some(sig) = signals::stop_requested() {
                crate::info!(
                    "runfcgi: {} received; stopping once the children finish their requests",
                    sys::signal_name(sig)
                );
                return self.stop();
            }
            let now = Instant::now();
            if now >= self.next_stamp_check {
                self.next_stamp_check = now + STAMP_EVERY;
                if replaced(self.stamp, self.script) {
                    self.reexec();
                }
            }
            let pressure = self.queue_pressure(now);
            let mut deadline = self.next_stamp_check;
            if let Some(at) = self.tend(now, pressure) {
                deadline = deadline.min(at);
            }
            let fds = [
                (Self::raw(&self.status_r), libc::POLLIN),
                (Self::raw(&self.chld_r), libc::POLLIN),
            ];
            if !self.hook_seen {
                let look = match self.queued_since {
                    None => QUEUE_LOOK,
                    Some(_) => QUEUE_LOOK_FAST,
                };
                deadline = deadline.min(now + look);
            }
            if let Err(e) = signals::wait(&fds, Some(deadline)) {
                crate::error!("runfcgi: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            self.drain_chld();
        }
    }

    fn drain_chld(&self) {
        let mut junk = [0u8; 64];
        while sys::read(Self::raw(&self.chld_r), &mut junk).is_ok_and(|n| n > 0) {}
    }

    /// True when the listen queue has not been empty at any look for
    /// QUEUE_PATIENCE: every child is busy or starting.
    fn queue_pressure(&mut self, now: Instant) -> bool {
        if self.hook_seen {
            return false;
        }
        let mut p = [sys::pollfd(self.listener.fd.as_raw_fd(), libc::POLLIN)];
        let queued =
            matches!(sys::poll(&mut p, Some(now)), Ok(1..)) && p[0].revents & libc::POLLIN != 0;
        if !queued {
            self.queued_since = None;
            return false;
        }
        let since = *self.queued_since.get_or_insert(now);
        now.duration_since(since) >= QUEUE_PATIENCE
    }

    /// Starts and retires children as flup's prefork server does. Returns
    /// when it next wants to run, if starts are held back.
    fn tend(&mut self, now: Instant, queue_full: bool) -> Option<Instant> {
        let count = |f: &dyn Fn(State) -> bool| self.children.iter().filter(|c| f(c.state)).count();
        let pool = Pool {
            total: count(&|s| s != State::Retiring),
            starting: count(&|s| s == State::Starting),
            idle: self
                .hook_seen
                .then(|| count(&|s| matches!(s, State::Idle | State::Ready))),
        };
        let (start, retire) = plan(self.opts, pool, queue_full);
        if retire > 0 {
            self.retire_idle(retire);
        }
        for _ in 0..start {
            if let Some(at) = self.spawn_blocked(now) {
                return Some(at);
            }
            self.spawn(now);
        }
        None
    }

    /// Sends the newest idle children beyond maxspare away. A child that
    /// takes a connection just then still gets GRACE to finish it.
    fn retire_idle(&mut self, n: usize) {
        let mut idle: Vec<&mut Child> = self
            .children
            .iter_mut()
            .filter(|c| matches!(c.state, State::Idle | State::Ready))
            .collect();
        idle.sort_by_key(|c| std::cmp::Reverse(c.pid));
        for c in idle.into_iter().take(n) {
            // SAFETY: kill(2) of our own unreaped child.
            unsafe { libc::kill(c.pid, libc::SIGTERM) };
            c.state = State::Retiring;
        }
    }

    /// When a start must wait: after crashes, or past the fork rate limit.
    fn spawn_blocked(&mut self, now: Instant) -> Option<Instant> {
        if now < self.spawn_after {
            return Some(self.spawn_after);
        }
        while self
            .forks
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.forks.pop_front();
        }
        // Not a fork bomb, whatever the children do.
        let per_second = self.opts.max_children.max(16);
        if self.forks.len() >= per_second {
            return self.forks.front().map(|t| *t + Duration::from_secs(1));
        }
        None
    }

    fn spawn(&mut self, now: Instant) {
        let parent = sys::getpid() as libc::pid_t;
        // SAFETY: the supervisor never starts a thread, so the child may run
        // any code after fork.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => {
                crate::error!(
                    "runfcgi: cannot fork a child: {}; trying again in a second",
                    io::Error::last_os_error()
                );
                self.spawn_after = now + Duration::from_secs(1);
            }
            0 => {
                let code = self.child(parent);
                std::process::exit(code);
            }
            pid => {
                self.forks.push_back(now);
                self.children.push(Child {
                    pid,
                    born: now,
                    state: State::Starting,
                });
            }
        }
    }

    /// A prefork child: the same FastCGI loop as under a web server, on the
    /// shared socket.
    fn child(&mut self, parent: libc::pid_t) -> i32 {
        // SAFETY: restoring the default disposition has no memory effects;
        // this process reaps its worker itself.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
        let chld_w = CHLD_PIPE.swap(-1, Ordering::SeqCst);
        if chld_w >= 0 {
            // SAFETY: the supervisor's SIGCHLD pipe, owned by this module.
            unsafe { libc::close(chld_w) };
        }
        drop(self.chld_r.take());
        drop(self.status_r.take());
        if let Some(w) = self.status_w.take() {
            STATUS_FD.store(w.into_raw_fd(), Ordering::SeqCst);
        }
        if let Err(e) = signals::install() {
            crate::error!("runfcgi child: cannot install signal handlers: {e}");
            return 1;
        }
        // SAFETY: prctl and getppid have no memory effects. A supervisor
        // killed outright must not leave children serving: SIGTERM makes
        // them finish the request in flight and exit.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != parent {
                return 0;
            }
        }
        // The socket goes on fd 0, where a FastCGI process has it under a
        // web server (and where fastcgi.rs's own re-exec keeps it).
        let listener = self.listener.fd.as_raw_fd();
        // SAFETY: dup2 onto stdin; the worker gets /dev/null as stdin.
        if unsafe { libc::dup2(listener, 0) } < 0 {
            crate::error!(
                "runfcgi child: cannot move the socket to fd 0: {}",
                io::Error::last_os_error()
            );
            return 1;
        }
        let mut app = App::new(self.script.to_path_buf(), false);
        // The supervisor re-executes a replaced binary, not each child.
        app.reexec_allowed = false;
        app.process_max_requests = self.opts.max_requests;
        app.on_busy = Some(report_busy);
        app.log_requests = self.opts.debug;
        // Import the app before telling the supervisor this child can take
        // connections.
        app.ensure_worker();
        report(READY);
        fastcgi::serve(&mut app, 0, None)
    }

    fn read_status(&mut self) {
        let fd = Self::raw(&self.status_r);
        let mut buf = [0u8; 4096];
        loop {
            match sys::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // EAGAIN: all read
            }
        }
        let whole = self.partial.len() / MESSAGE_LEN * MESSAGE_LEN;
        for msg in self.partial[..whole].chunks_exact(MESSAGE_LEN) {
            let pid = libc::pid_t::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
            let new = match msg[4] {
                READY => State::Ready,
                IDLE => State::Idle,
                BUSY => State::Busy,
                _ => continue,
            };
            if new != State::Ready {
                self.hook_seen = true;
            }
            if let Some(c) = self.children.iter_mut().find(|c| c.pid == pid)
                && c.state != State::Retiring
            {
                c.state = new;
            }
        }
        self.partial.drain(..whole);
    }

    /// Reaps every child that ended (no zombies), and notices crash loops.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: status is a valid out-parameter.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(i) = self.children.iter().position(|c| c.pid == pid) else {
                continue;
            };
            let c = self.children.swap_remove(i);
            if c.state != State::Retiring {
                self.ended(&c, status);
            }
        }
    }

    fn ended(&mut self, c: &Child, status: libc::c_int) {
        let lived = c.born.elapsed();
        let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        // A clean exit is maxrequests (or idle_timeout) done; without
        // maxrequests a child has no reason to end within a second.
        if clean && (lived >= MIN_LIFE || self.opts.max_requests > 0) {
            self.crashes = 0;
            return;
        }
        if lived >= STABLE_LIFE {
            self.crashes = 0;
        }
        self.crashes += 1;
        let how = sys::describe_status(status);
        crate::warn!(
            "runfcgi: child {} {how} after {} ms; starting another",
            c.pid,
            lived.as_millis()
        );
        if let Some(delay) = backoff(self.crashes) {
            self.spawn_after = Instant::now() + delay;
            crate::error!(
                "runfcgi: {} children in a row ended early (the last {how}); next start in {} s",
                self.crashes,
                delay.as_secs()
            );
        }
    }

    /// Graceful stop: the socket file goes first (a restarted server can
    /// bind it at once), children finish their requests, then exit 0.
    fn stop(&mut self) -> i32 {
        self.listener.remove_file();
        for c in &mut self.children {
            // SAFETY: kill(2) of our own unreaped child.
            unsafe { libc::kill(c.pid, libc::SIGTERM) };
            c.state = State::Retiring;
        }
        let until = Instant::now() + signals::GRACE + STOP_MARGIN;
        while !self.children.is_empty() && Instant::now() < until {
            // Not signals::wait: the stop signal already cut its deadlines
            // to GRACE, and this wait is longer.
            let mut p = [sys::pollfd(Self::raw(&self.chld_r), libc::POLLIN)];
            let _ = sys::poll(
                &mut p,
                Some(until.min(Instant::now() + Duration::from_millis(200))),
            );
            self.drain_chld();
            self.reap();
        }
        for c in self.children.drain(..) {
            crate::warn!(
                "runfcgi: child {} did not stop within {} s; killing it",
                c.pid,
                (signals::GRACE + STOP_MARGIN).as_secs()
            );
            // Its python worker dies with it (PR_SET_PDEATHSIG).
            sys::reap(c.pid, Duration::ZERO);
        }
        0
    }

    /// Re-executes the replaced binary. Children are told to finish and are
    /// handed over to the new image, which reaps them and starts new ones.
    fn reexec(&mut self) {
        let mut pids = Vec::new();
        for c in &mut self.children {
            if c.state != State::Retiring {
                // SAFETY: kill(2) of our own unreaped child.
                unsafe { libc::kill(c.pid, libc::SIGTERM) };
                c.state = State::Retiring;
            }
            pids.push(c.pid);
        }
        let e = reexec(self.script, self.opts, self.listener, &pids);
        crate::error!(
            "cannot re-execute {}: {e}; the running binary goes on (replace it again to retry)",
            self.script.display()
        );
        self.stamp = sys::stamp(self.script);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Option<Options>, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn ok(args: &[&str]) -> Options {
        p(args).expect("valid").expect("not help")
    }

    #[test]
    fn django_defaults() {
        let o = ok(&["socket=/tmp/s.sock"]);
        assert_eq!(o.bind, Bind::Unix("/tmp/s.sock".into()));
        assert_eq!(o.method, Method::Prefork);
        assert_eq!(
            (o.max_requests, o.max_spare, o.min_spare, o.max_children),
            (0, 5, 2, 50)
        );
        assert!(o.daemonize);
        assert_eq!(o.workdir, None);
        assert_eq!((o.umask, o.pidfile, o.debug), (None, None, false));
    }

    #[test]
    fn the_seed_examples_parse() {
        let o = ok(&["method=threaded", "host=127.0.0.1", "port=3033"]);
        assert_eq!(o.bind, Bind::Tcp("127.0.0.1:3033".parse().expect("addr")));
        assert_eq!(o.method, Method::Threaded);
        let o = ok(&[
            "method=prefork",
            "socket=/home/user/mysite.sock",
            "pidfile=django.pid",
        ]);
        assert_eq!(o.pidfile, Some("django.pid".into()));
        assert!(!ok(&["daemonize=false", "socket=/tmp/mysite.sock"]).daemonize);
    }

    #[test]
    fn names_are_case_insensitive_and_booleans_are_lenient() {
        for (v, want) in [
            ("TRUE", true),
            ("yes", true),
            ("1", true),
            ("No", false),
            ("0", false),
            ("false", false),
        ] {
            assert_eq!(
                ok(&["socket=s", &format!("DAEMONIZE={v}")]).daemonize,
                want,
                "{v}"
            );
        }
        assert!(ok(&["socket=s", "debug"]).debug);
    }

    #[test]
    fn ipv6_and_localhost() {
        assert_eq!(
            ok(&["host=::1", "port=1"]).bind,
            Bind::Tcp("[::1]:1".parse().expect("addr"))
        );
        assert_eq!(
            ok(&["host=[::1]", "port=1"]).bind,
            Bind::Tcp("[::1]:1".parse().expect("addr"))
        );
        assert_eq!(
            ok(&["host=localhost", "port=1"]).bind,
            Bind::Tcp("127.0.0.1:1".parse().expect("addr"))
        );
    }

    #[test]
    fn host_names_are_looked_up() {
        // The machine's own name, when /etc/hosts or DNS knows it (not in
        // every sandbox: then only the literal forms are checked).
        let name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let name = name.trim();
        if let Ok(mut want) = (name, 7u16).to_socket_addrs() {
            let got = ok(&[&format!("host={name}"), "port=7"]).bind;
            let Bind::Tcp(got) = got else {
                panic!("{got:?}")
            };
            assert!(want.any(|a| a == got), "{name} -> {got}");
        }
        assert_eq!(
            ok(&["host=0.0.0.0", "port=9"]).bind,
            Bind::Tcp("0.0.0.0:9".parse().expect("addr"))
        );
    }

    #[test]
    fn minspare_zero_is_valid() {
        assert_eq!(ok(&["socket=s", "minspare=0"]).min_spare, 0);
    }

    #[test]
    fn help_explains_umask_debug_and_workdir() {
        let h = help("./mysite.fcgi");
        for w in [
            "Permission denied",
            "umask=000",
            "any local user can",
            "umask=007",
            "Tracebacks are not shown",
            "debug_allow",
            "chdir",
            "FCGI_SHIM_SITE",
            "current directory",
            "FCGI_WEB_SERVER_ADDRS",
        ] {
            assert!(h.contains(w), "{w:?} missing from help:\n{h}");
        }
    }

    #[test]
    fn help_anywhere() {
        assert_eq!(p(&["socket=s", "help"]), Ok(None));
    }

    #[test]
    fn errors_name_the_option_and_what_is_valid() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["socket=s", "method=forked"],
                &["method=forked", "prefork", "threaded"],
            ),
            (
                &["socket=s", "maxspare=lots"],
                &["maxspare=lots", "whole number"],
            ),
            (
                &["socket=s", "maxchildren=0"],
                &["maxchildren=0", "at least 1"],
            ),
            (
                &["socket=s", "daemonize=maybe"],
                &["daemonize=maybe", "true or false"],
            ),
            (&["socket=s", "umask=8"], &["umask=8", "octal"]),
            (
                &["socket=s", "protocol=scgi"],
                &["protocol=scgi", "protocol=fcgi"],
            ),
            (
                &["socket=s", "sockett=x"],
                &["sockett", "did you mean `socket`", "maxspare"],
            ),
            (
                &["host=no-such-host.invalid", "port=1"],
                &["host=no-such-host.invalid", "cannot look up", "127.0.0.1"],
            ),
            (&["host=", "port=1"], &["host= is empty", "127.0.0.1"]),
            (
                &["socket=s", "minspare=-1"],
                &["minspare=-1", "0 or more", "0: no idle child kept"],
            ),
            (
                &["socket=s", "maxrequests=x"],
                &["maxrequests=x", "0 or more", "0: no limit"],
            ),
            (&["socket=s", "workdir="], &["workdir=/home/user/myproject"]),
            (
                &["socket=s", "pidfile="],
                &["pidfile=/home/user/mysite.pid"],
            ),
            (&["host=127.0.0.1", "port=70000"], &["port=70000", "65535"]),
            (&["host=127.0.0.1"], &["port=NUMBER"]),
            (&["port=1"], &["host=ADDRESS"]),
            (&["socket=s", "host=::1", "port=1"], &["not both"]),
            (&[], &["socket=PATH", "host=ADDRESS"]),
            (&["socket"], &["socket", "needs a value"]),
        ];
        for (args, words) in cases {
            let e = p(args).expect_err("must fail");
            for w in *words {
                assert!(e.contains(w), "{args:?}: {w:?} missing from {e:?}");
            }
        }
    }

    #[test]
    fn spares_are_capped_by_maxchildren() {
        let o = ok(&["socket=s", "maxchildren=2"]);
        assert_eq!((o.max_spare, o.min_spare, o.max_children), (2, 2, 2));
    }

    #[test]
    fn adjusted_spares_and_unused_options_are_said() {
        let notes = |a: &[&str]| {
            let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            adjusted(&args, &ok(a))
        };
        // The defaults, capped, say nothing: only what was given counts.
        assert!(notes(&["socket=s", "maxchildren=2"]).is_empty());
        assert_eq!(
            notes(&["socket=s", "maxspare=1", "minspare=4", "maxchildren=3"]),
            ["minspare=4 is more than maxspare=1: 1 idle children kept in reserve"]
        );
        assert_eq!(
            notes(&["socket=s", "maxspare=9", "maxchildren=3"]),
            ["maxspare=9 is more than maxchildren=3: at most 3 idle children"]
        );
        assert_eq!(
            notes(&["socket=s", "method=threaded", "maxrequests=2", "MINSPARE=1"]),
            [
                "maxrequests, minspare apply to method=prefork only: method=threaded is one \
                 process (maxchildren caps its threads; site.toml's max_requests recycles its \
                 Python worker)"
            ]
        );
    }

    #[test]
    fn args_round_trip() {
        let o = ok(&[
            "socket=/a/s",
            "method=threaded",
            "maxrequests=3",
            "maxspare=4",
            "minspare=1",
            "maxchildren=9",
            "daemonize=no",
            "pidfile=/a/p",
            "workdir=/w",
            "umask=007",
            "outlog=/a/o",
            "errlog=/a/e",
            "debug=yes",
        ]);
        let args = o.to_args();
        let back = parse(&args).expect("valid").expect("not help");
        assert_eq!(back, o);
    }

    #[test]
    fn prefork_plan_follows_flup() {
        let o = ok(&["socket=s"]); // maxspare 5, minspare 2, maxchildren 50
        let pool = |total, starting, idle| Pool {
            total,
            starting,
            idle,
        };
        // At start: maxspare children.
        assert_eq!(plan(&o, pool(0, 0, None), false), (5, 0));
        // With the hook: fewer than minspare idle starts more ...
        assert_eq!(plan(&o, pool(5, 0, Some(0)), false), (2, 0));
        assert_eq!(plan(&o, pool(6, 1, Some(0)), false), (1, 0));
        assert_eq!(plan(&o, pool(7, 0, Some(2)), false), (0, 0));
        // ... and idle ones beyond maxspare are retired.
        assert_eq!(plan(&o, pool(9, 0, Some(8)), false), (0, 3));
        // Without it: only a full queue adds children, never a second wave.
        assert_eq!(plan(&o, pool(7, 0, None), false), (0, 0));
        assert_eq!(plan(&o, pool(7, 0, None), true), (2, 0));
        assert_eq!(plan(&o, pool(7, 2, None), true), (0, 0));
        // Never more than maxchildren.
        assert_eq!(plan(&o, pool(49, 0, None), true), (1, 0));
        assert_eq!(plan(&o, pool(50, 0, Some(0)), false), (0, 0));
        let one = ok(&["socket=s", "maxchildren=1"]);
        assert_eq!(plan(&one, pool(0, 0, None), true), (1, 0));
    }

    #[test]
    fn crash_backoff_grows_to_a_cap() {
        let got: Vec<_> = (1..=10).map(|n| backoff(n).map(|d| d.as_secs())).collect();
        let want = [
            None,
            None,
            None,
            Some(1),
            Some(2),
            Some(4),
            Some(8),
            Some(16),
            Some(30),
            Some(30),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn umask_is_octal() {
        assert_eq!(parse_umask("022"), Ok(0o022));
        assert_eq!(parse_umask("0o77"), Ok(0o77));
        assert!(parse_umask("1000").is_err());
        assert!(parse_umask("").is_err());
    }
}
