"""PURE: `fab inspect`'s table: what was found and where, then (when given) the settings overlay's
overrides and what Django itself says in a release."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from .model import Project

HEADERS = ("what", "value", "where")


def render(rows: Iterable[Sequence[str]], headers: Sequence[str] = HEADERS) -> str:
    """Rows as plain text columns under `headers`, the last column unpadded; a newline in a cell is shown
    as `\\n`, so each row stays one line."""
    body = [[str(c).replace("\r", "\\r").replace("\n", "\\n") for c in row] for row in rows]
    table = [list(headers), ["-" * len(h) for h in headers]] + body
    widths = [max(len(r[i]) for r in table) for i in range(len(headers) - 1)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]).rstrip() for r in table)


def fact_rows(facts: Mapping[str, object], where: str) -> list[tuple[str, str, str]]:
    """What Django says (django_facts' JSON) as rows: nested values flattened to `a.b`."""
    rows: list[tuple[str, str, str]] = []

    def add(key: str, value: object) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                add(f"{key}.{k}", v)
        elif isinstance(value, (list, tuple)):
            rows.append((key, ", ".join(map(str, value)) or "(none)", where))
        else:
            rows.append((key, "-" if value is None else str(value), where))

    for k, v in facts.items():
        add(k, v)
    return rows


def inspect_table(project: Project, overrides: Iterable[Sequence[str]] = (),
                  facts: Mapping[str, object] | None = None, facts_where: str = "Django in the release") -> str:
    """The table `fab inspect` prints: the project, the overlay's overrides (setting, value, why) and, once a
    release has a venv, what Django says."""
    parts = [render(project.findings)]
    overrides = list(overrides)
    if overrides:
        parts.append("settings overlay (whipup_settings.py):\n" + render(overrides, ("setting", "value", "why")))
    if facts is not None:
        parts.append("what Django says:\n" + render(fact_rows(facts, facts_where), ("setting", "value", "where")))
    return "\n\n".join(parts)
