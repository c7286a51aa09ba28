"""The performance benchmark of fcgi-shim against its peers.

Run through tests/bench/run, which installs what this needs and then runs

    /opt/fcgi-shim-bench/venv/bin/python tests/bench/bench.py [--quick] [--only SECTIONS]

as root. Every server runs with the same interpreter (Debian's
/usr/bin/python3, through the venv), one app process each, one after the
other in this run, from private configs on 127.0.0.1; nothing of the
system's services is used or touched. The figures and the ratios
(fcgi-shim / peer) go to one markdown table, printed and written to
tests/bench/results.md, and the throughput comparison to
tests/bench/throughput.png (--quick writes results-quick.md and
throughput-quick.png instead, so that a smoke run never replaces the
figures of a full one).

Sections (--only takes their names, comma-separated):

  hello    1. hello world behind nginx: fcgi-shim, flup fcgi_single, flup
           fcgi (threaded), uWSGI, a C responder on libfcgi (stock and
           without libfcgi's linger); and 6. the shim's CPU, syscalls and
           context switches per request
  django   2. a Django view rendering a template, behind nginx
  apache   3. Apache + mod_fcgid from a .htaccess: fcgi-shim vs the seed's
           flup mysite.fcgi, for the Django view and hello world; and
           8. reload (touch mysite.fcgi to the first response of new code)
  cgi      4. one request as plain CGI vs wsgiref's CGIHandler vs bare import
  memory   5. the shim's RSS idle and during a 1 GiB upload and download
  size     7. the stripped static binary
  placement
           9. what decides c=1: a hand-off between two processes on one CPU
           and across two; how often the scheduler runs each server on
           nginx's CPU; hello world with wrk, nginx and the server all on
           CPU 0 (fcgi-shim, uWSGI, the C responder)

The benchmark reports; it asserts nothing about time. It exits non-zero
only when a server could not be set up or answered wrongly.
"""

import argparse
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parents[1]
VENV = Path(os.environ.get("FCGI_SHIM_BENCH_VENV", "/opt/fcgi-shim-bench/venv"))
PYTHON = VENV / "bin" / "python3"
# Under /var/tmp, not the checkout: www-data (nginx's and Apache's
# children, and every app server here) must be able to read it.
ROOT = Path("/var/tmp/fcgi-shim-bench")
WWW_USER = "www-data"
SERVER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MODULES = Path("/usr/lib/apache2/modules")
HELLO_BODY = b"Hello, world!\n"
# fcgi-shim with null_worker.c in place of Python: the floor of its design.
NULL = "fcgi-shim + C worker (no Python)"
DJANGO_MARK = b"Hello from djsite"
SECTIONS = ("hello", "django", "apache", "cgi", "memory", "size", "placement")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Setup(Exception):
    """A server could not be set up, or answered wrongly: the run stops."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- processes -------------------------------------------------------------------------


def www_ids():
    pw = pwd.getpwnam(WWW_USER)
    return pw.pw_uid, pw.pw_gid


def chown_www(path):
    uid, gid = www_ids()
    os.chown(path, uid, gid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    """Direct children of pid (every thread's)."""
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def status(pid):
    """VmRSS and VmHWM (KiB) of the process, and its context switches
    summed over its threads (/proc/PID/status counts one task only)."""
    out = {"VmRSS": 0, "VmHWM": 0, "voluntary": 0, "nonvoluntary": 0}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key == "voluntary_ctxt_switches":
                        out["voluntary"] += int(value)
                    elif key == "nonvoluntary_ctxt_switches":
                        out["nonvoluntary"] += int(value)
        except OSError:
            pass  # a thread that ended meanwhile
    return out


def reset_hwm(pid):
    """Set VmHWM back to the current RSS (proc(5), clear_refs value 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def stop_pid(pid, sig=signal.SIGTERM, timeout=8):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def processes_under(root):
    """(pid, cmdline) of live processes whose executable or cwd lies under
    root, or whose command line names a path under it."""
    root = str(root).rstrip("/")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            where = []
            for link in ("exe", "cwd"):
                try:
                    where.append(os.readlink(f"/proc/{pid}/{link}"))
                except OSError:
                    pass
        except OSError:
            continue
        inside = any(w == root or w.startswith(root + "/") for w in where)
        if alive(pid) and (inside or root + "/" in cmd):
            found.append((pid, cmd.strip()))
    return found


# What bench.py starts as root; everything else it starts runs as www-data.
OWN_ROOT_PROGRAMS = {"nginx", "apache2", "spawn-fcgi", "strace", "wrk", "ab", "hyperfine",
                     "curl"}


def kill_leftovers(root, quiet=False):
    """Stop what this benchmark started under root and left running (an
    interrupted run's servers): only www-data's processes and the programs
    it runs as root, never an ancestor of this process (a shell whose cwd
    happens to be there)."""
    ancestors, p = set(), os.getpid()
    while p > 1:
        ancestors.add(p)
        try:
            with open(f"/proc/{p}/stat") as f:
                p = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            break
    www_uid = www_ids()[0]
    for pid, cmd in processes_under(root):
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if pid in ancestors or (uid != www_uid and comm not in OWN_ROOT_PROGRAMS):
            continue
        if not quiet:
            log(f"stopping leftover pid {pid}: {cmd[:120]}")
        stop_pid(pid, timeout=3)


# -- HTTP --------------------------------------------------------------------------------


def http_get(url, timeout=30):
    """(status, body) of a GET, over a fresh connection."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", u.path + (f"?{u.query}" if u.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_for_page(url, mark, timeout=90, alive_check=None, what=""):
    """Wait until url answers 200 with mark in the body."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if alive_check is not None and not alive_check():
            break
        try:
            code, body = http_get(url, timeout=10)
            if code == 200 and mark in body:
                return body
            last = f"{code} {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise Setup(f"{what or url} did not answer 200 with {mark!r}: {last}")


def uwsgi_argv(chdir, module):
    """uWSGI as every section runs it: FastCGI on the socket it inherits on
    fd 0, one process, one thread, the benchmark's venv."""
    return ["/usr/bin/uwsgi", "--plugin", "python3", "--protocol", "fastcgi",
            "--processes", "1", "--threads", "1", "--virtualenv", VENV,
            "--chdir", chdir, "--module", module, "--disable-logging"]


def on_cpus(cpus, cmd):
    """cmd run on the CPUs listed in `cpus` ("0", "0,1"), or as it is."""
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def wrk(url, conns, seconds, cpus=None, sample=None):
    """One wrk run (one thread, `conns` keep-alive connections to the web
    server), on `cpus` if given, calling `sample()` about every 2 ms while
    it runs if given; returns report.lua's figures plus req_s."""
    cmd = on_cpus(cpus, ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
                         "--latency", "-s", str(BENCH / "report.lua"), url])
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        deadline = time.monotonic() + seconds + 60
        while sample and proc.poll() is None and time.monotonic() < deadline:
            sample()
            time.sleep(0.002)
        try:
            stdout, stderr = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            raise Setup(f"wrk did not end within {seconds + 60} s") from None
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise Setup(f"wrk failed ({proc.returncode}): {stdout}{stderr}")
    r = json.loads(line)
    r["req_s"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = sum(r[k] for k in r if k.startswith("err_"))
    return r


# -- servers ---------------------------------------------------------------------------


class Spawned:
    """One FastCGI app server started by spawn-fcgi with its listening unix
    socket on fd 0, running as www-data. `spawn-fcgi -n` binds, then execs
    the server in its own process, so the Popen pid is the server's."""

    def __init__(self, name, argv, env=None, cwd=None, cpus=None):
        self.name = name
        self.cpus = cpus  # taskset's list: the server and all it starts
        self.argv = [str(a) for a in argv]
        self.env = {"PATH": SERVER_PATH, **(env or {})}
        self.cwd = str(cwd or ROOT)
        self.sock = ROOT / "s" / f"{name}.sock"
        self.logfile = ROOT / "logs" / f"{name}.log"
        self.proc = None

    def start(self):
        self.sock.unlink(missing_ok=True)
        with open(self.logfile, "ab") as out:
            # taskset execs spawn-fcgi, which execs the server: one pid.
            self.proc = subprocess.Popen(on_cpus(self.cpus, [
                "spawn-fcgi", "-n", "-s", str(self.sock), "-M", "0660",
                "-U", WWW_USER, "-G", WWW_USER, "-u", WWW_USER, "-g", WWW_USER,
                "--", *self.argv]),
                env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=out, stderr=out, start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        """The server and every process it started (the shim's worker)."""
        return tree(self.pid) if self.alive() else []

    def stop(self):
        if self.proc is None:
            return
        kids = self.pids()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in kids[1:]:
            stop_pid(pid, timeout=3)
        self.proc = None
        self.sock.unlink(missing_ok=True)

    def tail(self, n=30):
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Nginx:
    """A private nginx (master as root, one worker as www-data) with one
    `server` per backend, each on its own port of 127.0.0.1."""

    def __init__(self, backends, cpus=None):
        """backends: {name: extra directives for its location}; cpus:
        taskset's list for the master and its worker."""
        self.dir = ROOT / "nginx"
        self.cpus = cpus
        self.ports = {name: free_port() for name in backends}
        self.backends = backends
        self.proc = None

    def config(self):
        servers = []
        for name, extra in self.backends.items():
            servers.append(f"""
    server {{
        listen 127.0.0.1:{self.ports[name]};
        server_name localhost;
        location / {{
            # No include fastcgi_params: it sets SCRIPT_NAME, and a second
            # SCRIPT_NAME param would reach flup and uWSGI too. The site is
            # at the root: SCRIPT_NAME "" and PATH_INFO the path. Request
            # headers go along as HTTP_* (fastcgi_pass_request_headers).
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param DOCUMENT_ROOT $document_root;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param REQUEST_SCHEME $scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
            # fastcgi_keep_conn stays off (the default): one request per
            # connection, FCGI_KEEP_CONN unset, as mod_fcgid talks.
            fastcgi_pass unix:{ROOT}/s/{name}.sock;
            fastcgi_read_timeout 300;
            {extra}
        }}
    }}""")
        d = self.dir
        return f"""# Generated by tests/bench/bench.py.
user {WWW_USER};
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    fastcgi_temp_path {d}/tmp/fastcgi;
    proxy_temp_path {d}/tmp/proxy;
    scgi_temp_path {d}/tmp/scgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    keepalive_requests 1000000;
{''.join(servers)}
}}
"""

    def start(self):
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        chown_www(self.dir / "tmp")
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config())
        env = {"PATH": SERVER_PATH}
        base = ["nginx", "-e", str(self.dir / "error.log"), "-c", str(conf)]
        t = subprocess.run(base + ["-t", "-q"], env=env, capture_output=True, text=True)
        if t.returncode != 0:
            raise Setup(f"nginx -t refused {conf}:\n{t.stdout}{t.stderr}")
        self.proc = subprocess.Popen(on_cpus(self.cpus, base + ["-g", "daemon off;"]), env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        port = next(iter(self.ports.values()))
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise Setup("nginx did not listen")

    def url(self, name, path="/"):
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


class Apache:
    """A private Apache (event MPM, children as www-data) with mod_fcgid and
    one virtual host per web root, each root carrying its own .htaccess."""

    MODULES = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("authz_host_module", "mod_authz_host.so"),
        ("mime_module", "mod_mime.so"),
        ("dir_module", "mod_dir.so"),
        ("rewrite_module", "mod_rewrite.so"),
        ("fcgid_module", "mod_fcgid.so"),
        ("env_module", "mod_env.so"),
        ("setenvif_module", "mod_setenvif.so"),
    ]

    def __init__(self, name, roots):
        """roots: {name: web root}."""
        self.dir = ROOT / "apache" / name
        self.roots = roots
        self.ports = {name: free_port() for name in roots}
        self.conf = self.dir / "httpd.conf"
        self.pidfile = self.dir / "httpd.pid"
        self.error_log = self.dir / "error.log"
        self.pid = None

    def config(self):
        loads = "\n".join(f"LoadModule {n} {MODULES / so}" for n, so in self.MODULES)
        listens = "\n".join(f"Listen 127.0.0.1:{p}" for p in self.ports.values())
        hosts = "".join(f"""
<VirtualHost 127.0.0.1:{self.ports[name]}>
    DocumentRoot {root}
    <Directory {root}>
        AllowOverride All
        Options +ExecCGI +FollowSymLinks
        Require all granted
    </Directory>
</VirtualHost>
""" for name, root in self.roots.items())
        return f"""# Generated by tests/bench/bench.py.
ServerRoot "/etc/apache2"
ServerName 127.0.0.1
{listens}
PidFile {self.pidfile}
DefaultRuntimeDir {self.dir}
Mutex file:{self.dir} default
ErrorLog {self.error_log}
LogLevel warn
User {WWW_USER}
Group {WWW_USER}
{loads}
TypesConfig /etc/mime.types
KeepAliveTimeout 5
MaxKeepAliveRequests 0

FcgidIPCDir {self.dir}/fcgid
FcgidProcessTableFile {self.dir}/fcgid_shm
# mod_fcgid sends one request at a time to a process. With more requests
# than processes it starts another (FcgidMaxProcessesPerClass, default 100)
# or, when it may not, sleeps a whole second before it looks again
# (fcgid_bridge.c): one process at c=8 measures those sleeps. So the
# defaults stay, as on a shared host: one process at c=1, as many as there
# are concurrent requests at c=8.
FcgidMaxRequestLen 67108864

<Directory />
    AllowOverride None
    Require all denied
</Directory>
{hosts}"""

    def start(self):
        (self.dir / "fcgid").mkdir(parents=True, exist_ok=True)
        chown_www(self.dir / "fcgid")
        os.chmod(self.dir / "fcgid", 0o700)
        self.conf.write_text(self.config())
        env = {"PATH": SERVER_PATH, "LANG": "C"}
        p = subprocess.run(["apache2", "-f", str(self.conf), "-k", "start"], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise Setup(f"apache2 -k start failed:\n{p.stdout}{p.stderr}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.pid = int(self.pidfile.read_text())
                socket.create_connection(
                    ("127.0.0.1", next(iter(self.ports.values()))), timeout=1).close()
                return self
            except (OSError, ValueError):
                time.sleep(0.05)
        raise Setup(f"apache did not start:\n{self.error_log.read_text(errors='replace')}")

    def url(self, name, path="/"):
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def fcgid_pids(self, script):
        """Processes mod_fcgid runs for `script` (by their command line)."""
        return [pid for pid, cmd in processes_under(Path(script).parent)
                if str(script) in cmd]

    def stop(self):
        if self.pid is None:
            return
        subprocess.run(["apache2", "-f", str(self.conf), "-k", "stop"],
                       env={"PATH": SERVER_PATH}, capture_output=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and alive(self.pid):
            time.sleep(0.1)
        if alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None


# -- the benchmark ------------------------------------------------------------------------


class Bench:
    def __init__(self, quick, shim_bin):
        self.quick = quick
        self.warm = 1 if quick else 2
        # Behind nginx each figure is the median of `rounds` runs of `secs`
        # seconds (after `warm` seconds each), taken in turn with the peers.
        self.rounds = 1 if quick else 3
        self.secs = 3 if quick else 5
        self.cgi_runs = 20 if quick else 100
        self.reloads = 2 if quick else 5
        self.strace_reqs = 500 if quick else 2000
        self.shim_src = shim_bin
        # The source it was built from, as it is now (tests/bench/run built
        # it just before): edits made during the run are not in it.
        self.revision = git_state()
        self.rows = []       # the table
        self.details = []    # markdown blocks after the table
        self.chart = {}      # panel -> {server: {label: req/s}}
        self.running = []    # things to stop, most recent last
        self.warnings = []   # listed under the table

    # -- bookkeeping --

    def row(self, section, measure, shim, peer="", peer_value=None, unit="", target="",
            met=None, fmt="{:.0f}"):
        """One line of the table; the ratio is shim / peer_value when both
        are numbers."""
        def show(v):
            if v is None:
                return "—"
            return v if isinstance(v, str) else fmt.format(v) + (f" {unit}" if unit else "")

        r = ""
        if isinstance(shim, (int, float)) and isinstance(peer_value, (int, float)) \
                and peer_value:
            r = f"{shim / peer_value:.2f}"
        mark = "" if met is None else (" ✓" if met else " ✗")
        self.rows.append((section, measure, show(shim), peer or "—", show(peer_value),
                          r or "—", (target + mark).strip() or "—"))

    def track(self, thing):
        self.running.append(thing)
        return thing

    def stop(self, thing):
        thing.stop()
        if thing in self.running:
            self.running.remove(thing)

    def stop_all(self):
        while self.running:
            thing = self.running.pop()
            try:
                thing.stop()
            except Exception as e:  # noqa: BLE001 - cleanup goes on whatever failed
                log(f"stopping {thing}: {e}")

    # -- preparation --

    def prepare(self):
        kill_leftovers(ROOT)
        if ROOT.exists():
            shutil.rmtree(ROOT)
        for d in ("s", "logs", "bin", "nginx", "apache"):
            (ROOT / d).mkdir(parents=True)
        os.chmod(ROOT, 0o755)
        chown_www(ROOT / "s")
        # The binary under test is copied once: others may rebuild
        # target/release meanwhile.
        self.shim = ROOT / "bin" / "fcgi-shim"
        shutil.copy(self.shim_src, self.shim)
        os.chmod(self.shim, 0o755)
        shutil.copytree(BENCH / "apps", ROOT / "apps",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(BENCH / "flup_server.py", ROOT / "apps" / "flup_server.py")
        for name, flags in (("hello_fcgi", []), ("hello_fcgi_nl", ["-DNO_LINGER"])):
            subprocess.run(["gcc", "-O2", "-Wall", *flags, "-o", str(ROOT / "bin" / name),
                            str(BENCH / "hello_fcgi.c"), "-lfcgi"], check=True)
        for name in ("pipe_rtt", "null_worker"):
            subprocess.run(["gcc", "-O2", "-Wall", "-o", str(ROOT / "bin" / name),
                            str(BENCH / f"{name}.c")], check=True)
        self.copy_django(ROOT / "djsite")
        (ROOT / "djdata").mkdir()
        chown_www(ROOT / "djdata")
        # Byte-compile as root: the servers run as www-data and could not
        # write __pycache__, and every server must find the same .pyc.
        subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(ROOT)], check=True)
        subprocess.run(["chmod", "-R", "a+rX", str(ROOT)], check=True)

    def copy_django(self, dest):
        shutil.copytree(REPO / "tests" / "sites" / "djsite", dest,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    def site_dir(self, name, toml):
        """A directory holding mysite.fcgi (the shim) and its site.toml."""
        d = ROOT / "sites" / name
        d.mkdir(parents=True)
        shutil.copy(self.shim, d / "mysite.fcgi")
        os.chmod(d / "mysite.fcgi", 0o755)
        (d / "site.toml").write_text(toml)
        os.chmod(d, 0o755)
        return d

    def django_env(self):
        return {"DJANGO_SETTINGS_MODULE": "mysite.settings",
                "DJSITE_DATA_DIR": str(ROOT / "djdata")}

    def toml(self, app=None, django_project=None, python=PYTHON):
        """site.toml for a WSGI app of apps/ ("module:callable") or for
        the Django project at django_project; nothing else is set, so
        every other key has its default. `python` is the interpreter the
        shim starts (null_worker for the design's floor)."""
        if django_project:
            return (f'python = "{python}"\nsearch_path = ["{django_project}"]\n'
                    f'settings_module = "mysite.settings"\n\n'
                    f'[env]\nDJSITE_DATA_DIR = "{ROOT / "djdata"}"\n')
        return f'python = "{python}"\nsearch_path = ["{ROOT / "apps"}"]\nwsgi_app = "{app}"\n'

    # -- measuring one server behind a web server --

    def run_once(self, url, conns, pids_of, cpus=None):
        """Warm-up, then one timed wrk run (on `cpus` if given), with the
        CPU ticks and context switches the server's processes spent over
        the timed run."""
        wrk(url, conns, self.warm, cpus)
        pids = pids_of()
        before = {p: (cpu_ticks(p), status(p)) for p in pids}
        r = wrk(url, conns, self.secs, cpus)
        after = {p: (cpu_ticks(p), status(p)) for p in pids if alive(p)}
        r["procs"] = {}
        for p in after:
            (c0, s0), (c1, s1) = before[p], after[p]
            r["procs"][p] = {"ticks": c1 - c0,
                             "vcs": s1["voluntary"] - s0["voluntary"],
                             "ivcs": s1["nonvoluntary"] - s0["nonvoluntary"]}
        if r["errors"]:
            # Reported with the figures rather than ending the run.
            what = ", ".join(f"{k[4:]} {v}" for k, v in r.items()
                             if k.startswith("err_") and v)
            self.warnings.append(f"{url} at c={conns}: {r['errors']} of {r['requests']} "
                                 f"requests failed under wrk ({what})")
            log(f"    WARNING: {self.warnings[-1]}")
        return r

    @staticmethod
    def combine(runs):
        """The figures of one server at one concurrency from its rounds:
        the median round for req/s and latencies, and CPU time and context
        switches per request over all rounds together."""
        n = max(sum(r["requests"] for r in runs), 1)
        procs = {}
        for r in runs:
            for p, v in r["procs"].items():
                acc = procs.setdefault(p, {"ticks": 0, "vcs": 0, "ivcs": 0})
                for k in acc:
                    acc[k] += v[k]
        out = {
            "rounds": [r["req_s"] for r in runs],
            "req_s": statistics.median(r["req_s"] for r in runs),
            "p50_us": statistics.median(r["p50_us"] for r in runs),
            "p99_us": statistics.median(r["p99_us"] for r in runs),
            "requests": n,
            "errors": sum(r["errors"] for r in runs),
            "procs": {p: {"cpu_us": v["ticks"] / CLK_TCK * 1e6 / n, "vcs": v["vcs"] / n,
                          "ivcs": v["ivcs"] / n} for p, v in procs.items()},
        }
        out["cpu_us_all"] = sum(v["cpu_us"] for v in out["procs"].values())
        return out

    @staticmethod
    def log_figures(label, conns, r):
        rounds = f" (rounds {', '.join(f'{x:.0f}' for x in r['rounds'])})" \
            if len(r["rounds"]) > 1 else ""
        log(f"    {label} c={conns}: {r['req_s']:.0f} req/s{rounds}, "
            f"p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms, "
            f"server CPU {r['cpu_us_all']:.1f} µs/req"
            + (f", {r['errors']} ERRORS" if r["errors"] else ""))

    def measure(self, url, conns, pids_of, label=""):
        """One server at one concurrency, its rounds one after the other."""
        r = self.combine([self.run_once(url, conns, pids_of) for _ in range(self.rounds)])
        self.log_figures(label, conns, r)
        return r

    # -- 1. hello world behind nginx --

    def hello_servers(self, prefix="hello", cpus=None, only=None):
        """Section 1's servers, named `prefix`-...; on `cpus` if given;
        those labelled in `only` if given."""
        apps = ROOT / "apps"

        def shim(tag, python=PYTHON):
            d = self.site_dir(f"{prefix}{tag}", self.toml("hello:application", python=python))
            return [d / "mysite.fcgi"], d

        servers = [
            ("fcgi-shim", lambda: shim("")),
            (NULL, lambda: shim("-null", ROOT / "bin" / "null_worker")),
            ("flup fcgi_single", lambda: ([PYTHON, apps / "flup_server.py", "single",
                                           "hello:application", apps], None)),
            ("flup fcgi (threaded)", lambda: ([PYTHON, apps / "flup_server.py", "threaded",
                                               "hello:application", apps], None)),
            ("uWSGI", lambda: (uwsgi_argv(apps, "hello:application"), apps)),
            ("C libfcgi", lambda: ([ROOT / "bin" / "hello_fcgi"], None)),
            ("C libfcgi, no linger", lambda: ([ROOT / "bin" / "hello_fcgi", "--no-linger"], None)),
        ]
        names = {"fcgi-shim": "shim", NULL: "null", "flup fcgi_single": "flup1",
                 "flup fcgi (threaded)": "flupt", "uWSGI": "uwsgi", "C libfcgi": "c",
                 "C libfcgi, no linger": "c-nl"}
        out = []
        for label, make in servers:
            if only is None or label in only:
                argv, cwd = make()  # the shims' site folders only when wanted
                out.append((label, Spawned(f"{prefix}-{names[label]}", argv, cwd=cwd,
                                           cpus=cpus)))
        return out

    def django_servers(self):
        proj = ROOT / "djsite"
        shim_dir = self.site_dir("django", self.toml(django_project=proj))
        env = self.django_env()
        uwsgi = uwsgi_argv(proj, "mysite.wsgi:application")
        return [
            ("fcgi-shim", Spawned("dj-shim", [shim_dir / "mysite.fcgi"], cwd=shim_dir)),
            ("flup fcgi_single", Spawned("dj-flup1", [
                PYTHON, ROOT / "apps" / "flup_server.py", "single", "mysite.wsgi:application",
                proj], env=env, cwd=proj)),
            ("flup fcgi (threaded)", Spawned("dj-flupt", [
                PYTHON, ROOT / "apps" / "flup_server.py", "threaded",
                "mysite.wsgi:application", proj], env=env, cwd=proj)),
            ("uWSGI", Spawned("dj-uwsgi", uwsgi, env=env, cwd=proj)),
        ]

    def run_nginx_section(self, key, title, servers, path, mark, targets):
        """Every server of the section runs at once behind one nginx (idle
        but for the one measured), measured at c=1 and c=4 (take_rounds)."""
        nginx = self.start_behind_nginx(servers, path, mark)
        try:
            results = {}
            for c in (1, 4):
                for label, r in self.take_rounds(nginx, servers, c, path).items():
                    results.setdefault(label, {})[c] = r
            if key == "hello":
                # The shim's own figures (section 6), while it still runs.
                self.shim_internals(nginx, dict(servers)["fcgi-shim"], results["fcgi-shim"],
                                    results.get("C libfcgi, no linger"))
        finally:
            for _, server in servers:
                self.stop(server)
            self.stop(nginx)
        shim = results["fcgi-shim"]
        self.chart[title] = {lab: {f"c={c}": r[c]["req_s"] for c in (1, 4)}
                             for lab, r in results.items()}
        for c in (1, 4):
            for label, r in results.items():
                if label == "fcgi-shim":
                    continue
                tgt, ok = targets(label, c, shim[c]["req_s"] / r[c]["req_s"])
                self.row(title, f"req/s, c={c}", shim[c]["req_s"], label, r[c]["req_s"],
                         target=tgt, met=ok)
        for c in (1, 4):
            for q in ("p50", "p99"):
                for label, r in results.items():
                    if label != "fcgi-shim":
                        self.row(title, f"latency {q}, c={c} (lower is better)",
                                 shim[c][f"{q}_us"] / 1000, label, r[c][f"{q}_us"] / 1000,
                                 unit="ms", fmt="{:.2f}")
        for c in (1, 4):
            for label, r in results.items():
                if label != "fcgi-shim":
                    self.row(title, f"server CPU per request, all its processes, c={c}",
                             shim[c]["cpu_us_all"], label, r[c]["cpu_us_all"], unit="µs",
                             fmt="{:.1f}")
        return results

    def section_hello(self):
        log("1. hello world behind nginx")

        def targets(label, c, ratio):
            if label == "uWSGI":
                return "≥ 1.00 (≥ uWSGI)", ratio >= 1.0
            if label.startswith("flup"):
                return "≥ 2.00 (≥ 2x flup)", ratio >= 2.0
            return "", None

        title = "1. hello world, nginx"
        results = self.run_nginx_section("hello", title, self.hello_servers(), "/", HELLO_BODY,
                                         targets)
        # The same shim with a worker that costs nothing: what the design
        # (a shim and a worker, a pipe between them) can reach at best; a
        # Python worker only adds to it.
        for c in (1, 4):
            floor, uwsgi = results[NULL][c]["req_s"], results["uWSGI"][c]["req_s"]
            self.row(title, f"req/s, c={c}: the floor of the design (the shim with a worker "
                     "in C that answers at once)", floor, "uWSGI", uwsgi,
                     target=f"fcgi-shim reaches {results['fcgi-shim'][c]['req_s'] / floor:.2f}"
                     " of it", met=None)

    def shim_internals(self, nginx, server, results, floor=None):
        """CPU, context switches and syscalls per request of the shim and
        its worker (section 6 and the lead's optimisation figures); with
        `floor`, the C responder's figures from the same runs, for scale."""
        shim_pid = server.pid
        worker = [p for p in server.pids() if p != shim_pid]
        for c in (1, 4):
            procs = results[c]["procs"]
            s = procs.get(shim_pid)
            w = procs.get(worker[0]) if worker else None
            if s is None or w is None:
                raise Setup("the shim or its worker went away during the run")
            ok = s["cpu_us"] <= 10
            self.row("6. shim CPU", f"shim user+sys per request (hello, nginx, c={c}, "
                     f"{results[c]['requests']} requests)", s["cpu_us"], unit="µs",
                     fmt="{:.1f}", target="≤ 10 µs", met=ok)
            if floor:
                # The C responder does accept, poll, read, write and close
                # and nothing else: less than the shim's share of a request.
                self.row("6. shim CPU", f"shim user+sys per request vs the C responder's "
                         f"(no Python, all its work) (c={c})", s["cpu_us"],
                         "C libfcgi, no linger", floor[c]["cpu_us_all"], unit="µs",
                         fmt="{:.1f}")
            self.row("6. shim CPU", f"worker (Python) user+sys per request (c={c})",
                     w["cpu_us"], unit="µs", fmt="{:.1f}")
            self.row("6. shim CPU", f"context switches per request, shim (c={c}): "
                     "voluntary / involuntary", f"{s['vcs']:.2f} / {s['ivcs']:.2f}")
            self.row("6. shim CPU", f"context switches per request, worker (c={c}): "
                     "voluntary / involuntary", f"{w['vcs']:.2f} / {w['ivcs']:.2f}")
        # Syscalls: strace -c on the shim and, separately, its worker, for
        # a fixed number of sequential requests (ab, c=1).
        n = self.strace_reqs
        out_s, out_w = ROOT / "logs" / "strace-shim.txt", ROOT / "logs" / "strace-worker.txt"
        tracers = [subprocess.Popen(["strace", "-c", "-f", "-q", "-o", str(o), "-p", str(p)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
                   for o, p in ((out_s, shim_pid), (out_w, worker[0]))]
        time.sleep(1)  # attached
        ab = subprocess.run(["ab", "-q", "-n", str(n), "-c", "1", nginx.url(server.name, "/")],
                            capture_output=True, text=True)
        time.sleep(0.2)
        for t in tracers:
            t.send_signal(signal.SIGINT)
            t.wait(10)
        m = re.search(r"Complete requests:\s+(\d+)", ab.stdout)
        f = re.search(r"Failed requests:\s+(\d+)", ab.stdout)
        if ab.returncode != 0 or not m or int(m.group(1)) != n or (f and int(f.group(1))):
            raise Setup(f"ab under strace failed:\n{ab.stdout}{ab.stderr}")
        for who, path in (("shim", out_s), ("worker", out_w)):
            calls = parse_strace(path.read_text())
            total = sum(c for c, _ in calls.values())
            self.row("6. shim CPU", f"syscalls per request, {who} (strace -c, {n} requests "
                     "c=1)", total / n, fmt="{:.1f}")
            lines = [f"Syscalls per request of the {who} (strace -c -f -p on the "
                     f"{'shim' if who == 'shim' else 'Python worker'} process, "
                     f"{n} sequential requests of hello world through nginx; "
                     "includes the idle polls between requests):", "",
                     "| syscall | calls per request | of which failed |", "|---|---|---|"]
            for name, (k, e) in sorted(calls.items(), key=lambda kv: -kv[1][0]):
                lines.append(f"| {name} | {k / n:.2f} | {e / n:.2f} |")
            self.details.append("\n".join(lines))
        log(f"    strace: {n} requests traced")

    # -- 2. Django behind nginx --

    def section_django(self):
        log("2. Django view (template render) behind nginx")

        def targets(label, c, ratio):
            if label == "uWSGI":
                return "≥ 0.95 (within 5% of uWSGI)", ratio >= 0.95
            return "", None

        self.run_nginx_section("django", "2. Django view, nginx", self.django_servers(),
                               "/hello/", DJANGO_MARK, targets)

    # -- 3. Apache + mod_fcgid, and 8. reload --

    def section_apache(self):
        log("3. Apache + mod_fcgid from a .htaccess (htaccess/fcgid.htaccess)")
        base = ROOT / "apache-sites"
        proj = base / "djsite"
        base.mkdir()
        self.copy_django(proj)
        subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(proj)], check=True)
        fill = {"@PYTHON@": PYTHON, "@PROJECT@": proj, "@DATA@": ROOT / "djdata",
                "@APPS@": ROOT / "apps"}
        # Hello world first: its C responder is the floor the Django rows
        # are measured against.
        apps = (
            ("hello world", "/", HELLO_BODY, self.toml("hello:application"), "seed_hello.fcgi"),
            ("Django view", "/hello/", DJANGO_MARK, self.toml(django_project=proj),
             "seed_mysite.fcgi"),
        )
        floor = None
        for app, path, mark, toml, seed in apps:
            key = "dj" if app.startswith("Django") else "hello"
            roots = {}
            # uWSGI (C with Python embedded) through the same .htaccess: what
            # the other design reaches in this deployment. Hello world also
            # through the C responder: no Python at all, what any responder
            # can reach through Apache + mod_fcgid.
            # And the shim with a worker in C that answers at once: the
            # floor of fcgi-shim's own design here.
            peers = ("shim", "null", "flup", "uwsgi", "c") if key == "hello" \
                else ("shim", "flup", "uwsgi")
            for peer in peers:
                root = roots[peer] = base / f"{key}-{peer}"
                root.mkdir()
                shutil.copy(REPO / "htaccess" / "fcgid.htaccess", root / ".htaccess")
            shutil.copy(self.shim, roots["shim"] / "mysite.fcgi")
            if "c" in roots:
                shutil.copy(ROOT / "bin" / "hello_fcgi_nl", roots["c"] / "mysite.fcgi")
            (roots["shim"] / "site.toml").write_text(toml)
            if "null" in roots:
                shutil.copy(self.shim, roots["null"] / "mysite.fcgi")
                (roots["null"] / "site.toml").write_text(
                    self.toml("hello:application", python=ROOT / "bin" / "null_worker"))
            text = (BENCH / seed).read_text()
            for k, v in fill.items():
                text = text.replace(k, str(v))
            (roots["flup"] / "mysite.fcgi").write_text(text)
            (roots["uwsgi"] / "mysite.fcgi").write_text(self.uwsgi_script(
                roots["uwsgi"] / "mysite.fcgi", proj if key == "dj" else None))
            for root in roots.values():
                os.chmod(root / "mysite.fcgi", 0o755)
            subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
            floor = self.apache_app(app, path, mark, roots,
                                    django_proj=proj if key == "dj" else None, floor=floor)

    def uwsgi_script(self, script, django_proj=None):
        """mysite.fcgi for uWSGI under mod_fcgid: a shell script that execs
        uWSGI as section 1 runs it, on the socket mod_fcgid puts on fd 0.
        --env FCGI_SHIM_BENCH_SCRIPT names the script on uWSGI's command
        line, by which fcgid_pids finds the process after the exec."""
        if django_proj:
            argv = uwsgi_argv(django_proj, "mysite.wsgi:application")
            argv += [a for k, v in self.django_env().items() for a in ("--env", f"{k}={v}")]
        else:
            argv = uwsgi_argv(ROOT / "apps", "hello:application")
        argv += ["--env", f"FCGI_SHIM_BENCH_SCRIPT={script}"]
        # uWSGI's start-up banner would fill Apache's error log.
        return ("#!/bin/sh\n# Generated by tests/bench/bench.py.\nexec "
                + " ".join(shlex.quote(str(a)) for a in argv) + " 2>/dev/null\n")

    def view_time(self, proj, path):
        """The Django view's own time per request, in microseconds: the
        WSGI app called in a loop in one Python process, no server at all
        (median of 5 rounds of 2000 calls)."""
        code = f"""
import io, statistics, sys, time
sys.path.insert(0, {str(proj)!r})
from django.core.wsgi import get_wsgi_application
app = get_wsgi_application()
env = {{"REQUEST_METHOD": "GET", "PATH_INFO": {path!r}, "SCRIPT_NAME": "", "QUERY_STRING": "",
       "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
       "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
       "wsgi.errors": sys.stderr, "wsgi.multithread": False,
       "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}}
def sr(status, headers, exc_info=None):
    assert status.startswith("200"), status
def once():
    r = app(dict(env, **{{"wsgi.input": io.BytesIO()}}), sr)
    b"".join(r)
    r.close()
for _ in range(500):
    once()
rounds = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(2000):
        once()
    rounds.append((time.perf_counter() - t) / 2000 * 1e6)
print(statistics.median(rounds))
"""
        out = subprocess.run([str(PYTHON), "-c", code], env={**self.django_env(),
                             "PATH": SERVER_PATH}, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise Setup(f"timing the Django view failed:\n{out.stderr[-2000:]}")
        return float(out.stdout.split()[-1])

    def apache_app(self, app, path, mark, roots, django_proj=None, floor=None):
        """Measures `app` through Apache + mod_fcgid for each peer in
        `roots`. With django_proj: the reload row, and the bound that
        `floor` (the C responder's results, from hello world) and the view's
        own time give. Returns the C responder's results if it ran here,
        else `floor`."""
        results, nprocs = {}, {}
        peers = [("fcgi-shim", "shim"), ("flup seed", "flup"), ("uWSGI", "uwsgi")]
        if "null" in roots:
            peers.insert(1, (NULL, "null"))
        if "c" in roots:
            peers.append(("C libfcgi, no linger", "c"))
        for label, key in peers:
            root = roots[key]
            log(f"  {app}: {label}")
            # Each peer gets an Apache of its own, so that the other's
            # processes are gone while it is measured.
            apache = self.track(Apache(root.name, {label: root}).start())
            try:
                url = apache.url(label, path)
                wait_for_page(url, mark, what=f"apache {label}")
                script = root / "mysite.fcgi"
                # Reload first, while mod_fcgid runs one process.
                if django_proj and key == "shim":
                    self.reload_shim(apache.url(label, "/version/"), script, django_proj)
                elif django_proj and key == "flup":
                    self.reload_flup(apache.url(label, "/version/"), script, django_proj)

                def pids(s=script):
                    return [q for p in apache.fcgid_pids(s) for q in tree(p)]

                results[label], nprocs[label] = {}, {}
                for c in (1, 8):
                    self.settle(url, c, lambda s=script: len(apache.fcgid_pids(s)))
                    results[label][c] = self.measure(url, c, pids, label)
                    nprocs[label][c] = len(apache.fcgid_pids(script))
                    log(f"    mod_fcgid ran {nprocs[label][c]} process(es) at c={c}")
            finally:
                self.stop(apache)
                kill_leftovers(root)
        shim, flup = results["fcgi-shim"], results["flup seed"]
        floor = results.get("C libfcgi, no linger", floor)
        title = f"3. {app}, Apache + mod_fcgid"
        self.chart[title] = {lab: {f"c={c}": r[c]["req_s"] for c in (1, 8)}
                             for lab, r in results.items()}

        def procs(c):
            a, b = nprocs["fcgi-shim"][c], nprocs["flup seed"][c]
            return f"{a} process{'es' if a > 1 else ''}" if a == b \
                else f"shim {a}, flup {b} processes"

        for c in (1, 8):
            ratio = shim[c]["req_s"] / flup[c]["req_s"]
            self.row(title, f"req/s, c={c} (mod_fcgid ran {procs(c)})", shim[c]["req_s"],
                     "flup seed mysite.fcgi", flup[c]["req_s"], target="≥ 2.00 (≥ 2x flup)",
                     met=ratio >= 2)
            self.row(title, f"req/s, c={c} (mod_fcgid ran {nprocs['uWSGI'][c]} uWSGI "
                     f"process{'es' if nprocs['uWSGI'][c] > 1 else ''})", shim[c]["req_s"],
                     "uWSGI (C with Python embedded)", results["uWSGI"][c]["req_s"],
                     target=f"uWSGI / flup: {results['uWSGI'][c]['req_s'] / flup[c]['req_s']:.2f}",
                     met=None)
            if NULL in results:
                self.row(title, f"req/s, c={c}: the floor of the design (the shim with a "
                         f"worker in C that answers at once; mod_fcgid ran {nprocs[NULL][c]} "
                         f"process{'es' if nprocs[NULL][c] > 1 else ''})",
                         results[NULL][c]["req_s"], "flup seed mysite.fcgi", flup[c]["req_s"],
                         target=f"fcgi-shim reaches {shim[c]['req_s'] / results[NULL][c]['req_s']:.2f}"
                         " of it", met=None)
            if "C libfcgi, no linger" in results:
                self.row(title, f"req/s, c={c} (mod_fcgid ran {nprocs['C libfcgi, no linger'][c]}"
                         " processes of the C responder)", shim[c]["req_s"],
                         "C libfcgi, no linger (no Python: the floor)", floor[c]["req_s"],
                         target=f"2x flup would be {2 * flup[c]['req_s']:.0f}",
                         met=None)
        if django_proj is not None and floor:
            # What no server could beat at c=1 (one request at a time):
            # Apache + mod_fcgid's own time per request (the C responder's,
            # which does nothing else) plus the view's own time.
            view_us = self.view_time(django_proj, path)
            floor_us = 1e6 / floor[1]["req_s"]
            best = 1e6 / (floor_us + view_us)
            self.row(title, f"req/s, c=1, the most any server could do: 1 / (Apache + "
                     f"mod_fcgid {floor_us:.0f} µs + the view itself {view_us:.0f} µs)",
                     shim[1]["req_s"], "that bound", best,
                     target=f"2x flup would be {2 * flup[1]['req_s']:.0f}", met=None)
        for c in (1, 8):
            for q in ("p50", "p99"):
                self.row(title, f"latency {q}, c={c} (lower is better)",
                         shim[c][f"{q}_us"] / 1000, "flup seed mysite.fcgi",
                         flup[c][f"{q}_us"] / 1000, unit="ms", fmt="{:.2f}")
        self.row(title, "server CPU per request, all its processes, c=1",
                 shim[1]["cpu_us_all"], "flup seed mysite.fcgi", flup[1]["cpu_us_all"],
                 unit="µs", fmt="{:.0f}")
        return floor

    def settle(self, url, conns, count, rounds=8):
        """Warm up until mod_fcgid has started all the processes it will
        for this concurrency (the count is the same after two rounds)."""
        last = None
        for _ in range(rounds):
            wrk(url, conns, self.warm)
            n = count()
            if n == last:
                return
            last = n

    def reload_shim(self, url, script, proj):
        """8. Time from `touch mysite.fcgi` to the first response from new
        code: the Django site's pages/version.py replaced, mysite.fcgi
        touched, GET /version/ sent back to back until it shows the new
        text."""
        log("8. reload: touch mysite.fcgi → first response of new code")
        version = proj / "pages" / "version.py"
        times = []
        for i in range(self.reloads):
            text = f"reload {i} {time.time_ns()}"
            write_module(version, f'VERSION = "{text}"\n')
            t0 = time.monotonic()
            os.utime(script)
            while True:
                code, body = http_get(url, timeout=60)
                if code == 200 and body.decode(errors="replace").strip() == text:
                    times.append(time.monotonic() - t0)
                    break
                if time.monotonic() - t0 > 60:
                    raise Setup(f"no new code 60 s after touch: {code} {body[:200]!r}")
            time.sleep(0.5)
        log(f"    fcgi-shim: {', '.join(f'{t * 1000:.0f}' for t in times)} ms")
        self.reload_times = times

    def reload_flup(self, url, script, proj):
        """The seed's flup under mod_fcgid: touch changes nothing (mod_fcgid
        never looks at mtime), so only a bounded wait can be reported."""
        version = proj / "pages" / "version.py"
        watch = 3 if self.quick else 10
        text = f"flup {time.time_ns()}"
        write_module(version, f'VERSION = "{text}"\n')
        t0 = time.monotonic()
        os.utime(script)
        flup_time = None
        while time.monotonic() - t0 < watch:
            code, body = http_get(url)
            if code == 200 and body.decode(errors="replace").strip() == text:
                flup_time = time.monotonic() - t0
                break
            time.sleep(0.05)
        log("    flup seed: " + (f"new code after {flup_time * 1000:.0f} ms" if flup_time
                                  else f"old code still {watch} s after touch"))
        times = getattr(self, "reload_times", None)
        if times:
            self.row("8. reload", "touch mysite.fcgi → first response of new code (Django, "
                     f"Apache + mod_fcgid, median of {len(times)})",
                     statistics.median(times) * 1000, "flup seed mysite.fcgi",
                     flup_time * 1000 if flup_time
                     else f"never (old code {watch} s after touch)",
                     unit="ms", fmt="{:.0f}")

    # -- 4. CGI --

    def section_cgi(self):
        log("4. CGI: one request per process")
        d = ROOT / "cgi"
        d.mkdir()
        shutil.copy(self.shim, d / "mysite.fcgi")
        (d / "site.toml").write_text(self.toml("hello:application"))
        text = (BENCH / "wsgiref.cgi").read_text()
        text = text.replace("@PYTHON@", str(PYTHON)).replace("@APPS@", str(ROOT / "apps"))
        (d / "wsgiref.cgi").write_text(text)
        for f in ("mysite.fcgi", "wsgiref.cgi"):
            os.chmod(d / f, 0o755)
        os.chmod(d, 0o755)
        out = ROOT / "cgi-out"
        out.mkdir()
        chown_www(out)

        def cgi_env(script):
            # What Apache's mod_cgi(d) gives a script for GET /hello.
            return {
                "PATH": SERVER_PATH, "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_SOFTWARE": "Apache/2.4", "SERVER_NAME": "127.0.0.1",
                "SERVER_ADDR": "127.0.0.1", "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_SCHEME": "http",
                "REQUEST_METHOD": "GET", "REQUEST_URI": "/hello", "QUERY_STRING": "",
                "SCRIPT_NAME": f"/{script.name}", "PATH_INFO": "/hello",
                "SCRIPT_FILENAME": str(script), "DOCUMENT_ROOT": str(d),
                "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000",
                "HTTP_HOST": "127.0.0.1", "HTTP_USER_AGENT": "bench",
            }

        cases = [
            ("fcgi-shim (CGI mode)", [str(d / "mysite.fcgi")], cgi_env(d / "mysite.fcgi"), d),
            ("wsgiref CGIHandler", [str(d / "wsgiref.cgi")], cgi_env(d / "wsgiref.cgi"), d),
            ('bare `python -c "import hello"`', [str(PYTHON), "-c", "import hello"],
             {"PATH": SERVER_PATH}, ROOT / "apps"),
        ]
        uid, gid = www_ids()
        medians = {}
        for label, argv, env, cwd in cases:
            check = subprocess.run(argv, env=env, cwd=cwd, user=uid, group=gid,
                                   extra_groups=[], capture_output=True, timeout=60)
            if check.returncode != 0 or (argv[0] != str(PYTHON) and HELLO_BODY not in
                                         check.stdout):
                raise Setup(f"{label} as CGI failed ({check.returncode}):\n"
                            f"{check.stdout[:500]!r}\n{check.stderr[-2000:]!r}")
            js = out / f"{len(medians)}.json"
            hf = subprocess.run(
                ["hyperfine", "-N", "--style", "none", "--warmup", "5",
                 "--runs", str(self.cgi_runs), "--export-json", str(js),
                 shlex.join(argv)], env=env, cwd=cwd, user=uid, group=gid, extra_groups=[],
                capture_output=True, text=True, timeout=600)
            if hf.returncode != 0:
                raise Setup(f"hyperfine {label} failed:\n{hf.stdout}{hf.stderr}")
            res = json.loads(js.read_text())["results"][0]
            medians[label] = res["median"] * 1000
            log(f"  {label}: median {medians[label]:.1f} ms over {len(res['times'])} runs")
        shim, wsgiref, bare = (medians[c[0]] for c in cases)
        self.row("4. CGI", f"one GET, wall time (median of {self.cgi_runs}, hyperfine, as "
                 "www-data)", shim, "wsgiref CGIHandler", wsgiref, unit="ms", fmt="{:.1f}",
                 target="faster than wsgiref", met=shim < wsgiref)
        self.row("4. CGI", "one GET, wall time", shim, cases[2][0], bare, unit="ms",
                 fmt="{:.1f}")
        self.row("4. CGI", "added over bare import", shim - bare, "wsgiref CGIHandler",
                 wsgiref - bare, unit="ms", fmt="{:.1f}", target="≤ 5 ms",
                 met=shim - bare <= 5)

    # -- 5. memory --

    def section_memory(self):
        sizes = ((16 << 20), (64 << 20)) if self.quick else ((64 << 20), (1 << 30))

        def human(n):
            return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"

        log(f"5. memory: the shim's RSS idle and during uploads and downloads of "
            f"{' and '.join(human(n) for n in sizes)}")
        site = self.site_dir("stream", self.toml("stream:application"))
        server = Spawned("mem-shim", [site / "mysite.fcgi"], cwd=site)
        # Stream both ways: nginx passes the body on as it comes
        # (request_buffering off, needs Content-Length) and the response
        # as it goes (buffering off), so neither is spooled to disk first.
        nginx = self.track(Nginx({server.name: "client_max_body_size 0; "
                                  "fastcgi_request_buffering off; fastcgi_buffering off;"})
                           .start())
        self.track(server.start())
        peaks = {}
        try:
            base = nginx.url(server.name)
            wait_for_page(base, HELLO_BODY, alive_check=server.alive, what="mem-shim")
            for _ in range(200):
                http_get(base)
            shim_pid = server.pid
            worker = [p for p in server.pids() if p != shim_pid][0]
            time.sleep(1.5)  # idle: past the shim's once-a-second idle check
            idle_shim, idle_worker = status(shim_pid)["VmRSS"], status(worker)["VmRSS"]
            body = ROOT / "big.bin"
            for size in sizes:
                with open(body, "wb") as f:
                    f.truncate(size)  # sparse: reading it costs no disk
                for what, cmd in (
                    ("upload", ["curl", "-sS", "-f", "-H", "Expect:", "-X", "POST", "-T",
                                str(body), "-o", str(ROOT / "logs" / "upload.out"),
                                base + "upload"]),
                    ("download", ["curl", "-sS", "-f", "-o", "/dev/null", "-w",
                                  "%{size_download}", f"{base}download?bytes={size}"]),
                ):
                    for p in (shim_pid, worker):
                        reset_hwm(p)
                    t0 = time.monotonic()
                    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                    secs = time.monotonic() - t0
                    got = (ROOT / "logs" / "upload.out").read_text().strip() \
                        if what == "upload" else r.stdout.strip()
                    if r.returncode != 0 or got != str(size):
                        raise Setup(f"{what} of {size} bytes failed ({r.returncode}, got "
                                    f"{got!r}): {r.stderr}\n{server.tail()}")
                    pk = peaks[what, size] = {
                        "shim": status(shim_pid)["VmHWM"],
                        "worker": status(worker)["VmHWM"],
                        "mb_s": size / secs / 1e6,
                    }
                    log(f"  {human(size)} {what}: {pk['mb_s']:.0f} MB/s; peak RSS shim "
                        f"{pk['shim'] / 1024:.2f} MiB, worker {pk['worker'] / 1024:.1f} MiB")
            body.unlink()
        finally:
            self.stop(server)
            self.stop(nginx)
        mib = 1024
        t = "5. memory"
        small, big = sizes
        self.row(t, "shim RSS, idle (after 200 requests)", idle_shim / mib, unit="MiB",
                 fmt="{:.2f}", target="≤ 2 MiB", met=idle_shim <= 2 * mib)
        for what in ("upload", "download"):
            pk = peaks[what, big]
            self.row(t, f"shim peak RSS (VmHWM) during a {human(big)} {what} through nginx "
                     f"({pk['mb_s']:.0f} MB/s; {human(small)}: "
                     f"{peaks[what, small]['shim'] / mib:.2f} MiB)", pk["shim"] / mib,
                     unit="MiB", fmt="{:.2f}",
                     target="≤ 16 MiB" if what == "upload" else "",
                     met=pk["shim"] <= 16 * mib if what == "upload" else None)
        self.row(t, "Python worker RSS, idle", idle_worker / mib, unit="MiB", fmt="{:.1f}")
        for what in ("upload", "download"):
            grow_big = peaks[what, big]["worker"] - idle_worker
            grow_small = peaks[what, small]["worker"] - idle_worker
            self.row(t, f"Python worker growth (VmHWM − idle RSS) during the {human(big)} "
                     f"{what} ({human(small)}: {grow_small / mib:.2f} MiB)", grow_big / mib,
                     unit="MiB", fmt="{:.2f}", target="does not grow with body size",
                     met=grow_big - grow_small <= 1 * mib)

    # -- 7. size --

    # -- 9. placement --

    def start_behind_nginx(self, servers, path="/", mark=HELLO_BODY, cpus=None):
        """One nginx (on `cpus` if given) in front of `servers`, all started
        and answering `path` with `mark`."""
        nginx = self.track(Nginx({s.name: "" for _, s in servers}, cpus).start())
        for _, server in servers:
            self.track(server.start())
        for _, server in servers:
            try:
                wait_for_page(nginx.url(server.name, path), mark, alive_check=server.alive,
                              what=server.name)
            except Setup as e:
                raise Setup(f"{e}\n{server.name} log:\n{server.tail()}") from None
        return nginx

    def take_rounds(self, nginx, servers, conns, path="/", cpus=None):
        """Each server measured in turn, in rounds that alternate the
        order, so that a disturbance or a drift of the machine spreads over
        all of them instead of falling on one: {label: combined figures}."""
        runs = {label: [] for label, _ in servers}
        for rnd in range(self.rounds):
            for label, server in (servers if rnd % 2 == 0 else servers[::-1]):
                runs[label].append(self.run_once(nginx.url(server.name, path), conns,
                                                 server.pids, cpus))
        results = {label: self.combine(r) for label, r in runs.items()}
        for label, r in results.items():
            self.log_figures(label + (f" (on CPU {cpus})" if cpus else ""), conns, r)
        return results

    def section_placement(self):
        """What decides c=1 behind nginx on this machine. At c=1 every hop
        of a request (wrk -> nginx -> app -> nginx -> wrk) wakes a process
        that sleeps; on the CPU the waker runs on that costs a context
        switch, on the other CPU a cross-CPU wake-up. Measured: (a) a
        hand-off between two processes both ways; (b) how often the
        scheduler, left alone as in section 1, runs each server on nginx's
        CPU; (c) the servers again with wrk, nginx and the server all on
        CPU 0, where no hop crosses CPUs: what each costs per request, the
        placement taken out; (d) nginx and the server on CPU 0 and wrk on
        CPU 1, where only wrk's hops cross: what sharing nginx's CPU gives
        and costs."""
        log("9. placement, c=1")
        title = "9. placement, c=1"
        if len(os.sched_getaffinity(0)) < 2:
            raise Setup("section placement needs 2 CPUs")
        rtt = {}
        for where, (a, b) in (("one CPU", (0, 0)), ("two CPUs", (0, 1))):
            out = subprocess.run([str(ROOT / "bin" / "pipe_rtt"), str(a), str(b)],
                                 capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                raise Setup(f"pipe_rtt {a} {b} failed: {out.stderr}")
            rtt[where] = float(out.stdout) / 1000
            self.row(title, f"pipe round trip between two processes (two wake-ups), "
                     f"the two on {where}", rtt[where], unit="µs", fmt="{:.1f}")
        log(f"  pipe round trip: {rtt['one CPU']:.1f} µs on one CPU, "
            f"{rtt['two CPUs']:.1f} µs across two")

        # (b) Left to the scheduler: where each server's processes ran,
        # against nginx's worker, sampled about every 2 ms during a c=1 run.
        placed = ("fcgi-shim", "uWSGI", "C libfcgi, no linger")
        servers = self.hello_servers("place", only=placed)
        share = {}
        nginx = self.start_behind_nginx(servers)
        try:
            workers = [p for p in tree(nginx.proc.pid) if p != nginx.proc.pid]
            if len(workers) != 1:
                raise Setup(f"expected one nginx worker, found {workers}")
            for label, server in servers:
                pids = server.pids()
                seen = {"with": 0, "all": 0}

                def sample(pids=pids, seen=seen):
                    cpus = [last_cpu(p) for p in [workers[0], *pids]]
                    if None not in cpus:
                        seen["all"] += 1
                        seen["with"] += all(c == cpus[0] for c in cpus[1:])

                url = nginx.url(server.name)
                wrk(url, 1, self.warm)
                wrk(url, 1, self.secs, sample=sample)
                share[label] = 100 * seen["with"] / max(seen["all"], 1)
                log(f"    {label}: on nginx's CPU in {share[label]:.1f}% of "
                    f"{seen['all']} samples")
        finally:
            for _, server in servers:
                self.stop(server)
            self.stop(nginx)
        for label in ("uWSGI", "C libfcgi, no linger"):
            self.row(title, "samples with every process of the server on nginx's CPU "
                     "(no taskset, as in 1.; fcgi-shim: the shim and its worker, which it "
                     "binds to one CPU itself)",
                     f"{share['fcgi-shim']:.1f} %", label, f"{share[label]:.1f} %")

        # (c) Everything on CPU 0: the shim finds one CPU allowed and leaves
        # placement alone (affinity.rs); its worker inherits the binding.
        # (d) nginx and the server on CPU 0, wrk on CPU 1: every server where
        # the C responder mostly is, so that nginx and the server hand off on
        # one CPU and only wrk's hops cross.
        for where, server_cpus, wrk_cpus in (("all on CPU 0", "0", "0"),
                                             ("nginx + server on CPU 0, wrk on CPU 1", "0", "1")):
            self.pinned_run(title, placed, where, server_cpus, wrk_cpus)

    def pinned_run(self, title, placed, where, server_cpus, wrk_cpus):
        """Section 1's servers at c=1 with nginx and the server on
        `server_cpus` and wrk on `wrk_cpus`: rows of req/s and CPU."""
        servers = self.hello_servers("cpu" + server_cpus + wrk_cpus, cpus=server_cpus,
                                     only=placed)
        nginx = self.start_behind_nginx(servers, cpus=server_cpus)
        try:
            results = self.take_rounds(nginx, servers, 1, cpus=wrk_cpus)
            shim_pid = dict(servers)["fcgi-shim"].pid
        finally:
            for _, server in servers:
                self.stop(server)
            self.stop(nginx)
        shim = results["fcgi-shim"]
        self.chart[f"9. {where}"] = {label: {"c=1": r["req_s"]} for label, r in results.items()}
        for label, r in results.items():
            if label != "fcgi-shim":
                self.row(title, f"req/s, {where}", shim["req_s"], label, r["req_s"])
        for label, r in results.items():
            if label != "fcgi-shim":
                self.row(title, f"server CPU per request, all its processes, {where}",
                         shim["cpu_us_all"], label, r["cpu_us_all"], unit="µs", fmt="{:.1f}")
        own = shim["procs"].get(shim_pid, {}).get("cpu_us")
        rest = shim["cpu_us_all"] - (own or 0)
        if own is not None:
            self.row(title, f"fcgi-shim's CPU per request, {where}: the shim / its "
                     "Python worker", f"{own:.1f} µs / {rest:.1f} µs")

    def section_size(self):
        log("7. size")
        stripped = ROOT / "bin" / "fcgi-shim.stripped"
        shutil.copy(self.shim, stripped)
        subprocess.run(["strip", "--strip-all", str(stripped)], check=True)
        size = stripped.stat().st_size
        file_out = subprocess.run(["file", "-b", str(self.shim)], capture_output=True,
                                  text=True).stdout.strip()
        linked = "static-pie" if "static-pie" in file_out else (
            "static" if "statically linked" in file_out else "NOT static")
        self.row("7. size", f"stripped binary ({linked}; as built: "
                 f"{self.shim.stat().st_size} bytes)", size / (1 << 20), unit="MiB",
                 fmt="{:.3f}", target="≤ 1 MiB", met=size <= 1 << 20)
        self.size = size
        log(f"  {size} bytes ({file_out})")


def cpu_model():
    """The CPU's model name and per-core L2 size, from /proc/cpuinfo: the same
    VM type may land on other hosts from one day to the next."""
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return f"{info.get('model name', 'unknown CPU')}, cache {info.get('cache size', '?')}"


def last_cpu(pid):
    """The CPU pid last ran on (/proc/PID/stat field 39); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def write_module(path, text):
    """Replace a module the way an upload does (atomically), with a new
    mtime and size, so that no stale .pyc is used."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    for cached in path.parent.glob(f"__pycache__/{path.stem}.*.pyc"):
        cached.unlink()


def parse_strace(text):
    """{syscall: (calls, errors)} from the table `strace -c` writes."""
    calls = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[0][0].isdigit() or parts[-1] == "total":
            continue
        try:
            n = int(parts[3])
            errors = int(parts[4]) if len(parts) == 6 else 0
        except ValueError:
            continue
        c, e = calls.get(parts[-1], (0, 0))
        calls[parts[-1]] = (c + n, e + errors)
    return calls


# -- machine state, report ----------------------------------------------------------------


class ForeignLoad:
    """CPU time of the processes that are not this run's, sampled every
    second in a thread: other people's tests on the machine. A process is
    this run's when it or an ancestor is bench.py or has ROOT in its command
    line (the private Apaches daemonize away from bench.py); kernel threads
    are left out. Processes that start and end within one sample are
    missed, so this is a lower bound."""

    def __init__(self):
        import threading

        self.me = os.getpid()
        self.section = "start"
        self.cpu = {}        # section -> foreign CPU seconds
        self.wall = {}       # section -> seconds
        self.by_comm = {}    # comm -> foreign CPU seconds
        self.mine_cache = {}
        self.done = threading.Event()
        self.prev = self.snapshot()
        self.t_prev = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def snapshot(self):
        procs = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, _, rest = f.read().rpartition(")")
                fields = rest.split()
                procs[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                                     head.partition("(")[2], fields[0])
            except (OSError, IndexError, ValueError):
                pass
        return procs

    def mine(self, pid, procs):
        chain = []
        while pid > 1 and pid in procs:
            if pid in self.mine_cache:
                result = self.mine_cache[pid]
                break
            chain.append(pid)
            if pid == self.me:
                result = True
                break
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                cmd = b""
            if (str(ROOT) + "/").encode() in cmd:
                result = True
                break
            pid = procs[pid][0]
        else:
            result = False
        for p in chain:
            self.mine_cache[p] = result
        return result

    def run(self):
        while not self.done.wait(1.0):
            self.sample()

    def sample(self):
        now, t = self.snapshot(), time.monotonic()
        for pid, (ppid, ticks, comm, _) in now.items():
            old = self.prev.get(pid)
            if old is None or ticks <= old[1] or pid == 2 or ppid == 2:
                continue
            if self.mine(pid, now):
                continue
            secs = (ticks - old[1]) / CLK_TCK
            self.cpu[self.section] = self.cpu.get(self.section, 0) + secs
            self.by_comm[comm] = self.by_comm.get(comm, 0) + secs
        self.wall[self.section] = self.wall.get(self.section, 0) + (t - self.t_prev)
        self.prev, self.t_prev = now, t
        # Forget pids that are gone (they may be reused).
        self.mine_cache = {p: v for p, v in self.mine_cache.items() if p in now}

    def mark(self, section):
        self.section = section

    def stop(self):
        self.done.set()
        self.thread.join()

    def average(self):
        """Cores used by other processes on average over the run."""
        return sum(self.cpu.values()) / (sum(self.wall.values()) or 1)

    def summary(self):
        """'0.05 cores (hello 0.02, ...)' and the top commands."""
        wall = sum(self.wall.values()) or 1
        total = sum(self.cpu.values())
        parts = [f"{s} {self.cpu.get(s, 0) / max(w, 1e-9):.2f}" for s, w in self.wall.items()
                 if w >= 1]
        top = sorted(self.by_comm.items(), key=lambda kv: -kv[1])[:5]
        return (f"{total / wall:.2f} cores on average ({total:.0f} CPU-seconds; by section: "
                f"{', '.join(parts)})", ", ".join(f"{c} {v:.0f} s" for c, v in top) or "none")


def cpu_busy(seconds=3):
    """Share of the machine's CPU time not idle over `seconds`."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]

    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def busiest(n=5):
    """The n processes using most CPU over one second (top's second
    snapshot: its first one counts since each process started)."""
    out = subprocess.run(["top", "-b", "-n", "2", "-d", "1", "-w", "200"],
                         capture_output=True, text=True).stdout
    snapshot = out.split("top - ")[-1].splitlines()
    header = next((i for i, ln in enumerate(snapshot) if ln.lstrip().startswith("PID")), None)
    if header is None:
        return []
    procs = []
    for ln in snapshot[header + 1:]:
        f = ln.split()
        if len(f) >= 12 and f[8] not in ("0.0", "0"):
            procs.append(f"{f[11]} {f[8]}%")
    return procs[:n]


def git_state():
    def g(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True).stdout.strip()

    head = g("rev-parse", "--short", "HEAD")
    dirty = g("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
    return head + (" + uncommitted changes in src/" if dirty else "")


def versions():
    def first(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    return {
        "python": first([str(PYTHON), "-V"]),
        "nginx": first(["nginx", "-v"]),
        "apache": first(["apache2", "-v"]),
        "uwsgi": "uWSGI " + first(["uwsgi", "--version"]),
        "wrk": first(["wrk", "-v"]),
        "django": first([str(PYTHON), "-c", "import django; print('Django', django.__version__)"]),
        "flup": first([str(PYTHON), "-c",
                       "import importlib.metadata as m; print('flup', m.version('flup'))"]),
    }


def markdown_table(rows):
    head = ("section", "measure", "fcgi-shim", "peer", "peer value", "fcgi-shim / peer",
            "target")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def draw_chart(chart, path, title):
    """One panel per comparison (2 columns), grouped bars per concurrency."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(chart.items())
    if not panels:
        return False
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, servers) in zip(axes.flat, panels):
        labels = list(servers)
        levels = list(next(iter(servers.values())))
        width = 0.8 / len(levels)
        for i, lev in enumerate(levels):
            xs = [j + (i - (len(levels) - 1) / 2) * width for j in range(len(labels))]
            vals = [servers[s][lev] for s in labels]
            bars = ax.bar(xs, vals, width, label=lev,
                          color=["#1f77b4", "#ff7f0e", "#2ca02c"][i % 3])
            ax.bar_label(bars, labels=[f"{v:.0f}" for v in vals], fontsize=7, padding=2)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([textwrap.fill(s, 11) for s in labels], fontsize=8)
        for tick, s in zip(ax.get_xticklabels(), labels):
            if s == "fcgi-shim":
                tick.set_fontweight("bold")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("requests per second")
        ax.margins(y=0.12)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "fcgi-shim"))
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="MINUTES",
                    help="first wait (at most this long) until the machine is quiet: "
                         "under 10%% CPU busy over 3 s")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {', '.join(bad)}: choose from {', '.join(SECTIONS)}")
    if os.geteuid() != 0:
        sys.exit("bench.py: run me as root (tests/bench/run): servers run as www-data")

    suffix = "-quick" if args.quick else ""
    results_md = BENCH / f"results{suffix}.md"
    chart_png = BENCH / f"throughput{suffix}.png"
    bench = Bench(args.quick, Path(args.bin))

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    # Quiet: under 10% CPU busy in three samples of 3 s in a row (a test
    # suite pauses between its steps for a few seconds).
    deadline = time.monotonic() + args.wait_quiet * 60
    busy_before, quiet = cpu_busy(), 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if busy_before <= 0.10 else 0
        if quiet >= 3:
            break
        if quiet == 0:
            log(f"waiting for a quiet machine: {busy_before * 100:.0f}% CPU busy")
            time.sleep(10)
        busy_before = cpu_busy()
    started = time.monotonic()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    top_before = busiest()
    log(f"machine before the run: load {' '.join(load_before)}, "
        f"{busy_before * 100:.0f}% CPU busy over 3 s")
    if busy_before > 0.10:
        log("WARNING: the machine is not quiet; the figures will be lower than they could be")
    ok = False
    foreign = ForeignLoad()
    try:
        foreign.mark("prepare")
        bench.prepare()
        for name in only:
            foreign.mark(name)
            getattr(bench, f"section_{name}")()
        ok = True
    except Setup as e:
        log(f"FAILED: {e}")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
    finally:
        bench.stop_all()
        kill_leftovers(ROOT)
        foreign.stop()
    elapsed = time.monotonic() - started
    foreign_avg, foreign_top = foreign.summary()
    verdict = ("The machine was quiet." if foreign.average() < 0.05 and busy_before <= 0.10
               else "**The machine was not quiet: other work took CPU from the servers "
                    "measured, unevenly; compare figures with care.**")
    log(f"other processes during the run: {foreign_avg}; busiest: {foreign_top}")
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    if not bench.rows:
        return 1

    order = {s: i for i, s in enumerate(
        ["1.", "2.", "3.", "4.", "5.", "6.", "7.", "8.", "9."])}
    rows = sorted(bench.rows, key=lambda r: order.get(r[0][:2], 99))  # stable within a section
    table = markdown_table(rows)
    v = versions()
    mode = "quick (smoke run: short durations, figures not for comparison)" if args.quick \
        else "full"
    charted = draw_chart(bench.chart, chart_png,
                         f"fcgi-shim vs peers, requests per second ({time.strftime('%Y-%m-%d')},"
                         f" {os.cpu_count()} cores)")
    notes = f"""# fcgi-shim benchmark results

Made by `tests/bench/run{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d %H:%M %Z')} ({mode}{'' if ok else '; INCOMPLETE: the run stopped early'}), in {elapsed / 60:.1f} min.
Binary: fcgi-shim at {bench.revision} (as the run began). {os.cpu_count()} cores ({cpu_model()}, Linux {os.uname().release}), nothing pinned.
Machine load: before the run {' '.join(load_before)} (1/5/15-min load average), {busy_before * 100:.0f}% CPU busy
over 3 s; after it {' '.join(load_after)}. Busiest processes before: {'; '.join(top_before) or '—'}.
Other people's processes during the run (sampled each second, a lower bound): {foreign_avg};
busiest: {foreign_top}. {verdict}
Software: {'; '.join(v.values())}; all Python servers on {v['python']} (Debian's /usr/bin/python3, venv {VENV}).

Method: one app process each (fcgi-shim: the shim plus its one Python worker), measured one
after the other in this run. wrk (1 thread, c keep-alive connections to the web server); each
figure is the median of {bench.rounds} round(s) of {bench.secs} s, each after a {bench.warm} s warm-up (CPU
and context switches: over all rounds). Behind nginx the servers of a section run side by
side, idle but for the one measured, and the rounds take them in turn (alternating the order),
so that a disturbance spreads over all of them. nginx (1 worker) talks FastCGI over a unix
socket without keep-alive (a new connection per request, as mod_fcgid does), to servers
spawned by `spawn-fcgi -n` with the listening socket on fd 0, running as www-data.
"fcgi-shim / peer" > 1 means the shim does more requests per second; for latencies, time and
memory < 1 means the shim's figure is smaller. ✓/✗: the issue's target, for information.

{table}
"""
    notes += f"""
Notes:

- uWSGI takes the socket on fd 0 from spawn-fcgi (`uwsgi socket 0 inherited UNIX address ...
  fd 0` in its log) and speaks FastCGI on it through `--protocol fastcgi`, with `--processes 1
  --threads 1`, no master. `--fastcgi-socket PATH` under spawn-fcgi was tried: uWSGI then binds a
  new socket at PATH itself (unlinking spawn-fcgi's) and leaves fd 0 beside it speaking its
  own uwsgi protocol, so `--protocol fastcgi` on the inherited socket is the equivalent that
  keeps every server on the same spawn-fcgi socket.
- flup `fcgi (threaded)` is flup.server.fcgi.WSGIServer with the options Django's
  runfastcgi(method="threaded") gave it, the server of the seed's mysite.fcgi; under nginx
  with c=4 it runs requests in threads of its one process.
- C libfcgi is tests/bench/hello_fcgi.c. Stock libfcgi ends every connection with
  shutdown(SHUT_WR) and then waits until the web server closes its end (os_unix.c OS_Close);
  "no linger" calls FCGX_Detach first so that only close() remains: 5 syscalls a request
  (accept, poll, read, write, close), the least any responder on this transport does.
- fcgi-shim + C worker (no Python) is the shim with tests/bench/null_worker.c as site.toml's
  `python`: a stand-in for the interpreter that speaks the shim's frame protocol and answers
  every request with hello world's bytes at once, without reading the request. It is the
  most the design (a shim, a worker, a pipe between them) can reach on this machine; the
  Python worker can only add to its time.
- Apache + mod_fcgid: a private Apache (event MPM) per peer, `htaccess/fcgid.htaccess` as the
  web root's .htaccess, mod_fcgid's defaults but FcgidMaxRequestLen. mod_fcgid sends one request
  at a time to a process; with no free process it starts another or, when it may not (the
  spawn score), sleeps a whole second before looking again (fcgid_bridge.c). So at c=1 it runs
  one process; at c=8 it runs as many as it decides (the count is in the row), warmed up until
  the count stays the same. With FcgidMaxProcessesPerClass 1, c=8 measured those one-second
  sleeps (p90 0.4 s, wrk timeouts), not the app. The one-second sleeps also explain p99s near
  1000 ms at c=8 whenever they appear.
- The seed's mysite.fcgi is tests/bench/seed_mysite.fcgi: the how-to's script with flup's
  threaded WSGIServer called directly (Django removed runfastcgi), with runfastcgi's options;
  tests/bench/seed_hello.fcgi is the same script around the hello-world app. uWSGI under
  mod_fcgid is a mysite.fcgi shell script that execs uWSGI as section 1 runs it (FastCGI on the
  socket mod_fcgid puts on fd 0, one process, one thread): the design with Python embedded in
  C, in the same deployment, to show what 2x the seed's script asks of any server there.
- CGI: each command run by hyperfine as www-data with the environment Apache's mod_cgi gives
  a GET (stdin /dev/null); "added" is the median minus the median of the bare import.
- Memory: VmRSS/VmHWM from /proc/PID/status; VmHWM reset (clear_refs 5) before each transfer,
  so each peak belongs to its transfer. nginx streams both ways (fastcgi_request_buffering and
  fastcgi_buffering off); the app reads and writes 64 KiB pieces.
- Shim CPU: utime+stime from /proc/PID/stat (10 ms ticks) over the timed hello-world runs,
  divided by the requests wrk counted; context switches from /proc/PID/status (summed over
  threads). Syscalls: strace -c attached to the running shim and to its worker while ab sent
  {bench.strace_reqs} sequential requests; the per-syscall breakdown follows. strace slows the
  shim enough that its worker has answered before the shim reads; untraced at c=1 that read
  fails first and a sched_yield follows (one read and one sched_yield a request more).
- Reload: through Apache + mod_fcgid while it runs one shim process, the Django site's
  pages/version.py is replaced, then `touch mysite.fcgi`; the time runs until a GET of
  /version/ (sent back to back) first answers the new text: the shim notices the new mtime,
  starts a new Python worker and imports Django before it answers. The seed's flup script is
  given the same edit and touch: mod_fcgid never looks at mtime.
- Placement (9.): tests/bench/pipe_rtt.c passes one byte back and forth between two
  processes over two pipes, pinned to one CPU or to two (mean of 18000 round trips after
  2000 to warm up). The share of samples: /proc/PID/stat's CPU field of nginx's worker and
  of the server's processes, read about every 2 ms during a c=1 run of section 1's kind (the
  sampler's own CPU use is small but not nil). "All on CPU 0": nginx, the server (started
  under taskset, so the shim finds one CPU allowed and leaves placement alone) and wrk on
  CPU 0; the figures as in section 1. "nginx + server on CPU 0, wrk on CPU 1": the same
  with wrk alone on CPU 1, the placement the C responder mostly finds by itself; the
  shim, started under taskset with one CPU, again leaves placement alone.
"""
    if bench.warnings:
        notes += "\nWarnings (requests that failed; their figures above include them):\n\n"
        notes += "".join(f"- {w}\n" for w in bench.warnings)
    if charted:
        notes += f"\n![throughput]({chart_png.name})\n"
    for block in bench.details:
        notes += "\n" + block + "\n"
    results_md.write_text(notes)
    print()
    print(table)
    print()
    log(f"wrote {results_md}" + (f" and {chart_png}" if charted else "")
        + f"; {elapsed / 60:.1f} min")
    left = processes_under(ROOT)
    if left:
        log(f"WARNING: processes left behind: {left}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
