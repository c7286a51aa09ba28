"""Fixtures of the end-to-end tests: sites served by a private Apache.

`make_site(kind)` builds a fresh web root, project copy and Apache for one
test (the tests that edit files, break the app or crash the worker use it);
`django_site` is one started Django site shared by the read-only tests of a
module; `make_module_site` builds sites (of any kind, behind any server)
that a module's own fixtures share between its tests. Both builders take
cls=FrontedSite for a site behind lighttpd or nginx instead of Apache.
When a test fails, the server's logs (Apache: error and access log), the
shim log and the output of spawn-fcgi or runfcgi are attached to the
report.
"""

import os
import re
import secrets
import shutil
import time

import pytest

from e2e_harness import (
    ADMIN_USER,
    RUN_ROOT,
    SITES_SRC,
    Site,
    chown_www,
    make_readable,
    manage,
    shim_binary,
    stop_stale_apache,
    stop_stale_processes,
)


def _alive(pid_file):
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def run_dir():
    if os.geteuid() != 0:
        pytest.fail("the e2e tests start Apache with User www-data: run them as root (tests/run)")
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(RUN_ROOT, 0o755)
    # A run whose pytest is gone may have left Apaches running (interrupted):
    # stop them, each found by its own pid file and config path. Runs still
    # in progress (another checkout testing on this machine) are left alone.
    # Only the last few finished runs are kept, for a look.
    finished = [d for d in sorted(RUN_ROOT.glob("run-*")) if not _alive(d / "pytest.pid")]
    for old in finished:
        for pidfile in old.glob("*/apache/httpd.pid"):
            stop_stale_apache(pidfile)
        stop_stale_processes(old)
    for old in finished[:-3]:
        shutil.rmtree(old, ignore_errors=True)
    path = RUN_ROOT / f"run-{time.strftime('%y%m%d%H%M%S')}-{os.getpid()}"
    path.mkdir()
    os.chmod(path, 0o755)
    (path / "pytest.pid").write_text(str(os.getpid()))
    shim_binary()  # fail early, and clearly, when there is no binary
    yield path
    print(f"\ne2e run directory (kept for inspection): {path}")


@pytest.fixture(scope="session")
def admin_password():
    return secrets.token_urlsafe(12)


@pytest.fixture(scope="session")
def django_template(run_dir, admin_password):
    """A migrated database with a superuser, and collected static files,
    made once and copied into every Django site."""
    root = run_dir / "django-template"
    app = root / "djsite"
    data = root / "data"
    static = root / "static"
    shutil.copytree(SITES_SRC / "djsite", app,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    make_readable(root)
    for d in (data, static):
        d.mkdir()
        chown_www(d)
    env = {
        "DJSITE_DATA_DIR": str(data),
        "DJSITE_STATIC_ROOT": str(static),
        "DJANGO_SUPERUSER_PASSWORD": admin_password,
    }
    manage(app, env, "migrate", "--noinput")
    manage(app, env, "createsuperuser", "--noinput", "--username", ADMIN_USER,
           "--email", "admin@example.com")
    manage(app, env, "collectstatic", "--noinput")
    return root


_site_count = 0


def build_site(run_dir, template, name, kind="django", cls=Site, **kw):
    # Short names: mod_fcgid's sockets live below the site directory, and a
    # unix socket path has at most 107 bytes.
    global _site_count
    _site_count += 1
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_").removeprefix("test_")
    root = run_dir / f"{_site_count:02d}-{name[:20]}"
    site = cls(root, kind, **kw)
    if kind == "django":
        shutil.copy(template / "data" / "db.sqlite3", site.data / "db.sqlite3")
        chown_www(site.data)
        shutil.copytree(template / "static", site.www / "static")
        make_readable(site.www / "static")
        if site.dir != site.www:
            # A site in a sub-directory has its static files there too:
            # STATIC_URL is relative, so Django puts SCRIPT_NAME in front
            # (/blog/static/...).
            shutil.copytree(template / "static", site.dir / "static")
            make_readable(site.dir / "static")
            env = dict(site.config["env"], DJSITE_STATIC_ROOT=str(site.dir / "static"))
            site.write_config(env=env)
    return site


@pytest.fixture
def make_site(run_dir, django_template, request):
    sites = []

    def make(kind="django", name=None, **kw):
        site = build_site(run_dir, django_template, name or request.node.name, kind, **kw)
        sites.append(site)
        return site

    make.sites = sites
    yield make
    for site in sites:
        site.stop()


@pytest.fixture(scope="module")
def make_module_site(run_dir, django_template, request):
    """make_site for sites shared by the tests of a module (or of one
    parameter of a module-scoped fixture): build(kind, cls=..., **kw) ->
    a site not yet started; all are stopped at the module's end."""
    sites = []

    def make(kind="django", name=None, **kw):
        site = build_site(run_dir, django_template, name or request.module.__name__, kind, **kw)
        sites.append(site)
        return site

    # Not `make.sites`: the tests get these sites through fixtures of their
    # own, which the report hook below already finds.
    make.built = sites
    yield make
    for site in sites:
        site.stop()


@pytest.fixture(scope="module")
def django_site(run_dir, django_template, request):
    site = build_site(run_dir, django_template, request.module.__name__ + "-shared")
    site.start()
    yield site
    site.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    sites = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Site):
            sites.append(value)
        sites.extend(getattr(value, "sites", []))
    for site in sites:
        for title, text in site.report():
            report.sections.append((f"{title} ({report.when})", text))
