"""The request side: environ (PEP 3333) and wsgi.input streaming."""

import hashlib
import io
import json
import os

import pytest

from fakeshim import cgi_params

BODY = b"line one\nline two\n\nlast, no newline"


def _clean_log(worker):
    log = worker.log()
    for bad in ("Warning", "AssertionError", "Exception ignored", "Traceback"):
        assert bad not in log, log


def test_validated_get(serve):
    worker = serve("hello")
    result = worker.get()
    assert result.code == 0
    assert result.status == "200 OK"
    assert result.headers == [("Content-Type", "text/plain"), ("Content-Length", "14")]
    assert result.body == b"Hello, world!\n"
    assert worker.close() == 0
    _clean_log(worker)


def test_validated_head(serve):
    # The body goes to the shim as the app made it; the web server drops it
    # for HEAD (as under flup and wsgiref).
    worker = serve("hello")
    result = worker.request(cgi_params("HEAD"))
    assert (result.code, result.status, result.header("Content-Length")) == (0, "200 OK", "14")
    assert worker.close() == 0
    _clean_log(worker)


def _expected(how, body):
    stream = io.BytesIO(body)
    if how == "readline-sized":
        return b"|".join(iter(lambda: stream.readline(4), b""))
    return body


@pytest.mark.parametrize("how", ["read", "read-small", "readline", "readline-sized", "readlines", "iter"])
@pytest.mark.parametrize(
    "delivery",
    [dict(), dict(prefix=0), dict(prefix=3, chunk=5), dict(prefix=0, chunk=1)],
    ids=["in-R", "all-by-G", "split-3-then-5", "byte-by-byte"],
)
def test_validated_post(serve, how, delivery):
    worker = serve("hello")
    result = worker.request(cgi_params("POST", query=how, body=BODY), body=BODY, **delivery)
    assert (result.code, result.body) == (0, b"got:" + _expected(how, BODY))
    if "prefix" not in delivery:
        assert result.gets == []  # the whole body was in R: no G
    assert worker.close() == 0
    _clean_log(worker)


def test_non_utf8_bytes_survive_as_latin1(serve):
    worker = serve("raw_bytes")
    params = cgi_params(path="")
    params["PATH_INFO"] = b"/caf\xe9/\xff\xfe\x80"
    params["HTTP_X_RAW"] = b"\xc3\xa9 \x00\x01 \xff"
    result = worker.request(params)
    assert result.body == b"/caf\xe9/\xff\xfe\x80|\xc3\xa9 \x00\x01 \xff"


def _environ(worker, params, **kwargs):
    result = worker.request(params, **kwargs)
    assert result.code == 0, worker.log()
    return json.loads(result.body)


def test_environ_as_pep_3333_says(serve):
    worker = serve("environ_json")
    params = cgi_params("POST", "/p\xe9th", "a=1", body=b"xy", HTTP_HOST="example.org")
    env = _environ(worker, params, body=b"xy")
    assert env["PATH_INFO"] == "/p\xe9th"
    assert env["QUERY_STRING"] == "a=1"
    assert env["HTTP_HOST"] == "example.org"
    assert env["CONTENT_LENGTH"] == "2"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False
    assert env["wsgi.errors is sys.stderr"] is True
    assert env["input_terminated"] is True
    assert "FileWrapper" in env["wsgi.file_wrapper"]
    # Only the params: nothing from the worker's own process environment.
    assert "PATH" not in env


def test_https_flag_sets_url_scheme(serve):
    worker = serve("environ_json")
    assert _environ(worker, cgi_params(), https=True)["wsgi.url_scheme"] == "https"
    assert _environ(worker, cgi_params())["wsgi.url_scheme"] == "http"


def test_run_once_follows_the_config(serve):
    worker = serve("environ_json", run_once=True)
    env = _environ(worker, cgi_params())
    assert env["wsgi.run_once"] is True
    assert env["wsgi.multiprocess"] is True


def test_params_reach_the_app_as_the_shim_sent_them(serve):
    # The repairs (httpoxy, CGI defaults, Authorization, mount) are the
    # shim's (environ.rs, with its own tests): the worker adds only wsgi.*.
    worker = serve("environ_json")
    params = cgi_params(HTTP_PROXY="sent-anyway", HTTP_X_ODD="\xe9\x80\xff")
    env = _environ(worker, params)
    assert {k: v for k, v in env.items() if not k.startswith("wsgi.") and k != "input_terminated"} == params


def test_params_cannot_pose_as_wsgi_keys(serve):
    worker = serve("environ_json")
    env = _environ(worker, cgi_params(**{"wsgi.url_scheme": "gopher", "wsgi.run_once": "yes"}))
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.run_once"] is False


MIB = 1 << 20


@pytest.mark.parametrize("chunk", [None, 7919], ids=["shim-sends-max", "small-I-frames"])
def test_5_mib_body_streams(serve, chunk):
    body = os.urandom(5 * MIB)
    worker = serve("checksum")
    params = cgi_params("POST", query="65536", body=body)
    result = worker.request(params, body=body, prefix=65536, chunk=chunk)
    digest, total, peak = result.body.split()
    assert digest.decode() == hashlib.sha256(body).hexdigest()
    assert int(total) == len(body)
    assert len(result.gets) > (10 if chunk is None else 600)
    assert all(want <= MIB for want in result.gets)
    # Python allocations while the app read the whole body: a worker that
    # pulled the body in whole would need 5 MiB and more.
    assert int(peak) < 3 * MIB


def test_read_without_size_reads_to_the_end(serve):
    body = os.urandom(300 * 1024)
    worker = serve("read_all")
    result = worker.request(cgi_params("POST", body=body), body=body, prefix=1000)
    assert result.body == body + b"|after:0"
    # CONTENT_LENGTH says when the body ends: no G past it, so no Z.
    assert sum(n for kind, n in result.events if kind == "I") == len(body) - 1000
    assert ("Z", 0) not in result.events


def test_content_length_shorter_than_the_stream_is_honoured(serve):
    worker = serve("read_all")
    body = b"0123456789" + b"x" * 90
    params = cgi_params("POST", body=body[:10])  # CONTENT_LENGTH 10
    result = worker.request(params, body=body, prefix=4, chunk=3)
    assert result.body == b"0123456789|after:0"
    assert sum(result.gets) <= 6 + 6 + 6  # asked for no more than was left
    assert max(result.gets) <= 6
    # And when R carries more than CONTENT_LENGTH with the complete flag:
    result = worker.request(params, body=body)
    assert (result.body, result.gets) == (b"0123456789|after:0", [])


@pytest.mark.parametrize("length", [None, "", "abc", "-5", "+5", " 5", "\xb2", "9" * 40])
def test_absent_or_bad_content_length_reads_until_Z(serve, length):
    worker = serve("read_all")
    body = os.urandom(200 * 1024)
    params = cgi_params("POST")
    if length is not None:
        params["CONTENT_LENGTH"] = length
    result = worker.request(params, body=body, prefix=100)
    assert result.body == body + b"|after:0"
    assert ("Z", 0) in result.events  # only Z could end the body


def test_unread_body_is_never_asked_for(serve):
    worker = serve("hello")
    body = b"z" * 100000
    result = worker.request(cgi_params("GET", body=body), body=body, prefix=0)
    assert (result.code, result.gets) == (0, [])
    assert worker.get().code == 0  # and the worker is in step for the next
