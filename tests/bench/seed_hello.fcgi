#!@PYTHON@
# seed_mysite.fcgi with apps/hello.py in place of the Django project: the
# seed's mysite.fcgi shape (flup's threaded WSGIServer with runfastcgi's
# options, on the socket mod_fcgid puts on fd 0) around the hello-world
# app, to compare the transports under Apache + mod_fcgid without Django's
# own time. tests/bench/bench.py fills in the @...@ paths.
import sys, os

# add a custom pythonpath
sys.path.insert(0, "@APPS@")

from hello import application
from flup.server.fcgi import WSGIServer
WSGIServer(application, maxSpare=5, minSpare=2, maxThreads=50, debug=False).run()
