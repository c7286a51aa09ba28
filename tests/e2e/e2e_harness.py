"""A private Apache + mod_fcgid serving a web root the way a shared host does.

Each Site is a directory under /var/tmp/fcgi-shim-test/<run>/ (never under
the checkout: in CI that may be below /root, which www-data cannot enter):

    <site>/www/        web root: mysite.fcgi (a copy of the binary, 0755),
                       site.toml, .htaccess, static/ (collectstatic output)
    <site>/app/        a copy of tests/sites (the tests edit modules in it)
    <site>/data/       SQLite database, owned by www-data
    <site>/log/        the shim's log_file, owned by www-data
    <site>/apache/     httpd.conf, pid file, error.log, access.log, fcgid IPC

Apache runs from its own generated config (nothing from /etc/apache2 but the
module files and mime.types), listens on a free port of 127.0.0.1 and runs
its children as www-data, as Debian's packaged Apache does.
"""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
SITES_SRC = REPO / "tests" / "sites"
VENV = Path(os.environ.get("FCGI_SHIM_TEST_VENV", "/opt/fcgi-shim-test/venv"))
RUN_ROOT = Path("/var/tmp/fcgi-shim-test")
WWW_USER = "www-data"
ADMIN_USER = "admin"
MODULES = Path("/usr/lib/apache2/modules")

# The seed's .htaccess with the per-directory pattern corrected: in a
# .htaccess the path has no leading slash, so "^/(.*)$" never matches.
HTACCESS = """\
AddHandler fcgid-script .fcgi
Options +ExecCGI
RewriteEngine On
RewriteCond %{REQUEST_FILENAME} !-f
RewriteRule ^(.*)$ mysite.fcgi/$1 [QSA,L]
"""

# mod_version is compiled into Debian's apache2 (apache2 -l), so it is not
# loaded here. mod_unixd and mod_log_config are compiled in too.
APACHE_MODULES = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_host_module", "mod_authz_host.so"),
    ("mime_module", "mod_mime.so"),
    ("dir_module", "mod_dir.so"),
    ("alias_module", "mod_alias.so"),
    ("rewrite_module", "mod_rewrite.so"),
    ("fcgid_module", "mod_fcgid.so"),
    ("cgid_module", "mod_cgid.so"),
    ("env_module", "mod_env.so"),
    ("setenvif_module", "mod_setenvif.so"),
    ("headers_module", "mod_headers.so"),
]

HTTP_TIMEOUT = 60  # above FcgidIOTimeout (40 s): let Apache's error show


def shim_binary():
    """The binary under test: $FCGI_SHIM_BIN, else target/release/fcgi-shim."""
    path = Path(os.environ.get("FCGI_SHIM_BIN") or REPO / "target" / "release" / "fcgi-shim")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"no executable fcgi-shim at {path}: run `cargo build --release` "
            "or set FCGI_SHIM_BIN"
        )
    return path


def www_ids():
    pw = pwd.getpwnam(WWW_USER)
    return pw.pw_uid, pw.pw_gid


def chown_www(path):
    uid, gid = www_ids()
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, gid)


def make_readable(path):
    """chmod -R a+rX: a checkout made with a strict umask must still be
    readable by www-data once copied."""
    for dirpath, dirnames, filenames in os.walk(path):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o555)
        for name in filenames:
            f = os.path.join(dirpath, name)
            os.chmod(f, os.stat(f).st_mode | 0o444)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def render_toml(config):
    """site.toml text: top-level keys first, then the [env] table."""
    lines = []
    tables = {}
    for key, value in config.items():
        if isinstance(value, dict):
            tables[key] = value
        elif value is not None:
            lines.append(f"{key} = {toml_value(value)}")
    for name, table in tables.items():
        lines.append("")
        lines.append(f"[{name}]")
        for key, value in table.items():
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def write_atomic(path, text):
    """Replace a file the way an upload does, so that a worker starting at
    that moment never imports half a module."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def bump_mtime(path, delta=None):
    """Give a file an mtime different from the one it has (like `touch`,
    but immune to the copy and the touch falling in the same second).
    delta=None moves it to max(now, old + 2 s); a negative delta moves it
    into the past."""
    st = os.stat(path)
    if delta is None:
        new = max(time.time(), st.st_mtime + 2)
    else:
        new = st.st_mtime + delta
    os.utime(path, (new, new))
    return new


def processes_referring_to(root):
    """(pid, description) of live processes whose executable, cwd or
    command line lies under root."""
    root = str(root)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            )
            exe = cwd = ""
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                pass
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if root in exe or root in cwd or root in cmdline:
            found.append((pid, f"pid {pid} exe={exe} cwd={cwd} cmdline={cmdline.strip()}"))
    return found


def tail(path, lines=200):
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    parts = text.splitlines()
    if len(parts) > lines:
        parts = [f"... ({len(parts) - lines} earlier lines)"] + parts[-lines:]
    return "\n".join(parts) or f"({path} is empty)"


class Apache:
    """One private Apache: `apache2 -f <conf> -k start|stop`."""

    def __init__(self, directory, docroot, extra_conf=""):
        self.dir = Path(directory)
        self.docroot = Path(docroot)
        self.extra_conf = extra_conf
        self.port = None
        self.conf = self.dir / "httpd.conf"
        self.pidfile = self.dir / "httpd.pid"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.pid = None

    def config_text(self):
        loads = "\n".join(
            f"LoadModule {name} {MODULES / so}" for name, so in APACHE_MODULES
        )
        return f"""\
# Generated by tests/e2e/e2e_harness.py for one test site.
ServerRoot "/etc/apache2"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile {self.pidfile}
DefaultRuntimeDir {self.dir}
Mutex file:{self.dir} default
ErrorLog {self.error_log}
LogLevel warn fcgid:info
LogFormat "%h %t \\"%r\\" %>s %b %Dus" timing
CustomLog {self.access_log} timing
User {WWW_USER}
Group {WWW_USER}
{loads}

TypesConfig /etc/mime.types
DirectoryIndex index.html
ScriptSock {self.dir}/cgid.sock

FcgidIPCDir {self.dir}/fcgid
FcgidProcessTableFile {self.dir}/fcgid_shm
# Default 128 KiB would turn the upload tests into 500s.
FcgidMaxRequestLen 67108864

DocumentRoot {self.docroot}
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory {self.docroot}>
    AllowOverride All
    Options +ExecCGI +FollowSymLinks
    Require all granted
</Directory>
{self.extra_conf}
"""

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        fcgid_dir = self.dir / "fcgid"
        fcgid_dir.mkdir(exist_ok=True)
        # mod_fcgid names its sockets <FcgidIPCDir>/<pid>.<n> and refuses
        # ("socket path length exceeds compiled-in limits") past sun_path.
        if len(str(fcgid_dir)) > 90:
            raise RuntimeError(f"FcgidIPCDir path too long for unix sockets: {fcgid_dir}")
        uid, gid = www_ids()
        os.chown(fcgid_dir, uid, gid)
        os.chmod(fcgid_dir, 0o700)
        self.port = free_port()
        self.conf.write_text(self.config_text())
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        proc = subprocess.run(
            ["apache2", "-f", str(self.conf), "-k", "start"],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"apache2 -k start failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                f"error log:\n{tail(self.error_log)}"
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.pidfile.exists():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        self.pid = int(self.pidfile.read_text().strip())
                        return
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"apache did not listen on {self.port}:\n{tail(self.error_log)}")

    def control(self, command):
        """apache2 -k graceful|restart: the parent stays, children and
        mod_fcgid's processes are replaced."""
        proc = subprocess.run(
            ["apache2", "-f", str(self.conf), "-k", command],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"apache2 -k {command} failed: {proc.stdout}{proc.stderr}")

    def stop(self, timeout=20):
        """Stop Apache and wait until its main process is gone. Returns
        True when it went by itself. The stop is sent again every few
        seconds: one that arrives in the middle of a restart is lost."""
        if self.pid is None:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            subprocess.run(
                ["apache2", "-f", str(self.conf), "-k", "stop"],
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                capture_output=True,
            )
            resend = time.monotonic() + 5
            while time.monotonic() < min(resend, deadline):
                if not Path(f"/proc/{self.pid}").exists() or _is_zombie(self.pid):
                    self.pid = None
                    return True
                time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        return False


def stop_stale_apache(pidfile):
    """Stop an Apache left by an interrupted run, if its pid file still
    names a live apache2 started with that run's config."""
    pidfile = Path(pidfile)
    conf = pidfile.with_name("httpd.conf")
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if str(conf).encode() in cmdline and b"apache2" in cmdline:
        subprocess.run(["apache2", "-f", str(conf), "-k", "stop"], capture_output=True)


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Site:
    """A web root served by a private Apache through mysite.fcgi."""

    def __init__(self, root, kind="django", htaccess=HTACCESS, extra_conf="", mount=""):
        """mount: a sub-directory of the web root to put mysite.fcgi,
        site.toml and .htaccess in, so that the site lives at /<mount>/."""
        self.root = Path(root)
        self.kind = kind
        self.mount = mount
        self.www = self.root / "www"
        self.dir = self.www / mount if mount else self.www
        self.app = self.root / "app"
        self.data = self.root / "data"
        self.logdir = self.root / "log"
        self.shim_log = self.logdir / "shim.log"
        self.binary = self.dir / "mysite.fcgi"
        self.toml = self.dir / "site.toml"
        self.apache = Apache(self.root / "apache", self.www, extra_conf)
        self.leftovers = []

        for d in (self.www, self.dir, self.app, self.data, self.logdir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        shutil.copytree(SITES_SRC, self.app, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        make_readable(self.app)
        shutil.copy(shim_binary(), self.binary)
        os.chmod(self.binary, 0o755)
        (self.dir / ".htaccess").write_text(htaccess)
        chown_www(self.data)
        chown_www(self.logdir)

        self.project = self.app / "djsite" if kind == "django" else self.app
        self.config = self.default_config()
        self.write_config()

    def default_config(self):
        common = {
            "python": str(VENV / "bin" / "python3"),
            "log_file": str(self.shim_log),
        }
        if self.kind == "django":
            return {
                **common,
                "search_path": [str(self.app / "djsite")],
                "settings_module": "mysite.settings",
                "env": {
                    "DJSITE_DATA_DIR": str(self.data),
                    "DJSITE_STATIC_ROOT": str(self.www / "static"),
                    "DJSITE_GREETING": "hello from site.toml",
                },
            }
        if self.kind == "flask":
            return {**common, "search_path": [str(self.app)], "wsgi_app": "flaskapp:app"}
        if self.kind == "wsgi":
            return {**common, "search_path": [str(self.app)]}
        raise ValueError(f"unknown site kind {self.kind}")

    def write_config(self, **changes):
        """Rewrite site.toml; keys set to None are left out."""
        self.config.update(changes)
        write_atomic(self.toml, render_toml(self.config))
        bump_mtime(self.toml)

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        self.apache.start()
        return self

    def stop(self):
        clean = self.apache.stop()
        # mod_fcgid sends SIGTERM and, after a grace time, SIGKILL; give the
        # shim and its worker a moment to be reaped before looking.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.leftovers = processes_referring_to(self.root)
            if not self.leftovers:
                break
            time.sleep(0.2)
        for pid, _ in self.leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return clean

    # -- HTTP --------------------------------------------------------------

    @property
    def base(self):
        return f"http://127.0.0.1:{self.apache.port}"

    def url(self, path):
        return self.base + path

    def get(self, path, session=None, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return (session or requests).get(self.url(path), **kw)

    def post(self, path, session=None, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return (session or requests).post(self.url(path), **kw)

    # -- files and logs ------------------------------------------------------

    def touch_binary(self, delta=None):
        return bump_mtime(self.binary, delta)

    def edit(self, relpath, text):
        """Replace a file of the project copy (relative to self.project)."""
        path = self.project / relpath
        write_atomic(path, text)
        # A stale .pyc whose recorded mtime and size match would be used
        # instead of the new source; different sizes and a moved mtime
        # rule that out.
        bump_mtime(path)
        return path

    def log_text(self):
        try:
            return self.shim_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def error_log_text(self):
        try:
            return self.apache.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern, start=0, timeout=10, source="shim"):
        """Wait until the shim log (or Apache's error log), from offset
        start on, matches the regex; return the match or None."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text() if source == "shim" else self.error_log_text()
            m = regex.search(text, start)
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.1)

    def log_size(self):
        return len(self.log_text())

    def report(self):
        """Log excerpts for a failed test."""
        return [
            ("apache error log " + str(self.apache.error_log), tail(self.apache.error_log)),
            ("shim log " + str(self.shim_log), tail(self.shim_log)),
            ("apache access log", tail(self.apache.access_log, 60)),
        ]


def manage(project, env, *args):
    """Run manage.py as www-data (as the site's owner would over SSH)."""
    uid, gid = www_ids()
    full_env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        **env,
    }
    proc = subprocess.run(
        [str(VENV / "bin" / "python3"), "manage.py", *args],
        cwd=project,
        env=full_env,
        user=uid,
        group=gid,
        extra_groups=[],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
