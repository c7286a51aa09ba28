//! The shim run as plain CGI: request in the environment and on stdin,
//! response on stdout, one process per request.

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HELLO: &str =
    "Status: 200 OK\r\nContent-Type: text/plain\r\nX-Test: a b\r\n\r\nhello world\n";

/// A deployed site: `<dir>/site.toml` and `<dir>/mysite.fcgi` (the binary).
fn deploy(tag: &str, app: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    write_site(dir.path(), app);
    let script = install_binary(dir.path());
    (dir, script)
}

/// Runs `program` the way Apache's mod_cgi does: the request's params as
/// the environment (plus PATH), the body on stdin, cwd the script's dir.
fn cgi(program: &Path, req: &Req, extra: &[(&str, &OsStr)], args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    server_env(&mut cmd).args(args);
    cmd.current_dir(program.parent().expect("script dir"));
    for (k, v) in &req.params {
        cmd.env(OsStr::from_bytes(k), OsStr::from_bytes(v));
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    run(&mut cmd, Some(&req.body), Duration::from_secs(10))
}

fn cgi_req(script: &Path, req: Req) -> Req {
    req.param("SCRIPT_FILENAME", script.as_os_str().as_bytes())
}

fn response(out: &Output) -> Response {
    Response::from_cgi(out.stdout.clone())
}

#[test]
fn cgi_get_prints_a_cgi_response_and_ignores_argv() {
    let (_dir, script) = deploy("cgi-get", "echo:app");
    // Apache passes a query string without '=' as argv (CVE-2012-1823):
    // "help" must not reach the command line parser.
    let req = cgi_req(&script, Req::get("hello").param("QUERY_STRING", "help"));
    let out = cgi(&script, &req, &[], &["help"]);
    assert_eq!(
        out.stdout_text(),
        HELLO,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn cgi_environ_has_run_once_true() {
    let (_dir, script) = deploy("cgi-environ", "echo:app");
    let out = cgi(&script, &cgi_req(&script, Req::get("environ")), &[], &[]);
    let r = response(&out);
    assert_eq!(
        r.env_str("wsgi.run_once").as_deref(),
        Some("True"),
        "{}",
        out.all_text()
    );
    assert_eq!(r.env_str("wsgi.multithread").as_deref(), Some("False"));
    assert_eq!(r.env_str("wsgi.url_scheme").as_deref(), Some("http"));
    assert_eq!(r.env_str("REQUEST_METHOD").as_deref(), Some("GET"));
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn cgi_post_body_is_echoed_and_argv_ignored() {
    let (_dir, script) = deploy("cgi-post", "echo:app");
    let body = noise(200_000, 77);
    let req = cgi_req(&script, Req::post("echo", &body));
    let out = cgi(&script, &req, &[], &["--version"]);
    let r = response(&out);
    assert_eq!(r.status(), 200, "{}", out.all_text());
    assert_eq!(r.header("Content-Length"), Some(body.len().to_string()));
    assert!(
        r.body() == &body[..],
        "body differs: {} bytes, checksum {:016x}, sent {:016x}",
        r.body().len(),
        checksum(r.body()),
        checksum(&body)
    );
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn cgi_httpoxy_http_proxy_is_not_passed_to_the_app() {
    let (_dir, script) = deploy("cgi-httpoxy", "echo:app");
    // Under CGI the header really is in the process environment.
    let req = cgi_req(
        &script,
        Req::get("environ")
            .param("HTTP_PROXY", "http://evil.test:3128")
            .param("HTTP_X_KEPT", "yes"),
    );
    let out = cgi(&script, &req, &[], &[]);
    let r = response(&out);
    assert_eq!(
        r.env_str("HTTP_X_KEPT").as_deref(),
        Some("yes"),
        "{}",
        out.all_text()
    );
    assert_eq!(r.env_str("HTTP_PROXY"), None, "HTTP_PROXY in environ");
    assert_eq!(
        r.env_str("os.environ.HTTP_PROXY"),
        None,
        "HTTP_PROXY in os.environ"
    );
}

#[test]
fn cgi_app_printing_to_stdout_does_not_corrupt_the_response() {
    let (_dir, script) = deploy("cgi-print", "echo:app");
    let out = cgi(&script, &cgi_req(&script, Req::get("print")), &[], &[]);
    assert_eq!(
        out.stdout_text(),
        "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nprinted\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cgi_import_error_answers_500_without_traceback() {
    let (dir, script) = deploy("cgi-import-error", "broken_import:app");
    let out = cgi(&script, &cgi_req(&script, Req::get("hello")), &[], &[]);
    let r = response(&out);
    assert_eq!(r.status(), 500, "{}", out.all_text());
    for leak in ["Traceback", "marker-import-failure", "broken_import"] {
        assert!(
            !out.stdout_text().contains(leak),
            "{leak:?} shown to the visitor: {}",
            r.text()
        );
    }
    let log = wait_for_file(&dir.join("shim.log"), Duration::from_secs(2), |l| {
        l.contains("marker-import-failure")
    });
    assert!(
        log.contains("Traceback (most recent call last)"),
        "log: {log:?}"
    );
}

#[test]
fn cgi_finds_site_toml_through_fcgi_shim_site() {
    let dir = TempDir::new("cgi-env-site");
    let site = write_site(dir.path(), "echo:app");
    // The script's own directory has no site.toml: only the variable helps.
    let elsewhere = dir.join("public_html");
    fs::create_dir(&elsewhere).expect("mkdir");
    let script = install_binary(&elsewhere);
    let req = cgi_req(&script, Req::get("hello"));
    let out = cgi(&script, &req, &[("FCGI_SHIM_SITE", site.as_os_str())], &[]);
    assert_eq!(
        out.stdout_text(),
        HELLO,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{:?}", out.status);
}

/// The code cache's directory under `tmp` (worker.rs code_cache).
fn cache_dir(tmp: &Path) -> PathBuf {
    // SAFETY: getuid has no memory effects and cannot fail.
    tmp.join(format!("fcgi-shim-{}", unsafe { libc::getuid() }))
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_compiled_worker_is_kept_in_a_private_directory_and_a_corrupt_copy_is_replaced() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (dir, script) = deploy("cgi-cache", "echo:app");
    let tmp = dir.join("tmp");
    fs::create_dir(&tmp).expect("tmp");
    let env = [("TMPDIR", tmp.as_os_str())];
    let req = cgi_req(&script, Req::get("hello"));
    assert_eq!(cgi(&script, &req, &env, &[]).stdout_text(), HELLO);
    let cache = cache_dir(&tmp);
    let mode = fs::metadata(&cache)
        .expect("cache dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{}", cache.display());
    let files = cache_files(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().and_then(|n| n.to_str()).expect("name");
    assert!(name.starts_with("worker-"), "{name}");
    let meta = fs::metadata(&files[0]).expect("cached code");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(meta.len() > 10_000, "{} bytes", meta.len());

    // Corrupt, truncated, or another build's: compiled again, and replaced.
    fs::write(&files[0], b"not marshal data").expect("corrupt it");
    assert_eq!(cgi(&script, &req, &env, &[]).stdout_text(), HELLO);
    assert_eq!(cache_files(&cache), files, "one file, the same name");
    let rewritten = fs::metadata(&files[0]).expect("again");
    assert_eq!(rewritten.len(), meta.len());
    // And read again as it is, not rewritten (the loader replaces the file
    // with a rename, which gives it a new inode).
    assert_eq!(cgi(&script, &req, &env, &[]).stdout_text(), HELLO);
    let read = fs::metadata(&files[0]).expect("read again");
    assert_eq!(
        (read.ino(), read.modified().ok()),
        (rewritten.ino(), rewritten.modified().ok()),
        "the cached code was written again instead of read"
    );
}

#[test]
fn a_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, script) = deploy("cgi-cache-open", "echo:app");
    let tmp = dir.join("tmp");
    let cache = cache_dir(&tmp);
    fs::create_dir_all(&cache).expect("cache dir");
    // Made by someone else, or opened up: code from it would run as us.
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).expect("chmod");
    let log = dir.join("shim.log"); // site_toml's log_file
    let req = cgi_req(&script, Req::get("hello"));
    let out = cgi(&script, &req, &[("TMPDIR", tmp.as_os_str())], &[]);
    assert_eq!(out.stdout_text(), HELLO);
    assert_eq!(
        cache_files(&cache),
        Vec::<PathBuf>::new(),
        "nothing written there"
    );
    let text = fs::read_to_string(&log).expect("log");
    assert!(
        text.contains(&format!(
            "warning: {} is not a private directory of this user's; the python worker is \
             compiled at every start",
            cache.display()
        )),
        "{text}"
    );
}
