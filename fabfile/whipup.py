"""fab whip-up-full-system: from nothing to a working site, the three packages below in their order.

provision (nodes, groups, keys) -> configure (packages, files, services) -> deploy (release, switch,
health gate) -> a check of the site from outside; the db and monitor nodes configure alongside the rest
until the deploy's first stage that uses the database (`pipeline`). This module sits above the packages
it drives; none of them imports it.
"""
from __future__ import annotations

import re
import shlex
import time
import urllib.error
import urllib.request

from typing import Callable

from . import pipeline
from .boundary import cluster_task
from .config import Config, check_templates
from .configure.facts import FactsError
from .configure.run import ConfigureError, TemplateError, configure_cluster
from .configure.templates import rehearse
from .deploy import catchup, commands, engine
from .deploy.cluster import Cluster, gather, open_cluster
from .deploy.planning import DeployOptions, site_address
from .deploy.errors import DeployError
from .deploy.guard import Guard
from .deploy.source import Source, local_source, warnings
from .deploy.tasks import resolve_source
from .layout import WEB_PORT
from .monitor.daemon import ensure_receiver
from .nodes import find_nodes
from .provision.tasks import connect_ec2, provision_cluster
from .remote import HostFailures, RemoteError, run
from .sandbox import control
from .sandbox.settings import load_settings
from .tls import check as tls_check
from .tls import stage as tls_stage
from .ssh import NotInSandbox, check_sandbox_route

ERRORS = (DeployError, HostFailures, RemoteError, NotInSandbox, ConfigureError, TemplateError, FactsError,
          tls_check.SiteCheckError)


@cluster_task(name="whip-up-full-system", help={"dry-run": "show what provision, configure and deploy would do",
                                                "python": "the project's Python (like >=3.12) for ami: auto "
                                                          "(default: app.python)"},
              errors=ERRORS)
def whip_up_full_system(c, cfg: Config, dry_run=False, python: str | None = None):
    """From nothing to a working site: provision, configure, deploy; ends with the site's URL.

    `python`: the project's Python constraint that `ami: auto` picks the image for (None: app.python, else
    what inspection found: requires-python, .python-version, runtime.txt)."""
    start = time.monotonic()
    check_templates(cfg)   # bad input stops here: nothing launched, no API called
    rehearse(cfg)
    source = local_source(cfg) if cfg.app.strategy == "push" else None
    found = source.project.python if source is not None and source.project is not None else None
    python = python or cfg.app.python or found
    if cfg.cluster.target == "sandbox":
        _start_local_cloud(dry_run)
    ec2, counter = connect_ec2(cfg)
    if dry_run:
        _whip_up_dry_run(cfg, ec2, source, python)
        return
    print("== provision")
    provision_cluster(ec2, cfg, counter, wait_ssh=True, python=python)     # nodes, groups, keys, the media bucket
    print(counter.summary())
    marks = [("provision", time.monotonic() - start)]

    def certify_and_deploy(held, db_ready) -> tuple[float, str]:
        marks.append(("configure", time.monotonic() - start))
        ensure_receiver(cfg, print)    # monitor.recover: the monitor's alerts start `recover` from here
        if cfg.cluster.site.tls:
            print("== certificate")
            tls_stage.certificates(cfg, ec2)
            marks.append(("certificate", time.monotonic() - start))
        print("== deploy")
        return _deploy_and_check(cfg, ec2, source, held=held, db_ready=db_ready)

    deployed, address = pipeline.build(cfg, ec2, certify_and_deploy)     # prints "== configure ..."
    marks.append(("deploy", deployed - start))
    print(f"done in {time.monotonic() - start:.0f} s (" + ", ".join(
        f"{name} at {secs:.0f} s" for name, secs in marks) + ")")
    print("\n".join(tls_check.site_lines(cfg, address)))


def _start_local_cloud(dry_run: bool) -> None:
    """The local cloud answers, or is started (fab sandbox.up); a dry run has nothing to inspect without it."""
    settings = load_settings()
    if control.api_answers(settings):
        return
    if dry_run:
        raise DeployError("dry run: the local cloud is not running (a real run starts it: "
                          "fab sandbox.up), so there is nothing to inspect")
    print("== local cloud: starting it (fab sandbox.up)")
    control.up(settings)


def _deploy_and_check(cfg: Config, ec2, source: Source | None, *, held: Guard | None = None,
                      db_ready: Callable[[], None] = lambda: None) -> tuple[float, str]:
    """Deploy to the configured cluster, then check its site: (when the deploy ended, the site's address).
    `held`, `db_ready`: the pipeline's lock and its wait for the database (`pipeline.build`)."""
    cl = open_cluster(cfg, ec2)
    try:
        if not _rebuilt(cl, source, held, db_ready):
            source = source or resolve_source(cfg, cl)
            for w in warnings(cfg, source):
                print(f"warning: {w}")
            engine.deploy(cl, source, DeployOptions(action="deploy"), held=held, db_ready=db_ready)
        deployed = time.monotonic()
        db_ready()                         # the site's pages use the database
        address = site_address(cfg, cl)
        print("== check")
        for line in check_site(cfg, cl, address):
            print(f"  {line}")
        return deployed, address
    finally:
        cl.close()


def _rebuilt(cl: Cluster, head: Source | None, held: Guard | None, db_ready: Callable[[], None]) -> bool:
    """Nodes that have no release while their peers serve one (a lost node launched again) get the peers'
    release, only them (`catchup`); True when that was the case. HEAD, if it differs, waits for fab deploy."""
    states = gather(cl, cl.proxies + cl.apps + cl.workers)
    missing = catchup.targets(cl, states)
    if not missing:
        return False
    release = next(iter(missing.values()))
    sha = catchup.commit_of(states, release)
    db_ready()                             # a rebuilt node's release answers its health path with the database
    catchup.rebuild(cl, states, missing, catchup.source_for(cl, states, missing, sha), held=held)
    if head is not None and head.sha != sha:
        print(f"note: HEAD {head.short} is not deployed (the cluster serves {release}): fab deploy ships it")
    return True


def _whip_up_dry_run(cfg: Config, ec2, source: Source | None, python: str | None = None) -> None:
    """What provision would launch; when nothing, configure's and deploy's dry runs on the running nodes."""
    from .provision.converge import checked

    checked(ec2, cfg, print, python=python)               # what a real run would refuse, a dry run refuses too
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
        engine.deploy(cl, source or resolve_source(cfg, cl), DeployOptions(action="deploy", dry_run=True))
    finally:
        cl.close()


def check_site(cfg: Config, cl: Cluster, address: str) -> list[str]:
    """The site answers: / (any answer of the app's below 500: a project may have no page there), the health
    path and the first /static/ file the page links to, through nginx on the proxy (or, with no proxy role,
    from gunicorn on app node 0, which serves no static files)."""
    via = cl.proxies[0] if cl.proxies else cl.apps[0]
    base, opts = tls_check.proxy_curl(cfg) if cl.proxies else (f"http://{via.node.private_ip}:{WEB_PORT}", "")
    served_by = "nginx" if cl.proxies else "gunicorn"
    page = run(via.conn, f"curl {opts}-sS -m 10 -w '\\n%{{http_code}}' {shlex.quote(base + '/')}", step="GET /",
               check=False)
    body, _, code = (page.stdout or "").rstrip("\n").rpartition("\n")
    if not code.isdigit() or int(code) >= 500 or int(code) < 200:
        raise DeployError(f"{via.name}: GET / through {served_by} answered {code or '(nothing)'}: "
                          f"{(body or page.stderr or '')[:300]}")
    lines = [f"GET / -> {code} ({len(body)} bytes)" + ("" if code == "200" else ": the project's own answer")]
    static = re.search(r'(?:href|src)="(/static/[^"]+)"', body) if cl.proxies else None
    urls = [cfg.app.health_path] + ([static.group(1)] if static else [])
    for url in urls:
        r = run(via.conn, commands.http_code(f"{base}{url}").replace("curl ", f"curl {opts}", 1), step=f"GET {url}",
                check=False)
        if r.stdout.strip() != "200":
            raise DeployError(f"{via.name}: GET {url} through {served_by} answered {r.stdout.strip() or r.stderr}")
        lines.append(f"GET {url} -> 200")
    if not cl.proxies:
        lines.append("no proxy role: static files are not served (add a proxy role for nginx)")
    if cfg.cluster.site.tls and cl.proxies:
        lines += tls_check.from_here(cfg, address)
    elif cfg.cluster.target == "sandbox":
        check_sandbox_route(address.split(":")[0])
        try:
            with urllib.request.urlopen(f"http://{address}/", timeout=10) as resp:  # noqa: S310 - sandbox host
                lines.append(f"from this machine: GET http://{address}/ -> {resp.status}")
        except (urllib.error.URLError, OSError) as exc:
            raise DeployError(f"http://{address}/ does not answer from this machine: {exc}") from None
    return lines
