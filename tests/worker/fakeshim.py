"""A fake shim in Python for the worker tests.

Plays the Rust shim's part of the protocol in src/frame.rs: starts the real
loader and worker (`python -c LOADER fcgi-shim-worker`, fd 0 /dev/null,
fds 1 and 2 a log pipe, fd 3 frames in, fd 4 frames out), sends the worker
source and a C frame, then R frames; it answers G with I or Z and collects
O and D. Every frame the worker sends is checked against the spec as it
arrives, so each test also checks the framing.
"""

import fcntl
import os
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER_SOURCE = (ROOT / "src" / "worker.py").read_bytes()
LOADER = (ROOT / "src" / "loader.py").read_text()
APPS = str(Path(__file__).resolve().parent / "apps")
# FCGI_SHIM_TEST_PYTHON runs the worker under another Python (3.8, say).
PYTHON = os.environ.get("FCGI_SHIM_TEST_PYTHON", sys.executable)

HEADER = struct.Struct("<BHI")
MAX_OUTPUT = 65535
MAX_FROM_WORKER = 1 << 20
TIMEOUT = 20.0


def frame(kind, rid, payload=b""):
    return HEADER.pack(ord(kind), rid, len(payload)) + payload


def pack_pairs(pairs):
    flat = []
    for name, value in pairs:
        flat += [_bytes(name), _bytes(value)]
    lens = struct.pack("<%dI" % len(flat), *map(len, flat))
    return struct.pack("<I", len(pairs)) + lens + b"".join(flat)


def _marshal_str(value):
    """One param as frame.rs writes it: a marshal str of its latin-1 bytes."""
    data = _bytes(value)
    if data.isascii() and len(data) < 256:
        return b"z" + bytes([len(data)]) + data
    if data.isascii():
        return b"a" + struct.pack("<I", len(data)) + data
    text = data.decode("latin-1").encode("utf-8")
    return b"u" + struct.pack("<I", len(text)) + text


def pack_environ(pairs):
    """An R frame's environ, byte for byte as frame.rs push_environ writes it."""
    return b"{" + b"".join(_marshal_str(n) + _marshal_str(v) for n, v in pairs) + b"0"


def content_length(params):
    """CONTENT_LENGTH as the shim parses it (environ.rs): digits or nothing."""
    value = _bytes(params.get("CONTENT_LENGTH", ""))
    if value and len(value) <= 19 and value.isdigit() and value.isascii():
        return int(value)
    return None


NO_LENGTH = (1 << 64) - 1


def request_payload(params, body=b"", complete=True, https=False):
    """An R payload: flags, content length, environ, then the body prefix."""
    flags = (1 if complete else 0) | (2 if https else 0)
    environ = pack_environ(list(params.items()))
    length = content_length(params)
    head = struct.pack("<BQI", flags, NO_LENGTH if length is None else length, len(environ))
    return head + environ + body


def unpack_pairs(payload):
    (count,) = struct.unpack_from("<I", payload)
    lens = struct.unpack_from("<%dI" % (2 * count), payload, 4)
    pos = 4 + 8 * count
    pairs = []
    for i in range(0, 2 * count, 2):
        name = payload[pos : pos + lens[i]]
        pos += lens[i]
        pairs.append((name, payload[pos : pos + lens[i + 1]]))
        pos += lens[i + 1]
    assert pos == len(payload), "pairs do not fill their frame"
    return pairs


def _bytes(value):
    return value if isinstance(value, bytes) else value.encode("latin-1")


# frame.rs ENVIRON_PROBE, as the shim sends it in C.
PROBE = pack_environ([("SHORT", ""), ("LATIN_1", b"caf\xe9 \x80\xff"), ("LONG", "-" * 300)])


def cgi_params(method="GET", path="/", query="", body=None, **extra):
    """CGI params like a web server's; extra names are used as given."""
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REQUEST_URI": path + ("?" + query if query else ""),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    if body is not None:
        params["CONTENT_LENGTH"] = str(len(body))
        params["CONTENT_TYPE"] = "application/octet-stream"
    params.update(extra)
    return params


class Result:
    """One response as the shim saw it."""

    def __init__(self, events):
        # In order: ("O", bytes), ("G", max), ("D", code) from the worker;
        # ("I", size), ("Z", 0) sent by the fake shim.
        self.events = events
        self.out = b"".join(p for k, p in events if k == "O")
        self.o_frames = [p for k, p in events if k == "O"]
        self.gets = [p for k, p in events if k == "G"]
        self.code = events[-1][1]
        self.status = None
        self.headers = []
        self.body = b""
        if self.out:
            head, sep, self.body = self.out.partition(b"\r\n\r\n")
            assert sep, "no end of the CGI header block in %r" % self.out[:200]
            lines = head.decode("latin-1").split("\r\n")
            assert lines[0].startswith("Status: "), lines[0]
            self.status = lines[0][len("Status: ") :]
            self.headers = [tuple(line.split(": ", 1)) for line in lines[1:]]

    def header(self, name):
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None


class Worker:
    """A real worker process driven through its pipes."""

    def __init__(self, app="testapps:hello", paths=(APPS,), run_once=False, django=False, env=None, cwd=None):
        self.config = [("app", app), ("django", "1" if django else "")]
        self.config += [("path", p) for p in paths]
        self.config.append(("run_once", "1" if run_once else ""))
        self.config.append(("probe", PROBE))
        to_worker_r, self.to_worker = os.pipe()
        self.from_worker, from_worker_w = os.pipe()
        log_r, log_w = os.pipe()

        def put_frame_pipes_on_3_and_4():
            # Move both ends above 4 first, so dup2 onto 3 or 4 cannot
            # clobber the other one.
            high_r = fcntl.fcntl(to_worker_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_worker_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)
            os.close(high_r)
            os.close(high_w)

        self.proc = subprocess.Popen(
            [PYTHON, "-c", LOADER, "fcgi-shim-worker"],
            stdin=subprocess.DEVNULL,
            stdout=log_w,
            stderr=log_w,
            cwd=cwd or APPS,
            env=env if env is not None else _clean_env(),
            preexec_fn=put_frame_pipes_on_3_and_4,
            close_fds=False,  # our own fds are CLOEXEC; 3 and 4 must survive
        )
        for fd in (to_worker_r, from_worker_w, log_w):
            os.close(fd)
        self._buf = b""
        self._log = bytearray()
        self._log_lock = threading.Lock()
        self._log_thread = threading.Thread(target=self._drain_log, args=(log_r,), daemon=True)
        self._log_thread.start()

    # -- the log pipe --------------------------------------------------

    def _drain_log(self, fd):
        while True:
            data = os.read(fd, 65536)
            if not data:
                os.close(fd)
                return
            with self._log_lock:
                self._log += data

    def log(self):
        with self._log_lock:
            return self._log.decode("utf-8", "replace")

    def wait_log(self, text, timeout=TIMEOUT):
        """The log once it contains text (fails after timeout)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError("%r never appeared in the log:\n%s" % (text, self.log()))
            time.sleep(0.01)
        return self.log()

    # -- frames ----------------------------------------------------------

    def send(self, data):
        _write_all(self.to_worker, data)

    def read_frame(self, timeout=TIMEOUT):
        """(type as str, id, payload); None on EOF."""
        head = self._read_exact(7, timeout)
        if head is None:
            return None
        kind, rid, size = HEADER.unpack(head)
        assert size <= MAX_FROM_WORKER, "frame of %d bytes" % size
        payload = self._read_exact(size, timeout)
        assert payload is not None, "eof inside a frame"
        return chr(kind), rid, payload

    def _read_exact(self, size, timeout):
        deadline = time.monotonic() + timeout
        while len(self._buf) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_worker], [], [], left)[0]:
                raise AssertionError("worker sent nothing for %ss; log:\n%s" % (timeout, self.log()))
            data = os.read(self.from_worker, 1 << 20)
            if not data:
                assert not self._buf, "eof inside a frame"
                return None
            self._buf += data
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def send_source(self, source=WORKER_SOURCE):
        self.send(struct.pack("<I", len(source)))
        self.send(source)

    def start(self, rid=0):
        """Send the source and C; the K or F frame that answers."""
        self.send_source()
        self.send(frame("C", rid, pack_pairs(self.config)))
        got = self.read_frame()
        assert got is not None, "worker exited before K/F; log:\n" + self.log()
        kind, got_rid, payload = got
        assert kind in "KF", kind
        assert got_rid == rid
        return kind, payload

    def ready(self):
        """start() that must succeed: K's pairs as a dict of str."""
        kind, payload = self.start()
        assert kind == "K", payload.decode("utf-8", "replace")
        return {n.decode(): v.decode() for n, v in unpack_pairs(payload)}

    def failed(self):
        """start() that must fail: F's pairs as a dict of str."""
        kind, payload = self.start()
        assert kind == "F", payload.decode("utf-8", "replace")
        return {n.decode(): v.decode() for n, v in unpack_pairs(payload)}

    def request(self, params, body=b"", prefix=None, rid=1, https=False, chunk=None):
        """Send one R and collect the response up to D.

        prefix None: the whole body rides in R with the complete flag.
        prefix n: R carries body[:n]; the rest is answered to G (I frames of
        at most `chunk` bytes), then Z.
        """
        complete = prefix is None
        sent = len(body) if complete else prefix
        self.send(frame("R", rid, request_payload(params, body[:sent], complete, https)))
        events = []
        while True:
            got = self.read_frame()
            assert got is not None, "worker exited mid-request; log:\n" + self.log()
            kind, got_rid, payload = got
            assert got_rid == rid, "frame id %d, request id %d" % (got_rid, rid)
            if kind == "O":
                assert 0 < len(payload) <= MAX_OUTPUT, len(payload)
                events.append(("O", payload))
            elif kind == "G":
                (want,) = struct.unpack("<I", payload)
                assert want > 0
                events.append(("G", want))
                n = min(want, len(body) - sent, chunk or want)
                if n:
                    self.send(frame("I", rid, body[sent : sent + n]))
                    events.append(("I", n))
                    sent += n
                else:
                    self.send(frame("Z", rid))
                    events.append(("Z", 0))
            elif kind == "D":
                # code, then for code 1 (failed before output) the traceback
                # that a debug page may show; nothing after codes 0 and 2.
                # Bit 0x80: the worker exits after this request (sys.exit).
                code = payload[0] & 0x7F if payload else None
                assert code in (0, 1, 2), payload
                assert code == 1 or len(payload) == 1, payload
                events.append(("D", code))
                result = Result(events)
                result.exiting = bool(payload[0] & 0x80)
                result.detail = bytes(payload[1:]).decode("utf-8")
                return result
            else:
                raise AssertionError("unexpected %r frame during a request" % kind)

    def get(self, path="/", query="", **kw):
        return self.request(cgi_params("GET", path, query), **kw)

    # -- ending ----------------------------------------------------------

    def close_input(self):
        """EOF on the worker's fd 3."""
        if self.to_worker is not None:
            os.close(self.to_worker)
            self.to_worker = None

    def close(self, timeout=TIMEOUT):
        """EOF on fd 3; the exit status."""
        self.close_input()
        return self.wait(timeout)

    def wait(self, timeout=TIMEOUT):
        status = self.proc.wait(timeout)
        self._log_thread.join(timeout)
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_worker, self.from_worker):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.to_worker = self.from_worker = None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _clean_env():
    # Like mod_fcgid: little beyond PATH. No PYTHON* from the test run.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name in ("HOME", "LANG"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env
