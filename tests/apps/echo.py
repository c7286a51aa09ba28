"""WSGI app used by the fcgi-shim integration tests.

Routes on the last segment of PATH_INFO, so the tests do not depend on how
the shim splits SCRIPT_NAME and PATH_INFO. Anything unknown is `hello`.
"""

import os
import stat
import sys
import time


def _read_body(environ):
    # PEP 3333: read at most CONTENT_LENGTH bytes, one size argument per call
    # (wsgiref.validate insists on exactly one).
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    stream = environ["wsgi.input"]
    chunks = []
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _environ_lines(environ):
    # One `name=value` line per key. Native strings are encoded back with
    # latin-1 (PEP 3333), so the test sees the exact bytes the server sent;
    # a value that is not latin-1 makes this raise, i.e. a 500.
    out = []
    for key in sorted(environ):
        value = environ[key]
        if isinstance(value, str):
            raw = value.encode("latin-1")
        else:
            raw = repr(value).encode("ascii")
        out.append(key.encode("latin-1") + b"=" + raw + b"\n")
    for key in ("HTTP_PROXY", "http_proxy"):
        if key in os.environ:
            out.append(b"os.environ." + key.encode() + b"=" + os.environ[key].encode("latin-1", "replace") + b"\n")
    return b"".join(out)


def app(environ, start_response):
    route = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]
    text = [("Content-Type", "text/plain")]
    if route == "echo":
        body = _read_body(environ)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if route == "environ":
        _read_body(environ)
        start_response("200 OK", text)
        return [_environ_lines(environ)]
    if route == "pid":
        start_response("200 OK", text)
        return [str(os.getpid()).encode()]
    if route == "raise":
        raise RuntimeError("marker-raise-before-start-response")
    if route == "print":
        print("marker-printed-to-stdout")
        sys.stdout.flush()
        os.write(1, b"marker-os-write-fd1\n")
        start_response("200 OK", text)
        return [b"printed\n"]
    if route == "fds":
        # Every descriptor open in the worker, and which are sockets: the
        # web server's listening socket or connection must never leak here.
        lines = []
        for fd in range(1024):
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            lines.append("%d %s" % (fd, "socket" if stat.S_ISSOCK(st.st_mode) else "other"))
        start_response("200 OK", text)
        return [("\n".join(lines) + "\n").encode()]
    if route == "exit":
        os._exit(7)
    if route == "sleep":
        time.sleep(1)
        start_response("200 OK", text)
        return [b"slept\n"]
    start_response("200 OK", text + [("X-Test", "a b")])
    return [b"hello ", b"", b"world\n"]
