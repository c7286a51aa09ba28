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
        fs::read_to_string(shipped_htaccess("auto.htaccess")).expect("htaccess/auto.htaccess");
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

/// Fails unless the report says it checks `script`, from PATH, with `by`.
fn assert_checked_by(out: &Output, script: &Path, by: &Path) {
    let want = format!(
        "executable        {} (checked by {}, run from PATH)",
        script.display(),
        by.display()
    );
    assert_line(out, &want);
}

/// `fcgi-shim check`, by its name from PATH, in the folder `dir`.
fn check_from_path(bin: &Path, dir: &Path) -> Output {
    run(
        from_path(bin).arg("check").current_dir(dir),
        None,
        Duration::from_secs(20),
    )
}

#[test]
fn check_run_from_path_checks_the_site_of_the_current_directory() {
    let root = WebRoot::echo("check-from-path");
    let bin = root.tmp.join("bin");
    let by = bin.join("fcgi-shim");
    let script = root.www.join("mysite.fcgi");
    let out = check_from_path(&bin, &root.www);
    assert_ok(&out, &[], "OK");
    assert_checked_by(&out, &script, &by);
    assert_line(
        &out,
        &format!("site.toml         {}", root.site().display()),
    );
    assert_line(&out, "GET /             200 OK");

    // What the web server runs is not what checks it: said, with the
    // commands that put this one in its place.
    let install = install_step(&by, &script);
    let x = script.display();
    fs::remove_file(&script).expect("rm mysite.fcgi");
    fs::write(
        &script,
        "#!/usr/bin/python3\nfrom flup.server.fcgi import WSGIServer\n",
    )
    .expect("a flup mysite.fcgi");
    let out = check_from_path(&bin, &root.www);
    let flup = format!(
        "warning           {x} is a Python script (the old flup mysite.fcgi?), not fcgi-shim: \
         the web server runs that, not what this checks; to serve the site with fcgi-shim: \
         {install}"
    );
    assert_ok(&out, &[flup], "OK (1 warning)");
    let mut other = fs::read(BIN).expect("read the binary");
    other.push(0);
    fs::write(&script, other).expect("another build");
    let out = check_from_path(&bin, &root.www);
    let build = format!(
        "warning           {x} is another build of fcgi-shim than {}: the web server runs the \
         first, so what it does may differ from this check; run ./mysite.fcgi check to check \
         it, or update it: {install}",
        by.display()
    );
    assert_ok(&out, &[build], "OK (1 warning)");

    // A symlink to a binary that has gone: nothing the server can run.
    fs::remove_file(&script).expect("rm mysite.fcgi");
    std::os::unix::fs::symlink(root.tmp.join("gone"), &script).expect("ln -s");
    let out = check_from_path(&bin, &root.www);
    let problem = format!(
        "PROBLEM           {x} is a symlink to {}, which is not there: the web server cannot \
         run it; put this program there: {install}",
        root.tmp.join("gone").display()
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    assert_line(&out, &problem);

    // Several .fcgi files: mysite.fcgi among them, else the one that is
    // this program, else which one is meant cannot be told.
    fs::remove_file(&script).expect("rm the symlink");

    // Nothing there, in a folder that has its .htaccess: a web root
    // missing its executable. A folder of that name: nothing to run either.
    let out = check_from_path(&bin, &root.www);
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    assert_line(
        &out,
        &format!(
            "PROBLEM           {x} is not there: the web server has nothing to run for this \
             site (its .htaccess is there); put this program there: {install}"
        ),
    );
    fs::create_dir(&script).expect("mkdir mysite.fcgi");
    let out = check_from_path(&bin, &root.www);
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    assert_line(
        &out,
        &format!(
            "PROBLEM           {x} is a folder: the web server cannot run it; rename it, then \
             put this program there: {install}"
        ),
    );
    fs::remove_dir(&script).expect("rmdir mysite.fcgi");
    fs::write(root.www.join("a.fcgi"), "").expect("a.fcgi");
    fs::write(root.www.join("b.fcgi"), "").expect("b.fcgi");
    let out = check_from_path(&bin, &root.www);
    assert_eq!(out.status.code(), Some(2), "{}", out.all_text());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "fcgi-shim check: {} holds several .fcgi files (a.fcgi, b.fcgi), none of them \
             mysite.fcgi or this program: run the one you mean as ./NAME.fcgi there\n",
            root.www.display()
        )
    );
    fs::hard_link(BIN, root.www.join("b.fcgi.tmp")).expect("ln");
    fs::rename(root.www.join("b.fcgi.tmp"), root.www.join("b.fcgi")).expect("mv");
    let out = check_from_path(&bin, &root.www);
    // (The shipped .htaccess rewrites to mysite.fcgi: warned of, rightly.)
    let misrouted = format!(
        "warning           {} rewrites requests to mysite.fcgi, but this executable is b.fcgi: \
         every page would ask for a file that is not there; write b.fcgi for mysite.fcgi in it \
         (and b\\.fcgi for mysite\\.fcgi), or rename this file",
        root.www.join(".htaccess").display()
    );
    assert_ok(&out, &[misrouted], "OK (1 warning)");
    assert_checked_by(&out, &root.www.join("b.fcgi"), &by);
    fs::hard_link(BIN, &script).expect("ln mysite.fcgi");
    let out = check_from_path(&bin, &root.www);
    assert_ok(&out, &[], "OK");
    assert_checked_by(&out, &script, &by);
}

/// A runfcgi site's folder (site.toml beside manage.py, no .fcgi file, no
/// .htaccess): no web root, so none of a web root's checks.
#[test]
fn check_run_from_path_in_a_runfcgi_project_folder_skips_the_web_root_checks() {
    let root = WebRoot::new("check-from-path-runfcgi");
    let project = root.tmp.join("project");
    fs::create_dir_all(&project).expect("project");
    fs::write(project.join("manage.py"), "").expect("manage.py");
    let site = format!(
        "search_path = [{}]\nwsgi_app = \"echo:app\"\n",
        toml_str(&apps_dir().to_string_lossy())
    );
    fs::write(project.join("site.toml"), site).expect("site.toml");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(project.join("site.toml"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let bin = root.tmp.join("bin");
    let out = check_from_path(&bin, &project);
    assert_ok(&out, &[], "OK");
    assert_line(
        &out,
        &format!(
            "executable        none in {} (no .fcgi file, no .htaccess: a runfcgi site); its \
             site.toml checked by {}, run from PATH",
            project.display(),
            bin.join("fcgi-shim").display()
        ),
    );
    assert!(
        !report(&out).iter().any(|l| l.starts_with("mode ")),
        "{}",
        out.all_text()
    );
    // The fix of a failed import reloads through site.toml: there is no
    // .fcgi file to touch.
    fs::write(
        project.join("site.toml"),
        "wsgi_app = \"no_such_module_here:app\"\n",
    )
    .expect("site.toml");
    let out = check_from_path(&bin, &project);
    let touch = format!(
        "then `touch {}` so that the running site reloads",
        project.join("site.toml").display()
    );
    assert!(
        result(&out) == "result            1 problem"
            && report(&out)
                .iter()
                .any(|l| l.starts_with("PROBLEM") && l.ends_with(&touch)),
        "{}",
        out.all_text()
    );
}

/// `~/bin/fcgi-shim ARGS`: the copy installed in `bin`, run by its path
/// from the folder `dir`.
fn by_path(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    // from_path puts the copy there; it is run here by its path instead.
    drop(from_path(bin));
    let mut cmd = Command::new(bin.join("fcgi-shim"));
    server_env(&mut cmd).args(args).current_dir(dir);
    run(&mut cmd, None, Duration::from_secs(20))
}

#[test]
fn check_run_by_the_path_of_an_installed_copy_checks_the_site_of_the_current_directory() {
    let root = WebRoot::echo("check-by-path");
    let bin = root.tmp.join("bin");
    let by = bin.join("fcgi-shim");
    let script = root.www.join("mysite.fcgi");
    let out = by_path(&bin, &root.www, &["check"]);
    assert_ok(&out, &[], "OK");
    assert_line(
        &out,
        &format!(
            "executable        {} (checked by {}, which has no site.toml beside it)",
            script.display(),
            by.display()
        ),
    );
    assert_line(
        &out,
        &format!("site.toml         {}", root.site().display()),
    );
    assert_line(&out, "GET /             200 OK");

    // Run from a folder that holds no site: the binary's own folder is
    // reported on, as before.
    let out = by_path(&bin, root.tmp.path(), &["check"]);
    assert!(!out.status.success(), "{}", out.all_text());
    assert_line(&out, &format!("executable        {}", by.display()));
    let theirs = bin.join("site.toml");
    assert!(
        out.all_text().contains(&*theirs.to_string_lossy()),
        "{}",
        out.all_text()
    );

    // A site.toml beside the copy makes it a site's own executable.
    fs::copy(root.site(), &theirs).expect("site.toml beside the copy");
    let out = by_path(&bin, &root.www, &["check"]);
    // (With a warning: that folder has no .htaccess denying site.toml.)
    assert!(out.status.success(), "{}", out.all_text());
    assert_line(&out, &format!("executable        {}", by.display()));
    assert_line(&out, &format!("site.toml         {}", theirs.display()));
}

#[test]
fn init_run_by_the_path_of_an_installed_copy_writes_into_the_current_directory() {
    let tmp = TempDir::new("init-by-path");
    let (bin, www) = (tmp.join("bin"), tmp.join("www"));
    fs::create_dir_all(&www).expect("web root");
    let out = by_path(&bin, &www, &["init"]);
    assert!(out.status.success(), "{}", out.all_text());
    assert!(www.join("site.toml").is_file(), "{}", out.all_text());
    assert!(www.join(".htaccess").is_file(), "{}", out.all_text());
    assert!(!bin.join("site.toml").exists(), "{}", out.all_text());
    // It says how to put itself there as the site's executable.
    let install = install_step(&bin.join("fcgi-shim"), &www.join("mysite.fcgi"));
    assert!(out.all_text().contains(&install), "{}", out.all_text());
}

#[test]
fn check_piped_into_a_reader_that_leaves_ends_quietly() {
    let root = WebRoot::echo("check-epipe");
    // `check | head -0`: the reader has gone before the first line.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = Command::new(root.www.join("mysite.fcgi"));
    server_env(&mut cmd)
        .arg("check")
        .current_dir(&root.www)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().expect("run check");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_into_a_full_disk_fails_and_says_so() {
    let root = WebRoot::echo("check-enospc");
    // The same site checks OK when its report can be written.
    assert_ok(&root.check(&[], &[]), &[], "OK");
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let mut cmd = Command::new(root.www.join("mysite.fcgi"));
    server_env(&mut cmd)
        .arg("check")
        .current_dir(&root.www)
        .stdin(std::process::Stdio::null())
        .stdout(full)
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().expect("run check");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: what it printed could not be written in full: No space left on device (os \
             error 28)\n",
            root.www.join("mysite.fcgi").display()
        )
    );
}

/// A web root as a shared host has it: `<tmp>/www` holds mysite.fcgi and
/// the shipped .htaccess; the app comes from tests/apps, outside it.
struct WebRoot {
    tmp: TempDir,
    www: std::path::PathBuf,
}

impl WebRoot {
    /// Puts `dir` first in site.toml's search_path.
    fn prepend_search_path(&self, dir: &Path) {
        let text = fs::read_to_string(self.site()).expect("site.toml");
        let text = text.replacen(
            "search_path = [",
            &format!("search_path = [{}, ", toml_str(&dir.to_string_lossy())),
            1,
        );
        fs::write(self.site(), text).expect("write site.toml");
    }
    fn new(tag: &str) -> WebRoot {
        let tmp = TempDir::new(tag);
        let www = tmp.join("www");
        fs::create_dir_all(&www).expect("www");
        install_binary(&www);
        let shipped = shipped_htaccess("auto.htaccess");
        fs::copy(shipped, www.join(".htaccess")).expect("copy auto.htaccess");
        WebRoot { tmp, www }
    }

    /// A web root whose site.toml serves tests/apps' echo app, logging
    /// outside the web root, with nothing else set.
    fn echo(tag: &str) -> WebRoot {
        let root = WebRoot::new(tag);
        root.write_site("echo:app", &root.outside_log(), "");
        root
    }

    fn site(&self) -> std::path::PathBuf {
        self.www.join("site.toml")
    }

    /// Writes `www/site.toml` (mode 600) for `app`, logging to `log`, with
    /// `extra` lines at the end.
    fn write_site(&self, app: &str, log: &Path, extra: &str) {
        use std::os::unix::fs::PermissionsExt;
        let text = format!(
            "python = \"python3\"\nsearch_path = [{}]\nwsgi_app = {}\nlog_file = {}\n{extra}",
            toml_str(&apps_dir().to_string_lossy()),
            toml_str(app),
            toml_str(&log.to_string_lossy()),
        );
        fs::write(self.site(), text).expect("write site.toml");
        fs::set_permissions(self.site(), fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// A log file outside the web root, in a folder that exists.
    fn outside_log(&self) -> std::path::PathBuf {
        let logs = self.tmp.join("logs");
        fs::create_dir_all(&logs).expect("logs");
        logs.join("shim.log")
    }

    /// `./mysite.fcgi check ARGS` in the web root, with `env` added to the
    /// web server's bare environment.
    fn check(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        check_with(&self.www.join("mysite.fcgi"), args, env)
    }
}

/// `EXE check ARGS` in EXE's folder, with `env` added to the web server's
/// bare environment.
fn check_with(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(exe);
    server_env(&mut cmd)
        .arg("check")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(exe.parent().expect("a folder"));
    run(&mut cmd, None, Duration::from_secs(20))
}

/// The report's lines.
fn report(out: &Output) -> Vec<String> {
    out.stdout_text().lines().map(str::to_owned).collect()
}

/// Fails unless `want` is one of the report's lines, exactly.
fn assert_line(out: &Output, want: &str) {
    line_index(out, want);
}

/// The index of the line `want` in the report.
fn line_index(out: &Output, want: &str) -> usize {
    report(out)
        .iter()
        .position(|l| l == want)
        .unwrap_or_else(|| panic!("no line\n{want}\nin:\n{}", out.all_text()))
}

/// The last line: the verdict.
fn result(out: &Output) -> String {
    report(out).last().cloned().unwrap_or_default()
}

fn warnings(out: &Output) -> Vec<String> {
    report(out)
        .into_iter()
        .filter(|l| l.starts_with("warning "))
        .collect()
}

/// Fails unless check exited 0, its warning lines are exactly `want` (in
/// order) and its verdict is `result            {verdict}`.
fn assert_ok(out: &Output, want: &[String], verdict: &str) {
    assert!(out.status.success(), "{}", out.all_text());
    assert_eq!(warnings(out), want, "{}", out.all_text());
    assert_eq!(
        result(out),
        format!("result            {verdict}"),
        "{}",
        out.all_text()
    );
}

#[test]
fn check_clean_web_root_is_ok_with_no_warning_and_shows_the_defaults() {
    let root = WebRoot::echo("check-clean");
    let out = root.check(&[], &[]);
    assert_ok(&out, &[], "OK");
    for want in [
        "  max_requests    0 (the worker is never recycled)",
        "  request_timeout 300 s",
        "  idle_timeout    0 (never exits when idle)",
        "  max_body        0 (no limit)",
        "  max_rss         0 (no limit)",
        "  io_timeout      60 s",
        "  startup_timeout 120 s",
        "  debug           false (tracebacks go to the log, never to a browser)",
        "  debug_allow     (nobody)",
        "  trusted_proxies (none: X-Forwarded-For and X-Forwarded-Proto are ignored)",
        "  script_name     (not set: from each request's URL)",
        "  pin_cpu         true (the shim and its worker share one CPU)",
        "  chdir           (not set: the app runs in site.toml's folder)",
        "GET /             200 OK",
        "reloads           a change is seen at the next request (inotify watches the files)",
    ] {
        assert_line(&out, want);
    }
    assert!(out.stderr.is_empty(), "stderr: {}", out.all_text());
}

#[test]
fn check_says_a_web_root_through_a_symbolic_link_is_statted_before_each_request() {
    // public_html -> releases/3: inotify on the release would miss the
    // link being swapped, so the shim stats; check says why.
    let root = WebRoot::echo("check-symlinked");
    let link = root.tmp.join("public_html");
    std::os::unix::fs::symlink(&root.www, &link).expect("symlink");
    let out = check_with(&link.join("mysite.fcgi"), &[], &[]);
    assert!(out.status.success(), "{}", out.all_text());
    assert_line(
        &out,
        &format!(
            "reloads           a change is seen at the next request (statted before each one, \
             without inotify: {} is a symbolic link or not a directory)",
            link.display()
        ),
    );
}

#[test]
fn check_says_a_web_root_below_a_folder_it_may_not_read_is_statted_before_each_request() {
    // /home/USER mode 711: the web server's user may pass through but not
    // list it, and inotify watches only what its caller may read.
    use std::os::unix::fs::{PermissionsExt, chown};
    use std::os::unix::process::CommandExt;
    let tmp = TempDir::new("check-unreadable");
    let locked = tmp.join("home");
    let (www, apps, logs) = (locked.join("www"), tmp.join("apps"), tmp.join("logs"));
    for d in [&www, &apps, &logs] {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o711)).expect("chmod 711");
    fs::copy(apps_dir().join("echo.py"), apps.join("echo.py")).expect("copy the app");
    let site = www.join("site.toml");
    fs::write(
        &site,
        format!(
            "python = \"python3\"\nsearch_path = [{}]\nwsgi_app = \"echo:app\"\nlog_file = {}\n",
            toml_str(&apps.to_string_lossy()),
            toml_str(&logs.join("shim.log").to_string_lossy())
        ),
    )
    .expect("site.toml");
    fs::set_permissions(&site, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let exe = install_binary(&www);
    for p in [&www, &site, &logs] {
        chown(p, Some(33), Some(33)).expect("chown www-data");
    }
    let mut cmd = Command::new(&exe);
    server_env(&mut cmd)
        .arg("check")
        .current_dir(&www)
        .uid(33)
        .gid(33);
    let out = run(&mut cmd, None, Duration::from_secs(20));
    assert_line(
        &out,
        &format!(
            "reloads           a change is seen at the next request (statted before each one, \
             without inotify: watching {}: Permission denied (os error 13))",
            locked.display()
        ),
    );
}

#[test]
fn check_says_the_reload_check_stats_when_the_user_has_no_inotify_instance_left() {
    use std::os::unix::process::CommandExt;
    // A uid of its own: the limit is per user, and root's tests use inotify.
    const UID: u32 = 48231;
    let tmp = TempDir::new("check-no-inotify");
    let www = tmp.join("www");
    fs::create_dir_all(&www).expect("mkdir");
    fs::copy(apps_dir().join("echo.py"), www.join("echo.py")).expect("copy the app");
    fs::write(www.join("site.toml"), own_site_toml(&www, "echo:app")).expect("site.toml");
    chown_tree(&www, UID);
    // After the chown: the link is the test binary's own inode.
    let exe = install_binary(&www);
    let hog = InotifyHog::new(UID);
    let mut cmd = Command::new(&exe);
    server_env(&mut cmd)
        .arg("check")
        .current_dir(&www)
        .uid(UID)
        .gid(UID);
    let out = run(&mut cmd, None, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", out.all_text());
    assert_line(
        &out,
        &format!(
            "reloads           a change is seen at the next request (statted before each one, \
             without inotify: no inotify instance left: this user holds the {} that \
             fs.inotify.max_user_instances allows, or the process has no descriptor free)",
            hog.held
        ),
    );
}

#[test]
fn check_log_file_in_a_missing_directory_is_a_problem_naming_path_and_os_error() {
    let root = WebRoot::new("check-log-missing");
    let dir = root.tmp.join("no-such-dir");
    let log = dir.join("shim.log");
    root.write_site("echo:app", &log, "");
    let out = root.check(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    assert_line(
        &out,
        &format!(
            "PROBLEM           cannot open log_file {}: No such file or directory (os error 2); \
             create the directory (mkdir -p {}) or point log_file in {} at a file in a directory \
             that exists; until then the site logs to stderr only, which shared hosts often do \
             not let you read",
            log.display(),
            dir.display(),
            root.site().display()
        ),
    );
    // The rest of the check still ran.
    assert_line(&out, "GET /             200 OK");
    assert_eq!(result(&out), "result            1 problem");
    assert!(!dir.exists(), "check created {}", dir.display());
}

#[test]
fn check_import_failure_prints_python_sys_path_and_traceback_on_stdout() {
    let root = WebRoot::new("check-import");
    root.write_site("broken_import:app", &root.outside_log(), "");
    let out = root.check(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    // `check > out.txt` keeps everything: nothing goes to stderr.
    assert!(out.stderr.is_empty(), "stderr: {}", out.all_text());
    let python = line_index(&out, &format!("python            {}", python_version()));
    // The site's search_path comes first in sys.path, as the worker sets it.
    let sys_path = line_index(&out, &format!("sys.path          {}", apps_dir().display()));
    let lines = report(&out);
    assert!(
        lines[sys_path + 1].starts_with(&" ".repeat(18)),
        "sys.path has one entry only: {}",
        out.all_text()
    );
    let traceback = line_index(&out, "traceback         Traceback (most recent call last):");
    let error = line_index(
        &out,
        "                  RuntimeError: marker-import-failure",
    );
    let problem = line_index(
        &out,
        &format!(
            "PROBLEM           cannot load the app broken_import:app from {}: the app failed to \
             import (traceback above); fix it and run check again, then `touch {}` so that the \
             running site reloads",
            root.site().display(),
            root.www.join("mysite.fcgi").display()
        ),
    );
    assert!(
        python < sys_path && sys_path < traceback && traceback < error && error < problem,
        "out of order: {}",
        out.all_text()
    );
    assert_eq!(result(&out), "result            1 problem");
}

#[test]
fn check_shows_limits_debug_proxies_and_web_server_addrs() {
    let root = WebRoot::new("check-limits");
    root.write_site(
        "echo:app",
        &root.outside_log(),
        "script_name = \"/blog\"\n\
         trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
         debug = true\n\
         debug_allow = [\"203.0.113.7\"]\n\
         watch = [\"other.py\"]\n\
         pin_cpu = false\n\
         chdir = \"/tmp\"\n\
         max_requests = 7\n\
         request_timeout = 30\n\
         idle_timeout = 600\n\
         max_body = \"10M\"\n\
         max_rss = 100000000\n\
         io_timeout = 20\n\
         startup_timeout = 15\n",
    );
    let out = root.check(&[], &[("FCGI_WEB_SERVER_ADDRS", "127.0.0.1, ::1")]);
    for want in [
        "  script_name     /blog".to_owned(),
        "  trusted_proxies 127.0.0.1, 10.0.0.0/8".to_owned(),
        "  debug           true (see the warning below)".to_owned(),
        "  debug_allow     203.0.113.7".to_owned(),
        format!("  watch           {}", root.www.join("other.py").display()),
        "  pin_cpu         false".to_owned(),
        "  chdir           /tmp".to_owned(),
        "  max_requests    7 (then the worker is recycled)".to_owned(),
        "  request_timeout 30 s".to_owned(),
        "  idle_timeout    600 s".to_owned(),
        "  max_body        10485760 bytes (10 MiB)".to_owned(),
        "  max_rss         100000000 bytes".to_owned(),
        "  io_timeout      20 s".to_owned(),
        "  startup_timeout 15 s".to_owned(),
        "FCGI_WEB_SERVER_ADDRS 127.0.0.1, ::1 (in this shell: TCP peers not listed are refused; \
         unix-socket peers are always served)"
            .to_owned(),
    ] {
        assert_line(&out, &want);
    }
    // debug = true is the one warning, and it is counted.
    assert_ok(
        &out,
        &[format!(
            "warning           {} sets debug = true: 500 pages show the app's tracebacks (its \
             code, paths and settings) to clients from 203.0.113.7; set debug = false when you \
             are done",
            root.site().display()
        )],
        "OK (1 warning)",
    );
}

#[test]
fn check_search_path_entry_that_is_not_a_directory_is_a_counted_warning() {
    let root = WebRoot::new("check-search-path");
    let missing = root.tmp.join("no-such-project");
    root.write_site("echo:app", &root.outside_log(), "");
    // A second entry that does not exist, before the one the app is in.
    root.prepend_search_path(&missing);
    let out = root.check(&[], &[]);
    assert_ok(
        &out,
        &[format!(
            "warning           search_path entry {} in {} is not a directory: nothing can be \
             imported from it; fix the path or remove it",
            missing.display(),
            root.site().display()
        )],
        "OK (1 warning)",
    );
}

/// The warning for a site.toml in the web root that nothing denies.
fn site_toml_exposed(root: &WebRoot) -> String {
    format!(
        "warning           {} is inside the web root {} and no .htaccess rule denies it: \
         visitors can download it, secrets in [env] included; deny it in .htaccess with a \
         <FilesMatch \"\\.(toml|log|pid)$\"> block holding `Require all denied` (Apache 2.4) or \
         `Deny from all` (2.2), as the project's htaccess/auto.htaccess does",
        root.site().display(),
        root.www.display()
    )
}

#[test]
fn check_htaccess_that_names_site_toml_only_in_a_comment_warns() {
    let root = WebRoot::echo("check-ht-comment");
    // The old check passed this: ".toml" is in the text.
    fs::write(
        root.www.join(".htaccess"),
        "AddHandler fcgid-script .fcgi\n\
         # TODO: deny site.toml with <Files site.toml> Require all denied </Files>\n\
         <Files site.toml>\n\
         # Require all denied\n\
         </Files>\n",
    )
    .expect("write .htaccess");
    let out = root.check(&[], &[]);
    assert_ok(&out, &[site_toml_exposed(&root)], "OK (1 warning)");
}

#[test]
fn check_recognises_apache_24_and_22_deny_rules_for_site_toml() {
    let root = WebRoot::echo("check-ht-deny");
    for htaccess in [
        // Apache 2.4.
        "<Files \"site.toml\">\n    Require all denied\n</Files>\n",
        "<files site.toml>\nrequire all denied\n</files>\n",
        "<FilesMatch '\\.toml$'>\nRequire all denied\n</FilesMatch>\n",
        // Apache 2.2.
        "<Files site.toml>\n    Order allow,deny\n    Deny from all\n</Files>\n",
        "<FilesMatch \"\\.(toml|log)$\">\nOrder Allow,Deny\nDENY FROM ALL\n</FilesMatch>\n",
    ] {
        fs::write(root.www.join(".htaccess"), htaccess).expect("write .htaccess");
        let out = root.check(&[], &[]);
        assert!(out.status.success(), "{htaccess}\n{}", out.all_text());
        assert_eq!(
            warnings(&out),
            Vec::<String>::new(),
            "with .htaccess:\n{htaccess}\n{}",
            out.all_text()
        );
        assert_eq!(result(&out), "result            OK", "{htaccess}");
    }
}

#[test]
fn check_log_file_in_the_web_root_without_a_deny_rule_warns() {
    let root = WebRoot::new("check-ht-log");
    let log = root.www.join("shim.log");
    root.write_site("echo:app", &log, "");
    // site.toml is denied, the log is not.
    fs::write(
        root.www.join(".htaccess"),
        "<FilesMatch \"\\.toml$\">\nRequire all denied\n</FilesMatch>\n",
    )
    .expect("write .htaccess");
    let out = root.check(&[], &[]);
    assert_ok(
        &out,
        &[format!(
            "warning           log file {} is inside the web root {} and no .htaccess rule \
             denies it: visitors can download it, tracebacks included; move it out (log_file = \
             \"../logs/mysite.log\") or deny it in .htaccess with a <FilesMatch \
             \"\\.(toml|log|pid)$\"> block holding `Require all denied` (Apache 2.4) or `Deny \
             from all` (2.2), as the project's htaccess/auto.htaccess does",
            log.display(),
            root.www.display()
        )],
        "OK (1 warning)",
    );

    // Denied by the shipped .htaccess ...
    let shipped = shipped_htaccess("auto.htaccess");
    fs::copy(&shipped, root.www.join(".htaccess")).expect("copy auto.htaccess");
    let out = root.check(&[], &[]);
    assert_ok(&out, &[], "OK");
    // ... or, in a folder of its own, by that folder's .htaccess.
    let logs = root.www.join("logs");
    fs::create_dir_all(&logs).expect("logs");
    fs::write(logs.join(".htaccess"), "Require all denied\n").expect("logs/.htaccess");
    // (Named .txt: the shipped .htaccess in the root denies *.log itself.)
    root.write_site("echo:app", &logs.join("site.txt"), "");
    let out = root.check(&[], &[]);
    assert_ok(&out, &[], "OK");
}

#[test]
fn check_django_project_or_search_path_in_the_web_root_warns() {
    let root = WebRoot::new("check-django");
    let project = root.www.join("myproject");
    fs::create_dir_all(project.join("myproject")).expect("project");
    fs::write(project.join("manage.py"), "").expect("manage.py");
    fs::write(project.join("myproject/settings.py"), "SECRET_KEY = 'x'\n").expect("settings");
    let lib = root.www.join("lib");
    fs::create_dir_all(&lib).expect("lib");
    root.write_site("echo:app", &root.outside_log(), "");
    root.prepend_search_path(&lib);
    // The shipped .htaccess refuses settings.py and db.sqlite3 (and every
    // other *.py and database) where they exist: nothing to warn about.
    let out = root.check(&[], &[]);
    assert_ok(&out, &[], "OK");
    // A .htaccess that only keeps site.toml and the logs private leaves
    // both folders' code downloadable.
    fs::write(
        root.www.join(".htaccess"),
        "<FilesMatch \"\\.(toml|log|pid)$\">\nRequire all denied\n</FilesMatch>\n",
    )
    .expect("write .htaccess");
    let out = root.check(&[], &[]);
    let tail = format!(
        " is inside the web root {}: Apache serves its files to anyone who asks, settings.py \
         (SECRET_KEY, database passwords) and db.sqlite3 included, unless a .htaccess denies \
         them; move the project out of public_html (beside it, e.g. ~/myproject) and point \
         search_path at the new place",
        root.www.display()
    );
    assert_ok(
        &out,
        &[
            format!(
                "warning           search_path entry {}{tail}",
                lib.display()
            ),
            format!(
                "warning           Django project {} (manage.py){tail}",
                project.display()
            ),
        ],
        "OK (2 warnings)",
    );
}

#[test]
fn check_writes_nothing_to_the_log_file() {
    use std::os::unix::fs::PermissionsExt;
    let root = WebRoot::new("check-no-log");
    let log = root.outside_log();
    fs::write(&log, "before\n").expect("log");
    fs::set_permissions(&log, fs::Permissions::from_mode(0o600)).expect("chmod");
    // A failing request: what it logs goes to the report, not the log.
    root.write_site("echo:app", &log, "");
    let out = root.check(&["/raise"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    assert!(
        report(&out)
            .iter()
            .any(|l| l.ends_with("RuntimeError: marker-raise-before-start-response")),
        "traceback not on stdout: {}",
        out.all_text()
    );
    // An app that does not import: "answering 500 until ..." is for a
    // serving shim, not for check.
    root.write_site("broken_import:app", &log, "");
    let out = root.check(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    assert_eq!(fs::read_to_string(&log).expect("log"), "before\n");
    // A log that does not exist yet is not created either.
    let fresh = log.with_file_name("fresh.log");
    root.write_site("echo:app", &fresh, "");
    let out = root.check(&[], &[]);
    assert!(out.status.success(), "{}", out.all_text());
    assert!(!fresh.exists(), "check created {}", fresh.display());
}

#[test]
fn check_world_readable_site_toml_and_log_are_counted_warnings() {
    use std::os::unix::fs::PermissionsExt;
    let root = WebRoot::new("check-perms");
    let log = root.outside_log();
    root.write_site("echo:app", &log, "");
    fs::write(&log, "").expect("log");
    for file in [root.site(), log.clone()] {
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let out = root.check(&[], &[]);
    assert_ok(
        &out,
        &[
            format!(
                "warning           {} is readable by every user on the host; chmod 600 (or 640) it",
                root.site().display()
            ),
            format!(
                "warning           log file {} is readable by every user on the host; chmod 600 it",
                log.display()
            ),
        ],
        "OK (2 warnings)",
    );
}

#[test]
fn check_tells_the_mode_from_the_handlers_the_htaccess_names() {
    let root = WebRoot::echo("check-mode");
    let shipped =
        |name: &str| fs::read_to_string(shipped_htaccess(name)).expect("shipped .htaccess");
    let rows = [
        (
            shipped("fcgid.htaccess"),
            "FastCGI via mod_fcgid (from .htaccess)",
        ),
        // "fastcgi-script" holds "cgi-script": one handler, one mode.
        (
            shipped("fastcgi.htaccess"),
            "FastCGI via mod_fastcgi (from .htaccess)",
        ),
        (
            shipped("cgi.htaccess"),
            "plain CGI via mod_cgi (from .htaccess)",
        ),
        (
            shipped("auto.htaccess"),
            "the first of these the server has: FastCGI via mod_fcgid, then FastCGI via \
             mod_fastcgi, then plain CGI via mod_cgi (from .htaccess)",
        ),
        // A handler for other extensions, and one in a comment, do not count.
        (
            "# AddHandler fcgid-script .fcgi\nAddHandler cgi-script .cgi .pl\n".to_owned(),
            ".htaccess names no handler for mysite.fcgi: the server's defaults decide",
        ),
        (
            "<Files mysite.fcgi>\n  SetHandler fcgid-script\n</Files>\n".to_owned(),
            "FastCGI via mod_fcgid (from .htaccess)",
        ),
        // A later AddHandler for .fcgi replaces the earlier one.
        (
            "AddHandler fcgid-script .fcgi\nAddHandler cgi-script .fcgi\n".to_owned(),
            "plain CGI via mod_cgi (from .htaccess)",
        ),
        // A quoted name; a SetHandler for other files.
        (
            "AddHandler \"fcgid-script\" .fcgi\n<Files admin.fcgi>\n  SetHandler cgi-script\n\
             </Files>\n"
                .to_owned(),
            "FastCGI via mod_fcgid (from .htaccess)",
        ),
        (
            format!("{}RemoveHandler .fcgi\n", shipped("fcgid.htaccess")),
            ".htaccess names no handler for mysite.fcgi: the server's defaults decide",
        ),
    ];
    for (htaccess, mode) in rows {
        fs::write(root.www.join(".htaccess"), &htaccess).expect("write .htaccess");
        let out = root.check(&[], &[]);
        assert_line(&out, &format!("mode              {mode}"));
    }
}

#[test]
fn check_on_a_python_older_than_3_8_names_it_and_the_version_needed() {
    use std::os::unix::fs::PermissionsExt;
    let root = WebRoot::new("check-old-python");
    // A python3 that says it is 3.6: sitecustomize runs before any -c code.
    let fake = root.tmp.join("py36");
    fs::create_dir_all(&fake).expect("py36");
    fs::write(
        fake.join("sitecustomize.py"),
        "import sys\nsys.version_info = (3, 6, 15, 'final', 0)\nsys.version = '3.6.15 (fake)'\n",
    )
    .expect("sitecustomize.py");
    let python = fake.join("python3");
    let script = format!(
        "#!/bin/sh\nPYTHONPATH={} exec python3 \"$@\"\n",
        fake.display()
    );
    fs::write(&python, script).expect("python3");
    fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).expect("chmod");
    root.write_site("echo:app", &root.outside_log(), "");
    let text = fs::read_to_string(root.site()).expect("site.toml");
    let text = text.replacen(
        "python = \"python3\"",
        &format!("python = {}", toml_str(&python.to_string_lossy())),
        1,
    );
    fs::write(root.site(), text).expect("write site.toml");
    let out = root.check(&[], &[]);
    assert!(!out.status.success(), "{}", out.all_text());
    // sys.executable is the real interpreter the wrapper runs.
    let said = report(&out).into_iter().any(|l| {
        l.starts_with("log ")
            && l.contains(": fcgi-shim: Python 3.6.15 (/")
            && l.ends_with(
                ") is too old: fcgi-shim needs Python 3.8 or later; set python in site.toml \
                 to a newer one",
            )
    });
    assert!(said, "{}", out.all_text());
    assert_eq!(result(&out), "result            1 problem");
}

#[test]
fn check_warns_when_the_web_servers_path_gives_another_python() {
    let root = WebRoot::echo("check-path-python");
    // python = "python3" (bare), found first in a folder of this shell's
    // PATH that a web server's PATH does not have: as a virtualenv's bin.
    let bin = root.tmp.join("venv-bin");
    fs::create_dir_all(&bin).expect("bin");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v python3"])
            .env("PATH", SERVER_PATH)
            .output()
            .expect("command -v")
            .stdout,
    )
    .expect("utf-8");
    let real = real.trim();
    std::os::unix::fs::symlink(real, bin.join("python3")).expect("symlink");
    let path = format!("{}:{SERVER_PATH}", bin.display());
    let here = bin.join("python3");
    let out = root.check(&[], &[("PATH", &path)]);
    assert_ok(
        &out,
        &[format!(
            "warning           python3 is {} on this shell's PATH, but a web server's PATH \
             (/usr/local/bin:/usr/bin:/bin) gives {real}: the site may run another Python than \
             this check (an activated virtualenv or pyenv is not seen by the web server); set \
             python = \"{}\" in {}",
            here.display(),
            here.display(),
            root.site().display()
        )],
        "OK (1 warning)",
    );
    // The web server's own PATH (server_env's): the same python3, no warning.
    let out = root.check(&[], &[]);
    assert_ok(&out, &[], "OK");
}

#[test]
fn check_warns_of_a_max_rss_without_its_unit() {
    let root = WebRoot::new("check-max-rss");
    root.write_site("echo:app", &root.outside_log(), "max_rss = 512\n");
    let out = root.check(&[], &[]);
    assert_ok(
        &out,
        &[format!(
            "warning           max_rss = 512 bytes in {} is less than any Python process takes \
             (10 MiB and more): the worker would be replaced after every request; give a size \
             with its unit, e.g. \"256M\"",
            root.site().display()
        )],
        "OK (1 warning)",
    );
}

#[test]
fn check_warns_of_a_site_toml_key_written_below_env() {
    let root = WebRoot::new("check-key-in-env");
    root.write_site(
        "echo:app",
        &root.outside_log(),
        "[env]\nLANG = \"C.UTF-8\"\ndebug = true\n",
    );
    let out = root.check(&[], &[]);
    assert_line(
        &out,
        "  debug           false (tracebacks go to the log, never to a browser)",
    );
    assert_ok(
        &out,
        &[format!(
            "warning           env.debug in {}: `debug` is a site.toml key, but every line after \
             [env] belongs to [env], so it only sets an environment variable; move the line above \
             [env]",
            root.site().display()
        )],
        "OK (1 warning)",
    );
}

#[test]
fn check_warns_of_modes_with_which_apache_will_not_run_the_site() {
    use std::os::unix::fs::PermissionsExt;
    let root = WebRoot::echo("check-modes");
    let chmod = |p: &Path, mode: u32| {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod")
    };
    // A copy of its own: install_binary hard-links the one binary of the
    // build, whose mode every other test shares.
    let exe = root.www.join("mysite.fcgi");
    fs::remove_file(&exe).expect("rm");
    fs::copy(BIN, &exe).expect("copy the binary");
    let htaccess = root.www.join(".htaccess");
    chmod(&exe, 0o777);
    chmod(&root.www, 0o775);
    chmod(&htaccess, 0o600);
    let out = root.check(&[], &[]);
    chmod(&root.www, 0o755);
    let suexec = |what: &str, p: &Path, mode: &str| {
        format!(
            "warning           {what} {} has mode {mode}: group or others may write it, and \
             where the host runs programs through suEXEC (most shared hosts do) it refuses such \
             a one (Apache answers 500, suexec.log says \"writable by others\"); chmod 755 {}",
            p.display(),
            p.display()
        )
    };
    assert_ok(
        &out,
        &[
            suexec("the executable", &exe, "777"),
            suexec("its folder", &root.www, "775"),
            format!(
                "warning           {} has mode 600: Apache reads it as its own user (www-data on \
                 Debian), not as you, and answers every request in this folder with 403 when it \
                 cannot; chmod 644 {}",
                htaccess.display(),
                htaccess.display()
            ),
        ],
        "OK (3 warnings)",
    );
    // No handler of Apache's runs it (lighttpd, nginx): no suEXEC warning;
    // a .htaccess its group may read (640 root:www-data) is readable.
    chmod(&exe, 0o775);
    chmod(&htaccess, 0o640);
    fs::write(
        &htaccess,
        "<Files site.toml>\nRequire all denied\n</Files>\n",
    )
    .expect("write");
    let out = root.check(&[], &[]);
    assert_ok(&out, &[], "OK");
    let auto = shipped_htaccess("auto.htaccess");
    fs::copy(auto, &htaccess).expect("auto.htaccess");
    // A log_file that is a folder is a problem, not a file to chmod 600.
    let logs = root.tmp.join("logs");
    chmod(&exe, 0o755);
    chmod(&htaccess, 0o644);
    root.write_site("echo:app", &logs, "");
    let out = root.check(&[], &[]);
    assert!(
        !out.all_text().contains("chmod 600 it"),
        "{}",
        out.all_text()
    );
    assert_line(
        &out,
        &format!(
            "PROBLEM           cannot open log_file {}: Is a directory (os error 21); point \
             log_file in {} at a file you can write; until then the site logs to stderr only, \
             which shared hosts often do not let you read",
            logs.display(),
            root.site().display()
        ),
    );
    assert_eq!(warnings(&out), Vec::<String>::new(), "{}", out.all_text());
    assert_eq!(
        result(&out),
        "result            1 problem",
        "{}",
        out.all_text()
    );
}

#[test]
fn check_warns_when_the_htaccess_rewrites_to_another_fcgi_file() {
    let root = WebRoot::echo("check-renamed");
    // The shipped .htaccess (it says mysite.fcgi) beside a binary renamed.
    let app = root.www.join("app.fcgi");
    fs::rename(root.www.join("mysite.fcgi"), &app).expect("rename");
    let out = check_with(&app, &[], &[]);
    assert_ok(
        &out,
        &[format!(
            "warning           {} rewrites requests to mysite.fcgi, but this executable is \
             app.fcgi: every page would ask for a file that is not there; write app.fcgi for \
             mysite.fcgi in it (and app\\.fcgi for mysite\\.fcgi), or rename this file",
            root.www.join(".htaccess").display()
        )],
        "OK (1 warning)",
    );
}

#[test]
fn check_path_with_a_query_string_reaches_the_app_as_a_web_server_sends_it() {
    let root = WebRoot::echo("check-query");
    let out = root.check(&["/caf%C3%A9/environ?q=x&y=2"], &[]);
    for want in [
        "GET /caf%C3%A9/environ?q=x&y=2 200 OK",
        "                  PATH_INFO=/café/environ",
        "                  QUERY_STRING=q=x&y=2",
        "                  REQUEST_URI=/caf%C3%A9/environ?q=x&y=2",
    ] {
        assert_line(&out, want);
    }
}

#[test]
fn check_warns_of_htaccess_lines_that_stop_every_page() {
    let root = WebRoot::echo("check-stoppers");
    let htaccess = root.www.join(".htaccess");
    let auto = fs::read_to_string(&htaccess).expect("auto.htaccess");
    let ht = htaccess.display().to_string();
    let rows = [
        (
            format!("{auto}Require all denied\n"),
            format!(
                "warning           {ht} denies every request to this folder (`Require all \
                 denied` or `Deny from all` outside any block): every page answers 403; put the \
                 rule inside a <Files> or <FilesMatch> block for the files to refuse"
            ),
        ),
        (
            format!("{auto}Options -ExecCGI\n"),
            format!(
                "warning           {ht} turns ExecCGI off: Apache will not run mysite.fcgi (403, \
                 \"Options ExecCGI is off in this directory\"); write Options +ExecCGI"
            ),
        ),
        (
            // The seed's rule, written for the server config.
            "AddHandler fcgid-script .fcgi\nRewriteEngine On\nRewriteCond %{REQUEST_FILENAME} \
             !-f\nRewriteRule ^/(.*)$ /mysite.fcgi/$1 [QSA,L]\n<Files site.toml>\nRequire all \
             denied\n</Files>\n"
                .to_owned(),
            format!(
                "warning           {ht}: RewriteRule ^/(.*)$ never matches: in a .htaccess the \
                 path a rule sees has no leading / (the seed's rule was for the server config); \
                 write ^(.*)$ as htaccess/auto.htaccess does"
            ),
        ),
    ];
    for (text, warning) in rows {
        fs::write(&htaccess, &text).expect("write .htaccess");
        let out = root.check(&[], &[]);
        assert_ok(&out, &[warning], "OK (1 warning)");
    }
}

#[test]
fn check_warns_when_djangos_debug_is_true() {
    let root = WebRoot::new("check-django-debug");
    // A stand-in for Django: django.conf.settings, configured, DEBUG on.
    let lib = root.tmp.join("lib");
    fs::create_dir_all(lib.join("django")).expect("lib");
    fs::write(lib.join("django/__init__.py"), "").expect("django");
    fs::write(
        lib.join("django/conf.py"),
        "class _Settings:\n    configured = True\n    DEBUG = True\nsettings = _Settings()\n",
    )
    .expect("conf");
    fs::write(
        lib.join("djapp.py"),
        "import django.conf\n\ndef application(environ, start_response):\n    \
         start_response('200 OK', [])\n    return [b'ok']\n",
    )
    .expect("djapp");
    root.write_site("djapp:application", &root.outside_log(), "");
    root.prepend_search_path(&lib);
    let out = root.check(&[], &[]);
    assert_ok(
        &out,
        &[
            "warning           Django's DEBUG is True: its error pages show every visitor the \
           site's code, settings and paths; set DEBUG = False, with the site's names in \
           ALLOWED_HOSTS (check --host=NAME tries one)"
                .to_owned(),
        ],
        "OK (1 warning)",
    );
    // DEBUG off: no warning.
    let conf = fs::read_to_string(lib.join("django/conf.py")).expect("conf");
    fs::write(
        lib.join("django/conf.py"),
        conf.replace("DEBUG = True", "DEBUG = False"),
    )
    .expect("conf");
    let out = root.check(&[], &[]);
    assert_ok(&out, &[], "OK");
}

#[test]
fn check_warns_when_env_overrides_settings_module_and_names_fcgi_shim_site() {
    let root = WebRoot::new("check-dsm");
    // settings_module for a module that is not there: the import fails,
    // but the warning comes first, from site.toml alone.
    root.write_site(
        "echo:app",
        &root.outside_log(),
        "[env]\nDJANGO_SETTINGS_MODULE = \"other.settings\"\n",
    );
    let text = fs::read_to_string(root.site()).expect("site.toml");
    fs::write(
        root.site(),
        text.replacen(
            "wsgi_app = \"echo:app\"",
            "settings_module = \"mysite.settings\"",
            1,
        ),
    )
    .expect("write");
    let out = root.check(&[], &[("FCGI_SHIM_SITE", &root.site().to_string_lossy())]);
    assert_line(
        &out,
        &format!(
            "site.toml         {} (from FCGI_SHIM_SITE)",
            root.site().display()
        ),
    );
    assert_eq!(
        warnings(&out),
        [format!(
            "warning           env.DJANGO_SETTINGS_MODULE = \"other.settings\" in {} overrides \
             settings_module = \"mysite.settings\": the app gets other.settings; keep one of the two",
            root.site().display()
        )],
        "{}",
        out.all_text()
    );
    // The import fails: there is no such module (as the comment above says).
    assert_eq!(
        result(&out),
        "result            1 problem",
        "{}",
        out.all_text()
    );
}

#[test]
fn check_does_not_count_deny_rules_that_apache_24_skips() {
    let root = WebRoot::echo("check-ht-skipped");
    for htaccess in [
        // Apache 2.4 has mod_authz_core: the block is skipped.
        "AddHandler fcgid-script .fcgi\n<IfModule !mod_authz_core.c>\n<Files site.toml>\nRequire all \
         denied\n</Files>\n</IfModule>\n",
        // 2.4 renamed mod_access (mod_access_compat): the block is skipped.
        "AddHandler fcgid-script .fcgi\n<IfModule mod_access.c>\n<Files site.toml>\nDeny from all\n\
         </Files>\n</IfModule>\n",
        "AddHandler fcgid-script .fcgi\n<IfVersion < 2.4>\n<Files site.toml>\nDeny from all\n\
         </Files>\n</IfVersion>\n",
    ] {
        fs::write(root.www.join(".htaccess"), htaccess).expect("write .htaccess");
        let out = root.check(&[], &[]);
        assert_ok(&out, &[site_toml_exposed(&root)], "OK (1 warning)");
    }
}

#[test]
fn check_reads_the_handler_of_the_folder_above_for_a_site_in_a_subfolder() {
    let root = WebRoot::new("check-mode-above");
    let fcgid = shipped_htaccess("fcgid.htaccess");
    fs::copy(fcgid, root.www.join(".htaccess")).expect("fcgid.htaccess");
    let blog = root.www.join("blog");
    fs::create_dir_all(&blog).expect("blog");
    fs::copy(BIN, blog.join("mysite.fcgi")).expect("copy the binary");
    fs::write(
        blog.join("site.toml"),
        format!(
            "search_path = [{}]\nwsgi_app = \"echo:app\"\n",
            toml_str(&apps_dir().to_string_lossy())
        ),
    )
    .expect("site.toml");
    let exe = blog.join("mysite.fcgi");
    let out = check_with(&exe, &[], &[]);
    assert_line(
        &out,
        "mode              FastCGI via mod_fcgid (from .htaccess)",
    );
    // Its own .htaccess comes after the one above: its AddHandler wins.
    fs::write(blog.join(".htaccess"), "AddHandler cgi-script .fcgi\n").expect("own .htaccess");
    let out = check_with(&exe, &[], &[]);
    assert_line(
        &out,
        "mode              plain CGI via mod_cgi (from .htaccess)",
    );
}

#[test]
fn check_hides_env_values_that_look_secret_and_a_urls_password() {
    let root = WebRoot::new("check-secrets");
    root.write_site(
        "echo:app",
        &root.outside_log(),
        "[env]\nSECRET_KEY = \"s3cr3t-value\"\nDATABASE_URL = \"postgres://bob:hunter2@db/x\"\nLANG = \"C.UTF-8\"\n",
    );
    let out = root.check(&[], &[]);
    assert_line(&out, "  env.SECRET_KEY  (hidden)");
    assert_line(&out, "  env.DATABASE_URL postgres://bob:(hidden)@db/x");
    assert_line(&out, "  env.LANG        C.UTF-8");
    let text = out.all_text();
    assert!(
        !text.contains("s3cr3t-value") && !text.contains("hunter2"),
        "{text}"
    );
}
