"""The Django project and the Flask app through an Apache without any
FastCGI module (mod_cgid only), with the shipped htaccess/auto.htaccess
unchanged: it must fall back to plain CGI, where mysite.fcgi serves one
request and exits (README, "Apache without FastCGI")."""

import pytest

import site_checks as check
from e2e_harness import APACHE_MODULES, REPO, start_site

CGI_ONLY = [m for m in APACHE_MODULES if m[0] != "fcgid_module"]
AUTO = (REPO / "htaccess" / "auto.htaccess").read_text()

PROBE = '''\
import os


def application(environ, start_response):
    keys = ("wsgi.run_once", "wsgi.multiprocess", "wsgi.multithread")
    lines = [f"{k}={environ[k]!r}" for k in keys]
    lines += [f"{k}={environ.get(k)!r}" for k in ("SCRIPT_NAME", "PATH_INFO", "GATEWAY_INTERFACE")]
    lines.append(f"pid={os.getpid()}")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("\\n".join(lines) + "\\n").encode()]
'''


def cgi_site(make, kind, name):
    return make(kind, name=name, htaccess=AUTO, apache_modules=CGI_ONLY)


@pytest.fixture(scope="module")
def dj(make_module_site):
    site = start_site(cgi_site(make_module_site, "django", "cgi-dj"))
    yield site
    site.stop()


@pytest.fixture(scope="module")
def fl(make_module_site):
    site = start_site(cgi_site(make_module_site, "flask", "cgi-fl"))
    yield site
    site.stop()


class TestApacheCgi(check.SiteChecks):
    """Under plain CGI. The upload meets no FcgidMaxRequestLen: the body
    is piped through."""


def test_auto_htaccess_falls_back_to_cgi(make_module_site):
    site = cgi_site(make_module_site, "wsgi", "cgi-probe")
    (site.app / "cgiprobe.py").write_text(PROBE)
    site.write_config(wsgi_app="cgiprobe:application")
    start_site(site)
    try:
        bodies = []
        for _ in range(3):
            r = site.get("/a/b")
            assert r.status_code == 200, r.text
            bodies.append(r.text)
        for body in bodies:
            got = dict(line.split("=", 1) for line in body.splitlines())
            assert {k: v for k, v in got.items() if k != "pid"} == {
                "wsgi.run_once": "True",
                "wsgi.multiprocess": "True",
                "wsgi.multithread": "False",
                "SCRIPT_NAME": "''",
                "PATH_INFO": "'/a/b'",
                "GATEWAY_INTERFACE": "'CGI/1.1'",
            }, body
        assert len({b.rsplit("pid=", 1)[1] for b in bodies}) == 3, bodies
        # mod_cgid ran it: Apache logs nothing of mod_fcgid.
        assert "fcgid" not in site.error_log_text()
    finally:
        site.stop()


# -- the Django project ---------------------------------------------------------


def test_django_every_request_has_a_process_of_its_own(dj):
    pids = set()
    for _ in range(3):
        r = dj.get("/whoami/")
        assert r.status_code == 200, r.text
        pids.add(r.text.splitlines()[0])
    assert len(pids) == 3, pids


# -- the Flask app ----------------------------------------------------------------


def test_flask_every_request_has_a_process_of_its_own(fl):
    pids = {fl.get("/pid").text for _ in range(3)}
    assert len(pids) == 3, pids


def test_site_toml_is_403(fl):
    r = fl.get("/site.toml")
    assert r.status_code == 403, r.text
    assert "wsgi_app" not in r.text
