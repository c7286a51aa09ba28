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
//! ([`crate::htaccess`], with a small matcher for `<Files>` wildcards and
//! `<FilesMatch>` regular expressions).

use std::borrow::Cow;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::app::{self, Buffers};
use crate::bridge::{Fate, Gone, Transport};
use crate::config::{self, Net, Site, real};
use crate::environ::Param;
use crate::htaccess::Htaccess;
use crate::worker::{self, StartError, Worker};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn usage(prog: &str) -> String {
    format!(
        "fcgi-shim {VERSION}: run a Python WSGI site (Django, Flask, ...) under FastCGI or CGI.

Copy this file into your web root as mysite.fcgi, put a site.toml beside it,
and let the web server run it (see .htaccess examples in the project's
htaccess/ folder). Run from a shell, it helps you set that up:

  {prog} init [DIR] [--project=PATH]
        write a commented site.toml and a .htaccess into DIR (default: this
        file's folder; for a copy installed elsewhere, the current one), never
        overwriting; fills in a Django project found nearby (or at PATH)
  {prog} check [PATH] [--host=NAME]
        load site.toml and the app as the web server would, send a test
        GET request (default PATH /), report every problem; exit 1 if any
        (2 when it cannot tell what to check)
  {prog} runfcgi socket=PATH | host=ADDRESS port=NUMBER [option=value ...]
        serve FastCGI on a socket of its own, as Django's manage.py runfcgi
        did (daemonizes; `{prog} runfcgi help` lists the options)
  {prog} help       this text
  {prog} --version  the version

Under a web server it needs no arguments: with a listening socket on fd 0
(mod_fcgid, mod_fastcgi, lighttpd, spawn-fcgi) it serves FastCGI; started as
CGI (GATEWAY_INTERFACE set) it serves one request and exits.

site.toml is the file FCGI_SHIM_SITE names, else the one in the directory
of {prog} as invoked. A copy installed elsewhere, run by its name from PATH
(`fcgi-shim check`) or by a path (`~/bin/fcgi-shim check`: a file not named
*.fcgi, with no site.toml beside it), checks and inits the site of the
current directory, not the folder the binary is installed in: its .fcgi
file, and its site.toml unless FCGI_SHIM_SITE names another (init writes
there whatever it says).
Touching the site's .fcgi file (or its site.toml) reloads the app.
"
    )
}

/// The site's executable in `dir`: its one *.fcgi file (a symlink too,
/// even a dangling one), else mysite.fcgi, which need not exist (not
/// deployed yet, or a runfcgi site). Among several: mysite.fcgi, or the one
/// that is the program `by`; else which one is meant cannot be told.
pub fn fcgi_in(dir: &Path, by: &Path) -> Result<PathBuf, String> {
    let mine = dir.join("mysite.fcgi");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A folder we may enter but not list: only a name can be looked up.
        Err(_) if mine.symlink_metadata().is_ok() => return Ok(mine),
        Err(e) => {
            return Err(format!(
                "cannot list {}: {e}; run the site's .fcgi file there as ./NAME.fcgi",
                dir.display()
            ));
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "fcgi")
                && p.symlink_metadata().is_ok_and(|m| !m.is_dir())
        })
        .collect();
    found.sort();
    if found.is_empty() || found.contains(&mine) {
        return Ok(mine);
    }
    if found.len() == 1 {
        return Ok(found.remove(0));
    }
    let ours: Vec<&PathBuf> = found
        .iter()
        .filter(|p| matches!(program_at(p, by), Program::Same))
        .collect();
    if let [one] = ours[..] {
        return Ok(one.clone());
    }
    let names: Vec<String> = found
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    Err(format!(
        "{} holds several .fcgi files ({}), none of them mysite.fcgi or this program: run the \
         one you mean as ./NAME.fcgi there",
        dir.display(),
        names.join(", ")
    ))
}

/// How this program was started from a shell, for `check` and `init`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Run {
    /// As a site's executable: `./mysite.fcgi check`, or with
    /// FCGI_SHIM_SITE naming the site.
    Site,
    /// By its bare name from PATH: `fcgi-shim check`.
    FromPath,
    /// By the path of a copy installed outside any site: `~/bin/fcgi-shim
    /// check` (not named *.fcgi, no site.toml beside it).
    Installed,
}

impl Run {
    /// How `prog` (argv[0]), the executable `script`, was started.
    pub fn of(prog: &str, script: &Path) -> Run {
        if !prog.contains('/') {
            return Run::FromPath;
        }
        let site_name = script.extension().is_some_and(|x| x == "fcgi");
        if site_name
            || crate::config::site_from_env().is_some()
            || crate::config::locate(script).exists()
        {
            Run::Site
        } else {
            Run::Installed
        }
    }

    /// Why the site of the current directory is checked, for the report.
    fn why(self) -> &'static str {
        match self {
            Run::FromPath => "run from PATH",
            _ => "which has no site.toml beside it",
        }
    }
}

/// The executable `check` acts for when not run as a site's own
/// ([`Run`]): the site of the current directory ([`fcgi_in`]), not the
/// folder the binary is installed in. None when run as the site's, or in
/// the binary's folder, or (run by a path) where the current directory
/// holds no site either.
pub fn stand_in(run: Run, script: &Path) -> Result<Option<PathBuf>, String> {
    if run == Run::Site {
        return Ok(None);
    }
    let here =
        std::env::current_dir().map_err(|e| format!("cannot tell which folder this is: {e}"))?;
    if script.parent().is_some_and(|d| same_file(d, &here)) {
        return Ok(None);
    }
    if run == Run::Installed && !holds_site(&here) {
        return Ok(None);
    }
    fcgi_in(&here, script).map(Some)
}

/// Does `dir` hold a site: a site.toml, or a .fcgi file?
fn holds_site(dir: &Path) -> bool {
    if dir
        .join(crate::config::SITE_FILE)
        .symlink_metadata()
        .is_ok()
    {
        return true;
    }
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "fcgi"))
    })
}

/// Do `a` and `b` name one file (through symlinks too)?
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

/// What the file at `path` is, next to the program `by` (this one).
pub enum Program {
    Missing,
    Same,
    /// A Python script: the old flup mysite.fcgi.
    Flup,
    /// Another `#!` script: a wrapper, perhaps.
    Script,
    /// A build of fcgi-shim other than this one.
    OtherBuild,
    /// A program that is not fcgi-shim.
    Other,
    Folder,
    /// What no web server can run: a dangling symlink, a file this user
    /// cannot read.
    Broken(String),
}

impl Program {
    /// What the file is, as said of it in check's report and init's steps
    /// ("X is ..."); None when it is this program, or nothing is there.
    pub fn what(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            Program::Same | Program::Missing => return None,
            Program::Flup => "a Python script (the old flup mysite.fcgi?)".into(),
            Program::Script => "a script".into(),
            Program::OtherBuild => "another build of fcgi-shim".into(),
            Program::Other => "another program".into(),
            Program::Folder => "a folder".into(),
            Program::Broken(what) => what.as_str().into(),
        })
    }
}

pub fn program_at(path: &Path, by: &Path) -> Program {
    let Ok(link) = path.symlink_metadata() else {
        return Program::Missing;
    };
    if same_file(path, by) {
        return Program::Same;
    }
    match std::fs::metadata(path) {
        Err(_) if link.is_symlink() => {
            let target = std::fs::read_link(path).unwrap_or_default();
            return Program::Broken(format!(
                "a symlink to {}, which is not there",
                target.display()
            ));
        }
        Ok(m) if m.is_dir() => return Program::Folder,
        _ => {}
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return Program::Broken(format!("a file this user cannot read ({e})")),
    };
    if bytes.starts_with(b"#!") {
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        return if memchr::memmem::find(first, b"python").is_some() {
            Program::Flup
        } else {
            Program::Script
        };
    }
    if std::fs::read(by).is_ok_and(|b| b == bytes) {
        Program::Same
    } else if memchr::memmem::find(&bytes, b"FCGI_SHIM_SITE").is_some() {
        Program::OtherBuild
    } else {
        Program::Other
    }
}

/// The commands that put the program `by` at `path` and make it
/// executable: beside it first, then renamed over it, so that a copy that
/// is running (Text file busy) or a dangling symlink is replaced as well.
pub fn install_command(by: &Path, path: &Path) -> String {
    let new = shell_word(&format!("{}.new", path.display()));
    format!(
        "cp {} {new} && chmod 755 {new} && mv {new} {}",
        shell_word(&by.display().to_string()),
        shell_word(&path.display().to_string())
    )
}

/// `s` as one word for sh: as it is when nothing in it is special, else in
/// single quotes (a quote inside written '\'').
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@=".contains(c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs a command. Returns the exit code: 1 also when stdout could not take
/// all that it printed (`check > out.txt` on a full disk), so that a cut
/// report cannot pass for a whole one.
pub fn main(prog: &str, script: PathBuf, args: &[String]) -> i32 {
    let code = command(prog, script, args);
    match crate::log::say_failed() {
        Some(e) => {
            eprintln!("{prog}: what it printed could not be written in full: {e}");
            code.max(1)
        }
        None => code,
    }
}

fn command(prog: &str, script: PathBuf, args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        None => {
            eprint!("{}", usage(prog));
            2
        }
        Some("help" | "-h" | "--help") => {
            crate::log::say(format_args!("{}", usage(prog)));
            0
        }
        Some("--version" | "-V" | "version") => {
            crate::say!("fcgi-shim {VERSION}");
            0
        }
        Some("check") => {
            let run = Run::of(prog, &script);
            match stand_in(run, &script) {
                Ok(Some(site)) => check(site, Some((script.as_path(), run)), &args[1..]),
                Ok(None) => check(script, None, &args[1..]),
                Err(e) => {
                    eprintln!("{prog} check: {e}");
                    2
                }
            }
        }
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
        crate::say!("{label:<17} {value}");
    }
    /// The first line under `label`, the others under a blank one.
    fn lines<T: std::fmt::Display>(&self, label: &str, values: impl IntoIterator<Item = T>) {
        for (i, v) in values.into_iter().enumerate() {
            self.line(if i == 0 { label } else { "" }, v);
        }
    }
    fn problem(&mut self, what: impl std::fmt::Display) {
        self.problems += 1;
        crate::say!("PROBLEM           {what}");
    }
    fn warning(&mut self, what: impl std::fmt::Display) {
        self.warnings += 1;
        crate::say!("warning           {what}");
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
            crate::say!(
                "result            OK{}",
                match self.warnings {
                    0 => String::new(),
                    1 => " (1 warning)".into(),
                    n => format!(" ({n} warnings)"),
                }
            );
            0
        } else {
            crate::say!(
                "result            {} problem{}",
                self.problems,
                if self.problems == 1 { "" } else { "s" }
            );
            1
        }
    }
}

/// `check` of the site whose executable is `script`; `by`: the installed
/// binary doing it in that one's place, and how it was run ([`stand_in`]).
fn check(script: PathBuf, by: Option<(&Path, Run)>, args: &[String]) -> i32 {
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
    // Run from PATH in a folder with neither a .fcgi file nor a .htaccess
    // (a runfcgi site): no web root to look at.
    let program = by.map_or(Program::Same, |(by, _)| program_at(&script, by));
    let dir = script.parent().unwrap_or(Path::new("."));
    let web_root =
        !matches!(program, Program::Missing) || dir.join(".htaccess").symlink_metadata().is_ok();
    match by {
        None => r.line("executable", script.display()),
        Some((by, run)) if !web_root => r.line(
            "executable",
            format!(
                "none in {} (no .fcgi file, no .htaccess: a runfcgi site); its site.toml \
                 checked by {}, {}",
                dir.display(),
                by.display(),
                run.why()
            ),
        ),
        Some((by, run)) => {
            r.line(
                "executable",
                format!(
                    "{} (checked by {}, {})",
                    script.display(),
                    by.display(),
                    run.why()
                ),
            );
            let (x, install) = (script.display(), install_command(by, &script));
            let name = script.file_name().unwrap_or_default().to_string_lossy();
            let rename = if matches!(program, Program::Folder) {
                "rename it, then "
            } else {
                ""
            };
            match (&program, program.what()) {
                (Program::Missing, _) => r.problem(format!(
                    "{x} is not there: the web server has nothing to run for this site (its \
                     .htaccess is there); put this program there: {install}"
                )),
                (_, None) => {}
                (Program::Script, Some(what)) => r.warning(format!(
                    "{x} is {what}, not fcgi-shim: the web server runs it, and what it runs \
                     may not be what this checks; if it should be fcgi-shim: {install}"
                )),
                (Program::OtherBuild, Some(what)) => r.warning(format!(
                    "{x} is {what} than {}: the web server runs the first, so what it does may \
                     differ from this check; run ./{name} check to check it, or update it: \
                     {install}",
                    by.display()
                )),
                (Program::Folder | Program::Broken(_), Some(what)) => r.problem(format!(
                    "{x} is {what}: the web server cannot run it; {rename}put this program \
                     there: {install}"
                )),
                (_, Some(what)) => r.warning(format!(
                    "{x} is {what}, not fcgi-shim: the web server runs that, not what this \
                     checks; to serve the site with fcgi-shim: {install}"
                )),
            }
        }
    }
    let apache_runs_it = if web_root {
        let (mode, htaccess_warnings, runs_it) = web_server_mode(&script);
        r.line("mode", mode);
        for w in htaccess_warnings {
            r.warning(w);
        }
        runs_it
    } else {
        false
    };
    let site_file = config::locate(&script);
    match config::site_from_env() {
        Some(_) => r.line(
            "site.toml",
            format!("{} (from FCGI_SHIM_SITE)", site_file.display()),
        ),
        None => r.line("site.toml", site_file.display()),
    }
    let site = match config::load(&site_file) {
        Ok(site) => site,
        Err(e) => {
            r.problem(e);
            return r.finish();
        }
    };
    show_site(&mut r, &site);
    r.line("reloads", reloads(&script, &site_file, &site));
    log_file(&mut r, &site);
    permissions(&mut r, &site, &script, apache_runs_it);
    if web_root {
        exposure(&mut r, &site, &script);
    }
    let python = match worker::find_python(&site) {
        Ok(p) => p,
        Err(e) => {
            r.problem(e);
            return r.finish();
        }
    };
    r.line("interpreter", python.display());
    server_python(&mut r, &site, &python);
    let w = match Worker::start(&site, false, 1) {
        Ok(w) => w,
        Err(e) => {
            // What reloads the running site: the .fcgi file, else
            // site.toml (watched as well; runfcgi from PATH has no .fcgi).
            let reload = if web_root { &script } else { &site_file };
            import_failed(&mut r, &site, reload, &e);
            return r.finish();
        }
    };
    r.line("python", &w.ready.python);
    r.line("sys.executable", &w.ready.executable);
    r.lines("sys.path", &w.ready.sys_path);
    r.line("app", format!("imported in {} ms", w.ready.import_ms));
    if w.ready.django_debug == Some(true) {
        r.warning(format!(
            "Django's DEBUG is True{}: its error pages show every visitor the site's code, \
             settings and paths; set DEBUG = False, with the site's names in ALLOWED_HOSTS \
             (check --host=NAME tries one)",
            site.django_settings()
                .map(|m| format!(" in {m}"))
                .unwrap_or_default()
        ));
    }
    r.log();
    get(&mut r, &site, w, &path, &host);
    r.finish()
}

/// Warns when the interpreter came from this shell's PATH and the web
/// server's would give another one (an activated virtualenv, pyenv's
/// shims): the site would then run a Python that check did not try.
fn server_python(r: &mut Report, site: &Site, here: &Path) {
    if site.python.as_deref().is_some_and(|p| p.contains('/')) {
        return;
    }
    let there = worker::find_python_on(site, worker::SERVER_PATH.as_ref());
    // The same name in the same folder (/bin is /usr/bin on a merged /usr);
    // not the executable resolved, which would take a virtualenv's python
    // for the system one it links to.
    let place = |p: &Path| {
        (
            p.parent().and_then(|d| d.canonicalize().ok()),
            p.file_name().map(ToOwned::to_owned),
        )
    };
    if there.as_deref().is_ok_and(|p| place(p) == place(here)) {
        return;
    }
    let name = site.python.as_deref().unwrap_or("python3");
    r.warning(format!(
        "{name} is {} on this shell's PATH, but a web server's PATH ({}) gives {}: the site \
         may run another Python than this check (an activated virtualenv or pyenv is not seen \
         by the web server); set python = \"{}\" in {}",
        here.display(),
        worker::SERVER_PATH,
        match &there {
            Ok(p) => p.display().to_string(),
            Err(_) => "none".to_owned(),
        },
        here.display(),
        site.file.display()
    ));
}

/// The report of an app that did not load: the interpreter's version and
/// sys.path as the worker had them, the app's output, and the traceback,
/// all on stdout; `touch` (a .fcgi file or site.toml) is what makes the
/// running site load the fixed code.
fn import_failed(r: &mut Report, site: &Site, touch: &Path, e: &StartError) {
    if let StartError::Import { traceback, facts } = e {
        r.line("python", &facts.python);
        r.line("sys.executable", &facts.executable);
        r.lines("sys.path", &facts.sys_path);
        r.log();
        r.lines("traceback", traceback.lines());
    } else {
        r.log();
    }
    // The whole path: a bare name touched in another folder would only
    // create an empty file there.
    let name = touch.display();
    r.problem(format!(
        "{}; fix it and run check again, then `touch {name}` so that the running site \
         reloads",
        worker::load_error(site, e)
    ));
}

/// Sends `GET path` to the worker and reports the answer.
fn get(r: &mut Report, site: &Site, mut w: Worker, path: &str, host: &str) {
    // As a web server would: the query string apart, the path decoded.
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    let path_info = percent_decoded(path_only);
    let params: Vec<(&[u8], &[u8])> = vec![
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", b"fcgi-shim-check"),
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", path.as_bytes()),
        (b"SCRIPT_NAME", b""),
        (b"PATH_INFO", &path_info),
        (b"QUERY_STRING", query.as_bytes()),
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

/// How the running shim notices a touch (watch.rs): by inotify, or by a
/// stat before every request where inotify could miss one.
fn reloads(script: &Path, site_file: &Path, s: &Site) -> String {
    let script = std::path::absolute(script).unwrap_or_else(|_| script.to_path_buf());
    let mut gate = crate::watch::Gate::never();
    gate.arm(crate::app::reload_paths(&script, site_file, Some(s)));
    match gate.off() {
        None => "a change is seen at the next request (inotify watches the files)".to_owned(),
        Some(why) => format!(
            "a change is seen at the next request (statted before each one, without inotify: {why})"
        ),
    }
}

fn show_site(r: &mut Report, s: &Site) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
    let paths = |ps: &[PathBuf], none: &str| joined(ps.iter().map(|p| p.display()), none);
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
        joined(
            &s.trusted_proxies,
            "(none: X-Forwarded-For and X-Forwarded-Proto are ignored)",
        ),
    );
    r.line(
        "  debug",
        // What true means is the warning below; it is not said twice.
        if s.debug {
            "true (see the warning below)"
        } else {
            "false (tracebacks go to the log, never to a browser)"
        },
    );
    r.line("  debug_allow", joined(&s.debug_allow, "(nobody)"));
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
        r.line(&format!("  env.{k}"), env_shown(k, v));
    }
    web_server_addrs(r);
    if let Some(m) = &s.settings_module
        && let Some(v) = s.env_var("DJANGO_SETTINGS_MODULE")
        && v != m
    {
        r.warning(format!(
            "env.DJANGO_SETTINGS_MODULE = \"{v}\" in {} overrides settings_module = \"{m}\": \
             the app gets {v}; keep one of the two",
            s.file.display()
        ));
    }
    // A number without its unit is bytes: `max_rss = 512` meant megabytes.
    if (1..16 << 20).contains(&s.limits.max_rss) {
        r.warning(format!(
            "max_rss = {} in {} is less than any Python process takes (10 MiB and more): the \
             worker would be replaced after every request; give a size with its unit, e.g. \
             \"256M\"",
            size(s.limits.max_rss, ""),
            s.file.display()
        ));
    }
    for (k, _) in s.env.iter().filter(|(k, _)| config::is_key(k)) {
        r.warning(format!(
            "env.{k} in {}: `{k}` is a site.toml key, but every line after [env] belongs to \
             [env], so it only sets an environment variable; move the line above [env]",
            s.file.display()
        ));
    }
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
    let (valid, invalid) = crate::fastcgi::parse_web_server_addrs(&value);
    for a in invalid {
        r.warning(format!(
            "FCGI_WEB_SERVER_ADDRS: `{a}` is not an address or CIDR block (e.g. 127.0.0.1, \
             ::1, 10.0.0.0/8); the shim ignores it"
        ));
    }
    if valid.is_empty() {
        r.warning(
            "FCGI_WEB_SERVER_ADDRS lists no valid address: every TCP connection would be refused",
        );
    }
}

/// `a, b, c`, or `none` when there is nothing to list.
fn joined<T: std::fmt::Display>(items: impl IntoIterator<Item = T>, none: &str) -> String {
    let shown: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if shown.is_empty() {
        none.to_owned()
    } else {
        shown.join(", ")
    }
}

/// PATH_INFO for `path`, %XX-decoded as a web server decodes it; as it is
/// when an escape is malformed (a `%` not followed by two hex digits).
fn percent_decoded(path: &str) -> Vec<u8> {
    crate::environ::percent_decode(path.as_bytes())
        .map_or_else(|| path.as_bytes().to_vec(), Cow::into_owned)
}

/// An [env] value as `check` prints it: people paste the report into
/// support tickets, so a value whose name looks secret is hidden, and so
/// is the password of a URL (`postgres://user:PASSWORD@host/db`).
fn env_shown(name: &str, value: &str) -> String {
    const SECRET: [&str; 9] = [
        "SECRET", "PASS", "PWD", "TOKEN", "KEY", "CRED", "AUTH", "PRIVATE", "SALT",
    ];
    let upper = name.to_ascii_uppercase();
    if SECRET.iter().any(|w| upper.contains(w)) {
        return "(hidden)".into();
    }
    // scheme://user:password@host...: the userinfo ends at the last '@'
    // before the path.
    if let Some(start) = value.find("://").map(|i| i + 3) {
        let authority_end = value[start..]
            .find(['/', '?', '#'])
            .map_or(value.len(), |i| start + i);
        if let Some(at) = value[start..authority_end].rfind('@').map(|i| start + i)
            && let Some(colon) = value[start..at].find(':').map(|i| start + i)
        {
            return format!("{}(hidden){}", &value[..=colon], &value[at..]);
        }
    }
    value.to_owned()
}

/// Who a debug_allow list lets see tracebacks, in words.
fn allowed_clients(list: &[Net]) -> String {
    if list.iter().any(|n| n.prefix == 0) {
        "every client on the internet".to_owned()
    } else {
        format!("clients from {}", joined(list, ""))
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
            crate::sys::access(dir, libc::W_OK | libc::X_OK).map_err(|e| (e, dir.to_path_buf()))
        }
        Err(e) => Err((e, log.to_path_buf())),
    }
}

/// Warns about secrets other users of the host can read, and about modes
/// with which Apache will not run the site.
/// `apache_runs_it`: a handler of the .htaccess runs this file (suEXEC's
/// rules apply where the host has it).
fn permissions(r: &mut Report, s: &Site, script: &Path, apache_runs_it: bool) {
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.is_file(), m.permissions().mode()))
    };
    let world_readable = |p: &Path| mode(p).is_some_and(|(file, m)| file && m & 0o004 != 0);
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
    // suEXEC (which mod_fcgid and mod_cgid use on shared hosts) refuses a
    // program, or a folder holding it, that group or others may write.
    let dir = script.parent().unwrap_or(Path::new("."));
    for (what, p, fix) in [
        ("the executable", script, "755"),
        ("its folder", dir, "755"),
    ] {
        if let Some((_, m)) = mode(p).filter(|(_, m)| apache_runs_it && m & 0o022 != 0) {
            r.warning(format!(
                "{what} {} has mode {:o}: group or others may write it, and where the host \
                 runs programs through suEXEC (most shared hosts do) it refuses such a one \
                 (Apache answers 500, suexec.log says \"writable by others\"); chmod {fix} {}",
                p.display(),
                m & 0o7777,
                p.display()
            ));
        }
    }
    let htaccess = dir.join(".htaccess");
    // Read by others or by the group (640 root:www-data is a common setup).
    if let Some((_, m)) = mode(&htaccess).filter(|(_, m)| m & 0o044 == 0) {
        r.warning(format!(
            "{} has mode {:o}: Apache reads it as its own user (www-data on Debian), not as you, and \
             answers every request in this folder with 403 when it cannot; chmod 644 {}",
            htaccess.display(),
            m & 0o7777,
            htaccess.display()
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
/// tells: the handlers it names for our file name, in its order; and a
/// warning when its rewrite rules send requests to another .fcgi file.
fn web_server_mode(script: &Path) -> (String, Vec<String>, bool) {
    let dir = script.parent().unwrap_or(Path::new("."));
    // Handlers are inherited: those of the folders above (a site in
    // public_html/blog/) come first, then this folder's own.
    let mut above: Vec<&Path> = dir.ancestors().skip(1).collect();
    above.reverse();
    let inherited: Vec<_> = above
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join(".htaccess")).ok())
        .flat_map(|t| Htaccess::parse(&t).handlers)
        .collect();
    let htaccess = dir.join(".htaccess");
    let own = std::fs::read_to_string(&htaccess).ok();
    if own.is_none() && inherited.is_empty() {
        let mode = "no .htaccess here: FastCGI if the server spawns it with a socket (mod_fcgid, lighttpd), else CGI";
        return (mode.into(), Vec::new(), false);
    }
    let file = script
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // In the files' order, as Apache reads them: a handler outside any
    // section replaces those before it (RemoveHandler drops them); one in
    // an <IfModule> is an alternative, used if its module is there.
    let parsed = Htaccess::parse(own.as_deref().unwrap_or(""));
    let mut modes: Vec<String> = Vec::new();
    for h in inherited.into_iter().chain(parsed.handlers) {
        if !h.applies_to(&file) {
            continue;
        }
        if !h.conditional {
            modes.clear();
        }
        let Some(name) = &h.name else {
            continue;
        };
        let mode = match name.as_str() {
            "fcgid-script" => "FastCGI via mod_fcgid".to_owned(),
            "fastcgi-script" => "FastCGI via mod_fastcgi".to_owned(),
            "cgi-script" => "plain CGI via mod_cgi".to_owned(),
            other => format!("handler {other}"),
        };
        if !modes.contains(&mode) {
            modes.push(mode);
        }
    }
    let misrouted = parsed
        .rewrites_to
        .iter()
        .find(|t| t.ends_with(".fcgi") && **t != file)
        .filter(|_| !parsed.rewrites_to.iter().any(|t| *t == file))
        .map(|other| {
            format!(
                "{} rewrites requests to {other}, but this executable is {file}: every page \
                 would ask for a file that is not there; write {file} for {other} in it (and \
                 {} for {}), or rename this file",
                htaccess.display(),
                file.replace('.', "\\."),
                other.replace('.', "\\.")
            )
        });
    let mode = match modes.len() {
        0 => format!(".htaccess names no handler for {file}: the server's defaults decide"),
        1 => format!("{} (from .htaccess)", modes[0]),
        _ => format!(
            "the first of these the server has: {} (from .htaccess)",
            modes.join(", then ")
        ),
    };
    let mut warnings: Vec<String> = misrouted.into_iter().collect();
    if parsed.all == Some(true) {
        warnings.push(format!(
            "{} denies every request to this folder (`Require all denied` or `Deny from all` \
             outside any block): every page answers 403; put the rule inside a <Files> or \
             <FilesMatch> block for the files to refuse",
            htaccess.display()
        ));
    }
    // mod_fcgid, mod_fastcgi or mod_cgi runs this file: what ExecCGI and
    // suEXEC apply to.
    let runs_it = modes.iter().any(|m| !m.starts_with("handler "));
    if runs_it && parsed.exec_cgi == Some(false) {
        warnings.push(format!(
            "{} turns ExecCGI off: Apache will not run {file} (403, \"Options ExecCGI is off in \
             this directory\"); write Options +ExecCGI",
            htaccess.display()
        ));
    }
    for p in &parsed.slash_patterns {
        warnings.push(format!(
            "{}: RewriteRule {p} never matches: in a .htaccess the path a rule sees has no \
             leading / (the seed's rule was for the server config); write ^(.*)$ as \
             htaccess/auto.htaccess does",
            htaccess.display()
        ));
    }
    (mode, warnings, runs_it)
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_words_are_quoted_only_when_they_need_it() {
        assert_eq!(
            super::shell_word("/home/u/www/mysite.fcgi"),
            "/home/u/www/mysite.fcgi"
        );
        assert_eq!(
            super::shell_word("/home/u/my site.fcgi"),
            "'/home/u/my site.fcgi'"
        );
        assert_eq!(super::shell_word("/a$1.fcgi"), "'/a$1.fcgi'");
        assert_eq!(super::shell_word("it's"), "'it'\\''s'");
    }

    use super::*;

    #[test]
    fn paths_are_percent_decoded_as_a_web_server_does() {
        assert_eq!(percent_decoded("/caf%C3%A9/a%2fb"), "/café/a/b".as_bytes());
        assert_eq!(percent_decoded("/100%/%zz/%4"), b"/100%/%zz/%4");
        assert_eq!(percent_decoded("/%00"), b"/\0");
    }

    #[test]
    fn env_values_that_look_secret_are_hidden() {
        for (name, value, shown) in [
            (
                "DJANGO_SETTINGS_MODULE",
                "djsite.settings",
                "djsite.settings",
            ),
            ("SECRET_KEY", "x", "(hidden)"),
            ("DB_PASS", "hunter2", "(hidden)"),
            ("MYSQL_PWD", "hunter2", "(hidden)"),
            ("API_CREDENTIALS", "abc", "(hidden)"),
            ("github_token", "abc", "(hidden)"),
            (
                "DATABASE_URL",
                "postgres://bob:hunter2@db:5432/x",
                "postgres://bob:(hidden)@db:5432/x",
            ),
            (
                "CACHE",
                "redis://:p@ss@cache/0",
                "redis://:(hidden)@cache/0",
            ),
            (
                "HOME_URL",
                "https://bob@example.com/a:b@c",
                "https://bob@example.com/a:b@c",
            ),
            ("SITE", "https://example.com/", "https://example.com/"),
        ] {
            assert_eq!(env_shown(name, value), shown, "{name}={value}");
        }
    }

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
