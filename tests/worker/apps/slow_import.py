"""A module that takes a while to import, to check K's import_ms."""

import time

time.sleep(0.3)


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slow"]
