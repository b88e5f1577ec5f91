"""What Django says in a release: the program (`deploy/scripts/django_facts.py`), its command, and its
one JSON line parsed."""
from __future__ import annotations

import json

from ..layout import Layout
from ..deploy.manage import python_stdin, script
from .errors import InspectError

SCRIPT = "django_facts"


def facts_command(layout: Layout, release_id: str, *, migrations: bool = False) -> tuple[str, str]:
    """(command, stdin): run django_facts.py in the release, as the app user, with its settings (and with
    `migrations`, the migrations the database lacks: a deploy skips migrate when there are none)."""
    return python_stdin(layout, release_id, ["--migrations"] if migrations else []), script(SCRIPT)


def parse_facts(stdout: str, where: str = "django_facts") -> dict:
    """The JSON object on the last non-empty line (the settings may print before it)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        facts = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        facts = None
    if not isinstance(facts, dict):
        raise InspectError(f"{where}: expected a JSON object on the last line, got {stdout.strip()[-200:]!r}")
    return facts
