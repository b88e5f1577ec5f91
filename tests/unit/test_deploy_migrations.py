"""Rollback's migration checks, run for real on the demo app with SQLite: what the target lacks, undoing it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fabfile.deploy.manage import script
from fabfile.deploy.rollback import migrate_back_args

MIGRATIONS_MISSING = script("migrations_missing")
MIGRATE_BACK = script("migrate_back")

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
pytest.importorskip("django")

ADD_FIELD = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AddField("note", "done", models.BooleanField(default=False))]
'''
IRREVERSIBLE = '''from django.db import migrations


def forwards(apps, schema_editor):
    pass


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_note_done")]
    operations = [migrations.RunPython(forwards)]
'''


@pytest.fixture
def releases(tmp_path):
    target, current = tmp_path / "target", tmp_path / "current"
    ignore = shutil.ignore_patterns("__pycache__", "db.sqlite3", "static_collected")
    shutil.copytree(DEMO, target, ignore=ignore)
    shutil.copytree(DEMO, current, ignore=ignore)
    (current / "notes" / "migrations" / "0002_note_done.py").write_text(ADD_FIELD)
    env = {**os.environ, "DB_ENGINE": "sqlite", "DB_NAME": str(tmp_path / "db.sqlite3"), "DJANGO_DEBUG": "true",
           "DJANGO_SETTINGS_MODULE": "demo.settings", "CELERY_TASK_ALWAYS_EAGER": "true"}
    env.pop("WHIPUP_ENV_FILE", None)
    return target, current, env


def py(cwd: Path, env: dict, script: str, *, migrate: bool = False, args: list[str] = ()) -> subprocess.CompletedProcess:
    """The script on stdin with `args` as its argv, in `cwd` (as manage.python_stdin runs it on a host)."""
    argv = [sys.executable, "-m", "django", "migrate", "--noinput"] if migrate else [sys.executable, "-", *args]
    return subprocess.run(argv, cwd=cwd, env=env, input=None if migrate else script, capture_output=True,
                          text=True, timeout=120)


def last_json(p: subprocess.CompletedProcess) -> dict:
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_applied_migrations_the_target_lacks_then_undone(releases):
    target, current, env = releases
    assert py(current, env, "", migrate=True).returncode == 0
    found = last_json(py(target, env, MIGRATIONS_MISSING))
    assert found == {"missing": [["notes", "0002_note_done"]], "leaves": {"notes": "0001_initial"}}
    back = py(current, env, MIGRATE_BACK, args=migrate_back_args([("notes", "0001_initial")]))
    assert back.returncode == 0, back.stderr
    assert last_json(back) == {"undone": ["notes.0002_note_done"]}
    assert last_json(py(target, env, MIGRATIONS_MISSING))["missing"] == []


def test_irreversible_migrations_are_refused_before_anything_is_undone(releases):
    target, current, env = releases
    (current / "notes" / "migrations" / "0003_irreversible.py").write_text(IRREVERSIBLE)
    assert py(current, env, "", migrate=True).returncode == 0
    back = py(current, env, MIGRATE_BACK, args=migrate_back_args([("notes", "0001_initial")]))
    assert back.returncode == 3
    result = last_json(back)
    assert result["irreversible"] == ["notes.0003_irreversible: Raw Python operation"]
    assert result["undo"] == ["notes.0003_irreversible", "notes.0002_note_done"]
    # nothing was undone
    assert {tuple(k) for k in last_json(py(target, env, MIGRATIONS_MISSING))["missing"]} == {
        ("notes", "0002_note_done"), ("notes", "0003_irreversible")}
