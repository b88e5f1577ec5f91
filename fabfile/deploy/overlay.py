"""The settings overlay: two modules whipup writes into each release's Django root (never into the user's
repository), so an unchanged project runs on the cluster.

`whipup_settings` imports the project's settings module, then sets only what running here needs, and lists
each change in `WHIPUP_OVERRIDES` (`fab inspect` shows them):
  DATABASES['default']  from DATABASE_URL, unless the project's own already points at that database
  STATIC_ROOT           the release's static/ (nginx serves it through `current`); STATIC_URL /static/ if local
  STORAGES['default']   S3 through django-storages when media is in the cluster's bucket; else MEDIA_ROOT
  ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS   the site's names and addresses
  SECURE_PROXY_SSL_HEADER   the proxy sends X-Forwarded-Proto
  DEBUG False; SECRET_KEY from the environment when the project's is empty or a django-insecure one
  MIDDLEWARE            `whipup_health.Health` first: /-/health answers before any redirect or host check (not
                        when roles.yaml's app.health_path names the project's own health view instead)
`whipup_health` is that middleware: 200 once the database answers `SELECT 1`, 503 otherwise, with the release.
"""
from __future__ import annotations

SETTINGS_MODULE = "whipup_settings"
HEALTH_MODULE = "whipup_health"

_SETTINGS = '''\
"""whipup's settings overlay for release {release} (written by whipup, not part of your repository).

It imports {project}, then sets only what running on the cluster needs; WHIPUP_OVERRIDES lists each change.
`app.overlay: false` in roles.yaml turns it off.
"""
import importlib as _importlib
import os as _os
from urllib.parse import unquote as _unquote, urlsplit as _urlsplit

_project = _importlib.import_module({project!r})
globals().update({{_k: _v for _k, _v in vars(_project).items() if _k.isupper()}})

WHIPUP_PROJECT_SETTINGS = {project!r}
WHIPUP_OVERRIDES = []


def _set(name, value, why):
    globals()[name] = value
    WHIPUP_OVERRIDES.append((name, why))


def _env_list(name):
    return [v for v in _os.environ.get(name, "").split(",") if v]


def _database(url):
    parts = _urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return {{"ENGINE": "django.db.backends.sqlite3", "NAME": _unquote(parts.path[1:] if parts.path.startswith("//") else parts.path)}}
    return {{"ENGINE": "django.db.backends.postgresql", "NAME": _unquote(parts.path.lstrip("/")),
            "USER": _unquote(parts.username or ""), "PASSWORD": _unquote(parts.password or ""),
            "HOST": parts.hostname or "", "PORT": str(parts.port or 5432),
            "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {{"connect_timeout": 3, "tcp_user_timeout": 5000}}}}


if _os.environ.get("DATABASE_URL"):
    _want = _database(_os.environ["DATABASE_URL"])
    _dbs = dict(globals().get("DATABASES") or {{}})
    _have = dict(_dbs.get("default") or {{}})
    _same = (_have.get("ENGINE") == _want["ENGINE"] and str(_have.get("NAME")) == _want["NAME"]
             and (_want["ENGINE"].endswith("sqlite3") or str(_have.get("HOST") or "") == _want["HOST"]))
    if not _same:
        _was = "{{}} {{}}".format(_have.get("ENGINE", "none").rsplit(".", 1)[-1], _have.get("NAME", ""))
        _dbs["default"] = _want
        _set("DATABASES", _dbs, "default from DATABASE_URL (the project's was " + _was.strip() + ")")
        _apps = list(globals().get("INSTALLED_APPS") or [])
        if _want["ENGINE"].endswith("postgresql") and "django.contrib.postgres" not in _apps:
            # what apps such as wagtail's search need on PostgreSQL (lookups and fields, no models)
            _set("INSTALLED_APPS", _apps + ["django.contrib.postgres"], "django.contrib.postgres, for PostgreSQL")

_set("STATIC_ROOT", {static_root!r}, "the release's static/, served by the proxy")
if not str(globals().get("STATIC_URL") or "").startswith(("http://", "https://", "//")):
    if globals().get("STATIC_URL") not in ("/static/", "static/"):
        _set("STATIC_URL", "/static/", "the path the proxy serves static files at")

if _os.environ.get("AWS_STORAGE_BUCKET_NAME"):
    for _k, _v in _os.environ.items():       # django-storages reads its AWS_* settings from Django's settings
        if _k.startswith("AWS_"):
            globals()[_k] = {{"true": True, "false": False}}.get(_v, _v)
    _storages = dict(globals().get("STORAGES") or {{
        "staticfiles": {{"BACKEND": globals().get("STATICFILES_STORAGE")
                        or "django.contrib.staticfiles.storage.StaticFilesStorage"}}}})
    _storages["default"] = {{"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {{}}}}
    _set("STORAGES", _storages, "default: S3 bucket " + _os.environ["AWS_STORAGE_BUCKET_NAME"] + " (media), served at /media/")
    globals().pop("DEFAULT_FILE_STORAGE", None)
    globals().pop("STATICFILES_STORAGE", None)
    _set("MEDIA_URL", "/media/", "media through the proxy")
elif _os.environ.get("MEDIA_ROOT"):
    _set("MEDIA_ROOT", _os.environ["MEDIA_ROOT"], "shared/media, kept across releases")
    _set("MEDIA_URL", "/media/", "media through the proxy")

if _env_list("ALLOWED_HOSTS"):
    _set("ALLOWED_HOSTS", _env_list("ALLOWED_HOSTS"), "the site's names and addresses")
if _env_list("CSRF_TRUSTED_ORIGINS"):
    _set("CSRF_TRUSTED_ORIGINS", _env_list("CSRF_TRUSTED_ORIGINS"), "the site's origins")
_set("SECURE_PROXY_SSL_HEADER", ("HTTP_X_FORWARDED_PROTO", "https"), "the proxy sends X-Forwarded-Proto")
if globals().get("DEBUG"):
    _set("DEBUG", False, "never on the cluster")
_key = str(globals().get("SECRET_KEY") or "")
if (not _key or _key.startswith("django-insecure")) and _os.environ.get("SECRET_KEY"):
    _set("SECRET_KEY", _os.environ["SECRET_KEY"], "the cluster's generated key (the project's was "
         + ("empty" if not _key else "a django-insecure one") + ")")
'''

_HEALTH_MIDDLEWARE = '''_set("MIDDLEWARE", [{health_module!r} + ".Health"] + [m for m in globals().get("MIDDLEWARE") or []
                                                     if m != {health_module!r} + ".Health"],
     "{health_path} answers first (database check, release id)")
'''

_HEALTH = '''\
"""whipup's health check for release {release} (written by whipup, not part of your repository): {health_path}
answers before any other middleware (no redirect, no host check): 200 once the database answers, else 503,
with the release and the project's settings module this process runs."""
import json
import os

from django.db import connections
from django.http import HttpResponse

PATH = {health_path!r}
RELEASE = {release!r}


class Health:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != PATH:
            return self.get_response(request)
        body = {{"status": "ok", "release": RELEASE, "database": "ok",
                "settings": os.environ.get("WHIPUP_PROJECT_SETTINGS", "")}}   # what this process runs
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception as exc:  # any database error is a 503, named
            body.update(status="error", database="{{}}: {{}}".format(type(exc).__name__, exc)[:300])
        response = HttpResponse(json.dumps(body), status=200 if body["status"] == "ok" else 503,
                                content_type="application/json")
        response["Cache-Control"] = "no-store"
        return response
'''


def settings_module(*, project: str, release: str, static_root: str, health_path: str, health: bool = True) -> str:
    """The text of whipup_settings.py for one release; `health`: with whipup's health middleware (not when
    roles.yaml's app.health_path names a view of the project's own)."""
    text = _SETTINGS.format(project=project, release=release, static_root=static_root)
    if health:
        text += _HEALTH_MIDDLEWARE.format(health_path=health_path, health_module=HEALTH_MODULE)
    return text


def health_module(*, release: str, health_path: str) -> str:
    return _HEALTH.format(release=release, health_path=health_path)
