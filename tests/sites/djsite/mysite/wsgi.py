"""WSGI config for mysite: what `wsgi_app = "mysite.wsgi:application"` loads."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()
