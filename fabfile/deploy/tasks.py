"""fab deploy | quick-update | rollback | releases | whip-up-full-system.

Each task loads roles.yaml first, resolves the code to deploy before touching
a host, and turns every error into one `invoke.Exit(message, 1)` (the
boundary in fabfile/boundary.py).
"""
from __future__ import annotations

import re
import shlex
import sys
import time
import urllib.error
import urllib.request
from typing import Callable, TypeVar

from invoke import task

from .. import inventory
from ..boundary import HELP, exits, load
from ..cloud import open_cloud
from ..config import Config, check_templates
from ..layout import WEB_PORT
from ..nodes import find_nodes
from ..remote import HostFailures, RemoteError, run
from ..ssh import NotInSandbox
from . import commands, engine
from .engine import (COMPONENT_ROLES, HEALTH_TIMEOUT, Cluster, DeployOptions, RollbackOptions, fetched_source, gather,
                     open_cluster, releases_report)
from .errors import AnswerMissing, DeployError, NodesChanged
from .prompts import COMPONENTS, check_component, resolve
from .releases import django_requirement, requirements_change
from .source import Source, local_source, warnings

T = TypeVar("T")

ERRORS = (DeployError, HostFailures, RemoteError, NotInSandbox)
DEPLOY_HELP = {
    **HELP,
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


def _source(cfg: Config, cl: Cluster | None = None) -> Source:
    """push: HEAD of the local repo (before any host is contacted); git: fetched on the anchor node."""
    if cfg.app.strategy == "push":
        source = local_source(cfg)
    else:
        source = fetched_source(cl)
    for w in warnings(cfg, source):
        print(f"warning: {w}")
    return source


def _deploy(cfg: Config, opts: DeployOptions) -> str | None:
    source = _source(cfg) if cfg.app.strategy == "push" else None
    cl = open_cluster(cfg, _ec2(cfg))
    try:
        return engine.deploy(cl, source or _source(cfg, cl), opts)
    finally:
        cl.close()


@task(help={**DEPLOY_HELP, "deps": "reinstall the dependencies even if the requirements did not change",
            "force": "deploy even if every node already runs this commit"})
def deploy(c, config="roles.yaml", target=None, deps=False, force=False, break_lock=False, dry_run=False,
           health_timeout=int(HEALTH_TIMEOUT)):
    """Deploy app.repo's HEAD to all nodes: release, migrate, switch, reload, health gate."""
    with exits(*ERRORS):
        cfg = load(config, target)
        _deploy(cfg, DeployOptions(action="deploy", deps=True if deps else None, force=force,
                                   break_lock=break_lock, dry_run=dry_run, health_timeout=float(health_timeout)))


@task(help={**DEPLOY_HELP,
            "component": "web (app nodes and proxy static files), workers (celery nodes) or all",
            "deps": "reinstall the dependencies (pip install)", "no-deps": "reuse the current venv",
            "upgrade-django": "upgrade Django within the requirements' constraint",
            "no-upgrade-django": "do not upgrade Django",
            "yes": "take the default answer of every question no flag answered",
            "force": "deploy even if the component's nodes already run this code"})
def quick_update(c, component=None, deps=False, no_deps=False, upgrade_django=False, no_upgrade_django=False,
                 yes=False, force=False, config="roles.yaml", target=None, break_lock=False, dry_run=False,
                 health_timeout=int(HEALTH_TIMEOUT)):
    """Deploy only what is needed; asks component, reinstall deps?, upgrade Django? (or flags)."""
    with exits(*ERRORS, AnswerMissing):
        cfg = load(config, target)
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
        source = _source(cfg) if cfg.app.strategy == "push" else None
        # with --component, nodes of other roles are not even connected to
        cl = open_cluster(cfg, _ec2(cfg), roles=COMPONENT_ROLES[component] if component else COMPONENT_ROLES["all"])
        try:
            source = source or _source(cfg, cl)
            anchor = gather(cl, [cl.anchor])[cl.anchor.name]
            changed, why = requirements_change(anchor.current_info, source.requirements_hash, cfg.app.requirements)
            spec = django_requirement(source.requirements)
            installed = None
            if interactive and django_flag is None and not yes and anchor.current_info is not None:
                installed = run(cl.anchor.conn, commands.django_version(cl.layout, anchor.current), step="Django",
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
                health_timeout=float(health_timeout)))
        finally:
            cl.close()


@task(help={**DEPLOY_HELP, "to": "the release to go back to (default: the one before current; see fab releases)",
            "migrate-back": "first undo the database migrations the target release lacks (if reversible)",
            "component": "web (app and proxy nodes), workers or all (default): the nodes to switch"})
def rollback(c, to=None, migrate_back=False, component="all", config="roles.yaml", target=None, break_lock=False,
             dry_run=False, health_timeout=int(HEALTH_TIMEOUT)):
    """Switch every node back to the previous (or --to) release and reload; no reinstall."""
    with exits(*ERRORS, AnswerMissing):
        cfg = load(config, target)
        check_component(component)
        opts = RollbackOptions(to=to, component=component, migrate_back=migrate_back, break_lock=break_lock,
                               dry_run=dry_run, health_timeout=float(health_timeout))
        _on_cluster(cfg, COMPONENT_ROLES[component], lambda cl: engine.rollback(cl, opts))


@task(help={**HELP, "history": "how many audit log lines to show (default 5)"})
def releases(c, config="roles.yaml", target=None, history=5):
    """List the releases on every node (current marked), the deploy lock and the last deploys."""
    with exits(*ERRORS):
        cfg = load(config, target)
        cl = open_cluster(cfg, _ec2(cfg))
        try:
            print("\n".join(releases_report(cl, int(history))))
        finally:
            cl.close()


# --- from nothing ------------------------------------------------------------------------------------

def site_address(cfg: Config, cl: Cluster) -> str:
    """Where users reach the site: the proxy (private IP on the local cloud, public/elastic IP on AWS); in a
    cluster without a proxy role, app node 0's gunicorn on its port."""
    if cl.proxies:
        node, port = cl.proxies[0].node, ""
    elif cl.apps:
        node, port = cl.apps[0].node, f":{WEB_PORT}"
    else:
        raise DeployError(f"cluster {cfg.cluster.name} has no proxy or app node: no site address")
    address = node.private_ip if cfg.cluster.target == "sandbox" else (node.public_ip or node.private_ip)
    if not address:
        raise DeployError(f"{node.name} has no address yet")
    return address + port


def check_site(cfg: Config, cl: Cluster, address: str) -> list[str]:
    """The site answers: /, /health and the first /static/ file the page links to, through nginx on the
    proxy (or, with no proxy role, from gunicorn on app node 0, which serves no static files)."""
    via = cl.proxies[0] if cl.proxies else cl.apps[0]
    base = "http://127.0.0.1" if cl.proxies else f"http://{via.node.private_ip}:{WEB_PORT}"
    served_by = "nginx" if cl.proxies else "gunicorn"
    page = run(via.conn, f"curl -sS -m 10 -w '\\n%{{http_code}}' {shlex.quote(base + '/')}", step="GET /", check=False)
    body, _, code = (page.stdout or "").rstrip("\n").rpartition("\n")
    if code != "200":
        raise DeployError(f"{via.name}: GET / through {served_by} answered {code or '(nothing)'}: "
                          f"{(body or page.stderr or '')[:300]}")
    lines = [f"GET / -> 200 ({len(body)} bytes)"]
    static = re.search(r'(?:href|src)="(/static/[^"]+)"', body) if cl.proxies else None
    urls = ["/health"] + ([static.group(1)] if static else [])
    for url in urls:
        r = run(via.conn, commands.http_code(f"{base}{url}"), step=f"GET {url}", check=False)
        if r.stdout.strip() != "200":
            raise DeployError(f"{via.name}: GET {url} through {served_by} answered {r.stdout.strip() or r.stderr}")
        lines.append(f"GET {url} -> 200")
    if not cl.proxies:
        lines.append("no proxy role: static files are not served (add a proxy role for nginx)")
    if cfg.cluster.target == "sandbox":
        from ..ssh import check_sandbox_route

        check_sandbox_route(address.split(":")[0])
        try:
            with urllib.request.urlopen(f"http://{address}/", timeout=10) as resp:  # noqa: S310 - sandbox host
                lines.append(f"from this machine: GET http://{address}/ -> {resp.status}")
        except (urllib.error.URLError, OSError) as exc:
            raise DeployError(f"http://{address}/ does not answer from this machine: {exc}") from None
    return lines


@task(name="whip-up-full-system", help={**HELP, "dry-run": "show what provision, configure and deploy would do"})
def whip_up_full_system(c, config="roles.yaml", target=None, dry_run=False):
    """From nothing to a working site: provision, configure, deploy; ends with the site's URL."""
    from ..configure.facts import FactsError
    from ..configure.run import ConfigureError, TemplateError, configure_cluster
    from ..configure.templates import rehearse
    from ..provision.accounting import MutationCounter
    from ..provision.converge import provision as provision_cluster
    from ..provision.timing import DEFAULT_TIMING

    with exits(*ERRORS, ConfigureError, TemplateError, FactsError):
        start = time.monotonic()
        cfg = load(config, target)
        check_templates(cfg)   # bad input stops here: nothing launched, no API called
        rehearse(cfg)
        source = local_source(cfg) if cfg.app.strategy == "push" else None
        if cfg.cluster.target == "sandbox":
            from ..sandbox import control
            from ..sandbox.settings import load_settings

            settings = load_settings()
            if not control.api_answers(settings):
                if dry_run:
                    raise DeployError("dry run: the local cloud is not running (a real run starts it: "
                                      "fab sandbox.up), so there is nothing to inspect")
                print("== local cloud: starting it (fab sandbox.up)")
                control.up(settings)
        counter = MutationCounter()
        ec2 = counter.attach(_ec2(cfg))
        if dry_run:
            _whip_up_dry_run(cfg, ec2, source)
            return
        print("== provision")
        provision_cluster(ec2, cfg, wait_ssh=True, timing=DEFAULT_TIMING)
        print(counter.summary())
        marks = [("provision", time.monotonic() - start)]
        print("== configure")
        configure_cluster(cfg, ec2)
        marks.append(("configure", time.monotonic() - start))
        print("== deploy")
        cl = open_cluster(cfg, ec2)
        try:
            source = source or _source(cfg, cl)
            for w in warnings(cfg, source):
                print(f"warning: {w}")
            engine.deploy(cl, source, DeployOptions(action="deploy"))
            marks.append(("deploy", time.monotonic() - start))
            address = site_address(cfg, cl)
            print("== check")
            for line in check_site(cfg, cl, address):
                print(f"  {line}")
        finally:
            cl.close()
        print(f"done in {time.monotonic() - start:.0f} s (" + ", ".join(
            f"{name} at {secs:.0f} s" for name, secs in marks) + ")")
        print(f"site: http://{address}/")


def _whip_up_dry_run(cfg: Config, ec2, source: Source | None) -> None:
    from ..configure.run import configure_cluster

    nodes = [n for n in find_nodes(ec2, cfg.cluster.name) if n.state == "running"]
    short = [(r.name, r.count - sum(1 for n in nodes if n.role == r.name)) for r in cfg.roles]
    short = [(name, k) for name, k in short if k > 0]
    if short:
        print("dry run: provision would launch " + ", ".join(f"{k} {name} node(s)" for name, k in short)
              + "; configure and deploy follow on the new nodes")
        return
    print("== provision: every role has its nodes running (nothing to launch)")
    print("== configure (dry run)")
    configure_cluster(cfg, ec2, dry_run=True)
    print("== deploy (dry run)")
    cl = open_cluster(cfg, ec2)
    try:
        engine.deploy(cl, source or _source(cfg, cl), DeployOptions(action="deploy", dry_run=True))
    finally:
        cl.close()


__all__ = ["deploy", "quick_update", "rollback", "releases", "whip_up_full_system", "COMPONENTS"]
