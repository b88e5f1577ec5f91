"""Rollback: back to the previous (or a named) release, with no reinstall.

    choose the target -> check (or undo) migrations -> switch and reload -> health gate -> workers -> audit

A release is chosen by app node 0 (worker node 0 without web); the database must have no migration the
target lacks (named and refused, or undone first with --migrate-back).  Celery workers follow once the web
tier is healthy: a failed gate leaves them untouched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..remote import run
from . import commands, health, manage, reload
from .cluster import Cluster, Member, Timer, each, gather
from .errors import DeployError
from .guard import guarded
from .health import json_last_line
from .lock import AuditRecord, iso, utc_now, whoami
from .planning import HEALTH_TIMEOUT, involved, reload_action
from .releases import NodeState, check_release_id, migration_files_missing


@dataclass(frozen=True)
class RollbackOptions:
    to: str | None = None
    component: str = "all"
    migrate_back: bool = False
    break_lock: bool = False
    dry_run: bool = False
    health_timeout: float = HEALTH_TIMEOUT


@dataclass(frozen=True)
class Choice:
    """Where a rollback goes: the target release, the nodes that move to it, and every node's state."""
    target: str
    moving: list[Member]
    states: dict[str, NodeState]
    anchor: NodeState                    # the reference node's state: whose "previous" the target is

    @property
    def apps(self) -> list[Member]:
        return [m for m in self.moving if m.role == "app"]


def migrate_back_args(targets: list[tuple[str, str | None]]) -> list[str]:
    """argv of scripts/migrate_back.py: the (app, migration or None for zero) pairs as one JSON word."""
    return [json.dumps([list(t) for t in targets])]


def _remote_error(r, lines: int) -> str:
    return "\n".join(((r.stdout or "") + (r.stderr or "")).strip().splitlines()[-lines:])


def check_migrations(cl: Cluster, state: NodeState, target: str, migrate_back: bool, dry_run: bool) -> str | None:
    """Refuse (or, with --migrate-back, undo) migrations the database has and the target release lacks.

    The migration files of both releases (listed by the state command) are compared first: only when
    the current release has some the target lacks is the database asked.
    """
    m, current = cl.apps[0], state.current
    if current is None:
        return None
    if not migration_files_missing(state.migrations.get(current, ()), state.migrations.get(target, ())):
        return None
    r = run(m.conn, manage.python_stdin(cl.layout, target), step="check applied migrations",
            stdin=manage.script("migrations_missing"), check=False)
    if r.exited != 0:
        raise DeployError(f"{m.name}: could not compare the database's migrations with release {target}:\n"
                          + _remote_error(r, 10))
    found = json_last_line(r.stdout)
    missing = [tuple(k) for k in found.get("missing", [])]
    if not missing:
        return None
    names = ", ".join(f"{a}.{n}" for a, n in missing)
    if not migrate_back:
        raise DeployError(f"the database has migrations that release {target} lacks: {names}. Its code may not "
                          f"work with that schema; refused. --migrate-back undoes them first (if reversible).")
    leaves = found.get("leaves", {})
    targets = sorted({(a, leaves.get(a)) for a, _ in missing}, key=lambda t: t[0])
    if dry_run:
        return f"would undo {names} (migrate " + ", ".join(f"{a} {n or 'zero'}" for a, n in targets) + ")"
    r = run(m.conn, manage.python_stdin(cl.layout, current, migrate_back_args(targets)), step="migrate back",
            stdin=manage.script("migrate_back"), check=False, timeout=3600)
    result = json_last_line(r.stdout)
    if r.exited == 3 and result.get("irreversible"):
        raise DeployError("refused: irreversible migrations stand in the way of release " + target + ": "
                          + "; ".join(result["irreversible"]))
    if r.exited != 0:
        raise DeployError(f"{m.name}: migrating back failed:\n" + _remote_error(r, 15))
    return "undid migrations " + ", ".join(result.get("undone", []))


def choose(cl: Cluster, opts: RollbackOptions, members: list[Member], reference: Member,
           states: dict[str, NodeState]) -> Choice:
    """The target release and the nodes that move to it; DeployError when there is none, or it is missing."""
    anchor = states[reference.name]
    if anchor.current is None:
        raise DeployError(f"{reference.name}: no release is deployed: nothing to roll back")
    target = opts.to or anchor.previous
    if target is None:
        raise DeployError(f"{reference.name}: no release before {anchor.current} to roll back to "
                          f"(releases: {', '.join(sorted(anchor.releases)) or 'none'})")
    if opts.to is None:     # undo the current release where it is current (a component's deploy: its nodes)
        moving = [m for m in members if states[m.name].current == anchor.current]
    else:
        moving = [m for m in members if states[m.name].current not in (None, target)]
    missing = [m.name for m in moving if target not in states[m.name].releases]
    half = [m.name for m in moving if target in states[m.name].partial]
    if half:
        raise DeployError(f"release {target} on {', '.join(half)} was left half made by an interrupted deploy: "
                          f"not a release to roll back to; nothing changed (fab releases lists them)")
    if missing:
        hint = ("; a release deployed with quick-update --component goes back and forth with rollback "
                "--component" if opts.component == "all" else "")
        raise DeployError(f"release {target} does not exist on {', '.join(missing)}; nothing changed "
                          f"(fab releases lists them{hint})")
    return Choice(target, moving, states, anchor)


def _switch_node(cl: Cluster, m: Member, target: str, action: str | None) -> None:
    """`current` -> target on `m`, with its process's reload in the same round trip (`action` for gunicorn;
    None: switch only, the rolling restart reloads it)."""
    if m.role == "app" and action is not None:
        run(m.conn, commands.switch_and_web(cl.layout, target, action), step=f"switch + gunicorn {action}")
        cl.progress(m.name, "rollback", f"current -> {target}; gunicorn {action}")
    elif m.role == "worker":
        run(m.conn, commands.switch_and_worker(cl.layout, target), step="switch + celery restart")
        cl.progress(m.name, "rollback", f"current -> {target}; celery restarted")
    else:
        run(m.conn, commands.switch(cl.layout, target), step="switch")
        cl.progress(m.name, "rollback", f"current -> {target}")


def switch_back(cl: Cluster, choice: Choice, opts: RollbackOptions, timer: Timer) -> list[Member]:
    """Every moving node but the workers (when there is a web tier) switched and reloaded; the workers
    left for after the gate come back."""
    layout, target = cl.layout, choice.target
    actions = {m.name: reload_action(layout, choice.states[m.name], choice.states[m.name].releases[target].venv or "")
               for m in choice.apps}
    one_by_one = reload.rolling(actions)     # a venv that differs: restarts, one app node at a time, after the switch
    later = [m for m in choice.moving if m.role == "worker"] if choice.apps else []
    timer.step("switch+reload", lambda: each(
        [m for m in choice.moving if m not in later],
        lambda m: _switch_node(cl, m, target, None if one_by_one else actions.get(m.name)), "rolling back"))
    if one_by_one:
        timer.step("rolling restart", lambda: reload.web_tier(cl, choice.apps, actions, target, opts.health_timeout))
    return later


def _dry_run(cl: Cluster, choice: Choice, note: str | None) -> None:
    cl.out("dry run: nothing is changed. Would roll back:")
    for m in choice.moving:
        cl.out(f"  {m.name}: {choice.states[m.name].current} -> {choice.target}")
    if note:
        cl.out(f"  {note}")


def _audit_record(choice: Choice, opts: RollbackOptions, result: str, detail: str, timer: Timer) -> AuditRecord:
    before, info = choice.anchor.current_info, choice.anchor.releases.get(choice.target)
    return AuditRecord(at=iso(utc_now()), who=whoami(), action="rollback", result=result,
                       from_release=choice.anchor.current, to_release=choice.target,
                       from_sha=before.sha if before else None, to_sha=info.sha if info else None,
                       component=opts.component, seconds=round(timer.total, 1), detail=detail)


def roll_back(cl: Cluster, opts: RollbackOptions) -> str | None:
    """Switch every node back to the previous (or --to) release and reload; the release, None on --dry-run."""
    timer = Timer()
    code, static = involved(cl, opts.component)
    members, reference = static + code, code[0]     # whose previous release "previous" means
    if opts.to is not None:
        check_release_id(opts.to)
    if opts.dry_run:
        choice, _ = _plan(cl, opts, members, reference, timer)
        return choice.target if not choice.moving else None
    with guarded(cl, opts.to or "previous", "rollback", break_lock=opts.break_lock) as guard:
        choice, note = _plan(cl, opts, members, reference, timer)
        if not choice.moving:
            return choice.target
        if note:
            cl.out(note)
        later = switch_back(cl, choice, opts, timer)
        switched_at = timer.total
        result, detail = "ok", note or ""
        try:
            if choice.apps:
                timer.step("health", lambda: health.gate(cl, choice.target, opts.health_timeout, choice.apps))
            if later:
                timer.step("workers", lambda: each(later, lambda m: _switch_node(cl, m, choice.target, None),
                                                   "rolling back the workers"))
        except Exception as exc:
            result, detail = "failed", str(exc)
            raise
        finally:
            guard.audit(_audit_record(choice, opts, result, detail, timer))
        cl.out(f"rolled back to {choice.target} on {len(choice.moving)} node(s): switched and reloaded in "
               f"{switched_at:.2f} s, healthy at {timer.total:.2f} s ({timer.summary()})")
        return choice.target


def _plan(cl: Cluster, opts: RollbackOptions, members: list[Member], reference: Member,
          timer: Timer) -> tuple[Choice, str | None]:
    """Read the nodes, confirm the cloud's list, choose the target and check the migrations (printing the
    plan on a dry run); nothing changes here."""
    web = bool(cl.apps) and cl.apps[0] in members
    states = timer.step("state", lambda: gather(cl, members, migrations=[cl.apps[0].name] if web else []))
    cl.confirm()
    choice = choose(cl, opts, members, reference, states)
    if not choice.moving:
        cl.out(f"every node already runs {choice.target}; nothing to do")
        return choice, None
    note = None
    app0 = states[cl.apps[0].name] if web else None
    if app0 is not None and app0.current not in (None, choice.target):
        note = timer.step("migrations", lambda: check_migrations(cl, app0, choice.target, opts.migrate_back,
                                                                 opts.dry_run))
    if opts.dry_run:
        _dry_run(cl, choice, note)
    return choice, note
