"""fab env | env.set | env.unset: the app's own environment variables and secrets (fabfile/appenv).

    fab env                                   NAME, value (secrets ***), where it comes from
    fab env.set FOO=bar [--secret]            one variable; `fab env.set - [--secret]` reads NAME=VALUE
                                              lines from stdin (several at once, and no value in argv)
    fab env.unset FOO[,BAR]                   an override goes (back to roles.yaml's value), or a name
                                              roles.yaml gives is hidden from the app

invoke gives a task one positional argument per parameter, so several assignments come on stdin and several
names comma-separated. Arguments are checked, the store's change and the new environment resolved (SSM
included) before any node is contacted; then `envchange.apply` does it on the cluster.
"""
from __future__ import annotations

import getpass
import sys
from typing import Callable

from .. import appenv
from ..appenv import Store
from ..boundary import cluster_task
from ..cloud import open_cloud
from ..config import Config
from ..configure import dbsize
from ..nodes import find_nodes
from ..vault import mask
from . import envchange
from .cluster import COMPONENT_ROLES, open_cluster
from .envchange import EnvChange, EnvOptions
from .tasks import DEPLOY_HELP, ERRORS, _timeout
from .planning import HEALTH_TIMEOUT

ROLES = COMPONENT_ROLES["workers"]          # app and worker nodes: those with shared/.env
CHANGE_HELP = {"dry-run": "print what would change (secret values masked); change nothing",
               "break-lock": DEPLOY_HELP["break-lock"], "health-timeout": DEPLOY_HELP["health-timeout"]}


def masked_printer(secrets: list[str]) -> Callable[[str], None]:
    """print, with every secret value replaced (a second guard: no line is meant to hold one)."""
    return lambda line: print(mask(line, secrets))


def read_stdin(secret: bool) -> str:
    """NAME=VALUE lines: piped stdin, or typed at a terminal (not echoed for --secret; an empty line ends)."""
    if not sys.stdin.isatty():
        return sys.stdin.read()
    typed = []
    while True:
        prompt = "NAME=VALUE (empty line ends): "
        line = getpass.getpass(prompt) if secret else input(prompt)
        if not line:
            return "\n".join(typed)
        typed.append(line)


def change(cfg: Config, action: str, before: Store, after: Store, notes: list[str], opts: EnvOptions) -> None:
    """Resolve the change, then make it: on the cluster's app and worker nodes, or only in the store when
    the cluster has none yet (the next deploy writes the .env)."""
    cloud = appenv.once(lambda: open_cloud(cfg.cluster.target, cfg.cluster.region))
    ch = envchange.prepare(cfg, action, before, after, notes, appenv.once(lambda: cloud().client("ssm")))
    out = masked_printer(ch.secrets)
    for note in ch.notes:
        out(note)
    if not ch.lines:
        if not opts.dry_run:
            appenv.save_store(cfg, before, after)
        out(f"{action}: the app's environment does not change; no node touched")
        return
    nodes = find_nodes(cloud().client("ec2"), cfg.cluster.name)
    resize = dbsize.resize_note(cfg, nodes, before, after)
    if resize is not None:
        out(resize)
    if not any(n.role in ROLES for n in nodes):
        _store_only(cfg, ch, opts, out)
        return
    cl = open_cluster(cfg, None, roles=COMPONENT_ROLES["all"], seen=nodes, out=out)   # proxies: the switch
    try:
        envchange.apply(cl, ch, opts)
    finally:
        cl.close()


def _store_only(cfg: Config, ch: EnvChange, opts: EnvOptions, out: Callable[[str], None]) -> None:
    for line in ch.lines:
        out(f"  {line}")
    if opts.dry_run:
        out(f"dry run: nothing is changed. Cluster {cfg.cluster.name} has no app or worker node: {ch.action} "
            f"would only save this; the next deploy writes the .env")
        return
    appenv.save_store(cfg, ch.before, ch.after)
    out(f"{ch.action}: saved; cluster {cfg.cluster.name} has no app or worker node yet: the next deploy "
        f"writes the .env")


def _options(dry_run: bool, break_lock: bool, health_timeout) -> EnvOptions:
    return EnvOptions(dry_run=dry_run, break_lock=break_lock, health_timeout=_timeout(health_timeout))


@cluster_task(name="list", default=True, errors=ERRORS)
def show(c, cfg: Config):
    """List the app's own variables: NAME, value (secrets masked), source."""
    for line in appenv.listing(cfg, appenv.load_store(cfg)):
        print(line)


@cluster_task(name="set", help={
    "assignment": "NAME=VALUE, or - to read NAME=VALUE lines from stdin (keeps the value out of argv)",
    "secret": "a secret: kept 0600 beside the state, masked in every output and the audit log",
    **CHANGE_HELP}, errors=ERRORS)
def set_(c, assignment, cfg: Config, secret=False, dry_run=False, break_lock=False,
         health_timeout=f"{HEALTH_TIMEOUT:g}"):
    """Set the app's variable(s) on every app and worker node, then reload gracefully."""
    opts = _options(dry_run, break_lock, health_timeout)
    if assignment == "-":
        pairs = appenv.parse_lines(read_stdin(secret))
    else:
        pairs = [appenv.parse_assignment(assignment, "env.set")]
    before = appenv.load_store(cfg)
    change(cfg, "env.set", before, appenv.apply_set(cfg, before, pairs, secret), [], opts)


@cluster_task(name="unset", help={"names": "NAME, or NAME,NAME,...", **CHANGE_HELP}, errors=ERRORS)
def unset(c, names, cfg: Config, dry_run=False, break_lock=False, health_timeout=f"{HEALTH_TIMEOUT:g}"):
    """Remove the app's variable(s) on every app and worker node, then reload gracefully."""
    opts = _options(dry_run, break_lock, health_timeout)
    before = appenv.load_store(cfg)
    after, notes = appenv.apply_unset(cfg, before, appenv.parse_names(names))
    change(cfg, "env.unset", before, after, notes, opts)


__all__ = ["show", "set_", "unset"]
