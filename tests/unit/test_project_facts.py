"""What Django says: django_facts.py run for real in projects made by django-admin startproject and wagtail
start; its command, its parsing, and fab inspect's table."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fabfile.deploy.manage import script
from fabfile.layout import Layout
from fabfile.project.detect import inspect_tree
from fabfile.project.errors import InspectError
from fabfile.project.facts import facts_command, parse_facts
from fabfile.project.table import inspect_table, render
from project_trees import app, hand, minimal, startproject, wagtail_start


def facts_of(project_dir, settings: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    p = subprocess.run([sys.executable, "-"], input=script("django_facts"), cwd=project_dir, text=True,
                       capture_output=True, timeout=120, env={**env, "DJANGO_SETTINGS_MODULE": settings})
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 1
    return parse_facts(p.stdout)


@pytest.fixture(scope="module")
def django_project(tmp_path_factory):
    return startproject(tmp_path_factory.mktemp("facts") / "django")


def test_startproject_as_django_sees_it(django_project):
    f = facts_of(django_project, "mysite.settings")
    assert f["settings"] == "mysite.settings" and f["debug"] is True and f["django"].startswith("5.")
    assert f["database"] == {"engine": "django.db.backends.sqlite3", "host": None, "port": None,
                             "name": str(django_project / "db.sqlite3")}
    assert (f["static_url"], f["static_root"], f["media_url"], f["media_root"]) == ("/static/", None, "/", None)
    assert f["storages"] == {"default": "django.core.files.storage.FileSystemStorage",
                             "staticfiles": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    assert f["allowed_hosts"] == [] and f["csrf_trusted_origins"] == [] and f["secure_ssl_redirect"] is False
    assert f["secure_proxy_ssl_header"] is None and f["whipup_overrides"] is None
    assert f["installed_apps"] == ["django.contrib.admin", "django.contrib.staticfiles"]
    assert f["has_static"] is True       # the admin's own static files


def test_a_password_never_leaves_and_overrides_are_reported(django_project):
    (django_project / "live_settings.py").write_text(
        "from mysite.settings import *\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', 'HOST': '10.0.0.20', 'PORT': 5432,\n"
        "             'NAME': 'shop', 'USER': 'shop', 'PASSWORD': 's3cret-pw'}}\n"
        "STATIC_ROOT = '/srv/shop/static'\nSECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https')\n"
        "INSTALLED_APPS = [a for a in INSTALLED_APPS if a != 'django.contrib.staticfiles']\n"
        "WHIPUP_OVERRIDES = ['DATABASES', 'STATIC_ROOT']\n"
        "print('settings chatter')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    p = subprocess.run([sys.executable, "-"], input=script("django_facts"), cwd=django_project, text=True,
                       capture_output=True, timeout=120, env={**env, "DJANGO_SETTINGS_MODULE": "live_settings"})
    assert p.returncode == 0, p.stderr
    assert "s3cret-pw" not in p.stdout + p.stderr
    f = parse_facts(p.stdout)      # the settings' own print comes first: the last line is the JSON
    assert f["database"] == {"engine": "django.db.backends.postgresql", "host": "10.0.0.20", "port": "5432",
                             "name": "shop"}
    assert f["static_root"] == "/srv/shop/static" and f["whipup_overrides"] == ["DATABASES", "STATIC_ROOT"]
    assert f["secure_proxy_ssl_header"] == ["HTTP_X_FORWARDED_PROTO", "https"] and f["has_static"] is None


def test_wagtail_start_production_settings(tmp_path):
    project = wagtail_start(tmp_path / "wagtail")
    f = facts_of(project, "wsite.settings.production")
    assert f["settings"] == "wsite.settings.production" and f["debug"] is False
    assert f["static_root"] == str(project / "static") and f["media_root"] == str(project / "media")
    assert "wagtail" in f["installed_apps"] and "wagtail.admin" in f["installed_apps"]
    assert f["has_static"] is True
    assert f["storages"]["staticfiles"] == "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"


def test_parse_facts_takes_the_last_line_and_names_what_it_got():
    assert parse_facts('hello\n{"debug": false}\n\n') == {"debug": False}
    with pytest.raises(InspectError, match=r"app-0 django_facts: expected a JSON object on the last line, "
                                           r"got 'Traceback"):
        parse_facts("Traceback (most recent call last):\n  boom\n", "app-0 django_facts")
    with pytest.raises(InspectError):
        parse_facts("[1, 2]\n")


def test_facts_command_runs_the_program_on_stdin_in_the_release():
    layout = Layout("shop", "shop.settings", "requirements.txt")
    command, stdin = facts_command(layout, "20250101120000-abcdef1")
    assert stdin == script("django_facts") and "django.setup()" in stdin
    assert "/srv/shop/releases/20250101120000-abcdef1" in command and command.count(" python -") == 1
    with pytest.raises(ValueError):
        facts_command(layout, "x; whoami")


def test_the_table_shows_what_where_and_then_overrides_and_facts():
    tree = minimal(Procfile="web: gunicorn shop.wsgi\n")
    project = inspect_tree(*hand(tree), app())
    text = inspect_table(project, overrides=[("DATABASES", "from DATABASE_URL", "db role")],
                         facts={"debug": False, "database": {"engine": "postgresql", "host": None},
                                "installed_apps": ["wagtail"], "allowed_hosts": []}, facts_where="app-0 release R")
    lines = text.splitlines()
    assert lines[0].split() == ["what", "value", "where"]
    assert lines[2].split() == ["root", ".", "manage.py"]
    assert "settings         shop.settings          manage.py:6 default" in lines
    assert "procfile web     gunicorn shop.wsgi     Procfile" in lines
    assert "settings overlay (whipup_settings.py):" in text and "DATABASES  from DATABASE_URL  db role" in text
    assert "database.engine  postgresql  app-0 release R" in text and "database.host    -" in text
    assert "allowed_hosts    (none)" in text and "installed_apps   wagtail" in text
    # every column starts at one offset, whatever the values' lengths
    offset = lines[0].index("where")
    first = lines[2:lines.index("")]
    assert len(first) == 8 and all(line[offset - 2:offset] == "  " and line[offset] != " " for line in first)
    assert render([("a", "x\ny", "z")]).splitlines()[2] == "a     x\\ny   z"


def test_the_json_line_holds_only_what_json_can(django_project):
    """Paths (STATIC_ROOT as a Path, as startproject's BASE_DIR makes them) come out as strings."""
    (django_project / "path_settings.py").write_text("from mysite.settings import *\nSTATIC_ROOT = BASE_DIR / 's'\n")
    f = facts_of(django_project, "path_settings")
    assert f["static_root"] == str(django_project / "s")
    json.dumps(f)


def test_with_migrations_it_lists_what_the_database_lacks_until_migrate(tmp_path):
    """--migrations: the startproject's migrations all pending on a new SQLite file, none once migrated
    (what lets a deploy skip migrate); the admin's, auth's... apps all have migrations."""
    project = startproject(tmp_path / "django")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"

    def facts() -> dict:
        p = subprocess.run([sys.executable, "-", "--migrations"], input=script("django_facts"), cwd=project,
                           text=True, capture_output=True, timeout=120, env=env)
        assert p.returncode == 0, p.stderr
        return parse_facts(p.stdout)

    before = facts()["migrations"]
    assert ["auth", "0001_initial"] in before["pending"] and before["unmigrated"] == []
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=project, env=env, check=True,
                   capture_output=True, timeout=300)
    assert facts()["migrations"] == {"pending": [], "unmigrated": []}
    assert "migrations" not in facts_of(project, "mysite.settings")      # only when asked


def test_the_deploy_asks_for_migrations_with_the_facts():
    command, _ = facts_command(Layout("demo", "demo.settings", "requirements.txt"), "20240131120000-1a2b3c4",
                               migrations=True)
    assert command.endswith("python - --migrations'")
