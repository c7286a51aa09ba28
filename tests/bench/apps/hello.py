"""Hello world: the smallest WSGI app, the same for every server of the
benchmark (hello_fcgi.c answers the same bytes without Python)."""

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
