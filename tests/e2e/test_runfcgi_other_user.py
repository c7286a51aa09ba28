"""`mysite.fcgi runfcgi` run by the site's own user, who is NOT the web
server's user, behind Apache + mod_proxy_fcgi and lighttpd "socket" (both
running as www-data), each started with the start line its shipped template
gives (shim-templates/apache-proxy-fcgi.conf, lighttpd-socket.conf), the
templates themselves used as shipped apart from their placeholders.

connect(2) on a unix socket needs write permission on it. The failure mode,
shown here: with the default umask 022 the socket is rwxr-xr-x, the web
server gets "Permission denied" and answers 503, and its error log says so
(the line the README quotes). The documented fix, umask=000, makes the
socket rwxrwxrwx; the socket's directory (owner: the site's user, group
www-data, mode 0750) keeps every other local user out.
"""

import os
import pwd
import re
import stat
import subprocess
import time

import pytest

from e2e_harness import (
    SERVER_ENV,
    UMASK,
    VENV,
    WWW_USER,
    FrontedSite,
    UserRunFcgi,
    alive,
    apache_proxy_fcgi,
    lighttpd_socket,
    owner_of,
    private_sockdir,
    processes_referring_to,
    restart_script,
    site_user,
    start_lines,
    tail,
)


def template_start(site, template, uid, gid, umask=True):
    line = start_lines(template)
    assert UMASK in line, f"{template} no longer starts runfcgi with{UMASK}: {line}"
    if not umask:
        line = line.replace(UMASK, "")
    line = (line.replace("/home/user/public_html", str(site.dir))
            .replace("/home/user/mysite.sock", str(site.sock))
            .replace("/home/user/mysite.pid", str(site.sockdir / "mysite.pid")))
    assert "/home/user" not in line, line
    return UserRunFcgi(line, site.sockdir / "mysite.pid", site.root / "runfcgi.log", uid, gid)


def connect_as(user, path):
    """errno of connect(2) to the unix socket at path, made as `user`
    (0: it connected)."""
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n"
             "    s.connect(sys.argv[1])\n"
             "    print(0)\n"
             "except OSError as e:\n"
             "    print(e.errno)\n")
    out = subprocess.run([str(VENV / "bin" / "python3"), "-c", probe, str(path)],
                         user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[],
                         capture_output=True, text=True, timeout=30, env=SERVER_ENV)
    return int(out.stdout.strip())


@pytest.fixture(scope="module")
def user_ids():
    return site_user()


# Apache mod_proxy_fcgi (shim-templates/apache-proxy-fcgi.conf); the error
# log line, as Apache 2.4 writes it, that the README quotes.
APACHE_DENIED = (r"\[proxy:error\] \[pid \d+:tid \d+\] \(13\)Permission denied: AH02454: "
                 r"FCGI: attempt to connect to Unix domain socket {sock} \(localhost:8000\) "
                 r"failed\n.*\[proxy_fcgi:error\] \[pid \d+:tid \d+\] \[client [0-9.:]+\] "
                 r"AH01079: failed to make connection to backend: localhost\n")
# lighttpd 1.4.69's lines for the same refusal.
LIGHTTPD_DENIED = (r"\(gw_backend\.c\.\d+\) establishing connection failed: socket: "
                   r"unix:{sock}: Permission denied\n.*\(gw_backend\.c\.\d+\) all handlers "
                   r"for /mysite\.fcgi\? on /mysite\.fcgi are down\.\n")


@pytest.mark.parametrize("server", ["apache", "lighttpd"])
def test_runfcgi_as_the_sites_user_needs_the_templates_umask(make_site, user_ids, server):
    uid, gid = user_ids
    site = make_site("flask", cls=FrontedSite, name=f"user-{server}")
    private_sockdir(site, uid)
    media = site.root / "media"
    media.mkdir()
    (media / "favicon.ico").write_bytes(b"icon bytes\n")
    if server == "apache":
        template = "apache-proxy-fcgi.conf"
        site.front = apache_proxy_fcgi(site, sock=site.sock)
        denied = APACHE_DENIED.format(sock=re.escape(str(site.sock)))
    else:
        template = "lighttpd-socket.conf"
        site.front = lighttpd_socket(site, media, static_files=False)
        denied = LIGHTTPD_DENIED.format(sock=re.escape(str(site.sock)))

    # 1. Without umask= (the daemon's default 022): the socket is the site
    # user's, rwxr-xr-x; the web server may not connect.
    site.back = template_start(site, template, uid, gid, umask=False)
    site.start()
    mode = stat.S_IMODE(os.lstat(site.sock).st_mode)
    assert mode == 0o755, oct(mode)
    assert os.lstat(site.sock).st_uid == uid
    # runfcgi said so when it started, with the fix.
    out = site.back.log.read_text()
    assert re.search(r"socket \S+ has mode 755: only uid \d+ \(and root\) can connect, a web "
                     r"server running as another user gets \"Permission denied\"", out), out
    assert "umask=000" in out
    r = site.get("/pid")
    assert r.status_code == 503, (r.status_code, r.text)
    assert connect_as(WWW_USER, site.sock) == 13  # EACCES
    deadline = time.monotonic() + 10
    while not re.search(denied, site.error_log_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert re.search(denied, site.error_log_text()), site.error_log_text()
    assert site.back.stop()
    assert not site.sock.exists()

    # 2. The template's start line, umask=000 included: served, by the
    # site's user's Python.
    site.back = template_start(site, template, uid, gid)
    if server == "lighttpd":
        # lighttpd disables a backend that failed for a few seconds
        # (fastcgi "disable-time", default 1 s in 1.4.69).
        time.sleep(2)
    site.back.start()
    mode = stat.S_IMODE(os.lstat(site.sock).st_mode)
    assert mode == 0o777, oct(mode)
    deadline = time.monotonic() + 15
    while (r := site.get("/pid")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert r.status_code == 200, (r.status_code, r.text)
    worker = int(r.text.removeprefix("pid=").strip())
    assert owner_of(worker) == uid, "the app does not run as the site's user"
    assert owner_of(site.back.pid) == uid
    # No note about the socket's mode this time: the mode was asked for.
    second = site.back.log.read_text()[len(out):]
    assert "runfcgi: socket" not in second and "has mode" not in second, second
    # The rest of the template works as shipped.
    r = site.get("/")
    assert r.status_code == 200 and "flaskapp index" in r.text, r.text
    assert "url_for(index)=/\n" in r.text, r.text
    if server == "lighttpd":
        # The how-to's rewrite-once: /favicon.ico from /media, /media/ aliased.
        r = site.get("/favicon.ico")
        assert (r.status_code, r.content) == (200, b"icon bytes\n")
    # Anyone else may connect to a 0777 socket, but cannot reach it: the
    # directory is the site user's and the web server's only.
    assert connect_as(WWW_USER, site.sock) == 0
    assert connect_as("nobody", site.sock) == 13
    # kill `cat pidfile` stops it all.
    pid = site.back.pid
    assert site.back.stop(), f"runfcgi (pid {pid}) did not stop within 10 s"
    assert not site.sock.exists() and not (site.sockdir / "mysite.pid").exists()
    left = [d for p, d in processes_referring_to(site.www)]
    assert left == [], left


def test_restart_script_as_the_sites_user(make_site, user_ids):
    """shim-templates/restart-runfcgi.sh with only PROJDIR replaced, run twice
    by the site's user (not www-data) behind Apache as www-data: served after
    each run (its UMASK=000 lets Apache connect), one server left."""
    uid, gid = user_ids
    site = make_site("flask", cls=FrontedSite, name="user-restart")
    projdir = site.www  # mysite.fcgi and site.toml: the site user's folder
    os.chown(projdir, uid, gid)
    os.chown(site.logdir, uid, -1)
    script, sock, pidfile = restart_script(site, projdir)
    site.start()
    log = site.root / "restart.log"
    site.back = UserRunFcgi(str(script), pidfile, log, uid, gid)
    pids = []
    for run in (1, 2):
        site.back.start()
        pids.append(site.back.pid)
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o777
        assert os.lstat(sock).st_uid == uid
        r = site.get("/pid")
        assert r.status_code == 200, (run, r.status_code, r.text, tail(log))
        assert owner_of(int(r.text.removeprefix("pid=").strip())) == uid
    old, new = pids
    assert old != new
    deadline = time.monotonic() + 10
    while alive(old) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(old), "the first server is still running"
