"""PURE: what a host should be (`Desired`) + what it is (`Facts`) -> the actions that close the gap.

No I/O here.  `make_plan` returns a `Plan`: the actions in stage order
(packages, files, services, postgres) and the list of things already right.
A plan with no actions is the "already ok" answer: configure then sends no
command beyond the facts.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .facts import Facts, FactsRequest, PathFact
from .scram import scram_matches, scram_verifier

STAGES = ("packages", "files", "services", "postgres")
_STRENGTH = {"reload": 1, "restart": 2}


# --- desired state ----------------------------------------------------------------------

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


# --- the computation --------------------------------------------------------------------

def _attrs(p: PathFact) -> str:
    return f"{p.owner}:{p.group} {p.mode:04o}"


def _same_attrs(p: PathFact, owner: str, group: str, mode: str) -> bool:
    return p.owner == owner and p.group == group and p.mode == int(mode, 8)


def make_plan(want: Desired, facts: Facts, *, salt: bytes = b"") -> Plan:
    """The actions that make a host with `facts` what `want` says; `salt` seeds a new SCRAM verifier."""
    actions: list = []
    ok: list[str] = []
    notify: dict[str, tuple[str, list[str]]] = {}   # service -> (strongest action, what triggered it)

    def trigger(service: str | None, action: str, what: str) -> None:
        if service is None:
            return
        current, whats = notify.get(service, ("reload", []))
        notify[service] = (action if _STRENGTH[action] > _STRENGTH[current] else current, whats + [what])

    # packages
    missing = tuple(p for p in dict.fromkeys(want.packages) if p not in facts.packages)
    ok += [f"package {p}" for p in dict.fromkeys(want.packages) if p in facts.packages]
    if missing:
        update = None
        if facts.apt_lists == 0 or facts.apt_updated is None:
            update = "package lists missing"
        elif facts.now - facts.apt_updated > want.apt_max_age:
            update = (f"package lists {(facts.now - facts.apt_updated) // 3600} h old, "
                      f"max {want.apt_max_age // 3600} h")
        if update:
            actions.append(AptUpdate(update))
        actions.append(AptInstall(missing, update_on_failure=update is None))

    # the app user and its directories
    if want.user:
        u = want.user
        have = facts.users.get(u.name)
        if have is None:
            actions.append(CreateUser(u))
        elif (have.home, have.shell) != (u.home, u.shell):
            actions.append(ModifyUser(u, f"home {have.home}, shell {have.shell}"))
        else:
            ok.append(f"user {u.name}")
    for d in want.dirs:
        have = facts.paths.get(d.path, PathFact("absent"))
        if have.kind == "dir" and _same_attrs(have, d.owner, d.group, d.mode):
            ok.append(f"directory {d.path}")
        else:
            actions.append(MakeDir(d, "absent" if have.kind == "absent" else
                                   (_attrs(have) if have.kind == "dir" else f"a {have.kind}")))

    # files: content by sha256, then owner and mode
    for f in want.files:
        have = facts.paths.get(f.path, PathFact("absent"))
        if have.kind != "file" or have.sha256 != f.sha256:
            actions.append(WriteFile(f, have.sha256 if have.kind == "file" else None))
            trigger(f.notify, f.action, f.path.rsplit("/", 1)[-1] + " changed")
        elif not _same_attrs(have, f.owner, f.group, f.mode):
            actions.append(FixAttrs(f.path, f.owner, f.group, f.mode, _attrs(have)))
        else:
            ok.append(f"file {f.path}")
    for link in want.links:
        have = facts.paths.get(link.path, PathFact("absent"))
        if have.kind == "link" and have.target == link.target:
            ok.append(f"link {link.path}")
        else:
            actions.append(Link(link, "absent" if have.kind == "absent" else
                                (f"-> {have.target}" if have.kind == "link" else f"a {have.kind}")))
            trigger(link.notify, link.action, f"{link.path.rsplit('/', 1)[-1]} enabled")
    for gone in want.absent:
        have = facts.paths.get(gone.path, PathFact("absent"))
        if have.kind == "absent":
            ok.append(f"absent {gone.path}")
        else:
            actions.append(Remove(gone))
            trigger(gone.notify, gone.action, f"{gone.path.rsplit('/', 1)[-1]} removed")

    # handlers an earlier run owed (it wrote their files, then stopped): run them now
    for service, action in sorted(facts.pending):
        if service in want.services:
            trigger(service, action, f"{action} pending from an earlier run")

    # services: handlers of what changed (run once each, the strongest action), else start if stopped
    for name in want.services:
        have = facts.services.get(name)
        running = have is not None and have.running
        if name in notify:
            verb, whats = notify[name]
            actions.append(ServiceAction(name, verb, ", ".join(whats) + ("" if running else "; stopped: start")))
        elif not running:
            actions.append(ServiceAction(name, "start", "not installed yet" if have is None or have.state == "absent"
                                         else f"{have.state}"))
        else:
            ok.append(f"service {name} running")
        if facts.init == "systemd" and (have is None or have.enabled is False or have.state == "absent"):
            actions.append(EnableService(name))
    for service in notify:
        if service not in want.services:
            raise ValueError(f"a file notifies {service!r}, which is not one of the role's services")

    def new_verifier(password: str | None) -> str | None:
        if password is None:
            return None
        if len(salt) < 16:
            raise ValueError("make_plan: setting a password needs a random salt of 16 bytes or more")
        return scram_verifier(password, salt)

    # PostgreSQL role and database
    if want.postgres:
        pg = want.postgres
        what: list[str] = []
        pgf = facts.postgres
        if pgf is None or not pgf.up:
            what = [f"create role {pg.role} if missing", "set its password",
                    f"create database {pg.database} if missing"]
            verifier = new_verifier(pg.password)
        else:
            role = pgf.roles.get(pg.role)
            if role is None:
                what.append(f"create role {pg.role}")
            elif not role.can_login:
                what.append(f"let role {pg.role} log in")
            else:
                ok.append(f"postgres role {pg.role}")
            password_ok = role is not None and pg.password is not None and scram_matches(pg.password, role.verifier)
            verifier = None
            if password_ok:
                ok.append(f"postgres role {pg.role} password")
            else:
                what.append(f"set role {pg.role}'s password")
                verifier = new_verifier(pg.password)
            owner = pgf.databases.get(pg.database)
            if owner is None:
                what.append(f"create database {pg.database} owned by {pg.role}")
            elif owner != pg.role:
                what.append(f"give database {pg.database} to {pg.role} (owner {owner})")
            else:
                ok.append(f"postgres database {pg.database}")
        if what:
            actions.append(PgEnsure(pg.role, pg.database, verifier, tuple(what)))

    order = {s: i for i, s in enumerate(STAGES)}
    actions.sort(key=lambda a: order[a.stage])   # stable: keeps the order within a stage
    return Plan(tuple(actions), tuple(ok))
