"""Read settings from the environment, and optionally from a KEY=VALUE file.

The file format is the one whipup writes to /srv/demo/shared/.env: one
KEY=VALUE per line, blank lines and `#` comments ignored, an optional leading
`export `, and values optionally wrapped in matching single or double quotes
(read as sh reads them: whipup quotes each value with shlex.quote).
"""
import os
import shlex
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def parse_env_file(path):
    """Return the KEY=VALUE pairs of *path* as a dict."""
    values = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export "):].lstrip()
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key.isidentifier():
                raise ImproperlyConfigured(f"{path}:{lineno}: expected KEY=VALUE")
            if value[:1] in ("'", '"'):
                value = "".join(shlex.split(value))   # sh quoting, as whipup writes it
            values[key] = value
    return values


def load_env_file(path, environ=os.environ):
    """Add the file's variables to *environ*; variables already set win."""
    for key, value in parse_env_file(path).items():
        environ.setdefault(key, value)


def get_bool(name, default=False):
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean")


def get_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def get_int(name, default):
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def database_from_url(url, options=None):
    """A DATABASES entry from a twelve-factor DATABASE_URL (postgres://user:pw@host:port/name, sqlite:///path)."""
    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "sqlite3"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path[1:] or ":memory:")}
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ImproperlyConfigured(f"DATABASE_URL: unsupported scheme {parts.scheme!r} (postgres or sqlite)")
    return {"ENGINE": "django.db.backends.postgresql", "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""), "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "", "PORT": parts.port or 5432, **({"OPTIONS": options} if options else {})}
