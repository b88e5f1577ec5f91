"""Rollback: back to the previous (or a named) release, with no reinstall.

    choose the target -> check (or undo) migrations -> its gunicorn slot: warm (workers back) or booted
    -> switch (`current`, the proxies' upstream) -> health gate -> workers -> the slot left drained -> audit

A release is chosen by app node 0 (worker node 0 without web); the database must have no migration the
target lacks (named and refused, or undone first with --migrate-back). The target's slot is normally still
up (app.keep_warm): the switch boots nothing. A cold one is booted first, and the output says so. Celery
workers follow once the web tier is healthy: a failed gate leaves them untouched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..remote import run
from . import commands, health, manage, slots, slotstate, switchover
from .cluster import Cluster, Member, Timer, at_once, each, gather
from .errors import DeployError
from .guard import guarded
from .health import json_last_line
from .lock import AuditRecord, iso, utc_now, whoami
from .planning import HEALTH_TIMEOUT, involved
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


def _worker(cl: Cluster, m: Member, target: str) -> None:
    run(m.conn, commands.switch_and_worker(cl.layout, target), step="switch + celery restart")
    cl.progress(m.name, "rollback", f"current -> {target}; celery restarted")


def _app_node(cl: Cluster, m: Member, state: NodeState, target: str, live: dict[str, str]) -> None:
    """The target's slot on app node `m`: warm (its workers back, no process to boot) or booted; then
    `current` and slots/live. `live` gets node -> slot."""
    slot = slotstate.warm(cl.layout, state, target)
    if slot is not None:
        out = run(m.conn, slots.warm_and_go_live(cl.layout, slot, target), step="warm slot + switch").stdout
        if "cold" not in out:
            live[m.name] = slot
            cl.progress(m.name, "rollback", f"slot {slot} was warm on {target}: no boot "
                                            f"({out.strip().splitlines()[0] if out.strip() else 'warm'} worker(s))")
            return
    slot = slotstate.idle(state)
    cl.progress(m.name, "rollback", f"no warm slot runs {target} (app.keep_warm passed, or it was never kept): "
                                    f"booting it in slot {slot} first")
    secs = switchover.boot(cl, m, slot, target)
    run(m.conn, slots.go_live(cl.layout, slot, target), step="switch current and the live slot")
    live[m.name] = slot
    cl.progress(m.name, "rollback", f"slot {slot} booted on {target} in {secs:.1f} s")


def _workers(cl: Cluster, later: list[Member], target: str) -> None:
    if later:
        each(later, lambda m: _worker(cl, m, target), "rolling back the workers")


def _drain(cl: Cluster, choice: Choice, live: dict[str, str]) -> None:
    """The slot each app node served from before the rollback: warm (a roll forward boots nothing either)."""
    switchover.drain_all(cl, choice.apps, {m.name: choice.states[m.name].live for m in choice.apps
                                           if choice.states[m.name].live not in (None, live.get(m.name))})


def switch_back(cl: Cluster, choice: Choice, opts: RollbackOptions, timer: Timer) -> tuple[list[Member], dict[str, str]]:
    """The app nodes to the target's slot and the proxies' upstream to it; the workers (when there is a web
    tier) left for after the gate. (the workers left, app node -> its new live slot)"""
    target, live = choice.target, {}
    later = [m for m in choice.moving if m.role == "worker"] if choice.apps else []
    if choice.apps:
        timer.step("slots", lambda: each(choice.apps, lambda m: _app_node(cl, m, choice.states[m.name], target, live),
                                         "rolling back the app nodes"))
    proxies = [m for m in choice.moving if m.role == "proxy"]
    if proxies or choice.apps:
        timer.step("proxies", lambda: switchover.switch_proxies(cl, choice.states, live, target,
                                                                cl.proxies if choice.apps else proxies))
    solo = [m for m in choice.moving if m.role == "worker" and m not in later]
    if solo:
        timer.step("workers", lambda: each(solo, lambda m: _worker(cl, m, target), "rolling back the workers"))
    return later, live


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
    locking = timer.total
    with guarded(cl, opts.to or "previous", "rollback", break_lock=opts.break_lock) as guard:
        timer.steps.append(("lock", timer.total - locking))
        choice, note = _plan(cl, opts, members, reference, timer)
        if not choice.moving:
            return choice.target
        if note:
            cl.out(note)
        result, detail, switched_at, healthy_at = "ok", note or "", None, None
        try:        # audited whatever fails, a cold slot's boot included
            later, live = switch_back(cl, choice, opts, timer)
            switched_at = timer.total
            if choice.apps:
                timer.step("health", lambda: health.gate(cl, choice.target, opts.health_timeout, choice.apps, live))
            healthy_at = timer.total
            timer.step("workers+drain", lambda: at_once(lambda: _workers(cl, later, choice.target),
                                                        lambda: _drain(cl, choice, live)))
        except Exception as exc:
            result, detail = "failed", str(exc)
            raise
        finally:
            guard.audit(_audit_record(choice, opts, result, detail, timer))
        cl.out(f"rolled back to {choice.target} on {len(choice.moving)} node(s): switched in {switched_at:.2f} s, "
               f"healthy at {healthy_at:.2f} s, done at {timer.total:.2f} s ({timer.summary()})")
        return choice.target


def _plan(cl: Cluster, opts: RollbackOptions, members: list[Member], reference: Member,
          timer: Timer) -> tuple[Choice, str | None]:
    """Read the nodes, confirm the cloud's list, choose the target and check the migrations (printing the
    plan on a dry run); nothing changes here."""
    web = bool(cl.apps) and cl.apps[0] in members
    states = timer.step("state", lambda: gather(cl, members, migrations=[cl.apps[0].name] if web else []))
    timer.step("confirm", cl.confirm)
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
