"""Thin runners: the deploy, rollback and listing steps over pinned SSH, in parallel per node.

Every decision comes from `releases`/`prompts` (pure) and every command from
`commands`; this module only sequences them, runs them (`remote.run`,
`remote.on_hosts`) and reports.  A deploy:

    lock (anchor node) -> state of every node -> code (push/fetch + extract) -> .env -> venv
    -> collectstatic + migrate (app node 0) -> static to proxies, and /health of the new release on every
    app node in a Python process (before any traffic) -> switch `current` -> reload
    -> health gate (every app node's /health is 200 with the new release, or automatic rollback)
    -> prune -> audit line -> unlock (always, in `finally`)

Before the switch a failure removes the new release and leaves the previous one serving.
"""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable, Iterable

from .. import inventory
from ..config import Config
from ..inventory import Lookup
from ..nodes import Node, find_nodes
from ..remote import HostFailures, Progress, RemoteError, on_hosts, raise_failures, run
from ..vault import secret
from ..ssh import connect
from ..state import cluster_dir, ensure_cluster_dir
from . import commands
from .errors import DeployError, LockHeld, NodesChanged
from ..layout import DB_ROLE, WEB_PORT, Layout, env_text
from .lock import (AuditRecord, LockInfo, describe_audit, format_audit, format_lock, held_message, iso,
                   parse_audit, parse_lock, utc_now, whoami)
from .prompts import COMPONENTS
from .releases import (SHA, NodeState, VenvPlan, check_release_id, in_use, master_venv, migration_files_missing,
                       parse_state, release_id, releases_to_delete, same_code, upgrade_spec, venv_plan,
                       web_reload_action)
from .source import Source, push

ROLES = ("proxy", "app", "worker")
# A restart refuses connections for a moment; nginx then skips that app node for its fail_timeout (10 s in
# configure's site). A rolling restart waits that long before the next node, or nginx would find none alive.
ROLLING_PAUSE = 11.0
# the roles a component's deploy connects to (app node 0 holds the lock and the audit log)
COMPONENT_ROLES = {"web": ("proxy", "app"), "workers": ("app", "worker"), "all": ROLES}
HEALTH_TIMEOUT = 60.0
HEALTH_POLL = 0.05        # between two /health probes of a node (each one an SSH command to the proxy, ~15 ms)


@dataclass
class Member:
    """A node deploy works on, with its open, pinned connection."""
    node: Node
    conn: object

    @property
    def name(self) -> str:
        return self.node.name


@dataclass
class Cluster:
    cfg: Config
    layout: Layout
    proxies: list[Member]
    apps: list[Member]
    workers: list[Member]
    db: Node | None
    broker: Node | None                  # worker node 0: redis, the celery broker (connected or not)
    progress: Progress
    out: Callable[[str], None] = print
    # started from the inventory: the cloud's own list, still coming (see `confirm`)
    lookup: Lookup[list[Node]] | None = None
    seen: list[Node] | None = None

    def confirm(self) -> None:
        """Before the first change: the cloud's list must be the one the cluster was opened from.
        NodesChanged if not (the caller starts again from the cloud's list); a no-op after a fresh lookup."""
        if self.lookup is None:
            return
        fresh, self.lookup = self.lookup.result(), None
        inventory.save(self.cfg, fresh)
        if not inventory.same(self.seen or [], fresh):
            raise NodesChanged(f"the cluster's nodes changed since {inventory.path(self.cfg)} was written")

    @property
    def members(self) -> list[Member]:
        return self.proxies + self.apps + self.workers

    @property
    def anchor(self) -> Member:
        """Where the lock and the audit log live: app node 0 (worker node 0 without app nodes)."""
        if self.apps:
            return self.apps[0]
        if self.workers:
            return self.workers[0]
        raise DeployError(f"cluster {self.cfg.cluster.name} has no app or worker node: nothing to deploy to "
                          f"(fab provision)")

    def role_of(self, member: Member) -> str:
        return member.node.role

    def close(self) -> None:
        for m in self.members:
            try:
                m.conn.close()
            except Exception:  # closing is best effort
                pass


def open_cluster(cfg: Config, ec2, *, progress: Progress | None = None, out: Callable[[str], None] = print,
                 roles: Iterable[str] = ROLES, seen: list[Node] | None = None,
                 lookup: Lookup[list[Node]] | None = None) -> Cluster:
    """The cluster's proxy, app and worker nodes, each connected (in parallel) over pinned SSH.

    The nodes come from the cloud (`ec2`), or from `seen` (the inventory) while `lookup` asks the cloud:
    then the cluster must `confirm()` before changing anything."""
    if seen is None:
        nodes = find_nodes(ec2, cfg.cluster.name)
        inventory.save(cfg, nodes)
    else:
        nodes = seen
    wanted = set(roles)
    not_running = [n for n in nodes if n.role in wanted and n.state != "running"]
    if not_running:
        raise DeployError("nodes not running: " + ", ".join(f"{n.name} ({n.state})" for n in not_running)
                          + "; start them or run fab provision")
    chosen = [n for n in nodes if n.role in wanted and n.state == "running"]
    if not chosen:
        raise DeployError(f"cluster {cfg.cluster.name} has no running proxy, app or worker node; "
                          f"run fab provision (or fab whip-up-full-system)")

    def open_one(node: Node):
        conn = connect(cfg, node)
        conn.open()
        return conn

    outcomes = on_hosts(chosen, open_one)
    opened = [o for o in outcomes if o.ok]
    try:
        raise_failures("SSH connect", outcomes)
    except HostFailures:
        for o in opened:
            o.value.close()
        raise
    members = [Member(o.node, o.value) for o in outcomes]
    db = next((n for n in nodes if n.role == "db" and n.state == "running"), None)
    broker = next((n for n in nodes if n.role == "worker" and n.state == "running"), None)
    return Cluster(cfg, Layout.of(cfg), [m for m in members if m.node.role == "proxy"],
                   [m for m in members if m.node.role == "app"], [m for m in members if m.node.role == "worker"],
                   db, broker, progress or Progress(), out, lookup, seen)


def each(members: list[Member], fn: Callable[[Member], object], what: str) -> dict[str, object]:
    """fn(member) on every member in parallel: {node name: value}; HostFailures naming each failed node."""
    by_name = {m.name: m for m in members}
    outcomes = on_hosts([m.node for m in members], lambda node: fn(by_name[node.name]))
    raise_failures(what, outcomes)
    return {o.node.name: o.value for o in outcomes}


def each_best_effort(members: list[Member], fn: Callable[[Member], object]) -> dict[str, str]:
    """Like `each`, but only the errors come back ({node name: error}): for cleanups."""
    by_name = {m.name: m for m in members}
    outcomes = on_hosts([m.node for m in members], lambda node: fn(by_name[node.name]))
    return {o.node.name: o.error or "" for o in outcomes if not o.ok}


def programs_of(cl: Cluster, member: Member) -> tuple[str, ...]:
    role = cl.role_of(member)
    if role == "app":
        return (cl.layout.web_program,)
    if role == "worker":
        return (cl.layout.worker_program,)
    return ()


def gather(cl: Cluster, members: list[Member], *, migrations: Iterable[str] = ()) -> dict[str, NodeState]:
    """Each member's releases, `current` and programs (one command per node, in parallel); the nodes
    named in `migrations` also list each release's migration files."""
    with_migrations = set(migrations)

    def one(m: Member) -> NodeState:
        cmd = commands.state(cl.layout, programs_of(cl, m), migrations=m.name in with_migrations)
        st = parse_state(run(m.conn, cmd, step="read state").stdout)
        if not st.configured:
            raise DeployError(f"{cl.layout.root} does not exist: run fab configure first")
        return st

    return each(members, one, "reading the deploy state")


def fetched_source(cl: Cluster) -> Source:
    """Strategy git: the anchor node fetches app.branch; the commit and its requirements."""
    m, cfg = cl.anchor, cl.cfg
    out = run(m.conn, commands.fetch(cl.layout, cfg.app.repo, cfg.app.branch), step="git fetch").stdout
    sha = (out.strip().splitlines() or [""])[-1]
    if not SHA.match(sha):
        raise DeployError(f"{m.name}: git fetch of {cfg.app.repo} {cfg.app.branch} gave no commit: {out.strip()}")
    req = run(m.conn, commands.show_file(cl.layout, sha, cfg.app.requirements), step="read the requirements").stdout
    return Source("git", sha, "", req, None, cfg.app.branch)


# --- the lock ----------------------------------------------------------------------------------

@dataclass
class HeldLock:
    member: Member
    info: LockInfo
    released: bool = False


def acquire_lock(cl: Cluster, release: str, action: str, *, break_lock: bool = False) -> HeldLock:
    m = cl.anchor
    info = LockInfo.new(release, action)
    if break_lock:
        old = run(m.conn, commands.lock_break(cl.layout), step="break the deploy lock").stdout.strip()
        if old:
            cl.out(f"deploy lock taken over from {parse_lock(old).who} ({parse_lock(old).action} of "
                   f"{parse_lock(old).release or '?'} since {parse_lock(old).since or '?'})")
    r = run(m.conn, commands.lock_acquire(cl.layout), step="take the deploy lock", stdin=format_lock(info),
            check=False)
    if r.exited == commands.LOCK_HELD:
        raise LockHeld(held_message(parse_lock(r.stdout.strip()), f"{m.name}:{cl.layout.lock_dir}"))
    if r.exited != 0:
        raise RemoteError(m.name, "take the deploy lock", r.exited, (r.stdout or "") + (r.stderr or ""))
    return HeldLock(m, info)


def read_lock(cl: Cluster) -> LockInfo | None:
    text = run(cl.anchor.conn, commands.lock_read(cl.layout), step="read the deploy lock").stdout
    if not text.startswith("held"):
        return None
    return parse_lock(text[len("held"):].strip())


def release_lock(cl: Cluster, lock: HeldLock) -> None:
    if lock.released:
        return
    try:
        run(lock.member.conn, commands.lock_release(cl.layout, lock.info.token), step="release the deploy lock")
    except Exception as exc:  # reported; the deploy's own outcome matters more
        cl.out(f"warning: could not release the deploy lock on {lock.member.name}: {exc}; "
               f"the next deploy needs --break-lock")


def audit(cl: Cluster, record: AuditRecord, lock: HeldLock | None = None) -> None:
    """Append to shared/deploys.log on the anchor node (releasing `lock` in the same round trip) and to
    the local state dir."""
    line = format_audit(record)
    try:
        if lock is not None and lock.member is cl.anchor and not lock.released:
            run(cl.anchor.conn, commands.audit_and_unlock(cl.layout, lock.info.token),
                step="append to the audit log and release the lock", stdin=line)
            lock.released = True
        else:
            run(cl.anchor.conn, commands.audit_append(cl.layout), step="append to the audit log", stdin=line)
    except Exception as exc:
        cl.out(f"warning: audit log on {cl.anchor.name} not written: {exc}")
    try:
        ensure_cluster_dir(cl.cfg)
        with open(cluster_dir(cl.cfg) / "deploys.log", "a", encoding="utf-8") as f:
            f.write(line)
    except OSError as exc:
        cl.out(f"warning: local audit log not written: {exc}")


# --- options and plan --------------------------------------------------------------------------

@dataclass(frozen=True)
class DeployOptions:
    action: str = "deploy"               # deploy | quick-update: what the lock and audit log say
    component: str = "all"               # web | workers | all
    deps: bool | None = None             # None: reinstall when the requirements changed
    upgrade_django: bool = False
    force: bool = False                  # deploy even when every node already runs this commit
    break_lock: bool = False
    dry_run: bool = False
    health_timeout: float = HEALTH_TIMEOUT


@dataclass
class Plan:
    release: str
    source: Source
    options: DeployOptions
    web: bool
    workers: bool
    code: list[Member]                   # app/worker nodes: code, .env, venv
    static: list[Member]                 # proxy nodes: static + REVISION
    before: dict[str, NodeState]
    venvs: dict[str, VenvPlan] = field(default_factory=dict)
    reloads: dict[str, str] = field(default_factory=dict)   # app node -> hup | restart | start

    @property
    def involved(self) -> list[Member]:
        return self.static + self.code

    def current(self, name: str) -> str | None:
        return self.before[name].current


def involved(cl: Cluster, component: str) -> tuple[list[Member], list[Member]]:
    """(code nodes, static nodes) for a component: web = app (+ proxy static), workers = worker nodes."""
    if component not in COMPONENTS:
        raise DeployError(f"unknown component {component!r} (expected one of: {', '.join(COMPONENTS)})")
    web = component in ("web", "all")
    workers = component in ("workers", "all")
    code = (cl.apps if web else []) + (cl.workers if workers else [])
    if web and not cl.apps:
        raise DeployError(f"component {component}: cluster {cl.cfg.cluster.name} has no app node")
    if workers and not web and not cl.workers:
        raise DeployError(f"component workers: cluster {cl.cfg.cluster.name} has no worker node")
    return code, (cl.proxies if web else [])


def make_plan(cl: Cluster, source: Source, opts: DeployOptions, states: dict[str, NodeState],
              release: str) -> Plan:
    code, static = involved(cl, opts.component)
    plan = Plan(release, source, opts, opts.component in ("web", "all"), opts.component in ("workers", "all"),
                code, static, states)
    for m in code:
        st = states[m.name]
        plan.venvs[m.name] = venv_plan(st.current_info, source.requirements_hash, release, deps=opts.deps,
                                       upgrade_django=opts.upgrade_django, path=cl.layout.requirements)
    for m in code:
        if cl.role_of(m) == "app":
            running = states[m.name].programs.get(cl.layout.web_program)
            plan.reloads[m.name] = web_reload_action(running, master_venv(cl.layout, states[m.name],
                                                                           cl.layout.web_program),
                                                     plan.venvs[m.name].venv_id)
    return plan


def up_to_date(plan: Plan) -> bool:
    """Every involved node already runs this commit with these requirements, and nothing was asked for."""
    o = plan.options
    if o.force or o.upgrade_django or o.deps is True:
        return False
    for m in plan.involved:
        if not same_code(plan.before[m.name].current_info, plan.source.sha, plan.source.tree):
            return False
        if m.name in plan.venvs and plan.venvs[m.name].action != "reuse":
            return False
    return True


def describe_plan(cl: Cluster, plan: Plan) -> list[str]:
    lines = [f"release {plan.release} ({plan.source.strategy} {plan.source.sha[:12]}"
             + (f", {plan.source.prefix}/" if plan.source.prefix else "") + f"), component {plan.options.component}"]
    for m in plan.involved:
        cur = plan.current(m.name) or "(none)"
        what = [f"{cur} -> {plan.release}"]
        if m.name in plan.venvs:
            v = plan.venvs[m.name]
            what.append(f"venv: {v.action}" + (f" from {v.source}" if v.source else "") + f" ({v.reason})")
            if plan.options.upgrade_django:
                what.append("upgrade Django")
        if m.name in plan.reloads:
            action = plan.reloads[m.name]
            if plan.options.upgrade_django and action == "restart" and plan.venvs[m.name].action == "reuse":
                action = "restart (a HUP if Django is already the newest)"
            what.append(f"gunicorn: {action}")
        if cl.role_of(m) == "worker":
            what.append("celery: restart")
        if cl.role_of(m) == "proxy":
            what.append("static files")
        lines.append(f"  {m.name}: " + "; ".join(what))
    if plan.web:
        lines.append(f"  {cl.apps[0].name}: collectstatic, migrate (once, under the deploy lock)")
    gate = (f"/health of the new release before any traffic, then the health gate on "
            f"{', '.join(m.name for m in cl.apps)}" if plan.web else "no health gate (no web)")
    lines.append(f"  then: {gate}; keep {cl.cfg.app.keep_releases} releases")
    return lines


# --- the deploy ----------------------------------------------------------------------------------

class Timer:
    def __init__(self):
        self.start = time.monotonic()
        self.steps: list[tuple[str, float]] = []

    def step(self, name: str, fn: Callable[[], object]):
        t = time.monotonic()
        try:
            return fn()
        finally:
            self.steps.append((name, time.monotonic() - t))

    @property
    def total(self) -> float:
        return time.monotonic() - self.start

    def summary(self) -> str:
        return ", ".join(f"{name} {secs:.1f}" for name, secs in self.steps if secs >= 0.05)


def dotenv(cl: Cluster) -> str:
    if DB_ROLE not in cl.cfg.role_names:  # a one-node cluster: SQLite in shared/, kept across releases
        app_nodes = [m.name for m in cl.apps + cl.workers]
        if len(app_nodes) > 1:
            raise DeployError(f"roles.yaml has no {DB_ROLE} role, so the app uses SQLite on its node; that needs "
                              f"a single app or worker node, and there are {len(app_nodes)}: {', '.join(app_nodes)}")
        return env_text(cl.layout, secret_key=secret(cl.cfg, "django_secret_key"), db_password=None,
                        db_host=None, broker_host=cl.broker.private_ip if cl.broker else None)
    if cl.db is None or not cl.db.private_ip:
        raise DeployError(f"cluster {cl.cfg.cluster.name} has no running db node: the app needs its database")
    broker = cl.broker.private_ip if cl.broker else None
    return env_text(cl.layout, secret_key=secret(cl.cfg, "django_secret_key"),
                    db_password=secret(cl.cfg, "db_password"), db_host=cl.db.private_ip, broker_host=broker)


def deploy(cl: Cluster, source: Source, opts: DeployOptions, *, now: datetime | None = None) -> str | None:
    """Deploy `source`; the release id, or None when every node already runs it (or --dry-run)."""
    release = release_id(now or utc_now(), source.sha)
    timer = Timer()
    if opts.dry_run:
        states = gather(cl, involved(cl, opts.component)[0] + involved(cl, opts.component)[1])
        plan = make_plan(cl, source, opts, states, release)
        held = read_lock(cl)
        cl.out("dry run: nothing is changed. Would deploy:")
        for line in describe_plan(cl, plan):
            cl.out(line)
        if up_to_date(plan):
            cl.out("(every node already runs this code: a real run does nothing; --force deploys anyway)")
        if held is not None:
            cl.out(held_message(held, f"{cl.anchor.name}:{cl.layout.lock_dir}"))
        return None

    lock = acquire_lock(cl, release, opts.action, break_lock=opts.break_lock)
    try:
        states = timer.step("state", lambda: gather(cl, involved(cl, opts.component)[0]
                                                    + involved(cl, opts.component)[1]))
        plan = make_plan(cl, source, opts, states, release)
        if up_to_date(plan):
            cl.out(f"already deployed: every node runs this code (release {plan.current(plan.involved[0].name)}"
                   f"; HEAD {source.short}); nothing to do (--force deploys anyway)")
            return None
        for line in describe_plan(cl, plan):
            cl.out(line)
        _run_deploy(cl, plan, timer, lock)
        return release
    finally:
        release_lock(cl, lock)


def _anchor_state(cl: Cluster, plan: Plan) -> NodeState:
    return plan.before[(plan.code or plan.static)[0].name]


def _record(cl: Cluster, plan: Plan, result: str, timer: Timer, detail: str = "",
            to_release: str | None = None) -> AuditRecord:
    before = _anchor_state(cl, plan)
    cur = before.current_info
    return AuditRecord(at=iso(utc_now()), who=whoami(), action=plan.options.action, result=result,
                       from_release=before.current, to_release=to_release or plan.release,
                       from_sha=cur.sha if cur else None, to_sha=plan.source.sha, component=plan.options.component,
                       seconds=round(timer.total, 1), detail=detail)


def _run_deploy(cl: Cluster, plan: Plan, timer: Timer, lock: HeldLock | None = None) -> None:
    switched: list[Member] = []
    try:
        timer.step("code", lambda: _deliver(cl, plan))
        if plan.web:
            timer.step("collectstatic+migrate", lambda: _collectstatic_and_migrate(cl, plan))
            timer.step("static+health", lambda: _static_and_health_before_traffic(cl, plan))
        elif plan.workers:
            timer.step("migrations check", lambda: _migrations_applied(cl, plan))
        timer.step("switch", lambda: _switch(cl, plan, plan.involved, plan.release, switched))
        gate = (lambda: _health_gate(cl, plan.release, plan.options.health_timeout)) if plan.web else None
        timer.step("reload+health", lambda: _reload(cl, plan, after_web=gate))
    except Exception as exc:
        if switched:
            detail = _auto_rollback(cl, plan, switched, exc)
            audit(cl, _record(cl, plan, "rolled-back", timer, detail), lock)
            raise DeployError(detail) from None
        _remove_release(cl, plan, plan.involved)
        audit(cl, _record(cl, plan, "failed", timer, str(exc)), lock)
        if "keeps serving" not in str(exc) and any(plan.current(m.name) for m in plan.involved):
            # e.g. an SSH connection lost during pip: say what the site is doing now
            raise DeployError(f"{exc}\nnothing was switched: the previous release keeps serving") from None
        raise
    timer.step("prune", lambda: _prune(cl, plan))
    audit(cl, _record(cl, plan, "ok", timer), lock)
    cl.out(f"deployed {plan.release} ({plan.source.short}) to {len(plan.involved)} node(s) in "
           f"{timer.total:.1f} s ({timer.summary()})")


def _deliver(cl: Cluster, plan: Plan) -> None:
    """Code, .env and venv on every code node; an empty release (for static) on proxies later."""
    env = dotenv(cl)
    layout, source = cl.layout, plan.source

    def one(m: Member) -> None:
        if source.strategy == "push":
            run(m.conn, commands.init_mirror(layout), step="create the git mirror")
            push(cl.cfg, layout, m.node, source)
        else:
            sha = run(m.conn, commands.fetch(layout, cl.cfg.app.repo, cl.cfg.app.branch), step="git fetch"
                      ).stdout.strip().splitlines()[-1]
            if sha != source.sha:
                raise DeployError(f"{cl.cfg.app.branch} moved during the deploy ({source.short} -> {sha[:7]}); "
                                  f"deploy again")
        run(m.conn, commands.extract(layout, plan.release, source.sha, source.prefix, source.tree,
                                     plan.current(m.name)), step="check out the code")
        cl.progress(m.name, "code", f"{source.short} in releases/{plan.release}")
        changed = run(m.conn, commands.write_env(layout), step="write shared/.env", stdin=env).stdout.strip()
        if changed == "changed":
            cl.progress(m.name, ".env", "written (0600)")
        v = plan.venvs[m.name]
        t = time.monotonic()
        if v.action == "reuse":
            run(m.conn, commands.venv_reuse(layout, plan.release, v.source), step="reuse the venv")
        else:
            cl.progress(m.name, "venv", f"pip install ({v.reason})")
            run(m.conn, commands.venv_install(layout, plan.release, source.requirements_hash, v.venv_id),
                step="pip install", timeout=1800)
        cl.progress(m.name, "venv", f"{v.action}" + (f" from {v.source}" if v.source else "")
                    + f" in {time.monotonic() - t:.1f} s ({v.reason})")
        if plan.options.upgrade_django:
            _upgrade_django(cl, plan, m)

    each(plan.code, one, "delivering the code")


def _upgrade_django(cl: Cluster, plan: Plan, m: Member) -> None:
    """Upgrade Django within the requirements' constraint in the new venv; report old -> new. Unchanged,
    the venv keeps its content id, so gunicorn gets a HUP rather than a restart."""
    spec = upgrade_spec(plan.source.requirements, cl.layout.requirements)
    out = run(m.conn, commands.upgrade_django(cl.layout, plan.release, spec, plan.release),
              step="upgrade Django", timeout=900).stdout.strip().splitlines()[-1]
    before, _, after = out.partition(" ")
    cl.progress(m.name, "Django", f"{before} -> {after} (within {spec!r})"
                + (": already the newest" if before == after else ""))
    v = plan.venvs[m.name]
    if before == after and v.action == "reuse":
        info = plan.before[m.name].current_info
        plan.venvs[m.name] = replace(v, venv_id=info.venv if info and info.venv else v.venv_id)
        if m.name in plan.reloads:
            st = plan.before[m.name]
            plan.reloads[m.name] = web_reload_action(st.programs.get(cl.layout.web_program),
                                                     master_venv(cl.layout, st, cl.layout.web_program),
                                                     plan.venvs[m.name].venv_id)


def _on_app0(cl: Cluster, command: str, step: str, **kw):
    m = cl.apps[0]
    try:
        return run(m.conn, command, step=step, **kw)
    except RemoteError as exc:
        raise DeployError(f"{m.name}: {step} failed (exit {exc.exit_code}); the previous release keeps serving:\n"
                          + "\n".join(exc.output.strip().splitlines()[-25:])) from None


def _at_once(background: Callable[[], None], foreground: Callable[[], None]) -> None:
    """Both at the same time; once both ended, the foreground's error if it had one, else the background's."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(background)
        try:
            foreground()
        finally:
            other_error = other.exception()
    if other_error is not None:
        raise other_error


def _collectstatic_and_migrate(cl: Cluster, plan: Plan) -> None:
    """Both on app node 0, at once (collectstatic writes only the new release's static/)."""
    _at_once(lambda: _collectstatic(cl, plan), lambda: _migrate(cl, plan))


def _collectstatic(cl: Cluster, plan: Plan) -> None:
    out = _on_app0(cl, commands.collectstatic(cl.layout, plan.release), "collectstatic").stdout.strip()
    cl.progress(cl.apps[0].name, "collectstatic", out.splitlines()[-1] if out else "done")


def _migrate(cl: Cluster, plan: Plan) -> None:
    out = _on_app0(cl, commands.migrate(cl.layout, plan.release), "migrate", timeout=3600).stdout
    applied = [line.strip() for line in out.splitlines() if line.strip().startswith("Applying ")]
    cl.progress(cl.apps[0].name, "migrate", "; ".join(applied) if applied else "no migrations to apply")


# /health of the new release in a Python process on the app node (Django's test client, the real
# settings, database and shared/.env, the Host header the proxy's probe sends): before any request reaches it
HEALTH_BEFORE_TRAFFIC = """\
import json, django
django.setup()
from django.test import Client
r = Client(raise_request_exception=False).get("/health", HTTP_HOST=__HOST__)
body = b"".join(r.streaming_content) if r.streaming else r.content
print(json.dumps({"code": r.status_code, "body": body.decode("utf-8", "replace")[:2000]}))
"""


def _health_before_traffic(cl: Cluster, plan: Plan) -> None:
    """Every app node's new release answers /health with 200 while the previous one still serves: a
    release that fails it never receives a request (the gate after the switch stays, for what only shows
    under gunicorn)."""
    apps = [m for m in plan.code if cl.role_of(m) == "app"]

    def one(m: Member) -> None:
        host = f"{m.node.private_ip}:{WEB_PORT}"
        r = run(m.conn, commands.python_stdin(cl.layout, plan.release), step="/health before traffic",
                stdin=HEALTH_BEFORE_TRAFFIC.replace("__HOST__", repr(host)), check=False, timeout=120)
        found = _json_last_line(r.stdout or "")
        p = Probe(str(found.get("code", "000")), str(found.get("body", "")))
        if r.exited == 0 and _healthy(p, plan.release):
            cl.progress(m.name, "health", f"200 from release {plan.release} before any traffic")
            return
        output = ((r.stderr or "") + "\n" + (r.stdout or "")).strip().splitlines()
        log = [line for line in output if line.strip() and not line.startswith('{"code"')][-20:]
        served = p.release()
        why = (f"answered {p.code}" + (f" for release {served}" if served and served != plan.release else "")
               + f": {p.body[:500]}" if found else f"could not be asked (exit {r.exited})")
        raise DeployError(f"/health of release {plan.release} on {m.node.private_ip}:{WEB_PORT} {why}\n"
                          "last lines of its output:\n  " + ("\n  ".join(log) or "(empty)") + "\n"
                          "it never received traffic: the previous release keeps serving")

    each(apps, one, "health check before traffic")


def _static_and_health_before_traffic(cl: Cluster, plan: Plan) -> None:
    _at_once(lambda: _static_to_proxies(cl, plan), lambda: _health_before_traffic(cl, plan))


def _migrations_applied(cl: Cluster, plan: Plan) -> None:
    """workers only: refuse a release whose migrations the database lacks (web/all runs migrate)."""
    m = plan.code[0]
    r = run(m.conn, commands.migrate_check(cl.layout, plan.release), step="migrate --check", check=False)
    if r.exited != 0:
        raise DeployError(f"{m.name}: release {plan.release} has migrations the database lacks; "
                          f"deploy --component web (or all) first, which runs migrate:\n"
                          + "\n".join(((r.stdout or "") + (r.stderr or "")).strip().splitlines()[-10:]))


def _static_to_proxies(cl: Cluster, plan: Plan) -> None:
    if not plan.static:
        return
    packed = _on_app0(cl, commands.static_pack(cl.layout, plan.release), "pack static files").stdout.strip()

    def one(m: Member) -> None:
        run(m.conn, commands.static_unpack(cl.layout, plan.release, plan.source.sha, plan.source.tree,
                                           plan.current(m.name)), step="unpack static files", stdin=packed)
        cl.progress(m.name, "static", f"releases/{plan.release}/static ({len(packed) * 3 // 4 // 1024} kB packed)")

    each(plan.static, one, "copying static files to proxies")


def _switch(cl: Cluster, plan: Plan, members: list[Member], release: str, switched: list[Member]) -> None:
    def one(m: Member) -> None:
        run(m.conn, commands.switch(cl.layout, release), step="switch current")
        switched.append(m)

    each(members, one, "switching current")
    cl.out(f"current -> releases/{release} on {', '.join(m.name for m in members)}")


def rolling(actions: dict[str, str]) -> bool:
    """Restart app nodes one at a time: more than one, and a restart (not a HUP) among them."""
    return len(actions) > 1 and "restart" in actions.values()


def _reload(cl: Cluster, plan: Plan, actions: dict[str, str] | None = None, release: str | None = None,
            after_web: Callable[[], None] | None = None, workers: bool = True) -> None:
    """gunicorn by HUP/restart/start on app nodes (one at a time when restarting several), then `after_web`
    (the health gate); celery restarts meanwhile."""
    actions = actions if actions is not None else plan.reloads
    release = release or plan.release
    apps = [m for m in plan.code if cl.role_of(m) == "app"]
    workers = [m for m in plan.code if cl.role_of(m) == "worker"] if workers else []
    one_by_one = rolling({m.name: actions[m.name] for m in apps})

    def web(m: Member) -> None:
        action = actions[m.name]
        r = run(m.conn, commands.web(cl.layout, action), step=f"gunicorn {action}", check=False)
        text = ((r.stdout or "") + (r.stderr or "")).strip()
        if r.exited != 0 or "ERROR" in text:
            raise DeployError(f"{m.name}: supervisorctl ({action} {cl.layout.web_program}): {text}"
                              + (" (is the program configured? fab configure)" if "no such" in text else ""))
        cl.progress(m.name, "gunicorn", {"hup": "HUP: graceful reload on the new code",
                                         "restart": "restarted (new venv)", "start": "started"}[action])

    def worker(m: Member) -> None:
        r = run(m.conn, commands.worker_restart(cl.layout), step="celery restart", check=False)
        text = ((r.stdout or "") + (r.stderr or "")).strip()
        if r.exited != 0 or "ERROR" in text:
            raise DeployError(f"{m.name}: supervisorctl (restart {cl.layout.worker_program}): {text}")
        cl.progress(m.name, "celery", "restarted (warm shutdown, then start)")

    def all_web() -> None:
        if one_by_one:
            for i, m in enumerate(apps):   # one app node at a time: nginx sends requests to the others meanwhile
                if i:
                    cl.progress(m.name, "gunicorn", f"waiting {ROLLING_PAUSE:g} s: nginx skips a restarted node "
                                                    f"for its fail_timeout")
                    time.sleep(ROLLING_PAUSE)
                web(m)
                _health_gate(cl, release, plan.options.health_timeout, [m])
        elif apps:
            each(apps, web, "reloading gunicorn")
        if after_web is not None:
            after_web()

    if not workers:
        all_web()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:      # celery restarts overlap the web reload
        web_done = pool.submit(all_web)
        worker_error = None
        try:
            each(workers, worker, "restarting celery")
        except Exception as exc:
            worker_error = exc
        web_done.result()
        if worker_error is not None:
            raise worker_error


# --- the health gate -------------------------------------------------------------------------------

@dataclass
class Probe:
    code: str
    body: str

    def release(self) -> str | None:
        try:
            data = json.loads(self.body)
        except ValueError:
            return None
        value = data.get("release") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None


def probe(cl: Cluster, m: Member, timeout: float = 3) -> Probe:
    """GET /health of app node `m`, from proxy node 0 (the path nginx takes) or from the node itself."""
    via = cl.proxies[0] if cl.proxies else m
    r = run(via.conn, commands.health(m.node.private_ip, WEB_PORT, timeout), step="health check", check=False,
            timeout=timeout + 5)
    text = (r.stdout or "").rstrip("\n")
    body, _, code = text.rpartition("\n")
    if not code.isdigit():
        body, code = text, "000"
    if code == "000":
        body = (r.stderr or "").strip() or body
    return Probe(code, body)


def _healthy(p: Probe, release: str | None) -> bool:
    if p.code != "200":
        return False
    served = p.release()
    # an app that does not report a release id is judged by its status alone
    return release is None or served is None or served == release or not served[:1].isdigit()


def _health_gate(cl: Cluster, release: str | None, timeout: float, members: list[Member] | None = None) -> None:
    members = cl.apps if members is None else members
    deadline = time.monotonic() + timeout

    def one(m: Member) -> float:
        start = time.monotonic()
        last = None
        while True:
            last = probe(cl, m)
            if _healthy(last, release):
                return time.monotonic() - start
            if time.monotonic() >= deadline:
                break
            time.sleep(HEALTH_POLL)
        served = last.release()
        why = (f"answered {last.code}" + (f" for release {served}" if served and served != release else "")
               + f": {last.body[:500]}")
        tail = app_log_tail(cl, m)
        raise DeployError(f"/health on {m.node.private_ip}:{WEB_PORT} not healthy within {timeout:g} s; last "
                          f"{why}\n  last lines of the {cl.layout.web_program} log:\n    "
                          + tail.replace("\n", "\n    "))

    waited = each(members, one, "health check")
    for name, secs in waited.items():
        cl.progress(name, "health", f"200 from release {release} after {secs:.1f} s" if release else "200")


_ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^]]+\] "[A-Z]+ ')


def app_log_tail(cl: Cluster, m: Member, lines: int = 20) -> str:
    """The last lines of gunicorn's log on `m`, without access-log lines (the probes would crowd it)."""
    log = run(m.conn, commands.program_log(cl.layout, cl.layout.web_program, 30000), step="app log", check=False)
    text = ((log.stdout or "") + (log.stderr or "")).strip()
    kept = [line for line in text.splitlines() if not _ACCESS_LINE.match(line)]
    return "\n".join(kept[-lines:]) or "(empty)"


# --- failure paths ----------------------------------------------------------------------------------

def _auto_rollback(cl: Cluster, plan: Plan, switched: list[Member], error: Exception) -> str:
    """After the switch something failed: back to each node's previous current, reload, drop the release."""
    cl.out(f"deploy of {plan.release} failed after the switch: rolling back")
    back = [m for m in switched if plan.current(m.name)]
    lost = [m.name for m in switched if not plan.current(m.name)]
    notes = []
    if back:
        by_release: dict[str, list[Member]] = {}
        for m in back:
            by_release.setdefault(plan.current(m.name), []).append(m)
        try:
            for rel, members in by_release.items():
                _switch(cl, plan, members, rel, [])
            now = gather(cl, [m for m in back if m in plan.code])
            actions = {m.name: web_reload_action(now[m.name].programs.get(cl.layout.web_program),
                                                 master_venv(cl.layout, now[m.name], cl.layout.web_program),
                                                 (now[m.name].current_info.venv if now[m.name].current_info
                                                  else "") or "")
                       for m in back if cl.role_of(m) == "app"}
            sub = Plan(plan.release, plan.source, plan.options, plan.web, plan.workers,
                       [m for m in back if m in plan.code], [], plan.before)
            _reload(cl, sub, actions, release=next(iter(by_release)))
            prev = {plan.current(m.name) for m in back if cl.role_of(m) == "app"}
            if len(prev) == 1:
                _health_gate(cl, prev.pop(), min(plan.options.health_timeout, 30),
                             [m for m in back if cl.role_of(m) == "app"])
            notes.append(f"rolled back to {', '.join(sorted(by_release))}; it serves again")
        except Exception as exc:  # say so: the operator must act
            notes.append(f"ROLLBACK INCOMPLETE: {exc}")
    if lost:
        notes.append(f"no previous release on {', '.join(lost)} (first deploy): left on {plan.release}")
    else:
        _remove_release(cl, plan, plan.involved)
    return f"deploy of {plan.release} failed: {error}\n" + "\n".join(notes)


def _remove_release(cl: Cluster, plan: Plan, members: list[Member]) -> None:
    """Drop the new release where it is not current (best effort: pruning catches leftovers)."""
    def one(m: Member) -> None:
        st = parse_state(run(m.conn, commands.state(cl.layout), step="read state").stdout)
        if st.current != plan.release and plan.release in st.releases:
            run(m.conn, commands.remove_releases(cl.layout, [plan.release]), step="remove the failed release")

    errors = each_best_effort(members, one)
    for name, error in errors.items():
        cl.out(f"warning: {name}: failed release {plan.release} not removed: {error}")


def _prune(cl: Cluster, plan: Plan) -> None:
    keep = cl.cfg.app.keep_releases

    def one(m: Member) -> None:
        st = plan.before[m.name]
        names = set(st.releases) | {plan.release}
        doomed = releases_to_delete(names, plan.release, keep, protect=in_use(cl.layout, st), previous=st.current)
        if doomed:
            run(m.conn, commands.remove_releases(cl.layout, doomed), step="prune releases")
            cl.progress(m.name, "prune", f"removed {', '.join(doomed)}")

    errors = each_best_effort(plan.involved, one)
    for name, error in errors.items():
        cl.out(f"warning: {name}: pruning failed: {error}")


# --- rollback ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RollbackOptions:
    to: str | None = None
    component: str = "all"
    migrate_back: bool = False
    break_lock: bool = False
    dry_run: bool = False
    health_timeout: float = HEALTH_TIMEOUT


MIGRATIONS_MISSING = """\
import json, django
django.setup()
from django.db import connection
from django.db.migrations.loader import MigrationLoader
loader = MigrationLoader(connection, ignore_no_migrations=True)
missing = sorted(key for key in loader.applied_migrations if key not in loader.disk_migrations)
leaves = {}
for app, name in sorted(loader.graph.leaf_nodes()):
    leaves.setdefault(app, name)
print(json.dumps({"missing": [list(k) for k in missing], "leaves": leaves}))
"""

MIGRATE_BACK = """\
import json, sys, django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
targets = json.loads(sys.argv[1] if len(sys.argv) > 1 else TARGETS)
plan = MigrationExecutor(connection).migration_plan([(app, name) for app, name in targets])
undo, irreversible = [], []
for migration, backwards in plan:
    if backwards:
        undo.append(migration.app_label + "." + migration.name)
        for op in migration.operations:
            if not op.reversible:
                irreversible.append(migration.app_label + "." + migration.name + ": " + op.describe())
if irreversible:
    print(json.dumps({"irreversible": irreversible, "undo": undo}))
    sys.exit(3)
for app, name in targets:
    call_command("migrate", app, name or "zero", interactive=False, verbosity=1)
print(json.dumps({"undone": undo}))
"""


def migrate_back_script(targets: list[tuple[str, str | None]]) -> str:
    return MIGRATE_BACK.replace("TARGETS", repr(json.dumps([list(t) for t in targets])))


def _json_last_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _check_migrations(cl: Cluster, state: NodeState, target: str, migrate_back: bool,
                      dry_run: bool) -> str | None:
    """Refuse (or, with --migrate-back, undo) migrations the database has and the target release lacks.

    The migration files of both releases (listed by the state command) are compared first: only when
    the current release has some the target lacks is the database asked.
    """
    m, current = cl.apps[0], state.current
    if not migration_files_missing(state.migrations.get(current, ()), state.migrations.get(target, ())):
        return None
    r = run(m.conn, commands.python_stdin(cl.layout, target), step="check applied migrations",
            stdin=MIGRATIONS_MISSING, check=False)
    if r.exited != 0:
        raise DeployError(f"{m.name}: could not compare the database's migrations with release {target}:\n"
                          + "\n".join(((r.stdout or "") + (r.stderr or "")).strip().splitlines()[-10:]))
    found = _json_last_line(r.stdout)
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
    r = run(m.conn, commands.python_stdin(cl.layout, current), step="migrate back",
            stdin=migrate_back_script(targets), check=False, timeout=3600)
    result = _json_last_line(r.stdout)
    if r.exited == 3 and result.get("irreversible"):
        raise DeployError("refused: irreversible migrations stand in the way of release " + target + ": "
                          + "; ".join(result["irreversible"]))
    if r.exited != 0:
        raise DeployError(f"{m.name}: migrating back failed:\n"
                          + "\n".join(((r.stdout or "") + (r.stderr or "")).strip().splitlines()[-15:]))
    return "undid migrations " + ", ".join(result.get("undone", []))


def rollback(cl: Cluster, opts: RollbackOptions) -> str | None:
    """Switch every node back to the previous (or --to) release and reload; the release, None on --dry-run."""
    timer = Timer()
    code, static = involved(cl, opts.component)
    members = static + code
    reference = code[0]          # whose previous release "previous" means: app node 0, or worker node 0
    web = bool(cl.apps) and cl.apps[0] in members
    if opts.to is not None:
        check_release_id(opts.to)
    lock = None if opts.dry_run else acquire_lock(cl, opts.to or "previous", "rollback",
                                                  break_lock=opts.break_lock)
    try:
        states = timer.step("state", lambda: gather(cl, members, migrations=[cl.apps[0].name] if web else []))
        cl.confirm()
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
        if missing:
            hint = ("; a release deployed with quick-update --component goes back and forth with rollback "
                    "--component" if opts.component == "all" else "")
            raise DeployError(f"release {target} does not exist on {', '.join(missing)}; nothing changed "
                              f"(fab releases lists them{hint})")
        if not moving:
            cl.out(f"every node already runs {target}; nothing to do")
            return target
        note = None
        if web and states[cl.apps[0].name].current not in (None, target):
            note = timer.step("migrations", lambda: _check_migrations(
                cl, states[cl.apps[0].name], target, opts.migrate_back, opts.dry_run))
        if opts.dry_run:
            cl.out("dry run: nothing is changed. Would roll back:")
            for m in moving:
                cl.out(f"  {m.name}: {states[m.name].current} -> {target}")
            if note:
                cl.out(f"  {note}")
            return None
        if note:
            cl.out(note)
        info = anchor.releases.get(target)

        apps = [m for m in moving if cl.role_of(m) == "app"]
        actions = {m.name: web_reload_action(states[m.name].programs.get(cl.layout.web_program),
                                             master_venv(cl.layout, states[m.name], cl.layout.web_program),
                                             states[m.name].releases[target].venv or "")
                   for m in apps}
        one_by_one = rolling(actions)     # a venv that differs: restarts, one app node at a time, after the switch

        def one(m: Member) -> None:
            role = cl.role_of(m)
            if role == "app" and one_by_one:
                run(m.conn, commands.switch(cl.layout, target), step="switch")
                cl.progress(m.name, "rollback", f"current -> {target}")
            elif role == "app":
                action = actions[m.name]
                run(m.conn, commands.switch_and_web(cl.layout, target, action), step=f"switch + gunicorn {action}")
                cl.progress(m.name, "rollback", f"current -> {target}; gunicorn {action}")
            elif role == "worker":
                run(m.conn, commands.switch_and_worker(cl.layout, target), step="switch + celery restart")
                cl.progress(m.name, "rollback", f"current -> {target}; celery restarted")
            else:
                run(m.conn, commands.switch(cl.layout, target), step="switch")
                cl.progress(m.name, "rollback", f"current -> {target}")

        # celery workers follow once the web tier is healthy: a failed gate leaves them untouched, and
        # their restart does not compete with gunicorn's new workers for the CPU meanwhile
        later = [m for m in moving if cl.role_of(m) == "worker"] if apps else []
        timer.step("switch+reload", lambda: each([m for m in moving if m not in later], one, "rolling back"))
        if one_by_one:
            sub = Plan(target, None, DeployOptions(health_timeout=opts.health_timeout), True, False, apps, [], states)
            timer.step("rolling restart", lambda: _reload(cl, sub, actions, release=target, workers=False))
        switched_at = timer.total
        result, detail = "ok", note or ""
        try:
            if apps:
                timer.step("health", lambda: _health_gate(cl, target, opts.health_timeout, apps))
            if later:
                timer.step("workers", lambda: each(later, one, "rolling back the workers"))
        except Exception as exc:
            result, detail = "failed", str(exc)
            raise
        finally:
            before = anchor.current_info
            audit(cl, AuditRecord(at=iso(utc_now()), who=whoami(), action="rollback", result=result,
                                  from_release=anchor.current, to_release=target,
                                  from_sha=before.sha if before else None, to_sha=info.sha if info else None,
                                  component=opts.component, seconds=round(timer.total, 1), detail=detail),
                  lock)
        cl.out(f"rolled back to {target} on {len(moving)} node(s): switched and reloaded in {switched_at:.2f} s, "
               f"healthy at {timer.total:.2f} s ({timer.summary()})")
        return target
    finally:
        if lock is not None:
            release_lock(cl, lock)


# --- listing -------------------------------------------------------------------------------------------

def releases_report(cl: Cluster, history: int = 5) -> list[str]:
    states = gather(cl, cl.members)
    layout = cl.layout
    lines = []
    with_releases = {name: st for name, st in states.items() if st.releases or st.current}
    if not with_releases:
        return [f"no releases of {layout.app} yet (fab deploy)"]
    views = {(st.current, tuple(sorted(st.releases))) for st in with_releases.values()}
    infos: dict[str, object] = {}
    for st in with_releases.values():
        for rid, info in st.releases.items():
            if info.sha or rid not in infos:
                infos[rid] = info
    if len(views) == 1:
        (current, ids), = views
        lines.append(f"releases of {layout.app} on {len(with_releases)} node(s), all in agreement "
                     f"(keep {cl.cfg.app.keep_releases}; * = current):")
        for rid in sorted(ids, reverse=True):
            sha = infos[rid].sha or "?"
            lines.append(f"  {'*' if rid == current else ' '} {rid}  {sha[:12]}")
    else:
        lines.append(f"releases of {layout.app}: nodes differ (keep {cl.cfg.app.keep_releases}; * = current):")
        for name in sorted(with_releases):
            st = with_releases[name]
            lines.append(f"  {name}:")
            for rid in sorted(st.releases, reverse=True):
                sha = st.releases[rid].sha or "?"
                lines.append(f"    {'*' if rid == st.current else ' '} {rid}  {sha[:12]}")
            if st.current and st.current not in st.releases:
                lines.append(f"    * {st.current}  (current points at a missing release!)")
    held = read_lock(cl)
    lines.append("deploy lock: " + ("free" if held is None else held_message(held, cl.anchor.name)))
    text = run(cl.anchor.conn, commands.audit_tail(layout, history), step="read the audit log").stdout
    records = parse_audit(text)
    if records:
        lines.append(f"last {len(records)} deploy(s) ({layout.audit_log} on {cl.anchor.name}):")
        lines.extend(f"  {describe_audit(r)}" for r in records)
    return lines


def served_release(cl: Cluster) -> dict[str, Probe]:
    return {m.name: probe(cl, m) for m in cl.apps}
