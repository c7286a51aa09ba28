//! fcgi-shim: one static binary that runs a Python WSGI site under FastCGI
//! or CGI, from a shared host's web root.
//!
//! ```text
//!  web server                    fcgi-shim                          Python worker
//!  ----------                    ---------                          -------------
//!  FastCGI on fd 0 --records--> record.rs -> fastcgi.rs --+
//!                                                         +-> app.rs -> bridge.rs ==frames==> worker.py
//!  CGI env + stdin  ----------> cgi.rs -------------------+   environ.rs   frame.rs   (pipes)  (the app)
//!
//!  beside the path: config.rs (site.toml), log.rs, signals.rs, worker.rs (the child
//!  process), affinity.rs (the shim and its worker on one CPU), watch.rs (inotify:
//!  when the reload check must stat), sys.rs (syscalls),
//!  cli.rs (help, check), init.rs (init),
//!  runfcgi.rs (the seed's external FastCGI server: prefork over fastcgi.rs,
//!  threaded.rs for method=threaded)
//! ```
//!
//! The mode is decided at start with no flags (FIELD_NOTES, "Telling FastCGI
//! from CGI from a shell"): a listening socket on fd 0 is FastCGI; else a
//! CGI environment is CGI; else a person at a shell.
//!
//! The modules are a library so that the codecs can be fuzzed and tested
//! on their own; `main.rs` only picks the mode.

pub mod affinity;
pub mod app;
pub mod bridge;
pub mod cgi;
pub mod cli;
pub mod config;
pub mod environ;
pub mod fastcgi;
pub mod frame;
pub mod htaccess;
pub mod init;
pub mod log;
pub mod record;
pub mod runfcgi;
pub mod signals;
pub mod sys;
pub mod threaded;
pub mod watch;
pub mod worker;
