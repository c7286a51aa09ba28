"""Settings of the test and demo site (django-admin startproject, trimmed).

Everything that differs between a test run, the demo and a developer's
checkout comes from the environment, which fcgi-shim sets from the [env]
table of site.toml:

  DJSITE_DATA_DIR     directory of the SQLite database (writable by the web
                      server's user: SQLite writes its journal beside the file)
  DJSITE_STATIC_ROOT  where collectstatic copies static files (the web root's
                      static/ directory, so that Apache serves them itself)
  DJSITE_SECRET_KEY   SECRET_KEY; the default is only fit for tests
  DJSITE_GREETING     shown by the /env/ view (tests of [env] and reload)
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DJSITE_DATA_DIR", BASE_DIR / "data"))

SECRET_KEY = os.environ.get("DJSITE_SECRET_KEY", "djsite-test-key-not-for-production")

# A shared-hosting site runs with DEBUG off: the tests check what a visitor
# really sees (Django's 404 and 500 pages, no tracebacks).
DEBUG = False

ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pages",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "mysite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Relative, as startproject writes it: Django then prefixes SCRIPT_NAME, so a
# wrong SCRIPT_NAME from the server shows up in every static URL too.
STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("DJSITE_STATIC_ROOT", str(BASE_DIR / "staticfiles"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# With DEBUG off Django would send errors only to ADMINS by mail. Send them
# to stderr instead, where the FastCGI server puts them in its log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING"}},
}
