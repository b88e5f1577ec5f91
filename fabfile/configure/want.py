"""PURE: what a host should be, as frozen dataclasses: `Desired` and its parts.

`desired.desired_state` builds one per node from roles.yaml; `plan.make_plan`
compares it with the host's `Facts`.  `Desired.facts_request` names what the
facts command must read for that comparison.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Mapping

from .facts import HOST_VALUES, FactsRequest


@dataclass(frozen=True)
class DesiredFile:
    path: str
    content: str
    owner: str
    group: str
    mode: str                  # "0644"
    notify: str | None = None  # service it triggers
    action: str = "restart"    # reload | restart
    src: str = ""              # the template it came from

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DesiredDir:
    path: str
    owner: str
    group: str
    mode: str


@dataclass(frozen=True)
class DesiredLink:
    path: str
    target: str
    notify: str | None = None
    action: str = "reload"


@dataclass(frozen=True)
class DesiredAbsent:
    path: str
    notify: str | None = None
    action: str = "reload"


@dataclass(frozen=True)
class DesiredUser:
    name: str
    home: str
    shell: str


@dataclass(frozen=True)
class DesiredPostgres:
    role: str
    database: str
    password: str | None       # None: not known (dry run before it exists): always "would set"


@dataclass(frozen=True)
class Desired:
    packages: tuple[str, ...] = ()
    user: DesiredUser | None = None
    dirs: tuple[DesiredDir, ...] = ()
    files: tuple[DesiredFile, ...] = ()
    links: tuple[DesiredLink, ...] = ()
    absent: tuple[DesiredAbsent, ...] = ()
    services: tuple[str, ...] = ()
    postgres: DesiredPostgres | None = None
    apt_max_age: int = 24 * 3600   # seconds

    def facts_request(self) -> FactsRequest:
        paths = [d.path for d in self.dirs] + [f.path for f in self.files] + \
                [link.path for link in self.links] + [a.path for a in self.absent]
        return FactsRequest(
            paths=tuple(dict.fromkeys(paths)),
            services=self.services,
            users=(self.user.name,) if self.user else (),
            postgres=(self.postgres.role, self.postgres.database) if self.postgres else None,
        )

    def sources(self) -> tuple[tuple[str, str], ...]:
        """(live path, where its content comes from): each file's template; each link, through the file it
        names (what a service's check says is the path it read: /etc/nginx/sites-enabled/...)."""
        out = [(f.path, f"rendered from {f.src}") for f in self.files if f.src]
        by_path = {f.path: f for f in self.files}
        for link in self.links:
            f = by_path.get(link.target)
            if f is not None and f.src:
                out.append((link.path, f"a link to {f.path}, rendered from {f.src}"))
        return tuple(out)

    def for_host(self, values: Mapping[str, str]) -> Desired:
        """This Desired with the host values it knows (`Facts.host_values`) put in place of their placeholders,
        in file paths and contents and in link paths and targets (HOST_VALUES; the rest stay placeholders)."""
        marks = {HOST_VALUES[name][0]: value for name, value in values.items() if name in HOST_VALUES}
        if not marks:
            return self

        def put(text: str) -> str:
            for mark, value in marks.items():
                text = text.replace(mark, value)
            return text
        return replace(
            self,
            files=tuple(replace(f, path=put(f.path), content=put(f.content)) for f in self.files),
            links=tuple(replace(link, path=put(link.path), target=put(link.target)) for link in self.links),
            absent=tuple(replace(a, path=put(a.path)) for a in self.absent),
        )

    def missing_host_values(self) -> dict[str, tuple[str, ...]]:
        """{host value: the templates (or paths) still holding its placeholder}: what the host does not have."""
        out: dict[str, list[str]] = {}
        for name, (mark, _) in HOST_VALUES.items():
            for f in self.files:
                if mark in f.path or mark in f.content:
                    out.setdefault(name, []).append(f.src or f.path)
            for item in self.links + self.absent:
                if mark in item.path or mark in getattr(item, "target", ""):
                    out.setdefault(name, []).append(item.path)
        return {name: tuple(where) for name, where in out.items()}
