"""The Django site through Apache + mod_fcgid + mysite.fcgi, as on a shared
host: .htaccess rewrite, static files from the web root, reload by touch,
import errors and worker crashes."""

import html
import re
import secrets
import threading
import time

import pytest
import requests

from e2e_harness import ADMIN_USER, processes_referring_to


def dd(body, ident):
    """Text of <dd id="ident"> in a page, unescaped; None when absent."""
    m = re.search(rf'<dd id="{ident}">(.*?)</dd>', body, re.S)
    return html.unescape(m.group(1)) if m else None


# -- pages, read-only: one shared site ---------------------------------------


def test_page_renders_template(django_site):
    r = django_site.get("/hello/")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<title>djsite hello</title>" in r.text
    assert "<h1>Hello from djsite</h1>" in r.text
    assert dd(r.text, "version") == "version one"


def test_reverse_output_has_no_mysite_fcgi(django_site):
    # The rewrite sends /hello/ to mysite.fcgi/hello/; the app must still
    # build URLs the visitor can use, without "/mysite.fcgi" in them.
    r = django_site.get("/hello/")
    assert r.status_code == 200, r.text
    urls = {k: dd(r.text, k) for k in ("form-url", "hello-url", "static-url", "path-info")}
    assert "mysite.fcgi" not in r.text, urls
    assert urls == {
        "form-url": "/form/",
        "hello-url": "/hello/",
        "static-url": "/static/pages/site.css",
        "path-info": "/hello/",
    }


def test_site_root_is_served_by_django(django_site):
    r = django_site.get("/")
    assert r.status_code == 200, r.text
    assert "<h1>Hello from djsite</h1>" in r.text
    assert dd(r.text, "path-info") == "/"
    assert dd(r.text, "form-url") == "/form/"


def test_form_post_with_csrf_token_is_echoed(django_site):
    s = requests.Session()
    r = django_site.get("/form/", session=s)
    assert r.status_code == 200, r.text
    cookie = s.cookies.get("csrftoken")
    assert cookie, f"no csrftoken cookie in {r.headers}"
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text)
    assert m, r.text
    r = django_site.post(
        "/form/",
        session=s,
        data={
            "csrfmiddlewaretoken": m.group(1),
            "name": "Zoë Ünïcode",
            "message": "line one\r\nline <two> & three",
        },
    )
    assert r.status_code == 200, r.text
    assert "<h1>Message received</h1>" in r.text
    assert dd(r.text, "name") == "Zoë Ünïcode"
    # The body arrives byte for byte: the textarea's CRLF is kept.
    assert dd(r.text, "message") == "line one\r\nline <two> & three"


def test_post_without_csrf_token_is_403(django_site):
    r = django_site.post("/form/", data={"name": "x", "message": "y"})
    assert r.status_code == 403, r.text
    assert "CSRF verification failed" in r.text


def test_admin_login_page_and_login(django_site, admin_password):
    s = requests.Session()
    r = django_site.get("/admin/login/", session=s)
    assert r.status_code == 200, r.text
    assert "Django administration" in r.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    r = django_site.post(
        "/admin/login/?next=/admin/",
        session=s,
        data={
            "csrfmiddlewaretoken": token,
            "username": ADMIN_USER,
            "password": admin_password,
            "next": "/admin/",
        },
    )
    # A successful login writes a session row: the database and its
    # directory must be writable by the worker (www-data).
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == "/admin/"
    r = django_site.get("/admin/", session=s)
    assert r.status_code == 200, r.text
    assert "Site administration" in r.text


def test_static_files_are_served_by_apache(django_site):
    page = django_site.get("/admin/login/")
    assert page.status_code == 200, page.text
    m = re.search(r'<link rel="stylesheet" href="([^"]+/base\.css)"', page.text)
    assert m, page.text
    assert m.group(1) == "/static/admin/css/base.css"
    r = django_site.get(m.group(1))
    # DEBUG is off, so Django itself would answer 404 here: a 200 with the
    # collected bytes means Apache served the file from the web root.
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/css")
    assert r.content == (django_site.www / "static/admin/css/base.css").read_bytes()

    r = django_site.get("/static/pages/site.css")
    assert r.status_code == 200
    assert r.content == (django_site.www / "static/pages/site.css").read_bytes()
    assert b"djsite test stylesheet" in r.content


def test_unknown_url_gets_djangos_404(django_site):
    r = django_site.get("/no/such/page/?x=1")
    assert r.status_code == 404
    assert "<h1>djsite: page not found</h1>" in r.text, r.text
    m = re.search(r'<p id="not-found-path">(.*?)</p>', r.text)
    assert m and m.group(1) == "/no/such/page/", r.text


def test_print_goes_to_the_log_not_the_response(django_site):
    token = secrets.token_hex(6)
    start = django_site.log_size()
    r = django_site.get(f"/print/?token={token}")
    assert r.status_code == 200, r.text
    assert r.text == "printed\n"
    assert django_site.wait_for_log(rf"djsite print marker stdout {token}", start), (
        "print() output not in the shim log"
    )
    assert django_site.wait_for_log(rf"djsite print marker stderr {token}", start), (
        "sys.stderr output not in the shim log"
    )


def test_worker_uses_python_and_env_of_site_toml(django_site):
    r = django_site.get("/whoami/")
    assert r.status_code == 200, r.text
    info = dict(line.split("=", 1) for line in r.text.splitlines())
    assert info["user"] == "www-data"
    assert info["prefix"] == str(django_site.config["python"]).rsplit("/bin/", 1)[0]
    r = django_site.get("/env/")
    assert r.status_code == 200, r.text
    assert r.text == "greeting=hello from site.toml\n"


# -- reload -------------------------------------------------------------------


def test_touch_reloads_the_code(make_site):
    site = make_site().start()
    r = site.get("/version/")
    assert (r.status_code, r.text) == (200, "version one\n")
    site.edit("pages/version.py", 'VERSION = "version two, after touch"\n')
    # Without a touch the running worker keeps the code it has.
    r = site.get("/version/")
    assert (r.status_code, r.text) == (200, "version one\n")
    site.touch_binary()
    r = site.get("/version/")
    assert (r.status_code, r.text) == (200, "version two, after touch\n")


def test_mtime_moving_backwards_reloads_too(make_site):
    # A restored backup or an upload with the original timestamps: the
    # shim must compare for change, not for "newer".
    site = make_site().start()
    assert site.get("/version/").text == "version one\n"
    site.edit("pages/version.py", 'VERSION = "version from the past"\n')
    site.touch_binary(delta=-86400)
    r = site.get("/version/")
    assert (r.status_code, r.text) == (200, "version from the past\n")


def test_editing_site_toml_reloads(make_site):
    site = make_site().start()
    assert site.get("/env/").text == "greeting=hello from site.toml\n"
    env = dict(site.config["env"], DJSITE_GREETING="changed in site.toml")
    site.write_config(env=env)
    r = site.get("/env/")
    assert (r.status_code, r.text) == (200, "greeting=changed in site.toml\n")


def test_reload_under_load_loses_no_request(make_site):
    site = make_site().start()
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

    threads = [threading.Thread(target=hammer) for _ in range(3)]
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
    r = site.get("/version/")
    assert (r.status_code, r.text) == (200, "version load 5\n")


# -- failures ---------------------------------------------------------------------


IMPORT_BOOM = """\
raise RuntimeError("importboom {token}: this module fails at import")
"""

IMPORT_FIXED = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fixed {token}\\n"]
"""


def test_import_error_gives_500_and_logs_traceback(make_site):
    token = secrets.token_hex(6)
    site = make_site()
    (site.project / "importboom.py").write_text(IMPORT_BOOM.format(token=token))
    site.write_config(settings_module=None, wsgi_app="importboom:application")
    site.start()

    for attempt in range(2):
        r = site.get("/hello/")
        assert r.status_code == 500, (attempt, r.status_code, r.text)
        for secret in ("Traceback", "RuntimeError", token, "importboom"):
            assert secret not in r.text, f"{secret!r} shown to the visitor: {r.text}"

    m = site.wait_for_log(r"Traceback \(most recent call last\):(.|\n)*?RuntimeError: importboom " + token)
    assert m, "no traceback of the import error in the shim log"

    site.edit("importboom.py", IMPORT_FIXED.format(token=token))
    site.touch_binary()
    r = site.get("/hello/")
    assert (r.status_code, r.text) == (200, f"fixed {token}\n")


def test_worker_crash_fails_one_request_only(make_site):
    site = make_site().start()
    assert site.get("/hello/").status_code == 200
    pid_before = site.get("/whoami/").text.splitlines()[0]

    start = site.log_size()
    r = site.get("/crash/?how=exit")
    assert 500 <= r.status_code <= 599, (r.status_code, r.text)
    assert "Traceback" not in r.text

    r = site.get("/hello/")
    assert r.status_code == 200, r.text
    assert "<h1>Hello from djsite</h1>" in r.text
    pid_after = site.get("/whoami/").text.splitlines()[0]
    assert pid_after != pid_before, "the crashed worker cannot still be serving"
    # os._exit(7): the log must say how the worker ended.
    assert site.wait_for_log(r"(?i)(exit|status|code)\D{0,30}\b7\b", start), (
        "the worker's exit status 7 is not in the shim log"
    )


def test_worker_killed_by_signal_fails_one_request_only(make_site):
    site = make_site().start()
    assert site.get("/hello/").status_code == 200
    start = site.log_size()
    r = site.get("/crash/?how=kill")
    assert 500 <= r.status_code <= 599, (r.status_code, r.text)
    r = site.get("/hello/")
    assert r.status_code == 200, r.text
    assert "<h1>Hello from djsite</h1>" in r.text
    assert site.wait_for_log(r"(?i)(signal\D{0,30}(9|SIGKILL|KILL)|SIGKILL)", start), (
        "the signal that killed the worker is not in the shim log"
    )


def test_nothing_outlives_apache(make_site):
    site = make_site().start()
    assert site.get("/hello/").status_code == 200
    assert site.get("/whoami/").status_code == 200
    assert site.stop(), "apache did not stop within 20 s"
    assert site.leftovers == [], "processes left after Apache stopped:\n" + "\n".join(
        d for _, d in site.leftovers
    )


def test_bytes_that_are_not_utf8_in_the_path_get_a_404(django_site):
    # PEP 3333: PATH_INFO is a latin-1 native string; a stray %FF must not
    # crash the request (Django answers 404 for a path it cannot decode).
    r = django_site.get("/hello/%FF%FE/")
    assert r.status_code == 404, r.text
    assert "<h1>djsite: page not found</h1>" in r.text
    r = django_site.get("/hello/")
    assert r.status_code == 200


@pytest.mark.parametrize("command", ["graceful", "restart"])
def test_apache_restart_keeps_serving_and_leaves_no_orphans(make_site, command):
    # Both reach the shim as signals (mod_fcgid's SIGTERM, and for restart a
    # SIGHUP to Apache's process group): it must exit cleanly and nothing
    # of the old generation may stay behind.
    site = make_site().start()
    assert site.get("/hello/").status_code == 200
    old_pids = {pid for pid, _ in processes_referring_to(site.www)}
    assert old_pids, "no shim process found before the restart"
    site.apache.control(command)
    deadline = time.monotonic() + 15
    statuses = []
    while time.monotonic() < deadline:
        try:
            statuses.append(site.get("/hello/", timeout=10).status_code)
        except requests.RequestException as e:
            statuses.append(repr(e))
        if statuses[-1] == 200:
            break
        time.sleep(0.2)
    assert statuses[-1] == 200, statuses
    for _ in range(5):
        r = site.get("/version/")
        assert (r.status_code, r.text) == (200, "version one\n")
    # mod_fcgid kills the old generation: SIGTERM, SIGKILL a few seconds on.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = old_pids & {pid for pid, _ in processes_referring_to(site.www)}
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"processes of the old generation still alive: {alive}"
    assert site.stop(), "apache did not stop within 20 s"
    assert site.leftovers == [], "\n".join(d for _, d in site.leftovers)
