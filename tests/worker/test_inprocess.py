"""The worker's pieces in this process: syscalls per request, and wsgi.input
against io.BytesIO at every split of the body."""

import importlib.util
import io
import os
import struct

import pytest

from fakeshim import ROOT, Result, cgi_params, frame, request_payload


def _load_worker():
    # Loaded under another name, so its main() does not run.
    spec = importlib.util.spec_from_file_location("worker_under_test", str(ROOT / "src" / "worker.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


class DjangoLikeResponse:
    """Like django.http.HttpResponse: iterates a list it holds; has close()."""

    def __init__(self, content):
        self._container = [content]
        self.closed = False

    def __iter__(self):
        return iter(self._container)

    def close(self):
        self.closed = True


def hello_list(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!\n"]


def hello_django_like(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return DjangoLikeResponse(b"Hello, world!\n")


def hello_generator(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"Hello, world!\n"


def _frames(data):
    out = []
    while data:
        kind, rid, size = struct.unpack_from("<BHI", data)
        out.append((chr(kind), rid, data[7 : 7 + size]))
        data = data[7 + size :]
    return out


@pytest.mark.parametrize(
    "app, writes",
    [(hello_list, 1), (hello_django_like, 1), (hello_generator, 2)],
    ids=["list", "django-like", "generator"],
)
def test_syscalls_per_request(monkeypatch, app, writes):
    """One read for the R frame; one write for O and D when the body is in
    memory (a generator's block goes out before the generator ends)."""
    shim_in, worker_out = os.pipe()
    worker_in, shim_out = os.pipe()
    try:
        os.write(shim_out, frame("R", 9, request_payload(cgi_params())))
        calls = []

        def counted(name):
            real = getattr(os, name)

            def call(fd, *args):
                calls.append((name, fd))
                return real(fd, *args)

            monkeypatch.setattr(os, name, call)

        for name in ("read", "readv", "write", "writev"):
            counted(name)
        chan = worker.Channel(worker_in, worker_out)
        kind, rid, payload = chan.read_frame()
        worker.handle(chan, app, worker.base_environ(False), rid, payload)
        monkeypatch.undo()
        assert calls == [("readv", worker_in)] + [("write", worker_out)] * writes
        frames = _frames(os.read(shim_in, 1 << 16))
        assert [(k, rid) for k, rid, _ in frames] == [("O", 9), ("D", 9)]
        result = Result([(k, p) for k, _, p in frames[:-1]] + [("D", frames[-1][2][0])])
        assert (result.code, result.status, result.body) == (0, "200 OK", b"Hello, world!\n")
    finally:
        for fd in (shim_in, worker_out, worker_in, shim_out):
            os.close(fd)


def test_django_like_close_is_called():
    shim_in, worker_out = os.pipe()
    response = DjangoLikeResponse(b"x")
    try:
        chan = worker.Channel(-1, worker_out)
        environ_payload = request_payload(cgi_params())

        def app(environ, start_response):
            start_response("200 OK", [])
            return response

        worker.handle(chan, app, worker.base_environ(False), 1, environ_payload)
        assert response.closed
    finally:
        os.close(shim_in)
        os.close(worker_out)


class FakeChannel:
    """Answers G from a list of I payloads, then Z; records what was asked."""

    def __init__(self, chunks, budget=None):
        self.chunks = list(chunks)
        self.asked = []
        self.rfd = -1
        self.budget = budget  # the most the worker may still ask for
        self.sent = 0

    def write(self, data):
        kind, _, size, want = struct.unpack("<BHII", data)
        assert (chr(kind), size) == ("G", 4)
        assert self.budget is None or 0 < want <= self.budget - self.sent
        self.asked.append(want)

    def read_frame(self):
        if self.chunks:
            self.sent += len(self.chunks[0])
            return ord("I"), 1, self.chunks.pop(0)
        return ord("Z"), 1, b""


BODY = b"ab\ncdef\n\n\nghijklmnop\nq"


def _ops(stream):
    """A fixed mix of reads, returning everything seen."""
    seen = [stream.read(0), stream.readline(2), stream.readline(), stream.read(3), stream.readline(0)]
    seen += [stream.readline(5), stream.read(1), list(stream.readlines(3)), stream.read(2)]
    seen += [list(stream), stream.read(), stream.readline(), stream.read(5)]
    return seen


def _splits():
    for prefix in range(len(BODY) + 1):
        for chunk in (1, 2, 5, len(BODY)):
            rest = BODY[prefix:]
            yield prefix, [rest[i : i + chunk] for i in range(0, len(rest), chunk)]


@pytest.mark.parametrize("limit", [None, len(BODY), 7])
def test_input_matches_bytesio_at_every_split(limit):
    expected = _ops(io.BytesIO(BODY[:limit]))
    for prefix, chunks in _splits():
        budget = None if limit is None else max(0, limit - prefix)
        chan = FakeChannel(chunks, budget)
        stream = worker.Input(chan, 1, BODY[:prefix], limit, False)
        assert _ops(stream) == expected, (prefix, chunks)


def test_input_never_asks_past_content_length():
    chan = FakeChannel([b"x" * 10] * 100)
    stream = worker.Input(chan, 1, b"", 25, False)
    assert stream.read() == b"x" * 25
    assert chan.asked == [25, 15, 5]
    assert stream.read() == b""
    assert chan.asked == [25, 15, 5]  # the body is over: no more G


def test_input_asks_at_least_64k_and_at_most_1mib():
    chan = FakeChannel([b"x"] * 3)
    stream = worker.Input(chan, 1, b"", None, False)
    stream.read(1)
    stream.read(5 << 20)
    assert chan.asked[0] == 65536
    assert max(chan.asked) == 1 << 20


def test_complete_flag_means_no_G():
    chan = FakeChannel([b"never"])
    stream = worker.Input(chan, 1, b"abc", None, True)
    assert stream.read() == b"abc"
    assert chan.asked == []


class Trickle:
    """Stands in for os.read/os.readv on one fd: hands out data in the
    given piece sizes, then EOF."""

    def __init__(self, data, sizes):
        self.data = data
        self.sizes = list(sizes)

    def _next(self, most):
        size = min(most, self.sizes.pop(0) if self.sizes else len(self.data))
        piece, self.data = self.data[:size], self.data[size:]
        return piece

    def read(self, fd, most):
        return self._next(most)

    def readv(self, fd, buffers):
        piece = self._next(len(buffers[0]))
        buffers[0][: len(piece)] = piece
        return len(piece)


def _read_all_frames(monkeypatch, data, sizes):
    trickle = Trickle(data, sizes)
    monkeypatch.setattr(os, "read", trickle.read)
    monkeypatch.setattr(os, "readv", trickle.readv)
    chan = worker.Channel(3, -1)
    frames = []
    while True:
        got = chan.read_frame()
        if got is None:
            monkeypatch.undo()
            return frames
        frames.append((chr(got[0]), got[1], got[2]))


SMALL = [("R", 1, b"\x01" + bytes(range(30))), ("I", 2, b""), ("Z", 65535, b"z" * 9)]


def test_channel_reassembles_frames_split_anywhere(monkeypatch):
    data = b"".join(frame(*f) for f in SMALL)
    for split in range(1, len(data) + 1):
        assert _read_all_frames(monkeypatch, data, [split]) == SMALL, split
    for size in (1, 2, 3, 7, 8):
        assert _read_all_frames(monkeypatch, data, [size] * len(data)) == SMALL, size


def test_channel_frames_bigger_than_its_buffer(monkeypatch):
    big = bytes(range(256)) * 1500  # 384000 bytes, more than the 256 KiB buffer
    frames = [SMALL[0], ("I", 7, big), SMALL[2], ("I", 8, big[:1000])]
    data = b"".join(frame(*f) for f in frames)
    for size in (4096, 65536, 100000, len(data)):
        assert _read_all_frames(monkeypatch, data, [size] * len(data)) == frames, size


@pytest.mark.parametrize("cut", [1, 6, 7, 20])
def test_channel_eof_inside_a_frame(monkeypatch, cut):
    data = frame("R", 1, b"x" * 20)[:cut]
    with pytest.raises(worker.ShimError, match="eof on fd 3 inside a frame"):
        _read_all_frames(monkeypatch, data, [])
