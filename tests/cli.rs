//! The shim run by a person at a shell (over SSH): usage, version, and
//! `check`, which validates site.toml and tries the app once.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The binary with only PATH in its environment (and `site` as
/// FCGI_SHIM_SITE), stdin an empty pipe that stays open.
fn shim(site: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    server_env(&mut cmd)
        .args(args)
        .current_dir(std::env::temp_dir());
    if let Some(site) = site {
        cmd.env("FCGI_SHIM_SITE", site);
    }
    run(&mut cmd, None, Duration::from_secs(5))
}

#[test]
fn no_arguments_from_a_pipe_prints_usage_and_fails_without_hanging() {
    let out = shim(None, &[]);
    // Usage: the text that lists the commands.
    assert!(
        out.all_text().contains("check"),
        "no usage: {}",
        out.all_text()
    );
    assert!(!out.status.success(), "{:?}", out.status);
}

#[test]
fn help_names_the_check_init_and_runfcgi_commands() {
    let out = shim(None, &["help"]);
    let text = out.all_text();
    for word in ["check", "init", "runfcgi"] {
        assert!(text.contains(word), "{word:?} missing from help: {text}");
    }
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn version_prints_name_and_crate_version() {
    let out = shim(None, &["--version"]);
    assert_eq!(
        out.stdout_text().trim_end(),
        format!("fcgi-shim {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn check_good_site_reports_path_python_version_and_status_200() {
    let dir = TempDir::new("check-good");
    let site = write_site(dir.path(), "echo:app");
    let out = shim(Some(&site), &["check"]);
    let text = out.all_text();
    assert!(out.status.success(), "{:?}: {text}", out.status);
    assert!(
        text.contains(&*site.to_string_lossy()),
        "site.toml path missing: {text}"
    );
    let version = python_version();
    assert!(
        text.contains(&version),
        "python version {version} missing: {text}"
    );
    assert!(text.contains("200 OK"), "status of GET / missing: {text}");
}

#[test]
fn check_unknown_key_names_file_line_key_and_suggests_python() {
    let dir = TempDir::new("check-typo");
    let site = dir.join("site.toml");
    let good = site_toml(dir.path(), "echo:app");
    let body = good.replacen("python = ", "pyhton = ", 1);
    assert!(body.starts_with("pyhton = "), "typo must be on line 1");
    fs::write(&site, body).expect("write site.toml");
    let out = shim(Some(&site), &["check"]);
    let text = out.all_text();
    assert!(!out.status.success(), "{:?}: {text}", out.status);
    assert!(
        text.contains(&*site.to_string_lossy()),
        "file not named: {text}"
    );
    assert!(text.contains("line 1"), "line not named: {text}");
    assert!(text.contains("pyhton"), "key not named: {text}");
    assert!(
        text.replace("pyhton", "").contains("python"),
        "no suggestion of `python`: {text}"
    );
}

#[test]
fn check_wrong_type_names_key_and_expects_an_array_of_strings() {
    let dir = TempDir::new("check-type");
    let site = dir.join("site.toml");
    let good = site_toml(dir.path(), "echo:app");
    let body: Vec<String> = good
        .lines()
        .map(|l| {
            if l.starts_with("search_path") {
                "search_path = 3".into()
            } else {
                l.into()
            }
        })
        .collect();
    assert_eq!(body[1], "search_path = 3", "wrong type must be on line 2");
    fs::write(&site, body.join("\n") + "\n").expect("write site.toml");
    let out = shim(Some(&site), &["check"]);
    let text = out.all_text();
    assert!(!out.status.success(), "{:?}: {text}", out.status);
    assert!(text.contains("search_path"), "key not named: {text}");
    assert!(
        text.contains("array of strings"),
        "expected type not said: {text}"
    );
    // House style: config errors name the file and the line too.
    assert!(
        text.contains(&*site.to_string_lossy()),
        "file not named: {text}"
    );
    assert!(text.contains("line 2"), "line not named: {text}");
}

#[test]
fn check_missing_site_toml_names_the_path_it_looked_for() {
    let dir = TempDir::new("check-missing");
    let site = dir.join("nowhere/site.toml");
    let out = shim(Some(&site), &["check"]);
    let text = out.all_text();
    assert!(!out.status.success(), "{:?}: {text}", out.status);
    assert!(
        text.contains(&*site.to_string_lossy()),
        "path not named: {text}"
    );
}

/// Runs the binary installed as `<dir>/mysite.fcgi`, from `dir`.
fn installed(dir: &Path, args: &[&str]) -> Output {
    let bin = install_binary(dir);
    let mut cmd = Command::new(&bin);
    server_env(&mut cmd).args(args).current_dir(dir);
    run(&mut cmd, None, Duration::from_secs(10))
}

#[test]
fn init_writes_site_toml_and_htaccess_and_never_overwrites() {
    let tmp = TempDir::new("init-fresh");
    let out = installed(tmp.path(), &["init"]);
    assert!(out.status.success(), "{}", out.all_text());
    let htaccess = fs::read_to_string(tmp.join(".htaccess")).expect(".htaccess written");
    let shipped =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("htaccess/auto.htaccess"))
            .expect("htaccess/auto.htaccess");
    assert_eq!(htaccess, shipped);
    let site = fs::read_to_string(tmp.join("site.toml")).expect("site.toml written");
    assert!(!site.contains("{{"), "placeholder left: {site}");
    assert!(out.all_text().contains("next:"), "{}", out.all_text());
    // A second run keeps what is there, byte for byte.
    fs::write(tmp.join("site.toml"), "wsgi_app = \"mine:app\"\n").expect("edit");
    let out = installed(tmp.path(), &["init"]);
    assert!(out.status.success(), "{}", out.all_text());
    assert!(out.all_text().contains("kept"), "{}", out.all_text());
    assert_eq!(
        fs::read_to_string(tmp.join("site.toml")).expect("site.toml"),
        "wsgi_app = \"mine:app\"\n"
    );
}

#[test]
fn init_fills_in_a_django_project_and_its_virtualenv_found_nearby() {
    let tmp = TempDir::new("init-django");
    let www = tmp.join("public_html");
    let proj = tmp.join("myproject");
    fs::create_dir_all(&www).expect("www");
    fs::create_dir_all(proj.join("venv/bin")).expect("venv");
    let manage = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sites/djsite/manage.py");
    fs::copy(&manage, proj.join("manage.py")).expect("manage.py");
    fs::write(proj.join("venv/bin/python3"), "").expect("python3");
    let out = installed(&www, &["init"]);
    assert!(out.status.success(), "{}", out.all_text());
    let site = fs::read_to_string(www.join("site.toml")).expect("site.toml written");
    let lines: Vec<&str> = site
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let has = |want: String| lines.iter().any(|l| l.trim() == want);
    assert!(
        has(format!("search_path = [\"{}\"]", proj.display())),
        "{site}"
    );
    assert!(
        has("settings_module = \"mysite.settings\"".into()),
        "{site}"
    );
    assert!(
        has(format!(
            "python = \"{}\"",
            proj.join("venv/bin/python3").display()
        )),
        "{site}"
    );
}

#[test]
fn init_with_project_path_and_without_manage_py_says_so() {
    let tmp = TempDir::new("init-project");
    let out = installed(
        tmp.path(),
        &["init", &format!("--project={}", tmp.path().display())],
    );
    assert!(!out.status.success(), "{}", out.all_text());
    assert!(
        out.all_text().contains("no manage.py"),
        "{}",
        out.all_text()
    );
    assert!(!tmp.join("site.toml").exists(), "wrote a site.toml anyway");
}
