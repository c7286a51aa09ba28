#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets: real requests and files.

    python3 tests/fuzz/seeds.py [OUT]     (OUT defaults to tests/fuzz/corpus)

Each target gets OUT/<target>/seed-<name> files: a GET and a POST as
mod_fcgid sends them (no padding, one PARAMS record, id 1), the same as
libfcgi/nginx pad them (to 8 bytes, PARAMS cut inside a length), keep-alive,
management records, aborts, other roles; params of rewritten, proxied and
https requests; the worker frames of one request; site.toml with every key.
The committed corpus was grown from these and minimized (cargo fuzz cmin),
so a seed may no longer be there under its own name. This file is an
encoder written apart from src/, like tests/common: it checks the shim
against the spec, not against itself.
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The worker tests' encoder of an R frame's environ (marshal, as frame.rs
# writes it), so that the seeds follow one copy of the format.
sys.path.insert(0, os.path.join(REPO, "tests", "worker"))
from fakeshim import NO_LENGTH, pack_environ  # noqa: E402

# FastCGI 1.0, section 8.
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 2, 3, 4, 5, 6
GET_VALUES = 9
RESPONDER, AUTHORIZER = 1, 2
KEEP_CONN = 1


def record(kind, rid, content=b"", pad=0):
    assert len(content) <= 65535
    head = struct.pack(">BBHHBB", 1, kind, rid, len(content), pad, 0)
    return head + content + b"\0" * pad


def padded(kind, rid, content=b""):
    """As libfcgi and nginx send it: content padded to a multiple of 8."""
    return record(kind, rid, content, -len(content) & 7)


def length(n, long=False):
    return struct.pack(">I", n | 0x80000000) if long or n >= 128 else bytes([n])


def pairs(items, long=False):
    out = b""
    for name, value in items:
        name, value = to_bytes(name), to_bytes(value)
        out += length(len(name), long) + length(len(value), long) + name + value
    return out


def to_bytes(s):
    return s if isinstance(s, bytes) else s.encode()


def begin(rid=1, role=RESPONDER, flags=0, selector=0):
    # The first reserved byte picks the fuzz target's site (stream.rs).
    return record(BEGIN_REQUEST, rid, struct.pack(">HBB4x", role, flags, selector))


def stream(kind, rid, data, cuts=(), rec=record):
    """A PARAMS or STDIN stream cut at `cuts`, then its empty record."""
    out, start = b"", 0
    for cut in list(cuts) + [len(data)]:
        out += rec(kind, rid, data[start:cut])
        start = cut
    return out + rec(kind, rid)


# What Apache 2.4 + mod_fcgid sends after the shipped .htaccess rewrite
# (RewriteRule ^(.*)$ mysite.fcgi/$1): headers first, then the CGI vars.
GET = [
    ("HTTP_HOST", "example.test"),
    ("HTTP_USER_AGENT", "curl/7.88.1"),
    ("HTTP_ACCEPT", "*/*"),
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("SERVER_SIGNATURE", "<address>Apache/2.4.62 (Debian) Server at example.test Port 80</address>\n"),
    ("SERVER_SOFTWARE", "Apache/2.4.62 (Debian)"),
    ("SERVER_NAME", "example.test"),
    ("SERVER_ADDR", "127.0.0.1"),
    ("SERVER_PORT", "80"),
    ("REMOTE_ADDR", "203.0.113.7"),
    ("DOCUMENT_ROOT", "/home/u/public_html"),
    ("REQUEST_SCHEME", "http"),
    ("CONTEXT_PREFIX", ""),
    ("CONTEXT_DOCUMENT_ROOT", "/home/u/public_html"),
    ("SERVER_ADMIN", "webmaster@localhost"),
    ("SCRIPT_FILENAME", "/home/u/public_html/blog/mysite.fcgi"),
    ("REMOTE_PORT", "51234"),
    ("REDIRECT_URL", "/blog/post/1/"),
    ("REDIRECT_STATUS", "200"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_METHOD", "GET"),
    ("QUERY_STRING", "page=2"),
    ("REQUEST_URI", "/blog/post/1/?page=2"),
    ("SCRIPT_NAME", "/blog/mysite.fcgi"),
    ("PATH_INFO", "/post/1/"),
    ("PATH_TRANSLATED", "/home/u/public_html/blog/post/1/"),
]

BODY = b"title=Caf%C3%A9&text=" + b"lorem+ipsum+" * 30


def post_params():
    p = [kv for kv in GET if kv[0] not in ("REQUEST_METHOD", "QUERY_STRING", "REQUEST_URI")]
    return [
        ("HTTP_CONTENT_TYPE", "application/x-www-form-urlencoded"),
        ("HTTP_CONTENT_LENGTH", str(len(BODY))),
        ("HTTP_COOKIE", "csrftoken=abc; sessionid=xyz"),
        ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
        ("CONTENT_LENGTH", str(len(BODY))),
        ("REDIRECT_HTTP_AUTHORIZATION", "Basic dXNlcjpwYXNz"),
        ("REQUEST_METHOD", "POST"),
        ("QUERY_STRING", ""),
        ("REQUEST_URI", "/blog/post/1/"),
    ] + p


POST = post_params()

PROXIED = [
    ("HTTP_HOST", "example.test"),
    ("HTTP_X_FORWARDED_PROTO", "https, http"),
    ("HTTP_X_FORWARDED_FOR", "198.51.100.2, 203.0.113.9, 10.0.0.5"),
    ("REMOTE_ADDR", "10.0.0.1"),
    ("SERVER_PORT", "8080"),
    ("REQUEST_METHOD", "GET"),
    ("REQUEST_URI", "/"),
    ("SCRIPT_NAME", "/mysite.fcgi"),
    ("PATH_INFO", "/"),
]

# lighttpd "/" => bin-path (needs script_name = ""), https, odd paths.
LIGHTTPD = [
    ("SERVER_SOFTWARE", "lighttpd/1.4.69"),
    ("HTTPS", "on"),
    ("SERVER_PORT", "443"),
    ("REMOTE_ADDR", "::1"),
    ("REQUEST_METHOD", "GET"),
    ("REQUEST_URI", "/a/b%2Fc/./../caf%C3%a9?x=1"),
    ("SCRIPT_NAME", "/a"),
    ("PATH_INFO", "/b/c/../café"),
    ("HTTP_PROXY", "http://evil.test/"),
    ("HTTP_AUTHORIZATION", ""),
    ("REDIRECT_REDIRECT_HTTP_AUTHORIZATION", "Bearer t0k3n"),
]

# Worker frames (src/frame.rs): type:u8 id:u16 len:u32, little-endian.


def frame(kind, rid, payload):
    return struct.pack("<cHI", kind, rid, len(payload)) + payload


def fpairs(items):
    items = [(to_bytes(n), to_bytes(v)) for n, v in items]
    out = struct.pack("<I", len(items))
    for n, v in items:
        out += struct.pack("<II", len(n), len(v))
    return out + b"".join(n + v for n, v in items)


def request_frame(rid, params, body, flags):
    environ = pack_environ(params)
    head = struct.pack("<BQI", flags, NO_LENGTH, len(environ))
    return frame(b"R", rid, head + environ + body)


def fastcgi_seeds():
    get = pairs(GET)
    post = pairs(POST)
    mod_fcgid_get = begin() + stream(PARAMS, 1, get) + record(STDIN, 1)
    mod_fcgid_post = (
        begin(selector=0x02)
        + stream(PARAMS, 1, post)
        + stream(STDIN, 1, BODY, cuts=[100, 250])
    )
    # libfcgi / nginx: padded, PARAMS cut inside a 4-byte length and a pair.
    long_value = pairs([("HTTP_COOKIE", "c" * 200)])
    cut_params = pairs(GET[:3]) + long_value + pairs(GET[3:])
    cut = len(pairs(GET[:3]))
    nginx_keep = b""
    for rid in (1, 1):
        nginx_keep += (
            begin(rid, flags=KEEP_CONN)
            + stream(PARAMS, rid, cut_params, cuts=[cut + 2, cut + 9], rec=padded)
            + stream(STDIN, rid, BODY, rec=padded)
        )
    get_values = record(GET_VALUES, 0, pairs([("FCGI_MAX_CONNS", ""), ("FCGI_MPXS_CONNS", ""),
                                              ("FCGI_MAX_REQS", ""), ("FCGI_MAX_CONNS", "")]))
    management = get_values + record(99, 0, b"\0" * 8) + mod_fcgid_get
    abort_keep = (
        begin(1, flags=KEEP_CONN)
        + record(PARAMS, 1, get[:40])
        + record(ABORT_REQUEST, 1)
        + begin(2, flags=KEEP_CONN, selector=0x04)
        + stream(PARAMS, 2, pairs(PROXIED))
        + record(ABORT_REQUEST, 2)
        + begin(3, selector=0x01)
        + stream(PARAMS, 3, pairs(LIGHTTPD))
        + record(STDIN, 3)
    )
    roles = (
        begin(1, role=AUTHORIZER, flags=KEEP_CONN)
        + begin(1, flags=KEEP_CONN)
        + record(PARAMS, 1, get)
        + begin(2)  # multiplexing: CANT_MPX_CONN
        + record(STDOUT, 1, b"ignored")
        + record(PARAMS, 1)
        + record(STDIN, 1, b"x")
        + begin(3)
        + record(STDIN, 1)
    )
    streams = {
        "modfcgid-get": mod_fcgid_get,
        "modfcgid-post": mod_fcgid_post,
        "nginx-keepconn": nginx_keep,
        "management": management,
        "abort-keepconn": abort_keep,
        "roles-mpx": roles,
        "bad-version": mod_fcgid_get[:16] + b"\x02" + mod_fcgid_get[17:],
        "truncated": mod_fcgid_post[:-20],
    }
    # Single records for the record target: each of a request's records,
    # a header alone, the largest header.
    records = {
        "begin": begin(),
        "params": record(PARAMS, 1, get),
        "params-padded": padded(PARAMS, 1, get[:61]),
        "stdin": padded(STDIN, 1, BODY[:77]),
        "get-values": get_values,
        "unknown-type": record(99, 0, b"\0" * 8),
        "end-request": record(END_REQUEST, 1, b"\0\0\0\0\0\0\0\0"),
        "abort": record(ABORT_REQUEST, 1),
        "header-only": record(STDIN, 1)[:8],
        "max-header": b"\x01\x06\x00\x01\xff\xff\xff\x00",
    }
    selector = {  # see site_for in src/lib.rs
        "modfcgid-get": (0x00, get),
        "modfcgid-post": (0x12, post),
        "no-site": (0x08, get),
        "proxied": (0x04, pairs(PROXIED)),
        "lighttpd-root": (0x05, pairs(LIGHTTPD)),
        "mount-a-b": (0x03, pairs(LIGHTTPD)),
        "long-lengths": (0x00, pairs(GET[:5], long=True)),
        "overrun": (0x00, get + b"\xff\xff\xff\xff\x01ab"),
    }
    params = {k: bytes([s]) + p for k, (s, p) in selector.items()}
    return streams, records, params


def frame_seeds():
    config = frame(b"C", 0, fpairs([("app", "myproject.wsgi:application"), ("django", "1"),
                                    ("path", "/home/u/myproject"), ("path", "/home/u/lib"),
                                    ("run_once", "1"), ("threads", "4")]))
    ready = frame(b"K", 0, fpairs([("python", "3.11.7"), ("executable", "/usr/bin/python3"),
                                   ("sys_path", "/home/u/myproject\n/usr/lib/python3.11"),
                                   ("import_ms", "412")]))
    failed = frame(b"F", 0, fpairs([("python", "3.11.7"), ("executable", "/usr/bin/python3"),
                                    ("sys_path", "/home/u/myproject\n/usr/lib/python3.11"),
                                    ("traceback", "Traceback (most recent call last):\n  ...\n"
                                                  "ImportError: no app\n")]))
    req = request_frame(1, GET, BODY[:20], 1)
    get_input = frame(b"G", 1, struct.pack("<I", 65536))
    out = frame(b"O", 1, b"Status: 200 OK\r\nContent-Type: text/html\r\n\r\n<p>hi</p>")
    done = [frame(b"D", 1, bytes([code]) + tb) for code, tb in
            ((0, b""), (1, b"Traceback ...\nValueError"), (2, b""), (7, b""))]
    return {
        "config": config,
        "ready": ready,
        "failed": failed,
        "request": req,
        "input": frame(b"I", 1, BODY[:64]) + frame(b"Z", 1, b""),
        "worker-post": get_input + out + get_input + out + done[0],
        "done-codes": b"".join(done),
        "pairs-only": fpairs([("A", "bc"), ("", "")]),
        "environ-only": pack_environ([("A", ""), ("B", b"caf\xe9"), ("C", "x" * 300)]),
        "oversized": struct.pack("<cHI", b"O", 1, 0xFFFFFFFF),
    }


def config_seeds():
    with open(os.path.join(REPO, "shim-templates", "site.toml")) as f:
        template = f.read()
    full = (
        template.replace("{{python}}", "/home/u/venv/bin/python3")
        .replace("{{search_path}}", '"/home/u/myproject", "../python"')
        .replace("{{settings_module}}", "myproject.settings")
        .replace("{{wsgi_app}}", "myproject.wsgi:application")
    )
    # Every key: uncomment the commented-out `# key = value` lines.
    lines = []
    for line in full.split("\n"):
        body = line[2:] if line.startswith("# ") else None
        if body and (body.startswith("[env]") or (" = " in body and body.split(" = ")[0].isidentifier()
                                                  or body.split(" = ")[0].isupper())):
            line = body
        lines.append(line)
    every_key = "\n".join(lines)
    for key in ("log_file", "script_name", "trusted_proxies", "debug", "debug_allow", "watch",
                "max_requests", "request_timeout", "max_body", "max_rss", "idle_timeout",
                "io_timeout", "startup_timeout", "[env]"):
        assert ("\n" + key) in every_key, key
    return {
        "template-every-key": every_key,
        "template-as-shipped": full,
        "minimal-wsgi": 'wsgi_app = "app:app"\n',
        "django": 'settings_module = "myproject.settings"\nsearch_path = ["/home/u/myproject"]\n',
        "values": (
            'wsgi_app = "hello"\nmax_body = 1048576\nmax_rss = "1G"\nmax_requests = 0x10\n'
            'request_timeout = 1_000\ndebug = true\ndebug_allow = ["::ffff:10.0.0.1", "2001:db8::/32", "0.0.0.0/0"]\n'
            'trusted_proxies = [ "127.0.0.1" , "10.0.0.0/8" ]\nscript_name = "/blog/"\n'
            "[env]\nN = 3\nB = false\nS = 'literal'\n"
        ),
        "typo": 'wsgi_app = "a:b"\npyhton = "x"\n',
        "wrong-type": 'wsgi_app = "a:b"\nsearch_path = ["a",\n 4]\n',
        "bad-values": 'wsgi_app = "a b"\nmax_body = "10X"\ntrusted_proxies = ["1.2.3.4/33"]\nscript_name = "blog"\n',
        "syntax": 'wsgi_app = "a:b"\n\nsearch_path = [\n',
        "inline-env": 'wsgi_app = "a:b"\nenv = { A = "1", "B=C" = "2" }\n',
    }


def write(out, target, seeds):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(to_bytes(data))


def main():
    args = sys.argv[1:]
    if len(args) > 1 or (args and args[0].startswith("-")):
        # An option is not a folder: `seeds.py --help` once wrote the whole
        # corpus into ./--help.
        sys.stderr.write("usage: python3 tests/fuzz/seeds.py [OUT]\n")
        sys.exit(0 if args in (["-h"], ["--help"]) else 2)
    out = args[0] if args else os.path.join(HERE, "corpus")
    streams, records, params = fastcgi_seeds()
    write(out, "stream", streams)
    write(out, "record", records)
    write(out, "params", params)
    write(out, "frame", frame_seeds())
    write(out, "config", config_seeds())


if __name__ == "__main__":
    main()
