"""The deploy, as a short list of named stages and its failure path.

    lock -> state of every node -> plan
    -> code (push/fetch + extract, .env, venv)
    -> collectstatic + migrate (app node 0) -> static to proxies, with /health of the new release on every
       app node before any traffic
    -> switch `current` -> reload, then the health gate -> prune -> audit line -> unlock (always)

Before the switch a failure removes the new release and leaves the previous one serving; after it, the
nodes go back to their previous release by themselves (automatic rollback).  The stages are in `stages`,
`health` and `reload`; rollback on request is `rollback`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable, NoReturn

from ..remote import HostFailures
from . import health, reload, stages, verify
from .cluster import Cluster, Member, Timer, at_once, gather
from .errors import DeployError, PreviousServes
from .guard import Guard, guarded, read_lock
from .lock import AuditRecord, held_message, iso, utc_now, whoami
from .planning import DeployOptions, Plan, describe_plan, involved, make_plan, reload_action, up_to_date, web_actions
from .releases import NodeState, release_id
from .source import Source

Stage = Callable[[Cluster, Plan], None]


def before_switch(plan: Plan) -> list[tuple[str, Stage]]:
    """The stages that prepare the release while the previous one serves, in order, by name."""
    steps: list[tuple[str, Stage]] = [("code", stages.deliver)]
    if plan.web:
        steps += [("settings check", verify.settings_check), ("collectstatic+migrate", stages.collectstatic_and_migrate)]
        if plan.runtime.release_command:
            steps.append(("release command", stages.release_command))
        steps.append(("static+health", static_and_health))
    elif plan.workers:
        steps.append(("migrations check", stages.migrations_applied))
    return steps


def static_and_health(cl: Cluster, plan: Plan) -> None:
    """Static files to the proxies while every app node's new release answers /health."""
    at_once(lambda: stages.static_to_proxies(cl, plan), lambda: health.before_traffic(cl, plan.apps, plan.release))


def publish(cl: Cluster, plan: Plan) -> None:
    """The processes take the switched release; then, with a web tier, the health gate."""
    gate = (lambda: health.gate(cl, plan.release, plan.options.health_timeout)) if plan.web else None
    reload.reload(cl, apps=plan.apps, workers=plan.worker_nodes, actions=web_actions(cl, plan),
                  release=plan.release, health_timeout=plan.options.health_timeout, then=gate)


def deploy(cl: Cluster, source: Source, opts: DeployOptions, *, now: datetime | None = None) -> str | None:
    """Deploy `source`; the release id, or None when every node already runs it (or --dry-run)."""
    release = release_id(now or utc_now(), source.sha)
    timer = Timer()
    if opts.dry_run:
        _dry_run(cl, source, opts, release)
        return None
    with guarded(cl, release, opts.action, break_lock=opts.break_lock) as guard:
        states = timer.step("state", lambda: gather(cl, _nodes(cl, opts)))
        plan = make_plan(cl, source, opts, states, release)
        if up_to_date(cl, plan):
            cl.out(f"already deployed: every node runs this code (release {plan.current(plan.involved[0].name)}"
                   f"; HEAD {source.short}); nothing to do (--force deploys anyway)")
            return None
        for line in describe_plan(cl, plan):
            cl.out(line)
        run_stages(cl, plan, timer, guard)
        return release


def run_stages(cl: Cluster, plan: Plan, timer: Timer, guard: Guard) -> None:
    """Every stage in order, then prune and audit; a failure takes the failure path."""
    switched: list[Member] = []
    try:
        for name, stage in before_switch(plan):
            timer.step(name, lambda: stage(cl, plan))
        timer.step("switch", lambda: stages.switch(cl, plan.involved, plan.release, switched))
        timer.step("reload+health", lambda: publish(cl, plan))
    except Exception as exc:
        failed(cl, plan, timer, guard, exc, switched)
    timer.step("prune", lambda: stages.prune(cl, plan))
    guard.audit(_record(plan, "ok", timer))
    cl.out(f"deployed {plan.release} ({plan.source.short}) to {len(plan.involved)} node(s) in "
           f"{timer.total:.1f} s ({timer.summary()})")


def _nodes(cl: Cluster, opts: DeployOptions) -> list[Member]:
    code, static = involved(cl, opts.component)
    return code + static


def _dry_run(cl: Cluster, source: Source, opts: DeployOptions, release: str) -> None:
    plan = make_plan(cl, source, opts, gather(cl, _nodes(cl, opts)), release)
    held = read_lock(cl)
    cl.out("dry run: nothing is changed. Would deploy:")
    for line in describe_plan(cl, plan):
        cl.out(line)
    if up_to_date(cl, plan):
        cl.out("(every node already runs this code: a real run does nothing; --force deploys anyway)")
    if held is not None:
        cl.out(held_message(held, f"{cl.anchor.name}:{cl.layout.lock_dir}"))


def _record(plan: Plan, result: str, timer: Timer, detail: str = "") -> AuditRecord:
    before = plan.before[(plan.code or plan.static)[0].name]
    cur = before.current_info
    return AuditRecord(at=iso(utc_now()), who=whoami(), action=plan.options.action, result=result,
                       from_release=before.current, to_release=plan.release,
                       from_sha=cur.sha if cur else None, to_sha=plan.source.sha, component=plan.options.component,
                       seconds=round(timer.total, 1), detail=detail)


# --- the failure path ---------------------------------------------------------------------------------

def _says_previous_serves(exc: Exception) -> bool:
    return isinstance(exc, PreviousServes) or (isinstance(exc, HostFailures) and exc.any_is(PreviousServes))


def failed(cl: Cluster, plan: Plan, timer: Timer, guard: Guard, exc: Exception, switched: list[Member]) -> NoReturn:
    """After the switch: back to the previous release (automatic rollback). Before it: the new release
    goes, and the error says that the previous one keeps serving. Audited either way."""
    if switched:
        detail = auto_rollback(cl, plan, switched, exc)
        rolled_back = any(plan.current(m.name) for m in switched)   # a first deploy has nothing to go back to
        guard.audit(_record(plan, "rolled-back" if rolled_back else "failed", timer, detail))
        raise DeployError(detail) from None
    stages.remove_release(cl, plan.involved, plan.release)
    guard.audit(_record(plan, "failed", timer, str(exc)))
    if not _says_previous_serves(exc) and any(plan.current(m.name) for m in plan.involved):
        # e.g. an SSH connection lost during pip: say what the site is doing now
        raise DeployError(f"{exc}\nnothing was switched: the previous release keeps serving") from None
    raise exc


def auto_rollback(cl: Cluster, plan: Plan, switched: list[Member], error: Exception) -> str:
    """After the switch something failed: back to each node's previous current, reload, drop the release."""
    cl.out(f"deploy of {plan.release} failed after the switch: rolling back")
    back = [m for m in switched if plan.current(m.name)]
    lost = [m.name for m in switched if not plan.current(m.name)]
    notes = [_back_to_previous(cl, plan, back)] if back else []
    if lost:
        notes.append(f"no previous release on {', '.join(lost)} (first deploy): left on {plan.release}")
    else:
        stages.remove_release(cl, plan.involved, plan.release)
    return f"deploy of {plan.release} failed: {error}\n" + "\n".join(notes)


def _back_to_previous(cl: Cluster, plan: Plan, back: list[Member]) -> str:
    """Switch `back` to the releases they ran before, reload them and wait for their health; what happened."""
    by_release: dict[str, list[Member]] = {}
    for m in back:
        previous = plan.current(m.name)
        if previous is not None:
            by_release.setdefault(previous, []).append(m)
    try:
        code = [m for m in back if m in plan.code]
        apps = [m for m in code if m.role == "app"]
        running = gather(cl, apps)        # before switching back: the venv gunicorn's master runs now
        for rel, members in by_release.items():
            stages.switch(cl, members, rel)
        actions = {m.name: reload_action(cl.layout, running[m.name], _venv_of(plan.before[m.name])) for m in apps}
        reload.reload(cl, apps=apps, workers=[m for m in code if m.role == "worker"], actions=actions,
                      release=next(iter(by_release)), health_timeout=plan.options.health_timeout)
        releases = {plan.current(m.name) for m in apps}
        if len(releases) == 1:
            health.gate(cl, releases.pop(), min(plan.options.health_timeout, 30), apps)
        return f"rolled back to {', '.join(sorted(by_release))}; it serves again"
    except Exception as exc:  # say so: the operator must act
        return f"ROLLBACK INCOMPLETE: {exc}"


def _venv_of(state: NodeState) -> str:
    """The venv id of the node's current release ('' when unknown)."""
    info = state.current_info
    return (info.venv if info else None) or ""
