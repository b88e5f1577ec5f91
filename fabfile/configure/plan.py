"""PURE: what a host should be (`want.Desired`) + what it is (`Facts`) -> the actions that close the gap.

No I/O here.  `make_plan` returns a `Plan`: the actions in stage order
(packages, files, services, postgres) and the list of things already right.
A plan with no actions is the "already ok" answer: configure then sends no
command beyond the facts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .facts import Facts, PathFact, PgFacts, PgRole
from .scram import scram_matches, scram_verifier
from .want import Desired, DesiredAbsent, DesiredDir, DesiredFile, DesiredLink, DesiredPostgres, DesiredUser

STAGES = ("packages", "files", "services", "postgres")
_STRENGTH = {"reload": 1, "restart": 2}


# --- actions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AptUpdate:
    reason: str
    stage = "packages"
    count = 0                  # housekeeping, not a change of the host's state

    def describe(self) -> str:
        return f"apt-get update ({self.reason})"


@dataclass(frozen=True)
class AptInstall:
    packages: tuple[str, ...]
    update_on_failure: bool    # lists were fresh: update and retry only if a package is not found
    stage = "packages"

    @property
    def count(self) -> int:
        return len(self.packages)

    def describe(self) -> str:
        return f"install {len(self.packages)} package(s): {' '.join(self.packages)}"


@dataclass(frozen=True)
class CreateUser:
    user: DesiredUser
    stage = "files"
    count = 1

    def describe(self) -> str:
        return f"create system user {self.user.name} (home {self.user.home}, shell {self.user.shell})"


@dataclass(frozen=True)
class ModifyUser:
    user: DesiredUser
    was: str
    stage = "files"
    count = 1

    def describe(self) -> str:
        return f"change user {self.user.name}: {self.was} -> home {self.user.home}, shell {self.user.shell}"


@dataclass(frozen=True)
class MakeDir:
    dir: DesiredDir
    was: str                   # "absent" or the current owner:group mode
    stage = "files"
    count = 1

    def describe(self) -> str:
        d = self.dir
        verb = "create" if self.was == "absent" else f"fix ({self.was})"
        return f"{verb} directory {d.path} ({d.owner}:{d.group} {d.mode})"


@dataclass(frozen=True)
class WriteFile:
    file: DesiredFile
    old_sha256: str | None     # None: the file is new
    stage = "files"
    count = 1

    def describe(self) -> str:
        f = self.file
        what = "new" if self.old_sha256 is None else "changed"
        then = f" -> {f.action} {f.notify}" if f.notify else ""
        return f"write {f.path} ({what}, {f.owner}:{f.group} {f.mode}, from {f.src}){then}"


@dataclass(frozen=True)
class FixAttrs:
    path: str
    owner: str
    group: str
    mode: str
    was: str
    stage = "files"
    count = 1

    def describe(self) -> str:
        return f"fix {self.path}: {self.was} -> {self.owner}:{self.group} {self.mode}"


@dataclass(frozen=True)
class Link:
    link: DesiredLink
    was: str
    stage = "files"
    count = 1

    def describe(self) -> str:
        then = f" -> {self.link.action} {self.link.notify}" if self.link.notify else ""
        return f"link {self.link.path} -> {self.link.target} (was {self.was}){then}"


@dataclass(frozen=True)
class Remove:
    absent: DesiredAbsent
    stage = "files"
    count = 1

    def describe(self) -> str:
        then = f" -> {self.absent.action} {self.absent.notify}" if self.absent.notify else ""
        return f"remove {self.absent.path}{then}"


@dataclass(frozen=True)
class ServiceAction:
    name: str
    verb: str                  # start | reload | restart (reload/restart start it if it is stopped)
    why: str
    stage = "services"
    count = 1

    def describe(self) -> str:
        return f"{self.verb} {self.name} ({self.why})"


@dataclass(frozen=True)
class EnableService:
    name: str
    stage = "services"
    count = 1

    def describe(self) -> str:
        return f"enable {self.name} at boot"


@dataclass(frozen=True)
class PgEnsure:
    role: str
    database: str
    verifier: str | None       # a new SCRAM verifier to set, or None when the password is right
    what: tuple[str, ...]
    stage = "postgres"

    @property
    def count(self) -> int:
        return len(self.what)

    def describe(self) -> str:
        return ", ".join(self.what)


Action = (AptUpdate | AptInstall | CreateUser | ModifyUser | MakeDir | WriteFile | FixAttrs | Link | Remove
          | ServiceAction | EnableService | PgEnsure)


@dataclass(frozen=True)
class Plan:
    actions: tuple = ()
    ok: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()   # (live path, its template): what a check's error names

    @property
    def changes(self) -> int:
        return sum(a.count for a in self.actions)

    def stage(self, name: str) -> list:
        return [a for a in self.actions if a.stage == name]

    @property
    def stages(self) -> list[str]:
        return [s for s in STAGES if self.stage(s)]

    @property
    def writes(self) -> list[WriteFile]:
        return [a for a in self.actions if isinstance(a, WriteFile)]

    @property
    def handlers(self) -> list[ServiceAction]:
        return [a for a in self.actions if isinstance(a, ServiceAction)]


# --- the computation: one function per stage, each returning what it found ------------

@dataclass(frozen=True)
class _Found:
    """What one stage found: actions to take, things already right, the handlers its changes trigger."""
    actions: tuple = ()
    ok: tuple[str, ...] = ()
    triggers: tuple[tuple[str | None, str, str], ...] = ()   # (service, reload | restart, what changed)


def make_plan(want: Desired, facts: Facts, *, salt: bytes = b"") -> Plan:
    """The actions that make a host with `facts` what `want` says; `salt` seeds a new SCRAM verifier."""
    changes = (_packages(want, facts), _user(want.user, facts),
               _combined(_dir(d, facts) for d in want.dirs),
               _combined(_file(f, facts) for f in want.files),
               _combined(_link(link, facts) for link in want.links),
               _combined(_absent(gone, facts) for gone in want.absent),
               _pending(want, facts))
    notify = _handlers(t for found in changes for t in found.triggers)
    services = _combined(_service(name, facts, notify) for name in want.services)
    _check_notified(notify, want.services)
    found = changes + (services, _postgres(want.postgres, facts.postgres, salt))
    order = {s: i for i, s in enumerate(STAGES)}
    actions = sorted((a for f in found for a in f.actions), key=lambda a: order[a.stage])  # stable
    return Plan(tuple(actions), tuple(o for f in found for o in f.ok), want.sources())


def _combined(found: Iterable[_Found]) -> _Found:
    found = tuple(found)
    return _Found(tuple(a for f in found for a in f.actions), tuple(o for f in found for o in f.ok),
                  tuple(t for f in found for t in f.triggers))


def _handlers(triggers: Iterable[tuple[str | None, str, str]]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """service -> (the strongest action triggered, what triggered it): each handler runs once."""
    notify: dict[str, tuple[str, tuple[str, ...]]] = {}
    for service, action, what in triggers:
        if service is not None:
            current, whats = notify.get(service, ("reload", ()))
            notify[service] = (action if _STRENGTH[action] > _STRENGTH[current] else current, whats + (what,))
    return notify


def _attrs(p: PathFact) -> str:
    return f"{p.owner}:{p.group} {p.mode:04o}"


def _same_attrs(p: PathFact, owner: str, group: str, mode: str) -> bool:
    return p.owner == owner and p.group == group and p.mode == int(mode, 8)


def _path(facts: Facts, path: str) -> PathFact:
    return facts.paths.get(path, PathFact("absent"))


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


# packages

def _packages(want: Desired, facts: Facts) -> _Found:
    wanted = tuple(dict.fromkeys(want.packages))
    missing = tuple(p for p in wanted if p not in facts.packages)
    ok = tuple(f"package {p}" for p in wanted if p in facts.packages)
    if not missing:
        return _Found(ok=ok)
    update = _apt_update_reason(want, facts)
    install = AptInstall(missing, update_on_failure=update is None)
    return _Found((AptUpdate(update), install) if update else (install,), ok)


def _apt_update_reason(want: Desired, facts: Facts) -> str | None:
    """Why apt-get update must run before installing, or None when the package lists are fresh enough."""
    if facts.apt_lists == 0 or facts.apt_updated is None:
        return "package lists missing"
    if facts.now - facts.apt_updated > want.apt_max_age:
        return f"package lists {(facts.now - facts.apt_updated) // 3600} h old, max {want.apt_max_age // 3600} h"
    return None


# files: the app user and its directories, files (content by sha256, then owner and mode), links, removals

def _user(u: DesiredUser | None, facts: Facts) -> _Found:
    if u is None:
        return _Found()
    have = facts.users.get(u.name)
    if have is None:
        return _Found((CreateUser(u),))
    if (have.home, have.shell) != (u.home, u.shell):
        return _Found((ModifyUser(u, f"home {have.home}, shell {have.shell}"),))
    return _Found(ok=(f"user {u.name}",))


def _dir(d: DesiredDir, facts: Facts) -> _Found:
    have = _path(facts, d.path)
    if have.kind == "dir" and _same_attrs(have, d.owner, d.group, d.mode):
        return _Found(ok=(f"directory {d.path}",))
    return _Found((MakeDir(d, "absent" if have.kind == "absent" else
                           (_attrs(have) if have.kind == "dir" else f"a {have.kind}")),))


def _file(f: DesiredFile, facts: Facts) -> _Found:
    have = _path(facts, f.path)
    if have.kind != "file" or have.sha256 != f.sha256:
        return _Found((WriteFile(f, have.sha256 if have.kind == "file" else None),),
                      triggers=((f.notify, f.action, f"{_name(f.path)} changed"),))
    if not _same_attrs(have, f.owner, f.group, f.mode):
        return _Found((FixAttrs(f.path, f.owner, f.group, f.mode, _attrs(have)),))
    return _Found(ok=(f"file {f.path}",))


def _link(link: DesiredLink, facts: Facts) -> _Found:
    have = _path(facts, link.path)
    if have.kind == "link" and have.target == link.target:
        return _Found(ok=(f"link {link.path}",))
    return _Found((Link(link, "absent" if have.kind == "absent" else
                        (f"-> {have.target}" if have.kind == "link" else f"a {have.kind}")),),
                  triggers=((link.notify, link.action, f"{_name(link.path)} enabled"),))


def _absent(gone: DesiredAbsent, facts: Facts) -> _Found:
    if _path(facts, gone.path).kind == "absent":
        return _Found(ok=(f"absent {gone.path}",))
    return _Found((Remove(gone),), triggers=((gone.notify, gone.action, f"{_name(gone.path)} removed"),))


def _pending(want: Desired, facts: Facts) -> _Found:
    """Handlers an earlier run owed (it wrote their files, then stopped): they run now."""
    return _Found(triggers=tuple((service, action, f"{action} pending from an earlier run")
                                 for service, action in sorted(facts.pending) if service in want.services))


# services: handlers of what changed (run once each, the strongest action), else start if stopped

def _service(name: str, facts: Facts, notify: dict[str, tuple[str, tuple[str, ...]]]) -> _Found:
    have = facts.services.get(name)
    running = have is not None and have.running
    not_enabled = have is None or have.enabled is False or have.state == "absent"
    enable = (EnableService(name),) if not_enabled else ()
    if name in notify:
        verb, whats = notify[name]
        return _Found((ServiceAction(name, verb, ", ".join(whats) + ("" if running else "; stopped: start")),) + enable)
    if not running:
        why = "not installed yet" if have is None or have.state == "absent" else f"{have.state}"
        return _Found((ServiceAction(name, "start", why),) + enable)
    return _Found(enable, ok=(f"service {name} running",))


def _check_notified(notify: dict, services: tuple[str, ...]) -> None:
    for service in notify:
        if service not in services:
            raise ValueError(f"a file notifies {service!r}, which is not one of the role's services")


# postgres: the app's role (able to log in, with its password) and its database

def _postgres(pg: DesiredPostgres | None, pgf: PgFacts | None, salt: bytes) -> _Found:
    if pg is None:
        return _Found()
    if pgf is None or not pgf.up:
        what = (f"create role {pg.role} if missing", "set its password", f"create database {pg.database} if missing")
        return _Found((PgEnsure(pg.role, pg.database, _new_verifier(pg.password, salt), what),))
    role = pgf.roles.get(pg.role)
    password_ok = role is not None and pg.password is not None and scram_matches(pg.password, role.verifier)
    verifier = None if password_ok else _new_verifier(pg.password, salt)
    checks = (_pg_role(pg, role), _pg_password(pg, password_ok), _pg_database(pg, pgf.databases.get(pg.database)))
    what = tuple(text for text, right in checks if not right)
    ok = tuple(text for text, right in checks if right)
    return _Found((PgEnsure(pg.role, pg.database, verifier, what),) if what else (), ok)


# each check: (what to change, False), or (what is right, True)

def _pg_role(pg: DesiredPostgres, role: PgRole | None) -> tuple[str, bool]:
    if role is None:
        return f"create role {pg.role}", False
    if not role.can_login:
        return f"let role {pg.role} log in", False
    return f"postgres role {pg.role}", True


def _pg_password(pg: DesiredPostgres, right: bool) -> tuple[str, bool]:
    return (f"postgres role {pg.role} password", True) if right else (f"set role {pg.role}'s password", False)


def _pg_database(pg: DesiredPostgres, owner: str | None) -> tuple[str, bool]:
    if owner is None:
        return f"create database {pg.database} owned by {pg.role}", False
    if owner != pg.role:
        return f"give database {pg.database} to {pg.role} (owner {owner})", False
    return f"postgres database {pg.database}", True


def _new_verifier(password: str | None, salt: bytes) -> str | None:
    if password is None:
        return None
    if len(salt) < 16:
        raise ValueError("make_plan: setting a password needs a random salt of 16 bytes or more")
    return scram_verifier(password, salt)
