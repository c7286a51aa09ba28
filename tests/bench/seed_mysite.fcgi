#!@PYTHON@
# The seed's mysite.fcgi (Django's old FastCGI how-to), for the Apache +
# mod_fcgid comparison. Django removed django.core.servers.fastcgi, so the
# last two lines of the how-to,
#     from django.core.servers.fastcgi import runfastcgi
#     runfastcgi(["method=threaded", "daemonize=false"])
# become what runfastcgi did for method=threaded: flup's threaded
# WSGIServer on the socket mod_fcgid puts on fd 0, with runfastcgi's
# options. tests/bench/bench.py fills in the @...@ paths.
import sys, os

# add a custom pythonpath
sys.path.insert(0, "@PROJECT@")

# change to the name of your app's settings module
os.environ['DJANGO_SETTINGS_MODULE'] = "mysite.settings"
os.environ['DJSITE_DATA_DIR'] = "@DATA@"

from django.core.wsgi import get_wsgi_application
from flup.server.fcgi import WSGIServer
WSGIServer(get_wsgi_application(), maxSpare=5, minSpare=2, maxThreads=50, debug=False).run()
