"""A runfcgi server's life behind Apache + mod_proxy_fcgi
(shim-templates/apache-proxy-fcgi.conf):

- prefork with `maxrequests=3 maxchildren=4` under load: children are
  replaced every 3 requests without failing one, never more than 4 at once;
  `touch mysite.fcgi` during load loses no request and the new code is
  served afterwards;
- the how-to's restart script (shim-templates/restart-runfcgi.sh) run twice
  in a row: the site serves after each run, the old server is gone and one
  server is left, and the script's PYTHONPATH (from an otherwise empty
  environment) reaches the app.
"""

import os
import subprocess
import threading
import time
from collections import Counter

import pytest
import requests

import site_checks as check
from e2e_harness import (
    FrontedSite,
    RunFcgiServer,
    alive,
    apache_proxy_fcgi,
    descendants,
    live_pids,
    processes_referring_to,
    processes_running,
    restart_script,
    start_site,
    www_ids,
)

MAXREQUESTS = 3
MAXCHILDREN = 4


def hammer(site, path, threads, per_thread=None, until=None):
    """GET path from `threads` threads, each `per_thread` times or until the
    event `until` is set; returns [(status or None, body)]."""
    results = []
    lock = threading.Lock()

    def run():
        with requests.Session() as s:
            n = 0
            while (n < per_thread) if per_thread is not None else not until.is_set():
                n += 1
                try:
                    r = site.get(path, session=s, timeout=45)
                    item = (r.status_code, r.text)
                except requests.RequestException as e:
                    item = (None, repr(e))
                with lock:
                    results.append(item)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    return workers, results


class ChildCounter:
    """Samples, every 10 ms, how many children the runfcgi supervisor has."""

    def __init__(self, supervisor, binary):
        self.supervisor = supervisor
        self.binary = binary
        self.most = 0
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop.is_set():
            table = live_pids()
            children = [p for p in processes_running(self.binary)
                        if table.get(p) == self.supervisor]
            self.most = max(self.most, len(children))
            self.samples += 1
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def prefork(make_module_site):
    site = make_module_site("django", cls=FrontedSite, name="maxrequests")
    site.back = RunFcgiServer(site.binary, [
        "method=prefork", f"socket={site.sock}", "pidfile=../s/mysite.pid",
        f"maxrequests={MAXREQUESTS}", f"maxchildren={MAXCHILDREN}",
    ], site.root / "runfcgi.log")
    site.front = apache_proxy_fcgi(site, sock=site.sock)
    start_site(site)
    yield site
    site.stop()


def whoami_pid(body):
    fields = check.fields(body)
    return int(fields["pid"])


def test_maxrequests_replaces_children_without_failing_a_request(prefork):
    with ChildCounter(prefork.back.pid, prefork.binary) as counter:
        workers, results = hammer(prefork, "/whoami/", threads=4, per_thread=15)
        for t in workers:
            t.join(120)
    failed = [r for r in results if r[0] != 200]
    assert len(results) == 60
    assert not failed, f"{len(failed)} of 60 requests failed: {failed[:10]}"
    pids = Counter(whoami_pid(body) for _, body in results)
    # Each child has one Python worker, which goes with it after 3 requests.
    assert len(pids) > 1, pids
    assert max(pids.values()) <= MAXREQUESTS, f"a worker served more than 3 requests: {pids}"
    assert len(pids) >= 60 // MAXREQUESTS, pids
    assert counter.samples > 10
    assert counter.most <= MAXCHILDREN, f"{counter.most} children at once"
    # Retiring a child after maxrequests is routine: no warning, no error
    # (a crash would say "child N exited ...; starting another").
    log = prefork.log_text()
    bad = [line for line in log.splitlines() if " warning: " in line or " error: " in line]
    assert bad == [], "\n".join(bad)


def test_touch_under_load_loses_no_request(prefork):
    assert prefork.get("/version/").text == "version one\n"
    stop = threading.Event()
    workers, results = hammer(prefork, "/version/", threads=4, until=stop)

    def after(n):
        # Paced by answers, not by the clock: with maxrequests=3 every
        # third request per child waits for Django to import.
        deadline = time.monotonic() + 60
        while len(results) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(results) >= n, f"only {len(results)} answers within 60 s"

    try:
        for i in range(1, 4):
            after(12 * i)
            prefork.edit("pages/version.py", f'VERSION = "version load {i}"\n')
            prefork.touch_binary()
        after(12 * 4 + 12)
    finally:
        stop.set()
        for t in workers:
            t.join(60)
    failed = [r for r in results if r[0] != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:10]}"
    allowed = {"version one\n"} | {f"version load {i}\n" for i in range(1, 4)}
    bodies = [body for _, body in results]
    assert set(bodies) <= allowed, set(bodies) - allowed
    assert bodies[0] == "version one\n" and bodies[-1] == "version load 3\n", bodies
    # Every child serves the new code, not only the one that answers first.
    for _ in range(12):
        r = prefork.get("/version/")
        assert (r.status_code, r.text) == (200, "version load 3\n")


# -- the restart script -------------------------------------------------------------

# Importable only through the script's PYTHONPATH ("../python" from the
# web root): site.toml's search_path does not name its folder.
PROBE = '''\
"""Django's app, plus /probe/: what the worker was started with."""
import os
import sys

from django.core.wsgi import get_wsgi_application

django_app = get_wsgi_application()


def application(environ, start_response):
    if environ.get("PATH_INFO") != "/probe/":
        return django_app(environ, start_response)
    lines = [f"pid={os.getpid()}", f"file={__file__}",
             f"PYTHONPATH={os.environ.get('PYTHONPATH', '(unset)')}",
             f"LEAK_MARKER={os.environ.get('LEAK_MARKER', '(unset)')}"]
    lines += [f"path={p}" for p in sys.path]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return ["\\n".join(lines).encode() + b"\\n"]
'''


def probe(site):
    r = site.get("/probe/")
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    fields = dict(line.split("=", 1) for line in lines if not line.startswith("path="))
    fields["path"] = [line[5:] for line in lines if line.startswith("path=")]
    return fields


def test_restart_script_twice(make_site):
    site = make_site("django", cls=FrontedSite, name="restart-script")
    uid, gid = www_ids()
    # PROJDIR is the folder of mysite.fcgi and site.toml, owned by the
    # site's user (www-data here): the script puts the socket and the pid
    # file there.
    projdir = site.www
    os.chown(projdir, uid, gid)
    pythondir = site.root / "python"
    pythondir.mkdir()
    (pythondir / "restartprobe.py").write_text(PROBE)
    site.write_config(wsgi_app="restartprobe:application")
    script, sock, pidfile = restart_script(site, projdir)
    start_site(site)  # Apache only: the script starts the app
    assert not pidfile.exists() and not sock.exists()
    # For the logs on failure, and to stop the last server at the end.
    site.back = RunFcgiServer(site.binary, [f"socket={sock}", f"pidfile={pidfile}"],
                              site.root / "restart.log")

    def restart():
        # What a login shell would pass: the script must empty it (env -).
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C",
               "LEAK_MARKER": "from the caller's shell"}
        with open(site.root / "restart.log", "ab") as out:
            proc = subprocess.run([str(script)], env=env, user=uid, group=gid,
                                  extra_groups=[], stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=out, timeout=60)
        assert proc.returncode == 0, (site.root / "restart.log").read_text()
        pid = int(pidfile.read_text())
        site.back.pid = pid
        return pid

    servers = []
    for run in (1, 2):
        pid = restart()
        servers.append(pid)
        assert alive(pid)
        p = probe(site)
        # The app came from ../python through PYTHONPATH, and nothing else
        # of the caller's environment reached it (env -).
        assert p["PYTHONPATH"] == "../python:..", p
        assert p["file"] == str(pythondir / "restartprobe.py"), p
        assert str(pythondir) in p["path"] and str(site.root) in p["path"], p["path"]
        assert p["LEAK_MARKER"] == "(unset)", p
        assert int(p["pid"]) in descendants(pid), (p["pid"], pid)
        check.django_reverse(site)
        r = site.get("/version/")
        assert (r.status_code, r.text) == (200, "version one\n"), f"after run {run}"
        if run == 1:
            first_tree = {pid} | descendants(pid)

    old, new = servers
    assert new != old
    # The old server and everything it had started are gone (the script
    # does not wait for them: they end by themselves) ...
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in first_tree):
        time.sleep(0.1)
    assert [p for p in first_tree if alive(p)] == [], first_tree
    # ... and every process of the site belongs to the one new server.
    tree = {new} | descendants(new)
    table = live_pids()
    stray = [d for p, d in processes_referring_to(site.www) if p not in tree and p in table]
    assert stray == [], "\n".join(stray)
    shims = set(processes_running(site.binary))
    assert [p for p in shims if table.get(p) not in shims] == [new], "not one server"
