"""The old how-to's "Running multiple django sites on one LigHTTPd":
shim-templates/lighttpd-two-sites.conf, two Django sites chosen by
$HTTP["host"] (www.website1.com, www.website2.com), each with its own web
root, its own mysite.fcgi + site.toml + copy of the project + database, and
its own `mysite.fcgi runfcgi` server on a unix socket; plus the template's
second app on the first host, under /blog (the Flask app, a third runfcgi).
"""

import re

import pytest
import requests

import site_checks as check
from e2e_harness import FrontedSite, RunFcgiServer, lighttpd_two_sites, start_site

HOST1 = "www.website1.com"
HOST2 = "www.website2.com"


class HostSite(FrontedSite):
    """A FrontedSite whose requests carry `Host: <host>` (no port: the
    template's $HTTP["host"] == "..." compares the whole header)."""

    host = None

    def get(self, path, session=None, **kw):
        kw["headers"] = {"Host": self.host, **kw.get("headers", {})}
        return super().get(path, session, **kw)

    def post(self, path, session=None, **kw):
        kw["headers"] = {"Host": self.host, **kw.get("headers", {})}
        return super().post(path, session, **kw)


def django_for_host(make, host, label, options):
    site = make("django", cls=HostSite, name=f"2s-{label}")
    site.host = host
    # Each site's own code and settings: its host in ALLOWED_HOSTS (Django
    # answers 400 to any other), its own VERSION and greeting.
    settings = (site.project / "mysite/settings.py").read_text()
    old = 'ALLOWED_HOSTS = ["localhost", "127.0.0.1"]'
    assert old in settings
    site.edit("mysite/settings.py", settings.replace(old, f'ALLOWED_HOSTS = ["{host}"]'))
    site.edit("pages/version.py", f'VERSION = "{label} code"\n')
    site.write_config(env=dict(site.config["env"], DJSITE_GREETING=f"hello from {label}"))
    (site.www / "static" / "which.txt").write_text(f"{label} static file\n")
    site.back = RunFcgiServer(site.binary, options(site), site.root / "runfcgi.log")
    return site


@pytest.fixture(scope="module")
def sites(make_module_site):
    one = django_for_host(make_module_site, HOST1, "website1", lambda s: [
        "method=prefork", f"socket={s.sock}", "pidfile=../s/mysite.pid"])
    two = django_for_host(make_module_site, HOST2, "website2", lambda s: [
        "method=threaded", f"socket={s.sock}", "pidfile=../s/mysite.pid"])
    blog = make_module_site("flask", cls=HostSite, name="2s-blog")
    blog.host = HOST1
    blog.back = RunFcgiServer(blog.binary, [f"socket={blog.sock}", "daemonize=false"],
                              blog.root / "runfcgi.log")
    front = lighttpd_two_sites(one, two, blog)
    for s in (one, two, blog):
        s.front = front
    # The servers first, then lighttpd (once: the three share it).
    for s in (two, blog):
        s.back.start()
    start_site(one)
    yield one, two, blog
    for s in (one, two, blog):
        s.stop()


@pytest.fixture(scope="module")
def one(sites):
    return sites[0]


@pytest.fixture(scope="module")
def two(sites):
    return sites[1]


@pytest.fixture(scope="module")
def blog(sites):
    return sites[2]


def test_each_host_reaches_its_own_site(one, two):
    for site, label in ((one, "website1"), (two, "website2")):
        r = site.get("/version/")
        assert (r.status_code, r.text) == (200, f"{label} code\n"), r.text
        r = site.get("/env/")
        assert (r.status_code, r.text) == (200, f"greeting=hello from {label}\n")


def test_each_host_serves_its_own_static_files(one, two):
    for site, label in ((one, "website1"), (two, "website2")):
        r = site.get("/static/which.txt")
        assert (r.status_code, r.text) == (200, f"{label} static file\n")
        check.django_static_file(site)


def test_admin_login_on_website1(one, admin_password):
    check.django_admin_login(one, admin_password)


def test_admin_login_on_website2(two, admin_password):
    check.django_admin_login(two, admin_password)


def test_a_session_of_one_site_is_no_login_on_the_other(one, two, admin_password):
    # Separate databases: website1's session cookie (sent to website2 too,
    # both are 127.0.0.1 to the client) means nothing there.
    s = requests.Session()
    r = one.get("/admin/login/", session=s)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    r = one.post("/admin/login/?next=/admin/", session=s,
                 data={"csrfmiddlewaretoken": token, "username": "admin",
                       "password": admin_password, "next": "/admin/"})
    assert (r.status_code, r.headers.get("Location")) == (302, "/admin/"), r.text
    assert one.get("/admin/", session=s).status_code == 200
    r = two.get("/admin/", session=s)
    assert (r.status_code, r.headers.get("Location")) == (302, "/admin/login/?next=/admin/")


def test_django_404_and_reverse_per_host(one, two):
    for site in (one, two):
        check.django_404(site)
        check.django_reverse(site)


def test_blog_app_under_website1_only(blog, two):
    check.flask_url_for(blog, prefix="/blog")
    check.flask_authorization(blog, prefix="/blog")
    # website2 has no /blog: its Django answers with its own 404.
    r = two.get("/blog/")
    assert r.status_code == 404, r.text
    assert re.search(r'<p id="not-found-path">(.*?)</p>', r.text).group(1) == "/blog/"


def test_unknown_host_reaches_no_site(one):
    # No $HTTP["host"] block matches: the base config's document root
    # (/nonexistent), no fastcgi.server, so lighttpd's own 404.
    r = requests.get(one.url("/version/"), headers={"Host": "www.website3.com"},
                     timeout=30, allow_redirects=False)
    assert r.status_code == 404, r.text
    assert "code" not in r.text and "djsite" not in r.text, r.text


def test_site_toml_is_403_on_both_hosts(one, two):
    for site in (one, two):
        r = site.get("/site.toml")
        assert r.status_code == 403, r.text
        assert "settings_module" not in r.text
