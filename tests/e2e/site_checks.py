"""What every setup must give the Django project and the Flask app of
tests/sites, whatever the web server in front (Apache with mod_fcgid or
CGI, lighttpd, nginx) and wherever the site is mounted (prefix "" or
"/blog"). The test modules of each setup run them as SiteChecks.

Django: the admin login (CSRF cookie and token, session cookie, redirect
back to the admin), reverse() and {% static %} without "mysite.fcgi",
static files served by the web server, Django's own 404 page.
Flask: url_for() without "mysite.fcgi", a 10 MiB upload hashed by the app,
the Authorization header. Private files (PRIVATE, PUBLIC): refused and
served as the shipped rules say, in a probe site (private_site, probe).
"""

import hashlib
import html
import os
import re

import requests

from e2e_harness import ADMIN_USER

TOKEN = "Token 9944b09199c62bcf9418ad846dd0e4bb"
UPLOAD_SIZE = 10 * 1024 * 1024


def dd(body, ident):
    """Text of <dd id="ident"> in a page, unescaped; None when absent."""
    m = re.search(rf'<dd id="{ident}">(.*?)</dd>', body, re.S)
    return html.unescape(m.group(1)) if m else None


def fields(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# -- Django --------------------------------------------------------------------


def django_reverse(site, prefix=""):
    r = site.get(f"{prefix}/hello/")
    assert r.status_code == 200, r.text
    assert "<h1>Hello from djsite</h1>" in r.text
    keys = ("form-url", "hello-url", "static-url", "script-name", "path-info")
    urls = {k: dd(r.text, k) for k in keys}
    assert urls == {
        "form-url": f"{prefix}/form/",
        "hello-url": f"{prefix}/hello/",
        "static-url": f"{prefix}/static/pages/site.css",
        "script-name": prefix,
        "path-info": "/hello/",
    }
    assert "mysite.fcgi" not in r.text, urls


def django_admin_login(site, password, prefix=""):
    s = requests.Session()
    # Not logged in: the admin sends the visitor to its login page, a URL
    # built by reverse().
    r = site.get(f"{prefix}/admin/", session=s)
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == f"{prefix}/admin/login/?next={prefix}/admin/"

    r = site.get(f"{prefix}/admin/login/?next={prefix}/admin/", session=s)
    assert r.status_code == 200, r.text
    assert "<title>Log in | Django site admin</title>" in r.text, r.text
    assert "mysite.fcgi" not in r.text
    m = re.search(r'<form action="([^"]*)" method="post" id="login-form">', r.text)
    assert m and html.unescape(m.group(1)) == f"{prefix}/admin/login/?next={prefix}/admin/", r.text
    csrf_cookie = s.cookies.get("csrftoken")
    assert csrf_cookie, f"no csrftoken cookie in {r.headers}"
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)

    r = site.post(
        f"{prefix}/admin/login/?next={prefix}/admin/",
        session=s,
        data={"csrfmiddlewaretoken": token, "username": ADMIN_USER, "password": password,
              "next": f"{prefix}/admin/"},
    )
    # A successful login writes a session row (the database must be
    # writable by www-data) and sets the session cookie.
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == f"{prefix}/admin/"
    assert s.cookies.get("sessionid"), f"no sessionid cookie in {r.headers}"

    r = site.get(f"{prefix}/admin/", session=s)
    assert r.status_code == 200, r.text
    assert "<title>Site administration | Django site admin</title>" in r.text
    assert f'<a href="{prefix}/admin/auth/user/">Users</a>' in r.text, r.text
    assert "mysite.fcgi" not in r.text

    # A wrong password stays on the login page with Django's message.
    s2 = requests.Session()
    r = site.get(f"{prefix}/admin/login/", session=s2)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    r = site.post(f"{prefix}/admin/login/", session=s2,
                  data={"csrfmiddlewaretoken": token, "username": ADMIN_USER,
                        "password": password + "x"})
    assert r.status_code == 200, r.text
    assert "Please enter the correct username and password" in r.text
    assert not s2.cookies.get("sessionid")


def django_static_file(site, prefix=""):
    page = site.get(f"{prefix}/admin/login/")
    assert page.status_code == 200, page.text
    m = re.search(r'<link rel="stylesheet" href="([^"]+/base\.css)"', page.text)
    assert m, page.text
    assert m.group(1) == f"{prefix}/static/admin/css/base.css"
    r = site.get(m.group(1))
    # DEBUG is off, so Django itself would answer 404 here: a 200 with the
    # collected bytes means the web server served the file.
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("text/css"), r.headers
    assert r.content == (site.dir / "static/admin/css/base.css").read_bytes()
    r = site.get(f"{prefix}/static/pages/site.css")
    assert r.status_code == 200
    assert r.content == (site.dir / "static/pages/site.css").read_bytes()
    assert b"djsite test stylesheet" in r.content


def django_404(site, prefix=""):
    r = site.get(f"{prefix}/no/such/page/?x=1")
    assert r.status_code == 404, r.text
    assert "<h1>djsite: page not found</h1>" in r.text, r.text
    m = re.search(r'<p id="not-found-path">(.*?)</p>', r.text)
    assert m and m.group(1) == f"{prefix}/no/such/page/", r.text


# -- Flask -----------------------------------------------------------------------


def flask_url_for(site, prefix=""):
    r = site.get(f"{prefix}/?q=1")
    assert r.status_code == 200, r.text
    assert r.text.startswith("flaskapp index\n"), r.text
    assert fields(r.text) == {
        "url_for(index)": f"{prefix}/",
        "url_for(upload)": f"{prefix}/upload",
        "url_for(auth)": f"{prefix}/auth",
        "url_for(static)": f"{prefix}/static/app.txt",
        "script_root": prefix,
        "path": "/",
        "query": "q=1",
    }
    r = site.get(f"{prefix}/auth?x=1")
    assert (r.status_code, r.text) == (200, "authorization=(none)\n")


def flask_upload(site, prefix="", size=UPLOAD_SIZE):
    body = os.urandom(size)
    r = site.post(f"{prefix}/upload", data=body,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text[:2000]
    assert r.text == f"sha256={hashlib.sha256(body).hexdigest()} length={size}\n"


def flask_authorization(site, prefix=""):
    r = site.get(f"{prefix}/auth", headers={"Authorization": TOKEN})
    assert (r.status_code, r.text) == (200, f"authorization={TOKEN}\n")
    r = site.get(f"{prefix}/auth", auth=("alice", "s3cret: pw"))
    assert (r.status_code, r.text) == (200, "authorization=Basic YWxpY2U6czNjcmV0OiBwdw==\n")
    r = site.get(f"{prefix}/auth")
    assert (r.status_code, r.text) == (200, "authorization=(none)\n")


def media_alias(site):
    """/media/ aliased to the collected static files, as the templates'
    how-to has it, and kept away from the app."""
    r = site.get("/media/pages/site.css")
    assert r.status_code == 200, r.text
    assert r.content == (site.dir / "static/pages/site.css").read_bytes()


# -- the checks as tests ---------------------------------------------------------


class SiteChecks:
    """The checks above as tests, for a test module whose fixtures `dj`
    (the Django project) and `fl` (the Flask app) give its sites, mounted
    at `prefix`. A module runs them with `class Test...(SiteChecks)`."""

    prefix = ""

    def test_django_admin_login(self, dj, admin_password):
        django_admin_login(dj, admin_password, self.prefix)

    def test_django_reverse_has_no_mysite_fcgi(self, dj):
        django_reverse(dj, self.prefix)

    def test_django_static_file_served_by_the_web_server(self, dj):
        django_static_file(dj, self.prefix)

    def test_django_404(self, dj):
        django_404(dj, self.prefix)

    def test_flask_url_for_has_no_mysite_fcgi(self, fl):
        flask_url_for(fl, self.prefix)

    def test_flask_10mib_upload(self, fl):
        flask_upload(fl, self.prefix)

    def test_flask_authorization_header(self, fl):
        flask_authorization(fl, self.prefix)


# -- private files -------------------------------------------------------------

# A 1x1 PNG: the bytes must come back unchanged.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

# (path below the site's folder, content): what a review found downloadable,
# plus their kin. Every one of them must answer 403.
PRIVATE = [
    ("proj/proj/settings.py", "SECRET_KEY = 'django-insecure-leaked'\n"),
    ("proj/manage.py", "#!/usr/bin/env python\n# manage.py\n"),
    ("proj/proj/__pycache__/settings.cpython-311.pyc", "compiled secret\n"),
    ("proj/db.sqlite3", "SQLite format 3\0 secret rows\n"),
    ("proj/db.sqlite3-journal", "journal secret\n"),
    ("data.db", "db secret\n"),
    ("site.toml.bak", "SECRET_KEY = 'backup'\n"),
    ("site.toml~", "SECRET_KEY = 'editor backup'\n"),
    (".site.toml.swp", "swap secret\n"),
    ("settings.py.orig", "orig secret\n"),
    ("dump.SQL", "INSERT secret;\n"),
    (".env", "SECRET_KEY=dotenv\n"),
    ("mysite.log", "traceback secret\n"),
    ("django.pid", "12345\n"),
    (".git/config", "[remote] url = secret\n"),
    (".venv/pyvenv.cfg", "home = secret\n"),
    ("static/.hidden/notes.txt", "hidden secret\n"),
    ("local.ini", "password = ini secret\n"),
    ("app.cfg", "cfg secret\n"),
    ("uwsgi.conf", "conf secret\n"),
    ("tls.pem", "pem secret\n"),
    ("tls.key", "key secret\n"),
    ("settings.py.old", "old secret\n"),
    ("site.toml.save", "save secret\n"),
    ("db.sqlite3-wal", "wal secret\n"),
]

# (path, content type prefix, content): served by Apache itself.
PUBLIC = [
    ("static/site.css", "text/css", b"body { color: #333; }\n"),
    ("static/app.js", "", b"console.log('hi');\n"),
    ("static/logo.png", "image/png", PNG),
    ("robots.txt", "text/plain", b"User-agent: *\n"),
    (".well-known/acme-challenge/token123", "", b"token123.key\n"),
]


# A probe app: what the app sees of a request (private_site's app).
PROBE = """\
def application(environ, start_response):
    lines = ["probe"] + ["%s=%s" % (k, environ[k]) for k in
                         ("SCRIPT_NAME", "PATH_INFO", "HTTP_AUTHORIZATION") if k in environ]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("\\n".join(lines) + "\\n").encode("latin-1")]
"""


def place_private_files(folder):
    """PRIVATE and PUBLIC in `folder`, readable by everyone, so that only
    the web server's rules can refuse them."""
    for rel, content in PRIVATE:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    for rel, _, content in PUBLIC:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else (path.stat().st_mode | 0o444))


def private_refused_public_served(site, prefix=""):
    """Each PRIVATE file (and site.toml) answers 403 without its content;
    each PUBLIC one 200 with its bytes and content type."""
    for rel, content in PRIVATE:
        r = site.get(f"{prefix}/{rel}")
        assert r.status_code == 403, (rel, r.status_code, r.text[:200])
        assert "secret" not in r.text and content not in r.text, rel
    r = site.get(f"{prefix}/site.toml")
    assert r.status_code == 403, r.text[:200]
    for rel, ctype, content in PUBLIC:
        r = site.get(f"{prefix}/{rel}")
        assert r.status_code == 200, (rel, r.status_code, r.text[:200])
        assert r.content == content, rel
        assert r.headers.get("Content-Type", "").startswith(ctype), (rel, r.headers)


def private_files_refused(site):
    """place_private_files in the site's folder, then
    private_refused_public_served."""
    place_private_files(site.dir)
    private_refused_public_served(site)


def private_site(make_site, htaccess, mount="", modules=None, name=None):
    """A probe app behind `htaccess`, with PRIVATE and PUBLIC placed in its
    folder, readable by everyone (so that only the rules can refuse them)."""
    site = make_site("wsgi", htaccess=htaccess, mount=mount, apache_modules=modules,
                     name=name)
    (site.app / "probe.py").write_text(PROBE)
    site.write_config(wsgi_app="probe:application")
    place_private_files(site.dir)
    return site


def probe(site, path, **kw):
    """The app's SCRIPT_NAME, PATH_INFO (and HTTP_AUTHORIZATION if sent)."""
    r = site.get(path, **kw)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    assert r.text.startswith("probe\n"), (path, r.text[:300])
    return dict(line.split("=", 1) for line in r.text.splitlines()[1:])
