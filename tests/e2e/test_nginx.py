"""The Django project and the Flask app through nginx, with mysite.fcgi
started by spawn-fcgi on a unix socket, as shim-templates/nginx-spawn-fcgi.conf
says (the template's server block used unchanged but for its paths and
port)."""

import pytest

import site_checks as check
from e2e_harness import FrontedSite, SpawnFcgi, nginx_spawn_fcgi, start_site


def nginx_site(make, kind, name):
    site = make(kind, cls=FrontedSite, name=name)
    site.front = nginx_spawn_fcgi(site)
    site.back = SpawnFcgi(site.binary, site.sock)
    return site


@pytest.fixture(scope="module")
def dj(make_module_site):
    site = start_site(nginx_site(make_module_site, "django", "nx-dj"))
    yield site
    site.stop()


@pytest.fixture(scope="module")
def fl(make_module_site):
    site = start_site(nginx_site(make_module_site, "flask", "nx-fl"))
    yield site
    site.stop()


class TestNginx(check.SiteChecks):
    """Behind nginx. The upload is above nginx's default
    client_max_body_size (1m): the template's 64m must be in effect."""


# -- the Django project ---------------------------------------------------------


def test_media_alias_serves_files(dj):
    check.media_alias(dj)


# -- the Flask app ----------------------------------------------------------------


def test_flask_is_served_by_one_persistent_process(fl):
    pids = {fl.get("/pid").text for _ in range(3)}
    assert len(pids) == 1, pids


def test_private_files_are_403_and_public_ones_served(fl):
    """The template's rules refuse what the shipped .htaccess files refuse
    (Python source, databases, backups, dot folders) and serve the rest."""
    check.private_files_refused(fl)
    assert fl.get("/").status_code == 200
    # The rules go by the URL: a .py that no file stands behind is refused too.
    r = fl.get("/nothing.py")
    assert r.status_code == 403, (r.status_code, r.text[:300])


def test_site_toml_log_and_binary_are_403(fl):
    (fl.dir / "debug.log").write_text("secret log line\n")
    for path in ("/site.toml", "/debug.log", "/mysite.fcgi"):
        r = fl.get(path)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "wsgi_app" not in r.text and "secret log line" not in r.text
    assert fl.get("/").status_code == 200
