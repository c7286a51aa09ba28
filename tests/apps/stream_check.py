"""Bodies too big to hold, checked end to end (tests/e2e/test_streaming.py).

Both directions use the same bytes: block i (64 KiB) of the stream for
SEED is shake_128(b"SEED:i"), so that no two blocks are alike and a lost,
repeated or reordered block changes the digest. Neither route holds more
than one block, so what grows with the body size is the server's.

  POST /upload                  -> "<sha256 of the body> <bytes>"
  GET  /download?bytes=N&seed=S -> N bytes of stream S
"""

import hashlib

BLOCK = 64 << 10


def block(seed, i):
    return hashlib.shake_128(b"%d:%d" % (seed, i)).digest(BLOCK)


def stream(seed, size):
    """The first `size` bytes of stream `seed`, block by block."""
    i = 0
    while size > 0:
        piece = block(seed, i)[:size]
        yield piece
        size -= len(piece)
        i += 1


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/upload":
        digest, total = hashlib.sha256(), 0
        read = environ["wsgi.input"].read
        while True:
            piece = read(BLOCK)
            if not piece:
                break
            digest.update(piece)
            total += len(piece)
        body = b"%s %d" % (digest.hexdigest().encode(), total)
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/download":
        query = dict(p.partition("=")[::2] for p in environ.get("QUERY_STRING", "").split("&"))
        size, seed = int(query["bytes"]), int(query["seed"])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return stream(seed, size)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route\n"]
