"""The .htaccess files the project ships (htaccess/), used unchanged in a
web root and in a sub-directory, through the private Apache (mod_fcgid,
mod_cgid and mod_rewrite loaded). mod_fastcgi is not packaged in Debian 12,
so fastcgi.htaccess cannot be tested here."""

import pytest

from e2e_harness import REPO

TOKEN = "Token 9944b09199c62bcf9418ad846dd0e4bb"


def shipped(name):
    return (REPO / "htaccess" / name).read_text()


def fields(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# (file, is the app kept loaded between requests?)
SHIPPED = [
    pytest.param("auto.htaccess", True, id="auto"),
    pytest.param("fcgid.htaccess", True, id="fcgid"),
    pytest.param("cgi.htaccess", False, id="cgi"),
]


@pytest.mark.parametrize("mount", ["", "blog"])
@pytest.mark.parametrize("name,persistent", SHIPPED)
def test_shipped_htaccess_serves_the_app(make_site, name, persistent, mount):
    site = make_site("flask", htaccess=shipped(name), mount=mount).start()
    prefix = f"/{mount}" if mount else ""

    r = site.get(f"{prefix}/?q=1")
    assert r.status_code == 200, r.text
    got = fields(r.text)
    assert got["url_for(upload)"] == f"{prefix}/upload"
    assert got["script_root"] == prefix
    assert got["path"] == "/"
    assert got["query"] == "q=1"

    # The Authorization header reaches the app; no header stays no header.
    r = site.get(f"{prefix}/auth", headers={"Authorization": TOKEN})
    assert (r.status_code, r.text) == (200, f"authorization={TOKEN}\n")
    r = site.get(f"{prefix}/auth")
    assert (r.status_code, r.text) == (200, "authorization=(none)\n")

    # FastCGI keeps one process; CGI starts one per request.
    pids = {site.get(f"{prefix}/pid").text for _ in range(3)}
    if persistent:
        assert len(pids) == 1, pids
    else:
        assert len(pids) == 3, pids


@pytest.mark.parametrize("name,persistent", SHIPPED)
def test_shipped_htaccess_refuses_to_serve_the_config(make_site, name, persistent):
    site = make_site("flask", htaccess=shipped(name)).start()
    (site.dir / "debug.log").write_text("secret log line\n")
    assert site.get("/").status_code == 200
    for path in ("/site.toml", "/debug.log"):
        r = site.get(path)
        assert r.status_code in (403, 404), (path, r.status_code, r.text)
        assert "wsgi_app" not in r.text and "secret log line" not in r.text, path
    assert site.get("/site.toml").status_code == 403


def test_shipped_htaccess_serves_static_files_itself(make_site):
    site = make_site(htaccess=shipped("auto.htaccess")).start()
    r = site.get("/static/pages/site.css")
    assert r.status_code == 200
    assert r.content == (site.www / "static/pages/site.css").read_bytes()
    r = site.get("/hello/")
    assert r.status_code == 200, r.text
    assert "<h1>Hello from djsite</h1>" in r.text
