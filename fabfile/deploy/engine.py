"""The deploy, as a short list of named stages and its failure path.

    lock -> state of every node -> plan
    -> code (push/fetch + extract, .env, venv)
    -> collectstatic + migrate (app node 0) -> static to proxies, while every app node boots the new
       release in its idle gunicorn slot and it answers its health path there, before any traffic
    -> switch (`current`, the proxies' upstream: a graceful nginx reload) -> the health gate -> celery's
       warm restart -> the old slots drained, kept warm -> prune -> audit line -> unlock (always)

Before the switch a failure stops the booted slots, removes the new release and leaves the previous one
serving; after it, the nodes go back to their previous slot, still warm (automatic rollback). The stages
are in `stages`, `switchover` and `reload`; rollback on request is `rollback`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable, NoReturn

from ..backup.run import restore_point
from ..remote import HostFailures
from . import health, reload, stages, switchover, verify
from .cluster import Cluster, Member, Timer, at_once, gather
from .errors import DeployError, PreviousServes
from .guard import Guard, guarded, read_lock
from .lock import AuditRecord, held_message, iso, utc_now, whoami
from .planning import DeployOptions, Plan, describe_plan, involved, make_plan, up_to_date
from .releases import release_id
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
    """Static files to the proxies while every app node boots the new release in its idle slot."""
    at_once(lambda: stages.static_to_proxies(cl, plan),
            lambda: switchover.boot_all(cl, plan.apps, plan.release, plan.before, plan.booted))


def switch(cl: Cluster, plan: Plan, switched: list[Member]) -> None:
    """App nodes (`current`, the live slot), then the proxies (their upstream: from here the new release
    has the traffic), then the workers' `current`."""
    if plan.web:
        switchover.switch_apps(cl, plan.apps, plan.booted, plan.release, switched)
        switchover.switch_proxies(cl, plan.before, plan.booted, plan.release, plan.static, switched)
    if plan.worker_nodes:
        stages.switch(cl, plan.worker_nodes, plan.release, switched)


def publish(cl: Cluster, plan: Plan) -> None:
    """The health gate through the new slots, then celery's warm restart (only once the web tier is healthy)."""
    if plan.web:
        health.gate(cl, plan.release, plan.options.health_timeout, plan.apps, plan.booted)
    if plan.worker_nodes:
        reload.workers(cl, plan.worker_nodes)


def drain(cl: Cluster, plan: Plan) -> None:
    """The slots that served before: kept warm for a rollback (app.keep_warm), then stopped."""
    if plan.web:
        switchover.drain_all(cl, plan.apps, {m.name: plan.before[m.name].live for m in plan.apps
                                             if plan.before[m.name].live and m.name in plan.booted})


def deploy(cl: Cluster, source: Source, opts: DeployOptions, *, now: datetime | None = None,
           held: Guard | None = None, db_ready: Callable[[], None] | None = None) -> str | None:
    """Deploy `source`; the release id, or None when every node already runs it (or --dry-run).

    `held`: the lock, already held by the caller (whip-up's pipeline). `db_ready()`: returns once the
    database can be used (whip-up configures the db node meanwhile), called before the first stage that
    uses it (`DB_STAGES`)."""
    release = release_id(now or utc_now(), source.sha)
    timer = Timer()
    if opts.dry_run:
        _dry_run(cl, source, opts, release)
        return None
    with guarded(cl, release, opts.action, break_lock=opts.break_lock, held=held) as guard:
        states = timer.step("state", lambda: gather(cl, _nodes(cl, opts)))
        plan = make_plan(cl, source, opts, states, release)
        if up_to_date(cl, plan):
            cl.out(f"already deployed: every node runs this code (release {plan.current(plan.involved[0].name)}"
                   f"; HEAD {source.short}); nothing to do (--force deploys anyway)")
            return None
        for line in describe_plan(cl, plan):
            cl.out(line)
        cl.confirm()        # opened from the saved node list: the cloud's must agree before anything changes
        run_stages(cl, plan, timer, guard, db_ready)
        return release


# the stages that use the database (its first one waits for `db_ready`); the code stage never does
DB_STAGES = ("settings check", "collectstatic+migrate", "release command", "migrations check")


def run_stages(cl: Cluster, plan: Plan, timer: Timer, guard: Guard, db_ready: Callable[[], None] | None = None
               ) -> None:
    """Every stage in order, then prune and audit; a failure takes the failure path."""
    switched: list[Member] = []
    try:
        for name, stage in before_switch(plan):
            if name in DB_STAGES and db_ready is not None:
                timer.step("database ready", db_ready)
                db_ready = None
            if name == "collectstatic+migrate":     # a backup first when there are migrations to apply
                timer.step("restore point", lambda: restore_point(cl, plan))
            timer.step(name, lambda: stage(cl, plan))
        timer.step("switch", lambda: switch(cl, plan, switched))
        timer.step("health+workers", lambda: publish(cl, plan))
    except Exception as exc:
        failed(cl, plan, timer, guard, exc, switched)
    timer.step("drain", lambda: drain(cl, plan))
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
    switchover.stop_booted(cl, plan.booted)
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
    """`back` to the releases they ran before: the app nodes to their previous slot (still up: the drain
    comes after the gate), the proxies' upstream with it, the workers restarted; what happened."""
    try:
        apps = [m for m in back if m.role == "app"]
        previous = {m.name: plan.before[m.name].live for m in apps if plan.before[m.name].live}
        for m in apps:
            if m.name in previous:     # else no slot served before (a node deployed before the slots)
                switchover.switch_apps(cl, [m], previous, plan.current(m.name) or "")
        if plan.web:
            switchover.switch_proxies(cl, plan.before, previous, _common(plan, plan.static), plan.static)
        workers = [m for m in back if m.role == "worker"]
        for m in workers:
            stages.switch(cl, [m], plan.current(m.name) or "")
        if workers:
            reload.workers(cl, workers)
        switchover.stop_booted(cl, {m.name: plan.booted[m.name] for m in apps if m.name in plan.booted})
        releases = {plan.current(m.name) for m in apps}
        if len(releases) == 1 and apps:
            health.gate(cl, releases.pop(), min(plan.options.health_timeout, 30), apps, previous)
        return f"rolled back to {', '.join(sorted({plan.current(m.name) or '' for m in back}))}; it serves again"
    except Exception as exc:  # say so: the operator must act
        return f"ROLLBACK INCOMPLETE: {exc}"


def _common(plan: Plan, members: list[Member]) -> str | None:
    """The release every member ran before (None when they differ: `current` is left as it is)."""
    releases = {plan.current(m.name) for m in members}
    return releases.pop() if len(releases) == 1 else None
