"""configure a cluster: nodes from the cloud, templates rendered locally, every host converged in parallel.

`configure_cluster(cfg, ec2, role=..., dry_run=...)` is what `fab configure`
(and deploy's whip-up-full-system) calls.  Per host: ONE facts command, a pure
plan, then one command per stage that has work (none when the host is
already right).  Every template is rendered before any host is contacted, so
a template error stops everything with nothing uploaded.  Failures are
collected per host and raised together (`remote.HostFailures`) after every
host's summary line is printed.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from typing import Collection

from .. import inventory
from ..layout import DB_ROLE
from ..nodes import Node, find_nodes
from ..remote import HostFailures, HostOutcome, Progress, RemoteError, on_hosts
from ..tls import stage as tls_stage
from ..vault import secret, stored
from ..ssh import connect
from .apply import Runner, StageFailed, apply_plan, read_files
from .desired import desired_state
from .facts import facts_command, parse_facts
from .lock import ClusterLock, anchor_of, cluster_lock
from .plan import Plan, make_plan
from .slotsync import includes_upstream, live_slots, refresh_changed, upstream_files, web_program_changed
from .report import HostResult, dry_run_report, service_runs, summary_line
from .templates import TemplateError, environment, render_role_files
from .want import Desired


class ConfigureError(Exception):
    """configure cannot start (no nodes, no templates dir); the message says what to do."""


def select_nodes(cfg, nodes: list[Node], role: str | Collection[str] | None) -> tuple[list[Node], list[str]]:
    """The nodes to configure (of `role`, or of those roles, or all), and notes about nodes that are skipped."""
    notes = []
    targets = []
    roles = {role} if isinstance(role, str) else role
    for node in nodes:
        if roles is not None and node.role not in roles:
            continue
        if node.role not in cfg.role_names:
            notes.append(f"{node.name}: role {node.role!r} is not in {cfg.path.name}; skipped")
            continue
        targets.append(node)
    return targets, notes


def desired_for(cfg, targets: list[Node], nodes: list[Node], *, dry_run: bool,
                live: dict[str, str] | None = None) -> dict[str, Desired]:
    """Render every target's templates (TemplateError before any host is contacted) into its Desired; with
    the proxies' upstream file where a site includes it, naming each app node's live slot (`live`: read
    from the app nodes under the lock; none: slot a's port)."""
    if not cfg.configure.templates_dir.is_dir():
        raise ConfigureError(f"{cfg.path.name}: configure.templates_dir: {cfg.configure.templates_dir} "
                             "is not a directory")
    env = environment(cfg.configure.templates_dir, cfg.cluster.state_dir / ".cache")
    password = None
    if any(n.role == DB_ROLE for n in targets):
        # generated once (0600, local); a dry run generates nothing and uses it only if it exists
        password = stored(cfg).get("db_password") if dry_run else secret(cfg, "db_password")
    files = {n.instance_id: upstream_files(cfg, render_role_files(cfg, n, nodes, env), nodes, live or {})
             for n in targets}
    return {n.instance_id: desired_state(cfg, n, files[n.instance_id],
                                         db_password=password if n.role == DB_ROLE else None)
            for n in targets}


def converge_host(cfg, node: Node, want: Desired, *, dry_run: bool, progress: Progress,
                  secrets: list[str], after_stage=None, before_change=None, connect_to=None) -> HostResult:
    """Facts, plan, then apply (or report, on a dry run) on one host; never raises: errors go in the result.

    Installing packages creates files and (under systemd) starts services, so after a packages stage the
    facts are read once more and the rest is planned again: a cold host costs one more command, an
    up-to-date one exactly one (the facts). `after_stage(stage)` runs after each stage applied (the deploy
    lock taken on a first configure, `lock.ClusterLock.after_stage`); `connect_to`: ssh.connect's stand-in
    (sshpool.Connections.connect: the run's connection to that host)."""
    result = HostResult(node.name, node.role, dry_run=dry_run)
    start = time.monotonic()
    runner = None
    say = lambda stage, message="": progress(node.name, stage, message)  # noqa: E731
    salt = os.urandom(16)
    try:
        if node.state != "running":
            raise ConfigureError(f"{node.name} is {node.state}, not running")
        conn = (connect_to or connect)(cfg, node)
        runner = Runner(conn)
        try:
            def plan_from_facts(again: bool = False) -> tuple[Plan, str]:
                result.stage = "facts"
                say("facts", "again, after installing packages" if again else "")
                facts = parse_facts(runner(facts_command(want.facts_request()), step="facts").stdout)
                result.stage = "plan"
                mine = want.for_host(facts.host_values)
                plan = make_plan(mine, facts, salt=salt)
                if not plan.stage("packages"):
                    check_host_values(node, mine)
                return plan, facts.init

            plan, init = plan_from_facts()
            result.plan = plan
            result.services = service_runs(plan)
            say("plan", f"{plan.changes} to change, {len(plan.ok)} ok" if plan.actions
                else f"already ok ({len(plan.ok)} checked)")
            if dry_run:
                olds = read_files(runner, [w.file.path for w in plan.writes if w.old_sha256 is not None])
                result.report = dry_run_report(node.name, plan, olds, secrets)
            elif plan.actions:
                if before_change is not None:
                    before_change()          # the cloud's list confirmed before anything changes
                _apply(runner, plan, init, result, progress=say, replan=plan_from_facts, after=after_stage)
            result.stage = None
        finally:
            conn.close()
    except Exception as exc:  # collected per host; the caller reports every host, then raises them together
        result.error, result.exception = str(exc) or type(exc).__name__, exc
        if not result.failed:
            result.failed = result.plan.changes - result.changed if result.plan else 1
    result.commands = runner.commands if runner else 0
    result.seconds = time.monotonic() - start
    return result


def check_host_values(node: Node, want: Desired) -> None:
    """ConfigureError when a template uses a host value the host does not have (once its packages are in)."""
    for name, where in want.missing_host_values().items():
        raise ConfigureError(f"{', '.join(where)}: uses host.{name}, but {node.name} has no {name} installed "
                             f"(/etc/postgresql is empty); add {name} to roles.{node.role}.packages")


def _apply(runner: Runner, plan: Plan, init: str, result: HostResult, *, progress, replan, after=None) -> None:
    """Apply `plan` on one host, counting into `result`: a packages stage first, then `replan()` (facts read
    again) and the rest; on a failed stage, what it and the later stages would have changed counts as failed."""
    try:
        if plan.stage("packages"):
            result.changed += apply_plan(runner, plan, init, stages=["packages"], progress=progress)
            installed = plan.stage("packages")
            plan, init = replan(again=True)
            if plan.stage("packages"):
                raise ConfigureError("still missing after apt-get install: "
                                     + ", ".join(a.describe() for a in plan.stage("packages")))
            result.plan = Plan(tuple(installed) + plan.actions, plan.ok, plan.sources)
            result.services = service_runs(plan)
        result.changed += apply_plan(runner, plan, init, progress=progress, after=after)
    except StageFailed as exc:
        result.changed += exc.done
        result.stage = exc.stage
        result.failed = sum(a.count for s in plan.stages[plan.stages.index(exc.stage):] for a in plan.stage(s))
        raise exc.__cause__ from None


def _host_error(r: HostResult) -> ConfigureError:
    """A failed host's error, prefixed by its stage unless it already names it (a command of that step)."""
    names_stage = isinstance(r.exception, RemoteError) and r.exception.step == r.stage
    error = ConfigureError((f"{r.stage}: " if r.stage and not names_stage else "") + (r.error or ""))
    error.__cause__ = r.exception
    return error


def _targets(cfg, nodes: list[Node], role: str | None, roles: Collection[str] | None, out) -> list[Node]:
    """The nodes to converge (notes printed on those skipped); ConfigureError when there are none."""
    targets, notes = select_nodes(cfg, nodes, role if role is not None else roles)
    for note in notes:
        print(note, file=out)
    if not targets:
        raise ConfigureError(f"cluster {cfg.cluster.name} has no {role + ' ' if role else ''}nodes; "
                             "run `fab provision` first")
    return targets


def configure_cluster(cfg, ec2, *, role: str | None = None, dry_run: bool = False, out=None,
                      quiet: bool = False, wait: float | None = None, break_lock: bool = False,
                      nodes: list[Node] | None = None, confirm=None, connect=None,
                      roles: Collection[str] | None = None, lock: ClusterLock | None = None,
                      connections=None) -> list[HostResult]:
    """Converge the cluster's nodes (of `role`, or of `roles`, or all) under the deploy lock (refused while a
    deploy holds it, or waited for, up to `wait` seconds); HostFailures if any host failed.

    `nodes`: the cluster's nodes as listed before (configure/seen.py), with `confirm()` raising NodesChanged
    when the cloud's own list differs, called before the first change and at the end; `connect()` makes the
    ec2 client where one is needed and `ec2` is None; `connections` (sshpool.Connections): every host's
    connection opened once, all handshakes started before the templates are rendered. `lock`: a lock
    opened (and later closed) by the caller around several runs (whip-up's pipeline, `cluster_lock(...,
    shared=True)`)."""
    start = time.monotonic()
    out = out or sys.stdout
    if role is not None:
        cfg.role(role)   # ConfigError for an unknown role, before the cloud is asked
    if nodes is None:
        nodes = find_nodes(ec2, cfg.cluster.name)
        inventory.save(cfg, nodes)           # the cloud's answer: the next run starts from it
    targets = _targets(cfg, nodes, role, roles, out)
    ssh_to = connections.connect if connections is not None else None
    if connections is not None:
        connections.start(targets + [a for a in (anchor_of(nodes),) if a is not None])
    wants = desired_for(cfg, targets, nodes, dry_run=dry_run)
    if not dry_run:
        tls_stage.prepare(cfg, targets)      # with TLS: the files nginx's check needs are on the proxies
    secrets = [v for v in stored(cfg).values() if v]
    progress = Progress(out=out, quiet=quiet)
    say = lambda line: print(line, file=out, flush=True)   # noqa: E731
    held = nullcontext(lock) if lock is not None else cluster_lock(
        cfg, nodes, wait=wait, break_lock=break_lock, dry_run=dry_run, out=say, connect_to=ssh_to)
    with held as lock:
        upstream = [n for n in targets if includes_upstream(cfg, wants[n.instance_id].files)]
        if upstream:                         # the proxies again, with the live slots read under the lock
            wants = {**wants, **desired_for(cfg, upstream, nodes, dry_run=dry_run, live=live_slots(cfg, nodes, ssh_to))}
        outcomes = on_hosts(targets, lambda n: converge_host(cfg, n, wants[n.instance_id], dry_run=dry_run,
                                                              progress=progress, secrets=secrets,
                                                              after_stage=lock.after_stage(n), before_change=confirm,
                                                              connect_to=ssh_to))
        results, failed = _results(outcomes, dry_run)
        try:
            if confirm is not None:          # the cloud's list: NodesChanged (start again) if it is not `nodes`
                confirm(settled=not failed)  # (a trusted list's run that changed nothing asks nothing)
            changed = web_program_changed(cfg, results)
            if not dry_run and not failed and changed:   # a changed web program reaches gunicorn by a slot switch
                refresh_changed(cfg, ec2 if ec2 is not None or connect is None else connect(), changed, out)
        finally:
            lock.audit(results, role=role, seconds=time.monotonic() - start)
    if dry_run:
        for r in results:
            if r.report:
                print(r.report, file=out)
    for r in results:
        print(summary_line(r), file=out)
    if failed:
        raise HostFailures("configure", failed)
    return results


def _results(outcomes: list[HostOutcome], dry_run: bool) -> tuple[list[HostResult], list[HostOutcome]]:
    """Every host's result, and the failed ones as outcomes carrying their error (for HostFailures)."""
    results: list[HostResult] = []
    failed: list[HostOutcome] = []
    for o in outcomes:
        r = o.value if o.ok else HostResult(o.node.name, o.node.role, dry_run=dry_run, error=o.message,
                                            exception=o.error)
        results.append(r)
        if r.error:
            failed.append(HostOutcome(o.node, False, error=_host_error(r)))
    return results, failed


__all__ = ["ConfigureError", "TemplateError", "configure_cluster", "converge_host"]
