"""The Python worker of fcgi-shim: runs the site's WSGI app.

Where it sits:

    web server --FastCGI/CGI--> shim (Rust) --frames, fd 3--> this worker --> app
    web server <--------------- shim (Rust) <--frames, fd 4-- this worker <--

The shim starts `python -c LOADER fcgi-shim-worker` (src/loader.py), which
reads this source from fd 3 and runs it as `__fcgi_shim_worker__`. fd 0 is
/dev/null, fds 1 and 2 are the shim's log pipe. The frame format is specified
in the `//!` doc of src/frame.rs; this file follows it.

Flow: read the C frame, set sys.path, import the app and answer K (or F, then
exit 3); then serve one R frame at a time (PEP 3333) until EOF on fd 3.
Stdlib only; runs on Python 3.8 and later.
"""

import marshal
import os
import struct
import sys
import time

# Not the `signal` module: it imports enum, 3 ms at every start, which a
# CGI request pays in full. Not importlib either (0.3 ms): __import__ does.
try:
    import _signal
except ImportError:  # not CPython
    import signal as _signal

# Frame types (src/frame.rs): shim to worker, then worker to shim.
_C, _R, _I, _Z = b"CRIZ"
_K, _F, _G, _O, _D = b"KFGOD"

_HEADER = struct.Struct("<BHI")  # type, id, payload length
_U32 = struct.Struct("<I")
_G_FRAME = struct.Struct("<BHII")  # header + max
_D_FRAME = struct.Struct("<BHIB")  # header + code
_DONE_EXITING = 0x80  # D code bit: this worker exits after this request

_FLAG_COMPLETE = 1  # R flags bit 0: the body in the frame is the whole body
_FLAG_HTTPS = 2  # R flags bit 1
_R_HEAD = struct.Struct("<BQI")  # flags, content length, environ length
_NO_LENGTH = (1 << 64) - 1  # R content length: no CONTENT_LENGTH

# frame.rs ENVIRON_PROBE, as marshal must read it back from the C frame.
_PROBE = {"SHORT": "", "LATIN_1": "caf\xe9 \x80\xff", "LONG": "-" * 300}

MAX_OUTPUT = 65535  # largest O payload (frame.rs MAX_OUTPUT)
MAX_FROM_WORKER = 1 << 20  # largest frame the shim accepts (frame.rs)

# One read usually holds a whole R frame; leftovers stay buffered.
_READ_SIZE = 256 * 1024
# Output pending past this is written at once: bounds memory, and a big
# response gains nothing from waiting to share a write with D.
_FLUSH_AT = 256 * 1024
# G asks for at least this much (fewer round trips) and at most this much
# (memory per request stays bounded whatever the app asks for).
_G_MIN = 64 * 1024
_G_MAX = 1 << 20

# Iterators over bodies already in memory (a list or tuple result, Django's
# HttpResponse): draining them cannot delay any byte, so their blocks wait
# (up to _FLUSH_AT) to go out with D in one write.
_IN_MEMORY = (type(iter([])), type(iter(())))

# RFC 9110 5.6.2 token; field values and reason phrases: no control
# characters but tab (no CR/LF, so no header injection), latin-1 only.
# Plain string checks rather than `re`: importing re costs ~6 ms at every
# start, which a CGI request pays in full.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Control characters (all but tab), DEL, and anything beyond latin-1.
_NOT_TEXT = {c: None for c in range(0x20) if c != 0x09}
_NOT_TEXT[0x7F] = None


def _TOKEN(s):
    return bool(s) and _TOKEN_CHARS.issuperset(s)


def _TEXT(s):
    if s.isascii() and s.isprintable():  # nearly every value: one C pass
        return True
    return len(s.translate(_NOT_TEXT)) == len(s) and (s.isascii() or max(s) <= "\xff")


def _STATUS(s):
    return (
        len(s) >= 4
        and s[0] in "123456789"
        and s[1] in "0123456789"
        and s[2] in "0123456789"
        and s[3] == " "
        and _TEXT(s[4:])
    )


class ShimError(BaseException):
    """The shim went away (EOF, EPIPE) or broke the protocol.

    A BaseException so that an app's `except Exception` around a read or a
    write cannot swallow it and carry on talking to a pipe that is gone.
    """


class Channel:
    """Frames in on one fd and out on another.

    Reads go into one buffer kept for the worker's life (os.readv), so a
    read allocates nothing: a fresh 256 KiB bytes per os.read costs an mmap,
    an mremap and a munmap on every request.
    """

    def __init__(self, rfd, wfd):
        self.rfd = rfd
        self.wfd = wfd
        self._view = memoryview(bytearray(_READ_SIZE))
        self._start = 0  # the unread bytes are _view[_start:_end]
        self._end = 0

    def read_frame(self):
        """The next frame as (type, id, payload); None on EOF between frames."""
        start, end = self._start, self._end
        if end - start >= 7:
            kind, rid, size = _HEADER.unpack_from(self._view, start)
            stop = start + 7 + size
            if stop <= end:
                self._start = stop
                return kind, rid, bytes(self._view[start + 7 : stop])
        head = self._take(7)
        if head is None:
            return None
        kind, rid, size = _HEADER.unpack(head)
        payload = self._take(size)
        if payload is None:
            raise ShimError("eof on fd %d inside a frame" % self.rfd)
        return kind, rid, payload

    def _take(self, size):
        """Exactly size bytes; None on EOF before the first of them."""
        view, start, end = self._view, self._start, self._end
        if end - start >= size:
            self._start = start + size
            return bytes(view[start : start + size])
        if size > len(view):
            # Bigger than the buffer (a large I or R): read just this frame.
            parts = [bytes(view[start:end])]
            have = end - start
            self._start = self._end = 0
            while have < size:
                chunk = os.read(self.rfd, size - have)
                if not chunk:
                    raise ShimError("eof on fd %d inside a frame" % self.rfd)
                parts.append(chunk)
                have += len(chunk)
            return b"".join(parts)
        # Slide the unread bytes to the front and fill in behind them.
        if start:
            view[: end - start] = view[start:end]
            end -= start
        while end < size:
            count = os.readv(self.rfd, [view[end:]])
            if not count:
                self._start = self._end = 0
                if end:
                    raise ShimError("eof on fd %d inside a frame" % self.rfd)
                return None
            end += count
        self._start, self._end = size, end
        return bytes(view[:size])

    def write(self, data):
        """Write all of data. A blocking pipe write is short only when a
        signal lands mid-way; EINTR itself is retried by Python (PEP 475)."""
        try:
            done = os.write(self.wfd, data)
            while done < len(data):
                done += os.write(self.wfd, memoryview(data)[done:])
        except BrokenPipeError:
            raise ShimError("fd %d closed by the shim" % self.wfd) from None


def _pairs_at(payload, offset):
    """Decode `pairs` at offset: (lengths, start of the bytes, end)."""
    if len(payload) < offset + 4:
        raise ShimError("frame too short for its pair count")
    (count,) = _U32.unpack_from(payload, offset)
    start = offset + 4 + 8 * count
    if start > len(payload):
        raise ShimError("pair count %d does not fit its frame" % count)
    lens = struct.unpack_from("<%dI" % (2 * count), payload, offset + 4)
    end = start + sum(lens)
    if end > len(payload):
        raise ShimError("pair lengths run past the end of their frame")
    return lens, start, end


def _split_pairs(lens, data):
    """Cut data (bytes or str) into (name, value) pairs."""
    pos = 0
    lens = iter(lens)
    out = []
    for name_len, value_len in zip(lens, lens):
        mid = pos + name_len
        end = mid + value_len
        out.append((data[pos:mid], data[mid:end]))
        pos = end
    return out


def _pack_pairs(pairs):
    """Encode [(bytes, bytes)] as `pairs`."""
    flat = [part for pair in pairs for part in pair]
    lens = struct.pack("<%dI" % len(flat), *map(len, flat))
    return _U32.pack(len(pairs)) + lens + b"".join(flat)


def _facts():
    """What K and F report: the interpreter and its sys.path, as they are
    after the app's import (or its failure); Django's DEBUG once its
    settings are loaded (check warns of it: its error pages show visitors
    the site's code and settings)."""
    facts = [
        (b"python", sys.version.split()[0].encode()),
        (b"executable", os.fsencode(sys.executable or "")),
        (b"sys_path", os.fsencode("\n".join(sys.path))),
    ]
    conf = sys.modules.get("django.conf")
    if conf is not None:
        try:
            settings = conf.settings
            if settings.configured:
                facts.append((b"django_debug", b"1" if settings.DEBUG else b"0"))
        except Exception:
            pass
    return facts


def _format_exc():
    """traceback.format_exc(), imported when first needed (~3 ms at start)."""
    import traceback

    return traceback.format_exc()


def _log(text):
    """Write to the log (fd 2 via sys.stderr); logging must never fail a request."""
    try:
        sys.stderr.write(text)
    except Exception:
        pass


def _flush_stdio():
    """Push what the app printed into the log pipe, so it shows up now."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


class FileWrapper:
    """wsgi.file_wrapper (PEP 3333, "Optional Platform-Specific File
    Handling"): iterates a file in blocks; close() closes the file."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self):
        return self.blocks(self.blksize)

    def blocks(self, size):
        read = self.filelike.read
        while True:
            data = read(size)
            if not data:
                return
            yield data

    def close(self):
        # Looked up now, not in __init__: Django replaces the file's close()
        # with the response's (which also fires request_finished).
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class Input:
    """wsgi.input: the body prefix from the R frame, then more on demand.

    Asks the shim for more (G) only when the app wants more than is
    buffered, never past CONTENT_LENGTH, and at most _G_MAX at a time: the
    body streams through, it is never held whole.
    """

    __slots__ = ("_chan", "_rid", "_buf", "_pos", "_left")

    def __init__(self, chan, rid, prefix, limit, complete):
        if limit is not None and len(prefix) > limit:
            prefix = prefix[:limit]
        self._chan = chan
        self._rid = rid
        self._buf = prefix
        self._pos = 0
        # Bytes the shim may still be asked for; None: until it says Z.
        if complete:
            self._left = 0
        elif limit is None:
            self._left = None
        else:
            self._left = limit - len(prefix)

    def _fetch(self, want):
        """Up to about `want` more bytes from the shim; b"" at the end."""
        left = self._left
        if left == 0:
            return b""
        ask = min(max(want, _G_MIN), _G_MAX)
        if left is not None and ask > left:
            ask = left
        self._chan.write(_G_FRAME.pack(_G, self._rid, 4, ask))
        frame = self._chan.read_frame()
        if frame is None:
            raise ShimError("eof on fd %d while waiting for input" % self._chan.rfd)
        kind, _, data = frame
        if kind == _I and data:
            if left is not None:
                data = data[:left]  # a shim sending more than CONTENT_LENGTH
                self._left = left - len(data)
            return data
        if kind == _I or kind == _Z:  # an empty I would loop forever: treat it as Z
            self._left = 0
            return b""
        raise ShimError("got a %r frame in answer to G" % chr(kind))

    def read(self, size=-1):
        buf, pos = self._buf, self._pos
        if size is None or size < 0:
            size = -1
        elif size <= len(buf) - pos:
            self._pos = pos + size
            return buf[pos : pos + size]
        parts = [buf[pos:]]
        got = len(parts[0])
        self._buf, self._pos = b"", 0
        while size < 0 or got < size:
            chunk = self._fetch(_G_MAX if size < 0 else size - got)
            if not chunk:
                break
            if size >= 0 and got + len(chunk) > size:
                cut = size - got
                parts.append(chunk[:cut])
                self._buf, self._pos = chunk, cut
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def readline(self, size=-1):
        if size is None:
            size = -1
        parts = []
        while size != 0:
            buf, pos = self._buf, self._pos
            if pos == len(buf):
                buf = self._fetch(size)
                if not buf:
                    break
                self._buf, pos = buf, 0
            stop = len(buf) if size < 0 else min(len(buf), pos + size)
            newline = buf.find(b"\n", pos, stop)
            if newline >= 0:
                stop = newline + 1
            parts.append(buf[pos:stop])
            self._pos = stop
            if newline >= 0:
                break
            if size > 0:
                size -= stop - pos
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


# Header blocks already built, by (status, *headers). Most responses of a
# site repeat one of a few status and header lists: a hit costs a tuple and
# a dict look-up, where the checks cost ~1 µs a request (hello world's two
# headers, Python 3.11). Only checked lists get in, by their contents at
# start_response time, so an edited list is looked up, and checked, anew;
# an item equal to a checked one (a tuple subclass, say) passes as it did.
# Small blocks only, emptied when full: Set-Cookie or a varying length can
# make every list new, and the worker must not grow with them.
_BLOCKS = {}
_BLOCKS_MAX = 64
_BLOCK_KEPT_MAX = 1024


def _header_block(status, headers):
    """Validate start_response's arguments; the CGI header block, encoded.

    Built (and so checked) at start_response time: an app that edits the
    list afterwards cannot slip a bad header past the check.
    """
    key = None
    if type(headers) is list:
        try:
            key = (status, *headers)
            block = _BLOCKS.get(key)
        except TypeError:  # an unhashable item: the checks below say which
            key = block = None
        if block is not None:
            return block
    if not isinstance(status, str) or not _STATUS(status):
        raise ValueError(
            "bad status %r: want a str like '200 OK' (three digits, a space,"
            " a reason without control characters)" % (status,)
        )
    if type(headers) is not list:
        raise TypeError(
            "response headers must be a list of (name, value) tuples, not %s"
            % type(headers).__name__
        )
    lines = ["Status: ", status, "\r\n"]
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError("response header %r is not a (name, value) tuple" % (item,))
        name, value = item
        if not isinstance(name, str) or not _TOKEN(name):
            raise ValueError("bad response header name %r: want an HTTP token" % (name,))
        if not isinstance(value, str) or not _TEXT(value):
            raise ValueError(
                "bad value for response header %r: %r (want a latin-1 str"
                " without control characters)" % (name, value)
            )
        if len(name) == 6 and name.lower() == "status":
            # CGI reads Status as the status line (RFC 3875 6.3.3): two of them
            # would leave the choice to the web server.
            raise ValueError("a 'Status' response header is not allowed: pass the status to start_response()")
        lines += (name, ": ", value, "\r\n")
    lines.append("\r\n")
    block = "".join(lines).encode("latin-1")
    if key is not None and len(block) <= _BLOCK_KEPT_MAX:
        if len(_BLOCKS) >= _BLOCKS_MAX:
            _BLOCKS.clear()
        _BLOCKS[key] = block
    return block


class Response:
    """One response: start_response, write and its O and D frames.

    Output is queued as framed parts and written by flush(). What the app
    hands over is written before control returns to it (PEP 3333 forbids
    holding a block back while the app works on the next), except a body
    already in memory: it waits for close() and goes out with D.
    """

    __slots__ = ("chan", "rid", "head", "headers_sent", "wrote", "_pending", "_pending_len")

    def __init__(self, chan, rid):
        self.chan = chan
        self.rid = rid
        self.head = None  # the encoded header block, once start_response ran
        self.headers_sent = False  # the header block is queued: it is final
        self.wrote = False  # O bytes reached the shim: a failure now is D 2
        self._pending = []
        self._pending_len = 0

    def start_response(self, status, headers, exc_info=None):
        # PEP 3333 "The start_response() Callable", the exc_info rules.
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no frame -> traceback -> frame cycle
        elif self.head is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        self.head = _header_block(status, headers)
        return self.write

    def write(self, data):
        """The write() callable: sent before it returns (PEP 3333)."""
        if not isinstance(data, bytes):
            raise TypeError("write() takes bytes, not %s" % type(data).__name__)
        if data:
            self._queue(data)
            self.flush()

    def send_body(self, result):
        """Send the app's iterable; each block as it comes (PEP 3333: no
        buffering across blocks), except bodies already in memory."""
        if type(result) is FileWrapper:
            # Our own wrapper: read in frame-sized blocks whatever blksize the
            # app suggested (Django's 4096 would cost a write per 4 KiB).
            blocks, in_memory = result.blocks(MAX_OUTPUT), False
        else:
            blocks = iter(result)
            in_memory = type(blocks) in _IN_MEMORY
        for block in blocks:
            if not isinstance(block, bytes):
                raise TypeError("the app's iterable yielded %s, not bytes" % type(block).__name__)
            if block:
                self._queue(block)
                if not in_memory:
                    self.flush()
        if not self.headers_sent:  # an empty body still owes the header block
            self._frames(self._commit_head())

    def _commit_head(self):
        if self.head is None:
            raise RuntimeError("the app sent its body (or returned) without calling start_response()")
        self.headers_sent = True
        return self.head

    def _queue(self, data):
        if not self.headers_sent:
            head = self._commit_head()
            if len(head) + len(data) <= MAX_OUTPUT:
                data = head + data  # the usual small response: one O frame
            else:
                self._frames(head)
        self._frames(data)

    def _frames(self, data):
        """Queue data as O frames of at most MAX_OUTPUT bytes."""
        pending = self._pending
        if len(data) <= MAX_OUTPUT:
            pending += (_HEADER.pack(_O, self.rid, len(data)), data)
            self._pending_len += len(data)
        else:
            view = memoryview(data)
            for start in range(0, len(data), MAX_OUTPUT):
                piece = view[start : start + MAX_OUTPUT]
                pending += (_HEADER.pack(_O, self.rid, len(piece)), piece)
                self._pending_len += len(piece)
                if self._pending_len >= _FLUSH_AT:
                    self.flush()
        if self._pending_len >= _FLUSH_AT:
            self.flush()

    def flush(self, code=None, detail=b""):
        """Write what is queued, and D with code when given, in one write.
        detail (the traceback of a failure) travels after the code: the
        shim shows it only to clients that site.toml's debug_allow lists."""
        pending = self._pending
        if code is not None:
            pending.append(_D_FRAME.pack(_D, self.rid, 1 + len(detail), code) + detail)
        if pending:
            self.chan.write(b"".join(pending))
            if self._pending_len:
                self.wrote = True
            del pending[:]
            self._pending_len = 0

    def discard(self):
        del self._pending[:]
        self._pending_len = 0


def _environ(payload, base):
    """PEP 3333 environ from an R payload: (environ, flags, content length
    or None, body prefix).

    The shim sends the params as a marshal dict whose strings are the
    params' bytes read as latin-1 (frame.rs): one C call builds it, every
    byte intact (PEP 3333 "Unicode Issues"). The shim has also dropped what
    must not reach the app and added the CGI names the app may rely on.
    """
    start = _R_HEAD.size
    try:
        flags, length, size = _R_HEAD.unpack_from(payload)
        environ = marshal.loads(payload[start : start + size])
    except (struct.error, EOFError, ValueError, TypeError) as exc:
        raise ShimError("an R frame's environ does not decode: %s" % exc) from None
    if type(environ) is not dict or len(payload) < start + size:
        raise ShimError("an R frame's environ does not decode: not a dict of its stated size")
    environ.update(base)  # after the params: no param can pose as wsgi.*
    environ["wsgi.url_scheme"] = "https" if flags & _FLAG_HTTPS else "http"
    environ["wsgi.errors"] = sys.stderr
    return environ, flags, (None if length == _NO_LENGTH else length), payload[start + size :]


def _describe(environ):
    return "%s %s" % (
        environ.get("REQUEST_METHOD", "?"),
        environ.get("REQUEST_URI") or environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
    )


def handle(chan, app, base, rid, payload):
    """Serve one R frame: call the app, send its response, then D."""
    environ, flags, length, prefix = _environ(payload, base)
    environ["wsgi.input"] = Input(chan, rid, prefix, length, flags & _FLAG_COMPLETE)
    response = Response(chan, rid)
    failed = False
    fatal = None  # SystemExit from the app: finish this request, then exit
    result = None
    detail = ""
    try:
        result = app(environ, response.start_response)
        response.send_body(result)
    except ShimError:
        _close(result, environ)
        raise
    except BaseException as exc:
        failed = True
        if not isinstance(exc, Exception):
            fatal = exc
        detail = _format_exc()
        _log("fcgi-shim-worker: app failed on %s:\n%s" % (_describe(environ), detail))
    # close() runs before the last write, so that D can report its failure
    # and the request is really over when the shim sees D.
    if not _close(result, environ):
        failed = True
    _flush_stdio()
    # sys.exit() from the app ends this worker after the request (not in
    # threaded mode: there it ends only its thread). The shim is told in D,
    # so that it sends the next request to a new worker, not to this one.
    exiting = _DONE_EXITING if fatal is not None and not base["wsgi.multithread"] else 0
    if failed:
        response.discard()
        if response.wrote:
            response.flush(2 | exiting)
        else:
            # Bounded: a debug page needs the end of a traceback, not 1 MiB.
            response.flush(1 | exiting, detail[-65536:].encode("utf-8", "backslashreplace"))
    else:
        response.flush(0 | exiting)
    if fatal is not None:
        raise fatal


def _close(result, environ):
    """Call result.close() if it has one (PEP 3333); False if that failed."""
    try:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    except ShimError:
        raise
    except BaseException:
        _log("fcgi-shim-worker: close() failed on %s:\n%s" % (_describe(environ), _format_exc()))
        return False
    return True


def load_app(spec, django):
    """The app named by `app` ("module:name", "module" = module:application),
    else Django's when `django` is set."""
    if spec:
        module_name, _, attrs = spec.partition(":")
        __import__(module_name)  # as importlib.import_module, for absolute names
        obj = sys.modules[module_name]
        for part in (attrs or "application").split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                if obj is not sys.modules[module_name]:
                    raise
                # A WSGI app under another name (Flask's `app`): say which
                # callables the module has of its own (objects, and functions
                # defined in it; no classes, no imported functions).
                import types

                named = sorted(
                    n for n, v in vars(obj).items()
                    if callable(v) and not n.startswith("_")
                    and not isinstance(v, (type, types.BuiltinFunctionType))
                    and (not isinstance(v, types.FunctionType) or v.__module__ == module_name))
                raise AttributeError("module %r has no attribute %r%s" % (
                    module_name, part,
                    "; its callables: %s (name one as wsgi_app = \"%s:NAME\")" % (
                        ", ".join(named), module_name) if named else "")) from None
    elif django:
        from django.core.wsgi import get_wsgi_application

        obj = get_wsgi_application()
    else:
        raise LookupError("no app configured: the config names neither an app nor a Django settings module")
    if not callable(obj):
        raise TypeError("%s is not callable: it is %s" % (spec or "the app", type(obj).__name__))
    return obj


def _check_probe(probe):
    """The C frame's probe must read back as _PROBE (frame.rs): else this
    Python's marshal would misread every request."""
    try:
        got = marshal.loads(probe)
    except Exception as exc:
        got = exc
    if got != _PROBE:
        raise RuntimeError(
            "this Python (%s) does not read fcgi-shim's request format (marshal"
            " gave %r): use another interpreter, or report it with the Python"
            " version" % (sys.version.split()[0], got)
        )


def _load(chan, rid, payload):
    """Apply the C frame, import the app, answer K; on failure F and exit 3."""
    spec, django, paths, run_once, threads, probe = "", False, [], False, 1, None
    lens, start, _ = _pairs_at(payload, 0)
    for name, value in _split_pairs(lens, payload[start:]):
        if name == b"app":
            spec = value.decode("utf-8", "replace")  # a bad name fails as F
        elif name == b"django":
            django = value == b"1"
        elif name == b"path":
            paths.append(os.fsdecode(value))
        elif name == b"run_once":
            run_once = value == b"1"
        elif name == b"threads":
            threads = max(1, int(value or b"1"))
        elif name == b"probe":
            probe = value
        # Unknown keys are ignored: a newer shim may send more.
    # `-c` puts the cwd first on sys.path; the site's path entries replace it.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    sys.path[0:0] = paths
    started = time.perf_counter()
    try:
        _check_probe(probe)
        app = load_app(spec, django)
    except BaseException:  # SystemExit and KeyboardInterrupt from an import too
        _flush_stdio()
        text = _format_exc().encode("utf-8", "backslashreplace")
        # Keep the end of an oversized traceback: it names the error.
        facts = _facts()
        room = MAX_FROM_WORKER - 7 - len(_pack_pairs(facts + [(b"traceback", b"")]))
        text = text[-room:].decode("utf-8", "ignore").encode("utf-8")
        failed = _pack_pairs(facts + [(b"traceback", text)])
        chan.write(_HEADER.pack(_F, rid, len(failed)) + failed)
        # os._exit: threads or atexit hooks of a half-imported app must not
        # hang the exit or change its status.
        os._exit(3)
    import_ms = round((time.perf_counter() - started) * 1000)
    _flush_stdio()
    ready = _pack_pairs(_facts() + [(b"import_ms", str(import_ms).encode())])
    chan.write(_HEADER.pack(_K, rid, len(ready)) + ready)
    return app, base_environ(run_once, threads > 1), threads


def base_environ(run_once, threaded=False):
    """The environ entries that are the same for every request."""
    return {
        "wsgi.version": (1, 0),
        # runfcgi method=threaded: one process, the app in threads.
        "wsgi.multithread": threaded,
        "wsgi.multiprocess": not threaded,  # else one worker per shim, many shims
        "wsgi.run_once": run_once,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,  # read() ends at the body's end
    }


class _Share:
    """One request's side of a threaded worker (runfcgi method=threaded).

    Frames for it (I, Z) arrive through a queue that the main thread fills;
    what it writes goes out whole under the channel's lock, so frames of
    concurrent requests never interleave.
    """

    def __init__(self, chan, lock):
        self._chan = chan
        self._lock = lock
        self.rfd = chan.rfd
        import queue  # only in threaded mode: imports cost start-up time

        self.frames = queue.SimpleQueue()

    def write(self, data):
        with self._lock:
            self._chan.write(data)

    def read_frame(self):
        return self.frames.get()  # None: the shim closed the channel


def serve_threaded(chan, app, base):
    """Run each request in a thread of its own, as the shim sends them
    (it bounds how many are open at once); route input frames by id."""
    import threading  # only in threaded mode: imports cost start-up time

    lock = threading.Lock()
    live = {}
    threads = []

    def run(rid, payload, share):
        try:
            handle(share, app, base, rid, payload)
        except ShimError as exc:
            _log("fcgi-shim-worker: request %d: %s\n" % (rid, exc))
        except BaseException:  # SystemExit from the app ends only its thread
            pass
        finally:
            live.pop(rid, None)

    while True:
        frame = chan.read_frame()
        if frame is None:
            break
        kind, rid, payload = frame
        if kind == _R:
            share = live[rid] = _Share(chan, lock)
            t = threading.Thread(target=run, args=(rid, payload, share), name="request-%d" % rid, daemon=True)
            threads = [x for x in threads if x.is_alive()]
            threads.append(t)
            t.start()
        elif kind in (_I, _Z):
            share = live.get(rid)
            if share is not None:
                share.frames.put(frame)
        else:
            raise ShimError("unexpected frame %r" % chr(kind))
    # The shim is stopping: requests in flight finish (it bounds how long).
    for share in list(live.values()):
        share.frames.put(None)
    for t in threads:
        t.join()


def main():
    # The shim owns Ctrl-C for the whole process group; SIGTERM stays default.
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    # Nothing the app spawns may hold or use the frame pipes.
    os.set_inheritable(3, False)
    os.set_inheritable(4, False)
    try:
        # Python 3.8 buffers a non-interactive stderr; 3.9+ line-buffers it.
        sys.stderr.reconfigure(line_buffering=True)
    except Exception:
        pass
    chan = Channel(3, 4)
    try:
        frame = chan.read_frame()
        if frame is None:
            return
        kind, rid, payload = frame
        if kind != _C:
            raise ShimError("the first frame is %r, not C" % chr(kind))
        app, base, threads = _load(chan, rid, payload)
        if threads > 1:
            serve_threaded(chan, app, base)
            _flush_stdio()
            return
        while True:
            frame = chan.read_frame()
            if frame is None:
                break
            kind, rid, payload = frame
            if kind != _R:
                raise ShimError("expected an R frame, got %r" % chr(kind))
            handle(chan, app, base, rid, payload)
    except ShimError as exc:
        _log("fcgi-shim-worker: %s; exiting\n" % exc)
        _flush_stdio()
        sys.exit(1)
    _flush_stdio()


if __name__ == "__fcgi_shim_worker__":
    main()
