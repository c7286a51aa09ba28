"""The .htaccess files the project ships (htaccess/), used unchanged in a
web root and in a sub-directory, through the private Apache (mod_fcgid,
mod_cgid and mod_rewrite loaded). mod_fastcgi is not packaged in Debian 12:
fastcgi.htaccess is run with its one handler line made mod_fcgid's, so that
everything else in it (the rewrite and the deny rules) is tested as shipped.

The deny rules are tested as Apache 2.4 runs them and, with the files'
2.4/2.2 guards swapped and mod_access_compat loaded, as Apache 2.2 would
(Order/Deny and the rewrite rule for dot folders)."""

import pytest

from e2e_harness import APACHE_MODULES, HTACCESS, MODULES, REPO, start_site
from site_checks import PRIVATE, private_refused_public_served, private_site, probe

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
    # Both files exist, so the FilesMatch block refuses them itself.
    for path in ("/site.toml", "/debug.log"):
        r = site.get(path)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "wsgi_app" not in r.text and "secret log line" not in r.text, path


def test_shipped_htaccess_serves_static_files_itself(make_site):
    site = make_site(htaccess=shipped("auto.htaccess")).start()
    r = site.get("/static/pages/site.css")
    assert r.status_code == 200
    assert r.content == (site.www / "static/pages/site.css").read_bytes()
    r = site.get("/hello/")
    assert r.status_code == 200, r.text
    assert "<h1>Hello from djsite</h1>" in r.text


# --- private files in the web root ------------------------------------------

def swap_guards(text):
    """The file as Apache 2.2 would read it: what is guarded for 2.4
    (<IfModule mod_authz_core.c>) is skipped, what is guarded for 2.2 is
    used. (2.4 runs Order/Deny with mod_access_compat.)"""
    positive, negative = "<IfModule mod_authz_core.c>", "<IfModule !mod_authz_core.c>"
    assert positive in text and negative in text
    return text.replace(negative, "\0").replace(positive, negative).replace("\0", positive)


def as_fcgid(name, text):
    """fastcgi.htaccess with mod_fcgid's handler in place of mod_fastcgi's."""
    if name != "fastcgi.htaccess":
        return text
    line = "AddHandler fastcgi-script .fcgi\n"
    assert text.count(line) == 1, "fastcgi.htaccess: expected one mod_fastcgi handler line"
    return text.replace(line, "AddHandler fcgid-script .fcgi\n")


ALL_FOUR = [
    pytest.param("auto.htaccess", id="auto"),
    pytest.param("fcgid.htaccess", id="fcgid"),
    pytest.param("cgi.htaccess", id="cgi"),
    pytest.param("fastcgi.htaccess", id="fastcgi-rules"),
]


@pytest.mark.parametrize("name", ALL_FOUR)
def test_shipped_htaccess_refuses_private_files_and_serves_the_rest(make_site, name):
    site = start_site(private_site(make_site, as_fcgid(name, shipped(name))))
    private_refused_public_served(site, "")
    # The app still runs, and a URL that only looks like a private file but
    # names none goes to it: the rules refuse files, not URLs.
    assert probe(site, "/") == {"SCRIPT_NAME": "", "PATH_INFO": "/"}
    for path in ("/foo.py", "/proj/proj/missing.py", "/backup.bak", "/.env.production",
                 "/.git/HEAD", "/a/b.sqlite3"):
        assert probe(site, path) == {"SCRIPT_NAME": "", "PATH_INFO": path}, path
    # Aimed at the app by name: its PATH_INFO is not a file either.
    assert probe(site, "/mysite.fcgi/x.toml")["PATH_INFO"] == "/x.toml"


def test_auto_htaccess_refuses_private_files_in_a_subfolder_site(make_site):
    site = start_site(private_site(make_site, shipped("auto.htaccess"), mount="blog"))
    private_refused_public_served(site, "/blog")
    assert probe(site, "/blog/foo.py") == {"SCRIPT_NAME": "/blog", "PATH_INFO": "/foo.py"}
    assert probe(site, "/blog/") == {"SCRIPT_NAME": "/blog", "PATH_INFO": "/"}


def test_rules_hold_with_allowoverride_without_limit(make_site):
    """Many hosts allow FileInfo, Options and AuthConfig but not Limit
    (Order/Deny): on Apache 2.4 the file must still work and refuse."""
    site = private_site(make_site, shipped("auto.htaccess"))
    site.apache.extra_conf = (f"<Directory {site.www}>\n"
                              "    AllowOverride FileInfo Options AuthConfig\n"
                              "</Directory>\n")
    start_site(site)
    private_refused_public_served(site, "")
    assert probe(site, "/foo.py") == {"SCRIPT_NAME": "", "PATH_INFO": "/foo.py"}


WITH_ACCESS_COMPAT = [*APACHE_MODULES, ("access_compat_module", "mod_access_compat.so")]


@pytest.mark.parametrize("name", ALL_FOUR)
def test_apache_22_forms_refuse_private_files_too(make_site, name):
    assert (MODULES / "mod_access_compat.so").is_file()
    site = start_site(private_site(make_site, swap_guards(as_fcgid(name, shipped(name))),
                                   modules=WITH_ACCESS_COMPAT))
    private_refused_public_served(site, "")
    assert probe(site, "/") == {"SCRIPT_NAME": "", "PATH_INFO": "/"}
    assert probe(site, "/a/b") == {"SCRIPT_NAME": "", "PATH_INFO": "/a/b"}
    # 2.2 refuses by name, file or not (documented in the files).
    assert site.get("/foo.py").status_code == 403


def test_without_the_deny_rules_the_private_files_are_downloadable(make_site):
    """The control: the same web root behind the seed's rules alone. If this
    fails, the 403s above prove nothing (a permission problem, say)."""
    site = start_site(private_site(make_site, HTACCESS))
    for rel, content in PRIVATE:
        r = site.get(f"/{rel}")
        assert (r.status_code, r.content) == (200, content.encode()), rel
