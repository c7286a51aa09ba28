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

A FrontedSite is the same web root served by lighttpd or nginx instead
(configs made from shim-templates/, in <site>/lt/ or <site>/nx/), with
mysite.fcgi spawned by lighttpd (bin-path) or started beside the server by
spawn-fcgi or `mysite.fcgi runfcgi` on a socket in <site>/s/.

At the end, the site's own user: a local user who is not www-data, and the
shipped templates' runfcgi start lines run as that user (UserRunFcgi).
"""

import grp
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
        except OSError:
            continue
        stat = proc_stat(pid)
        if stat is None or stat[0] == "Z":
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

    def __init__(self, directory, docroot, extra_conf="", modules=None):
        """modules: (name, file) pairs to load instead of APACHE_MODULES
        (e.g. without mod_fcgid, for a host that only has CGI)."""
        self.dir = Path(directory)
        self.docroot = Path(docroot)
        self.extra_conf = extra_conf
        self.modules = APACHE_MODULES if modules is None else modules
        self.port = None
        self.conf = self.dir / "httpd.conf"
        self.pidfile = self.dir / "httpd.pid"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.pid = None

    def config_text(self):
        loads = "\n".join(
            f"LoadModule {name} {MODULES / so}" for name, so in self.modules
        )
        # A per-module level for a module that is not loaded is an error.
        fcgid_level = " fcgid:info" if any(n == "fcgid_module" for n, _ in self.modules) else ""
        return f"""\
# Generated by tests/e2e/e2e_harness.py for one test site.
ServerRoot "/etc/apache2"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile {self.pidfile}
DefaultRuntimeDir {self.dir}
Mutex file:{self.dir} default
ErrorLog {self.error_log}
LogLevel warn{fcgid_level}
LogFormat "%h %t \\"%r\\" %>s %b %Dus" timing
CustomLog {self.access_log} timing
User {WWW_USER}
Group {WWW_USER}
{loads}

TypesConfig /etc/mime.types
DirectoryIndex index.html
ScriptSock {self.dir}/cgid.sock

<IfModule mod_fcgid.c>
FcgidIPCDir {self.dir}/fcgid
FcgidProcessTableFile {self.dir}/fcgid_shm
# Default 128 KiB would turn the upload tests into 500s.
FcgidMaxRequestLen 67108864
</IfModule>

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
                if _ended(self.pid):
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


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state first,
    then ppid), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _ended(pid):
    """True when pid is gone or a zombie."""
    stat = proc_stat(pid)
    return stat is None or stat[0] == "Z"


class Site:
    """A web root served by a private Apache through mysite.fcgi."""

    def __init__(self, root, kind="django", htaccess=HTACCESS, extra_conf="", mount="",
                 apache_modules=None):
        """mount: a sub-directory of the web root to put mysite.fcgi,
        site.toml and .htaccess in, so that the site lives at /<mount>/.
        apache_modules: what Apache loads, if not APACHE_MODULES."""
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
        self.apache = Apache(self.root / "apache", self.www, extra_conf, apache_modules)
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


# -- lighttpd, nginx, and mysite.fcgi started beside them ---------------------------
#
# The shipped server configs (shim-templates/) are used as they are, with
# only their placeholders (/home/user/public_html, the socket path, the port)
# replaced: a template that stops working fails a test.

TEMPLATES = REPO / "shim-templates"
SERVER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


def from_template(name, replacements):
    """The text of shim-templates/<name> with each (old, new) replaced.
    Every old string must be in the template: one that is no longer there
    would leave a placeholder in place and test something else."""
    text = (TEMPLATES / name).read_text()
    for old, new in replacements:
        if old not in text:
            raise AssertionError(f"shim-templates/{name} no longer contains {old!r}")
        text = text.replace(old, new)
    return text


def wait_for_port(port, proc=None, timeout=15):
    """True once 127.0.0.1:port accepts a connection; False when proc has
    exited or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_for_unix_socket(path, timeout=15, alive=lambda: True):
    """True once the unix socket at path accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(path))
                return True
            except OSError:
                time.sleep(0.05)
    return False


def stop_process(proc_or_pid, sig=signal.SIGTERM, timeout=10):
    """Send sig, wait for the process to be gone, SIGKILL it after timeout.
    Returns True when it went by itself (or there was none: None)."""
    if proc_or_pid is None:
        return True
    pid = proc_or_pid if isinstance(proc_or_pid, int) else proc_or_pid.pid
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(proc_or_pid, int):
            if _ended(pid):
                return True
        elif proc_or_pid.poll() is not None:
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if not isinstance(proc_or_pid, int):
        proc_or_pid.wait(5)
    return False


class ForegroundServer:
    """A web server run in the foreground from a private config (Lighttpd,
    Nginx): its own config test first, then the server, stopped with
    SIGTERM. A subclass sets `name`, conf, error_log, access_log, out_log,
    port, proc."""

    name = ""

    def launch(self, test_cmd, cmd):
        check = subprocess.run(test_cmd, env=SERVER_ENV, capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"{' '.join(test_cmd[:2])} refused {self.conf}:\n"
                               f"{check.stdout}{check.stderr}")
        with open(self.out_log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=SERVER_ENV, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out, start_new_session=True)
        if not wait_for_port(self.port, self.proc):
            raise RuntimeError(f"{self.name} did not listen on {self.port}:\n"
                               f"{tail(self.out_log)}\n{tail(self.error_log)}")

    def stop(self):
        """SIGTERM: the server stops, and takes what it spawned along."""
        clean, self.proc = stop_process(self.proc, signal.SIGTERM, timeout=15), None
        return clean

    def report(self):
        return [(f"{self.name} error log " + str(self.error_log), tail(self.error_log)),
                (f"{self.name} access log", tail(self.access_log, 60)),
                (f"{self.name} stdout/stderr", tail(self.out_log, 60))]


class Lighttpd(ForegroundServer):
    """One private lighttpd in the foreground (`lighttpd -D`), started as
    root and running as www-data (server.username), as Debian's does. The
    base config is the minimum Debian's lighttpd.conf gives (document root,
    mime types, static files); the site's part is `include`d from a
    shipped template."""

    name = "lighttpd"

    def __init__(self, directory, site_conf):
        self.dir = Path(directory)
        self.site_conf = site_conf
        self.conf = self.dir / "lighttpd.conf"
        self.include = self.dir / "site.conf"
        # lighttpd opens its error log after dropping to www-data.
        self.error_log = self.dir / "log" / "error.log"
        self.access_log = self.dir / "log" / "access.log"
        self.out_log = self.dir / "stdout.log"
        self.port = None
        self.proc = None

    def config_text(self):
        return f"""\
# Generated by tests/e2e/e2e_harness.py; the site's part is {self.include}.
server.modules = ( "mod_indexfile", "mod_access", "mod_alias", "mod_redirect" )
server.port = {self.port}
server.bind = "127.0.0.1"
server.errorlog = "{self.error_log}"
server.pid-file = "{self.dir}/lighttpd.pid"
server.username = "{WWW_USER}"
server.groupname = "{WWW_USER}"
server.upload-dirs = ( "{self.dir}/tmp" )
server.document-root = "/nonexistent"
index-file.names = ( "index.html" )
mimetype.assign = (
    ".css" => "text/css", ".js" => "text/javascript", ".txt" => "text/plain",
    ".html" => "text/html", ".svg" => "image/svg+xml", ".png" => "image/png",
)
# As in Debian's lighttpd.conf:
url.access-deny = ( "~", ".inc" )
static-file.exclude-extensions = ( ".php", ".pl", ".fcgi" )
include "{self.include}"
server.modules += ( "mod_staticfile", "mod_accesslog" )
accesslog.filename = "{self.access_log}"
"""

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in ("tmp", "log"):
            (self.dir / d).mkdir(exist_ok=True)
            chown_www(self.dir / d)
        self.port = free_port()
        self.include.write_text(self.site_conf)
        self.conf.write_text(self.config_text())
        self.launch(["lighttpd", "-tt", "-f", str(self.conf)],
                    ["lighttpd", "-D", "-f", str(self.conf)])


class Nginx(ForegroundServer):
    """One private nginx in the foreground, workers as www-data (`user
    www-data;`); the server { } block is a shipped template whose `listen
    80;` becomes a free port of 127.0.0.1."""

    name = "nginx"

    def __init__(self, directory, server_conf):
        self.dir = Path(directory)
        self.server_conf = server_conf
        self.conf = self.dir / "nginx.conf"
        self.include = self.dir / "site.conf"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.out_log = self.dir / "stdout.log"
        self.port = None
        self.proc = None

    def config_text(self):
        temp = "\n".join(f"    {kind}_temp_path {self.dir}/tmp/{kind};"
                         for kind in ("client_body", "fastcgi", "proxy", "uwsgi", "scgi"))
        return f"""\
# Generated by tests/e2e/e2e_harness.py; the server block is {self.include}.
user {WWW_USER};
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {self.access_log};
{temp}
    include {self.include};
}}
"""

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        self.port = free_port()
        if "listen 80;" not in self.server_conf:
            raise AssertionError("the nginx server block has no `listen 80;` to replace")
        listen = f"listen 127.0.0.1:{self.port};"
        self.include.write_text(self.server_conf.replace("listen 80;", listen))
        self.conf.write_text(self.config_text())
        # `include fastcgi_params` is relative to the directory of nginx.conf.
        shutil.copy("/etc/nginx/fastcgi_params", self.dir / "fastcgi_params")
        cmd = ["nginx", "-c", str(self.conf), "-p", f"{self.dir}/", "-e", str(self.error_log)]
        self.launch(["nginx", "-t"] + cmd[1:], cmd)


class SpawnFcgi:
    """mysite.fcgi on a unix socket, started the README's way as root:
    `spawn-fcgi -s SOCK -M 0660 -u www-data -- .../mysite.fcgi`. spawn-fcgi
    forks, prints the child's pid and exits; the child (the shim itself,
    setsid and with stdout/stderr on /dev/null) is stopped with SIGTERM."""

    def __init__(self, binary, sock):
        self.binary = Path(binary)
        self.sock = Path(sock)
        self.pid = None
        self.output = ""

    def start(self):
        proc = subprocess.run(
            ["spawn-fcgi", "-s", str(self.sock), "-M", "0660", "-u", WWW_USER,
             "--", str(self.binary)],
            env=SERVER_ENV, capture_output=True, text=True, timeout=30,
        )
        self.output = proc.stdout + proc.stderr
        m = re.search(r"child spawned successfully: PID: (\d+)", self.output)
        if proc.returncode != 0 or not m:
            raise RuntimeError(f"spawn-fcgi failed ({proc.returncode}):\n{self.output}")
        self.pid = int(m.group(1))
        if not wait_for_unix_socket(self.sock, alive=lambda: alive(self.pid)):
            raise RuntimeError(f"nothing accepts on {self.sock} (pid {self.pid})")

    def stop(self):
        clean, self.pid = stop_process(self.pid, signal.SIGTERM, timeout=10), None
        return clean

    def report(self):
        return [("spawn-fcgi output", self.output or "(none)")]


class RunFcgi:
    """mysite.fcgi serving its own socket: `mysite.fcgi runfcgi socket=SOCK
    daemonize=false`, run as www-data from the web root (the user the web
    server connects as owns the socket), in the foreground so that the test
    holds its pid."""

    def __init__(self, binary, sock, log, options=()):
        self.binary = Path(binary)
        self.sock = Path(sock)
        self.log = Path(log)
        self.options = list(options)
        self.proc = None

    def start(self):
        uid, gid = www_ids()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "runfcgi", f"socket={self.sock}", "daemonize=false",
                 *self.options],
                cwd=self.binary.parent, env=SERVER_ENV, user=uid, group=gid, extra_groups=[],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            )
        if not wait_for_unix_socket(self.sock, alive=lambda: self.proc.poll() is None):
            raise RuntimeError(f"runfcgi did not listen on {self.sock} "
                               f"(exit {self.proc.poll()}):\n{tail(self.log)}")

    def stop(self):
        clean, self.proc = stop_process(self.proc, signal.SIGTERM, timeout=10), None
        return clean

    def report(self):
        return [("runfcgi stdout/stderr " + str(self.log), tail(self.log))]


class FrontedSite(Site):
    """A web root like Site's, served by lighttpd or nginx instead of the
    private Apache. Set `front` (a Lighttpd or Nginx) and, when the web
    server does not start mysite.fcgi itself, `back` (a SpawnFcgi or
    RunFcgi) before start(). `sockdir` is a short directory owned by
    www-data for the FastCGI sockets (unix socket paths have at most 107
    bytes)."""

    def __init__(self, root, kind="django", mount=""):
        super().__init__(root, kind, htaccess="", mount=mount)
        (self.dir / ".htaccess").unlink()  # no Apache here
        self.sockdir = self.root / "s"
        self.sockdir.mkdir(exist_ok=True)
        chown_www(self.sockdir)
        self.sock = self.sockdir / "mysite.sock"
        self.front = None
        self.back = None

    def start(self):
        if self.back is not None:
            self.back.start()
        self.front.start()
        return self

    def stop(self):
        clean = self.front.stop() if self.front else True
        if self.back is not None:
            clean = self.back.stop() and clean
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

    @property
    def base(self):
        return f"http://127.0.0.1:{self.front.port}"

    def error_log_text(self):
        try:
            return self.front.error_log.read_text(errors="replace")
        except (AttributeError, FileNotFoundError):
            return ""

    def report(self):
        parts = list(self.front.report()) if self.front else []
        if self.back is not None:
            parts += self.back.report()
        parts.append(("shim log " + str(self.shim_log), tail(self.shim_log)))
        return parts


def lighttpd_bin_path(site, max_procs=None):
    """shim-templates/lighttpd-bin-path.conf for the site: lighttpd spawns
    its mysite.fcgi. For a site in a sub-directory (site.mount), the
    template's entry and rewrite move under /<mount>, as
    lighttpd-two-sites.conf does for its /blog app."""
    www = str(site.www)
    repl = [
        ('server.document-root := "/home/user/public_html"', f'server.document-root := "{www}"'),
        ('"bin-path"    => "/home/user/public_html/mysite.fcgi"',
         f'"bin-path"    => "{site.binary}"'),
        ('"/run/lighttpd/mysite.socket"', f'"{site.sockdir}/lt.sock"'),
        ('"/home/user/python/django/contrib/admin/media/"', f'"{site.dir}/static/"'),
    ]
    if site.mount:
        m = site.mount
        repl += [
            ('"/mysite.fcgi" => ((', f'"/{m}/mysite.fcgi" => (('),
            ('url.rewrite-if-not-file = ( "^(/.*)$" => "/mysite.fcgi$1" )',
             f'url.rewrite-if-not-file = ( "^/{m}(/.*)?$" => "/{m}/mysite.fcgi$1" )'),
        ]
    if max_procs is not None:
        repl.append(('"max-procs"   => 2,', f'"max-procs"   => {max_procs},'))
    return Lighttpd(site.root / "lt", from_template("lighttpd-bin-path.conf", repl))


def lighttpd_socket(site, media=None, static_files=True):
    """shim-templates/lighttpd-socket.conf for the site: what its header
    says to replace (the document root, the socket path, the /media/ alias,
    to `media` or else the site's static files) and, with static_files, the
    change its comment gives for serving existing files (static/) directly:
    the last rewrite-once rule becomes url.rewrite-if-not-file."""
    repl = [
        ('server.document-root := "/home/user/public_html"',
         f'server.document-root := "{site.www}"'),
        ('"socket" => "/home/user/mysite.sock"', f'"socket" => "{site.sock}"'),
        ('"/media/" => "/home/user/django/contrib/admin/media/"',
         f'"/media/" => "{media or site.dir / "static"}/"'),
    ]
    if static_files:
        repl.append(('    "^(/.*)$" => "/mysite.fcgi$1",\n)\n',
                     ')\nurl.rewrite-if-not-file = ( "^(/.*)$" => "/mysite.fcgi$1" )\n'))
    return Lighttpd(site.root / "lt", from_template("lighttpd-socket.conf", repl))


def nginx_spawn_fcgi(site):
    """shim-templates/nginx-spawn-fcgi.conf for the site; /media/ is aliased
    to the site's static files."""
    return Nginx(site.root / "nx", from_template("nginx-spawn-fcgi.conf", [
        ("root /home/user/public_html;", f"root {site.www};"),
        ("fastcgi_pass unix:/home/user/mysite.sock;", f"fastcgi_pass unix:{site.sock};"),
        ("alias /home/user/python/django/contrib/admin/media/;", f"alias {site.dir}/static/;"),
    ]))


def start_site(site):
    """site.start(), with the site's logs in the error when it fails: a
    module-scoped fixture that fails has no test report to attach them to."""
    try:
        return site.start()
    except Exception as e:
        logs = "\n\n".join(f"--- {title}\n{text}" for title, text in site.report())
        raise RuntimeError(f"{e}\n\n{logs}") from e


def stop_stale_processes(run):
    """Stop what an interrupted run left under its directory besides
    Apache (lighttpd, nginx, spawn-fcgi's and runfcgi's shims: all started
    in sessions of their own, so they outlive a killed pytest). SIGTERM
    first, so that nginx's and lighttpd's main processes take their
    children along; SIGKILL what is left."""
    # The trailing slash keeps run-...-123 from matching run-...-1234.
    run = f"{run}/"
    found = processes_referring_to(run)
    for pid, _ in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = processes_referring_to(run)
    for pid, _ in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- mysite.fcgi runfcgi started the how-to's way, Apache + mod_proxy_fcgi ----------
#
# The old how-to starts the FastCGI server itself (`./manage.py runfcgi ...`,
# now `./mysite.fcgi runfcgi ...`) and points the web server at its socket or
# port: mod_fastcgi's FastCGIExternalServer then, mod_proxy_fcgi now
# (shim-templates/apache-proxy-fcgi.conf), or lighttpd without bin-path.

# What Apache loads for apache-proxy-fcgi.conf: no mod_fcgid, no CGI.
PROXY_FCGI_MODULES = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_host_module", "mod_authz_host.so"),
    ("mime_module", "mod_mime.so"),
    ("dir_module", "mod_dir.so"),
    ("alias_module", "mod_alias.so"),
    ("rewrite_module", "mod_rewrite.so"),
    ("env_module", "mod_env.so"),
    ("setenvif_module", "mod_setenvif.so"),
    ("headers_module", "mod_headers.so"),
    ("proxy_module", "mod_proxy.so"),
    ("proxy_fcgi_module", "mod_proxy_fcgi.so"),
]


class ProxyApache(Apache):
    """A private Apache with mod_proxy_fcgi whose one virtual host is a
    shipped template: its `<VirtualHost *:80>` becomes the free port of
    127.0.0.1 picked at start(). Usable as a FrontedSite's `front`."""

    def __init__(self, directory, docroot, vhost):
        super().__init__(directory, docroot, modules=PROXY_FCGI_MODULES)
        if "<VirtualHost *:80>" not in vhost:
            raise AssertionError("the vhost template has no `<VirtualHost *:80>` to replace")
        self.vhost = vhost

    def config_text(self):
        self.extra_conf = self.vhost.replace("<VirtualHost *:80>",
                                             f"<VirtualHost 127.0.0.1:{self.port}>")
        # ScriptSock belongs to mod_cgid, which is not loaded here.
        return super().config_text().replace(f"ScriptSock {self.dir}/cgid.sock\n", "")

    def report(self):
        return [("apache error log " + str(self.error_log), tail(self.error_log)),
                ("apache access log", tail(self.access_log, 60))]


def apache_proxy_fcgi(site, sock=None, port=None):
    """shim-templates/apache-proxy-fcgi.conf for the site, forwarding to a
    unix socket (sock) or to 127.0.0.1:port (the template's commented TCP
    line, uncommented; the socket line commented out instead). /media is
    aliased to the site's static files."""
    if (sock is None) == (port is None):
        raise ValueError("give exactly one of sock and port")
    unix_line = 'SetHandler "proxy:unix:/home/user/mysite.sock|fcgi://localhost/"'
    tcp_line = '# SetHandler "proxy:fcgi://127.0.0.1:3033/"'
    if sock is not None:
        handler = [(unix_line, f'SetHandler "proxy:unix:{sock}|fcgi://localhost/"')]
    else:
        handler = [(unix_line, "# " + unix_line),
                   (tcp_line, f'SetHandler "proxy:fcgi://127.0.0.1:{port}/"')]
    media = "/home/user/python/django/contrib/admin/media"
    return ProxyApache(site.root / "apache", site.www, from_template("apache-proxy-fcgi.conf", [
        ("DocumentRoot /home/user/public_html", f"DocumentRoot {site.www}"),
        ("<Directory /home/user/public_html>", f"<Directory {site.www}>"),
        (f"Alias /media {media}", f"Alias /media {site.dir}/static"),
        (f"<Directory {media}>", f"<Directory {site.dir}/static>"),
        *handler,
    ]))


def lighttpd_host_port(site, port):
    """shim-templates/lighttpd-host-port.conf for the site, forwarding to
    127.0.0.1:port, with the change its comment gives for serving existing
    files (static/) directly. /media/ is aliased to the site's static files."""
    return Lighttpd(site.root / "lt", from_template("lighttpd-host-port.conf", [
        ('server.document-root := "/home/user/public_html"',
         f'server.document-root := "{site.www}"'),
        ('"port" => 3033,', f'"port" => {port},'),
        ('"/media/" => "/home/user/django/contrib/admin/media/"',
         f'"/media/" => "{site.dir}/static/"'),
        ('    "^(/.*)$" => "/mysite.fcgi$1",\n)\n',
         ')\nurl.rewrite-if-not-file = ( "^(/.*)$" => "/mysite.fcgi$1" )\n'),
    ]))


def parent_of(pid):
    """The parent's pid of a live process; None when pid is gone or a zombie."""
    stat = proc_stat(pid)
    return None if stat is None or stat[0] == "Z" else int(stat[1])


def live_pids():
    """{pid: ppid} of every live (not zombie) process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = parent_of(int(entry))
            if ppid is not None:
                found[int(entry)] = ppid
    return found


def descendants(pid, table=None):
    """The live processes below pid (children, grandchildren, ...)."""
    table = live_pids() if table is None else table
    below, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in table.items() if pp in frontier} - below
        below |= frontier
    return below


def processes_running(binary):
    """Pids of the live processes whose executable is binary."""
    binary = str(Path(binary).resolve())
    pids = []
    for pid in live_pids():
        try:
            if os.readlink(f"/proc/{pid}/exe") == binary:
                pids.append(pid)
        except OSError:
            pass
    return pids


def alive(pid):
    return not _ended(pid)


class RunFcgiServer:
    """`./mysite.fcgi runfcgi OPTION=VALUE ...` as the how-to runs it: from
    a shell in the folder of mysite.fcgi (cwd), as the site's owner
    (www-data here, the user Apache and lighttpd connect as, so that the
    socket the daemon makes with umask 022 is theirs), daemonized unless
    the options say daemonize=false. A daemonized start returns once the
    server listens (the foreground waits for the daemon's word: checked
    here, the command's exit is the only signal a script gets); the
    server's pid is then read from pidfile=, or without one found as the
    one process running the binary whose parent does not."""

    def __init__(self, binary, options, log, cwd=None, env=None):
        self.binary = Path(binary)
        self.options = list(options)
        self.log = Path(log)
        self.cwd = Path(cwd) if cwd else self.binary.parent
        self.env = {**SERVER_ENV, **(env or {})}
        opts = dict(o.split("=", 1) for o in self.options)
        self.daemon = opts.get("daemonize", "true").lower() not in ("false", "no", "0")
        # Relative paths count from where it is started (README).
        self.pidfile = self.cwd / opts["pidfile"] if "pidfile" in opts else None
        self.sock = self.cwd / opts["socket"] if "socket" in opts else None
        self.port = int(opts["port"]) if "port" in opts else None
        self.pid = None
        self.proc = None
        self.exit_code = None

    def command(self):
        prog = (f"./{self.binary.name}" if self.cwd == self.binary.parent
                else str(self.binary))
        return [prog, "runfcgi", *self.options]

    def listening(self):
        if self.sock is not None:
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(self.sock))
                    return True
                except OSError:
                    return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self):
        uid, gid = www_ids()
        kw = dict(cwd=self.cwd, env=self.env, user=uid, group=gid, extra_groups=[],
                  stdin=subprocess.DEVNULL)
        with open(self.log, "ab") as out:
            if self.daemon:
                self.exit_code = subprocess.run(self.command(), stdout=out, stderr=out,
                                                timeout=60, **kw).returncode
            else:
                self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out,
                                             start_new_session=True, **kw)
        if not self.daemon:
            if not (wait_for_unix_socket(self.sock, alive=lambda: self.proc.poll() is None)
                    if self.sock else wait_for_port(self.port, self.proc)):
                raise RuntimeError(f"runfcgi did not listen (exit {self.proc.poll()}):\n"
                                   f"{tail(self.log)}")
            self.pid = self.proc.pid
            return
        if self.exit_code != 0:
            raise RuntimeError(f"{' '.join(self.command())} exited {self.exit_code}:\n"
                               f"{tail(self.log)}")
        if not self.listening():
            raise RuntimeError(f"{' '.join(self.command())} exited 0 before its server "
                               f"listened:\n{tail(self.log)}")
        self.pid = self.server_pid()

    def server_pid(self):
        """The daemon's pid: from the pidfile, else the root of the tree of
        processes running the binary."""
        if self.pidfile is not None:
            return int(self.pidfile.read_text().strip())
        pids = set(processes_running(self.binary))
        table = live_pids()
        roots = [p for p in pids if table.get(p) not in pids]
        if len(roots) != 1:
            raise RuntimeError(f"expected one runfcgi server running {self.binary}, "
                               f"found {roots}")
        return roots[0]

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the server (kill `cat pidfile`) and wait until it is gone."""
        if self.pid is None:
            return True
        clean = stop_process(self.proc if self.proc else self.pid, sig, timeout)
        self.pid = None
        self.proc = None
        return clean

    def report(self):
        return [(f"{' '.join(self.command())} output {self.log}", tail(self.log))]


def lighttpd_two_sites(site1, site2, blog):
    """shim-templates/lighttpd-two-sites.conf with each app started by hand,
    as its comment says: "bin-path" + "socket" of each fastcgi.server entry
    become the "socket" its runfcgi listens on (site.sock of site1, of
    blog for site1's /blog, of site2). The document roots are site1's and
    site2's web roots; the host names stay www.website1.com and
    www.website2.com."""
    def entry(bin_path, socket_path, site):
        return (f'"bin-path"    => "{bin_path}",\n'
                f'            "socket"      => "{socket_path}",',
                f'"socket"      => "{site.sock}",')

    return Lighttpd(site1.root / "lt", from_template("lighttpd-two-sites.conf", [
        ('server.document-root = "/foo/site1"', f'server.document-root = "{site1.www}"'),
        ('server.document-root = "/foo/site2"', f'server.document-root = "{site2.www}"'),
        entry("/foo/site1/mysite.fcgi", "/run/lighttpd/site1.socket", site1),
        entry("/foo/site1/blog/mysite.fcgi", "/run/lighttpd/site1-blog.socket", blog),
        entry("/foo/site2/mysite.fcgi", "/run/lighttpd/site2.socket", site2),
    ]))


def fcgi_get(host, port, path, source=None, timeout=10):
    """One FastCGI RESPONDER request for GET path, sent as a web server
    would, from the local address `source` if given. Returns the app's
    STDOUT bytes (CGI headers and body) once END_REQUEST came, or None
    when the server closed the connection without a record."""
    import struct

    def record(kind, content):
        # version 1, type, request id 1, content length, no padding (spec 3.3)
        return struct.pack(">BBHHBx", 1, kind, 1, len(content), 0) + content

    def length(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)

    params = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
              "REQUEST_URI": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
              "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
              "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1"}
    pairs = b"".join(length(len(k)) + length(len(v)) + k.encode() + v.encode()
                     for k, v in params.items())
    # BEGIN_REQUEST (role RESPONDER, no KEEP_CONN), PARAMS, end of PARAMS,
    # empty STDIN.
    message = (record(1, struct.pack(">HB5x", 1, 0)) + record(4, pairs) + record(4, b"")
               + record(5, b""))
    data = b""
    src = (source, 0) if source else None
    with socket.create_connection((host, port), timeout=timeout, source_address=src) as s:
        try:
            s.sendall(message)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    stdout, ended, pos = b"", False, 0
    while pos + 8 <= len(data):
        _, kind, _, clen, plen = struct.unpack(">BBHHB", data[pos:pos + 7])
        content = data[pos + 8:pos + 8 + clen]
        pos += 8 + clen + plen
        if kind == 6:
            stdout += content
        elif kind == 3:
            ended = True
    if not data:
        return None
    if not ended:
        raise AssertionError(f"FastCGI reply without END_REQUEST: {data[:500]!r}")
    return stdout



def restart_script(site, projdir):
    """shim-templates/restart-runfcgi.sh with only PROJDIR replaced, in
    site.root, and site.front an Apache + mod_proxy_fcgi on the socket the
    script makes: (script, socket, pid file)."""
    script = site.root / "restart-mysite.sh"
    script.write_text(from_template("restart-runfcgi.sh", [
        ('PROJDIR="/home/user/myproject"', f'PROJDIR="{projdir}"'),
    ]))
    os.chmod(script, 0o755)
    sock, pidfile = projdir / "mysite.sock", projdir / "mysite.pid"
    site.front = apache_proxy_fcgi(site, sock=sock)
    return script, sock, pidfile


# --- the site's own user (runfcgi started by the site's owner) -------------

SITE_USER = "fcgishim-site"
# The template's own line, exactly; the test without it drops " umask=000".
UMASK = " umask=000"


def site_user():
    """(uid, gid) of a local user that is not www-data and not in its
    group: the site's owner on a shared machine. Created once (as root)."""
    try:
        pw = pwd.getpwnam(SITE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        SITE_USER], check=True, capture_output=True)
        pw = pwd.getpwnam(SITE_USER)
    _, www_gid = www_ids()
    assert pw.pw_uid != www_ids()[0] and pw.pw_gid != www_gid
    assert SITE_USER not in grp.getgrgid(www_gid).gr_mem
    return pw.pw_uid, pw.pw_gid


def start_lines(template):
    """The shell lines under "Start the app first" in a shipped template:
    from `cd /home/user/public_html` on, while a line continues with a
    backslash (so a `FOO=bar \\` prefix comes with its command)."""
    text = from_template(template, [])
    lines = text.splitlines()
    i = lines.index("#   cd /home/user/public_html")
    out = [lines[i][4:]]
    j = i + 1
    out.append(lines[j][4:])
    while out[-1].endswith("\\"):
        j += 1
        out.append(lines[j][4:])
    return "\n".join(out)


class UserRunFcgi:
    """A template's start line run with /bin/sh as the site's user (not
    www-data), daemonizing; stopped with kill `cat pidfile`."""

    def __init__(self, command, pidfile, log, uid, gid):
        self.command = command
        self.pidfile = pidfile
        self.log = log
        self.uid, self.gid = uid, gid
        self.pid = None

    def start(self):
        with open(self.log, "ab") as out:
            out.write(f"$ {self.command}\n".encode())
            out.flush()
            rc = subprocess.run(["/bin/sh", "-c", self.command], env=SERVER_ENV,
                                user=self.uid, group=self.gid, extra_groups=[],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                timeout=60).returncode
        if rc != 0:
            raise RuntimeError(f"{self.command!r} exited {rc}:\n{tail(self.log)}")
        self.pid = int(self.pidfile.read_text())
        assert alive(self.pid)

    def stop(self):
        clean, self.pid = stop_process(self.pid, signal.SIGTERM, timeout=10), None
        return clean

    def report(self):
        return [(f"runfcgi output {self.log}", tail(self.log))]


def private_sockdir(site, uid):
    """The socket's directory as the templates advise: the site's user and
    the web server's group only (mode 0750)."""
    _, www_gid = www_ids()
    os.chown(site.sockdir, uid, www_gid)
    os.chmod(site.sockdir, 0o750)
    # runfcgi writes site.toml's log_file as the site's user.
    os.chown(site.logdir, uid, -1)


def owner_of(pid):
    return os.stat(f"/proc/{pid}").st_uid
