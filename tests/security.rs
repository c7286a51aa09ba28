//! Security boundaries of the FastCGI side: FCGI_WEB_SERVER_ADDRS for TCP
//! peers, and nothing of the web server's reaching the Python worker.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shim spawned on a TCP listening socket, as `spawn-fcgi -a ADDR -p PORT` does.
struct TcpServer {
    _dir: TempDir,
    addr: std::net::SocketAddr,
    child: Child,
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill(); // dropped: the test is over either way
        let _ = self.child.wait();
    }
}

fn start_tcp(tag: &str, bind: &str, allowed: Option<&str>) -> TcpServer {
    let dir = TempDir::new(tag);
    write_site(dir.path(), "echo:app");
    let listener = TcpListener::bind(bind).expect("bind tcp");
    let addr = listener.local_addr().expect("local addr");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fcgi-shim"));
    server_env(&mut cmd)
        .env("FCGI_SHIM_SITE", dir.join("site.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(a) = allowed {
        cmd.env("FCGI_WEB_SERVER_ADDRS", a);
    }
    // SAFETY: dup2 is async-signal-safe; the listener outlives spawn().
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn fcgi-shim");
    drop(listener);
    TcpServer {
        _dir: dir,
        addr,
        child,
    }
}

/// Sends one request from `from` (a local address to bind the client to)
/// and returns the bytes received before the shim closed the connection.
fn exchange(srv: &TcpServer, from: Option<&str>) -> Vec<u8> {
    let mut s = match from {
        None => TcpStream::connect(srv.addr).expect("connect"),
        // Connect from a chosen loopback address (127.0.0.2 is loopback too).
        Some(local) => connect_from(local, srv.addr),
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The shim may close before reading all of it: a refused peer.
    let _ = s.write_all(&request_bytes(&Req::get("hello")));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out); // a reset also ends the exchange
    out
}

/// connect() from a specific local IPv4 address, with plain libc calls.
fn connect_from(local: &str, to: std::net::SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    let local: std::net::Ipv4Addr = local.parse().expect("ipv4");
    // SAFETY: plain socket calls on a fresh descriptor owned below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as _;
        a.sin_addr.s_addr = u32::from(local).to_be();
        assert_eq!(
            libc::bind(fd, (&raw const a).cast(), std::mem::size_of_val(&a) as _),
            0,
            "bind {local}"
        );
        let mut b: libc::sockaddr_in = std::mem::zeroed();
        b.sin_family = libc::AF_INET as _;
        b.sin_port = to.port().to_be();
        b.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        assert_eq!(
            libc::connect(fd, (&raw const b).cast(), std::mem::size_of_val(&b) as _),
            0,
            "connect"
        );
        TcpStream::from_raw_fd(fd)
    }
}

fn served(bytes: &[u8]) -> bool {
    let stdout: Vec<u8> = parse_records(bytes)
        .into_iter()
        .filter(|r| r.kind == 6)
        .flat_map(|r| r.content)
        .collect();
    String::from_utf8_lossy(&stdout).ends_with("hello world\n")
}

#[test]
fn web_server_addrs_allows_listed_ipv4_and_refuses_others() {
    let srv = start_tcp("wsa-v4", "127.0.0.1:0", Some("127.0.0.1, 10.0.0.1"));
    assert!(
        served(&exchange(&srv, Some("127.0.0.1"))),
        "listed peer refused"
    );
    let refused = exchange(&srv, Some("127.0.0.2"));
    assert!(
        refused.is_empty(),
        "unlisted peer got {:?}",
        String::from_utf8_lossy(&refused)
    );
    // Still serving after a refusal.
    assert!(served(&exchange(&srv, Some("127.0.0.1"))));
}

#[test]
fn web_server_addrs_matches_ipv4_mapped_peers_on_an_ipv6_socket() {
    // A dual-stack [::] socket sees 127.0.0.1 as ::ffff:127.0.0.1.
    let srv = start_tcp("wsa-mapped", "[::]:0", Some("127.0.0.1"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], srv.addr.port()));
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(&request_bytes(&Req::get("hello")))
        .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        served(&out),
        "mapped 127.0.0.1 refused: {:?}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn web_server_addrs_allows_ipv6_loopback_when_listed_and_refuses_it_when_not() {
    let srv = start_tcp("wsa-v6", "[::1]:0", Some("::1"));
    assert!(served(&exchange(&srv, None)), "::1 refused");
    let srv = start_tcp("wsa-v6-no", "[::1]:0", Some("127.0.0.1"));
    assert!(
        exchange(&srv, None).is_empty(),
        "::1 served although not listed"
    );
}

#[test]
fn without_web_server_addrs_every_tcp_peer_is_served() {
    let srv = start_tcp("wsa-none", "127.0.0.1:0", None);
    assert!(served(&exchange(&srv, Some("127.0.0.2"))));
}

#[test]
fn no_web_server_descriptor_reaches_the_python_worker() {
    let srv = Server::start("fd-leak", "echo:app");
    assert_worker_has_only_its_own_fds(&srv);
}

/// The worker's descriptors, as the echo app lists them: stdin
/// (/dev/null), stdout and stderr (the log pipe), the two frame pipes.
fn assert_worker_has_only_its_own_fds(srv: &Server) {
    let r = srv.get("fds");
    assert_eq!(r.status(), 200, "{}", r.text());
    let body = r.body_text();
    let fds: Vec<&str> = body.lines().collect();
    assert_eq!(
        fds,
        ["0 other", "1 other", "2 other", "3 other", "4 other"],
        "{body}"
    );
}

#[test]
fn descriptors_the_shim_inherited_do_not_reach_the_python_worker() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    // What a careless spawner leaves open: a file and a connected socket.
    let dir = TempDir::new("fd-inherited");
    write_site(dir.path(), "echo:app");
    let file = std::fs::File::create(dir.join("inherited.txt")).expect("file");
    let (sock, _peer) = UnixStream::pair().expect("socketpair");
    let srv = Server::start_in_with(dir, &[(file.as_raw_fd(), 7), (sock.as_raw_fd(), 8)]);
    let shim_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", srv.pid()))
        .expect("the shim's fds")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        shim_fds.iter().any(|f| f == "7") && shim_fds.iter().any(|f| f == "8"),
        "the shim did inherit them: {shim_fds:?}"
    );
    assert_worker_has_only_its_own_fds(&srv);
}
