"""The lighttpd templates used exactly as shipped, only the placeholders
their header lists replaced (no rewrite changed, no entry converted):

- shim-templates/lighttpd-host-port.conf in front of the start line it
  gives (`FCGI_WEB_SERVER_ADDRS=127.0.0.1 ./mysite.fcgi runfcgi host=127.0.0.1
  port=3033 pidfile=...`), run by the site's user (not www-data): the
  how-to's url.rewrite-once sends every URL but /media to the app, and
  /favicon.ico to /media;
- shim-templates/lighttpd-two-sites.conf: lighttpd starts the three
  mysite.fcgi itself (bin-path), chosen by $HTTP["host"], the first host
  with a second app under /blog.

(apache-proxy-fcgi.conf and lighttpd-socket.conf as shipped:
test_runfcgi_other_user.py.)
"""

import os
import time

from e2e_harness import (
    VENV,
    FrontedSite,
    Lighttpd,
    UserRunFcgi,
    free_port,
    from_template,
    owner_of,
    parent_of,
    private_sockdir,
    processes_referring_to,
    render_toml,
    site_user,
    start_lines,
    wait_for_port,
    www_ids,
)


def ppid_exe(pid):
    """The executable of pid's parent: which mysite.fcgi runs that worker."""
    ppid = parent_of(pid)
    assert ppid is not None, f"worker {pid} is gone"
    return os.readlink(f"/proc/{ppid}/exe")


def worker_pid(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return int(r.text.removeprefix("pid=").strip())


def test_lighttpd_host_port_as_shipped(make_site):
    uid, gid = site_user()
    site = make_site("flask", cls=FrontedSite, name="shipped-host-port")
    private_sockdir(site, uid)
    media = site.root / "media"
    media.mkdir()
    (media / "favicon.ico").write_bytes(b"icon bytes\n")
    (media / "style.css").write_text("p {}\n")
    port = free_port()
    site.front = Lighttpd(site.root / "lt", from_template("lighttpd-host-port.conf", [
        ('server.document-root := "/home/user/public_html"',
         f'server.document-root := "{site.www}"'),
        ('"port" => 3033,', f'"port" => {port},'),
        ('"/media/" => "/home/user/django/contrib/admin/media/"', f'"/media/" => "{media}/"'),
    ]))
    line = start_lines("lighttpd-host-port.conf")
    assert line.startswith("cd /home/user/public_html\nFCGI_WEB_SERVER_ADDRS=127.0.0.1 \\\n"), line
    pidfile = site.sockdir / "mysite.pid"
    line = (line.replace("/home/user/public_html", str(site.dir))
            .replace("port=3033", f"port={port}")
            .replace("/home/user/mysite.pid", str(pidfile)))
    assert "/home/user" not in line and "3033" not in line, line
    site.back = UserRunFcgi(line, pidfile, site.root / "runfcgi.log", uid, gid)
    site.start()
    assert wait_for_port(port)
    # Everything but /media goes to the app, which sees SCRIPT_NAME "".
    r = site.get("/")
    assert r.status_code == 200 and "url_for(index)=/\n" in r.text, r.text
    assert owner_of(worker_pid(site.get("/pid"))) == uid
    assert site.get("/media/style.css").text == "p {}\n"
    r = site.get("/favicon.ico")
    assert (r.status_code, r.content) == (200, b"icon bytes\n")
    # site.toml is not served: the template's url.access-deny refuses it
    # before the rewrite could hand it to the app.
    r = site.get("/site.toml")
    assert r.status_code == 403 and "wsgi_app" not in r.text, (r.status_code, r.text)
    # The template says 127.0.0.1: the server says so, and warns of nothing.
    log = site.back.log.read_text()
    assert f"listening on 127.0.0.1:{port}" in log, log
    assert "warning" not in log, log
    assert site.back.stop()
    assert not pidfile.exists()


HOST1 = "www.website1.com"
HOST2 = "www.website2.com"


def test_lighttpd_two_sites_as_shipped(make_site):
    one = make_site("flask", cls=FrontedSite, name="shipped-2s-one")
    two = make_site("flask", cls=FrontedSite, name="shipped-2s-two")
    # The template's /blog app: its own folder in site one's web root, with
    # its own mysite.fcgi and site.toml (the same Flask app, mounted there).
    blog = one.www / "blog"
    blog.mkdir()
    (blog / "mysite.fcgi").write_bytes(one.binary.read_bytes())
    os.chmod(blog / "mysite.fcgi", 0o755)
    (blog / "site.toml").write_text(render_toml({
        "python": str(VENV / "bin" / "python3"),
        "search_path": [str(one.app)],
        "wsgi_app": "flaskapp:app",
        "log_file": str(one.logdir / "blog.log"),
    }))
    for site, label in ((one, "one"), (two, "two")):
        (site.www / "which.txt").write_text(f"site {label}\n")
    front = Lighttpd(one.root / "lt", from_template("lighttpd-two-sites.conf", [
        ("/foo/site1", str(one.www)),
        ("/foo/site2", str(two.www)),
        # Somewhere lighttpd's user may create sockets.
        ("/run/lighttpd/", f"{one.sockdir}/"),
    ]))
    one.front = two.front = front
    one.start()

    def get(host, path):
        return one.get(path, headers={"Host": host})

    # Each host its own document root ...
    assert get(HOST1, "/which.txt").text == "site one\n"
    assert get(HOST2, "/which.txt").text == "site two\n"
    # ... its own app, spawned by lighttpd from that folder's mysite.fcgi,
    # as www-data.
    for host, path, binary in ((HOST1, "/pid", one.binary), (HOST1, "/blog/pid", blog / "mysite.fcgi"),
                               (HOST2, "/pid", two.binary)):
        pid = worker_pid(get(host, path))
        assert ppid_exe(pid) == str(binary), (host, path)
        assert owner_of(pid) == www_ids()[0]
    # The blog app is mounted at /blog; the others at the root.
    assert "url_for(index)=/blog/\n" in get(HOST1, "/blog/").text
    assert "url_for(index)=/\n" in get(HOST1, "/").text
    assert "url_for(index)=/\n" in get(HOST2, "/").text
    for host, path in ((HOST1, "/site.toml"), (HOST1, "/blog/site.toml"), (HOST2, "/site.toml")):
        r = get(host, path)
        assert r.status_code == 403 and "wsgi_app" not in r.text, (host, path, r.status_code)
    # "max-procs" => 2 for each site, 1 for the blog: lighttpd's sockets -0, -1.
    socks = sorted(p.name for p in one.sockdir.iterdir() if p.is_socket())
    assert socks == ["site1-blog.socket-0", "site1.socket-0", "site1.socket-1",
                     "site2.socket-0", "site2.socket-1"], socks
    # lighttpd's stop takes the apps along (SIGTERM: each finishes, then
    # exits within its grace of about 3 s).
    assert front.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(processes_referring_to(s.www) for s in (one, two)):
        time.sleep(0.1)
    for site in (one, two):
        left = processes_referring_to(site.www)
        assert left == [], left
