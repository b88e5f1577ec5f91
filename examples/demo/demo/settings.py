"""Settings for the whipup demo app. Everything comes from the environment (twelve-factor).

whipup writes the variables to /srv/demo/shared/.env (mode 0600) and starts every
process with them (shared/whipup-exec). Set WHIPUP_ENV_FILE to such a file to have
the settings read it themselves; variables already in the environment win.
"""
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .env import database_from_url, get_bool, get_int, get_list, load_env_file

BASE_DIR = Path(__file__).resolve().parent.parent

if os.environ.get("WHIPUP_ENV_FILE"):
    load_env_file(os.environ["WHIPUP_ENV_FILE"])

DEBUG = get_bool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false")
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = get_list("DJANGO_ALLOWED_HOSTS", "*")
CSRF_TRUSTED_ORIGINS = get_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# The release serving this code: the environment's, else the release directory's name when whipup
# deployed it (it writes REVISION there; BASE_DIR is resolved, so /srv/demo/current gives
# releases/<id>), so a graceful reload onto new code reports the new release.
WHIPUP_RELEASE = os.environ.get("WHIPUP_RELEASE") or (
    BASE_DIR.name if (BASE_DIR / "REVISION").is_file() else "dev")

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "notes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
            ],
        },
    },
]

# Database: DATABASE_URL (whipup sets it: postgres://... on the cluster); else DB_ENGINE=sqlite (or
# postgresql with DB_* variables) for local runs and tests.
DB_ENGINE = os.environ.get("DB_ENGINE", "postgresql").strip().lower()
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": {
        **database_from_url(os.environ["DATABASE_URL"], {
            "connect_timeout": get_int("DB_CONNECT_TIMEOUT", 3),
            "tcp_user_timeout": get_int("DB_TCP_USER_TIMEOUT_MS", 5000)}),
        "CONN_MAX_AGE": get_int("DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
    }}
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"].pop("OPTIONS", None)
elif DB_ENGINE in ("postgresql", "postgres"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DB_NAME", "demo"),
            "USER": os.environ.get("DB_USER", "demo"),
            "PASSWORD": os.environ.get("DB_PASSWORD", ""),
            "HOST": os.environ.get("DB_HOST", "127.0.0.1"),
            "PORT": get_int("DB_PORT", 5432),
            "CONN_MAX_AGE": get_int("DB_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            # a database host that is down (stopped, lost) drops packets: without a timeout, connecting
            # blocks for minutes (the kernel's SYN retries) and /health hangs instead of answering 503;
            # and a kept connection whose host vanished without closing it would wait for TCP's retries
            # (~15 min): tcp_user_timeout (ms) ends it once sent data goes unacknowledged that long
            "OPTIONS": {"connect_timeout": get_int("DB_CONNECT_TIMEOUT", 3),
                        "tcp_user_timeout": get_int("DB_TCP_USER_TIMEOUT_MS", 5000)},
        }
    }
elif DB_ENGINE in ("sqlite", "sqlite3"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DB_NAME") or BASE_DIR / "db.sqlite3",
        }
    }
else:
    raise ImproperlyConfigured(f"DB_ENGINE={DB_ENGINE!r}: use 'postgresql' or 'sqlite'")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# Static files are collected into a per-release STATIC_ROOT and served by nginx.
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT") or BASE_DIR / "static_collected"
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("MEDIA_ROOT") or BASE_DIR / "media"

# Celery (read by demo/celery.py through the CELERY_ namespace).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = get_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True

LOG_LEVEL = os.environ.get("DJANGO_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    # Replace Django's default handlers (console only under DEBUG, mail_admins).
    "loggers": {
        "django": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
    },
}
