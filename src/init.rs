//! `mysite.fcgi init [DIR] [--project=PATH]`: writes site.toml and .htaccess.
//!
//! Beside the data path: a setup helper for a person at a shell. The files
//! come from `shim-templates/site.toml` and `htaccess/auto.htaccess`,
//! embedded at build time. An existing file is never overwritten. When a
//! Django project is nearby (a `manage.py`), its directory and settings
//! module are filled in, and a virtualenv beside it becomes `python`.
//!
//! The shipped site.toml is itself valid TOML (a user may copy it by hand):
//! its example lines `python = ...`, `search_path = ...`,
//! `settings_module = ...` and `# wsgi_app = ...` are the ones init replaces,
//! found by their key (see [`render_site`]).

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cli::{Program, Run};

const SITE_TEMPLATE: &str = include_str!("../shim-templates/site.toml");
const HTACCESS_TEMPLATE: &str = include_str!("../htaccess/auto.htaccess");

/// site.toml may hold secrets (SECRET_KEY, passwords in [env]): its owner
/// only, whoever runs init. The web server reads .htaccess as its own user.
const SITE_MODE: u32 = 0o600;
const HTACCESS_MODE: u32 = 0o644;

/// The keys of the template's example lines that init fills in.
const FILLED_KEYS: [&str; 4] = ["python", "search_path", "settings_module", "wsgi_app"];

/// What was found about the app to serve.
#[derive(Debug, Default, PartialEq)]
struct Found {
    project_dir: Option<PathBuf>,
    /// The settings the site runs: its wsgi.py's, else manage.py's.
    settings_module: Option<String>,
    /// manage.py's, when they differ from wsgi.py's (cookiecutter-django:
    /// config.settings.local for the shell, .production for the server).
    dev_settings: Option<String>,
    python: Option<PathBuf>,
}

/// `init` for the executable `script`: into DIR, else its folder, else (run
/// as a copy installed elsewhere: by its bare name from PATH, or by the
/// path of a copy with no site beside it, [`Run`]) the current directory.
pub fn main(prog: &str, script: &Path, args: &[String]) -> i32 {
    let mut dir: Option<PathBuf> = None;
    let mut project: Option<PathBuf> = None;
    for a in args {
        if let Some(p) = a.strip_prefix("--project=") {
            project = Some(crate::config::absolute(Path::new(p)));
        } else if a.starts_with('-') {
            eprintln!(
                "{prog} init: unknown option `{a}`; usage: {prog} init [DIR] [--project=PATH]"
            );
            return 2;
        } else if dir.is_none() {
            dir = Some(crate::config::absolute(Path::new(a)));
        } else {
            eprintln!("{prog} init: one directory only; usage: {prog} init [DIR] [--project=PATH]");
            return 2;
        }
    }
    let run = Run::of(prog, script);
    let dir = match dir {
        Some(d) => d,
        // `fcgi-shim init` or `~/bin/fcgi-shim init` in the web root: not
        // the folder the binary is installed in.
        None if run != Run::Site => match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{prog} init: cannot tell which folder this is: {e}");
                return 1;
            }
        },
        None => script.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    if !dir.is_dir() {
        eprintln!("{prog} init: {} is not a directory", dir.display());
        return 1;
    }
    // The executable the .htaccess sends requests to: this one, when it
    // lives in the folder, else the folder's .fcgi file, or the mysite.fcgi
    // the steps below copy.
    let own = script
        .parent()
        .is_some_and(|d| crate::cli::same_file(d, &dir));
    if own && run == Run::FromPath {
        // `cd ~/bin; fcgi-shim init`: a site.toml here would be the one
        // every `fcgi-shim runfcgi` reads first, whatever its folder.
        eprintln!(
            "{prog} init: {} is where {prog} is installed, not a web root; run it in your web \
             root (or give that folder: {prog} init DIR)",
            dir.display()
        );
        return 1;
    }
    let mut exe = if own {
        script.to_path_buf()
    } else {
        match crate::cli::fcgi_in(&dir, script) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{prog} init: {e}");
                return 2;
            }
        }
    };
    // Other Django projects found near the first: said, not guessed among.
    let mut others: Vec<PathBuf> = Vec::new();
    let found = match project {
        Some(p) => match django_at(&p) {
            Some(f) => f,
            None => {
                eprintln!("{prog} init: no manage.py in {}", p.display());
                return 1;
            }
        },
        None => {
            let mut all = find_django(&dir).into_iter();
            let first = all.next().unwrap_or_default();
            others = all.filter_map(|f| f.project_dir).collect();
            first
        }
    };
    match (&found.project_dir, &found.dev_settings) {
        (Some(p), Some(dev)) => crate::say!(
            "found a Django project in {} (settings {}, from its wsgi.py: manage.py's {dev} \
             are presumably for development); production settings often read secrets from the \
             environment: give them under [env] in site.toml",
            p.display(),
            found.settings_module.as_deref().unwrap_or("unknown")
        ),
        (Some(p), None) => crate::say!(
            "found a Django project in {} (settings {})",
            p.display(),
            found.settings_module.as_deref().unwrap_or("unknown")
        ),
        (None, _) => crate::say!(
            "no Django project (manage.py) found near {}; fill in wsgi_app by hand",
            dir.display()
        ),
    }
    if !others.is_empty() {
        let shown: Vec<String> = others.iter().map(|p| p.display().to_string()).collect();
        crate::say!(
            "also found a Django project in {}: give --project=PATH to use one of those instead",
            shown.join(", ")
        );
    }
    if let Some(py) = &found.python {
        crate::say!("found a virtualenv interpreter: {}", py.display());
    }
    if let Some(p) = found
        .project_dir
        .as_deref()
        .filter(|p| lies_within(p, &dir))
    {
        crate::say!(
            "warning: the Django project {} lies inside the web root {}\n  \
             (the folder that gets the .htaccess). The shipped .htaccess refuses to serve\n  \
             *.py, *.sqlite3 and other private files, but moving the project out of the web\n  \
             root (public_html), e.g. beside it, is safer: then no rule can be missing for\n  \
             any of its files. Afterwards point search_path in site.toml at its new place.",
            p.display(),
            dir.display()
        );
    }

    let site_toml = render_site(&found);
    // Run as root for someone's web root, init gives the files to the
    // folder's owner: a root-owned site.toml of mode 600 could be read
    // neither by that user nor by a web server running as them (suexec).
    // SAFETY: geteuid has no memory effects and cannot fail.
    let owner = if unsafe { libc::geteuid() } == 0 {
        std::fs::metadata(&dir)
            .ok()
            .filter(|m| m.uid() != 0)
            .map(|m| (m.uid(), m.gid()))
    } else {
        None
    };
    let mut script_name = exe
        .file_name()
        .map_or("mysite.fcgi".into(), |n| n.to_string_lossy().into_owned());
    // The .htaccess hands only *.fcgi files to FastCGI (or CGI), and a
    // space, `$`, `%`, a quote or a backslash would break its RewriteRule:
    // such a name gets the .htaccess for mysite.fcgi, and is told so.
    if !script_name.ends_with(".fcgi")
        || script_name.contains(|c: char| c.is_whitespace() || "$%\"'\\".contains(c))
    {
        crate::say!(
            "warning: the .htaccess cannot run {script_name:?} (it runs files named \
             something.fcgi, without spaces, $, %, quotes or backslashes): it is written for \
             mysite.fcgi; rename this file to mysite.fcgi"
        );
        script_name = "mysite.fcgi".to_owned();
        exe = dir.join(&script_name);
    }
    // The step that puts this program where the .htaccess sends requests,
    // unless it is there already.
    let install = crate::cli::install_command(script, &exe);
    let program = crate::cli::program_at(&exe, script);
    let copy = match (&program, program.what()) {
        (Program::Missing, _) => Some(format!("put this binary there: {install}")),
        (_, None) => None,
        (Program::Folder, Some(what)) => Some(format!(
            "{} is {what}: rename it, then put this binary there: {install}",
            exe.display()
        )),
        (_, Some(what)) => Some(format!(
            "{} is {what}: put this binary in its place: {install}",
            exe.display()
        )),
    };
    let htaccess = htaccess_for(&script_name);
    let mut failed = false;
    let mut wrote = [false; 2];
    for (i, (name, text, mode)) in [
        ("site.toml", site_toml.as_str(), SITE_MODE),
        (".htaccess", htaccess.as_str(), HTACCESS_MODE),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(name);
        match write_new(&path, text, mode, owner) {
            Ok(true) => {
                wrote[i] = true;
                match owner {
                    Some((uid, gid)) => crate::say!(
                        "wrote {} (mode {mode:o}, owner {uid}:{gid} like the folder)",
                        path.display()
                    ),
                    None => crate::say!("wrote {} (mode {mode:o})", path.display()),
                }
            }
            Ok(false) => crate::say!(
                "kept {}: it already exists (nothing overwritten)",
                path.display()
            ),
            Err(e) => {
                eprintln!("{prog} init: cannot write {}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        return 1;
    }
    let [wrote_site, wrote_htaccess] = wrote;
    let site_path = dir.join("site.toml");
    crate::say!("\nnext:");
    if wrote_site && found.settings_module.is_none() {
        crate::say!(
            "  - edit {}: set wsgi_app (or settings_module for Django)",
            site_path.display()
        );
    }
    if wrote_site && found.python.is_none() {
        crate::say!(
            "  - if your app lives in a virtualenv, set python = \"/path/to/venv/bin/python3\" in site.toml"
        );
    }
    if !wrote_htaccess {
        crate::say!(
            "  - the .htaccess that was there is kept: it needs the handler and rewrite lines of \
             the project's htaccess/auto.htaccess (with {script_name} for mysite.fcgi); the \
             mode line of check tells what the server will do"
        );
    }
    if let Some(copy) = copy {
        crate::say!("  - {copy}");
    }
    if wrote_site {
        crate::say!(
            "  - site.toml is for its owner only (mode 600): right when the web server runs the \
             site as that user (suexec, most shared hosts). If it runs as www-data instead \
             (Apache without suexec, lighttpd), let it read the file: chgrp www-data site.toml \
             && chmod 640 site.toml"
        );
    }
    crate::say!(
        "  - lighttpd only: if fastcgi.server mounts the app at \"/\" (\"/\" => ...) instead of \
         the shipped templates' \"/mysite.fcgi\" and rewrite, add script_name = \"\" to \
         site.toml (Apache with this .htaccess needs nothing)"
    );
    crate::say!(
        "  - run ./{script_name} check in {} until it says OK",
        dir.display()
    );
    crate::say!("  - after deploying new code: touch {script_name}");
    0
}

/// The shipped .htaccess for an executable named `name`: its rewrite rules
/// name mysite.fcgi.
fn htaccess_for(name: &str) -> String {
    if name == "mysite.fcgi" {
        return HTACCESS_TEMPLATE.to_owned();
    }
    let escaped: String = name
        .chars()
        .flat_map(|c| {
            let meta = !c.is_ascii_alphanumeric() && !matches!(c, '_' | '-');
            meta.then_some('\\').into_iter().chain([c])
        })
        .collect();
    HTACCESS_TEMPLATE
        .replace("mysite\\.fcgi", &escaped)
        .replace("mysite.fcgi", name)
}

/// Creates `path` with `text` unless it exists (or is a symlink: no file is
/// written through one). Ok(false): it existed.
fn write_new(
    path: &Path,
    text: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<bool> {
    // Created with `mode` at most (the umask can only take bits away), so
    // the file is never more open than it will be.
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    let filled = fill(&mut f, text, mode, owner);
    if filled.is_err() {
        // A half-written file would be "kept" by the next run: remove it.
        // If that fails too, the error reported is the first one.
        let _ = std::fs::remove_file(path);
    }
    filled.map(|()| true)
}

fn fill(f: &mut File, text: &str, mode: u32, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&*f, Some(uid), Some(gid))?;
    }
    // Exactly `mode`, whatever the umask: with umask 027 the .htaccess
    // would be unreadable for the web server, and every page a 403.
    f.set_permissions(Permissions::from_mode(mode))?;
    f.write_all(text.as_bytes())
}

/// Whether `inner` is `outer` or lies below it, symlinks resolved where
/// the paths exist.
fn lies_within(inner: &Path, outer: &Path) -> bool {
    crate::config::real(inner).starts_with(crate::config::real(outer))
}

/// A TOML basic string: quotes, backslashes and control characters escaped
/// (TOML 1.0, "String").
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path as a TOML string; None when it is not UTF-8 (TOML cannot hold
/// it, and a lossy copy would name another file).
fn toml_path(p: &Path) -> Option<String> {
    p.to_str().map(toml_string)
}

/// Whether `line` is the template's example line for `key`: `key = ...`,
/// or `# key = ...` when commented out. Explanations in the comments indent
/// their examples further (`#   key = ...`), so they never match.
fn is_key_line(line: &str, key: &str) -> bool {
    let body = line.strip_prefix("# ").unwrap_or(line);
    body.strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// The template with its example lines replaced: a key whose value was
/// found gets `key = value`; the others keep the template's example,
/// commented out, for the user to complete.
fn render_site(found: &Found) -> String {
    let value = |key: &str| -> Option<String> {
        match key {
            "python" => found.python.as_deref().and_then(toml_path),
            "search_path" => found
                .project_dir
                .as_deref()
                .and_then(toml_path)
                .map(|p| format!("[{p}]")),
            "settings_module" => found.settings_module.as_deref().map(toml_string),
            _ => None,
        }
    };
    let mut out = String::with_capacity(SITE_TEMPLATE.len() + 256);
    for line in SITE_TEMPLATE.lines() {
        match FILLED_KEYS.iter().find(|k| is_key_line(line, k)) {
            Some(key) => match value(key) {
                Some(v) => out.push_str(&format!("{key} = {v}")),
                None if line.starts_with("# ") => out.push_str(line),
                None => {
                    out.push_str("# ");
                    out.push_str(line);
                }
            },
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Looks for manage.py in `dir`, its parent, and their subdirectories.
/// The Django projects near `dir`: in it, its parent, and their
/// subfolders, in that order (then by name).
fn find_django(dir: &Path) -> Vec<Found> {
    let mut places = vec![dir.to_path_buf()];
    if let Some(parent) = dir.parent() {
        places.push(parent.to_path_buf());
    }
    let mut candidates = places.clone();
    for place in &places {
        if let Ok(entries) = std::fs::read_dir(place) {
            let mut subs: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            candidates.extend(subs);
        }
    }
    candidates.iter().filter_map(|c| django_at(c)).collect()
}

fn django_at(dir: &Path) -> Option<Found> {
    let manage = std::fs::read_to_string(dir.join("manage.py")).ok()?;
    let python = ["venv", ".venv", "env"]
        .iter()
        .flat_map(|v| [dir.join(v), dir.parent().unwrap_or(dir).join(v)])
        .map(|v| v.join("bin/python3"))
        .find(|p| p.is_file());
    let dev = settings_default(&manage);
    // The web server runs the project's wsgi.py, beside its settings (the
    // package manage.py names, as startproject and cookiecutter-django
    // lay it out): its settings are the ones a site runs.
    let package = dev.as_deref().and_then(|m| m.split('.').next());
    let served = package
        .and_then(|p| std::fs::read_to_string(dir.join(p).join("wsgi.py")).ok())
        .and_then(|text| settings_default(&text));
    let (settings_module, dev_settings) = match (served, dev) {
        (Some(s), Some(d)) if s != d => (Some(s), Some(d)),
        (s, d) => (s.or(d), None),
    };
    Some(Found {
        project_dir: Some(dir.to_path_buf()),
        settings_module,
        dev_settings,
        python,
    })
}

/// The module of the first `os.environ.setdefault("DJANGO_SETTINGS_MODULE",
/// "x.settings")` or `os.environ["DJANGO_SETTINGS_MODULE"] = "x.settings"`
/// outside a comment (manage.py, wsgi.py; their comments and docstrings may
/// name the variable too), also split over lines as Black writes a long call.
fn settings_default(text: &str) -> Option<String> {
    const NAME: &str = "DJANGO_SETTINGS_MODULE";
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let code = code.join("\n");
    code.match_indices(NAME).find_map(|(at, _)| {
        let rest = code[at + NAME.len()..].strip_prefix(['"', '\''])?;
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix(',') {
            Some(r) => r,
            None => rest.strip_prefix(']')?.trim_start().strip_prefix('=')?,
        }
        .trim_start();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let value = &rest[1..];
        let module = &value[..value.find(quote)?];
        module
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .then(|| module.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_module_from_a_stock_manage_py() {
        let text =
            "def main():\n    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n";
        assert_eq!(settings_default(text).as_deref(), Some("mysite.settings"));
        let text = "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"a.b.settings\")";
        assert_eq!(settings_default(text).as_deref(), Some("a.b.settings"));
        assert_eq!(settings_default("print('hi')"), None);
        // cookiecutter-django's config/wsgi.py: the variable named in
        // comments first, then assigned in a comment, then set.
        let text = "# We defer to a DJANGO_SETTINGS_MODULE already in the environment.\n\
                    # os.environ[\"DJANGO_SETTINGS_MODULE\"] = \"config.settings.staging\"\n\
                    os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"config.settings.production\")\n";
        assert_eq!(
            settings_default(text).as_deref(),
            Some("config.settings.production")
        );
        let text = "os.environ['DJANGO_SETTINGS_MODULE'] = 'site.settings'";
        assert_eq!(settings_default(text).as_deref(), Some("site.settings"));
        // Black's layout of a call too long for one line.
        let text = "    os.environ.setdefault(\n        \"DJANGO_SETTINGS_MODULE\",\n        \
                    \"config.settings.local\",\n    )\n";
        assert_eq!(
            settings_default(text).as_deref(),
            Some("config.settings.local")
        );
    }

    #[test]
    fn template_has_exactly_one_example_line_per_filled_key() {
        for key in FILLED_KEYS {
            let n = SITE_TEMPLATE
                .lines()
                .filter(|l| is_key_line(l, key))
                .count();
            assert_eq!(
                n, 1,
                "example lines for `{key}` in shim-templates/site.toml"
            );
        }
    }

    #[test]
    fn key_lines_are_told_from_explanations_and_longer_keys() {
        assert!(is_key_line("python = \"x\"", "python"));
        assert!(is_key_line("# wsgi_app = \"a:b\"", "wsgi_app"));
        assert!(is_key_line("python=\"x\"", "python"));
        assert!(!is_key_line(
            "#   search_path = [\"a\", \"b\"]",
            "search_path"
        ));
        assert!(!is_key_line("pythonpath = 1", "python"));
        assert!(!is_key_line(
            "# The interpreter that runs your app: python",
            "python"
        ));
    }

    #[test]
    fn shipped_template_parses_as_the_example_it_shows() {
        let site =
            crate::config::parse(Path::new("/home/user/public_html/site.toml"), SITE_TEMPLATE)
                .expect("shim-templates/site.toml is valid as shipped");
        assert_eq!(site.python.as_deref(), Some("/home/user/venv/bin/python3"));
        assert_eq!(site.search_path, [PathBuf::from("/home/user/myproject")]);
        assert_eq!(site.settings_module.as_deref(), Some("myproject.settings"));
        assert_eq!(site.wsgi_app, None);
    }

    #[test]
    fn rendered_template_parses_and_keeps_what_was_found() {
        let found = Found {
            project_dir: Some(PathBuf::from("/home/u/proj")),
            settings_module: Some("proj.settings".into()),
            dev_settings: None,
            python: None,
        };
        let text = render_site(&found);
        let site = crate::config::parse(Path::new("/home/u/www/site.toml"), &text)
            .expect("valid site.toml");
        assert_eq!(site.settings_module.as_deref(), Some("proj.settings"));
        assert_eq!(site.search_path, [PathBuf::from("/home/u/proj")]);
        // No virtualenv found: the example stays, commented out.
        assert_eq!(site.python, None);
        assert!(
            text.lines()
                .any(|l| l == "# python = \"/home/user/venv/bin/python3\""),
            "{text}"
        );
        // Only the four example lines change.
        assert_eq!(text.lines().count(), SITE_TEMPLATE.lines().count());
    }

    #[test]
    fn paths_with_quotes_backslashes_and_newlines_survive_the_round_trip() {
        let odd = PathBuf::from("/home/u/my \"odd\\ proj\n\ttab");
        let found = Found {
            project_dir: Some(odd.clone()),
            settings_module: Some("proj.settings".into()),
            dev_settings: None,
            python: Some(odd.join("venv/bin/python3")),
        };
        let site = crate::config::parse(Path::new("/w/site.toml"), &render_site(&found))
            .expect("escaped values parse");
        assert_eq!(site.search_path, std::slice::from_ref(&odd));
        assert_eq!(
            site.python.map(PathBuf::from),
            Some(odd.join("venv/bin/python3"))
        );
    }

    #[test]
    fn unknown_values_stay_commented_out() {
        let text = render_site(&Found::default());
        // No app yet: the file says so when loaded, naming what to set.
        let e = crate::config::parse(Path::new("/s/site.toml"), &text).expect_err("no app set");
        assert!(e.message.contains("no app"), "{e}");
        for key in FILLED_KEYS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("# {key} = "))),
                "`{key}` not left as a commented example:\n{text}"
            );
        }
    }

    #[test]
    fn a_project_in_the_web_root_or_below_lies_within_it() {
        assert!(lies_within(
            Path::new("/nonexistent/www"),
            Path::new("/nonexistent/www")
        ));
        assert!(lies_within(
            Path::new("/nonexistent/www/proj"),
            Path::new("/nonexistent/www")
        ));
        assert!(!lies_within(
            Path::new("/nonexistent/proj"),
            Path::new("/nonexistent/www")
        ));
        assert!(!lies_within(
            Path::new("/nonexistent/www2"),
            Path::new("/nonexistent/www")
        ));
    }
}
