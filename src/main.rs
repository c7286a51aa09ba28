//! The `fcgi-shim` executable: picks the mode and hands over to the library
//! (`lib.rs` has the map of the whole).

use fcgi_shim::{app, cgi, cli, config, fastcgi, log, signals, sys};
use std::path::{Path, PathBuf};

enum Mode {
    FastCgi,
    Cgi,
    Shell,
}

fn detect() -> Mode {
    if sys::is_listening_socket(0) {
        Mode::FastCgi
    } else if std::env::var_os("GATEWAY_INTERFACE").is_some()
        || std::env::var_os("REQUEST_METHOD").is_some()
    {
        Mode::Cgi
    } else {
        Mode::Shell
    }
}

/// Opens /dev/null on any of fds 0-2 that is closed, so that no file we
/// open later can land there and be mistaken for stdio.
fn ensure_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD has no memory effects.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            // SAFETY: the path is a valid C string; open returns the lowest
            // free descriptor, which is `fd`.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// The executable as invoked: argv[0] made absolute (looked up on PATH when
/// it has no slash), without resolving symlinks, so that a shared binary
/// symlinked into a web root finds that web root's site.toml.
fn script_from_argv0() -> PathBuf {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let p = Path::new(&argv0);
    if argv0.as_encoded_bytes().contains(&b'/') {
        return config::absolute(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file());
    config::absolute(found.as_deref().unwrap_or(p))
}

fn run() -> i32 {
    let mode = detect();
    ensure_stdio();
    match mode {
        Mode::FastCgi => {
            if let Err(e) = signals::install() {
                fcgi_shim::error!("cannot install signal handlers: {e}");
                return 1;
            }
            log::enable_syslog();
            let inherited = fastcgi::inherited_conn();
            let script = script_from_argv0();
            let mut app = app::App::new(script, false);
            if inherited.is_none() {
                fcgi_shim::info!(
                    "serving FastCGI on fd 0 for {} (site {})",
                    app.script.display(),
                    app.site_file.display()
                );
            }
            fastcgi::serve(&mut app, 0, inherited)
        }
        Mode::Cgi => {
            if let Err(e) = signals::install() {
                fcgi_shim::error!("cannot install signal handlers: {e}");
            }
            log::enable_syslog();
            let script = std::env::var_os("SCRIPT_FILENAME")
                .filter(|s| !s.is_empty())
                .map(|s| config::absolute(Path::new(&s)))
                .unwrap_or_else(script_from_argv0);
            let mut app = app::App::new(script, true);
            cgi::serve(&mut app)
        }
        Mode::Shell => {
            let _ = signals::install(); // best effort: check still works without
            let args: Vec<String> = std::env::args().skip(1).collect();
            let prog = std::env::args()
                .next()
                .unwrap_or_else(|| "mysite.fcgi".into());
            cli::main(&prog, script_from_argv0(), &args)
        }
    }
}

fn main() {
    std::process::exit(run());
}
