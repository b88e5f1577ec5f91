"""fab provision | create-node ROLE | status [--json] | destroy [--yes].

Each task loads roles.yaml first (a bad file exits before any API call), opens
one cloud session, and turns whipup's errors into a one-line non-zero exit.
"""
from __future__ import annotations

import sys

from invoke import Exit, task

from ..boundary import HELP
from ..boundary import exits as _exits
from ..boundary import load as _load
from ..cloud import open_cloud
from ..config import Config
from ..nodes import find_nodes
from .accounting import MutationCounter
from .converge import create_node as create_node_in
from .converge import provision as provision_cluster
from .destroy import describe_plan, plan_destroy
from .destroy import destroy as destroy_plan
from .report import status_json, status_text
from .timing import DEFAULT_TIMING


def connect_ec2(cfg: Config) -> tuple[object, MutationCounter]:
    """The ec2 client of cfg's target, counting its mutating calls."""
    cloud = open_cloud(cfg.cluster.target, cfg.cluster.region)
    counter = MutationCounter()
    return counter.attach(cloud.client("ec2")), counter


@task(help={**HELP, "wait-ssh": "wait until every node answers SSH with its pinned host key (default: on)"})
def provision(c, config="roles.yaml", target=None, wait_ssh=True):
    """Create or complete the cluster (nodes, groups, EIPs)."""
    with _exits():
        cfg = _load(config, target)
        ec2, counter = connect_ec2(cfg)
        try:
            nodes = provision_cluster(ec2, cfg, wait_ssh=wait_ssh, timing=DEFAULT_TIMING)
        finally:
            print(counter.summary())
        print(status_text(cfg.cluster.name, nodes))


@task(help={**HELP, "role": "the role to add a node to",
            "wait-ssh": "wait until the node answers SSH (default: on)"})
def create_node(c, role, config="roles.yaml", target=None, wait_ssh=True):
    """Launch one more node of ROLE, at its lowest free index."""
    with _exits():
        cfg = _load(config, target)
        cfg.role(role)
        ec2, counter = connect_ec2(cfg)
        try:
            node = create_node_in(ec2, cfg, role, wait_ssh=wait_ssh, timing=DEFAULT_TIMING)
        finally:
            print(counter.summary())
        print(status_text(cfg.cluster.name, [node]))


@task(help={**HELP, "json": "print JSON instead of a table"})
def status(c, config="roles.yaml", target=None, json=False):
    """Show the cluster's nodes with their state, IPs and group."""
    with _exits():
        cfg = _load(config, target)
        ec2, _ = connect_ec2(cfg)
        nodes = find_nodes(ec2, cfg.cluster.name)
        print(status_json(nodes) if json else status_text(cfg.cluster.name, nodes))


@task(help={**HELP, "yes": "do not ask for confirmation"})
def destroy(c, config="roles.yaml", target=None, yes=False):
    """Tear down the cluster (asks first unless --yes)."""
    with _exits():
        cfg = _load(config, target)
        ec2, counter = connect_ec2(cfg)
        plan = plan_destroy(ec2, cfg.cluster.name)
        print("\n".join(describe_plan(plan)))
        if plan.empty:
            return
        if not yes:
            _confirm(cfg.cluster.name)
        try:
            destroy_plan(ec2, plan, DEFAULT_TIMING)
        finally:
            print(counter.summary())


def _confirm(cluster: str) -> None:
    if not sys.stdin.isatty():
        raise Exit("destroy: no terminal to confirm on; nothing removed (pass --yes to skip the question)", code=1)
    answer = input(f"Type the cluster name ({cluster}) to destroy it: ")
    if answer.strip() != cluster:
        raise Exit("destroy: not confirmed; nothing removed", code=1)
