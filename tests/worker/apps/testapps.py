"""WSGI apps for the worker tests; the tests load them as "testapps:NAME".

They run inside the real worker, so they report what they saw through the
response body or through the log (stderr), which the fake shim collects.
"""

import hashlib
import json
import os
import signal
import sys
import tracemalloc
import warnings
from wsgiref.validate import WSGIWarning, validator

# A warning from wsgiref.validate must fail the request, not scroll by.
warnings.simplefilter("error", WSGIWarning)

TEXT = [("Content-Type", "text/plain")]


def _hello(environ, start_response):
    """GET/HEAD: a greeting. POST: echo the body, read the way QUERY_STRING says."""
    stream = environ["wsgi.input"]
    if environ["REQUEST_METHOD"] == "POST":
        how = environ["QUERY_STRING"]
        if how == "read":
            body = stream.read(int(environ["CONTENT_LENGTH"]))
        elif how == "read-small":
            parts = []
            while True:
                part = stream.read(3)
                if not part:
                    break
                parts.append(part)
            body = b"".join(parts)
        elif how == "readline":
            body = b"".join(iter(stream.readline, b""))
        elif how == "readline-sized":
            body = b"|".join(iter(lambda: stream.readline(4), b""))
        elif how == "readlines":
            body = b"".join(stream.readlines())
        else:
            body = b"".join(stream)
        out = b"got:" + body
    else:
        out = b"Hello, world!\n"
    start_response("200 OK", TEXT + [("Content-Length", str(len(out)))])
    return [out]


hello = validator(_hello)


def application(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"default application"]


class Nested:
    class inner:
        @staticmethod
        def app(environ, start_response):
            start_response("200 OK", TEXT)
            return [b"nested app"]


not_callable = 42


def environ_json(environ, start_response):
    """The environ, str values as they are (JSON keeps every code point)."""
    seen = {}
    for key, value in environ.items():
        if isinstance(value, (str, bool, int)):
            seen[key] = value
        else:
            seen[key] = repr(value)
    seen["wsgi.version"] = list(environ["wsgi.version"])
    seen["wsgi.errors is sys.stderr"] = environ["wsgi.errors"] is sys.stderr
    seen["input_terminated"] = environ.get("wsgi.input_terminated")
    out = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out]


def raw_bytes(environ, start_response):
    """PATH_INFO and HTTP_X_RAW back as the bytes the shim sent."""
    out = environ["PATH_INFO"].encode("latin-1") + b"|" + environ["HTTP_X_RAW"].encode("latin-1")
    start_response("200 OK", TEXT)
    return [out]


def checksum(environ, start_response):
    """sha256 of the body read in QUERY_STRING-sized reads, and the peak of
    memory allocated while reading: it stays small only if the body streams."""
    size = int(environ["QUERY_STRING"] or 65536)
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    total = 0
    tracemalloc.start()
    try:
        while True:
            block = stream.read(size)
            if not block:
                break
            digest.update(block)
            total += len(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    start_response("200 OK", TEXT)
    return [("%s %d %d" % (digest.hexdigest(), total, peak)).encode()]


def read_all(environ, start_response):
    """read() without a size."""
    body = environ["wsgi.input"].read()
    more = environ["wsgi.input"].read()
    start_response("200 OK", TEXT)
    return [body, b"|after:%d" % len(more)]


def big_output(environ, start_response):
    """QUERY_STRING bytes of a counting pattern, as one block or as a list."""
    size, _, how = environ["QUERY_STRING"].partition(",")
    data = bytes(range(256)) * (int(size) // 256 + 1)
    data = data[: int(size)]
    start_response("200 OK", TEXT + [("Content-Length", size)])
    if how == "generator":
        return iter([data])
    return [data]


def write_then_iter(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"one,")
    write(b"")
    write(b"two,")
    return [b"three"]


def write_then_read(environ, start_response):
    """write() must reach the shim before the app goes on (here: asks for input)."""
    write = start_response("200 OK", TEXT)
    write(b"first")
    data = environ["wsgi.input"].read(5)
    return [b"|" + data]


def generator_then_read(environ, start_response):
    """A yielded block must reach the shim before the next is asked for."""
    start_response("200 OK", TEXT)
    yield b"first"
    yield b"|" + environ["wsgi.input"].read(5)


class LoggedFile:
    """A file that says in the log when it is closed."""

    def __init__(self, path):
        self.f = open(path, "rb")

    def read(self, size=-1):
        return self.f.read(size)

    def close(self):
        self.f.close()
        sys.stderr.write("file closed: %s\n" % os.path.basename(self.f.name))


def file_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](LoggedFile(environ["HTTP_X_FILE"]), 4096)


def file_wrapper_iter(environ, start_response):
    """The wrapper iterated by the app itself honours blksize."""
    wrapper = environ["wsgi.file_wrapper"](LoggedFile(environ["HTTP_X_FILE"]), 1000)
    sizes = [len(block) for block in wrapper]
    wrapper.close()
    start_response("200 OK", TEXT)
    return [json.dumps(sizes).encode()]


def exc_info_before(environ, start_response):
    start_response("200 OK", TEXT)
    try:
        raise ValueError("handled-before-output")
    except ValueError:
        start_response("500 Oops", TEXT, sys.exc_info())
    return [b"error page"]


def exc_info_after(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"partial"
    try:
        raise ValueError("late-boom-marker")
    except ValueError:
        start_response("500 Oops", TEXT, sys.exc_info())
    yield b"never sent"


def start_twice(environ, start_response):
    start_response("200 OK", TEXT)
    start_response("404 Not Found", TEXT)
    return [b"nope"]


def raise_before(environ, start_response):
    raise RuntimeError("secret-traceback-marker")


def raise_after_start(environ, start_response):
    start_response("200 OK", TEXT)
    raise RuntimeError("before-any-body-marker")


def raise_after(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"partial"
    raise RuntimeError("after-output-marker")


class Tracked:
    """An iterable whose close() is logged; QUERY_STRING picks the ending.

    ok: two blocks; fail-early: raises before the first block; fail-late:
    raises after the first; close-fails: streams a block, then close()
    raises; close-fails-in-memory: a body in memory, then close() raises.
    """

    def __init__(self, environ, start_response):
        self.how = environ["QUERY_STRING"]
        start_response("200 OK", TEXT)

    def __iter__(self):
        if self.how == "close-fails-in-memory":
            return iter([b"in memory"])
        return self._blocks()

    def _blocks(self):
        if self.how == "fail-early":
            raise RuntimeError("fail-early-marker")
        yield b"block1"
        if self.how == "fail-late":
            raise RuntimeError("fail-late-marker")
        yield b"block2"

    def close(self):
        sys.stderr.write("closed: %s\n" % self.how)
        if self.how.startswith("close-fails"):
            raise RuntimeError("close-fails-marker")


def returns_none(environ, start_response):
    start_response("200 OK", TEXT)


def returns_int(environ, start_response):
    start_response("200 OK", TEXT)
    return 42


def yields_str(environ, start_response):
    start_response("200 OK", TEXT)
    return ["text, not bytes"]


def no_start_response(environ, start_response):
    return [b"body"] if environ["QUERY_STRING"] == "body" else []


def empty_body(environ, start_response):
    start_response("204 No Content", [])
    return [b"", b""]


BAD_RESPONSES = {
    "crlf-value": ("200 OK", [("X-Bad", "a\r\nSet-Cookie: evil=1")]),
    "lf-value": ("200 OK", [("X-Bad", "a\nb")]),
    "nul-value": ("200 OK", [("X-Bad", "a\x00b")]),
    "del-value": ("200 OK", [("X-Bad", "a\x7fb")]),
    "crlf-name": ("200 OK", [("X-Bad\r\nSet-Cookie", "evil=1")]),
    "space-name": ("200 OK", [("Bad Name", "x")]),
    "colon-name": ("200 OK", [("Bad:Name", "x")]),
    "empty-name": ("200 OK", [("", "x")]),
    "not-latin1": ("200 OK", [("X-Bad", "\u20ac")]),
    "bytes-value": ("200 OK", [("X-Bad", b"x")]),
    "status-header": ("200 OK", [("Status", "302 Found")]),
    "tuple-headers": ("200 OK", (("X-A", "b"),)),
    "list-item": ("200 OK", [["X-A", "b"]]),
    "status-no-reason-space": ("200OK", []),
    "status-two-digits": ("20 OK", []),
    "status-four-digits": ("2000 OK", []),
    "status-letters": ("2x0 OK", []),
    "status-bytes": (b"200 OK", []),
    "status-crlf": ("200 OK\r\nX-Evil: 1", []),
    "status-int": (200, []),
}


def bad_response(environ, start_response):
    status, headers = BAD_RESPONSES[environ["QUERY_STRING"]]
    start_response(status, headers)
    return [b"should never be sent"]


# One list for every request, edited by the query: the header blocks the
# worker keeps must follow the list's contents, not its identity.
EDITED = [("Content-Type", "text/plain")]


def edited_headers(environ, start_response):
    """?add=NAME:VALUE appends a header to the shared list, ?pop drops the
    last; either way the response carries the list as it then is."""
    query = environ["QUERY_STRING"]
    if query.startswith("add="):
        name, _, value = query[4:].partition(":")
        EDITED.append((name, value.replace("%0D%0A", "\r\n")))
    elif query == "pop":
        EDITED.pop()
    start_response(environ.get("HTTP_X_STATUS", "200 OK"), EDITED)
    return [b"ok"]


def good_headers(environ, start_response):
    """Legal oddities that must pass: tab and latin-1 in values, empty value."""
    start_response("299 Custom \xe9", [("X-Tab", "a\tb"), ("X-Latin", "caf\xe9"), ("X-Empty", "")] + TEXT)
    return [b"ok"]


def printer(environ, start_response):
    print("printed-marker")
    os.write(1, b"fd1-marker\n")
    os.write(2, b"fd2-marker\n")
    sys.stderr.write("stderr-marker\n")
    environ["wsgi.errors"].write("wsgi-errors-marker\n")
    start_response("200 OK", TEXT)
    return [b"ok"]


def process_state(environ, start_response):
    """What the worker set up for the process."""
    state = {
        "fd3_inheritable": os.get_inheritable(3),
        "fd4_inheritable": os.get_inheritable(4),
        "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
        "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "sys_path": sys.path,
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "pid": os.getpid(),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(state).encode()]


def exits(environ, start_response):
    sys.exit(7)


class ReadsInBody:
    """Reads the body while iterating, swallowing any Exception; close() is logged."""

    def __init__(self, environ, start_response):
        self.stream = environ["wsgi.input"]
        start_response("200 OK", TEXT)

    def __iter__(self):
        try:
            data = self.stream.read(10)
        except Exception:
            data = b"swallowed"
        yield data

    def close(self):
        sys.stderr.write("closed: reads-in-body\n")
