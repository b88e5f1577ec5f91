"""Pure decisions about releases: names, what to prune, venv reuse, how to reload, node state.

Nothing here talks to a host: the engine feeds in what a host printed
(`parse_state`) and runs what these functions decide.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from ..layout import Layout
from .errors import DeployError

RELEASE_ID = re.compile(r"\A[0-9]{14}-[0-9a-f]{7,40}\Z")   # matched whole (fullmatch)
SHA = re.compile(r"\A[0-9a-f]{40}\Z")
SHORT = 7


# --- names ---------------------------------------------------------------------------------

def release_id(now: datetime, sha: str) -> str:
    """`<UTC %Y%m%d%H%M%S>-<shortsha>`: sorts by time, says which commit."""
    if not SHA.fullmatch(sha):
        raise DeployError(f"not a full git sha: {sha!r}")
    return f"{now.astimezone(timezone.utc):%Y%m%d%H%M%S}-{sha[:SHORT]}"


def is_release_id(name: str) -> bool:
    return bool(RELEASE_ID.fullmatch(name))


def check_release_id(name: str) -> str:
    """`name` if it looks like a release id, else a DeployError saying what one looks like."""
    if not is_release_id(name):
        raise DeployError(f"{name!r} is not a release id (expected <YYYYmmddHHMMSS>-<sha>, "
                          f"e.g. 20240131120000-1a2b3c4; `fab releases` lists them)")
    return name


# --- which to keep -------------------------------------------------------------------------

def previous_release(releases: Iterable[str], current: str | None) -> str | None:
    """The newest release older than `current` (None when there is none, or no current)."""
    if current is None:
        return None
    older = [r for r in sorted(set(releases)) if is_release_id(r) and r < current]
    return older[-1] if older else None


def releases_to_delete(releases: Iterable[str], current: str | None, keep: int,
                       protect: Iterable[str] = (), previous: str | None = None,
                       partial: Iterable[str] = ()) -> list[str]:
    """Releases beyond the newest `keep`, oldest first; never current, the previous one or `protect`.
    `partial` releases (left half made by an interrupted deploy) go whatever `keep` says, and do not count.

    `previous` is the release that was current before (default: the newest older one).  Names that
    are not release ids are never touched.
    """
    half = {r for r in partial if is_release_id(r)} - {current} - set(protect)
    ids = sorted(r for r in set(releases) if is_release_id(r) and r not in half)
    kept = set(ids[-keep:]) if keep > 0 else set()
    kept |= {current, previous or previous_release(ids, current)} | set(protect)
    return sorted([r for r in ids if r not in kept] + list(half & set(releases)))


# --- requirements --------------------------------------------------------------------------

def requirements_hash(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


_REQ_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def django_requirement(text: str) -> str | None:
    """The requirements file's Django line (e.g. `Django>=4.2,<5.1`), comments stripped; None if absent."""
    for raw in text.splitlines():
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = _REQ_NAME.match(line)
        if m and re.sub(r"[-_.]+", "-", m.group(1)).lower() == "django":
            return line
    return None


def upgrade_spec(requirements_text: str, path: str = "requirements.txt") -> str:
    """What `pip install --upgrade` gets to upgrade Django within the project's constraint."""
    line = django_requirement(requirements_text)
    if line is None:
        raise DeployError(f"{path} has no Django requirement: nothing to upgrade within")
    if "[" not in line and not any(op in line for op in ("<", ">", "=", "~", "!")):
        raise DeployError(f"{path}: {line!r} has no version constraint; add one (e.g. Django>=4.2,<5.1) "
                          f"so an upgrade stays within it")
    return line


# --- a node's state, as the state command prints it ---------------------------------------

@dataclass(frozen=True)
class ReleaseInfo:
    id: str
    sha: str | None            # REVISION
    requirements: str | None   # the venv's requirements hash
    venv: str | None           # the venv's content id
    tree: str | None = None    # the git tree deployed (the app's subtree of REVISION): what "unchanged" compares
    previous: str | None = None  # the node's current when this release was deployed: what rollback goes to
    partial: bool = False        # still being made, or left so by an interrupted deploy: never a target


@dataclass(frozen=True)
class ProgramState:
    name: str
    state: str                 # supervisor's word: RUNNING, STOPPED, FATAL, BACKOFF, ... ERROR (no such program)
    pid: int | None
    interpreter: str | None    # argv[0] of the running process: the venv python it started from
    cwd: str | None = None     # its working directory (gunicorn's master: the release of its last chdir)

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


@dataclass(frozen=True)
class NodeState:
    configured: bool                                   # /srv/<app> exists
    current: str | None
    releases: dict[str, ReleaseInfo] = field(default_factory=dict)
    programs: dict[str, ProgramState] = field(default_factory=dict)
    migrations: dict[str, tuple[str, ...]] = field(default_factory=dict)   # release -> migration files
    slots: dict[str, str | None] = field(default_factory=dict)   # gunicorn slot (a, b) -> the release it runs
    live: str | None = None                                      # the slot the proxies send requests to
    cold_at: dict[str, int] = field(default_factory=dict)        # a drained slot -> when it stops (epoch)

    @property
    def current_info(self) -> ReleaseInfo | None:
        return self.releases.get(self.current) if self.current else None

    @property
    def previous(self) -> str | None:
        """The release to roll back to: the one that was current when the current one was deployed (if it
        is still there), else the newest older one."""
        info = self.current_info
        whole = {r for r, i in self.releases.items() if not i.partial or r == self.current}
        if info is not None and info.previous in whole and info.previous != self.current:
            return info.previous
        return previous_release(whole, self.current)

    @property
    def partial(self) -> set[str]:
        """Releases an interrupted deploy left half made (never the current one)."""
        return {r for r, i in self.releases.items() if i.partial and r != self.current}


def _dash(value: str) -> str | None:
    return None if value in ("", "-") else value


def parse_state(text: str) -> NodeState:
    """What `commands.state` printed: `layout=`, `current=`, `release=` and `program=` lines."""
    configured, current = True, None
    releases: dict[str, ReleaseInfo] = {}
    programs: dict[str, ProgramState] = {}
    migrations: dict[str, list[str]] = {}
    slots: dict[str, str | None] = {}
    cold_at: dict[str, int] = {}
    live = None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "layout":
            configured = value.strip() == "ok"
        elif key == "current":
            target = value.strip().rstrip("/")
            name = target.rsplit("/", 1)[-1]
            current = name if is_release_id(name) else None
        elif key == "release":
            parts = (value.split() + ["-"] * 7)[:7]
            if is_release_id(parts[0]):
                releases[parts[0]] = ReleaseInfo(parts[0], _dash(parts[1]), _dash(parts[2]), _dash(parts[3]),
                                                 _dash(parts[4]), _dash(parts[5]), parts[6] == "partial")
        elif key == "program":
            parts = (value.split(None, 4) + ["-"] * 5)[:5]
            pid = int(parts[2]) if parts[2].isdigit() and int(parts[2]) > 0 else None
            programs[parts[0]] = ProgramState(parts[0], parts[1], pid, _dash(parts[4].strip()), _dash(parts[3]))
        elif key == "live":
            live = value.strip() if value.strip() in ("a", "b") else None
        elif key == "slot":
            parts = (value.split() + ["-"] * 3)[:3]
            if parts[0] in ("a", "b"):
                name = parts[1].rstrip("/").rsplit("/", 1)[-1]
                slots[parts[0]] = name if is_release_id(name) else None
                if parts[2].isdigit():
                    cold_at[parts[0]] = int(parts[2])
        elif key == "migration":
            rel, _, path = value.partition(" ")
            migrations.setdefault(rel, []).append(path.strip())
    return NodeState(configured, current, releases, programs,
                     {rel: tuple(sorted(paths)) for rel, paths in migrations.items()}, slots, live, cold_at)


def same_code(info: ReleaseInfo | None, sha: str, tree: str | None) -> bool:
    """Whether a release holds this code: the same app tree (a commit elsewhere in the repository does not
    change the app), else the same commit."""
    if info is None:
        return False
    if info.tree and tree:
        return info.tree == tree
    return info.sha == sha


def release_of_interpreter(layout: Layout, interpreter: str | None) -> str | None:
    """The release whose venv python `interpreter` is (`/srv/<app>/releases/<id>/.venv/bin/python3`)."""
    if not interpreter:
        return None
    m = re.fullmatch(re.escape(layout.releases) + r"/([^/]+)/\.venv/bin/[^/]+", interpreter)
    return m.group(1) if m and is_release_id(m.group(1)) else None


def release_of_path(layout: Layout, path: str | None) -> str | None:
    """The release a path is in (`/srv/<app>/releases/<id>[/...]`)."""
    if not path:
        return None
    m = re.match(re.escape(layout.releases) + r"/([^/]+)(?:/|\Z)", path)
    return m.group(1) if m and is_release_id(m.group(1)) else None


def in_use(layout: Layout, state: NodeState) -> set[str]:
    """Releases a running program depends on: never pruned.

    The one whose venv its python names, and the one it is in (a gunicorn slot's master chdirs into its
    release: the warm previous release is protected while its slot runs).
    """
    used = set()
    for program in state.programs.values():
        if program.running:
            used |= {rel for rel in (release_of_interpreter(layout, program.interpreter),
                                     release_of_path(layout, program.cwd)) if rel}
    return used


# --- venvs and reloads ---------------------------------------------------------------------

@dataclass(frozen=True)
class VenvPlan:
    action: str               # "reuse" (hardlink the current release's venv) or "install" (pip)
    source: str | None        # the release reused from
    venv_id: str              # the resulting venv's content id
    reason: str


def requirements_change(current: ReleaseInfo | None, req_hash: str, path: str = "requirements.txt"
                        ) -> tuple[bool, str]:
    """(changed, why) of the requirements since the current release: the default of "reinstall?"."""
    if current is None:
        return True, "no release is deployed yet"
    if current.requirements is None or current.venv is None:
        return True, f"release {current.id} has no venv built by whipup"
    if current.requirements != req_hash:
        return True, f"{path} changed since release {current.id}"
    return False, f"{path} unchanged since release {current.id}"


def venv_plan(current: ReleaseInfo | None, req_hash: str, release: str, *, deps: bool | None,
              upgrade_django: bool = False, path: str = "requirements.txt") -> VenvPlan:
    """Reuse the current release's venv or pip install: deps None decides by the requirements hash."""
    changed, why = requirements_change(current, req_hash, path)
    can_reuse = current is not None and current.venv is not None
    new_id = release
    if deps is True or not can_reuse:
        reason = "asked to reinstall" if deps is True else why
        return VenvPlan("install", None, new_id, reason)
    if deps is False and changed:
        reason = f"{why}, but --no-deps: reusing its venv"
    elif changed:
        return VenvPlan("install", None, new_id, why)
    else:
        reason = why
    return VenvPlan("reuse", current.id, new_id if upgrade_django else current.venv, reason)


def migration_files_missing(current_files: Iterable[str], target_files: Iterable[str]) -> list[str]:
    """Migration files the current release has and the target lacks: what a rollback may need to undo."""
    return sorted(set(current_files) - set(target_files))
