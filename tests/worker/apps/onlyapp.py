"""An app module named without ":name": the worker takes `application`."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"module-only app"]
