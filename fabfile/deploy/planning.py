"""What a deploy will do, decided before anything changes: the options, the plan, and the app's .env.

`make_plan` turns the nodes' state and the options into a `Plan` (which nodes get code and which static
files, how each venv is made); `up_to_date` says when there is nothing to do; `describe_plan` prints it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from .. import appenv
from ..config import Config
from ..nodes import Node
from ..layout import DB_ROLE, WEB_PORT, Layout, env_text
from ..media import media_env, site_of
from ..remote import run
from ..vault import secret
from . import commands
from .cluster import Cluster, Member
from .errors import DeployError
from .prompts import COMPONENTS
from . import slotstate
from .releases import SHA, NodeState, VenvPlan, release_of_path, requirements_change, same_code, venv_plan
from ..project.tree import split_listing
from .runtime import AppRuntime
from .source import Source, inspected_source

HEALTH_TIMEOUT = 60.0


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
    catch_up: bool = False               # a rebuilt node gets its peers' release: the branch may have moved on


@dataclass
class Plan:
    """One release of `source` to `code` nodes (app/worker: code, .env, venv) and `static` nodes (proxies)."""
    release: str
    source: Source
    options: DeployOptions
    code: list[Member]
    static: list[Member]
    before: dict[str, NodeState]          # every involved node's state when the deploy began
    venvs: dict[str, VenvPlan]            # code node -> how its venv is made (an upgrade of Django may amend it)
    runtime: AppRuntime                   # how the release runs: settings, WSGI, Django root, Celery app
    facts: dict | None = None             # what Django says in the new release (verify.settings_check)
    booted: dict[str, str] = field(default_factory=dict)   # app node -> the slot the new release was booted in

    @property
    def web(self) -> bool:
        return self.options.component in ("web", "all")

    @property
    def workers(self) -> bool:
        return self.options.component in ("workers", "all")

    @property
    def involved(self) -> list[Member]:
        return self.static + self.code

    @property
    def apps(self) -> list[Member]:
        return [m for m in self.code if m.role == "app"]

    @property
    def worker_nodes(self) -> list[Member]:
        return [m for m in self.code if m.role == "worker"]

    def current(self, name: str) -> str | None:
        return self.before[name].current

    @property
    def pending_migrations(self) -> bool | None:
        """Whether the database lacks a migration of this release, as the settings check found (None: it did
        not say, or has not run)."""
        found = (self.facts or {}).get("migrations")
        if not isinstance(found, dict) or "pending" not in found:
            return None
        return bool(found.get("pending")) or bool(found.get("unmigrated"))


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
    reqs = source.requirement_files
    venvs = {m.name: venv_plan(states[m.name].current_info, reqs.hash, release, deps=opts.deps,
                               upgrade_django=opts.upgrade_django, path=reqs.name)
             for m in code}
    return Plan(release, source, opts, code, static, states, venvs, runtime_of(cl, source))


def runtime_of(cl: Cluster, source: Source) -> AppRuntime:
    """What inspection found at the commit, else roles.yaml's values and the layout's defaults."""
    if source.runtime is not None:
        return source.runtime
    app, layout = cl.cfg.app, cl.layout
    return AppRuntime(project_settings=layout.settings, wsgi=app.wsgi or layout.wsgi,
                      celery_app=app.celery_app or layout.project, release_command=app.release_command,
                      overlay=app.overlay, health_path=app.health_path)


def dependencies_change(cl: Cluster, state: NodeState, source: Source) -> tuple[bool, str]:
    """(changed, why) of the requirements since the anchor's current release, naming the files that changed
    when its venv says what it was built from: quick-update's default for "reinstall dependencies?"."""
    reqs, info = source.requirement_files, state.current_info
    changed, why = requirements_change(info, reqs.hash, reqs.name)
    if changed and info is not None and info.venv and info.requirements:
        mark = run(cl.anchor.conn, commands.requirements_files_mark(cl.layout, info.id),
                   step="read what the venv was built from", check=False).stdout or ""
        files = reqs.changed_since(mark) if mark.strip() else []
        if files:
            why = f"{', '.join(files)} changed since release {info.id}"
    return changed, why


def serves_current(layout: Layout, m: Member, state: NodeState) -> bool:
    """The node's process runs its `current` release: the live gunicorn slot on an app node, celery on a
    worker (not so after a deploy that was killed between the switch and the reload)."""
    if m.role == "app":
        return state.current is not None and slotstate.serving(layout, state) == state.current
    if m.role != "worker":
        return True
    running = state.programs.get(layout.worker_program)
    return running is not None and running.running and release_of_path(layout, running.cwd) == state.current


def up_to_date(cl: Cluster, plan: Plan) -> bool:
    """Every involved node already runs this commit with these requirements, its processes on it, and
    nothing was asked for."""
    o = plan.options
    if o.force or o.upgrade_django or o.deps is True:
        return False
    for m in plan.involved:
        if not same_code(plan.before[m.name].current_info, plan.source.sha, plan.source.tree):
            return False
        if m.name in plan.venvs and plan.venvs[m.name].action != "reuse":
            return False
        if not serves_current(cl.layout, m, plan.before[m.name]):
            return False
    return True


def _describe_node(m: Member, plan: Plan) -> str:
    what = [f"{plan.current(m.name) or '(none)'} -> {plan.release}"]
    if m.name in plan.venvs:
        v = plan.venvs[m.name]
        what.append(f"venv: {v.action}" + (f" from {v.source}" if v.source else "") + f" ({v.reason})")
        if plan.options.upgrade_django:
            what.append("upgrade Django")
    if m.role == "app":
        st = plan.before[m.name]
        slot, live = slotstate.idle(st), st.live
        what.append(f"gunicorn: boot slot {slot}" + (f", then slot {live} stays warm" if live else ""))
    if m.role == "worker":
        what.append("celery: restart")
    if m.role == "proxy":
        what.append("static files")
    return f"  {m.name}: " + "; ".join(what)


def describe_plan(cl: Cluster, plan: Plan) -> list[str]:
    lines = [f"release {plan.release} ({plan.source.strategy} {plan.source.sha[:12]}"
             + (f", {plan.source.prefix}/" if plan.source.prefix else "") + f"), component {plan.options.component}"]
    if plan.source.project is not None:
        lines.append("  inspected: " + "; ".join(f"{f.what} {f.value}" for f in plan.source.project.findings
                                                  if f.value not in ("-", "")))
    rt = plan.runtime
    lines.append(f"  runs: DJANGO_SETTINGS_MODULE={rt.settings}" + (f" (overlay over {rt.project_settings})"
                 if rt.overlay else "") + f", {rt.wsgi}" + (f", celery -A {rt.celery_app}" if rt.celery_app else "")
                 + (f", release command {rt.release_command!r}" if rt.release_command else ""))
    lines += [_describe_node(m, plan) for m in plan.involved]
    if plan.web:
        lines.append(f"  {cl.apps[0].name}: collectstatic, migrate (once, under the deploy lock)")
    gate = (f"{rt.health_path} of the new release through its own gunicorn before any traffic, the proxies' "
            f"upstream to it, then the health gate on {', '.join(m.name for m in cl.apps)}" if plan.web
            else "no health gate (no web)")
    lines.append(f"  then: {gate}; keep {cl.cfg.app.keep_releases} releases")
    return lines


def _site_nodes(cl: Cluster, role: str) -> list[Node]:
    """The role's running nodes, whether or not this task connected to them (a workers-only deploy writes
    the same .env as a web one)."""
    nodes = [n for n in cl.running if n.role == role] or [m.node for m in getattr(cl, ROLE_MEMBERS[role])]
    return sorted(nodes, key=lambda n: (n.index, n.name))


ROLE_MEMBERS = {"proxy": "proxies", "app": "apps"}


def site_address(cfg: Config, cl: Cluster) -> str:
    """Where users reach the site: the proxy (private IP on the local cloud, public/elastic IP on AWS); in a
    cluster without a proxy role, app node 0's gunicorn on its port."""
    proxies, apps = _site_nodes(cl, "proxy"), _site_nodes(cl, "app")
    if proxies:
        node, port = proxies[0], ""
    elif apps:
        node, port = apps[0], f":{WEB_PORT}"
    else:
        raise DeployError(f"cluster {cfg.cluster.name} has no proxy or app node: no site address")
    address = node.private_ip if cfg.cluster.target == "sandbox" else (node.public_ip or node.private_ip)
    if not address:
        raise DeployError(f"{node.name} has no address yet")
    return address + port


def site_hosts(cl: Cluster) -> list[str]:
    """The names and addresses the site answers to (ALLOWED_HOSTS): where users reach it first (media URLs
    name it: cluster.domain and its aliases when set, then the proxy's address), the proxies' public and
    private addresses, the app nodes' (the proxy and the health checks reach gunicorn there), localhost."""
    nodes = _site_nodes(cl, "proxy") + _site_nodes(cl, "app")
    hosts: list[str] = list(cl.cfg.cluster.site.names)      # cluster.domain and aliases, when set
    hosts += [site_address(cl.cfg, cl).split(":")[0]] if nodes else []
    for n in nodes:
        hosts += [a for a in (n.public_ip, n.private_ip) if a]
    return list(dict.fromkeys(hosts + ["localhost", "127.0.0.1"]))


def dotenv(cl: Cluster, extra: Mapping[str, str] | None = None) -> str:
    """shared/.env for this cluster (secrets included: it goes to the hosts on stdin), with the app's own
    variables: `extra`, or those resolved from roles.yaml and the env store (fabfile/appenv)."""
    if extra is None:
        extra = appenv.values(appenv.resolve(cl.cfg))
    hosts = site_hosts(cl)
    scheme = "https" if cl.cfg.cluster.site.tls else "http"     # media URLs as the pages are served
    extra = {**media_env(site_of(cl.cfg), public_host=hosts[0], scheme=scheme), **extra}
    broker = cl.broker.private_ip if cl.broker else None
    common = dict(secret_key=secret(cl.cfg, "django_secret_key"), broker_host=broker, hosts=hosts,
                  extra=extra)
    if DB_ROLE not in cl.cfg.role_names:  # a one-node cluster: SQLite in shared/, kept across releases
        app_nodes = [m.name for m in cl.apps + cl.workers]
        if len(app_nodes) > 1:
            raise DeployError(f"roles.yaml has no {DB_ROLE} role, so the app uses SQLite on its node; that needs "
                              f"a single app or worker node, and there are {len(app_nodes)}: {', '.join(app_nodes)}")
        return env_text(cl.layout, db_password=None, db_host=None, **common)
    if cl.db is None or not cl.db.private_ip:
        raise DeployError(f"cluster {cl.cfg.cluster.name} has no running db node: the app needs its database")
    return env_text(cl.layout, db_password=secret(cl.cfg, "db_password"), db_host=cl.db.private_ip, **common)


def fetch_commit(cl: Cluster) -> str:
    """Strategy git: the anchor node fetches app.branch into its mirror; the commit's sha."""
    m, cfg = cl.anchor, cl.cfg
    out = run(m.conn, commands.fetch(cl.layout, cfg.app.repo, cfg.app.branch), step="git fetch").stdout
    sha = (out.strip().splitlines() or [""])[-1]
    if not SHA.fullmatch(sha):
        raise DeployError(f"{m.name}: git fetch of {cfg.app.repo} {cfg.app.branch} gave no commit: {out.strip()}")
    return sha


def mirror_reader(cl: Cluster, sha: str, step: str = "read the requirements") -> Callable[[str], str | None]:
    """read(path): a file of commit `sha` in the anchor's mirror (None when it is not there)."""
    def read(path: str) -> str | None:
        r = run(cl.anchor.conn, commands.show_file(cl.layout, sha, path), step=step, check=False)
        return r.stdout if r.exited == 0 else None

    return read


def fetched_source(cl: Cluster) -> Source:
    """Strategy git: the anchor node fetches app.branch; the commit and its requirements."""
    sha = fetch_commit(cl)
    out = run(cl.anchor.conn, commands.list_tree(cl.layout, sha), step="list the commit's files").stdout
    return inspected_source(cl.cfg, "git", sha, split_listing(out), mirror_reader(cl, sha, step="inspect the project"),
                            branch=cl.cfg.app.branch)
