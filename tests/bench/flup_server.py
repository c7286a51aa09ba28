"""flup on the FastCGI socket that spawn-fcgi put on fd 0.

    python flup_server.py single|threaded module:callable [dir ...]

`single` is flup.server.fcgi_single (one request at a time); `threaded` is
flup.server.fcgi, the server the seed's mysite.fcgi ran through Django's
runfastcgi(method="threaded"), with the options runfastcgi gave it
(maxSpare 5, minSpare 2, maxThreads 50, debug off). Each dir goes in front
of sys.path, in order.
"""

import importlib
import sys


def main():
    kind, target, *dirs = sys.argv[1:]
    sys.path[:0] = dirs
    module, _, name = target.partition(":")
    app = getattr(importlib.import_module(module), name or "application")
    if kind == "single":
        from flup.server.fcgi_single import WSGIServer

        WSGIServer(app, debug=False).run()
    elif kind == "threaded":
        from flup.server.fcgi import WSGIServer

        WSGIServer(app, maxSpare=5, minSpare=2, maxThreads=50, debug=False).run()
    else:
        sys.exit(f"flup_server.py: unknown kind {kind!r}: single or threaded")


if __name__ == "__main__":
    main()
