//! The shim run by a person at a shell: `help`, `--version`, `check`.
//!
//! Beside the data path: `check` builds the same App the web server would,
//! and sends it one synthetic request through the same bridge, so what it
//! reports is what a visitor would get.

use std::borrow::Cow;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::app::App;
use crate::bridge::{Gone, Outcome, Transport};
use crate::config::Site;
use crate::worker;

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
struct Report {
    problems: usize,
    warnings: usize,
}

impl Report {
    fn line(&self, label: &str, value: impl std::fmt::Display) {
        // A long label (env.SOME_LONG_NAME) still keeps one space before its value.
        println!("{label:<17} {value}");
    }
    fn problem(&mut self, what: impl std::fmt::Display) {
        self.problems += 1;
        println!("PROBLEM           {what}");
    }
    fn warning(&mut self, what: impl std::fmt::Display) {
        self.warnings += 1;
        println!("warning           {what}");
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
    let mut r = Report {
        problems: 0,
        warnings: 0,
    };
    r.line("fcgi-shim", VERSION);
    r.line("executable", script.display());
    r.line("mode", web_server_mode(&script));
    // A config error is reported below as a PROBLEM; don't log it twice.
    crate::log::set_stderr(false);
    let mut app = App::new(script.clone(), false);
    // From here on the app's own lines (an import traceback) go to stderr.
    crate::log::set_stderr(true);
    r.line("site.toml", app.site_file.display());
    let site = match &app.site {
        Ok(site) => site.clone(),
        Err(e) => {
            r.problem(e);
            return finish(&r);
        }
    };
    show_site(&r, &site);
    permissions(&mut r, &site, &script);
    match worker::find_python(&site) {
        Ok(p) => r.line("interpreter", p.display()),
        Err(e) => {
            r.problem(e);
            return finish(&r);
        }
    }
    // Flush so that our lines come before the worker's on a shared terminal.
    let _ = std::io::stdout().flush(); // dropped: nothing to do if stdout is gone
    let Some(w) = app.ensure_worker() else {
        r.problem(format!(
            "the app does not load: {}",
            app.broken().unwrap_or("unknown reason")
        ));
        return finish(&r);
    };
    let ready = w.ready.clone();
    r.line("python", &ready.python);
    r.line("sys.executable", &ready.executable);
    for (i, p) in ready.sys_path.iter().enumerate() {
        r.line(if i == 0 { "sys.path" } else { "" }, p);
    }
    r.line("app", format!("imported in {} ms", ready.import_ms));

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
    let mut params = params
        .into_iter()
        .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)))
        .collect();
    let mut cap = Capture { out: Vec::new() };
    let outcome = app.handle(1, &mut params, &[], true, &mut cap);
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
    match status.get(..3).and_then(|s| s.parse::<u16>().ok()) {
        Some(500..=599) => r.problem(format!("GET {path} answered {status} (the traceback, if any, is above)")),
        Some(400..=499) => r.warning(format!(
            "GET {path} answered {status}; for Django, check ALLOWED_HOSTS (this test used Host: {host}; try --host=yourdomain)"
        )),
        Some(_) => {}
        None => r.problem(format!("GET {path} gave no status line")),
    }
    if outcome == Outcome::Cut {
        r.problem("the app failed in the middle of the response");
    }
    app.shutdown();
    finish(&r)
}

fn finish(r: &Report) -> i32 {
    if r.problems == 0 {
        println!(
            "result            OK{}",
            if r.warnings > 0 {
                format!(" ({} warnings)", r.warnings)
            } else {
                String::new()
            }
        );
        0
    } else {
        println!(
            "result            {} problem{}",
            r.problems,
            if r.problems == 1 { "" } else { "s" }
        );
        1
    }
}

fn show_site(r: &Report, s: &Site) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
    r.line("  python", opt(&s.python));
    r.line(
        "  search_path",
        s.search_path
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
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
    for (k, v) in &s.env {
        let secret = ["SECRET", "PASSWORD", "PASSWD", "TOKEN", "KEY"]
            .iter()
            .any(|w| k.to_uppercase().contains(w));
        r.line(
            &format!("  env.{k}"),
            if secret { "(hidden)".into() } else { v.clone() },
        );
    }
    for missing in s.search_path.iter().filter(|p| !p.is_dir()) {
        println!(
            "warning           search_path entry {} is not a directory",
            missing.display()
        );
    }
}

/// Warns about secrets other users can read.
fn permissions(r: &mut Report, s: &Site, script: &Path) {
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
    let dir = script.parent().unwrap_or(Path::new("."));
    let htaccess = std::fs::read_to_string(dir.join(".htaccess")).unwrap_or_default();
    let in_web_root = s.file.parent() == Some(dir);
    if in_web_root && !htaccess.to_lowercase().contains(".toml") {
        r.warning(format!(
            "{} sits in the web root and no .htaccess rule denies *.toml: visitors may download it \
             (use the .htaccess files from the project's htaccess/ folder)",
            s.file.display()
        ));
    }
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
