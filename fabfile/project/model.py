"""PURE: what inspection found: a frozen `Project` and its findings (what, value, where)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .deps import Dependencies

class Finding(NamedTuple):
    what: str       # settings, wsgi, requirements, ...
    value: str      # what was found ("-" for nothing)
    where: str      # `manage.py:9 ...` or `roles.yaml app.<key>`


@dataclass(frozen=True)
class Project:
    root: str                                   # the directory holding manage.py ("" or "src", ...)
    settings: str                               # the settings module deploys use
    wsgi: str                                   # gunicorn's module:callable
    requirements: Dependencies
    procfile: tuple[tuple[str, str], ...]       # (process type, command), in the Procfile's order
    release_command: str | None
    celery_app: str | None
    python: str | None                          # a version constraint like >=3.12
    findings: tuple[Finding, ...]

    def process(self, kind: str) -> str | None:
        """The Procfile's command for a process type (web, worker, release), if any."""
        return dict(self.procfile).get(kind)

    def path(self, name: str) -> str:
        """A path relative to the Django root, as a path relative to the app's directory."""
        return f"{self.root}/{name}" if self.root else name
