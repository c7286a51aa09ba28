"""A site in a sub-directory (/blog/: mysite.fcgi and site.toml in
www/blog/) under Apache + mod_fcgid (htaccess/auto.htaccess in the folder)
and under lighttpd (lighttpd-bin-path.conf moved under /blog as
lighttpd-two-sites.conf shows): Django's reverse() and Flask's url_for()
must give /blog/..., never /blog/mysite.fcgi/..."""

import pytest

import site_checks as check
from e2e_harness import REPO, FrontedSite, lighttpd_bin_path, start_site

PREFIX = "/blog"
AUTO = (REPO / "htaccess" / "auto.htaccess").read_text()


def blog_site(make, kind, server):
    name = f"sub-{server}-{kind[:2]}"
    if server == "apache":
        return make(kind, name=name, mount="blog", htaccess=AUTO)
    site = make(kind, cls=FrontedSite, name=name, mount="blog")
    site.front = lighttpd_bin_path(site)
    return site


@pytest.fixture(scope="module", params=["apache", "lighttpd"])
def server(request):
    return request.param


@pytest.fixture(scope="module")
def dj(make_module_site, server):
    site = start_site(blog_site(make_module_site, "django", server))
    yield site
    site.stop()


@pytest.fixture(scope="module")
def fl(make_module_site, server):
    site = start_site(blog_site(make_module_site, "flask", server))
    yield site
    site.stop()


class TestSubdir(check.SiteChecks):
    """Mounted at /blog."""

    prefix = PREFIX


def test_django_sees_blog_as_its_script_name(dj):
    r = dj.get(f"{PREFIX}/")
    assert r.status_code == 200, r.text
    assert check.dd(r.text, "path-info") == "/"
    assert check.dd(r.text, "form-url") == f"{PREFIX}/form/"


def test_urls_outside_blog_do_not_reach_the_app(dj):
    r = dj.get("/hello/")
    assert r.status_code == 404
    assert "djsite" not in r.text


def test_site_toml_is_403(fl):
    r = fl.get(f"{PREFIX}/site.toml")
    assert r.status_code == 403, r.text
    assert "wsgi_app" not in r.text
