#!@PYTHON@
# The plain-CGI peer of fcgi-shim's CGI mode: the same app through the
# standard library's wsgiref.handlers.CGIHandler, one request per process.
# tests/bench/bench.py fills in the @...@ paths.
import sys

sys.path.insert(0, "@APPS@")

from wsgiref.handlers import CGIHandler

from hello import application

CGIHandler().run(application)
