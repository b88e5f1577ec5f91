"""What Django itself makes of the settings, run in a release: one JSON line on stdout.

The settings module, DEBUG, the default database (engine, host, port, name: never the password), static
and media settings, the storage backends, the host and proxy settings, the INSTALLED_APPS that change how a
deploy goes, whether the staticfiles finders find any file, and WHIPUP_OVERRIDES if the settings define it.
With --migrations, also the migrations the database lacks ("pending", as migrate would apply them) and the
apps with models but no migrations ("unmigrated": migrate creates their tables), or the error asking it.
"""
import json
import os
import sys

import django

django.setup()

from django.conf import settings  # noqa: E402  (after setup)

NOTABLE = ("wagtail", "celery", "django_celery_beat", "django_celery_results", "storages", "whitenoise",
           "django.contrib.admin", "django.contrib.staticfiles")


def notable(app):
    return any(app == n or app.startswith(n + ".") or app.startswith(n + "_") for n in NOTABLE)


def storages():
    configured = getattr(settings, "STORAGES", None)
    if isinstance(configured, dict) and configured:
        return {alias: conf.get("BACKEND") for alias, conf in configured.items()}
    return {"default": getattr(settings, "DEFAULT_FILE_STORAGE", None),
            "staticfiles": getattr(settings, "STATICFILES_STORAGE", None)}


def has_static():
    if "django.contrib.staticfiles" not in settings.INSTALLED_APPS:
        return None
    from django.contrib.staticfiles import finders

    for finder in finders.get_finders():
        for _path, _storage in finder.list([]):
            return True
    return False


def migrations():
    from django.apps import apps
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        unmigrated = sorted(label for label in executor.loader.unmigrated_apps
                            if any(True for _ in apps.get_app_config(label).get_models()))
    except Exception as exc:  # the database unreachable, say: migrate then runs and says why
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"pending": [[m.app_label, m.name] for m, _backwards in plan], "unmigrated": unmigrated}


def text(value):
    return None if value is None else str(value)


db = settings.DATABASES.get("default", {})
facts = {
    "settings": os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(settings, "SETTINGS_MODULE", None),
    "django": django.get_version(),
    "debug": bool(settings.DEBUG),
    "database": {"engine": db.get("ENGINE"), "host": text(db.get("HOST")) or None,
                 "port": text(db.get("PORT")) or None, "name": text(db.get("NAME"))},
    "static_url": settings.STATIC_URL,
    "static_root": text(settings.STATIC_ROOT),
    "media_url": settings.MEDIA_URL,
    "media_root": text(settings.MEDIA_ROOT) or None,
    "storages": storages(),
    "allowed_hosts": list(settings.ALLOWED_HOSTS),
    "csrf_trusted_origins": list(getattr(settings, "CSRF_TRUSTED_ORIGINS", [])),
    "secure_ssl_redirect": bool(getattr(settings, "SECURE_SSL_REDIRECT", False)),
    "secure_proxy_ssl_header": list(settings.SECURE_PROXY_SSL_HEADER or []) or None,
    "installed_apps": [a for a in settings.INSTALLED_APPS if notable(a)],
    "has_static": has_static(),
    "whipup_overrides": getattr(settings, "WHIPUP_OVERRIDES", None),
}
if "--migrations" in sys.argv[1:]:
    facts["migrations"] = migrations()
sys.stdout.write(json.dumps(facts, default=str, sort_keys=False) + "\n")
