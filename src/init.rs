//! `mysite.fcgi init [DIR] [--project=PATH]`: writes site.toml and .htaccess.
//!
//! Beside the data path: a setup helper for a person at a shell. The files
//! come from `shim-templates/site.toml` and `htaccess/auto.htaccess`,
//! embedded at build time. An existing file is never overwritten. When a
//! Django project is nearby (a `manage.py`), its directory and settings
//! module are filled in, and a virtualenv beside it becomes `python`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const SITE_TEMPLATE: &str = include_str!("../shim-templates/site.toml");
const HTACCESS_TEMPLATE: &str = include_str!("../htaccess/auto.htaccess");

/// What was found about the app to serve.
#[derive(Debug, Default, PartialEq)]
struct Found {
    project_dir: Option<PathBuf>,
    settings_module: Option<String>,
    python: Option<PathBuf>,
}

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
    let dir = dir.unwrap_or_else(|| script.parent().unwrap_or(Path::new(".")).to_path_buf());
    if !dir.is_dir() {
        eprintln!("{prog} init: {} is not a directory", dir.display());
        return 1;
    }
    let found = match project {
        Some(p) => match django_at(&p) {
            Some(f) => f,
            None => {
                eprintln!("{prog} init: no manage.py in {}", p.display());
                return 1;
            }
        },
        None => find_django(&dir).unwrap_or_default(),
    };
    match &found.project_dir {
        Some(p) => println!(
            "found a Django project in {} (settings {})",
            p.display(),
            found.settings_module.as_deref().unwrap_or("unknown")
        ),
        None => println!(
            "no Django project (manage.py) found near {}; fill in wsgi_app by hand",
            dir.display()
        ),
    }
    if let Some(py) = &found.python {
        println!("found a virtualenv interpreter: {}", py.display());
    }

    let site_toml = render_site(&found);
    // Readable only by its owner when a user runs init for their own site
    // (shared hosts run scripts as that user); by the web server's user too
    // when root sets a site up for www-data.
    // SAFETY: geteuid has no memory effects.
    let mode = if unsafe { libc::geteuid() } == 0 {
        0o644
    } else {
        0o600
    };
    let mut failed = false;
    for (name, text, mode) in [
        ("site.toml", site_toml.as_str(), mode),
        (".htaccess", HTACCESS_TEMPLATE, 0o644),
    ] {
        let path = dir.join(name);
        match write_new(&path, text, mode) {
            Ok(true) => println!("wrote {} (mode {:o})", path.display(), mode),
            Ok(false) => println!(
                "kept {}: it already exists (nothing overwritten)",
                path.display()
            ),
            Err(e) => {
                eprintln!("{prog} init: cannot write {}: {e}", path.display());
                failed = true;
            }
        }
    }
    let script_name = script
        .file_name()
        .map_or("mysite.fcgi".into(), |n| n.to_string_lossy().into_owned());
    println!("\nnext:");
    if found.settings_module.is_none() {
        println!(
            "  - edit {}: set wsgi_app (or settings_module for Django)",
            dir.join("site.toml").display()
        );
    }
    if found.python.is_none() {
        println!(
            "  - if your app lives in a virtualenv, set python = \"/path/to/venv/bin/python3\" in site.toml"
        );
    }
    if script.parent() != Some(dir.as_path()) {
        println!(
            "  - copy this binary to {}/mysite.fcgi and chmod 755 it",
            dir.display()
        );
    }
    println!(
        "  - run ./{script_name} check in {} until it says OK",
        dir.display()
    );
    println!("  - after deploying new code: touch {script_name}");
    if failed { 1 } else { 0 }
}

/// Creates `path` with `text` unless it exists. Ok(false): it existed.
fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(text.as_bytes())?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Fills the template's placeholders. A line whose value is unknown is
/// left commented out, with an example, for the user to complete.
fn render_site(found: &Found) -> String {
    let quoted = |p: &Path| {
        format!(
            "\"{}\"",
            p.display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        )
    };
    let values: [(&str, Option<String>, &str); 4] = [
        (
            "{{search_path}}",
            found.project_dir.as_deref().map(quoted),
            "\"/home/user/myproject\"",
        ),
        (
            "{{settings_module}}",
            found.settings_module.clone(),
            "myproject.settings",
        ),
        ("{{wsgi_app}}", None, "myproject.wsgi:application"),
        (
            "{{python}}",
            found.python.as_deref().map(|p| p.display().to_string()),
            "/home/user/venv/bin/python3",
        ),
    ];
    let mut out = String::with_capacity(SITE_TEMPLATE.len() + 256);
    for line in SITE_TEMPLATE.lines() {
        let mut line = line.to_owned();
        if let Some((ph, value, example)) = values.iter().find(|(ph, _, _)| line.contains(ph)) {
            match value {
                Some(v) => {
                    line = line.replace(ph, v);
                    if let Some(rest) = line.strip_prefix('#') {
                        line = rest.trim_start().to_owned();
                    }
                }
                None => {
                    line = line.replace(ph, example);
                    if !line.trim_start().starts_with('#') {
                        line = format!("# {line}");
                    }
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Looks for manage.py in `dir`, its parent, and their subdirectories.
fn find_django(dir: &Path) -> Option<Found> {
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
    candidates.iter().find_map(|c| django_at(c))
}

fn django_at(dir: &Path) -> Option<Found> {
    let manage = std::fs::read_to_string(dir.join("manage.py")).ok()?;
    let python = ["venv", ".venv", "env"]
        .iter()
        .flat_map(|v| [dir.join(v), dir.parent().unwrap_or(dir).join(v)])
        .map(|v| v.join("bin/python3"))
        .find(|p| p.is_file());
    Some(Found {
        project_dir: Some(dir.to_path_buf()),
        settings_module: settings_from_manage(&manage),
        python,
    })
}

/// The module in `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "x.settings")`.
fn settings_from_manage(text: &str) -> Option<String> {
    let at = text.find("DJANGO_SETTINGS_MODULE")?;
    let rest = &text[at + "DJANGO_SETTINGS_MODULE".len()..];
    let rest = rest.trim_start_matches(['"', '\'']).trim_start();
    let rest = rest.strip_prefix(',')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    let end = value.find(quote)?;
    let module = &value[..end];
    module
        .split('.')
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then(|| module.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_module_from_a_stock_manage_py() {
        let text =
            "def main():\n    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n";
        assert_eq!(
            settings_from_manage(text).as_deref(),
            Some("mysite.settings")
        );
        let text = "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"a.b.settings\")";
        assert_eq!(settings_from_manage(text).as_deref(), Some("a.b.settings"));
        assert_eq!(settings_from_manage("print('hi')"), None);
    }

    #[test]
    fn rendered_template_parses_and_keeps_what_was_found() {
        let found = Found {
            project_dir: Some(PathBuf::from("/home/u/proj")),
            settings_module: Some("proj.settings".into()),
            python: None,
        };
        let text = render_site(&found);
        assert!(!text.contains("{{"), "{text}");
        let site = crate::config::parse(Path::new("/home/u/www/site.toml"), &text)
            .expect("valid site.toml");
        assert_eq!(site.settings_module.as_deref(), Some("proj.settings"));
        assert_eq!(site.search_path, [PathBuf::from("/home/u/proj")]);
        assert_eq!(site.python, None);
    }

    #[test]
    fn unknown_values_stay_commented_out() {
        let text = render_site(&Found::default());
        assert!(!text.contains("{{"), "{text}");
        // No app yet: the file says so when loaded, naming what to set.
        let e = crate::config::parse(Path::new("/s/site.toml"), &text).expect_err("no app set");
        assert!(e.message.contains("no app"), "{e}");
    }
}
