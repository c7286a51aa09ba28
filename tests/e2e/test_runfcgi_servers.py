"""`mysite.fcgi runfcgi` started by hand, the old how-to's way, behind the
servers that connect to it:

- Apache + mod_proxy_fcgi (shim-templates/apache-proxy-fcgi.conf, today's
  FastCGIExternalServer) in front of the seed's two examples:
  `runfcgi method=prefork socket=... pidfile=...` (daemonized, stopped with
  kill `cat pidfile`) and `runfcgi method=threaded host=127.0.0.1 port=N`;
- lighttpd "host"/"port" (shim-templates/lighttpd-host-port.conf) in front
  of `runfcgi method=prefork host=127.0.0.1 port=N`.

The Django project and the Flask app get the checks of site_checks.py.
"""

import time

import pytest

import site_checks as check
from e2e_harness import (
    FrontedSite,
    RunFcgiServer,
    alive,
    apache_proxy_fcgi,
    descendants,
    fcgi_get,
    free_port,
    lighttpd_host_port,
    processes_referring_to,
    start_site,
)

# Each: (web server, how runfcgi is started).
SETUPS = ["apache-prefork-socket", "apache-threaded-tcp", "lighttpd-prefork-tcp"]


def runfcgi_site(make, kind, setup, **kw):
    """A site of `kind` behind the setup's web server, with its runfcgi
    server; not yet started. make: make_site or make_module_site."""
    site = make(kind, cls=FrontedSite, **kw)
    log = site.root / "runfcgi.log"
    if setup == "apache-prefork-socket":
        # The seed: `runfcgi method=prefork socket=/home/user/mysite.sock
        # pidfile=django.pid`, started in the folder of mysite.fcgi; the pid
        # file relative to it (kept out of the web root).
        site.back = RunFcgiServer(site.binary, [
            "method=prefork", f"socket={site.sock}", "pidfile=../s/django.pid",
        ], log)
        site.front = apache_proxy_fcgi(site, sock=site.sock)
    elif setup == "apache-threaded-tcp":
        # The seed: `runfcgi method=threaded host=127.0.0.1 port=3033`.
        port = free_port()
        site.back = RunFcgiServer(site.binary, [
            "method=threaded", "host=127.0.0.1", f"port={port}",
        ], log)
        site.front = apache_proxy_fcgi(site, port=port)
    elif setup == "lighttpd-prefork-tcp":
        # lighttpd-host-port.conf's own start line, with method=prefork.
        port = free_port()
        site.back = RunFcgiServer(site.binary, [
            "method=prefork", "host=127.0.0.1", f"port={port}", "pidfile=../s/mysite.pid",
        ], log, env={"FCGI_WEB_SERVER_ADDRS": "127.0.0.1"})
        site.front = lighttpd_host_port(site, port)
    else:
        raise ValueError(setup)
    return site


@pytest.fixture(scope="module", params=SETUPS)
def setup(request):
    return request.param


@pytest.fixture(scope="module")
def dj(make_module_site, setup):
    site = start_site(runfcgi_site(make_module_site, "django", setup, name=f"{setup}-dj"))
    yield site
    site.stop()


@pytest.fixture(scope="module")
def fl(make_module_site, setup):
    site = start_site(runfcgi_site(make_module_site, "flask", setup, name=f"{setup}-fl"))
    yield site
    site.stop()


class TestRunfcgiServers(check.SiteChecks):
    """Behind each front end of SETUPS."""


# -- the Django project ---------------------------------------------------------


def test_media_alias_serves_files(dj):
    check.media_alias(dj)


# -- the Flask app ----------------------------------------------------------------


def test_private_files_are_403_and_public_ones_served(fl, setup):
    """The template's rules refuse what the shipped .htaccess files refuse
    (Python source, databases, backups, dot folders) and serve the rest."""
    check.private_files_refused(fl)
    assert fl.get("/").status_code == 200
    # A .py that no file stands behind: Apache's rules refuse files that
    # exist, so the app answers (Flask's 404); lighttpd's go by the URL.
    r = fl.get("/nothing.py")
    want = 404 if setup.startswith("apache") else 403
    assert r.status_code == want, (r.status_code, r.text[:300])
    if want == 404:  # Flask's page (werkzeug's doctype), not Apache's
        assert r.text.startswith("<!doctype html>") and "Not Found" in r.text, r.text[:300]


def test_site_toml_and_logs_are_403(fl):
    (fl.dir / "debug.log").write_text("secret log line\n")
    for path in ("/site.toml", "/debug.log"):
        r = fl.get(path)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "wsgi_app" not in r.text and "secret log line" not in r.text
    assert fl.get("/").status_code == 200


# -- stopping the daemon --------------------------------------------------------------


def test_prefork_daemon_stops_with_kill_cat_pidfile(make_site):
    site = runfcgi_site(make_site, "flask", "apache-prefork-socket")
    start_site(site)
    server = site.back
    # The foreground process exited 0 and the daemon is not a child of ours:
    # it lives on in a session of its own, its pid in the pid file.
    pidfile = site.sockdir / "django.pid"
    assert server.exit_code == 0
    assert pidfile.read_text() == f"{server.pid}\n"
    assert alive(server.pid)
    r = site.get("/pid")
    assert r.status_code == 200, r.text
    worker = int(r.text.removeprefix("pid=").strip())
    tree = descendants(server.pid)
    assert worker in tree, (worker, tree)
    assert site.sock.is_socket()

    # kill `cat pidfile`
    pid = int(pidfile.read_text())
    assert server.stop(timeout=10), f"runfcgi (pid {pid}) did not stop within 10 s of SIGTERM"
    assert not pidfile.exists(), "pid file left behind"
    assert not site.sock.exists(), "socket file left behind"
    gone = time.monotonic() + 5
    while time.monotonic() < gone and any(alive(p) for p in tree):
        time.sleep(0.05)
    assert [p for p in tree if alive(p)] == [], "children or workers outlived the server"
    left = processes_referring_to(site.www)
    assert left == [], "\n".join(d for _, d in left)
    # Apache is still up and says so: 503 from mod_proxy_fcgi, not a hang.
    r = site.get("/pid")
    assert r.status_code == 503, r.text


# -- FCGI_WEB_SERVER_ADDRS on a TCP port ------------------------------------------------


@pytest.mark.parametrize("method", ["prefork", "threaded"])
def test_fcgi_web_server_addrs_keeps_other_peers_out(make_site, method):
    # The templates' TCP start lines set FCGI_WEB_SERVER_ADDRS=127.0.0.1 "so
    # that fcgi-shim itself refuses anyone else". Another local address
    # (127.0.0.2, also loopback) stands for anyone else.
    # No web server: this client speaks FastCGI to the runfcgi server.
    site = make_site("flask", cls=FrontedSite, name=f"addrs-{method}")
    port = free_port()
    server = site.back = RunFcgiServer(site.binary, [
        f"method={method}", "host=127.0.0.1", f"port={port}", "pidfile=../s/mysite.pid",
    ], site.root / "runfcgi.log", env={"FCGI_WEB_SERVER_ADDRS": "127.0.0.1"})
    server.start()
    ok = fcgi_get("127.0.0.1", port, "/pid")
    assert ok is not None and b"\r\n\r\npid=" in ok, ok
    start = site.log_size()
    assert fcgi_get("127.0.0.1", port, "/pid", source="127.0.0.2") is None
    assert site.wait_for_log(
        r"refused a connection from 127\.0\.0\.2: not in FCGI_WEB_SERVER_ADDRS", start)
    # The server is still there for the web server.
    again = fcgi_get("127.0.0.1", port, "/pid")
    assert again is not None and b"pid=" in again, again
