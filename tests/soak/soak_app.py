"""The soak's app (tests/soak/run): hello, an upload hashed, a download.

  GET  /hello                   -> "hello soak\n"
  POST /upload                  -> sha256 hex of the body
  GET  /download?bytes=N&seed=S -> N bytes of stream S (tests/apps/stream_check.py)
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apps"))
import stream_check  # noqa: E402

HELLO = b"hello soak\n"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
        return [HELLO]
    if path == "/upload":
        digest = hashlib.sha256(environ["wsgi.input"].read()).hexdigest().encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(digest)))])
        return [digest]
    return stream_check.application(environ, start_response)
