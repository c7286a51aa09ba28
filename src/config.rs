//! site.toml: where the app is and how to run it.
//!
//! Plumbing beside the data path: read once at start and again on reload.
//! Parsed from toml's spanned tables so that every error names the file, the
//! line, the key, and what would be valid (STYLE.md rule 8).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

/// The name of the file looked for beside the executable.
pub const SITE_FILE: &str = "site.toml";

/// A loaded site.toml. Paths are absolute (relative ones are resolved
/// against the file's directory).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Site {
    pub file: PathBuf,
    /// As written; resolved to an interpreter at spawn (see `worker.rs`).
    pub python: Option<String>,
    pub search_path: Vec<PathBuf>,
    pub settings_module: Option<String>,
    pub wsgi_app: Option<String>,
    pub env: Vec<(String, String)>,
    pub log_file: Option<PathBuf>,
    /// Where the site is mounted, overriding what the rewrite implies.
    pub script_name: Option<String>,
    /// Peers whose X-Forwarded-Proto / X-Forwarded-For are believed.
    pub trusted_proxies: Vec<Net>,
    pub debug: bool,
    pub debug_allow: Vec<Net>,
    /// Extra files whose change triggers a reload.
    pub watch: Vec<PathBuf>,
    /// The Python worker's working directory (the seed's optional
    /// `os.chdir(project)`); None: runfcgi's `workdir=` if given, else the
    /// folder of site.toml (see `worker.rs`).
    pub chdir: Option<PathBuf>,
    /// Run the shim and its Python worker on one CPU (`affinity.rs`). True
    /// unless site.toml says `pin_cpu = false`.
    pub pin_cpu: bool,
    pub limits: Limits,
}

impl Site {
    /// The value [env] gives `name`, if it gives one.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The settings module Django gets: [env]'s DJANGO_SETTINGS_MODULE when
    /// it sets one (the worker's environment takes [env] last), else
    /// `settings_module`.
    pub fn django_settings(&self) -> Option<&str> {
        self.env_var("DJANGO_SETTINGS_MODULE")
            .or(self.settings_module.as_deref())
    }
}

/// Limits, each with a default a shared host can live with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Recycle the worker after this many requests; 0 = never.
    pub max_requests: u64,
    /// Time the app has to finish a response; then 504 and a new worker.
    pub request_timeout: Duration,
    /// Exit after this long without a request; zero = never.
    pub idle_timeout: Duration,
    /// Largest request body; larger ones get 413 before the app sees them.
    pub max_body: u64,
    /// Recycle the worker between requests once its RSS passes this; 0 = off.
    pub max_rss: u64,
    /// Time the web server may stay silent in the middle of a request.
    pub io_timeout: Duration,
    /// Time the app has to import.
    pub startup_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_requests: 0,
            request_timeout: Duration::from_secs(300),
            idle_timeout: Duration::ZERO,
            max_body: 0,
            max_rss: 0,
            io_timeout: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(120),
        }
    }
}

/// An address or a CIDR block (`10.0.0.0/8`, `::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// `10.0.0.0/8`, or a single address without its prefix length.
impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == host_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// The prefix length of a single address of `addr`'s family.
fn host_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

impl Net {
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = host_prefix(addr);
        let prefix: u8 = match p {
            Some(p) => p.trim().parse().ok().filter(|&n| n <= max)?,
            None => max,
        };
        // An IPv4-mapped block (::ffff:10.0.0.1, ::ffff:0:0/96) is kept in
        // its IPv4 form, the form `contains` compares peers in.
        if let IpAddr::V6(v6) = addr
            && let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96)
        {
            return Some(Net {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Some(Net { addr, prefix })
    }

    /// True when `ip` is inside this block. IPv4-mapped IPv6 addresses
    /// (::ffff:a.b.c.d) match their IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// What is wrong with a site.toml, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The longest timeout accepted: a year.
const MAX_SECONDS: i64 = 365 * 24 * 3600;

/// Every key site.toml knows, with what it expects, for error messages.
const KEYS: &[(&str, &str)] = &[
    (
        "python",
        "a path to a Python 3 interpreter, e.g. \"/home/user/venv/bin/python3\"",
    ),
    (
        "search_path",
        "an array of strings (directories), e.g. [\"/home/user/myproject\"]",
    ),
    (
        "settings_module",
        "a Django settings module, e.g. \"myproject.settings\"",
    ),
    (
        "wsgi_app",
        "a WSGI callable \"module:name\", e.g. \"myproject.wsgi:application\"",
    ),
    (
        "env",
        "a table of strings: [env] then NAME = \"value\" lines",
    ),
    ("log_file", "a file path, e.g. \"../logs/mysite.log\""),
    (
        "script_name",
        "the URL path the site is mounted at, e.g. \"/blog\" or \"\"",
    ),
    (
        "trusted_proxies",
        "an array of strings (addresses or CIDR blocks, e.g. [\"127.0.0.1\"])",
    ),
    ("debug", "true or false"),
    (
        "debug_allow",
        "an array of strings (addresses or CIDR blocks), e.g. [\"203.0.113.7\"]",
    ),
    (
        "watch",
        "an array of strings (files whose change reloads the app)",
    ),
    (
        "chdir",
        "the app's working directory, an existing directory, e.g. \"../myproject\" (relative to site.toml's folder)",
    ),
    ("pin_cpu", "true or false"),
    ("max_requests", "a whole number of requests, 0 for no limit"),
    ("request_timeout", "a whole number of seconds"),
    (
        "idle_timeout",
        "a whole number of seconds, 0 to never exit when idle",
    ),
    (
        "max_body",
        "a size in bytes, or a string like \"100M\"; 0 for no limit",
    ),
    (
        "max_rss",
        "a size in bytes, or a string like \"512M\"; 0 for no limit",
    ),
    ("io_timeout", "a whole number of seconds"),
    ("startup_timeout", "a whole number of seconds"),
];

/// Where site.toml is: `FCGI_SHIM_SITE` when set, else beside `script`
/// (the executable as invoked, not /proc/self/exe, so that one shared binary
/// symlinked into several web roots reads each site's own file).
pub fn locate(script: &Path) -> PathBuf {
    if let Some(p) = site_from_env() {
        return absolute(Path::new(&p));
    }
    let dir = script
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    absolute(&dir.join(SITE_FILE))
}

/// `FCGI_SHIM_SITE`, unless unset or empty.
pub fn site_from_env() -> Option<std::ffi::OsString> {
    std::env::var_os("FCGI_SHIM_SITE").filter(|p| !p.is_empty())
}

/// Where `runfcgi` finds site.toml: `FCGI_SHIM_SITE` when set, else beside
/// `script` when there is one, else in the current directory (for
/// `fcgi-shim runfcgi` started from PATH in a site's folder, as
/// `./manage.py runfcgi` was started in the project's). The second value
/// is the current-directory candidate that was also looked at, when
/// neither exists, for the error message. The FastCGI and CGI modes keep
/// [`locate`]: under a web server the current directory is not the user's
/// choice.
pub fn locate_runfcgi(script: &Path) -> (PathBuf, Option<PathBuf>) {
    let beside = locate(script);
    if site_from_env().is_some() || beside.exists() {
        return (beside, None);
    }
    let here = absolute(Path::new(SITE_FILE));
    if here == beside {
        return (beside, None);
    }
    if here.exists() {
        return (here, None);
    }
    (beside, Some(here))
}

/// `p` with symlinks and `..` resolved, as far as it exists; the rest
/// appended as written (a log file or project not created yet).
pub fn real(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => real(dir).join(name),
        _ => p.to_path_buf(),
    }
}

/// `path` made absolute against the current directory, without resolving
/// symlinks.
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let joined = cwd.join(path);
    // Drop "." components so that messages show clean paths.
    joined
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect()
}

pub fn load(file: &Path) -> Result<Site, Error> {
    let text = std::fs::read_to_string(file).map_err(|e| Error {
        file: file.to_path_buf(),
        line: None,
        key: None,
        message: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file; create it (`mysite.fcgi init` writes a \
                 commented one) or set FCGI_SHIM_SITE to its path"
                .to_owned(),
            _ => format!("cannot read it: {e}"),
        },
    })?;
    parse(file, &text)
}

pub fn parse(file: &Path, text: &str) -> Result<Site, Error> {
    let err = |span: Option<std::ops::Range<usize>>, key: Option<&str>, message: String| Error {
        file: file.to_path_buf(),
        line: span.map(|s| line_of(text, s.start)),
        key: key.map(str::to_owned),
        message,
    };
    let table = DeTable::parse(text).map_err(|e| {
        // Typographic quotes, from a word processor or a web page.
        // (By line number: a span may end inside a multi-byte character.)
        let line = e
            .span()
            .and_then(|sp| text.lines().nth(line_of(text, sp.start).saturating_sub(1)));
        let curly =
            line.is_some_and(|l| l.contains(['\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}']));
        let hint = if curly {
            "; “ ” and ‘ ’ are typographic quotes: write straight ones, \" or '"
        } else {
            ""
        };
        err(
            e.span(),
            None,
            format!("not valid TOML: {}{hint}", e.message().trim()),
        )
    })?;
    let dir = file.parent().unwrap_or(Path::new("/"));
    let mut site = Site {
        file: file.to_path_buf(),
        pin_cpu: true,
        ..Site::default()
    };

    for (key, value) in table.get_ref() {
        let name: &str = key.get_ref();
        let span = Some(key.span());
        let Some(&(_, expected)) = KEYS.iter().find(|(k, _)| *k == name) else {
            let hint = match suggest(name) {
                Some(k) => format!("; did you mean `{k}`?"),
                None => format!(
                    "; valid keys are {}",
                    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(err(span, Some(name), format!("unknown key{hint}")));
        };
        let v = value.get_ref();
        let vspan = Some(value.span());
        let wrong = |got: &DeValue| {
            err(
                vspan.clone(),
                Some(name),
                format!("expected {expected}, found {}", describe(got)),
            )
        };
        let string = || v.as_str().map(str::to_owned).ok_or_else(|| wrong(v));
        let strings = || -> Result<Vec<String>, Error> {
            let arr = v.as_array().ok_or_else(|| wrong(v))?;
            arr.iter()
                .map(|item| {
                    item.get_ref().as_str().map(str::to_owned).ok_or_else(|| {
                        err(
                            Some(item.span()),
                            Some(name),
                            format!(
                                "expected {expected}, found {} in the array",
                                describe(item.get_ref())
                            ),
                        )
                    })
                })
                .collect()
        };
        let seconds = || -> Result<Duration, Error> {
            let n = integer(v).filter(|n| *n >= 0).ok_or_else(|| wrong(v))?;
            // Bounded so that now + timeout can never overflow an Instant
            // (a value near i64::MAX aborted the process at the first
            // deadline; found by reading for the fuzzer).
            if n > MAX_SECONDS {
                return Err(err(
                    vspan.clone(),
                    Some(name),
                    format!(
                        "{n} seconds is more than a year; expected {expected} up to {MAX_SECONDS}"
                    ),
                ));
            }
            Ok(Duration::from_secs(n as u64))
        };
        let size = || -> Result<u64, Error> {
            match v {
                DeValue::String(s) => parse_size(s).ok_or_else(|| wrong(v)),
                _ => integer(v)
                    .filter(|n| *n >= 0)
                    .map(|n| n as u64)
                    .ok_or_else(|| wrong(v)),
            }
        };
        let nets = || -> Result<Vec<Net>, Error> {
            strings()?
                .iter()
                .map(|s| {
                    Net::parse(s).ok_or_else(|| {
                        err(
                            vspan.clone(),
                            Some(name),
                            format!("`{s}` is not an address or CIDR block; expected {expected}"),
                        )
                    })
                })
                .collect()
        };
        // Paths are not read by a shell: a `~` would be a folder named `~`.
        let path = |s: String| -> Result<String, Error> {
            if s.starts_with('~') {
                return Err(err(
                    vspan.clone(),
                    Some(name),
                    format!(
                        "`{s}`: `~` is not expanded here (no shell reads site.toml); write the \
                         full path (`echo ~` in a shell shows your home folder's)"
                    ),
                ));
            }
            Ok(s)
        };
        let paths = || -> Result<Vec<String>, Error> { strings()?.into_iter().map(path).collect() };
        // "" would name site.toml's own folder: refused, with what leaving
        // the key out does instead.
        let nonempty = |s: String, what: &str, without: &str| -> Result<String, Error> {
            if s.is_empty() {
                return Err(err(
                    vspan.clone(),
                    Some(name),
                    format!(
                        "the empty string is no {what}; expected {expected}, or leave the key out {without}"
                    ),
                ));
            }
            Ok(s)
        };
        let module = |s: String| -> Result<String, Error> {
            let ok = !s.is_empty()
                && s.split([':', '.']).all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_')
                })
                && s.matches(':').count() <= 1;
            if ok {
                Ok(s)
            } else {
                Err(err(
                    vspan.clone(),
                    Some(name),
                    format!("`{s}` is not a module name; expected {expected}"),
                ))
            }
        };
        match name {
            "python" => site.python = Some(path(string()?)?).filter(|s| !s.is_empty()),
            "search_path" => site.search_path = paths()?.iter().map(|p| dir.join(p)).collect(),
            "settings_module" => {
                let m = module(string()?)?;
                if let Some((_, attr)) = m.split_once(':') {
                    return Err(err(
                        vspan,
                        Some(name),
                        format!(
                            "`{m}` names an attribute (`:{attr}`): a settings module is a \
                             module only, e.g. \"myproject.settings\"; for a WSGI callable \
                             use wsgi_app"
                        ),
                    ));
                }
                site.settings_module = Some(m);
            }
            "wsgi_app" => site.wsgi_app = Some(module(string()?)?),
            "env" => {
                let t = v.as_table().ok_or_else(|| wrong(v))?;
                for (k, val) in t {
                    let k: &str = k.get_ref();
                    let s = match val.get_ref() {
                        DeValue::String(s) => s.to_string(),
                        DeValue::Integer(i) => i.to_string(),
                        DeValue::Boolean(b) => b.to_string(),
                        other => {
                            return Err(err(
                                Some(val.span()),
                                Some(&format!("env.{k}")),
                                format!("expected a string, found {}", describe(other)),
                            ));
                        }
                    };
                    if k.is_empty() || k.contains(['=', '\0']) || s.contains('\0') {
                        return Err(err(
                            Some(val.span()),
                            Some(&format!("env.{k}")),
                            "names may not be empty or contain '=' or NUL".into(),
                        ));
                    }
                    site.env.push((k.to_owned(), s));
                }
            }
            "log_file" => {
                let s = nonempty(path(string()?)?, "file", "to log to stderr")?;
                site.log_file = Some(dir.join(s));
            }
            "script_name" => {
                let s = string()?;
                let s = s.trim_end_matches('/').to_owned();
                if !s.is_empty() && !s.starts_with('/') {
                    return Err(err(
                        vspan,
                        Some(name),
                        format!("`{s}` must start with '/' (or be \"\" for the root)"),
                    ));
                }
                site.script_name = Some(s);
            }
            "trusted_proxies" => site.trusted_proxies = nets()?,
            "debug" => site.debug = v.as_bool().ok_or_else(|| wrong(v))?,
            "pin_cpu" => site.pin_cpu = v.as_bool().ok_or_else(|| wrong(v))?,
            "debug_allow" => site.debug_allow = nets()?,
            "watch" => site.watch = paths()?.iter().map(|p| dir.join(p)).collect(),
            "chdir" => {
                let s = nonempty(path(string()?)?, "directory", "for site.toml's folder")?;
                let path = dir.join(&s);
                // Checked here, not at spawn: a missing directory then fails
                // with this line and key instead of "cannot run python".
                let why = match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => None,
                    Ok(_) => Some("is not a directory".to_owned()),
                    Err(e) => Some(format!("cannot be used: {e}")),
                };
                if let Some(why) = why {
                    return Err(err(
                        vspan,
                        Some(name),
                        format!("{} {why}; expected {expected}", path.display()),
                    ));
                }
                site.chdir = Some(path);
            }
            "max_requests" => {
                site.limits.max_requests =
                    integer(v).filter(|n| *n >= 0).ok_or_else(|| wrong(v))? as u64
            }
            "request_timeout" => site.limits.request_timeout = seconds()?,
            "idle_timeout" => site.limits.idle_timeout = seconds()?,
            "max_body" => site.limits.max_body = size()?,
            "max_rss" => site.limits.max_rss = size()?,
            "io_timeout" => site.limits.io_timeout = seconds()?,
            "startup_timeout" => {
                let t = seconds()?;
                if t.is_zero() {
                    return Err(err(
                        vspan,
                        Some(name),
                        format!(
                            "0 s leaves the app no time to import; expected {expected}, at least 1"
                        ),
                    ));
                }
                site.limits.startup_timeout = t;
            }
            _ => unreachable!("every name in KEYS has an arm"),
        }
    }
    if site.settings_module.is_none() && site.wsgi_app.is_none() {
        return Err(err(
            None,
            None,
            "no app: set wsgi_app = \"module:callable\" (any WSGI app) or \
             settings_module = \"myproject.settings\" (Django)"
                .into(),
        ));
    }
    Ok(site)
}

fn integer(v: &DeValue) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// "512M", "10k", "1G", "1048576" as bytes.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn describe(v: &DeValue) -> String {
    match v {
        DeValue::String(s) => format!("the string \"{s}\""),
        DeValue::Integer(i) => format!("the integer {i}"),
        DeValue::Float(f) => format!("the number {f}"),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(d) => format!("the date {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Is `name` a top-level key of site.toml?
pub fn is_key(name: &str) -> bool {
    KEYS.iter().any(|(k, _)| *k == name)
}

/// The known key closest to a misspelt one, if any is close.
fn suggest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|(k, _)| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Site, Error> {
        parse(Path::new("/home/u/www/site.toml"), text)
    }

    #[test]
    fn full_file_resolves_relative_paths() {
        let s = p(r#"
python = "/usr/bin/python3"
search_path = ["../python", "/abs"]
settings_module = "myproject.settings"
log_file = "shim.log"
max_body = "10M"
request_timeout = 30
[env]
A = "b"
N = 3
"#)
        .expect("valid");
        assert_eq!(
            s.search_path,
            [
                PathBuf::from("/home/u/www/../python"),
                PathBuf::from("/abs")
            ]
        );
        assert_eq!(s.settings_module.as_deref(), Some("myproject.settings"));
        assert_eq!(s.log_file, Some(PathBuf::from("/home/u/www/shim.log")));
        assert_eq!(s.limits.max_body, 10 << 20);
        assert_eq!(s.limits.request_timeout, Duration::from_secs(30));
        assert_eq!(s.env, [("A".into(), "b".into()), ("N".into(), "3".into())]);
    }

    #[test]
    fn unknown_key_names_file_line_key_and_suggestion() {
        let e = p("wsgi_app = \"a:b\"\npyhton = \"x\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("pyhton"));
        assert_eq!(
            e.to_string(),
            "/home/u/www/site.toml, line 2, key `pyhton`: unknown key; did you mean `python`?"
        );
    }

    #[test]
    fn wrong_type_says_what_is_valid() {
        let e = p("wsgi_app = \"a:b\"\nsearch_path = 3\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("expected an array of strings"), "{e}");
        assert!(e.message.contains("found the integer 3"), "{e}");
        let e = p("wsgi_app = \"a:b\"\nsearch_path = [\"a\",\n 4]\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn a_tilde_path_or_an_empty_log_file_is_refused_with_the_reason() {
        for (text, line, key) in [
            ("python = \"~/venv/bin/python3\"\n", 1, "python"),
            ("search_path = [\".\", \"~/lib\"]\n", 1, "search_path"),
            ("log_file = \"~/logs/site.log\"\n", 1, "log_file"),
            ("chdir = \"~bob/site\"\n", 1, "chdir"),
            ("watch = [\"~/app.py\"]\n", 1, "watch"),
        ] {
            let e = p(&format!("wsgi_app = \"a:b\"\n{text}")).unwrap_err();
            assert_eq!(
                (e.line, e.key.as_deref()),
                (Some(line + 1), Some(key)),
                "{e}"
            );
            assert!(
                e.message.ends_with(
                    ": `~` is not expanded here (no shell reads site.toml); write the full path \
                     (`echo ~` in a shell shows your home folder's)"
                ),
                "{e}"
            );
        }
        // A ~ inside a path is a plain character.
        assert!(p("wsgi_app = \"a:b\"\nlog_file = \"logs/~old.log\"\n").is_ok());
        let e = p("wsgi_app = \"a:b\"\nlog_file = \"\"\n").unwrap_err();
        assert!(e.message.starts_with("the empty string is no file;"), "{e}");
    }

    #[test]
    fn a_settings_module_with_an_attribute_or_a_zero_startup_timeout_is_refused() {
        let e = p("settings_module = \"hello:app\"\n").unwrap_err();
        assert!(
            e.message
                .starts_with("`hello:app` names an attribute (`:app`)"),
            "{e}"
        );
        assert!(
            e.message.ends_with("for a WSGI callable use wsgi_app"),
            "{e}"
        );
        let e = p("wsgi_app = \"a:b\"\nstartup_timeout = 0\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.message
                .starts_with("0 s leaves the app no time to import"),
            "{e}"
        );
        assert!(p("wsgi_app = \"a:b\"\nstartup_timeout = 1\n").is_ok());
    }

    #[test]
    fn typographic_quotes_get_a_hint() {
        let e = p("wsgi_app = \u{201c}a:b\u{201d}\n").unwrap_err();
        assert!(e.message.starts_with("not valid TOML"), "{e}");
        assert!(
            e.message
                .ends_with("are typographic quotes: write straight ones, \" or '"),
            "{e}"
        );
        let e = p("wsgi_app = a:b\n").unwrap_err();
        assert!(!e.message.contains("typographic"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = p("wsgi_app = \"a:b\"\n\nsearch_path = [\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(e.message.starts_with("not valid TOML"), "{e}");
    }

    #[test]
    fn an_app_is_required_and_names_are_checked() {
        assert!(p("").unwrap_err().message.contains("no app"));
        assert!(
            p("wsgi_app = \"my app\"")
                .unwrap_err()
                .message
                .contains("not a module name")
        );
        assert!(p("wsgi_app = \"a:b:c\"").is_err());
        assert!(p("wsgi_app = \"pkg.mod:obj.attr\"").is_ok());
        assert!(p("wsgi_app = \"hello\"").is_ok());
    }

    #[test]
    fn nets_match_mapped_addresses() {
        let n = Net::parse("10.0.0.0/8").expect("valid");
        assert!(n.contains("10.2.3.4".parse().expect("ip")));
        assert!(n.contains("::ffff:10.2.3.4".parse().expect("ip")));
        assert!(!n.contains("11.0.0.1".parse().expect("ip")));
        let one = Net::parse("::1").expect("valid");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(
            Net::parse("0.0.0.0/0")
                .expect("valid")
                .contains("1.2.3.4".parse().expect("ip"))
        );
        assert_eq!(Net::parse("1.2.3.4/33"), None);
        let mapped = Net::parse("::ffff:10.0.0.1").expect("valid");
        assert!(mapped.contains("10.0.0.1".parse().expect("ip")));
        assert!(mapped.contains("::ffff:10.0.0.1".parse().expect("ip")));
        assert!(
            Net::parse("::ffff:0:0/96")
                .expect("valid")
                .contains("192.0.2.1".parse().expect("ip"))
        );
        assert_eq!(Net::parse("nonsense"), None);
    }

    #[test]
    fn timeouts_are_bounded() {
        for key in [
            "io_timeout",
            "request_timeout",
            "startup_timeout",
            "idle_timeout",
        ] {
            let e = p(&format!(
                "wsgi_app = \"a:b\"\n{key} = 9223372036854775807\n"
            ))
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(e.message.contains("more than a year"), "{e}");
        }
        assert!(p("wsgi_app = \"a:b\"\nio_timeout = 31536000\n").is_ok());
    }

    /// A fresh directory under the system's temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let d =
                std::env::temp_dir().join(format!("fcgi-shim-config-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d); // dropped: it may not exist
            std::fs::create_dir_all(d.join("project")).expect("create scratch dir");
            std::fs::write(d.join("file"), "").expect("write scratch file");
            Scratch(d)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0); // dropped: best effort
        }
    }

    #[test]
    fn chdir_is_relative_to_the_file_and_defaults_to_none() {
        let d = Scratch::new("chdir-ok");
        let file = d.0.join("site.toml");
        let s = parse(&file, "wsgi_app = \"a:b\"\nchdir = \"project\"\n").expect("valid");
        assert_eq!(s.chdir, Some(d.0.join("project")));
        let abs = format!("wsgi_app = \"a:b\"\nchdir = {:?}\n", d.0.join("project"));
        assert_eq!(
            parse(&file, &abs).expect("valid").chdir,
            Some(d.0.join("project"))
        );
        assert_eq!(
            parse(&file, "wsgi_app = \"a:b\"\n").expect("valid").chdir,
            None
        );
    }

    #[test]
    fn chdir_errors_name_the_line_the_key_and_what_is_valid() {
        let d = Scratch::new("chdir-bad");
        let file = d.0.join("site.toml");
        let cases: &[(&str, &[&str])] = &[
            (
                "chdir = \"missing\"",
                &["missing", "No such file", "existing directory"],
            ),
            (
                "chdir = \"file\"",
                &["file is not a directory", "existing directory"],
            ),
            ("chdir = \"\"", &["empty string", "site.toml's folder"]),
            ("chdir = 3", &["found the integer 3", "existing directory"]),
            ("chdir = [\"project\"]", &["found an array"]),
        ];
        for (line, words) in cases {
            let e = parse(&file, &format!("wsgi_app = \"a:b\"\n{line}\n")).unwrap_err();
            assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("chdir")), "{e}");
            let text = e.to_string();
            assert!(text.starts_with(&format!("{}, line 2, key `chdir`: ", file.display())));
            for w in *words {
                assert!(text.contains(w), "{line}: {w:?} missing from {text}");
            }
        }
        // A near miss is suggested like any other key.
        let e = parse(&file, "wsgi_app = \"a:b\"\nchdri = \"x\"\n").unwrap_err();
        assert!(e.message.contains("did you mean `chdir`?"), "{e}");
    }

    #[test]
    fn runfcgi_finds_site_toml_beside_the_binary_then_in_the_current_directory() {
        // Only FCGI_SHIM_SITE unset is exercised here (tests share the
        // environment); tests/runfcgi.rs covers the variable.
        if std::env::var_os("FCGI_SHIM_SITE").is_some() {
            return;
        }
        let d = Scratch::new("locate");
        let cwd = absolute(Path::new(SITE_FILE));
        // Nothing beside the binary: the current directory's file (if any),
        // else the binary's with the current directory as the other place.
        let (file, also) = locate_runfcgi(&d.0.join("bin/fcgi-shim"));
        if cwd.exists() {
            assert_eq!((file, also), (cwd, None));
        } else {
            assert_eq!((file, also), (d.0.join("bin/site.toml"), Some(cwd)));
        }
        // One beside the binary wins.
        std::fs::write(d.0.join("site.toml"), "").expect("write");
        assert_eq!(
            locate_runfcgi(&d.0.join("mysite.fcgi")),
            (d.0.join("site.toml"), None)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
    }
}
