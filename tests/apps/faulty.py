"""A WSGI app that misbehaves on purpose, for tests/faults.rs.

Routes on the last segment of PATH_INFO, like echo.py; anything it does not
know goes to echo.py's app (hello, echo, environ, pid, sleep...), so the
suite's "next request" checks see the same bytes as tests/fcgi.rs.
Markers (`marker-...`) are what the tests look for in the log.
"""

import os
import sys
import time

from echo import app as _echo

# Grown by /leak and never freed: what max_rss is for.
_LEAK = []

_TEXT = [("Content-Type", "text/plain")]


def _read_body(environ):
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


def _numbered(size):
    """`size` bytes of 11-byte lines, each its own line number ("%010d\\n"):
    a dropped, repeated or reordered piece shows up at once."""
    lines = size // 11
    return b"".join(b"%010d\n" % i for i in range(lines))


def _in_pieces(data, piece=65536):
    # A generator: the worker streams each block as it comes.
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


class _StreamedClosing:
    """An iterable whose blocks are streamed (not a list) and whose close()
    raises after the whole body went out."""

    def __iter__(self):
        yield b"streamed body\n"

    def close(self):
        raise RuntimeError("marker-close-raises-streamed")


class _BufferedClosing:
    """An iterable over a list (the worker holds it back until close()),
    whose close() raises."""

    def __iter__(self):
        return iter([b"buffered body\n"])

    def close(self):
        raise RuntimeError("marker-close-raises-buffered")


def app(environ, start_response):
    route = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]

    # -- what the shim hands over -------------------------------------------
    if route == "count_params":
        n = sum(1 for k in environ if k.startswith("HTTP_X_P"))
        start_response("200 OK", _TEXT)
        return [b"%d" % n]
    if route == "big_value":
        v = environ.get("HTTP_X_BIG", "")
        start_response("200 OK", _TEXT)
        return [("%d %s %s %d" % (len(v), v[:6], v[-4:], v.count("x"))).encode("latin-1")]
    if route == "mark":
        start_response("200 OK", _TEXT)
        return [os.environ.get("FAULT_MARK", "unset").encode()]
    if route == "upload":
        # Proof that the app ran: max_body must answer 413 without this.
        sys.stderr.write("marker-upload-app-ran\n")
        body = _read_body(environ)
        start_response("200 OK", _TEXT)
        return [b"%d" % len(body)]
    if route == "read_all":
        # wsgi.input_terminated: read() without a size reads to the end.
        sys.stderr.write("marker-read-all-app-ran\n")
        body = environ["wsgi.input"].read()
        start_response("200 OK", _TEXT)
        return [b"%d" % len(body)]

    # -- big responses --------------------------------------------------------
    if route in ("big1m", "big8m"):
        data = _numbered((1 if route == "big1m" else 8) << 20)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
        return _in_pieces(data)

    # -- raising --------------------------------------------------------------
    if route == "raise_before":
        raise RuntimeError("marker-raise-before-headers")
    if route == "raise_after_start":
        start_response("200 OK", _TEXT)
        raise RuntimeError("marker-raise-after-start-response")
    if route == "raise_after_body":
        start_response("200 OK", _TEXT)

        def body():
            yield b"partial-"
            raise RuntimeError("marker-raise-after-body")

        return body()
    if route == "close_raises_streamed":
        start_response("200 OK", _TEXT)
        return _StreamedClosing()
    if route == "close_raises_buffered":
        start_response("200 OK", _TEXT)
        return _BufferedClosing()
    if route == "non_iterable":
        start_response("200 OK", _TEXT)
        return 42
    if route == "returns_none":
        start_response("200 OK", _TEXT)
        return None

    # -- header injection: every one of these must be refused -----------------
    if route == "status_crlf":
        start_response("200 OK\r\nX-Injected: status", _TEXT)
        return [b"injected\n"]
    if route == "status_lf":
        start_response("200 OK\nX-Injected: status-lf", _TEXT)
        return [b"injected\n"]
    if route == "status_no_reason":
        start_response("200", _TEXT)
        return [b"injected\n"]
    if route == "value_crlf":
        start_response("200 OK", [("X-Ok", "a\r\nX-Injected: value")])
        return [b"injected\n"]
    if route == "value_lf":
        start_response("200 OK", [("X-Ok", "a\nX-Injected: value-lf")])
        return [b"injected\n"]
    if route == "value_cr":
        start_response("200 OK", [("X-Ok", "a\rX-Injected: value-cr")])
        return [b"injected\n"]
    if route == "value_nul":
        start_response("200 OK", [("X-Ok", "a\x00X-Injected: nul")])
        return [b"injected\n"]
    if route == "value_del":
        start_response("200 OK", [("X-Ok", "a\x7fX-Injected: del")])
        return [b"injected\n"]
    if route == "value_not_latin1":
        start_response("200 OK", [("X-Ok", "a\u2028X-Injected: u2028")])
        return [b"injected\n"]
    if route == "name_crlf":
        start_response("200 OK", [("X-Injected: name\r\nX-Ok", "a")])
        return [b"injected\n"]
    if route == "name_colon":
        start_response("200 OK", [("X-Injected:", "name-colon")])
        return [b"injected\n"]
    if route == "status_header":
        start_response("200 OK", [("Status", "302 Found"), ("X-Injected", "status-header")])
        return [b"injected\n"]

    # -- the worker process ---------------------------------------------------
    if route == "hang":
        while True:
            time.sleep(1)
    if route == "kill9":
        os.kill(os.getpid(), 9)
    if route == "sysexit":
        sys.exit(0)
    if route == "print_stdout":
        print("marker-print-stdout")
        start_response("200 OK", _TEXT)
        return [b"printed\n"]
    if route == "write_fd1":
        # Looks like a CGI response of its own: it must reach the log only.
        os.write(1, b"marker-write-fd1\nStatus: 302 Found\r\nX-Injected: fd1\r\n\r\nfd1 body\n")
        start_response("200 OK", _TEXT)
        return [b"wrote fd 1\n"]
    if route == "flood_fd1":
        data = b"x" * (1 << 20) + b"\n"
        done = 0
        while done < len(data):
            done += os.write(1, data[done:])
        start_response("200 OK", _TEXT)
        return [b"flooded\n"]
    if route == "leak":
        # Filled (not calloc'ed) so that every page is resident.
        _LEAK.append(b"\x01" * (50 << 20))
        start_response("200 OK", _TEXT)
        return [str(os.getpid()).encode()]
    if route == "sleep3":
        time.sleep(3)
        start_response("200 OK", _TEXT)
        return [b"slept 3\n"]
    if route == "sleep10":  # longer than the shim's stop grace period
        time.sleep(10)
        start_response("200 OK", _TEXT)
        return [b"slept 10\n"]
    return _echo(environ, start_response)
