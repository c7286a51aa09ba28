"""The response side: framing, start_response, write(), errors, close()."""

import os

import pytest

from fakeshim import MAX_OUTPUT, cgi_params, frame, request_payload

import testapps  # the apps the worker runs; imported here for their tables

TRACEBACK = "Traceback (most recent call last)"


def _pattern(size):
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@pytest.mark.parametrize("size", [1, 65400, 65535, 65536, 200000, (1 << 20) + 3])
@pytest.mark.parametrize("how", ["list", "generator"])
def test_output_is_split_into_frames(serve, size, how):
    worker = serve("big_output")
    result = worker.get(query="%d,%s" % (size, how))
    assert result.code == 0
    assert result.body == _pattern(size)
    # Every frame is <= MAX_OUTPUT (checked by the fake shim), and the
    # frames are as few as that allows (+1: the header block).
    assert len(result.o_frames) <= len(result.out) // MAX_OUTPUT + 2
    assert result.o_frames[0].startswith(b"Status: 200 OK\r\n")


def test_write_callable_and_iterable_in_order(serve):
    result = serve("write_then_iter").get()
    assert (result.code, result.body) == (0, b"one,two,three")


def _before_the_first_G(result):
    first_get = [kind for kind, _ in result.events].index("G")
    return b"".join(p for kind, p in result.events[:first_get] if kind == "O")


def test_write_is_sent_before_it_returns(serve):
    worker = serve("write_then_read")
    result = worker.request(cgi_params("POST", body=b"hello"), body=b"hello", prefix=0)
    assert _before_the_first_G(result).endswith(b"\r\n\r\nfirst")
    assert result.body == b"first|hello"


def test_each_block_is_sent_before_the_next_is_asked_for(serve):
    worker = serve("generator_then_read")
    result = worker.request(cgi_params("POST", body=b"hello"), body=b"hello", prefix=0)
    assert _before_the_first_G(result).endswith(b"\r\n\r\nfirst")
    assert result.body == b"first|hello"


def test_file_wrapper(serve, tmp_path):
    data = _pattern(300000)
    path = tmp_path / "download.bin"
    path.write_bytes(data)
    worker = serve("file_app")
    result = worker.request(cgi_params(HTTP_X_FILE=str(path)))
    assert (result.code, result.body) == (0, data)
    worker.wait_log("file closed: download.bin")
    # Read in frame-sized blocks, not the app's 4096.
    assert len(result.o_frames) <= 7


def test_file_wrapper_iterated_by_the_app_honours_blksize(serve, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 2500)
    worker = serve("file_wrapper_iter")
    result = worker.request(cgi_params(HTTP_X_FILE=str(path)))
    assert result.body == b"[1000, 1000, 500]"
    worker.wait_log("file closed: f.bin")


def test_exc_info_before_output_replaces_the_status(serve):
    result = serve("exc_info_before").get()
    assert (result.code, result.status, result.body) == (0, "500 Oops", b"error page")


def test_exc_info_after_output_reraises(serve):
    worker = serve("exc_info_after")
    result = worker.get()
    assert (result.code, result.status, result.body) == (2, "200 OK", b"partial")
    assert "ValueError: late-boom-marker" in worker.wait_log("late-boom-marker")


def test_start_response_twice_without_exc_info_is_an_error(serve):
    worker = serve("start_twice")
    result = worker.get()
    assert (result.code, result.out) == (1, b"")
    worker.wait_log("start_response() called a second time without exc_info")


@pytest.mark.parametrize(
    "app, marker",
    [
        ("raise_before", "RuntimeError: secret-traceback-marker"),
        ("raise_after_start", "RuntimeError: before-any-body-marker"),
        ("returns_none", "TypeError"),
        ("returns_int", "TypeError"),
        ("yields_str", "TypeError: the app's iterable yielded str, not bytes"),
        ("no_start_response", "without calling start_response()"),
    ],
)
def test_failure_before_output_is_D1_with_the_traceback_in_the_log(serve, app, marker):
    worker = serve(app)
    result = worker.get()
    assert (result.code, result.out) == (1, b"")  # no O frame at all
    # The traceback travels in D, for the shim's debug page (debug_allow).
    assert result.detail.startswith(TRACEBACK) and marker in result.detail, result.detail
    log = worker.wait_log(marker)
    assert TRACEBACK in log
    assert "fcgi-shim-worker: app failed on GET /:" in log
    # The worker is still good for the next request.
    assert worker.get().code == 1


def test_no_start_response_with_body(serve):
    worker = serve("no_start_response")
    result = worker.get(query="body")
    assert (result.code, result.out) == (1, b"")
    worker.wait_log("without calling start_response()")


def test_failure_after_output_is_D2(serve):
    worker = serve("raise_after")
    result = worker.get()
    assert (result.code, result.body) == (2, b"partial")
    worker.wait_log("RuntimeError: after-output-marker")


@pytest.mark.parametrize(
    "how, code, body",
    [("ok", 0, b"block1block2"), ("fail-early", 1, None), ("fail-late", 2, b"block1")],
)
def test_close_is_always_called(serve, how, code, body):
    worker = serve("Tracked")
    result = worker.get(query=how)
    assert result.code == code
    if body is None:
        assert result.out == b""
    else:
        assert result.body == body
    worker.wait_log("closed: %s" % how)


def test_close_failing_after_output_is_D2(serve):
    worker = serve("Tracked")
    result = worker.get(query="close-fails")
    assert (result.code, result.body) == (2, b"block1block2")
    log = worker.wait_log("close-fails-marker")
    assert "fcgi-shim-worker: close() failed on GET /?close-fails:" in log


def test_close_failing_before_output_is_D1(serve):
    # A body already in memory waits for close(): its failure is still a 500.
    worker = serve("Tracked")
    result = worker.get(query="close-fails-in-memory")
    assert (result.code, result.out) == (1, b"")
    worker.wait_log("close-fails-marker")


@pytest.mark.parametrize("case", sorted(testapps.BAD_RESPONSES))
def test_bad_status_or_headers_are_rejected(serve, case):
    worker = serve("bad_response")
    result = worker.get(query=case)
    assert (result.code, result.out) == (1, b"")
    log = worker.wait_log("fcgi-shim-worker: app failed")
    reasons = (
        "ValueError: bad status ",
        "ValueError: bad response header name ",
        "ValueError: bad value for response header ",
        "ValueError: a 'Status' response header is not allowed",
        "TypeError: response headers must be a list",
        "is not a (name, value) tuple",
    )
    last = log.splitlines()[-1]
    assert any(reason in last for reason in reasons), last


def test_legal_header_oddities_pass(serve):
    result = serve("good_headers").get()
    assert result.code == 0
    assert result.out.startswith(
        b"Status: 299 Custom \xe9\r\nX-Tab: a\tb\r\nX-Latin: caf\xe9\r\nX-Empty: \r\n"
        b"Content-Type: text/plain\r\n\r\nok"
    )


def test_header_blocks_follow_the_list_not_its_identity(serve):
    """The worker keeps the header blocks it built; an app that edits its
    one list between requests gets each time what the list then says, and
    a header made bad by the edit is refused as on the first request."""
    worker = serve("edited_headers")
    first = worker.get()
    assert first.out == b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok"
    added = worker.get(query="add=X-Two:2")
    assert added.out == b"Status: 200 OK\r\nContent-Type: text/plain\r\nX-Two: 2\r\n\r\nok"
    assert worker.get(query="pop").out == first.out
    bad = worker.get(query="add=X-Bad:a%0D%0ASet-Cookie: evil=1")
    assert (bad.code, bad.out) == (1, b"")
    worker.wait_log("bad value for response header 'X-Bad'")
    assert worker.get(query="pop").out == first.out
    # The status is part of what is looked up.
    other = worker.request(cgi_params("GET", "/", "", HTTP_X_STATUS="404 Not Found"))
    assert other.out == b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nok"
    assert worker.get().out == first.out


def test_many_header_lists_each_get_their_own_block(serve):
    """More distinct lists than the worker keeps (a varying header on every
    response): each response still carries its own."""
    worker = serve("edited_headers")
    for n in range(100):
        result = worker.get(query="add=X-N:%d" % n)
        assert result.out.endswith(b"X-N: %d\r\n\r\nok" % n), result.out
        worker.get(query="pop")


def test_empty_body_still_sends_the_headers(serve):
    result = serve("empty_body").get()
    assert (result.code, result.out) == (0, b"Status: 204 No Content\r\n\r\n")


def test_app_output_goes_to_the_log_not_the_response(serve):
    worker = serve("printer")
    result = worker.get()
    assert (result.code, result.body) == (0, b"ok")
    for marker in ("printed-marker", "fd1-marker", "fd2-marker", "stderr-marker", "wsgi-errors-marker"):
        assert marker.encode() not in result.out
        worker.wait_log(marker)


def test_close_is_called_when_the_shim_stops_reading(serve):
    worker = serve("Tracked")
    os.close(worker.from_worker)  # the worker's next write gets EPIPE
    worker.from_worker = None
    worker.send(frame("R", 1, request_payload(cgi_params(query="ok"))))
    assert worker.wait() == 1
    log = worker.log()
    assert "closed: ok" in log
    assert "fd 4 closed by the shim" in log


def test_close_is_called_when_the_shim_goes_away_mid_input(serve):
    # The app's `except Exception` must not swallow the lost shim.
    worker = serve("ReadsInBody")
    params = cgi_params("POST", body=b"0123456789")
    worker.send(frame("R", 1, request_payload(params, complete=False)))
    kind, _, _ = worker.read_frame()
    assert kind == "G"
    worker.close_input()
    assert worker.wait() == 1
    log = worker.log()
    assert "closed: reads-in-body" in log
    assert "eof on fd 3 while waiting for input" in log
