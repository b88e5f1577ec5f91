"""The example Django app (examples/demo) that whipup deploys works on its own.

Each test runs the app's manage.py in a subprocess, in a copy of examples/demo
(so nothing is written into the source tree and the app must be self-contained),
against SQLite. The app's dependencies must already be importable in this
interpreter: this test installs nothing, it skips instead.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"
REQUIRED_MODULES = ("django", "celery")

_missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=(
        f"example app dependencies not importable: {', '.join(_missing)} "
        f"(pip install -r {DEMO_DIR.relative_to(DEMO_DIR.parents[1])}/requirements.txt)"
    ),
)

# Variables the app reads: never let the caller's environment leak into a run.
_APP_PREFIXES = ("DJANGO_", "DB_", "CELERY_", "WHIPUP_", "STATIC_ROOT", "MEDIA_ROOT", "DATABASE_URL")


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("demo-app") / "demo"
    shutil.copytree(
        DEMO_DIR,
        dest,
        ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "db.sqlite3", "static_collected", "media", ".env"
        ),
    )
    return dest


@pytest.fixture
def app_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_PREFIXES)}
    env.update(
        DB_ENGINE="sqlite",
        DB_NAME=str(tmp_path / "db.sqlite3"),
        DJANGO_SECRET_KEY="test",
        STATIC_ROOT=str(tmp_path / "static"),
        MEDIA_ROOT=str(tmp_path / "media"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def run(app_dir: Path, env: dict[str, str], *args: str, check: bool = True):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def test_app_test_suite_passes(app_dir, app_env):
    proc = run(app_dir, app_env, "manage.py", "test", "--noinput", "-v", "2")
    # unittest reports on stderr: make sure the suite really ran its tests.
    assert "\nOK" in proc.stderr
    for name in (
        "test_lists_rows_and_uses_the_stylesheet",
        "test_ok_with_database",
        "test_503_when_database_is_broken",
        "test_post_adds_a_row_and_redirects",
        "test_add_note_task_creates_a_note",
    ):
        assert f"{name} " in proc.stderr, f"{name} did not run"


def test_system_check(app_dir, app_env):
    proc = run(app_dir, app_env, "manage.py", "check", "--fail-level", "WARNING")
    assert "no issues" in proc.stdout


def test_no_missing_migrations(app_dir, app_env):
    run(app_dir, app_env, "manage.py", "makemigrations", "--check", "--dry-run")


def test_collectstatic(app_dir, app_env):
    run(app_dir, app_env, "manage.py", "collectstatic", "--noinput")
    css = Path(app_env["STATIC_ROOT"]) / "notes" / "site.css"
    assert css.is_file()
    assert css.read_bytes() == (DEMO_DIR / "notes" / "static" / "notes" / "site.css").read_bytes()


_WSGI_PROBE = """
import io, json, sys
from wsgiref.util import setup_testing_defaults
from demo.wsgi import application

out = {}
for path in sys.argv[1:]:
    environ = {"PATH_INFO": path, "HTTP_HOST": "demo.example"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(application(environ, lambda s, h, exc_info=None: status.append(s)))
    out[path] = [int(status[0].split()[0]), body.decode()]
print(json.dumps(out))
"""


def test_migrate_enqueue_and_serve_through_wsgi(app_dir, app_env):
    """migrate a real database, run the task via the command, serve it with the WSGI app."""
    app_env = dict(app_env, WHIPUP_RELEASE="20260101-000000", CELERY_TASK_ALWAYS_EAGER="true")
    run(app_dir, app_env, "manage.py", "migrate", "--noinput")
    proc = run(app_dir, app_env, "manage.py", "enqueue_note", "note from the worker")
    assert "queued add_note task" in proc.stdout

    proc = run(app_dir, app_env, "-c", _WSGI_PROBE, "/health", "/")
    pages = json.loads(proc.stdout)
    status, body = pages["/health"]
    assert status == 200
    assert json.loads(body) == {"status": "ok", "db": "ok", "release": "20260101-000000"}
    status, body = pages["/"]
    assert status == 200
    assert "note from the worker" in body
    assert "/static/notes/site.css" in body
    assert "20260101-000000" in body


def test_settings_read_whipup_env_file(app_dir, app_env, tmp_path):
    env_file = tmp_path / "shared.env"
    env_file.write_text(
        "# written by whipup\n"
        "WHIPUP_RELEASE=from-env-file\n"
        "DJANGO_ALLOWED_HOSTS=a.example, b.example\n"
        "CELERY_BROKER_URL='redis://broker.invalid:6379/1'\n"
        "DJANGO_SECRET_KEY=from-file\n"
    )
    env_file.chmod(0o600)
    app_env = dict(app_env, WHIPUP_ENV_FILE=str(env_file))
    code = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps([s.WHIPUP_RELEASE, s.ALLOWED_HOSTS, s.CELERY_BROKER_URL, s.SECRET_KEY]))"
    )
    proc = run(app_dir, app_env, "manage.py", "shell", "-c", code)
    # Django 5.2's shell first says what it imported automatically: the JSON is the last line
    release, hosts, broker, secret = json.loads(proc.stdout.strip().splitlines()[-1])
    assert release == "from-env-file"
    assert hosts == ["a.example", "b.example"]
    assert broker == "redis://broker.invalid:6379/1"
    assert secret == "test"  # the environment wins over the file


def test_secret_key_required_unless_debug(app_dir, app_env):
    del app_env["DJANGO_SECRET_KEY"]
    proc = run(app_dir, app_env, "manage.py", "check", check=False)
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in proc.stderr

    run(app_dir, dict(app_env, DJANGO_DEBUG="true"), "manage.py", "check")
