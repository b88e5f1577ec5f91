"""The settings overlay and the launcher, run for real: a project made by `django-admin startproject` at test
time, the overlay's modules written beside it as a deploy writes them, Django set up with them; the launcher
run by sh over a temp /srv."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabfile.deploy import overlay, runtime
from fabfile.layout import Layout, env_file_text

RID = "20261201120000-abcdef1"
BIN = Path(sys.executable).parent
FACTS = ("import json, django; django.setup(); from django.conf import settings as s; "
         "print(json.dumps({'db': s.DATABASES['default'], 'static': str(s.STATIC_ROOT), 'hosts': s.ALLOWED_HOSTS, "
         "'debug': s.DEBUG, 'key': s.SECRET_KEY, 'mw': s.MIDDLEWARE[0], 'storages': s.STORAGES, "
         "'proxy': list(s.SECURE_PROXY_SSL_HEADER), 'overrides': [n for n, _ in s.WHIPUP_OVERRIDES]}, default=str))")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("overlay") / "site"
    root.mkdir()
    subprocess.run([str(BIN / "django-admin"), "startproject", "mysite", "."], cwd=root, check=True)
    files = runtime.release_files(Layout("demo", "demo.settings", "requirements.txt"), RID, runtime.AppRuntime("mysite.settings", "mysite.wsgi:application"))
    for path, (text, _) in files.items():
        if path.endswith(".py") and "/releases/" in f"/{path}":
            (root / Path(path).name).write_text(text)
    return root


def django(root: Path, code: str, **env) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE", "AWS_"))}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                         env={**base, "DJANGO_SETTINGS_MODULE": overlay.SETTINGS_MODULE, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


CLUSTER = {"DATABASE_URL": "postgres://mysite:p%40ss@10.0.0.20:5432/mysite", "SECRET_KEY": "k" * 50,
           "ALLOWED_HOSTS": "172.31.0.5,10.0.0.4", "CSRF_TRUSTED_ORIGINS": "http://172.31.0.5"}


def test_an_unchanged_startproject_runs_on_the_clusters_database_and_names(project):
    got = django(project, FACTS, **CLUSTER)
    db = got["db"]
    assert (db["ENGINE"], db["HOST"], db["NAME"], db["USER"], db["PASSWORD"], db["PORT"]) == (
        "django.db.backends.postgresql", "10.0.0.20", "mysite", "mysite", "p@ss", "5432")
    assert got["static"] == f"/srv/demo/releases/{RID}/static"
    assert got["hosts"] == ["172.31.0.5", "10.0.0.4"] and got["debug"] is False and got["key"] == "k" * 50
    assert got["mw"] == "whipup_health.Health" and got["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert {"DATABASES", "INSTALLED_APPS", "STATIC_ROOT", "ALLOWED_HOSTS", "DEBUG", "SECRET_KEY", "MIDDLEWARE"} <= set(
        got["overrides"])   # INSTALLED_APPS: django.contrib.postgres, now that the database is PostgreSQL
    assert got["storages"]["default"]["BACKEND"].endswith("FileSystemStorage")   # no bucket: MEDIA_ROOT


def test_media_goes_to_the_bucket_through_django_storages_settings(project):
    got = django(project, FACTS + "; print(json.dumps({'bucket': s.AWS_STORAGE_BUCKET_NAME, 'auth': s.AWS_QUERYSTRING_AUTH}))",
                 **CLUSTER, AWS_STORAGE_BUCKET_NAME="anyp-media", AWS_QUERYSTRING_AUTH="false")
    assert got == {"bucket": "anyp-media", "auth": False}


def test_a_database_the_project_already_reads_from_the_environment_is_left_alone(project, tmp_path):
    settings = project / "mysite" / "settings.py"
    own = tmp_path / "own"
    (own / "mysite").mkdir(parents=True)
    for f in (project / "mysite").iterdir():
        if f.is_file():
            (own / "mysite" / f.name).write_text(f.read_text())
    for f in ("whipup_settings.py", "whipup_health.py", "manage.py"):
        (own / f).write_text((project / f).read_text())
    (own / "mysite" / "settings.py").write_text(settings.read_text() + (
        "\nDATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', 'NAME': 'mysite', "
        "'HOST': '10.0.0.20', 'CONN_MAX_AGE': 600}}\n"))
    got = django(own, FACTS, **CLUSTER)
    assert got["db"]["CONN_MAX_AGE"] == 600 and "DATABASES" not in got["overrides"]


def test_the_health_path_answers_before_an_ssl_redirect_and_names_the_release(project, tmp_path):
    db = tmp_path / "db.sqlite3"
    code = ("import json, django; django.setup(); from django.test import Client; "
            "r = Client().get('/-/health', HTTP_HOST='10.0.0.4:8000'); "
            "p = Client().get('/', HTTP_HOST='10.0.0.4:8000'); "
            "print(json.dumps({'code': r.status_code, 'body': json.loads(r.content), 'page': p.status_code}))")
    got = django(project, code, **{**CLUSTER, "DATABASE_URL": f"sqlite:///{db}",
                                   "WHIPUP_PROJECT_SETTINGS": "mysite.settings"})
    assert got["code"] == 200 and got["body"] == {"status": "ok", "release": RID, "database": "ok",
                                                  "settings": "mysite.settings"}
    assert got["page"] == 404      # startproject has no page at /: the project's own answer, untouched


def test_the_launcher_loads_both_env_files_the_venv_and_the_django_root(tmp_path):
    layout = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path))
    rel = Path(layout.release(RID))
    (rel / ".whipup").mkdir(parents=True)
    (rel / ".venv" / "bin").mkdir(parents=True)
    (rel / "src").mkdir()
    Path(layout.shared).mkdir(parents=True)
    Path(layout.env_file).write_text(env_file_text({"A": "x; whoami", "B": "it's"}))
    (rel / runtime.RELEASE_ENV).write_text(env_file_text({"WHIPUP_DJANGO_ROOT": "src", "B": "release's"}))
    for name, (text, mode) in runtime.runtime_files(layout).items():
        Path(layout.shared, name).write_text(text)
        Path(layout.shared, name).chmod(mode)
    out = subprocess.run(["/bin/sh", layout.launcher, str(rel), "sh", "-c",
                          'printf "%s|%s|%s|%s\\n" "$A" "$B" "$PWD" "${PATH%%:*}"'],
                         capture_output=True, text=True, check=True).stdout
    assert out == f"x; whoami|release's|{rel}/src|{rel}/.venv/bin\n"


GUNICORN_PROBE = """import os, sys
conf = {}
exec(open(sys.argv[2]).read(), conf)
print(json.dumps({'argv': sys.argv[3:], 'cwd': os.getcwd(), 'wsgi': conf['wsgi_app'], 'chdir': conf['chdir'],
                  'B': os.environ['B'], 'workers': conf['workers']}))
"""


def test_a_slot_runs_gunicorn_on_the_release_its_link_names_with_that_releases_env(tmp_path):
    """whipup-exec slots/a web: gunicorn's settings read the slot's release (WHIPUP_RELEASE_DIR), not `current`."""
    layout = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path))
    Path(layout.shared).mkdir(parents=True)
    Path(layout.env_file).write_text(env_file_text({"B": "shared", "WEB_CONCURRENCY": "2"}))
    for rid, wsgi in ((RID, "new.wsgi:application"), ("20261101120000-1234567", "old.wsgi:application")):
        rel = Path(layout.release(rid))
        (rel / ".whipup").mkdir(parents=True)
        (rel / ".venv" / "bin").mkdir(parents=True)
        (rel / ".venv" / "bin" / "python").symlink_to(sys.executable)
        (rel / ".venv" / "bin" / "gunicorn").write_text("import json\n" + GUNICORN_PROBE)
        (rel / runtime.RELEASE_ENV).write_text(env_file_text({"WHIPUP_DJANGO_ROOT": "src", "WHIPUP_WSGI": wsgi,
                                                              "B": f"release {rid}"}))
    for name, (text, mode) in runtime.runtime_files(layout).items():
        Path(layout.shared, name).write_text(text)
        Path(layout.shared, name).chmod(mode)
    Path(layout.slots_dir).mkdir()
    Path(layout.slot("a")).symlink_to(layout.release(RID))
    Path(layout.current).symlink_to(layout.release("20261101120000-1234567"))     # `current` is another one
    out = subprocess.run(["/bin/sh", layout.launcher, layout.slot("a"), "web", "--bind", "10.0.0.10:8000"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"argv": ["--bind", "10.0.0.10:8000"], "cwd": layout.root, "wsgi": "new.wsgi:application",
                               "chdir": f"{layout.slot('a')}/src", "B": f"release {RID}", "workers": 2}
