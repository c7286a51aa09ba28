"""An app in a submodule, for "pkg.sub:app"."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"package app"]
