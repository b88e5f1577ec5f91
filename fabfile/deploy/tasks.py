"""fab deploy | quick-update | rollback | releases.

Each task is a `cluster_task` (fabfile/boundary.py: roles.yaml loaded first,
every error one `invoke.Exit(message, 1)`) and resolves the code to deploy
before touching a host.
"""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

from .. import flags, inventory
from ..boundary import cluster_task
from ..cloud import open_cloud
from ..config import Config
from ..nodes import find_nodes
from ..remote import HostFailures, RemoteError, run
from ..ssh import NotInSandbox
from . import engine, manage
from .cluster import COMPONENT_ROLES, Cluster, gather, open_cluster
from .planning import HEALTH_TIMEOUT, DeployOptions, dependencies_change, fetched_source
from .report import releases_report
from .rollback import RollbackOptions, roll_back
from .errors import AnswerMissing, DeployError, NodesChanged
from .prompts import COMPONENTS, check_component, resolve
from .source import Source, local_source, warnings

T = TypeVar("T")

ERRORS = (DeployError, HostFailures, RemoteError, NotInSandbox)
DEPLOY_HELP = {
    "dry-run": "print what would be done on each node; change nothing",
    "break-lock": "take over the deploy lock of an interrupted deploy (it names its holder)",
    "health-timeout": f"seconds every app node has to answer /health with 200 (default {HEALTH_TIMEOUT:g})",
}


def _ec2(cfg: Config):
    return open_cloud(cfg.cluster.target, cfg.cluster.region).client("ec2")


def _on_cluster(cfg: Config, roles, work: Callable[[Cluster], T]) -> T:
    """work(cl) on the connected cluster, starting from the nodes the cloud listed last time (the
    inventory) while the cloud is asked again alongside. The engine confirms that answer before it changes
    anything; if the nodes changed meanwhile (or a listed node does not answer), it all starts again from
    the cloud's list. The lookup (boto3 and DescribeInstances, ~0.2 s) then costs a rollback nothing."""
    seen = inventory.load(cfg)
    wanted = [n for n in seen or [] if n.role in roles]
    if wanted and all(n.state == "running" for n in wanted):
        lookup = inventory.Lookup(lambda: find_nodes(_ec2(cfg), cfg.cluster.name))
        try:
            try:
                cl = open_cluster(cfg, None, roles=roles, seen=seen, lookup=lookup)
            except (HostFailures, DeployError):
                if inventory.same(seen, lookup.result()):
                    raise
                print(f"the cluster's nodes changed since {inventory.path(cfg)} was written: asking the cloud")
            else:
                try:
                    return work(cl)
                except NodesChanged as exc:
                    print(f"{exc}: starting again from the cloud's list")
                finally:
                    cl.close()
        finally:
            lookup.close()
    cl = open_cluster(cfg, _ec2(cfg), roles=roles)
    try:
        return work(cl)
    finally:
        cl.close()


def resolve_source(cfg: Config, cl: Cluster | None = None) -> Source:
    """push: HEAD of the local repo (before any host is contacted); git: fetched on the anchor node."""
    if cfg.app.strategy == "push":
        source = local_source(cfg)
    else:
        source = fetched_source(cl)
    for w in warnings(cfg, source):
        print(f"warning: {w}")
    return source


def _deploy(cfg: Config, opts: DeployOptions) -> str | None:
    source = resolve_source(cfg) if cfg.app.strategy == "push" else None
    cl = open_cluster(cfg, _ec2(cfg))
    try:
        return engine.deploy(cl, source or resolve_source(cfg, cl), opts)
    finally:
        cl.close()


def _timeout(value) -> float:
    """--health-timeout, checked before anything is contacted (0 would roll a healthy release back)."""
    return flags.seconds("health_timeout", value, 1, 3600)


@cluster_task(help={**DEPLOY_HELP, "deps": "reinstall the dependencies even if the requirements did not change",
                    "force": "deploy even if every node already runs this commit"}, errors=ERRORS)
def deploy(c, cfg: Config, deps=False, force=False, break_lock=False, dry_run=False,
           health_timeout=f"{HEALTH_TIMEOUT:g}"):
    """Deploy app.repo's HEAD to all nodes: release, migrate, switch, reload, health gate."""
    _deploy(cfg, DeployOptions(action="deploy", deps=True if deps else None, force=force,
                               break_lock=break_lock, dry_run=dry_run, health_timeout=_timeout(health_timeout)))


@cluster_task(help={**DEPLOY_HELP,
                    "component": "web (app nodes and proxy static files), workers (celery nodes) or all",
                    "deps": "reinstall the dependencies (pip install)", "no-deps": "reuse the current venv",
                    "upgrade-django": "upgrade Django within the requirements' constraint",
                    "no-upgrade-django": "do not upgrade Django",
                    "yes": "take the default answer of every question no flag answered",
                    "force": "deploy even if the component's nodes already run this code"},
              errors=(*ERRORS, AnswerMissing))
def quick_update(c, component=None, deps=False, no_deps=False, upgrade_django=False, no_upgrade_django=False,
                 yes=False, force=False, *, cfg: Config, break_lock=False, dry_run=False,
                 health_timeout=f"{HEALTH_TIMEOUT:g}"):
    """Deploy only what is needed; asks component, reinstall deps?, upgrade Django? (or flags)."""
    timeout = _timeout(health_timeout)
    if component is not None:
        check_component(component)
    if deps and no_deps:
        raise AnswerMissing("--deps and --no-deps contradict each other: pass one")
    if upgrade_django and no_upgrade_django:
        raise AnswerMissing("--upgrade-django and --no-upgrade-django contradict each other: pass one")
    deps_flag = True if deps else (False if no_deps else None)
    django_flag = True if upgrade_django else (False if no_upgrade_django else None)
    interactive = sys.stdin.isatty()
    if not interactive and not yes:
        # fail before contacting anything: the same errors `resolve` gives, without the why
        resolve(component=component, deps=deps_flag, upgrade_django=django_flag, yes=False, interactive=False,
                ask=input, deps_default=False, deps_why="requirements compared with the current release",
                django_spec="Django")
    pushed = resolve_source(cfg) if cfg.app.strategy == "push" else None

    def work(cl: Cluster) -> None:
        source = pushed or resolve_source(cfg, cl)
        anchor = gather(cl, [cl.anchor])[cl.anchor.name]
        changed, why = dependencies_change(cl, anchor, source)
        django = source.requirement_files.django()
        spec = django[1] if django else None
        installed = None
        if interactive and django_flag is None and not yes and anchor.current_info is not None:
            installed = run(cl.anchor.conn, manage.django_version(cl.layout, anchor.current), step="Django",
                            check=False).stdout.strip() or None
        answers = resolve(component=component, deps=deps_flag, upgrade_django=django_flag, yes=yes,
                          interactive=interactive, ask=input, deps_default=changed, deps_why=why,
                          django_spec=spec, django_installed=installed)
        print(f"quick-update: component {answers.component}, "
              f"dependencies {'reinstalled' if answers.deps else 'reused'} ({why}), "
              f"Django {'upgraded' if answers.upgrade_django else 'kept'}")
        engine.deploy(cl, source, DeployOptions(
            action="quick-update", component=answers.component, deps=answers.deps,
            upgrade_django=answers.upgrade_django, force=force, break_lock=break_lock, dry_run=dry_run,
            health_timeout=timeout))

    # with --component, nodes of other roles are not even connected to; from the saved node list, the cloud
    # asked alongside (the engine confirms its answer before the first change)
    _on_cluster(cfg, COMPONENT_ROLES[component] if component else COMPONENT_ROLES["all"], work)


@cluster_task(help={**DEPLOY_HELP,
                    "to": "the release to go back to (default: the one before current; see fab releases)",
                    "migrate-back": "first undo the database migrations the target release lacks (if reversible)",
                    "component": "web (app and proxy nodes), workers or all (default): the nodes to switch"},
              errors=(*ERRORS, AnswerMissing))
def rollback(c, to=None, migrate_back=False, component="all", *, cfg: Config, break_lock=False, dry_run=False,
             health_timeout=f"{HEALTH_TIMEOUT:g}"):
    """Switch every node back to the previous (or --to) release and reload; no reinstall."""
    check_component(component)
    opts = RollbackOptions(to=to, component=component, migrate_back=migrate_back, break_lock=break_lock,
                           dry_run=dry_run, health_timeout=_timeout(health_timeout))
    _on_cluster(cfg, COMPONENT_ROLES[component], lambda cl: roll_back(cl, opts))


@cluster_task(help={"history": "how many audit log lines to show (default 5)"}, errors=ERRORS)
def releases(c, cfg: Config, history="5"):
    """List the releases on every node (current marked), the deploy lock and the last deploys."""
    lines = flags.count("history", history, 0, 1000)
    cl = open_cluster(cfg, _ec2(cfg))
    try:
        print("\n".join(releases_report(cl, lines)))
    finally:
        cl.close()


__all__ = ["deploy", "quick_update", "rollback", "releases", "COMPONENTS"]
