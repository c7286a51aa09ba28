//! The shim run by a person at a shell: `help`, `--version`, `check`.
//!
//! Beside the data path. `check` loads site.toml and starts the Python
//! worker as a spawned shim would (`config::load`, `Worker::start`), then
//! sends it one synthetic request through the same preparation and relay
//! (`app::prepare_request`, `Prepared::relay`), so what it reports is what a
//! visitor would get. It builds no `App`: that would open the site's
//! `log_file`, and check writes nothing there, since nothing is being
//! served. Its log lines are captured (`log::capture`) and printed in the
//! report, on stdout, beside an import traceback, so that `check > out.txt`
//! keeps everything.
//!
//! It also reads the .htaccess files above site.toml, the log and the
//! project, enough to tell whether Apache would hand them to anyone who asks
//! ([`Htaccess`], with a small matcher for `<Files>` wildcards and
//! `<FilesMatch>` regular expressions).

use std::borrow::Cow;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::app::{self, Buffers};
use crate::bridge::{Fate, Gone, Transport};
use crate::config::{self, Net, Site};
use crate::environ::Param;
use crate::worker::{self, StartError, Worker};
use htaccess::Htaccess;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn usage(prog: &str) -> String {
    format!(
        "fcgi-shim {VERSION}: run a Python WSGI site (Django, Flask, ...) under FastCGI or CGI.

Copy this file into your web root as mysite.fcgi, put a site.toml beside it,
and let the web server run it (see .htaccess examples in the project's
htaccess/ folder). Run from a shell, it helps you set that up:

  {prog} init [DIR] [--project=PATH]
        write a commented site.toml and a .htaccess into DIR (default: this
        file's folder), never overwriting; fills in a Django project found
        nearby (or at PATH)
  {prog} check [PATH] [--host=NAME]
        load site.toml and the app as the web server would, send a test
        GET request (default PATH /), report every problem; exit 1 if any
  {prog} runfcgi socket=PATH | host=ADDRESS port=NUMBER [option=value ...]
        serve FastCGI on a socket of its own, as Django's manage.py runfcgi
        did (daemonizes; `{prog} runfcgi help` lists the options)
  {prog} help       this text
  {prog} --version  the version

Under a web server it needs no arguments: with a listening socket on fd 0
(mod_fcgid, mod_fastcgi, lighttpd, spawn-fcgi) it serves FastCGI; started as
CGI (GATEWAY_INTERFACE set) it serves one request and exits.

site.toml is read from the directory of {prog} as invoked, or from the
path in FCGI_SHIM_SITE. `touch {prog}` reloads the app.
"
    )
}

/// Runs a command. Returns the exit code.
pub fn main(prog: &str, script: PathBuf, args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        None => {
            eprint!("{}", usage(prog));
            2
        }
        Some("help" | "-h" | "--help") => {
            print!("{}", usage(prog));
            0
        }
        Some("--version" | "-V" | "version") => {
            println!("fcgi-shim {VERSION}");
            0
        }
        Some("check") => check(script, &args[1..]),
        Some("runfcgi") => crate::runfcgi::main(prog, &script, &args[1..]),
        Some("init") => crate::init::main(prog, &script, &args[1..]),
        Some(other) => {
            eprintln!("{prog}: unknown command `{other}`; try `{prog} help`");
            2
        }
    }
}

struct Capture {
    out: Vec<u8>,
}

impl Transport for Capture {
    fn body(&mut self, _max: usize) -> Result<&[u8], Gone> {
        Ok(&[])
    }
    fn output(&mut self, data: &[u8]) -> Result<(), Gone> {
        // Enough to show the status, the headers and the start of the page.
        if self.out.len() < 64 << 10 {
            self.out.extend_from_slice(data);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Gone> {
        Ok(())
    }
}

/// Lines of the report, and whether anything failed.
#[derive(Default)]
struct Report {
    problems: usize,
    warnings: usize,
}

impl Report {
    fn line(&self, label: &str, value: impl std::fmt::Display) {
        // A long label (env.SOME_LONG_NAME) still keeps one space before its value.
        println!("{label:<17} {value}");
    }
    /// The first line under `label`, the others under a blank one.
    fn lines<T: std::fmt::Display>(&self, label: &str, values: impl IntoIterator<Item = T>) {
        for (i, v) in values.into_iter().enumerate() {
            self.line(if i == 0 { label } else { "" }, v);
        }
    }
    fn problem(&mut self, what: impl std::fmt::Display) {
        self.problems += 1;
        println!("PROBLEM           {what}");
    }
    fn warning(&mut self, what: impl std::fmt::Display) {
        self.warnings += 1;
        println!("warning           {what}");
    }
    /// What was logged since the last call: the app's output, the shim's
    /// own events.
    fn log(&self) {
        self.lines("log", crate::log::take_captured());
    }
    /// The last line; the exit code.
    fn finish(&self) -> i32 {
        self.log();
        if self.problems == 0 {
            println!(
                "result            OK{}",
                match self.warnings {
                    0 => String::new(),
                    1 => " (1 warning)".into(),
                    n => format!(" ({n} warnings)"),
                }
            );
            0
        } else {
            println!(
                "result            {} problem{}",
                self.problems,
                if self.problems == 1 { "" } else { "s" }
            );
            1
        }
    }
}

fn check(script: PathBuf, args: &[String]) -> i32 {
    let mut path = "/".to_owned();
    let mut host = "localhost".to_owned();
    for a in args {
        if let Some(h) = a.strip_prefix("--host=") {
            host = h.to_owned();
        } else if a.starts_with('/') {
            path = a.clone();
        } else {
            eprintln!("check: unknown argument `{a}`; expected a path like /about or --host=NAME");
            return 2;
        }
    }
    crate::log::capture(true);
    let mut r = Report::default();
    r.line("fcgi-shim", VERSION);
    r.line("executable", script.display());
    r.line("mode", web_server_mode(&script));
    let site_file = config::locate(&script);
    r.line("site.toml", site_file.display());
    let site = match config::load(&site_file) {
        Ok(site) => site,
        Err(e) => {
            r.problem(e);
            return r.finish();
        }
    };
    show_site(&mut r, &site);
    log_file(&mut r, &site);
    permissions(&mut r, &site);
    exposure(&mut r, &site, &script);
    let python = match worker::find_python(&site) {
        Ok(p) => p,
        Err(e) => {
            r.problem(e);
            return r.finish();
        }
    };
    r.line("interpreter", python.display());
    let w = match Worker::start(&site, false, 1) {
        Ok(w) => w,
        Err(e) => {
            import_failed(&mut r, &site, &python, &script, &e);
            return r.finish();
        }
    };
    r.line("python", &w.ready.python);
    r.line("sys.executable", &w.ready.executable);
    r.lines("sys.path", &w.ready.sys_path);
    r.line("app", format!("imported in {} ms", w.ready.import_ms));
    r.log();
    get(&mut r, &site, w, &path, &host);
    r.finish()
}

/// The report of an app that did not load: the interpreter's version and
/// sys.path, the app's output, and the traceback, all on stdout.
fn import_failed(r: &mut Report, site: &Site, python: &Path, script: &Path, e: &StartError) {
    // The worker reports its version and sys.path only once the app is
    // imported: ask the interpreter itself, set up as the worker sets up.
    match python_facts(python, site) {
        Ok(f) => {
            r.line("python", &f.version);
            r.line("sys.executable", &f.executable);
            r.lines("sys.path", &f.sys_path);
        }
        Err(why) => r.line("sys.path", format!("(unknown: {why})")),
    }
    r.log();
    if let StartError::Import(tb) = e {
        r.lines("traceback", tb.lines());
    }
    let app = site
        .wsgi_app
        .as_deref()
        .or(site.settings_module.as_deref())
        .unwrap_or("?");
    let name = script
        .file_name()
        .map_or("mysite.fcgi".into(), |n| n.to_string_lossy());
    r.problem(format!(
        "cannot load the app {app} from {}: {e}; fix it and run check again, then \
         `touch {name}` so that the running site reloads",
        site.file.display()
    ));
}

/// What `python_facts` asks: sys.path as the worker makes it before it
/// imports the app (the site's search_path in front, without the "" of -c).
const FACTS: &str = "import os, sys
if sys.path and sys.path[0] == '':
    del sys.path[0]
sys.path[0:0] = sys.argv[1:]
out = [sys.version.split()[0], sys.executable or ''] + sys.path
sys.stdout.buffer.write(b'\\n'.join(os.fsencode(x) for x in out))
";

struct Facts {
    version: String,
    executable: String,
    sys_path: Vec<String>,
}

/// Runs the site's interpreter with the worker's environment, directory
/// and search path, for its version and sys.path.
fn python_facts(python: &Path, site: &Site) -> Result<Facts, String> {
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(FACTS)
        .args(&site.search_path)
        .env_remove("FCGI_SHIM_REEXEC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(s) = &site.settings_module {
        cmd.env("DJANGO_SETTINGS_MODULE", s);
    }
    for (k, v) in &site.env {
        cmd.env(k, v);
    }
    if let Some(dir) = site.file.parent() {
        cmd.current_dir(dir);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output()); // dropped: the receiver gave up
    });
    // Bounded: an interpreter that hangs at start (a sitecustomize waiting
    // for something) must not hang check.
    let out = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(out) => out.map_err(|e| format!("{}: {e}", python.display()))?,
        Err(_) => {
            // SAFETY: pid is our child, not yet reaped: the thread that would
            // reap it is still waiting. kill has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // Dropped: only the reaping matters now, and a grandchild that
            // holds the pipes open must not hang check either.
            let _ = rx.recv_timeout(Duration::from_secs(1));
            return Err(format!("{} did not answer within 10 s", python.display()));
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} failed ({}): {}",
            python.display(),
            out.status,
            err.trim().lines().last().unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.split('\n').map(str::to_owned);
    Ok(Facts {
        version: lines.next().unwrap_or_default(),
        executable: lines.next().unwrap_or_default(),
        sys_path: lines.collect(),
    })
}

/// Sends `GET path` to the worker and reports the answer.
fn get(r: &mut Report, site: &Site, mut w: Worker, path: &str, host: &str) {
    let params: Vec<(&[u8], &[u8])> = vec![
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", b"fcgi-shim-check"),
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", path.as_bytes()),
        (b"SCRIPT_NAME", b""),
        (b"PATH_INFO", path.as_bytes()),
        (b"QUERY_STRING", b""),
        (b"SERVER_NAME", host.as_bytes()),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"HTTP_HOST", host.as_bytes()),
    ];
    let mut params: Vec<Param<'_>> = params
        .into_iter()
        .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)))
        .collect();
    let mut cap = Capture { out: Vec::new() };
    let prepared = app::prepare_request(Some(site), 1, &mut params, &[], true, Buffers::default());
    let (outcome, fate) = match prepared {
        Ok(req) => req.relay(&mut w, &mut cap),
        Err(outcome) => (outcome, Fate::Keep),
    };
    match fate {
        Fate::Gone | Fate::Refused => {
            let pid = w.pid;
            let how = w.kill();
            r.line("python worker", format!("{pid} {how}"));
        }
        Fate::Keep | Fate::Exiting => w.stop(Duration::from_secs(1)),
    }
    let response = match outcome.page() {
        Some(page) => page.into_owned(),
        None => cap.out,
    };
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("Status: ")
        .to_owned();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let preview: String = body.chars().take(300).collect();
    r.line(&format!("GET {path}"), &status);
    for line in preview.lines().take(8) {
        r.line("", line);
    }
    r.log();
    match status.get(..3).and_then(|s| s.parse::<u16>().ok()) {
        Some(500..=599) => r.problem(format!(
            "GET {path} answered {status} (the log lines above say why)"
        )),
        Some(400..=499) => r.warning(format!(
            "GET {path} answered {status}; for Django, check ALLOWED_HOSTS (this test used Host: {host}; try --host=yourdomain)"
        )),
        Some(_) => {}
        None => r.problem(format!("GET {path} gave no status line")),
    }
    if outcome == crate::bridge::Outcome::Cut {
        r.problem("the app failed in the middle of the response");
    }
}

fn show_site(r: &mut Report, s: &Site) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
    let paths = |ps: &[PathBuf], none: &str| {
        if ps.is_empty() {
            return none.to_owned();
        }
        let shown: Vec<String> = ps.iter().map(|p| p.display().to_string()).collect();
        shown.join(", ")
    };
    r.line("  python", opt(&s.python));
    r.line("  search_path", paths(&s.search_path, "(none)"));
    r.line("  settings_module", opt(&s.settings_module));
    r.line("  wsgi_app", opt(&s.wsgi_app));
    r.line(
        "  log_file",
        s.log_file
            .as_ref()
            .map_or("(not set: stderr and syslog only)".into(), |p| {
                p.display().to_string()
            }),
    );
    r.line(
        "  script_name",
        match s.script_name.as_deref() {
            None => "(not set: from each request's URL)".to_owned(),
            Some("") => "\"\" (the root of the host)".to_owned(),
            Some(name) => name.to_owned(),
        },
    );
    r.line(
        "  trusted_proxies",
        if s.trusted_proxies.is_empty() {
            "(none: X-Forwarded-For and X-Forwarded-Proto are ignored)".to_owned()
        } else {
            nets(&s.trusted_proxies)
        },
    );
    r.line(
        "  debug",
        match (s.debug, s.debug_allow.is_empty()) {
            (false, _) => "false (tracebacks go to the log, never to a browser)".to_owned(),
            (true, true) => "true, but debug_allow is empty: no browser sees tracebacks".to_owned(),
            (true, false) => format!(
                "true: 500 pages show the traceback to {}",
                allowed_clients(&s.debug_allow)
            ),
        },
    );
    r.line(
        "  debug_allow",
        if s.debug_allow.is_empty() {
            "(nobody)".to_owned()
        } else {
            nets(&s.debug_allow)
        },
    );
    r.line(
        "  watch",
        paths(&s.watch, "(none: site.toml and the executable only)"),
    );
    r.line(
        "  chdir",
        match &s.chdir {
            Some(dir) => dir.display().to_string(),
            None => "(not set: the app runs in site.toml's folder)".to_owned(),
        },
    );
    r.line(
        "  pin_cpu",
        if s.pin_cpu {
            "true (the shim and its worker share one CPU)"
        } else {
            "false"
        },
    );
    let l = &s.limits;
    r.line(
        "  max_requests",
        match l.max_requests {
            0 => "0 (the worker is never recycled)".to_owned(),
            n => format!("{n} (then the worker is recycled)"),
        },
    );
    r.line(
        "  request_timeout",
        seconds(l.request_timeout, "0 (no limit)"),
    );
    r.line(
        "  idle_timeout",
        seconds(l.idle_timeout, "0 (never exits when idle)"),
    );
    r.line("  max_body", size(l.max_body, "0 (no limit)"));
    r.line("  max_rss", size(l.max_rss, "0 (no limit)"));
    r.line("  io_timeout", seconds(l.io_timeout, "0 s"));
    r.line("  startup_timeout", seconds(l.startup_timeout, "0 s"));
    for (k, v) in &s.env {
        let secret = ["SECRET", "PASSWORD", "PASSWD", "TOKEN", "KEY"]
            .iter()
            .any(|w| k.to_uppercase().contains(w));
        r.line(
            &format!("  env.{k}"),
            if secret { "(hidden)".into() } else { v.clone() },
        );
    }
    web_server_addrs(r);
    for missing in s.search_path.iter().filter(|p| !p.is_dir()) {
        r.warning(format!(
            "search_path entry {} in {} is not a directory: nothing can be imported from it; \
             fix the path or remove it",
            missing.display(),
            s.file.display()
        ));
    }
    if s.debug {
        r.warning(if s.debug_allow.is_empty() {
            format!(
                "{} sets debug = true but debug_allow is empty, so no browser sees tracebacks; \
                 list your own address in debug_allow, or set debug = false",
                s.file.display()
            )
        } else {
            format!(
                "{} sets debug = true: 500 pages show the app's tracebacks (its code, paths \
                 and settings) to {}; set debug = false when you are done",
                s.file.display(),
                allowed_clients(&s.debug_allow)
            )
        });
    }
}

/// FCGI_WEB_SERVER_ADDRS as this shell has it (the web server's
/// environment may differ), and entries that the shim would ignore.
fn web_server_addrs(r: &mut Report) {
    let Some(value) = std::env::var_os("FCGI_WEB_SERVER_ADDRS") else {
        return;
    };
    let value = value.to_string_lossy();
    r.line(
        "FCGI_WEB_SERVER_ADDRS",
        format!("{value} (in this shell: TCP peers not listed are refused; unix-socket peers are always served)"),
    );
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let mut valid = 0;
    for a in &entries {
        if Net::parse(a).is_some() {
            valid += 1;
        } else {
            r.warning(format!(
                "FCGI_WEB_SERVER_ADDRS: `{a}` is not an address or CIDR block (e.g. 127.0.0.1, \
                 ::1, 10.0.0.0/8); the shim ignores it"
            ));
        }
    }
    if valid == 0 {
        r.warning(
            "FCGI_WEB_SERVER_ADDRS lists no valid address: every TCP connection would be refused",
        );
    }
}

/// `203.0.113.7, 10.0.0.0/8`: a single address without its prefix length.
fn nets(list: &[Net]) -> String {
    let shown: Vec<String> = list
        .iter()
        .map(|n| {
            let full = if n.addr.is_ipv4() { 32 } else { 128 };
            if n.prefix == full {
                n.addr.to_string()
            } else {
                format!("{}/{}", n.addr, n.prefix)
            }
        })
        .collect();
    shown.join(", ")
}

/// Who a debug_allow list lets see tracebacks, in words.
fn allowed_clients(list: &[Net]) -> String {
    if list.iter().any(|n| n.prefix == 0) {
        "every client on the internet".to_owned()
    } else {
        format!("clients from {}", nets(list))
    }
}

fn seconds(d: Duration, zero: &str) -> String {
    match d.as_secs() {
        0 => zero.to_owned(),
        n => format!("{n} s"),
    }
}

fn size(n: u64, zero: &str) -> String {
    match n {
        0 => zero.to_owned(),
        n if n % (1 << 20) == 0 => format!("{n} bytes ({} MiB)", n >> 20),
        n if n % (1 << 10) == 0 => format!("{n} bytes ({} KiB)", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The log is often the only one a shared-hosting user can read: a
/// log_file the shim cannot open is a problem, not a detail.
fn log_file(r: &mut Report, site: &Site) {
    let Some(log) = &site.log_file else {
        return;
    };
    let Err((e, at)) = log_file_opens(log) else {
        return;
    };
    let hint = match e.kind() {
        io::ErrorKind::NotFound => format!(
            "create the directory (mkdir -p {}) or point log_file in {} at a file in a \
             directory that exists",
            at.display(),
            site.file.display()
        ),
        io::ErrorKind::PermissionDenied => format!(
            "{} does not let this user write; fix its permissions or point log_file in {} at \
             a file in a directory you own",
            at.display(),
            site.file.display()
        ),
        _ => format!(
            "point log_file in {} at a file you can write",
            site.file.display()
        ),
    };
    r.problem(format!(
        "cannot open log_file {}: {e}; {hint}; until then the site logs to stderr only, \
         which shared hosts often do not let you read",
        log.display()
    ));
}

/// Would the shim's open of `log` (append, create) succeed? Found without
/// writing anything: an existing file is opened for appending only; for a
/// new one, its directory must let this user create files. Err: the error
/// and the path it is about.
fn log_file_opens(log: &Path) -> Result<(), (io::Error, PathBuf)> {
    match std::fs::OpenOptions::new().append(true).open(log) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = log.parent().unwrap_or(Path::new("/"));
            writable_dir(dir).map_err(|e| (e, dir.to_path_buf()))
        }
        Err(e) => Err((e, log.to_path_buf())),
    }
}

/// access(2): may this user create files in `dir`?
fn writable_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated path; access has no memory effects.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Warns about secrets other users of the host can read.
fn permissions(r: &mut Report, s: &Site) {
    let world_readable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
    if world_readable(&s.file) {
        r.warning(format!(
            "{} is readable by every user on the host; chmod 600 (or 640) it",
            s.file.display()
        ));
    }
    if let Some(log) = s.log_file.as_ref().filter(|l| world_readable(l)) {
        r.warning(format!(
            "log file {} is readable by every user on the host; chmod 600 it",
            log.display()
        ));
    }
}

/// Warns about files in the web root (the folder of the executable, and
/// below) that Apache would hand to anyone who asks: site.toml, the log, a
/// Python project.
fn exposure(r: &mut Report, site: &Site, script: &Path) {
    let shown_root = script.parent().unwrap_or(Path::new("."));
    let root = real(shown_root);
    let deny_hint = "deny it in .htaccess with a <FilesMatch \"\\.(toml|log|pid)$\"> block \
                     holding `Require all denied` (Apache 2.4) or `Deny from all` (2.2), as \
                     the project's htaccess/auto.htaccess does";
    let file = real(&site.file);
    if file.starts_with(&root) && !denied(&file) {
        r.warning(format!(
            "{} is inside the web root {} and no .htaccess rule denies it: visitors can \
             download it, secrets in [env] included; {deny_hint}",
            site.file.display(),
            shown_root.display()
        ));
    }
    if let Some(log) = &site.log_file {
        let real_log = real(log);
        if real_log.starts_with(&root) && !denied(&real_log) {
            r.warning(format!(
                "log file {} is inside the web root {} and no .htaccess rule denies it: \
                 visitors can download it, tracebacks included; move it out \
                 (log_file = \"../logs/mysite.log\") or {deny_hint}",
                log.display(),
                shown_root.display()
            ));
        }
    }
    // Python projects: the search_path entries, and any folder with a
    // manage.py in the web root or just below it.
    let mut dirs: Vec<PathBuf> = site.search_path.clone();
    let below = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    dirs.extend(
        std::iter::once(root.clone())
            .chain(below)
            .filter(|d| d.join("manage.py").is_file()),
    );
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let real_dir = real(&dir);
        if !real_dir.starts_with(&root) || seen.contains(&real_dir) {
            continue;
        }
        seen.push(real_dir.clone());
        if denied(&real_dir.join("settings.py")) && denied(&real_dir.join("db.sqlite3")) {
            continue;
        }
        let what = if real_dir.join("manage.py").is_file() {
            format!("Django project {} (manage.py)", dir.display())
        } else {
            format!("search_path entry {}", dir.display())
        };
        r.warning(format!(
            "{what} is inside the web root {}: Apache serves its files to anyone who asks, \
             settings.py (SECRET_KEY, database passwords) and db.sqlite3 included, unless a \
             .htaccess denies them; move the project out of public_html (beside it, e.g. \
             ~/myproject) and point search_path at the new place",
            shown_root.display()
        ));
    }
}

/// `p` with symlinks and `..` resolved, as far as it exists; the rest
/// appended as written (a log file that is not created yet).
fn real(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => real(dir).join(name),
        _ => p.to_path_buf(),
    }
}

/// Does some .htaccess deny `file` (absolute, resolved) to every client?
/// Apache reads the .htaccess of every folder from the top down to the
/// file's; a `<Files>` block applies to files in subfolders too.
fn denied(file: &Path) -> bool {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return false;
    };
    let name = name.to_string_lossy();
    let mut folder_denied = false;
    let mut dirs: Vec<&Path> = dir.ancestors().collect();
    dirs.reverse();
    for d in dirs {
        let Ok(text) = std::fs::read_to_string(d.join(".htaccess")) else {
            continue;
        };
        let h = Htaccess::parse(&text);
        if h.files.iter().any(|p| p.is_match(&name)) {
            return true;
        }
        // A deeper folder's own rule overrides one from above.
        if let Some(all) = h.all {
            folder_denied = all;
        }
    }
    folder_denied
}

/// What the web server will do with us, as far as the .htaccess beside us
/// tells.
fn web_server_mode(script: &Path) -> String {
    let dir = script.parent().unwrap_or(Path::new("."));
    let Ok(text) = std::fs::read_to_string(dir.join(".htaccess")) else {
        return "no .htaccess here: FastCGI if the server spawns it with a socket (mod_fcgid, lighttpd), else CGI".into();
    };
    let t = text.to_lowercase();
    let active = |needle: &str| {
        t.lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains(needle))
    };
    let mut modes = Vec::new();
    if active("fcgid-script") {
        modes.push("FastCGI via mod_fcgid");
    }
    if active("fastcgi-script") {
        modes.push("FastCGI via mod_fastcgi");
    }
    if active("cgi-script") {
        modes.push("plain CGI via mod_cgi");
    }
    match modes.len() {
        0 => ".htaccess names no handler for .fcgi: the server's defaults decide".into(),
        1 => format!("{} (from .htaccess)", modes[0]),
        _ => format!(
            "the first of these the server has: {} (from .htaccess)",
            modes.join(", then ")
        ),
    }
}

/// Reading a .htaccess: which files it denies to every client.
///
/// Pure: text in, rules out. Kept apart from the report so that it can
/// move to a module of its own.
mod htaccess {
    use std::cell::Cell;

    /// What a .htaccess denies to every client, as far as `check` can tell:
    /// enough of Apache's syntax to see a real rule, not a word in a comment.
    #[derive(Debug, Default)]
    pub(super) struct Htaccess {
        /// The last `Require all denied` / `Deny from all` (true) or
        /// `Require all granted` / `Allow from all` (false) outside any
        /// `<Files>` block: it applies to the whole folder and below.
        pub(super) all: Option<bool>,
        /// The `<Files>` and `<FilesMatch>` blocks that deny every client.
        pub(super) files: Vec<Regex>,
    }

    enum Section {
        /// `<IfModule>`, `<IfVersion>`, ...: read as if their condition held.
        /// The shipped .htaccess puts its 2.4 rule in one and its 2.2 rule
        /// in another, and one of the two applies on any Apache.
        Transparent,
        /// `<If>`, `<Limit>`, `<RequireAny>`, anything else: a deny inside may
        /// not hold for every request, so it does not count.
        Conditional,
        /// `pattern` is None when check cannot read it: then the block's
        /// denies do not count.
        Files {
            pattern: Option<Regex>,
            denies: bool,
        },
    }

    impl Htaccess {
        pub(super) fn parse(text: &str) -> Htaccess {
            let mut h = Htaccess::default();
            let mut open: Vec<Section> = Vec::new();
            for line in logical_lines(text) {
                let line = line.trim();
                // Apache's comments are whole lines whose first non-blank
                // character is '#'; there are no comments after a directive.
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if line.starts_with("</") {
                    if let Some(Section::Files {
                        pattern: Some(p),
                        denies: true,
                    }) = open.pop()
                    {
                        h.files.push(p);
                    }
                    continue;
                }
                if let Some(tag) = line.strip_prefix('<') {
                    let tag = tag.strip_suffix('>').unwrap_or(tag).trim();
                    let (name, arg) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
                    let arg = arg.trim();
                    open.push(match name.to_ascii_lowercase().as_str() {
                        "files" => Section::Files {
                            pattern: match arg.strip_prefix('~') {
                                Some(re) => Regex::parse(unquote(re.trim())),
                                None => Regex::wildcard(unquote(arg)),
                            },
                            denies: false,
                        },
                        "filesmatch" => Section::Files {
                            pattern: Regex::parse(unquote(arg)),
                            denies: false,
                        },
                        "ifmodule" | "ifversion" | "ifdefine" | "iffile" | "ifdirective"
                        | "ifsection" | "requireall" => Section::Transparent,
                        // The shipped files refuse private files only where
                        // they exist (so /report.py still reaches the app);
                        // check asks about files that exist, or will (a log).
                        "if" if unquote(arg).trim() == "-f %{REQUEST_FILENAME}" => {
                            Section::Transparent
                        }
                        _ => Section::Conditional,
                    });
                    continue;
                }
                let words: Vec<String> = line
                    .split_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect();
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                let deny = match words.as_slice() {
                    ["require", "all", "denied"] | ["deny", "from", "all"] => true,
                    ["require", "all", "granted"] | ["allow", "from", "all"] => false,
                    _ => continue,
                };
                if open.iter().any(|s| matches!(s, Section::Conditional)) {
                    continue;
                }
                let block = open.iter_mut().rev().find_map(|s| match s {
                    Section::Files { denies, .. } => Some(denies),
                    _ => None,
                });
                match block {
                    // Only a deny counts inside a block: whether a 2.2 `Allow`
                    // beside it wins depends on `Order`, which check does not
                    // model.
                    Some(denies) => *denies |= deny,
                    None => h.all = Some(deny),
                }
            }
            h
        }
    }

    /// The lines of a config file, with `\`-continued lines joined.
    fn logical_lines(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for raw in text.lines() {
            match raw.strip_suffix('\\') {
                Some(head) => cur.push_str(head),
                None => {
                    cur.push_str(raw);
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    fn unquote(s: &str) -> &str {
        for q in ['"', '\''] {
            if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
                return inner;
            }
        }
        s
    }

    /// A regular expression as `<FilesMatch>` reads it (PCRE, searched for
    /// anywhere in the file name), limited to what such patterns use: literals,
    /// `\.` and other escapes, `.`, classes (`[a-z]`, `\d`, `\w`, `\s`), groups
    /// with `|`, `^`, `$`, `* + ? {m,n}`, look-aheads `(?=` `(?!`, and a leading
    /// `(?i)`. Anything else (look-behinds, back-references) does not parse, and such a block counts
    /// as denying nothing. A `<Files>` wildcard is compiled to one, anchored.
    #[derive(Debug)]
    pub(super) struct Regex {
        alts: Vec<Vec<Piece>>,
        icase: bool,
    }

    #[derive(Debug)]
    struct Piece {
        node: Node,
        min: u32,
        max: u32,
    }

    #[derive(Debug)]
    enum Node {
        Char(char),
        /// `.`
        Any,
        Class(Class),
        Start,
        End,
        Group(Vec<Vec<Piece>>),
        /// `(?=...)` or, negated, `(?!...)`: matches no characters.
        Look {
            negated: bool,
            alts: Vec<Vec<Piece>>,
        },
    }

    #[derive(Debug)]
    struct Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    }

    impl Class {
        fn has(&self, c: char, icase: bool) -> bool {
            let within = |c: char| self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
            let found = within(c)
                || (icase && (within(c.to_ascii_lowercase()) || within(c.to_ascii_uppercase())));
            found != self.negated
        }
    }

    const MANY: u32 = u32::MAX;
    /// Backtracking steps one match may take: a pathological pattern gives up
    /// (as "no match") instead of hanging check.
    const MAX_STEPS: u32 = 100_000;

    fn one(node: Node) -> Piece {
        Piece {
            node,
            min: 1,
            max: 1,
        }
    }

    /// Reads a pattern left to right.
    struct Parser {
        s: Vec<char>,
        i: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<char> {
            self.s.get(self.i).copied()
        }
        fn next(&mut self) -> Option<char> {
            let c = self.peek()?;
            self.i += 1;
            Some(c)
        }
        fn alts(&mut self) -> Option<Vec<Vec<Piece>>> {
            let mut alts = vec![self.seq()?];
            while self.peek() == Some('|') {
                self.i += 1;
                alts.push(self.seq()?);
            }
            Some(alts)
        }
        fn seq(&mut self) -> Option<Vec<Piece>> {
            let mut seq = Vec::new();
            while let Some(c) = self.peek() {
                if c == '|' || c == ')' {
                    break;
                }
                let node = self.atom()?;
                let (min, max) = self.quantifier()?;
                seq.push(Piece { node, min, max });
            }
            Some(seq)
        }
        fn atom(&mut self) -> Option<Node> {
            Some(match self.next()? {
                '.' => Node::Any,
                '^' => Node::Start,
                '$' => Node::End,
                '(' => {
                    // `(?:` groups; `(?=` and `(?!` look ahead (the shipped
                    // rule's `^\.(?!well-known$)`). Other `(?` forms are
                    // look-behinds and flags this matcher does not have.
                    let mut look = None;
                    if self.peek() == Some('?') {
                        look = match self.s.get(self.i + 1) {
                            Some(':') => None,
                            Some('=') => Some(false),
                            Some('!') => Some(true),
                            _ => return None,
                        };
                        self.i += 2;
                    }
                    let alts = self.alts()?;
                    if self.next()? != ')' {
                        return None;
                    }
                    match look {
                        Some(negated) => Node::Look { negated, alts },
                        None => Node::Group(alts),
                    }
                }
                '[' => Node::Class(self.class(false)?),
                '\\' => self.escape()?,
                '*' | '+' | '?' => return None,
                c => Node::Char(c),
            })
        }
        fn escape(&mut self) -> Option<Node> {
            let c = self.next()?;
            Some(match shorthand(c) {
                Some(class) => Node::Class(class),
                None => Node::Char(literal_escape(c)?),
            })
        }
        /// After `[`. A wildcard's class also takes `!` for negation, and `\`
        /// there always quotes the next character.
        fn class(&mut self, wildcard: bool) -> Option<Class> {
            let negated = match self.peek() {
                Some('^') => true,
                Some('!') if wildcard => true,
                _ => false,
            };
            if negated {
                self.i += 1;
            }
            let mut ranges = Vec::new();
            let mut first = true;
            loop {
                let c = self.next()?;
                if c == ']' && !first {
                    break;
                }
                first = false;
                let lo = match c {
                    '\\' if wildcard => self.next()?,
                    '\\' => {
                        let e = self.next()?;
                        if let Some(class) = shorthand(e).filter(|c| !c.negated) {
                            ranges.extend(class.ranges);
                            continue;
                        }
                        literal_escape(e)?
                    }
                    // POSIX classes ([:alpha:]) are not supported.
                    '[' if self.peek() == Some(':') => return None,
                    c => c,
                };
                if self.peek() == Some('-') && self.s.get(self.i + 1).is_some_and(|&n| n != ']') {
                    self.i += 1;
                    let hi = match self.next()? {
                        '\\' if wildcard => self.next()?,
                        '\\' => literal_escape(self.next()?)?,
                        c => c,
                    };
                    if hi < lo {
                        return None;
                    }
                    ranges.push((lo, hi));
                } else {
                    ranges.push((lo, lo));
                }
            }
            Some(Class { negated, ranges })
        }
        /// `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` after an atom; (1, 1) for none.
        fn quantifier(&mut self) -> Option<(u32, u32)> {
            let q = match self.peek() {
                Some('*') => (0, MANY),
                Some('+') => (1, MANY),
                Some('?') => (0, 1),
                Some('{') => {
                    return match self.braces() {
                        Some(q) => self.lazy(q),
                        // PCRE: a `{` that is not a quantifier is a literal.
                        None => Some((1, 1)),
                    };
                }
                _ => return Some((1, 1)),
            };
            self.i += 1;
            self.lazy(q)
        }
        /// After a quantifier: a lazy `?` finds the same matches as a greedy
        /// one; a possessive `+` may not, and is refused.
        fn lazy(&mut self, q: (u32, u32)) -> Option<(u32, u32)> {
            match self.peek() {
                Some('?') => self.i += 1,
                Some('+') => return None,
                _ => {}
            }
            Some(q)
        }
        /// `{m}`, `{m,}` or `{m,n}` at the cursor, moved past; None leaves the
        /// cursor alone.
        fn braces(&mut self) -> Option<(u32, u32)> {
            let rest: String = self.s[self.i + 1..].iter().collect();
            let end = rest.find('}')?;
            let inner = &rest[..end];
            let (min, max) = match inner.split_once(',') {
                None => {
                    let n = inner.parse().ok()?;
                    (n, n)
                }
                Some((m, "")) => (m.parse().ok()?, MANY),
                Some((m, n)) => (m.parse().ok()?, n.parse().ok()?),
            };
            if min > max || min > 1000 || (max != MANY && max > 1000) {
                return None;
            }
            self.i += end + 2;
            Some((min, max))
        }
    }

    /// `\d \w \s` and their negations.
    fn shorthand(c: char) -> Option<Class> {
        let ranges = match c.to_ascii_lowercase() {
            'd' => vec![('0', '9')],
            'w' => vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')],
            's' => vec![(' ', ' '), ('\t', '\r')],
            _ => return None,
        };
        Some(Class {
            negated: c.is_ascii_uppercase(),
            ranges,
        })
    }

    /// The character an escape stands for; None for escapes with another
    /// meaning (`\b`, `\1`, `\A`, ...), which are not supported.
    fn literal_escape(c: char) -> Option<char> {
        match c {
            'n' => Some('\n'),
            't' => Some('\t'),
            c if c.is_ascii_alphanumeric() => None,
            c => Some(c),
        }
    }

    impl Regex {
        fn parse(src: &str) -> Option<Regex> {
            let (icase, src) = match src.strip_prefix("(?i)") {
                Some(rest) => (true, rest),
                None => (false, src),
            };
            let mut p = Parser {
                s: src.chars().collect(),
                i: 0,
            };
            let alts = p.alts()?;
            // A `)` without its `(`.
            if p.i != p.s.len() {
                return None;
            }
            Some(Regex { alts, icase })
        }

        /// A `<Files>` wildcard (`*`, `?`, `[...]`), matching the whole name.
        fn wildcard(src: &str) -> Option<Regex> {
            let mut p = Parser {
                s: src.chars().collect(),
                i: 0,
            };
            let mut seq = vec![one(Node::Start)];
            while let Some(c) = p.next() {
                seq.push(match c {
                    '*' => Piece {
                        node: Node::Any,
                        min: 0,
                        max: MANY,
                    },
                    '?' => one(Node::Any),
                    '[' => one(Node::Class(p.class(true)?)),
                    '\\' => one(Node::Char(p.next()?)),
                    c => one(Node::Char(c)),
                });
            }
            seq.push(one(Node::End));
            Some(Regex {
                alts: vec![seq],
                icase: false,
            })
        }

        pub(super) fn is_match(&self, name: &str) -> bool {
            let s: Vec<char> = name.chars().collect();
            let m = Matcher {
                s: &s,
                icase: self.icase,
                steps: Cell::new(0),
            };
            (0..=s.len()).any(|start| m.alts(&self.alts, start, &|_| true))
        }
    }

    /// A backtracking matcher: each step hands what follows to a continuation.
    struct Matcher<'a> {
        s: &'a [char],
        icase: bool,
        steps: Cell<u32>,
    }

    impl Matcher<'_> {
        fn alts(&self, alts: &[Vec<Piece>], i: usize, k: &dyn Fn(usize) -> bool) -> bool {
            alts.iter().any(|seq| self.seq(seq, i, k))
        }
        fn seq(&self, seq: &[Piece], i: usize, k: &dyn Fn(usize) -> bool) -> bool {
            match seq.split_first() {
                None => k(i),
                Some((p, rest)) => self.rep(p, 0, i, &|j| self.seq(rest, j, k)),
            }
        }
        /// `p` has matched `n` times, up to `i`: greedily once more, else go on.
        fn rep(&self, p: &Piece, n: u32, i: usize, k: &dyn Fn(usize) -> bool) -> bool {
            let steps = self.steps.get() + 1;
            self.steps.set(steps);
            if steps > MAX_STEPS {
                return false;
            }
            // An empty repetition past the minimum would only loop.
            let more = n < p.max
                && self.node(&p.node, i, &|j| {
                    (j > i || n < p.min) && self.rep(p, n.saturating_add(1), j, k)
                });
            more || (n >= p.min && k(i))
        }
        fn node(&self, node: &Node, i: usize, k: &dyn Fn(usize) -> bool) -> bool {
            let here = self.s.get(i).copied();
            match node {
                Node::Start => i == 0 && k(i),
                Node::End => i == self.s.len() && k(i),
                Node::Any => here.is_some_and(|c| c != '\n') && k(i + 1),
                Node::Char(want) => {
                    here.is_some_and(|c| c == *want || (self.icase && c.eq_ignore_ascii_case(want)))
                        && k(i + 1)
                }
                Node::Class(class) => here.is_some_and(|c| class.has(c, self.icase)) && k(i + 1),
                Node::Group(alts) => self.alts(alts, i, k),
                Node::Look { negated, alts } => self.alts(alts, i, &|_| true) != *negated && k(i),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn filesmatch_regexes_search_the_name() {
            // (pattern, name, matches)
            let rows: &[(&str, &str, bool)] = &[
                (r"\.(toml|log|pid)$", "site.toml", true),
                (r"\.(toml|log|pid)$", "shim.log", true),
                (r"\.(toml|log|pid)$", "mysite.fcgi", false),
                (r"\.(toml|log|pid)$", "site.toml.bak", false),
                (r"\.(toml|log|pid)$", "toml", false),
                (r"^site\.toml$", "site.toml", true),
                (r"^site\.toml$", "my-site.toml", false),
                (r"site.toml", "siteXtoml", true),
                (r"\.toml", "a.toml.txt", true),
                (r"(?i)\.TOML$", "site.toml", true),
                (r"\.TOML$", "site.toml", false),
                (r"[.]t[a-z]ml$", "site.toml", true),
                (r"[^.]toml$", "site.toml", false),
                (r"\.(?:toml|ini)$", "x.ini", true),
                (r"^\.ht", ".htaccess", true),
                (r"^.*\.log$", "mysite.log", true),
                (r"\.lo+g$", "x.looog", true),
                (r"\.t?oml$", "x.oml", true),
                (r"^x{2,3}$", "xxx", true),
                (r"^x{2,3}$", "xxxx", false),
                (r"^x{2}$", "xx", true),
                (r"^a{,2}$", "a{,2}", true),
                (r"\w+\.\d$", "log_1.7", true),
                (r"^(a*)*b$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false),
                (r"^$", "", true),
                (r"x|", "anything", true),
                (r"^\.(?!well-known$)", ".env", true),
                (r"^\.(?!well-known$)", ".well-known", false),
                (r"^\.(?!well-known$)", ".well-known2", true),
                (r"^\.(?=git)", ".gitignore", true),
                (r"^\.(?=git)", ".env", false),
                (
                    r"(?i)(\.(py|db)|~)$|^\.(?!well-known$)",
                    "Settings.PY",
                    true,
                ),
            ];
            for &(pattern, name, want) in rows {
                let re = Regex::parse(pattern).unwrap_or_else(|| panic!("{pattern} should parse"));
                assert_eq!(re.is_match(name), want, "{pattern} on {name}");
            }
        }

        #[test]
        fn unsupported_regexes_do_not_parse() {
            for pattern in [
                r"(?<!x)",
                r"(?P<n>x)",
                r"\bsite",
                r"(a",
                r"a)",
                r"[abc",
                r"*x",
                r"a++",
                r"\1",
                "[[:alpha:]]",
            ] {
                assert!(Regex::parse(pattern).is_none(), "{pattern} parsed");
            }
        }

        #[test]
        fn files_wildcards_match_the_whole_name() {
            let rows: &[(&str, &str, bool)] = &[
                ("site.toml", "site.toml", true),
                ("site.toml", "mysite.toml", false),
                ("*.toml", "site.toml", true),
                ("*.toml", "site.toml.bak", false),
                ("site.?oml", "site.toml", true),
                ("[st]ite.toml", "site.toml", true),
                ("*.[!t]oml", "site.toml", false),
                ("*.[^t]oml", "site.xoml", true),
                ("*", "anything", true),
                ("a\\*", "a*", true),
                ("a\\*", "ab", false),
            ];
            for &(pattern, name, want) in rows {
                let re =
                    Regex::wildcard(pattern).unwrap_or_else(|| panic!("{pattern} should parse"));
                assert_eq!(re.is_match(name), want, "{pattern} on {name}");
            }
        }

        /// Does this .htaccess text deny `name`, by a block or for the folder?
        fn denies(text: &str, name: &str) -> bool {
            let h = Htaccess::parse(text);
            h.files.iter().any(|p| p.is_match(name)) || h.all == Some(true)
        }

        #[test]
        fn htaccess_deny_rules_are_told_from_mentions() {
            let rows: &[(&str, &str, bool)] = &[
                // Comments and other directives only mention the file.
                (
                    "# <Files site.toml> Require all denied\n",
                    "site.toml",
                    false,
                ),
                (
                    "# deny site.toml\nRewriteRule ^site\\.toml$ - [L]\n",
                    "site.toml",
                    false,
                ),
                ("  # Require all denied\n", "site.toml", false),
                // 2.4, in every spelling.
                (
                    "<Files site.toml>\nRequire all denied\n</Files>\n",
                    "site.toml",
                    true,
                ),
                (
                    "<Files \"site.toml\">\n  Require all denied\n</Files>\n",
                    "site.toml",
                    true,
                ),
                (
                    "<files 'site.toml'>\nrequire ALL Denied\n</files>\n",
                    "site.toml",
                    true,
                ),
                (
                    "<FilesMatch \"\\.toml$\">\nRequire all denied\n</FilesMatch>\n",
                    "site.toml",
                    true,
                ),
                (
                    "<FILESMATCH \\.(toml|log)$>\nRequire all denied\n</FILESMATCH>\n",
                    "x.log",
                    true,
                ),
                (
                    "<Files ~ \"\\.toml$\">\nRequire all denied\n</Files>\n",
                    "site.toml",
                    true,
                ),
                (
                    "<Files *.toml>\nRequire all denied\n</Files>\n",
                    "site.toml",
                    true,
                ),
                // 2.2.
                (
                    "<Files site.toml>\nOrder allow,deny\nDeny from all\n</Files>\n",
                    "site.toml",
                    true,
                ),
                (
                    "<FilesMatch \"\\.toml$\">\n deny from all\n</FilesMatch>\n",
                    "site.toml",
                    true,
                ),
                // The shipped form: both, each in its IfModule.
                (
                    "<FilesMatch \"\\.(toml|log|pid)$\">\n<IfModule mod_authz_core.c>\nRequire all \
                         denied\n</IfModule>\n<IfModule !mod_authz_core.c>\nOrder allow,deny\nDeny from \
                         all\n</IfModule>\n</FilesMatch>\n",
                    "site.toml",
                    true,
                ),
                // A block for another name, or one that grants.
                (
                    "<Files other.toml>\nRequire all denied\n</Files>\n",
                    "site.toml",
                    false,
                ),
                (
                    "<Files site.toml>\nRequire all granted\n</Files>\n",
                    "site.toml",
                    false,
                ),
                (
                    "<Files site.toml>\n# Require all denied\n</Files>\n",
                    "site.toml",
                    false,
                ),
                // A deny that holds only for some requests.
                (
                    "<Files site.toml>\n<Limit POST>\nRequire all denied\n</Limit>\n</Files>\n",
                    "site.toml",
                    false,
                ),
                (
                    "<Files site.toml>\n<If \"-n %{HTTP:X}\">\nRequire all denied\n</If>\n</Files>\n",
                    "site.toml",
                    false,
                ),
                // A block never closed: Apache refuses the file; nothing counts.
                (
                    "<Files site.toml>\nRequire all denied\n",
                    "site.toml",
                    false,
                ),
                // The whole folder.
                ("Require all denied\n", "site.toml", true),
                (
                    "Require all denied\nRequire all granted\n",
                    "site.toml",
                    false,
                ),
                // Only where the file exists (the shipped form): it does.
                (
                    "<FilesMatch \"\\.toml$\">\n<If \"-f %{REQUEST_FILENAME}\">\nRequire all denied\n</If>\n</FilesMatch>\n",
                    "site.toml",
                    true,
                ),
                // Any other condition may not hold.
                (
                    "<FilesMatch \"\\.toml$\">\n<If \"%{QUERY_STRING} == 'x'\">\nRequire all denied\n</If>\n</FilesMatch>\n",
                    "site.toml",
                    false,
                ),
                // A continued line.
                (
                    "<Files \\\n site.toml>\nRequire all \\\n denied\n</Files>\n",
                    "site.toml",
                    true,
                ),
            ];
            for &(text, name, want) in rows {
                assert_eq!(denies(text, name), want, "{name} in:\n{text}");
            }
        }

        #[test]
        fn the_shipped_htaccess_files_deny_site_toml_and_the_log_and_not_the_shim() {
            let shipped = [
                ("auto", include_str!("../htaccess/auto.htaccess")),
                ("cgi", include_str!("../htaccess/cgi.htaccess")),
                ("fastcgi", include_str!("../htaccess/fastcgi.htaccess")),
                ("fcgid", include_str!("../htaccess/fcgid.htaccess")),
            ];
            for (file, text) in shipped {
                assert!(denies(text, "site.toml"), "{file}.htaccess: site.toml");
                assert!(denies(text, "mysite.log"), "{file}.htaccess: mysite.log");
                assert!(!denies(text, "mysite.fcgi"), "{file}.htaccess: mysite.fcgi");
                for private in ["settings.py", "db.sqlite3", ".env", "site.toml~"] {
                    assert!(denies(text, private), "{file}.htaccess: {private}");
                }
                for public in ["style.css", ".well-known", "report.pdf"] {
                    assert!(!denies(text, public), "{file}.htaccess: {public}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_seconds_read_as_words() {
        assert_eq!(size(0, "0 (no limit)"), "0 (no limit)");
        assert_eq!(size(10 << 20, ""), "10485760 bytes (10 MiB)");
        assert_eq!(size(128 << 10, ""), "131072 bytes (128 KiB)");
        assert_eq!(size(1000, ""), "1000 bytes");
        assert_eq!(seconds(Duration::ZERO, "0 (never)"), "0 (never)");
        assert_eq!(seconds(Duration::from_secs(30), ""), "30 s");
    }
}
