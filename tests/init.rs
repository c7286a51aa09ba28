//! `mysite.fcgi init` and the site.toml it starts from, driven through the
//! real binary as a user runs it over SSH: the shipped template is valid
//! for the shim's own loader and `check`, init's files get exact modes
//! whoever runs it and whatever the umask, an existing file is never
//! touched, and init warns about a Django project inside the web root.
//! (The older init tests, on Django and virtualenv detection, are in
//! tests/cli.rs.)

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shim-templates/site.toml")
}

fn template_text() -> String {
    fs::read_to_string(template()).expect("shim-templates/site.toml")
}

/// Runs the binary installed as `<dir>/mysite.fcgi`, from `dir`, with only
/// PATH in its environment and, if given, that umask.
fn init_in(dir: &Path, args: &[&str], umask: Option<libc::mode_t>) -> Output {
    let bin = install_binary(dir);
    let mut cmd = Command::new(&bin);
    server_env(&mut cmd).arg("init").args(args).current_dir(dir);
    if let Some(mask) = umask {
        // SAFETY: umask is async-signal-safe and touches no memory; nothing
        // else runs between fork and exec here.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
    }
    run(&mut cmd, None, Duration::from_secs(10))
}

/// Fails unless `dir`'s .htaccess rewrites every URL to `name`.
fn assert_sends_to(dir: &Path, name: &str) {
    let htaccess = fs::read_to_string(dir.join(".htaccess")).expect(".htaccess");
    let rule = format!("RewriteRule ^(.*)$ {name}/$1 [QSA,L]");
    assert!(htaccess.lines().any(|l| l == rule), "{htaccess}");
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn euid() -> u32 {
    // SAFETY: geteuid has no memory effects and cannot fail.
    unsafe { libc::geteuid() }
}

/// A Django project (the test site's manage.py) at `dir`.
fn django_project(dir: &Path) {
    fs::create_dir_all(dir).expect("project dir");
    let manage = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sites/djsite/manage.py");
    fs::copy(&manage, dir.join("manage.py")).expect("manage.py");
}

// --- the shipped template -------------------------------------------------

#[test]
fn shipped_site_toml_loads_with_the_shims_own_loader() {
    let tmp = TempDir::new("tpl-load");
    let copy = tmp.join("site.toml");
    fs::copy(template(), &copy).expect("copy the template");
    let site = fcgi_shim::config::load(&copy).unwrap_or_else(|e| panic!("{e}"));
    // The example it shows: a Django project with a virtualenv.
    assert_eq!(site.python.as_deref(), Some("/home/user/venv/bin/python3"));
    assert_eq!(site.search_path, [PathBuf::from("/home/user/myproject")]);
    assert_eq!(site.settings_module.as_deref(), Some("myproject.settings"));
    assert_eq!(site.wsgi_app, None);
    assert!(site.env.is_empty(), "{:?}", site.env);
}

#[test]
fn check_reads_the_shipped_site_toml_and_complains_only_about_the_example_paths() {
    let tmp = TempDir::new("tpl-check");
    let copy = tmp.join("site.toml");
    fs::copy(template(), &copy).expect("copy the template");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut cmd = Command::new(BIN);
    server_env(&mut cmd)
        .arg("check")
        .env("FCGI_SHIM_SITE", &copy)
        .current_dir(tmp.path());
    let out = run(&mut cmd, None, Duration::from_secs(10));
    let text = out.all_text();
    assert!(!out.status.success(), "{text}");
    // Parsed: the values are listed, and the one problem is the example's
    // interpreter, which does not exist here.
    assert!(
        text.contains("settings_module myproject.settings"),
        "{text}"
    );
    assert!(text.contains("result            1 problem"), "{text}");
    assert!(
        text.contains("/home/user/venv/bin/python3 is not an executable file"),
        "{text}"
    );
    assert!(!text.contains("not valid TOML"), "{text}");
}

#[test]
fn the_shipped_site_toml_edited_as_its_comments_say_passes_check() {
    // A WSGI (non-Django) user: their interpreter and folder, settings_module
    // commented out, wsgi_app uncommented and set. Nothing else changed.
    let tmp = TempDir::new("tpl-edit");
    let apps = apps_dir();
    let edits = [
        (
            "python = \"/home/user/venv/bin/python3\"",
            "python = \"python3\"".to_owned(),
        ),
        (
            "search_path = [\"/home/user/myproject\"]",
            format!("search_path = [{}]", toml_str(&apps.to_string_lossy())),
        ),
        (
            "settings_module = \"myproject.settings\"",
            "# settings_module = \"myproject.settings\"".to_owned(),
        ),
        (
            "# wsgi_app = \"myproject.wsgi:application\"",
            "wsgi_app = \"echo:app\"".to_owned(),
        ),
    ];
    let mut text = template_text();
    for (old, new) in &edits {
        let lines = text.lines().filter(|l| l == old).count();
        assert_eq!(lines, 1, "the template has no single line `{old}`");
        text = text
            .lines()
            .map(|l| if l == *old { new.as_str() } else { l })
            .collect::<Vec<_>>()
            .join("\n");
    }
    let copy = tmp.join("site.toml");
    fs::write(&copy, text).expect("write the edited copy");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut cmd = Command::new(BIN);
    server_env(&mut cmd)
        .arg("check")
        .env("FCGI_SHIM_SITE", &copy)
        .current_dir(tmp.path());
    let out = run(&mut cmd, None, Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.all_text());
}

/// The keys the shim knows, as its own "unknown key" message lists them.
fn known_keys() -> Vec<String> {
    let e = fcgi_shim::config::parse(Path::new("/s/site.toml"), "zzzz_qqqq_xxxx = 1\n")
        .expect_err("an unknown key");
    let list = e
        .message
        .split_once("valid keys are ")
        .unwrap_or_else(|| panic!("no key list in: {e}"))
        .1;
    let keys: Vec<String> = list.split(", ").map(|k| k.trim().to_owned()).collect();
    assert!(keys.len() > 10, "{keys:?}");
    keys
}

#[test]
fn every_key_the_shim_knows_is_explained_in_the_template_with_a_valid_example() {
    let text = template_text();
    for key in known_keys() {
        let shown = text.lines().any(|l| {
            let body = l.strip_prefix("# ").unwrap_or(l);
            if key == "env" {
                body == "[env]"
            } else {
                body.starts_with(&format!("{key} = "))
            }
        });
        assert!(shown, "key `{key}` has no example line in site.toml");
    }
    // Every example, uncommented, is accepted: the comments show values
    // that work. (`# [env]` and the variables after it included.)
    let mut in_env = false;
    let all: Vec<String> = text
        .lines()
        .map(|l| {
            let body = l.strip_prefix("# ").unwrap_or(l);
            let is_example = body == "[env]"
                || body
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            in_env |= body == "[env]";
            // chdir's example is a folder of the user's, which config
            // requires to exist (and it does not here): left commented.
            let is_example = is_example && !body.starts_with("chdir = ");
            if is_example && (in_env || !body.starts_with(char::is_uppercase)) {
                body.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let all = all.join("\n");
    let site = fcgi_shim::config::parse(Path::new("/home/user/public_html/site.toml"), &all)
        .unwrap_or_else(|e| panic!("{e}\n{all}"));
    assert_eq!(site.wsgi_app.as_deref(), Some("myproject.wsgi:application"));
    assert_eq!(site.script_name.as_deref(), Some(""));
    assert!(
        !site.env.is_empty(),
        "the [env] example was not uncommented"
    );
}

#[test]
fn template_says_exactly_when_script_name_is_needed() {
    let text = template_text();
    let section = text
        .split("# --- Where the site is mounted")
        .nth(1)
        .and_then(|s| s.split("# --- ").next())
        .expect("the script_name section");
    for want in [
        "lighttpd",
        "\"/\" => ",
        "fix-root-scriptname",
        "script_name = \"\"",
        "Not needed with the shipped .htaccess files",
    ] {
        assert!(section.contains(want), "`{want}` missing from:\n{section}");
    }
}

// --- init: modes and owners ------------------------------------------------

#[test]
fn init_writes_site_toml_0600_and_htaccess_0644_whatever_the_umask() {
    // 077 would make .htaccess unreadable for the web server (403 for every
    // page); 000 would make site.toml world-readable.
    for mask in [0o077, 0o000, 0o022, 0o027] {
        let tmp = TempDir::new(&format!("init-umask-{mask:o}"));
        let out = init_in(tmp.path(), &[], Some(mask));
        assert!(out.status.success(), "{}", out.all_text());
        assert_eq!(
            mode(&tmp.join("site.toml")),
            0o600,
            "site.toml, umask {mask:o}"
        );
        assert_eq!(
            mode(&tmp.join(".htaccess")),
            0o644,
            ".htaccess, umask {mask:o}"
        );
        assert!(
            out.stdout_text().contains("(mode 600") && out.stdout_text().contains("(mode 644"),
            "{}",
            out.all_text()
        );
    }
}

/// Regression: run as root, init wrote site.toml world-readable (mode 644).
#[test]
fn init_as_root_writes_site_toml_0600_owned_by_the_folders_owner() {
    let tmp = TempDir::new("init-root");
    let www = tmp.join("public_html");
    fs::create_dir(&www).expect("www");
    // As root: the folder belongs to a user (nobody), as a user's web root
    // does. Otherwise the files are simply the caller's.
    let (uid, gid) = if euid() == 0 {
        std::os::unix::fs::chown(&www, Some(65534), Some(65534)).expect("chown");
        (65534, 65534)
    } else {
        let m = fs::metadata(&www).expect("stat");
        (m.uid(), m.gid())
    };
    let out = init_in(&www, &[], Some(0o022));
    assert!(out.status.success(), "{}", out.all_text());
    for (name, want) in [("site.toml", 0o600), (".htaccess", 0o644)] {
        let path = www.join(name);
        let m = fs::metadata(&path).expect("written");
        assert_eq!(m.permissions().mode() & 0o7777, want, "{name}");
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{name} owner");
    }
    if euid() == 0 {
        assert!(
            out.stdout_text().contains("owner 65534:65534"),
            "{}",
            out.all_text()
        );
    }
}

// --- init: never overwrites -----------------------------------------------

#[test]
fn init_never_overwrites_or_rechmods_an_existing_site_toml_or_htaccess() {
    let tmp = TempDir::new("init-keep");
    let site = tmp.join("site.toml");
    let htaccess = tmp.join(".htaccess");
    fs::write(&site, "wsgi_app = \"mine:app\"\n").expect("site.toml");
    fs::write(&htaccess, "# my own rules\n").expect(".htaccess");
    fs::set_permissions(&site, fs::Permissions::from_mode(0o640)).expect("chmod");
    fs::set_permissions(&htaccess, fs::Permissions::from_mode(0o604)).expect("chmod");
    let out = init_in(tmp.path(), &[], None);
    assert!(out.status.success(), "{}", out.all_text());
    assert_eq!(
        out.stdout_text().matches("kept ").count(),
        2,
        "{}",
        out.all_text()
    );
    assert!(!out.stdout_text().contains("wrote "), "{}", out.all_text());
    assert_eq!(
        fs::read_to_string(&site).expect("site"),
        "wsgi_app = \"mine:app\"\n"
    );
    assert_eq!(
        fs::read_to_string(&htaccess).expect("ht"),
        "# my own rules\n"
    );
    assert_eq!(mode(&site), 0o640);
    assert_eq!(mode(&htaccess), 0o604);
    // The steps say what the kept files may lack, not what only a new
    // site.toml needs.
    let text = out.stdout_text();
    assert!(
        text.contains("  - the .htaccess that was there is kept: it needs the handler and rewrite"),
        "{text}"
    );
    assert!(!text.contains("set wsgi_app"), "{text}");
    assert!(!text.contains("(mode 600)"), "{text}");
}

#[test]
fn init_for_a_binary_named_otherwise_writes_its_name_into_the_rewrite() {
    let tmp = TempDir::new("init-name");
    let bin = tmp.join("blog.fcgi");
    fs::copy(BIN, &bin).expect("copy the binary");
    let mut cmd = Command::new(&bin);
    server_env(&mut cmd).arg("init").current_dir(tmp.path());
    let out = run(&mut cmd, None, Duration::from_secs(10));
    assert!(out.status.success(), "{}", out.all_text());
    let htaccess = fs::read_to_string(tmp.join(".htaccess")).expect(".htaccess");
    let lines: Vec<&str> = htaccess.lines().collect();
    assert!(
        lines.contains(&r"RewriteRule ^blog\.fcgi(/.*)?$ - [L]"),
        "{htaccess}"
    );
    assert!(
        lines.contains(&"RewriteRule ^(.*)$ blog.fcgi/$1 [QSA,L]"),
        "{htaccess}"
    );
    assert!(!htaccess.contains("mysite"), "{htaccess}");
    assert!(
        out.stdout_text().contains("  - run ./blog.fcgi check in "),
        "{}",
        out.all_text()
    );
}

#[test]
fn init_run_from_path_writes_into_the_current_directory_for_its_fcgi_file() {
    let tmp = TempDir::new("init-from-path");
    let bin = tmp.join("bin");
    let www = tmp.join("www");
    fs::create_dir_all(&www).expect("www");
    let init = || {
        run(
            from_path(&bin).arg("init").current_dir(&www),
            None,
            Duration::from_secs(10),
        )
    };
    // Nothing deployed yet: the files for mysite.fcgi, and the step that
    // copies the binary there.
    let out = init();
    assert!(out.status.success(), "{}", out.all_text());
    assert!(www.join("site.toml").exists(), "{}", out.all_text());
    let htaccess = fs::read_to_string(www.join(".htaccess")).expect(".htaccess");
    let shipped =
        fs::read_to_string(shipped_htaccess("auto.htaccess")).expect("htaccess/auto.htaccess");
    assert_eq!(htaccess, shipped);
    let steps = out.stdout_text();
    let by = bin.join("fcgi-shim");
    let install = |at: &Path| install_step(&by, at);
    let put = format!(
        "  - put this binary there: {}",
        install(&www.join("mysite.fcgi"))
    );
    assert!(steps.lines().any(|l| l == put), "{steps}");
    let installed: Vec<_> = fs::read_dir(&bin)
        .expect("bin")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        installed,
        ["fcgi-shim"],
        "init wrote beside the installed binary"
    );

    // The site's one .fcgi file is the one the .htaccess sends requests
    // to; this program already, so nothing to copy.
    fs::remove_file(www.join(".htaccess")).expect("rm .htaccess");
    fs::hard_link(bin.join("fcgi-shim"), www.join("blog.fcgi")).expect("ln blog.fcgi");
    let out = init();
    assert!(out.status.success(), "{}", out.all_text());
    assert_sends_to(&www, "blog.fcgi");
    let steps = out.stdout_text();
    assert!(!steps.contains("put this binary"), "{steps}");
    assert!(steps.contains("  - run ./blog.fcgi check in "), "{steps}");

    // The seed's flup script there: this binary goes over it. And
    // FCGI_SHIM_SITE (a runfcgi setting) does not move where init writes.
    fs::remove_file(www.join("blog.fcgi")).expect("rm blog.fcgi");
    fs::write(www.join("blog.fcgi"), "#!/usr/bin/python3\n").expect("flup blog.fcgi");
    fs::remove_file(www.join(".htaccess")).expect("rm .htaccess");
    let out = run(
        from_path(&bin)
            .arg("init")
            .env("FCGI_SHIM_SITE", tmp.join("elsewhere.toml"))
            .current_dir(&www),
        None,
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", out.all_text());
    assert!(www.join(".htaccess").exists(), "{}", out.all_text());
    let steps = out.stdout_text();
    let blog = www.join("blog.fcgi");
    let put = format!(
        "  - {} is a Python script (the old flup mysite.fcgi?): put this binary in its place: \
         {}",
        blog.display(),
        install(&blog)
    );
    assert!(steps.lines().any(|l| l == put), "{steps}");
    assert!(!bin.join(".htaccess").exists() && !bin.join("site.toml").exists());

    // In the folder it is installed in: refused, nothing written.
    let out = run(
        from_path(&bin).arg("init").current_dir(&bin),
        None,
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "fcgi-shim init: {} is where fcgi-shim is installed, not a web root; run it in your \
             web root (or give that folder: fcgi-shim init DIR)\n",
            bin.display()
        )
    );
    assert!(!bin.join(".htaccess").exists() && !bin.join("site.toml").exists());
}

/// `./mysite.fcgi init DIR` for a DIR that holds the site's .fcgi file
/// under another name: the .htaccess is for that file.
#[test]
fn init_into_a_folder_given_writes_the_htaccess_for_its_fcgi_file() {
    let tmp = TempDir::new("init-dir-given");
    let www = tmp.join("www");
    fs::create_dir_all(&www).expect("www");
    fs::write(www.join("shop.fcgi"), "").expect("shop.fcgi");
    let arg = www.display().to_string();
    let out = init_in(tmp.path(), &[&arg], None);
    assert!(out.status.success(), "{}", out.all_text());
    assert_sends_to(&www, "shop.fcgi");
    assert!(!tmp.join(".htaccess").exists());
    // An empty shop.fcgi is not this program: the step puts it there.
    let shop = www.join("shop.fcgi");
    let put = format!(
        "  - {s} is another program: put this binary in its place: cp {} {s}.new && chmod 755 \
         {s}.new && mv {s}.new {s}",
        tmp.join("mysite.fcgi").display(),
        s = shop.display()
    );
    assert!(
        out.stdout_text().lines().any(|l| l == put),
        "{}",
        out.all_text()
    );
}

#[test]
fn init_for_a_name_the_htaccess_cannot_run_writes_it_for_mysite_fcgi() {
    for name in ["fcgi-shim", "my site.fcgi", "a$1.fcgi"] {
        let tmp = TempDir::new("init-badname");
        let bin = tmp.join(name);
        fs::copy(BIN, &bin).expect("copy the binary");
        let mut cmd = Command::new(&bin);
        server_env(&mut cmd).arg("init").current_dir(tmp.path());
        let out = run(&mut cmd, None, Duration::from_secs(10));
        assert!(out.status.success(), "{name}: {}", out.all_text());
        let htaccess = fs::read_to_string(tmp.join(".htaccess")).expect(".htaccess");
        assert_eq!(
            htaccess,
            fs::read_to_string(shipped_htaccess("auto.htaccess")).expect("auto"),
            "{name}"
        );
        assert!(
            out.stdout_text().contains(&format!(
                "warning: the .htaccess cannot run {name:?} (it runs files named something.fcgi, \
                 without spaces, $, %, quotes or backslashes): it is written for mysite.fcgi; \
                 rename this file to mysite.fcgi"
            )),
            "{name}: {}",
            out.all_text()
        );
        // ... and the step that makes it so, each path one word for sh.
        let word = |p: &Path| {
            let p = p.display().to_string();
            if p.contains([' ', '$']) {
                format!("'{p}'")
            } else {
                p
            }
        };
        let m = tmp.join("mysite.fcgi");
        let new = word(&tmp.join("mysite.fcgi.new"));
        let put = format!(
            "  - put this binary there: cp {} {new} && chmod 755 {new} && mv {new} {}",
            word(&bin),
            word(&m)
        );
        assert!(
            out.stdout_text().lines().any(|l| l == put),
            "{name}: {}",
            out.all_text()
        );
    }
}

#[test]
fn init_that_cannot_write_fails_without_next_steps() {
    // A folder where no file can be created, even by root.
    let tmp = TempDir::new("init-ro");
    let bin = install_binary(tmp.path());
    let mut cmd = Command::new(&bin);
    server_env(&mut cmd)
        .args(["init", "/proc/1"])
        .current_dir(tmp.path());
    let out = run(&mut cmd, None, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    let text = out.all_text();
    assert!(
        text.contains("init: cannot write /proc/1/site.toml: "),
        "{text}"
    );
    assert!(
        text.contains("init: cannot write /proc/1/.htaccess: "),
        "{text}"
    );
    assert!(!text.contains("next:"), "{text}");
}

#[test]
fn init_never_writes_through_a_symlink() {
    // Root running init in a user's folder must not be led to create or
    // fill a file elsewhere: a planted link, even a dangling one, is kept.
    let tmp = TempDir::new("init-link");
    let www = tmp.join("www");
    fs::create_dir(&www).expect("www");
    let elsewhere = tmp.join("elsewhere.toml");
    std::os::unix::fs::symlink(&elsewhere, www.join("site.toml")).expect("symlink");
    let out = init_in(&www, &[], None);
    assert!(out.status.success(), "{}", out.all_text());
    assert!(!elsewhere.exists(), "init wrote through the symlink");
    assert!(
        fs::symlink_metadata(www.join("site.toml"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert!(out.stdout_text().contains("kept "), "{}", out.all_text());
    // The other file is still written.
    assert_eq!(mode(&www.join(".htaccess")), 0o644);
}

// --- init: a Django project inside the web root ---------------------------

const WEB_ROOT_WARNING: &str = "lies inside the web root";

#[test]
fn init_warns_when_the_django_project_it_found_lies_inside_the_web_root() {
    let tmp = TempDir::new("init-inside");
    let www = tmp.join("public_html");
    let proj = www.join("proj");
    django_project(&proj);
    let out = init_in(&www, &[], None);
    let text = out.stdout_text();
    assert!(out.status.success(), "{}", out.all_text());
    let warning = text
        .lines()
        .skip_while(|l| !l.contains(WEB_ROOT_WARNING))
        .take_while(|l| !l.starts_with("wrote"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(warning.starts_with("warning:"), "no warning in:\n{text}");
    for want in [
        proj.to_str().expect("utf-8"),
        www.to_str().expect("utf-8"),
        "*.py",
        "*.sqlite3",
        "safer",
    ] {
        assert!(warning.contains(want), "`{want}` missing from:\n{warning}");
    }
    // It still fills in the project: the warning is advice, not refusal.
    let site = fcgi_shim::config::load(&www.join("site.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(site.search_path, [proj]);
    assert_eq!(site.settings_module.as_deref(), Some("mysite.settings"));
}

#[test]
fn init_warns_when_manage_py_is_in_the_web_root_itself_or_given_inside_it() {
    // manage.py right in public_html.
    let tmp = TempDir::new("init-root-proj");
    django_project(tmp.path());
    let out = init_in(tmp.path(), &[], None);
    assert!(
        out.stdout_text().contains(WEB_ROOT_WARNING),
        "{}",
        out.all_text()
    );
    // --project naming a folder below the web root.
    let tmp = TempDir::new("init-given-proj");
    let www = tmp.join("www");
    django_project(&www.join("deep/proj"));
    let arg = format!("--project={}", www.join("deep/proj").display());
    let out = init_in(&www, &[&arg], None);
    assert!(out.status.success(), "{}", out.all_text());
    assert!(
        out.stdout_text().contains(WEB_ROOT_WARNING),
        "{}",
        out.all_text()
    );
}

/// cookiecutter-django's layout: manage.py names the development settings,
/// config/wsgi.py (what a web server runs) the production ones.
#[test]
fn init_takes_the_settings_of_the_projects_wsgi_py_over_manage_pys() {
    let tmp = TempDir::new("init-cookiecutter");
    let www = tmp.join("public_html");
    let proj = tmp.join("myproject");
    fs::create_dir_all(&www).expect("www");
    fs::create_dir_all(proj.join("config/settings")).expect("config");
    fs::write(
        proj.join("manage.py"),
        "import os\nimport sys\n\nif __name__ == \"__main__\":\n    \
         os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"config.settings.local\")\n",
    )
    .expect("manage.py");
    fs::write(
        proj.join("config/wsgi.py"),
        "import os\n\n# We defer to a DJANGO_SETTINGS_MODULE already in the environment.\n\
         os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"config.settings.production\")\n",
    )
    .expect("wsgi.py");
    let out = init_in(&www, &[], None);
    assert!(out.status.success(), "{}", out.all_text());
    let first = out
        .stdout_text()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        first,
        format!(
            "found a Django project in {} (settings config.settings.production, from its \
             wsgi.py: manage.py's config.settings.local are presumably for development); production \
             settings often read secrets from the environment: give them under [env] in \
             site.toml",
            proj.display()
        )
    );
    let site = fs::read_to_string(www.join("site.toml")).expect("site.toml");
    assert!(
        site.lines()
            .any(|l| l == "settings_module = \"config.settings.production\""),
        "{site}"
    );
}

#[test]
fn init_with_several_django_projects_nearby_takes_the_first_and_names_the_others() {
    let tmp = TempDir::new("init-several");
    let www = tmp.join("public_html");
    fs::create_dir(&www).expect("www");
    django_project(&tmp.join("aaa_oldsite"));
    django_project(&tmp.join("zzz_mysite"));
    let out = init_in(&www, &[], None);
    assert!(out.status.success(), "{}", out.all_text());
    let text = out.stdout_text();
    assert!(
        text.contains(&format!(
            "found a Django project in {} ",
            tmp.join("aaa_oldsite").display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "also found a Django project in {}: give --project=PATH to use one of those instead",
            tmp.join("zzz_mysite").display()
        )),
        "{text}"
    );
}

#[test]
fn init_does_not_warn_for_a_project_beside_the_web_root() {
    let tmp = TempDir::new("init-beside");
    let www = tmp.join("public_html");
    fs::create_dir(&www).expect("www");
    // Named so that a prefix test on strings would take it for the web root.
    django_project(&tmp.join("public_html2"));
    let out = init_in(&www, &[], None);
    assert!(out.status.success(), "{}", out.all_text());
    assert!(
        out.stdout_text().contains("found a Django project"),
        "{}",
        out.all_text()
    );
    assert!(
        !out.stdout_text().contains(WEB_ROOT_WARNING),
        "{}",
        out.all_text()
    );
}

#[test]
fn init_output_says_when_lighttpd_needs_script_name() {
    let tmp = TempDir::new("init-lt");
    let out = init_in(tmp.path(), &[], None);
    let line = out
        .stdout_text()
        .lines()
        .find(|l| l.trim_start().starts_with("- lighttpd"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no lighttpd line in:\n{}", out.all_text()));
    assert!(line.contains("script_name = \"\""), "{line}");
    assert!(line.contains("\"/\""), "{line}");
}
