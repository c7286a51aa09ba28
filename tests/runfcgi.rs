//! `mysite.fcgi runfcgi`: the commands of the seed's "Starting your FastCGI
//! server" and "Stopping the FastCGI daemon" run for real, with our binary in
//! place of `manage.py`, a real python3 and a FastCGI client over unix and TCP
//! sockets.
//!
//! Each test deploys its own copy of the binary (its own inode), so that the
//! processes of one test can be told from another's through /proc/<pid>/exe.

mod common;

use common::*;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The test app: routes on the last PATH_INFO segment. `MARK` changes when a
/// test edits the file, to see a reload.
const APP: &str = r#"
import os, threading, time
MARK = "v1"
HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(HERE, "slow-import")):
    time.sleep(1.5)

def app(environ, start_response):
    route = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]
    if route == "sleep":
        time.sleep(1)
    if route in ("inflight", "inflight_long"):
        # A marker once the request runs in the app, then 1.5 s of work;
        # 2.5 s for inflight_long: longer than a new server waits for the
        # socket file to go, shorter than the stop's grace.
        name = "inflight.%d.%d" % (os.getpid(), threading.get_ident())
        open(os.path.join(HERE, name), "w").close()
        time.sleep(2.5 if route == "inflight_long" else 1.5)
    if route == "print":
        print("printed by the app")
        print("and to stderr", file=__import__("sys").stderr)
    if route == "pythonpath":
        body = os.environ.get("PYTHONPATH", "<unset>")
    elif route == "cwd":
        body = os.getcwd()
    elif route == "which":
        body = os.environ.get("WHICH", "<unset>")
    else:
        # worker pid, then its parent: the prefork child serving us
        body = "%s %d %d" % (MARK, os.getpid(), os.getppid())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"#;

/// The real interpreter behind `python3` on a web server's PATH, by
/// absolute path: the seed's restart script runs us with an empty
/// environment (no PATH).
fn python() -> String {
    let out = Command::new("python3")
        .env("PATH", SERVER_PATH)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("run python3");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[derive(Clone, Debug)]
enum Addr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// One request on a fresh connection; the shim closes it after END_REQUEST.
fn exchange(addr: &Addr, req: &Req) -> Result<Response, String> {
    fn talk(s: &mut (impl Read + Write), bytes: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(bytes)?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        Ok(got)
    }
    let bytes = request_bytes(req);
    let got = match addr {
        Addr::Unix(p) => {
            let mut s = UnixStream::connect(p).map_err(|e| format!("connect {p:?}: {e}"))?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            talk(&mut s, &bytes)
        }
        Addr::Tcp(a) => {
            let mut s = TcpStream::connect_timeout(a, Duration::from_secs(5))
                .map_err(|e| format!("connect {a}: {e}"))?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            talk(&mut s, &bytes)
        }
    }
    .map_err(|e| format!("exchange with {addr:?}: {e}"))?;
    let records = parse_records(&got);
    if !records.iter().any(|r| r.kind == END_REQUEST) {
        return Err(format!(
            "no END_REQUEST in {:?}",
            String::from_utf8_lossy(&got)
        ));
    }
    let stdout = records
        .iter()
        .filter(|r| r.kind == STDOUT)
        .flat_map(|r| r.content.clone())
        .collect();
    Ok(Response {
        stdout,
        records,
        ..Response::default()
    })
}

/// GET `route`: the body of a 200, or what went wrong.
fn get(addr: &Addr, route: &str) -> Result<String, String> {
    let r = exchange(addr, &Req::get(route))?;
    if !r.text().contains("\r\n\r\n") || r.status() != 200 {
        return Err(format!("GET /{route}: {:?}", r.text()));
    }
    Ok(r.body_text())
}

/// (mark, worker pid, prefork child pid) from the app's default route.
fn ident(addr: &Addr) -> Result<(String, i32, i32), String> {
    let body = get(addr, "pid")?;
    let f: Vec<&str> = body.split(' ').collect();
    match f[..] {
        [m, w, c] => Ok((
            m.into(),
            w.parse().map_err(|_| body.clone())?,
            c.parse().map_err(|_| body.clone())?,
        )),
        _ => Err(format!("unexpected body {body:?}")),
    }
}

type InFlight = thread::JoinHandle<Result<String, String>>;

fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

fn free_port(ip: &str) -> u16 {
    // A parsed address: a host name would need the resolver, which the
    // static musl build does not link.
    let ip: std::net::IpAddr = ip.parse().expect("an IP address");
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .filter(|&pid| !process_gone(pid))
        .collect()
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) of a process this test started.
    unsafe { libc::kill(pid, sig) };
}

/// A deployed site: its own copy of the binary as `mysite.fcgi`, the app,
/// a site.toml. Every process it started is killed on drop.
struct Site {
    /// Inodes the site's binary has had (a test replaces it).
    inodes: Mutex<Vec<u64>>,
    children: Vec<Child>,
    dir: TempDir,
}

impl Site {
    fn new(tag: &str) -> Site {
        let dir = TempDir::new(tag);
        let bin = dir.join("mysite.fcgi");
        fs::copy(BIN, &bin).expect("copy the binary");
        fs::write(dir.join("rfapp.py"), APP).expect("write the app");
        let toml = format!(
            "python = {}\nsearch_path = [{}]\nwsgi_app = \"rfapp:app\"\nlog_file = {}\n",
            toml_str(&python()),
            toml_str(&dir.path().to_string_lossy()),
            toml_str(&dir.join("shim.log").to_string_lossy()),
        );
        fs::write(dir.join("site.toml"), toml).expect("write site.toml");
        let ino = fs::metadata(&bin).expect("stat binary").ino();
        Site {
            inodes: Mutex::new(vec![ino]),
            children: Vec::new(),
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("mysite.sock")
    }

    fn unix(&self) -> Addr {
        Addr::Unix(self.sock())
    }

    fn log(&self) -> String {
        read_lossy(&self.dir.join("shim.log"))
    }

    /// `./mysite.fcgi runfcgi ARGS` from the site's directory, with only
    /// PATH in the environment, as a person at a shell would start it.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.dir.join("mysite.fcgi"));
        server_env(&mut cmd)
            .arg0("./mysite.fcgi")
            .arg("runfcgi")
            .args(args)
            .current_dir(self.path());
        cmd
    }

    /// Runs a command that should return (an error, or a daemon's start).
    fn run(&self, args: &[&str]) -> Output {
        run(&mut self.command(args), Some(b""), Duration::from_secs(20))
    }

    /// Starts `daemonize=false ARGS` in its own process group, as a shell
    /// starts a foreground job; output goes to files.
    fn foreground(&mut self, args: &[&str]) -> usize {
        self.foreground_env(args, &[])
    }

    /// [`Self::foreground`] with extra environment variables.
    fn foreground_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> usize {
        let mut all = vec!["daemonize=false"];
        all.extend_from_slice(args);
        let mut cmd = self.command(&all);
        cmd.envs(env.iter().copied());
        self.spawn_foreground(cmd)
    }

    /// Starts `cmd` as [`Self::foreground`] does.
    fn spawn_foreground(&mut self, mut cmd: Command) -> usize {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.dir.join("stdout")).expect("stdout file"))
            .stderr(fs::File::create(self.dir.join("stderr")).expect("stderr file"));
        self.children.push(spawn_retrying(&mut cmd));
        self.children.len() - 1
    }

    fn output(&self) -> String {
        format!(
            "stdout: {}\nstderr: {}\nlog: {}",
            read_lossy(&self.dir.join("stdout")),
            read_lossy(&self.dir.join("stderr")),
            self.log()
        )
    }

    fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let child = &mut self.children[i];
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deploys a new binary with `mv` (a new inode, as FIELD_NOTES
    /// recommends) and waits until `pid` runs it, re-executed: false if it
    /// does not within 10 s.
    fn deploy_with_mv(&self, pid: i32) -> bool {
        let new = self.dir.join("mysite.fcgi.new");
        fs::copy(BIN, &new).expect("copy");
        let ino = fs::metadata(&new).expect("stat").ino();
        self.inodes.lock().expect("lock").push(ino);
        fs::rename(&new, self.dir.join("mysite.fcgi")).expect("mv");
        wait_until(Duration::from_secs(10), || {
            fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| m.ino() == ino)
        })
    }

    /// GET /inflight_long (2.5 s in the app) on a thread, once the app has
    /// it: a request in flight across whatever comes next.
    fn request_in_flight(&self, addr: &Addr, what: &str) -> InFlight {
        let running = {
            let addr = addr.clone();
            thread::spawn(move || get(&addr, "inflight_long"))
        };
        assert!(
            wait_until(Duration::from_secs(10), || inflight(self) == 1),
            "{what}: the request did not reach the app\n{}",
            self.output()
        );
        running
    }

    /// Fails unless the request in flight got the old app's (v1) answer.
    fn assert_answered(&self, running: InFlight, what: &str) {
        let r = running.join().expect("request thread");
        assert_eq!(
            r.as_deref().map(|b| b.split(' ').next()),
            Ok(Some("v1")),
            "{what}: the request in flight failed\n{}",
            self.output()
        );
    }

    /// The pid of foreground child `i`.
    fn pid(&self, i: usize) -> i32 {
        self.children[i].id() as i32
    }

    /// Fails unless foreground child `i` exits with status 0 within 8 s.
    fn assert_exits_0(&mut self, i: usize, what: &str) {
        let st = self.wait_exit(i, Duration::from_secs(8));
        assert_eq!(
            st.and_then(|s| s.code()),
            Some(0),
            "{what}: {st:?}\n{}",
            self.output()
        );
    }

    /// SIGTERM to foreground child `i`, which must then exit 0 within 8 s.
    fn stop(&mut self, i: usize) {
        signal(self.pid(i), libc::SIGTERM);
        self.assert_exits_0(i, "after SIGTERM");
    }

    /// Live shim processes running this site's binary: supervisor, children,
    /// a daemon.
    fn shims(&self) -> Vec<i32> {
        let inodes = self.inodes.lock().expect("lock").clone();
        all_pids()
            .into_iter()
            .filter(|pid| {
                fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| inodes.contains(&m.ino()))
            })
            .collect()
    }

    /// Live Python workers of this site (their cwd is the site's directory).
    fn pythons(&self) -> Vec<i32> {
        all_pids()
            .into_iter()
            .filter(|pid| {
                cmdline(*pid).contains("fcgi-shim-worker")
                    && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|d| d == self.path())
            })
            .collect()
    }

    /// Waits until no process of this site is left.
    fn assert_all_gone(&self, timeout: Duration) {
        let gone = wait_until(timeout, || {
            self.shims().is_empty() && self.pythons().is_empty()
        });
        assert!(
            gone,
            "left behind: shims {:?}, pythons {:?}\n{}",
            self.shims().iter().map(|p| cmdline(*p)).collect::<Vec<_>>(),
            self.pythons(),
            self.output()
        );
    }

    fn wait_serving(&self, addr: &Addr) {
        let mut last = String::new();
        let ok = wait_until(TIMEOUT, || match get(addr, "pid") {
            Ok(_) => true,
            Err(e) => {
                last = e;
                false
            }
        });
        assert!(ok, "not serving on {addr:?}: {last}\n{}", self.output());
    }

    fn read_pidfile(&self, name: &str) -> i32 {
        let text = read_lossy(&self.dir.join(name));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("pidfile {name} holds {text:?}\n{}", self.output()))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for pid in self.shims().into_iter().chain(self.pythons()) {
            signal(pid, libc::SIGKILL);
        }
        for c in &mut self.children {
            let _ = c.kill(); // it may have exited: wait reaps it either way
            let _ = c.wait();
        }
    }
}

/// Sends `total` requests from `threads` threads at once; returns the
/// failures and the (mark, worker, child) of each success.
fn load(addr: &Addr, route: &str, threads: usize, total: usize) -> (Vec<String>, Vec<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, route) = (addr.clone(), route.to_string());
            let (next, failures, bodies) = (next.clone(), failures.clone(), bodies.clone());
            thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < total {
                    match get(&addr, &route) {
                        Ok(b) => bodies.lock().expect("lock").push(b),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("load thread");
    }
    let f = failures.lock().expect("lock").clone();
    let b = bodies.lock().expect("lock").clone();
    (f, b)
}

/// Requests in a loop on another thread until stopped; returns the count
/// and the failures.
struct Hammer {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(usize, Vec<String>, Vec<String>)>,
}

impl Hammer {
    fn start(addr: &Addr) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), addr.clone());
        let handle = thread::spawn(move || {
            let (mut n, mut failed, mut marks) = (0, Vec::new(), Vec::new());
            while !flag.load(Ordering::SeqCst) {
                n += 1;
                match ident(&addr) {
                    Ok((mark, _, _)) => {
                        if marks.last() != Some(&mark) {
                            marks.push(mark);
                        }
                    }
                    Err(e) => failed.push(e),
                }
            }
            (n, failed, marks)
        });
        Hammer { stop, handle }
    }

    fn finish(self) -> (usize, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("hammer thread")
    }
}

/// Fails unless a [`Hammer`] sent `n` > 0 requests and none `failed`;
/// `what` starts the message, `log` (the servers' output) ends it.
fn assert_none_failed(n: usize, failed: &[String], what: &str, log: &str) {
    assert!(
        n > 0 && failed.is_empty(),
        "{what}{} of {n} failed: {failed:?}\n{log}",
        failed.len()
    );
}

// ---------------------------------------------------------------------------
// Options

#[test]
fn help_lists_every_option_on_a_line_of_its_own() {
    let site = Site::new("help");
    let out = site.run(&["help"]);
    assert!(out.status.success(), "{:?}: {}", out.status, out.all_text());
    let text = out.stdout_text();
    for opt in [
        "protocol",
        "host",
        "port",
        "socket",
        "method",
        "maxrequests",
        "maxspare",
        "minspare",
        "maxchildren",
        "daemonize",
        "pidfile",
        "workdir",
        "umask",
        "outlog",
        "errlog",
        "debug",
    ] {
        let lines = text
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{opt}=")))
            .count();
        assert_eq!(
            lines, 1,
            "{opt}= should start exactly one line of help:\n{text}"
        );
    }
    assert!(site.shims().is_empty(), "help started a server");
}

#[test]
fn a_wrong_option_or_value_fails_with_status_2_naming_it_and_what_is_valid() {
    let site = Site::new("badopts");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["socket=s.sock", "method=forky"],
            &["method=forky", "prefork", "threaded"],
        ),
        (
            &["socket=s.sock", "maxspare=many"],
            &["maxspare=many", "whole number"],
        ),
        (
            &["socket=s.sock", "daemonize=perhaps"],
            &["daemonize=perhaps", "true", "false"],
        ),
        (&["socket=s.sock", "umask=99"], &["umask=99", "octal"]),
        (
            &["socket=s.sock", "protocol=scgi"],
            &["protocol=scgi", "fcgi"],
        ),
        (&["socket=s.sock", "pidfle=x.pid"], &["pidfle", "pidfile"]),
        (&["host=127.0.0.1", "port=0"], &["port=0", "65535"]),
        (
            &["host=no-such-host.invalid", "port=3033"],
            &["host=no-such-host.invalid", "cannot look up", "127.0.0.1"],
        ),
        (
            &["socket=s.sock", "minspare=-1"],
            &["minspare=-1", "0 or more", "no idle child"],
        ),
        // Either socket, or both host and port, is required.
        (&[], &["socket=PATH", "host=ADDRESS", "port=NUMBER"]),
        (&["method=prefork"], &["socket=PATH", "host=ADDRESS"]),
        (&["host=127.0.0.1"], &["port"]),
        (&["port=3033"], &["host"]),
        (
            &["socket=s.sock", "host=127.0.0.1", "port=3033"],
            &["not both"],
        ),
    ];
    for (args, words) in cases {
        let out = site.run(args);
        let text = out.all_text();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        for w in *words {
            assert!(text.contains(w), "{args:?}: {w:?} missing from: {text}");
        }
    }
    assert!(!site.sock().exists() && !site.dir.join("s.sock").exists());
    assert!(site.shims().is_empty(), "a bad command started a server");
}

// ---------------------------------------------------------------------------
// The seed's examples

/// `./manage.py runfcgi method=threaded host=127.0.0.1 port=3033`: daemonizes;
/// no pidfile, so the daemon is found by its command line.
#[test]
fn seed_threaded_server_on_a_tcp_port() {
    let site = Site::new("threaded");
    let port = free_port("127.0.0.1");
    let port_arg = format!("port={port}");
    let out = site.run(&["method=threaded", "host=127.0.0.1", &port_arg]);
    assert!(out.status.success(), "{:?}: {}", out.status, out.all_text());
    let addr = Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    // Listening as soon as the command returned: no retry here.
    let (mark, _, _) = ident(&addr).unwrap_or_else(|e| panic!("{e}\n{}", site.output()));
    assert_eq!(mark, "v1");
    // Threads: one-second requests overlap (one Python, wsgi.multithread).
    let t = Instant::now();
    let (failed, bodies) = load(&addr, "sleep", 4, 4);
    assert!(failed.is_empty(), "{failed:?}\n{}", site.output());
    assert!(
        t.elapsed().as_secs_f64() < 4.0 * 0.6,
        "4 requests took {:?}",
        t.elapsed()
    );
    let mut workers: Vec<&str> = bodies.iter().filter_map(|b| b.split(' ').nth(1)).collect();
    workers.sort();
    workers.dedup();
    assert_eq!(workers.len(), 1, "threaded: one python for all: {bodies:?}");
    let daemons: Vec<i32> = site
        .shims()
        .into_iter()
        .filter(|p| cmdline(*p).contains(&port_arg))
        .collect();
    assert_eq!(daemons.len(), 1, "one daemon expected: {daemons:?}");
    // Daemonized: not a child of this test, in a session of its own.
    let (_, ppid) = proc_stat(daemons[0]).expect("stat daemon");
    assert_ne!(ppid, std::process::id() as i32);
    signal(daemons[0], libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
    assert!(get(&addr, "pid").is_err(), "port still answers after stop");
}

/// `./manage.py runfcgi method=prefork socket=... pidfile=django.pid`, then
/// the seed's `kill \`cat $PIDFILE\``.
#[test]
fn seed_prefork_server_on_a_unix_socket_with_pidfile_stopped_by_kill() {
    let site = Site::new("prefork");
    let sock = format!("socket={}", site.sock().display());
    let out = site.run(&["method=prefork", &sock, "pidfile=django.pid"]);
    assert!(out.status.success(), "{:?}: {}", out.status, out.all_text());
    // The pidfile is relative to where runfcgi was started (not workdir=/),
    // and it is there, naming a live daemon, as soon as the command returned.
    let pid = site.read_pidfile("django.pid");
    assert!(!process_gone(pid), "pidfile names a dead process {pid}");
    let addr = site.unix();
    ident(&addr).unwrap_or_else(|e| panic!("not listening once started: {e}\n{}", site.output()));
    // Default umask 022 when daemonizing: the socket is rwxr-xr-x.
    let mode = fs::symlink_metadata(site.sock()).expect("socket").mode() & 0o777;
    assert_eq!(mode, 0o755, "socket mode {mode:o}");
    // Supervisor without Python; its children are shims with a worker each.
    let kids = children_of(pid);
    assert!(!kids.is_empty(), "no prefork children");
    for k in &kids {
        assert!(
            site.shims().contains(k),
            "child {k} is not a shim: {}",
            cmdline(*k)
        );
    }
    assert!(
        site.pythons()
            .iter()
            .all(|p| proc_stat(*p).is_some_and(|(_, pp)| pp != pid)),
        "a python worker is a direct child of the supervisor"
    );
    let (_, _, child) = ident(&addr).expect("request");
    assert!(
        kids.contains(&child),
        "served by {child}, not a child of {pid} ({kids:?})"
    );

    let out = run(
        Command::new("sh")
            .args(["-c", "kill `cat $PIDFILE`"])
            .env("PIDFILE", site.dir.join("django.pid"))
            .current_dir(site.path()),
        Some(b""),
        Duration::from_secs(5),
    );
    assert!(out.status.success(), "kill: {}", out.all_text());
    site.assert_all_gone(Duration::from_secs(8));
    assert!(!site.dir.join("django.pid").exists(), "pidfile left behind");
    assert!(!site.sock().exists(), "socket file left behind");
    assert!(site.log().contains("SIGTERM"), "{}", site.log());
}

/// `./manage.py runfcgi daemonize=false socket=/tmp/mysite.sock`, then
/// Ctrl-C: SIGINT to the whole foreground process group.
#[test]
fn seed_foreground_server_stops_on_ctrl_c() {
    let mut site = Site::new("fg");
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&[&sock]);
    let addr = site.unix();
    site.wait_serving(&addr);
    let pid = site.pid(i);
    let (_, _, child) = ident(&addr).expect("request");
    assert_ne!(child, pid, "prefork: a child serves, not the supervisor");
    // Started as from a terminal (server_env), whatever this suite runs under.
    assert!(!ignores(pid, libc::SIGINT) && !ignores(child, libc::SIGINT));
    // SAFETY: kill(2) of the process group this test started.
    unsafe { libc::kill(-pid, libc::SIGINT) };
    site.assert_exits_0(i, "after SIGINT to the group");
    site.assert_all_gone(Duration::from_secs(5));
    assert!(!site.sock().exists(), "socket file left behind");
    assert!(zombie_children(pid).is_empty());
}

/// `nohup ./mysite.fcgi runfcgi daemonize=false socket=... &`: SIGHUP to
/// the job (the SSH session ending) was ignored when it started, and SIGINT
/// (a shell's background job), and both stay ignored by the supervisor and
/// its children, after a re-exec too.
#[test]
fn a_foreground_server_started_under_nohup_outlives_sighup() {
    let mut site = Site::new("nohup");
    let sock = format!("socket={}", site.sock().display());
    let mut cmd = site.command(&["daemonize=false", &sock]);
    // SAFETY: signal(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            // As a non-interactive shell starts a background job.
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let i = site.spawn_foreground(cmd);
    let addr = site.unix();
    site.wait_serving(&addr);
    let sup = site.pid(i);
    let hang_up = |site: &mut Site, when: &str| {
        let before = children_of(sup);
        for pid in std::iter::once(sup).chain(before.iter().copied()) {
            assert!(
                ignores(pid, libc::SIGHUP) && ignores(pid, libc::SIGINT),
                "{pid} does not ignore SIGHUP and SIGINT {when}\n{}",
                site.output()
            );
        }
        // SAFETY: kill(2) of the process group this test started.
        unsafe {
            libc::kill(-sup, libc::SIGHUP);
            libc::kill(-sup, libc::SIGINT);
        }
        thread::sleep(Duration::from_millis(300));
        assert!(
            site.wait_exit(i, Duration::ZERO).is_none(),
            "SIGHUP {when} stopped it\n{}",
            site.output()
        );
        // None of the children ended (to be replaced by a new one).
        let after = children_of(sup);
        assert!(
            before.iter().all(|c| after.contains(c)),
            "children {before:?} before SIGHUP {when}, {after:?} after\n{}",
            site.output()
        );
        ident(&addr).unwrap_or_else(|e| panic!("after SIGHUP {when}: {e}\n{}", site.output()));
    };
    hang_up(&mut site, "at first");
    // Deployed with `mv`: the supervisor re-executes itself.
    let old_kids = children_of(sup);
    let reexeced = site.deploy_with_mv(sup);
    assert!(reexeced, "still the old binary\n{}", site.output());
    // The old image's children finish and leave; the new one's serve.
    let renewed = wait_until(Duration::from_secs(10), || {
        let kids = children_of(sup);
        !kids.is_empty() && kids.iter().all(|k| !old_kids.contains(k))
    });
    assert!(renewed, "old children remain\n{}", site.output());
    site.wait_serving(&addr);
    hang_up(&mut site, "after the re-exec");
    site.stop(i);
    site.assert_all_gone(Duration::from_secs(5));
}

/// Is `sig` in the SigIgn mask of /proc/<pid>/status?
fn ignores(pid: i32, sig: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

#[test]
fn prefork_on_ipv6_loopback_stops_on_sigterm() {
    let mut site = Site::new("ipv6");
    let port = free_port("::1");
    let port_arg = format!("port={port}");
    let i = site.foreground(&["host=::1", &port_arg, "pidfile=v6.pid"]);
    let addr = Addr::Tcp(SocketAddr::new("::1".parse().expect("ip"), port));
    site.wait_serving(&addr);
    assert_eq!(site.read_pidfile("v6.pid"), site.pid(i));
    site.stop(i);
    assert!(!site.dir.join("v6.pid").exists(), "pidfile left behind");
    site.assert_all_gone(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// The socket and the pidfile

#[test]
fn a_stale_socket_file_is_replaced() {
    let mut site = Site::new("stale");
    // A socket file nobody listens on, as a killed server leaves it.
    drop(UnixListener::bind(site.sock()).expect("bind"));
    assert!(
        UnixStream::connect(site.sock()).is_err(),
        "the stale socket must refuse"
    );
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&[&sock]);
    site.wait_serving(&site.unix());
    assert!(site.wait_exit(i, Duration::ZERO).is_none());
    assert!(site.log().contains("stale"), "{}", site.log());
}

#[test]
fn a_socket_a_live_server_listens_on_is_refused() {
    let mut site = Site::new("live");
    let sock = format!("socket={}", site.sock().display());
    let first = site.foreground(&[&sock]);
    site.wait_serving(&site.unix());
    let out = site.run(&[&sock, "daemonize=false", "pidfile=second.pid"]);
    let text = out.all_text();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&*site.sock().to_string_lossy()) && text.contains("already listening"),
        "{text}"
    );
    assert!(!site.dir.join("second.pid").exists());
    // The first server is untouched.
    assert!(site.wait_exit(first, Duration::ZERO).is_none());
    ident(&site.unix()).expect("the first server still serves");
}

#[test]
fn a_daemon_that_cannot_start_says_why_and_leaves_no_pidfile_or_socket() {
    let site = Site::new("nowork");
    let sock = format!("socket={}", site.sock().display());
    let out = site.run(&[&sock, "pidfile=x.pid", "workdir=/nonexistent-runfcgi-dir"]);
    let text = out.all_text();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("workdir=/nonexistent-runfcgi-dir"), "{text}");
    assert!(
        !site.dir.join("x.pid").exists(),
        "pidfile written by a failed start"
    );
    assert!(!site.sock().exists(), "socket left by a failed start");
    site.assert_all_gone(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// Prefork

#[test]
fn prefork_children_serve_in_parallel() {
    let mut site = Site::new("parallel");
    let sock = format!("socket={}", site.sock().display());
    site.foreground(&[&sock]);
    let addr = site.unix();
    site.wait_serving(&addr);
    // More requests than the 5 children kept at start: the pool must grow.
    let n = 8;
    let t = Instant::now();
    let (failed, _) = load(&addr, "sleep", n, n);
    let took = t.elapsed();
    assert!(failed.is_empty(), "{failed:?}\n{}", site.output());
    assert!(
        took.as_secs_f64() < n as f64 * 0.6,
        "{n} one-second requests took {took:?}: not served in parallel\n{}",
        site.output()
    );
}

#[test]
fn maxchildren_caps_the_children() {
    let mut site = Site::new("cap");
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&[&sock, "maxchildren=2"]);
    let addr = site.unix();
    site.wait_serving(&addr);
    let t = Instant::now();
    let (failed, _) = load(&addr, "sleep", 4, 4);
    let took = t.elapsed();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        took >= Duration::from_millis(1900),
        "4 requests on 2 children took {took:?}"
    );
    let kids = children_of(site.pid(i));
    assert!(kids.len() <= 2, "more than maxchildren: {kids:?}");
}

#[test]
fn maxrequests_recycles_children_without_a_failed_request() {
    let mut site = Site::new("maxreq");
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&[&sock, "maxrequests=3"]);
    let addr = site.unix();
    site.wait_serving(&addr); // one request: counts against a child's three
    let (mut failed, mut bodies) = load(&addr, "pid", 1, 15);
    let (f2, b2) = load(&addr, "pid", 5, 15);
    failed.extend(f2);
    bodies.extend(b2);
    assert!(
        failed.is_empty(),
        "{} failed: {failed:?}\n{}",
        failed.len(),
        site.output()
    );
    assert_eq!(bodies.len(), 30);
    let mut kids: Vec<&str> = bodies.iter().filter_map(|b| b.split(' ').nth(2)).collect();
    kids.sort();
    kids.dedup();
    // Three requests each at most: 30 requests need at least 10 children.
    assert!(
        kids.len() >= 10,
        "only {} children served 30 requests: {kids:?}",
        kids.len()
    );
    let sup = site.pid(i);
    assert!(
        wait_until(Duration::from_secs(3), || zombie_children(sup).is_empty()),
        "zombies: {:?}",
        zombie_children(sup)
    );
    assert!(site.log().contains("maxrequests"), "{}", site.log());
}

#[test]
fn children_that_keep_dying_are_replaced_at_a_limited_rate() {
    let mut site = Site::new("crashloop");
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&[&sock]);
    site.wait_serving(&site.unix());
    let sup = site.pid(i);
    let mut seen = std::collections::HashSet::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for k in children_of(sup) {
            seen.insert(k);
            signal(k, libc::SIGKILL);
        }
        thread::sleep(Duration::from_millis(10));
    }
    // Killed children are replaced (more than the first five were seen),
    // but not as fast as they die: without a limit this loop sees hundreds.
    assert!(
        seen.len() > 5,
        "no replacement: {seen:?}\n{}",
        site.output()
    );
    assert!(
        seen.len() <= 20,
        "{} children in 3 s: no rate limit\n{}",
        seen.len(),
        site.log()
    );
    assert!(site.log().contains("in a row"), "{}", site.log());
    assert!(wait_until(Duration::from_secs(3), || zombie_children(sup).is_empty()));
    assert_eq!(
        site.wait_exit(i, Duration::ZERO),
        None,
        "the supervisor died"
    );
    site.stop(i);
    site.assert_all_gone(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// Reload

/// The app edited to answer `mark`, then `touch mysite.fcgi`. The app file
/// gets another size and a later mtime, so that Python's bytecode cache
/// cannot serve the old code.
fn deploy_new_app(site: &Site, mark: &str) {
    let app = site.dir.join("rfapp.py");
    fs::write(&app, APP.replace("\"v1\"", &format!("\"{mark}\""))).expect("edit app");
    set_mtime(&app, mtime_secs(&app) + 20);
    let bin = site.dir.join("mysite.fcgi");
    set_mtime(&bin, mtime_secs(&bin) + 10);
}

#[test]
fn touch_reloads_the_app_without_a_failed_request() {
    let mut site = Site::new("touch");
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&[&sock]);
    let addr = site.unix();
    site.wait_serving(&addr);
    let hammer = Hammer::start(&addr);
    thread::sleep(Duration::from_millis(300));
    deploy_new_app(&site, "v2-new");
    let reloaded = wait_until(Duration::from_secs(10), || {
        // Every child has reloaded when five requests in a row say v2.
        (0..5).all(|_| ident(&addr).is_ok_and(|(m, _, _)| m == "v2-new"))
    });
    let (n, failed, marks) = hammer.finish();
    assert!(reloaded, "still serving v1 after touch\n{}", site.output());
    assert_none_failed(n, &failed, "", &site.output());
    assert_eq!(
        marks.last().map(String::as_str),
        Some("v2-new"),
        "{marks:?}"
    );
    // One request at a time leaves children idle: no reason to add any.
    let kids = children_of(site.pid(i));
    assert!(
        kids.len() <= 5 + 2,
        "the pool grew to {} under sequential requests",
        kids.len()
    );
}

#[test]
fn replacing_the_binary_reexecutes_the_supervisor_keeping_the_socket() {
    let mut site = Site::new("mv");
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&[&sock, "pidfile=mv.pid"]);
    let addr = site.unix();
    site.wait_serving(&addr);
    let sup = site.pid(i);
    let old_kids = children_of(sup);
    let hammer = Hammer::start(&addr);
    thread::sleep(Duration::from_millis(300));
    let reexeced = site.deploy_with_mv(sup);
    assert!(
        reexeced,
        "supervisor still runs the old binary\n{}",
        site.output()
    );
    // New children from the new image; the old ones finished and were reaped.
    let renewed = wait_until(Duration::from_secs(10), || {
        let kids = children_of(sup);
        !kids.is_empty() && kids.iter().all(|k| !old_kids.contains(k))
    });
    thread::sleep(Duration::from_millis(300));
    let (n, failed, _) = hammer.finish();
    assert!(
        renewed,
        "old children remain: {:?} vs {old_kids:?}\n{}",
        children_of(sup),
        site.output()
    );
    assert_none_failed(n, &failed, "", &site.output());
    assert_eq!(site.read_pidfile("mv.pid"), sup, "same pid after re-exec");
    assert!(zombie_children(sup).is_empty());
    site.stop(i);
    assert!(!site.sock().exists() && !site.dir.join("mv.pid").exists());
    site.assert_all_gone(Duration::from_secs(5));
}

#[test]
fn a_threaded_server_reexecutes_a_replaced_binary_keeping_the_socket() {
    let mut site = Site::new("mv-threaded");
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&["method=threaded", &sock]);
    let addr = site.unix();
    site.wait_serving(&addr);
    let pid = site.pid(i);
    let hammer = Hammer::start(&addr);
    thread::sleep(Duration::from_millis(300));
    let reexeced = site.deploy_with_mv(pid);
    assert!(reexeced, "still the old binary\n{}", site.output());
    thread::sleep(Duration::from_millis(500));
    let (n, failed, _) = hammer.finish();
    assert_none_failed(n, &failed, "", &site.output());
    ident(&addr).expect("serving after the re-exec");
    assert_eq!(
        site.wait_exit(i, Duration::ZERO),
        None,
        "exited instead of re-executing"
    );
    site.stop(i);
    assert!(!site.sock().exists());
    site.assert_all_gone(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// The seed's restart script

#[test]
fn seed_restart_script_starts_restarts_and_the_pidfile_stops_it() {
    // Both methods, and the second restart while a request runs: it
    // finishes in the old server while the new one binds the socket.
    for method in ["method=prefork", "method=threaded"] {
        let site = Site::new("restart");
        let script = site.dir.join("restart.sh");
        // As in the seed, with our binary for manage.py and this test's PROJDIR.
        let text = format!(
            r#"#!/bin/bash

# Replace these three settings.
PROJDIR="{}"
PIDFILE="$PROJDIR/mysite.pid"
SOCKET="$PROJDIR/mysite.sock"

cd $PROJDIR
if [ -f $PIDFILE ]; then
    kill `cat -- $PIDFILE`
    rm -f -- $PIDFILE
fi

exec /usr/bin/env - \
  PYTHONPATH="../python:.." \
  ./mysite.fcgi runfcgi {method} socket=$SOCKET pidfile=$PIDFILE
"#,
            site.path().display()
        );
        fs::write(&script, text).expect("write script");
        let restart = || {
            let out = run(
                Command::new("bash").arg(&script),
                Some(b""),
                Duration::from_secs(20),
            );
            assert!(
                out.status.success(),
                "{method}: {:?}: {}",
                out.status,
                out.all_text()
            );
        };

        restart();
        let first = site.read_pidfile("mysite.pid");
        let addr = site.unix();
        // The environment the script gave reaches the app (and nothing else,
        // PATH included, was needed to find python).
        assert_eq!(get(&addr, "pythonpath").as_deref(), Ok("../python:.."));

        let running = site.request_in_flight(&addr, method);
        restart();
        let second = site.read_pidfile("mysite.pid");
        assert_ne!(first, second, "{method}: not restarted");
        ident(&addr).unwrap_or_else(|e| panic!("{method}: after restart: {e}\n{}", site.output()));
        site.assert_answered(running, method);
        assert!(
            wait_until(Duration::from_secs(8), || process_gone(first)),
            "{method}: the first server is still running"
        );
        assert_eq!(
            site.read_pidfile("mysite.pid"),
            second,
            "{method}: the old server removed the new pidfile"
        );

        signal(second, libc::SIGTERM);
        site.assert_all_gone(Duration::from_secs(8));
        assert!(!site.sock().exists() && !site.dir.join("mysite.pid").exists());
    }
}

/// Started again with the socket= and pidfile= of a running daemon, with
/// nothing stopped first: the new server takes the socket over once it is
/// ready (rename over the old one's path) and stops the old one, so that
/// requests sent back to back all the while get answers, the one in flight
/// included. A start that fails leaves the old server serving.
#[test]
fn starting_again_with_the_same_socket_and_pidfile_takes_over_without_a_failed_request() {
    for method in ["method=prefork", "method=threaded"] {
        let site = Site::new("takeover");
        let sock = format!("socket={}", site.sock().display());
        let start = |args: &[&str]| {
            let mut all = vec![method, sock.as_str(), "pidfile=site.pid"];
            all.extend_from_slice(args);
            site.run(&all)
        };
        let out = start(&[]);
        assert!(out.status.success(), "{method}: {}", out.all_text());
        let first = site.read_pidfile("site.pid");
        let addr = site.unix();
        site.wait_serving(&addr);

        // A start that cannot work: the first server keeps the socket.
        let out = start(&["workdir=/nonexistent-runfcgi-dir"]);
        assert_eq!(out.status.code(), Some(1), "{method}: {}", out.all_text());
        assert!(
            out.all_text().contains("workdir=/nonexistent-runfcgi-dir"),
            "{method}: {}",
            out.all_text()
        );
        assert_eq!(site.read_pidfile("site.pid"), first, "{method}");
        assert!(
            !process_gone(first),
            "{method}: the failed start stopped it"
        );
        ident(&addr).unwrap_or_else(|e| panic!("{method}: after a failed start: {e}"));

        let running = site.request_in_flight(&addr, method);
        let hammer = Hammer::start(&addr);
        thread::sleep(Duration::from_millis(200));
        let out = start(&[]);
        assert!(out.status.success(), "{method}: {}", out.all_text());
        let second = site.read_pidfile("site.pid");
        assert_ne!(first, second, "{method}: not restarted");
        assert!(
            wait_until(Duration::from_secs(8), || process_gone(first)),
            "{method}: the first server is still running\n{}",
            site.output()
        );
        thread::sleep(Duration::from_millis(200));
        let (n, failed, _) = hammer.finish();
        assert_none_failed(n, &failed, &format!("{method}: "), &site.output());
        site.assert_answered(running, method);
        assert_eq!(site.read_pidfile("site.pid"), second, "{method}");
        // And again: a server that took over is listed under its staged
        // name in /proc/net/unix, and is taken over all the same.
        let out = start(&[]);
        assert!(out.status.success(), "{method}: {}", out.all_text());
        let third = site.read_pidfile("site.pid");
        assert_ne!(second, third, "{method}: not restarted a second time");
        assert!(
            wait_until(Duration::from_secs(8), || process_gone(second)),
            "{method}: the second server is still running\n{}",
            site.output()
        );
        ident(&addr).unwrap_or_else(|e| panic!("{method}: after the third start: {e}"));
        let second = third;
        let left = staged_sockets(&site);
        assert!(left.is_empty(), "{method}: staged sockets left: {left:?}");
        signal(second, libc::SIGTERM);
        site.assert_all_gone(Duration::from_secs(8));
        assert!(!site.sock().exists() && !site.dir.join("site.pid").exists());
    }
}

/// A site whose app takes a second to import: a start stays in its import
/// long enough for a test to act meanwhile.
fn slow_import_site(tag: &str) -> Site {
    let site = Site::new(tag);
    fs::write(
        site.dir.join("slowstart.py"),
        "import time\ntime.sleep(1)\nfrom rfapp import app\n",
    )
    .expect("write the app");
    let toml = fs::read_to_string(site.dir.join("site.toml")).expect("site.toml");
    fs::write(
        site.dir.join("site.toml"),
        toml.replace("rfapp:app", "slowstart:app"),
    )
    .expect("write site.toml");
    site
}

/// Starts `site` as a daemonized prefork server with socket= and
/// pidfile=site.pid, and waits until it serves: the arguments of that start
/// (to start again) and the server's pid.
fn start_daemon(site: &Site) -> (Vec<String>, i32) {
    let args = vec![
        "method=prefork".to_owned(),
        format!("socket={}", site.sock().display()),
        "pidfile=site.pid".to_owned(),
    ];
    let out = site.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", out.all_text());
    let first = site.read_pidfile("site.pid");
    site.wait_serving(&site.unix());
    (args, first)
}

/// A [`slow_import_site`] served by [`start_daemon`].
fn running_slow_site(tag: &str) -> (Site, Vec<String>, i32) {
    let site = slow_import_site(tag);
    let (args, first) = start_daemon(&site);
    (site, args, first)
}

/// The staged sockets (`NAME.PID.new`) left in the site's folder.
fn staged_sockets(site: &Site) -> Vec<String> {
    fs::read_dir(site.path())
        .expect("site folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".new"))
        .collect()
}

/// SIGTERM (or Ctrl-C) while a restart imports the app: the restart gives
/// up, and the server it would have taken over serves on, still named by
/// the pidfile; no staged socket is left.
#[test]
fn a_stop_signal_while_a_restart_imports_leaves_the_running_server_serving() {
    let (site, owned, first) = running_slow_site("restart-stopped");
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let addr = site.unix();
    let hammer = Hammer::start(&addr);
    // SIGINT is what Ctrl-C sends.
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut cmd = site.command(&args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let restart = cmd.spawn().expect("start the restart");
        thread::sleep(Duration::from_millis(400));
        signal(restart.id() as i32, sig);
        let out = restart.wait_with_output().expect("wait for the restart");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {said}");
        assert!(
            said.contains(&format!(
                "{name} received while starting\nnothing was started"
            )),
            "{said}"
        );
    }
    thread::sleep(Duration::from_millis(300));
    let (n, failed, _) = hammer.finish();
    assert_none_failed(n, &failed, "", &site.output());
    assert!(!process_gone(first), "the running server was stopped");
    assert_eq!(site.read_pidfile("site.pid"), first);
    ident(&addr).unwrap_or_else(|e| panic!("after the stopped restart: {e}"));
    let left = staged_sockets(&site);
    assert!(left.is_empty(), "staged sockets left: {left:?}");
    signal(first, libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
}

/// Two restarts at once (two deploy scripts, a double click): each would
/// take over from the running server, and the one whose socket was renamed
/// over first would run on, reached by no one and named by no pidfile. The
/// second waits for the first and takes over from it.
#[test]
fn two_restarts_at_once_leave_only_the_server_the_pidfile_names() {
    let (site, owned, first) = running_slow_site("restart-twice");
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let addr = site.unix();
    let hammer = Hammer::start(&addr);
    let outs = thread::scope(|s| {
        let starts: Vec<_> = (0..2).map(|_| s.spawn(|| site.run(&args))).collect();
        starts
            .into_iter()
            .map(|h| h.join().expect("start"))
            .collect::<Vec<_>>()
    });
    for out in &outs {
        assert!(out.status.success(), "{}", out.all_text());
    }
    let waited = outs
        .iter()
        .filter(|o| o.all_text().contains("another start with pidfile="))
        .count();
    assert_eq!(
        waited,
        1,
        "one of the two starts waits for the other:\n{}",
        site.output()
    );
    let last = site.read_pidfile("site.pid");
    assert!(
        wait_until(Duration::from_secs(8), || process_gone(first)),
        "the first server is still running\n{}",
        site.output()
    );
    let (n, failed, _) = hammer.finish();
    assert_none_failed(n, &failed, "", &site.output());
    ident(&addr).unwrap_or_else(|e| panic!("after two restarts: {e}"));
    assert!(
        site.dir.join("site.pid.lock").exists(),
        "the lock beside the pidfile (the README names it)"
    );
    // Stopping the server the pidfile names stops everything: no server
    // was left behind.
    signal(last, libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
}

/// A start script that holds a lock of its own on the pidfile (`flock
/// site.pid ./mysite.fcgi runfcgi ...`) is no other start: the restart goes
/// through instead of waiting for itself.
#[test]
fn a_restart_under_flock_of_its_pidfile_does_not_wait_for_itself() {
    let site = Site::new("restart-flock");
    let (args, first) = start_daemon(&site);
    let mut cmd = Command::new("flock");
    server_env(&mut cmd)
        .arg("site.pid")
        .arg(site.dir.join("mysite.fcgi"))
        .arg("runfcgi")
        .args(args)
        .current_dir(site.path());
    let out = run(&mut cmd, Some(b""), Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}\n{}",
        out.all_text(),
        site.output()
    );
    let second = site.read_pidfile("site.pid");
    assert_ne!(first, second, "not restarted");
    assert!(
        wait_until(Duration::from_secs(8), || process_gone(first)),
        "the first server is still running\n{}",
        site.output()
    );
    ident(&site.unix()).unwrap_or_else(|e| panic!("after the restart: {e}"));
    signal(second, libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
}

/// Regression: `method=threaded` accepted every TCP peer, whatever
/// FCGI_WEB_SERVER_ADDRS said (prefork refused them).
#[test]
fn threaded_ignored_fcgi_web_server_addrs() {
    use std::io::{Read, Write};
    for method in ["method=threaded", "method=prefork"] {
        let mut site = Site::new("wsa-threaded");
        let port = free_port("127.0.0.1");
        let port_arg = format!("port={port}");
        site.foreground_env(
            &[method, "host=127.0.0.1", &port_arg],
            &[("FCGI_WEB_SERVER_ADDRS", "127.0.0.1")],
        );
        let addr = Addr::Tcp(SocketAddr::new("127.0.0.1".parse().expect("ip"), port));
        site.wait_serving(&addr);
        // From 127.0.0.2 (loopback too, but not listed): closed unanswered.
        // SAFETY: plain socket calls on a descriptor owned by the stream below.
        let mut s = unsafe {
            use std::os::fd::FromRawFd;
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut a: libc::sockaddr_in = std::mem::zeroed();
            a.sin_family = libc::AF_INET as _;
            a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::new(127, 0, 0, 2)).to_be();
            assert_eq!(
                libc::bind(fd, (&raw const a).cast(), std::mem::size_of_val(&a) as _),
                0
            );
            let mut b = a;
            b.sin_port = port.to_be();
            b.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            assert_eq!(
                libc::connect(fd, (&raw const b).cast(), std::mem::size_of_val(&b) as _),
                0
            );
            std::net::TcpStream::from_raw_fd(fd)
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.write_all(&request_bytes(&Req::get("pid"))); // may be reset
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out); // a reset ends it too
        assert!(
            out.is_empty(),
            "{method}: 127.0.0.2 was answered: {:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(
            wait_until(Duration::from_secs(3), || site
                .log()
                .contains("refused a connection from 127.0.0.2")),
            "{method}: no log line\n{}",
            site.output()
        );
        // The listed address is still served.
        get(&addr, "pid").expect("127.0.0.1 is served");
    }
}

// ---------------------------------------------------------------------------
// Stopping with requests in flight

/// Markers the app's `inflight` route leaves once a request runs in it.
fn inflight(site: &Site) -> usize {
    fs::read_dir(site.path())
        .expect("read site dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("inflight."))
        .count()
}

/// `kill \`cat pidfile\`` (SIGTERM to the server) and Ctrl-C (SIGINT to the
/// whole foreground process group, Python workers included) while three
/// requests run in the app, for both methods: the three complete with 200,
/// the server exits 0, the socket file and the pidfile are gone, and no shim
/// or Python process is left.
#[test]
fn a_stop_signal_lets_requests_in_flight_finish_for_both_methods() {
    for method in ["method=prefork", "method=threaded"] {
        for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
            let what = format!("{method} {name}");
            let mut site = Site::new(&format!("stop-{name}"));
            let sock = format!("socket={}", site.sock().display());
            let i = site.foreground(&[method, &sock, "pidfile=stop.pid"]);
            let addr = site.unix();
            site.wait_serving(&addr);
            let pid = site.pid(i);
            assert_eq!(site.read_pidfile("stop.pid"), pid, "{what}");
            let requests: Vec<_> = (0..3)
                .map(|_| {
                    let addr = addr.clone();
                    thread::spawn(move || get(&addr, "inflight"))
                })
                .collect();
            assert!(
                wait_until(Duration::from_secs(10), || inflight(&site) == 3),
                "{what}: {} of 3 requests reached the app\n{}",
                inflight(&site),
                site.output()
            );
            let sent = Instant::now();
            if sig == libc::SIGINT {
                // SAFETY: kill(2) of the process group this test started.
                unsafe { libc::kill(-pid, libc::SIGINT) };
            } else {
                signal(pid, libc::SIGTERM);
            }
            for r in requests {
                let r = r.join().expect("request thread");
                assert_eq!(
                    r.as_deref().map(|b| b.split(' ').next()),
                    Ok(Some("v1")),
                    "{what}: a request in flight failed\n{}",
                    site.output()
                );
            }
            site.assert_exits_0(i, &what);
            // The requests finished within the grace, not cut at its end.
            assert!(sent.elapsed() < Duration::from_secs(6), "{what}");
            assert!(!site.sock().exists(), "{what}: socket file left behind");
            assert!(
                !site.dir.join("stop.pid").exists(),
                "{what}: pidfile left behind"
            );
            site.assert_all_gone(Duration::from_secs(5));
            assert!(site.log().contains(name), "{what}\n{}", site.log());
        }
    }
}

/// Requests still in the listen queue when the stop comes (every child or
/// thread busy) are served within the grace, not reset: the web server sent them
/// before the socket file went.
#[test]
fn a_stop_serves_the_requests_queued_before_it_for_both_methods() {
    for method in ["method=prefork", "method=threaded"] {
        let mut site = Site::new("stop-queued");
        let sock = format!("socket={}", site.sock().display());
        let i = site.foreground(&[method, &sock, "maxchildren=2"]);
        let addr = site.unix();
        site.wait_serving(&addr);
        let pid = site.pid(i);
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let addr = addr.clone();
                thread::spawn(move || get(&addr, "inflight"))
            })
            .collect();
        assert!(
            wait_until(Duration::from_secs(10), || inflight(&site) == 2),
            "{method}: {} of 2 requests reached the app\n{}",
            inflight(&site),
            site.output()
        );
        // Two more: both children (threads) are busy, so they wait in the queue.
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let addr = addr.clone();
                thread::spawn(move || get(&addr, "pid"))
            })
            .collect();
        thread::sleep(Duration::from_millis(200));
        signal(pid, libc::SIGTERM);
        for r in busy.into_iter().chain(queued) {
            let r = r.join().expect("request thread");
            assert!(
                r.is_ok(),
                "{method}: a request failed: {r:?}\n{}",
                site.output()
            );
        }
        site.assert_exits_0(i, method);
    }
}

// ---------------------------------------------------------------------------
// method=threaded: reload and the thread cap

#[test]
fn threaded_touch_reloads_the_app_without_a_failed_request() {
    let mut site = Site::new("touch-threaded");
    let sock = format!("socket={}", site.sock().display());
    site.foreground(&["method=threaded", &sock]);
    let addr = site.unix();
    site.wait_serving(&addr);
    let (_, old_worker, _) = ident(&addr).expect("request");
    let hammer = Hammer::start(&addr);
    thread::sleep(Duration::from_millis(300));
    deploy_new_app(&site, "v2-threaded");
    let reloaded = wait_until(Duration::from_secs(10), || {
        ident(&addr).is_ok_and(|(m, _, _)| m == "v2-threaded")
    });
    thread::sleep(Duration::from_millis(300));
    let (n, failed, marks) = hammer.finish();
    assert!(reloaded, "still serving v1 after touch\n{}", site.output());
    assert_none_failed(n, &failed, "", &site.output());
    assert_eq!(marks, ["v1", "v2-threaded"], "the mark went back and forth");
    // A new Python, and the old one is gone.
    let (_, new_worker, _) = ident(&addr).expect("request");
    assert_ne!(new_worker, old_worker);
    assert!(
        wait_until(Duration::from_secs(5), || process_gone(old_worker)),
        "the old python worker {old_worker} is still running"
    );
    assert_eq!(site.pythons().len(), 1, "{:?}", site.pythons());
}

/// N one-second requests at once with maxchildren=2 take about N/2 seconds
/// with either method: two at a time, not one, not all.
#[test]
fn maxchildren_runs_two_requests_at_a_time_with_either_method() {
    for method in ["method=prefork", "method=threaded"] {
        let mut site = Site::new("cap2");
        let sock = format!("socket={}", site.sock().display());
        site.foreground(&[method, &sock, "maxchildren=2"]);
        let addr = site.unix();
        site.wait_serving(&addr);
        let n = 6;
        let t = Instant::now();
        let (failed, _) = load(&addr, "sleep", n, n);
        let took = t.elapsed().as_secs_f64();
        assert!(failed.is_empty(), "{method}: {failed:?}\n{}", site.output());
        // 3 s expected; 2 s would mean three at a time, 6 s one at a time.
        assert!(
            (2.9..4.8).contains(&took),
            "{method}: {n} one-second requests with maxchildren=2 took {took:.2} s\n{}",
            site.output()
        );
    }
}

// ---------------------------------------------------------------------------
// outlog, errlog, umask, debug

#[test]
fn outlog_and_errlog_become_the_daemons_stdout_and_stderr() {
    let site = Site::new("logs");
    let sock = format!("socket={}", site.sock().display());
    // outlog exists (appended to), errlog does not (created 0600).
    fs::write(site.dir.join("out.log"), "earlier output\n").expect("write");
    let out = site.run(&[&sock, "pidfile=d.pid", "outlog=out.log", "errlog=err.log"]);
    assert!(out.status.success(), "{:?}: {}", out.status, out.all_text());
    let pid = site.read_pidfile("d.pid");
    let fd = |n: u32| fs::read_link(format!("/proc/{pid}/fd/{n}")).ok();
    assert_eq!(fd(0), Some(PathBuf::from("/dev/null")));
    assert_eq!(fd(1), Some(site.dir.join("out.log")));
    assert_eq!(fd(2), Some(site.dir.join("err.log")));
    let mode = fs::metadata(site.dir.join("err.log"))
        .expect("errlog")
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "errlog created with mode {mode:o}");
    ident(&site.unix()).expect("serving");
    get(&site.unix(), "print").expect("print");
    signal(pid, libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
    // The daemon's own log lines went to errlog, after what was there, with
    // the app's stderr; the app's stdout went to outlog, as under Django.
    let err = read_lossy(&site.dir.join("err.log"));
    assert!(err.contains("SIGTERM received"), "errlog: {err:?}");
    assert!(err.contains("runfcgi: stopped"), "errlog: {err:?}");
    assert!(err.contains("]: and to stderr\n"), "errlog: {err:?}");
    assert!(!err.contains("printed by the app"), "errlog: {err:?}");
    let out = read_lossy(&site.dir.join("out.log"));
    assert_eq!(out, "earlier output\nprinted by the app\n", "outlog");
}

#[test]
fn umask_sets_the_mode_of_the_socket_and_the_pidfile() {
    let mode = |p: &Path| fs::symlink_metadata(p).expect("stat").mode() & 0o777;
    // (options, socket mode, pidfile mode, the permission hint printed)
    let cases: &[(&[&str], u32, u32, bool)] = &[
        (&[], 0o755, 0o644, true),
        (&["umask=007"], 0o770, 0o640, false),
        (&["umask=000"], 0o777, 0o644, false),
        (&["umask=022"], 0o755, 0o644, false),
    ];
    for (opts, sock_mode, pid_mode, hint) in cases {
        let site = Site::new("umask");
        let sock = format!("socket={}", site.sock().display());
        let mut args = vec![sock.as_str(), "pidfile=u.pid"];
        args.extend_from_slice(opts);
        let out = site.run(&args);
        let text = out.all_text();
        assert!(out.status.success(), "{opts:?}: {text}");
        assert_eq!(mode(&site.sock()), *sock_mode, "{opts:?}: socket");
        assert_eq!(
            mode(&site.dir.join("u.pid")),
            *pid_mode,
            "{opts:?}: pidfile"
        );
        assert_eq!(
            text.contains("gets \"Permission denied\"") && text.contains("umask=000"),
            *hint,
            "{opts:?}: {text}"
        );
        signal(site.read_pidfile("u.pid"), libc::SIGTERM);
        site.assert_all_gone(Duration::from_secs(8));
    }
    // In the foreground umask= applies too (without it the shell's stays).
    let mut site = Site::new("umask-fg");
    let sock = format!("socket={}", site.sock().display());
    let i = site.foreground(&[&sock, "umask=077"]);
    site.wait_serving(&site.unix());
    assert_eq!(mode(&site.sock()), 0o700);
    site.stop(i);
}

#[test]
fn debug_logs_one_line_per_request_and_no_traceback_to_the_client() {
    for method in ["method=prefork", "method=threaded"] {
        for debug in [true, false] {
            let mut site = Site::new("debug");
            // An app that fails: with debug=true the visitor still gets a
            // plain 500 (tracebacks are site.toml's debug + debug_allow).
            fs::write(
                site.dir.join("rfapp.py"),
                format!("{APP}\nboom = app\ndef app(e, s):\n    if e['PATH_INFO'].endswith('boom'):\n        raise ValueError('secret detail')\n    return boom(e, s)\n"),
            )
            .expect("write app");
            let sock = format!("socket={}", site.sock().display());
            let flag = format!("debug={debug}");
            let i = site.foreground(&[method, &sock, &flag]);
            let addr = site.unix();
            site.wait_serving(&addr);
            get(&addr, "pid").expect("request");
            let boom = exchange(&addr, &Req::get("boom")).expect("exchange");
            assert_eq!(boom.status(), 500, "{method} {flag}");
            assert!(
                !boom.text().contains("secret detail") && !boom.text().contains("Traceback"),
                "{method} {flag}: traceback sent to the client: {}",
                boom.text()
            );
            let logged = |line: &str| {
                wait_until(Duration::from_secs(if debug { 3 } else { 1 }), || {
                    site.log().contains(line)
                })
            };
            assert_eq!(
                logged("request GET /pid: answered"),
                debug,
                "{method} {flag}\n{}",
                site.log()
            );
            assert_eq!(
                logged("request GET /boom: answered 500"),
                debug,
                "{method} {flag}\n{}",
                site.log()
            );
            // The traceback is in the log either way (threaded: written by
            // the worker's log thread, a moment later).
            assert!(
                wait_until(Duration::from_secs(3), || site
                    .log()
                    .contains("secret detail")),
                "{method} {flag}\n{}",
                site.log()
            );
            site.stop(i);
        }
    }
}

// ---------------------------------------------------------------------------
// site.toml: where it is found, and refusing to start without a good one

/// `fcgi-shim runfcgi` found on PATH, started in a folder holding
/// site.toml (as `./manage.py runfcgi` in the project's folder).
fn runfcgi_from_path(site: &Site, bindir: &Path, args: &[&str]) -> Command {
    let mut cmd = from_path(bindir);
    cmd.arg("runfcgi").args(args).current_dir(site.path());
    cmd
}

fn install_on_path(site: &Site) -> PathBuf {
    let bindir = site.dir.join("bin");
    fs::create_dir(&bindir).expect("mkdir bin");
    let bin = bindir.join("fcgi-shim");
    fs::copy(BIN, &bin).expect("copy the binary");
    let ino = fs::metadata(&bin).expect("stat").ino();
    site.inodes.lock().expect("lock").push(ino);
    bindir
}

#[test]
fn runfcgi_from_path_reads_site_toml_in_the_current_directory() {
    let mut site = Site::new("from-path");
    let toml = site.dir.join("site.toml");
    let text = read_lossy(&toml);
    fs::write(
        &toml,
        format!("{text}[env]\nWHICH = \"current directory\"\n"),
    )
    .expect("write");
    let bindir = install_on_path(&site);
    let sock = format!("socket={}", site.sock().display());
    let mut cmd = runfcgi_from_path(&site, &bindir, &[&sock, "daemonize=false"]);
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(site.dir.join("stdout")).expect("stdout"))
        .stderr(fs::File::create(site.dir.join("stderr")).expect("stderr"));
    site.children.push(spawn_retrying(&mut cmd));
    let addr = site.unix();
    site.wait_serving(&addr);
    assert_eq!(get(&addr, "which").as_deref(), Ok("current directory"));
    site.stop(0);
    // One beside the binary wins over the current directory's.
    fs::write(
        bindir.join("site.toml"),
        format!("{text}[env]\nWHICH = \"beside the binary\"\n"),
    )
    .expect("write");
    let out = run(
        &mut runfcgi_from_path(&site, &bindir, &[&sock, "pidfile=p.pid"]),
        Some(b""),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", out.all_text());
    assert_eq!(get(&addr, "which").as_deref(), Ok("beside the binary"));
    signal(site.read_pidfile("p.pid"), libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
}

/// Regression: a missing or broken site.toml daemonized with exit 0, and
/// then every request got 500.
#[test]
fn a_missing_or_broken_site_toml_fails_at_start_before_daemonizing() {
    let site = Site::new("badtoml");
    let bindir = install_on_path(&site);
    let sock = format!("socket={}", site.sock().display());
    let toml = site.dir.join("site.toml");
    let good = read_lossy(&toml);
    let expect_refused = |out: Output, words: &[&str]| {
        let text = out.all_text();
        assert_eq!(out.status.code(), Some(1), "{text}");
        for w in words {
            assert!(text.contains(w), "{w:?} missing from: {text}");
        }
        assert!(text.contains("nothing was started"), "{text}");
        assert!(!site.sock().exists(), "socket created: {text}");
        assert!(!site.dir.join("p.pid").exists(), "pidfile written: {text}");
        assert!(site.shims().is_empty(), "a server is running: {text}");
    };
    let run_path = || {
        run(
            &mut runfcgi_from_path(&site, &bindir, &[&sock, "pidfile=p.pid"]),
            Some(b""),
            Duration::from_secs(20),
        )
    };
    // Broken: the file, the line and the key.
    fs::write(&toml, format!("{good}pyhton = \"python3\"\n")).expect("write");
    let line = good.lines().count() + 1;
    let want = format!("{}, line {line}, key `pyhton`: unknown key", toml.display());
    expect_refused(run_path(), &[&want]);
    expect_refused(site.run(&[&sock, "pidfile=p.pid"]), &[&want]);
    // Missing: both places looked at are named.
    fs::remove_file(&toml).expect("rm");
    let beside = bindir.join("site.toml");
    expect_refused(
        run_path(),
        &[
            &format!("{}: no such file", beside.display()),
            &format!("nor is there {}", toml.display()),
        ],
    );
    // FCGI_SHIM_SITE naming a file that is not there.
    let mut cmd = site.command(&[&sock, "pidfile=p.pid"]);
    cmd.env("FCGI_SHIM_SITE", site.dir.join("elsewhere.toml"));
    let named = format!(
        "{}: no such file",
        site.dir.join("elsewhere.toml").display()
    );
    expect_refused(run(&mut cmd, Some(b""), Duration::from_secs(20)), &[&named]);
    // And in the foreground.
    expect_refused(
        site.run(&[&sock, "daemonize=false"]),
        &[&format!("{}: no such file", toml.display())],
    );
}

/// A daemon imports the app once before it is ready, after it binds: a
/// request that comes meanwhile (a restart's) waits in the socket's queue
/// and is answered, instead of finding no socket.
#[test]
fn a_daemon_listens_while_it_first_imports_the_app() {
    let site = Site::new("slow-import");
    fs::write(site.dir.join("slow-import"), "").expect("marker");
    let sock = format!("socket={}", site.sock().display());
    let start = {
        let mut cmd = site.command(&[&sock, "pidfile=p.pid"]);
        thread::spawn(move || {
            let out = run(&mut cmd, Some(b""), Duration::from_secs(30));
            (out, Instant::now())
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || site.sock().exists()),
        "no socket while the app imports"
    );
    let bound = Instant::now();
    let r = get(&site.unix(), "pid");
    let (out, ready) = start.join().expect("start thread");
    assert!(out.status.success(), "{}", out.all_text());
    assert!(
        r.is_ok(),
        "the request during the import failed: {r:?}\n{}",
        site.output()
    );
    // The socket was there for the whole first import (1.5 s), not only
    // once the daemon was ready.
    let early = ready.duration_since(bound);
    assert!(
        early > Duration::from_secs(1),
        "bound only {early:?} before ready"
    );
    signal(site.read_pidfile("p.pid"), libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
}

/// A daemon that cannot load the app would answer 500 to every request,
/// with the reason in an errlog that defaults to /dev/null: it fails at the
/// prompt instead, with the traceback.
#[test]
fn a_daemon_whose_app_cannot_load_fails_at_start_with_the_traceback() {
    let site = Site::new("badapp");
    let sock = format!("socket={}", site.sock().display());
    let toml = site.dir.join("site.toml");
    let good = read_lossy(&toml);
    fs::write(
        &toml,
        good.replace(
            "wsgi_app = \"rfapp:app\"",
            "wsgi_app = \"nonexistent_mod:app\"",
        ),
    )
    .expect("write");
    let out = site.run(&[&sock, "pidfile=p.pid"]);
    let text = out.all_text();
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in [
        "error: app: ModuleNotFoundError: No module named 'nonexistent_mod'",
        &format!(
            "runfcgi: cannot load the app nonexistent_mod:app from {}: the app failed to import \
             (traceback above); no folder of sys.path holds nonexistent_mod.py or \
             nonexistent_mod/: add the one that does to search_path in {} (search_path = [\".\"] \
             for one beside it)\nnothing was started",
            toml.display(),
            toml.display()
        ),
    ] {
        assert!(text.contains(want), "{want:?} missing from: {text}");
    }
    assert!(!site.sock().exists(), "socket created: {text}");
    assert!(!site.dir.join("p.pid").exists(), "pidfile written: {text}");
    assert!(site.shims().is_empty(), "a server is running: {text}");
    assert!(site.pythons().is_empty(), "a worker is left: {text}");
    // Fixed, it starts.
    fs::write(&toml, &good).expect("write");
    let out = site.run(&[&sock, "pidfile=p.pid"]);
    assert!(out.status.success(), "{}", out.all_text());
    ident(&site.unix()).expect("serving");
    signal(site.read_pidfile("p.pid"), libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
}

/// A pidfile made beforehand (by root, in a folder the user may not write,
/// as /run/x.pid) is written in place and emptied at the stop.
#[test]
fn a_pidfile_in_a_folder_the_user_cannot_write_is_written_in_place() {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let site = Site::new("pid-inplace");
    // nobody may read the site, write its own folder for the socket, and
    // write the pidfile, but not create files beside the pidfile.
    let own = site.dir.join("own");
    let run_dir = site.dir.join("run");
    fs::create_dir_all(&own).expect("own");
    fs::create_dir_all(&run_dir).expect("run");
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).expect("chown own");
    let pidfile = run_dir.join("x.pid");
    fs::write(&pidfile, "").expect("pidfile");
    std::os::unix::fs::chown(&pidfile, Some(NOBODY), Some(NOBODY)).expect("chown pidfile");
    let sock = own.join("s.sock");
    let args = [
        format!("socket={}", sock.display()),
        format!("pidfile={}", pidfile.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = || {
        let mut cmd = site.command(&args);
        cmd.uid(NOBODY).gid(NOBODY);
        run(&mut cmd, Some(b""), Duration::from_secs(20))
    };
    let out = start();
    assert!(out.status.success(), "{}", out.all_text());
    let pid: i32 = read_lossy(&pidfile).trim().parse().expect("a pid");
    ident(&Addr::Unix(sock.clone())).expect("serving");
    signal(pid, libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(8), || process_gone(pid)),
        "did not stop"
    );
    assert!(pidfile.exists(), "the pidfile root made is kept");
    assert_eq!(read_lossy(&pidfile), "", "emptied at the stop");
}

#[test]
fn a_pidfile_naming_another_running_server_is_taken_over_with_a_warning() {
    let site = Site::new("pid-shared");
    let out = site.run(&["socket=a.sock", "pidfile=shared.pid"]);
    assert!(out.status.success(), "{}", out.all_text());
    let first = site.read_pidfile("shared.pid");
    let out = site.run(&["socket=b.sock", "pidfile=shared.pid"]);
    assert!(out.status.success(), "{}", out.all_text());
    let shared = site.dir.join("shared.pid");
    let want = format!(
        "warning: pidfile={} names pid {first}, another runfcgi server that is running (or \
         still stopping); it will name this one, so `kill $(cat {})` will stop only this server: \
         give each server a pidfile of its own",
        shared.display(),
        shared.display()
    );
    assert!(
        out.all_text().contains(&want),
        "{want}\nnot in: {}",
        out.all_text()
    );
    let second = site.read_pidfile("shared.pid");
    assert_ne!(first, second);
    signal(first, libc::SIGTERM);
    signal(second, libc::SIGTERM);
    site.assert_all_gone(Duration::from_secs(8));
}

// ---------------------------------------------------------------------------
// workdir= and site.toml's chdir: the app's working directory

#[test]
fn workdir_and_chdir_set_the_apps_working_directory() {
    let site = Site::new("cwd");
    let sock = format!("socket={}", site.sock().display());
    let (wd, appdir) = (site.dir.join("wd"), site.dir.join("appdir"));
    fs::create_dir(&wd).expect("mkdir");
    fs::create_dir(&appdir).expect("mkdir");
    let toml = site.dir.join("site.toml");
    let plain = read_lossy(&toml);
    let with_chdir = format!("chdir = \"appdir\"\n{plain}");
    // (site.toml, options, the app's cwd, the daemon's cwd)
    let cases: &[(&str, &[&str], &Path, &Path)] = &[
        // As before: site.toml's folder for the app, / for the daemon.
        (&plain, &[], site.path(), Path::new("/")),
        // workdir= (relative to where runfcgi starts) for both.
        (&plain, &["workdir=wd"], &wd, &wd),
        // chdir wins over workdir= for the app.
        (&with_chdir, &["workdir=wd"], &appdir, &wd),
        (&with_chdir, &[], &appdir, Path::new("/")),
    ];
    for (text, opts, app_cwd, daemon_cwd) in cases {
        fs::write(&toml, text).expect("write site.toml");
        let mut args = vec![sock.as_str(), "pidfile=c.pid"];
        args.extend_from_slice(opts);
        let out = site.run(&args);
        assert!(out.status.success(), "{opts:?}: {}", out.all_text());
        let pid = site.read_pidfile("c.pid");
        assert_eq!(
            get(&site.unix(), "cwd").as_deref(),
            Ok(&*app_cwd.to_string_lossy()),
            "{opts:?} with {text:?}"
        );
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/cwd")).ok().as_deref(),
            Some(*daemon_cwd),
            "{opts:?}"
        );
        signal(pid, libc::SIGTERM);
        // Both the daemon and its Python worker.
        site.assert_all_gone(Duration::from_secs(8));
    }
    // In the foreground workdir= sets the app's directory too.
    fs::write(&toml, &plain).expect("write site.toml");
    let mut site = site;
    let i = site.foreground(&[&sock, "workdir=wd"]);
    site.wait_serving(&site.unix());
    assert_eq!(
        get(&site.unix(), "cwd").as_deref(),
        Ok(&*wd.to_string_lossy())
    );
    site.stop(i);
    // A chdir that is not a directory fails at start, naming line and key.
    fs::write(&toml, format!("{plain}chdir = \"nowhere\"\n")).expect("write");
    let out = site.run(&[&sock]);
    let want = format!(
        "{}, line {}, key `chdir`: {} cannot be used",
        toml.display(),
        plain.lines().count() + 1,
        site.dir.join("nowhere").display()
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.all_text());
    assert!(out.all_text().contains(&want), "{}", out.all_text());
}

// ---------------------------------------------------------------------------
// host=: names, and every address

#[test]
fn host_may_be_a_name_that_resolves() {
    use std::net::ToSocketAddrs;
    let mut site = Site::new("hostname");
    // The machine's own name, which /etc/hosts gives an address here.
    let name = read_lossy(Path::new("/proc/sys/kernel/hostname"));
    let name = name.trim();
    let port = free_port("127.0.0.1");
    let addr = (name, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(SocketAddr::is_ipv4))
        .unwrap_or_else(|| panic!("{name} does not resolve: add it to /etc/hosts"));
    let host = format!("host={name}");
    let port_arg = format!("port={port}");
    let i = site.foreground(&["method=threaded", &host, &port_arg]);
    let a = Addr::Tcp(addr);
    site.wait_serving(&a);
    assert!(
        site.output().contains(&format!("listening on {addr}")),
        "{}",
        site.output()
    );
    site.stop(i);
}

#[test]
fn listening_on_every_address_warns_unless_fcgi_web_server_addrs_is_set() {
    for (env, warned) in [
        (&[][..], true),
        (&[("FCGI_WEB_SERVER_ADDRS", "127.0.0.1")][..], false),
    ] {
        let mut site = Site::new("anyaddr");
        let port = free_port("0.0.0.0");
        let port_arg = format!("port={port}");
        let i = site.foreground_env(&["host=0.0.0.0", &port_arg], env);
        let addr = Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        site.wait_serving(&addr);
        let out = site.output();
        assert_eq!(
            out.contains("warning: runfcgi: listening on 0.0.0.0")
                && out.contains("anyone who can reach")
                && out.contains("FCGI_WEB_SERVER_ADDRS=127.0.0.1"),
            warned,
            "{env:?}\n{out}"
        );
        site.stop(i);
    }
}
