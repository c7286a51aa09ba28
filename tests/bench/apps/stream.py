"""Large bodies, for the memory measurements.

POST/PUT /upload reads the request body in 64 KiB pieces and answers how
many bytes it got; GET /download?bytes=N sends N zero bytes in 64 KiB
pieces. Neither holds more than one piece, so what grows with the body size
is the server's, not the app's. Anything else answers like apps/hello.py.
"""

CHUNK = 64 << 10
ZEROS = bytes(CHUNK)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/upload":
        stream = environ["wsgi.input"]
        total = 0
        while True:
            piece = stream.read(CHUNK)
            if not piece:
                break
            total += len(piece)
        body = b"%d\n" % total
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/download":
        query = dict(p.partition("=")[::2] for p in environ.get("QUERY_STRING", "").split("&"))
        size = int(query.get("bytes") or 0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return _zeros(size)
    body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _zeros(size):
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        yield ZEROS
    if rest:
        yield ZEROS[:rest]
