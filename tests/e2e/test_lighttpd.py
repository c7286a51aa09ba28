"""The Django project and the Flask app through lighttpd, with the shipped
configs (shim-templates/): lighttpd spawning mysite.fcgi itself
(lighttpd-bin-path.conf), and lighttpd forwarding to a socket that
mysite.fcgi listens on (lighttpd-socket.conf), started with spawn-fcgi or
with `mysite.fcgi runfcgi`."""

import threading
import time

import pytest
import requests

import site_checks as check
from e2e_harness import (
    FrontedSite,
    RunFcgi,
    SpawnFcgi,
    lighttpd_bin_path,
    lighttpd_socket,
    start_site,
)

SETUPS = ["bin-path", "spawn-fcgi", "runfcgi"]


def lighttpd_site(make, kind, setup, **kw):
    """A site of `kind` behind lighttpd in one of SETUPS, not yet started.
    make: the make_site or make_module_site fixture."""
    site = make(kind, cls=FrontedSite, **kw)
    if setup == "bin-path":
        site.front = lighttpd_bin_path(site)
    else:
        site.front = lighttpd_socket(site)
        if setup == "spawn-fcgi":
            site.back = SpawnFcgi(site.binary, site.sock)
        else:
            site.back = RunFcgi(site.binary, site.sock, site.root / "runfcgi.log")
    return site


@pytest.fixture(scope="module", params=SETUPS)
def setup(request):
    return request.param


@pytest.fixture(scope="module")
def dj(make_module_site, setup):
    site = start_site(lighttpd_site(make_module_site, "django", setup, name=f"lt-{setup}-dj"))
    yield site
    site.stop()


@pytest.fixture(scope="module")
def fl(make_module_site, setup):
    site = start_site(lighttpd_site(make_module_site, "flask", setup, name=f"lt-{setup}-fl"))
    yield site
    site.stop()


class TestLighttpd(check.SiteChecks):
    """Behind lighttpd, in each of SETUPS."""


# -- the Django project ---------------------------------------------------------


def test_media_alias_serves_files(dj):
    check.media_alias(dj)


# -- the Flask app ----------------------------------------------------------------


def test_private_files_are_403_and_public_ones_served(fl):
    """The template's rules refuse what the shipped .htaccess files refuse
    (Python source, databases, backups, dot folders) and serve the rest."""
    check.private_files_refused(fl)
    assert fl.get("/").status_code == 200
    # The rules go by the URL: a .py that no file stands behind is refused too.
    r = fl.get("/nothing.py")
    assert r.status_code == 403, (r.status_code, r.text[:300])


def test_site_toml_is_403(fl):
    (fl.dir / "debug.log").write_text("secret log line\n")
    for path in ("/site.toml", "/debug.log", "/mysite.fcgi/../site.toml"):
        r = fl.get(path)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "wsgi_app" not in r.text and "secret log line" not in r.text
    # The app itself still answers beside them.
    assert fl.get("/").status_code == 200


# -- lifecycle, bin-path only -------------------------------------------------------


def test_touch_under_load_loses_no_request(make_site):
    # lighttpd spreads requests over its max-procs (2) shims, and several
    # connections may wait in one shim's listen queue while it reloads.
    site = lighttpd_site(make_site, "django", "bin-path")
    start_site(site)
    assert site.get("/version/").text == "version one\n"
    results = []
    stop = threading.Event()

    def hammer():
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = site.get("/version/", session=s, timeout=45)
                    results.append((r.status_code, r.text))
                except requests.RequestException as e:
                    results.append((None, repr(e)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 6):
            time.sleep(0.5)
            site.edit("pages/version.py", f'VERSION = "version load {i}"\n')
            site.touch_binary()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    failed = [r for r in results if r[0] != 200]
    assert len(results) >= 30, f"only {len(results)} requests made: {results}"
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:10]}"
    allowed = {"version one\n"} | {f"version load {i}\n" for i in range(1, 6)}
    assert {body for _, body in results} <= allowed
    # Every shim serves the new code, not only the one that answers first.
    for _ in range(8):
        r = site.get("/version/")
        assert (r.status_code, r.text) == (200, "version load 5\n")


def test_nothing_outlives_lighttpd(make_site):
    site = lighttpd_site(make_site, "flask", "bin-path")
    start_site(site)
    assert site.get("/").status_code == 200
    assert site.stop(), "lighttpd did not stop within 15 s"
    assert site.leftovers == [], "processes left after lighttpd stopped:\n" + "\n".join(
        d for _, d in site.leftovers
    )
