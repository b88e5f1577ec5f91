"""quick-update's questions: flags answer them, --yes takes defaults, no terminal never hangs."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from invoke import Context, Exit

from fabfile.deploy import tasks
from fabfile.deploy.errors import AnswerMissing
from fabfile.deploy.prompts import Answers, resolve

ROOT = Path(__file__).resolve().parents[2]
WHY = "requirements.txt changed since release 20240131120000-1a2b3c4"


def never(_question):
    raise AssertionError("asked a question")


def answers(replies):
    asked = []

    def ask(question):
        asked.append(question)
        return replies.pop(0)

    return ask, asked


def kw(**over):
    base = dict(component=None, deps=None, upgrade_django=None, yes=False, interactive=False, ask=never,
                deps_default=True, deps_why=WHY, django_spec="Django>=4.2,<5.1", django_installed="5.0.1")
    base.update(over)
    return base


def test_flags_answer_everything_without_a_terminal():
    assert resolve(**kw(component="web", deps=False, upgrade_django=False)) == Answers("web", False, False)
    assert resolve(**kw(component="workers", deps=True, upgrade_django=True)) == Answers("workers", True, True)


def test_yes_takes_the_defaults():
    assert resolve(**kw(yes=True)) == Answers("all", True, False)
    assert resolve(**kw(yes=True, deps_default=False, component="web")) == Answers("web", False, False)


@pytest.mark.parametrize("given, flag", [
    ({}, "--component web|workers|all"),
    ({"component": "web"}, "--deps or --no-deps"),
    ({"component": "web", "deps": True}, "--upgrade-django or --no-upgrade-django"),
])
def test_no_terminal_and_a_missing_answer_names_its_flag(given, flag):
    with pytest.raises(AnswerMissing) as info:
        resolve(**kw(**given))
    assert f"pass {flag} (or --yes to take the defaults)" in str(info.value)
    assert str(info.value).startswith("quick-update: no terminal to ask")


def test_the_deps_question_says_why_and_defaults_to_it():
    ask, asked = answers(["", "", ""])
    assert resolve(**kw(interactive=True, ask=ask)) == Answers("all", True, False)
    assert asked == [
        "Update which component: web (app nodes), workers (celery) or all? [web/workers/all] (all): ",
        f"Reinstall dependencies? ({WHY}) [Y/n]: ",
        "Upgrade Django within 'Django>=4.2,<5.1', installed: 5.0.1? [y/N]: ",
    ]
    ask, asked = answers(["workers", "n", "y"])
    assert resolve(**kw(interactive=True, ask=ask, deps_default=False, deps_why="unchanged")) == \
        Answers("workers", False, True)
    assert "[y/N]" in asked[1]


def test_bad_answers_are_asked_again(capsys):
    ask, asked = answers(["cache", "web", "maybe", "y", "n"])
    assert resolve(**kw(interactive=True, ask=ask)) == Answers("web", True, False)
    assert len(asked) == 5
    assert "please answer one of: web, workers, all" in capsys.readouterr().out


def test_unknown_component_is_refused():
    with pytest.raises(AnswerMissing,
                       match=r"--component: unknown component 'cache' \(expected one of: web, workers, all\)"):
        resolve(**kw(component="cache", yes=True))


def test_no_django_requirement_means_no_question():
    assert resolve(**kw(component="web", deps=True, django_spec=None)).upgrade_django is False


@pytest.fixture
def no_cloud(monkeypatch):
    monkeypatch.setattr(tasks, "open_cloud", lambda *a, **k: pytest.fail("cloud opened"))


def test_task_without_terminal_fails_before_contacting_anything(roles_file, no_cloud, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(Exit) as info:
        tasks.quick_update(Context(), config=str(roles_file))
    assert info.value.code == 1
    assert "--component web|workers|all" in info.value.message
    with pytest.raises(Exit, match="--deps or --no-deps"):
        tasks.quick_update(Context(), component="web", config=str(roles_file))
    with pytest.raises(Exit, match="unknown component 'db'"):
        tasks.quick_update(Context(), component="db", yes=True, config=str(roles_file))
    with pytest.raises(Exit, match="--deps and --no-deps contradict"):
        tasks.quick_update(Context(), component="web", deps=True, no_deps=True, config=str(roles_file))


def test_fab_quick_update_with_stdin_closed_exits_at_once(roles_file):
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "fabric", "quick-update", "--config", str(roles_file)], cwd=ROOT,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "no terminal to ask 'which component (web, workers, all)?'; pass --component web|workers|all" in p.stderr
    assert time.monotonic() - start < 30
