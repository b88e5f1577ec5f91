"""whipup's own plan for every host of a cluster, for bench/peers.py: what the peers are given to converge to.

`whipup_hosts(config, env)` asks the fabfile's configure modules (in this process) what `fab configure` would
want of each node: its templates rendered (with the proxies' upstream naming the live slots), then the host
values a template uses (the db node's PostgreSQL major version) read from the node with whipup's own facts
command, exactly as `fab configure` fills them in. Nothing is copied by hand: pyinfra and Ansible get these
contents, owners, modes, links, packages and services (bench/peers_render.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import boto3


@dataclass(frozen=True)
class Ssh:
    """How the peers reach the hosts: whipup's own key, pinned known_hosts and login user."""
    user: str
    key: Path
    known_hosts: Path


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    role: str
    want: object        # fabfile.configure.want.Desired, its host values filled in


def _ec2(env: dict):
    return boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _filled(cfg, node, want):
    """`want` with the host values its templates use, read by whipup's facts command on the node."""
    from fabfile.configure.apply import Runner
    from fabfile.configure.facts import facts_command, parse_facts
    from fabfile.ssh import connect

    if not want.missing_host_values():
        return want
    conn = connect(cfg, node)
    try:
        facts = parse_facts(Runner(conn)(facts_command(want.facts_request()), step="facts").stdout)
    finally:
        conn.close()
    return want.for_host(facts.host_values)


def whipup_hosts(config: Path, env: dict) -> tuple[list[Host], Ssh]:
    """Every node of the cluster of `config` with what whipup's configure wants of it, and the SSH settings."""
    os.environ.update(env)          # the sandbox's names: whipup's SSH checks the route to the bridge
    from fabfile.config import load_config
    from fabfile.configure.run import desired_for, select_nodes
    from fabfile.configure.slotsync import includes_upstream, live_slots
    from fabfile.nodes import connect_address, find_nodes
    from fabfile.state import identity_paths, known_hosts_path

    cfg = load_config(config)
    nodes = find_nodes(_ec2(env), cfg.cluster.name)
    targets, _ = select_nodes(cfg, nodes, None)
    wants = desired_for(cfg, targets, nodes, dry_run=True)
    if any(includes_upstream(cfg, w.files) for w in wants.values()):
        wants = desired_for(cfg, targets, nodes, dry_run=True, live=live_slots(cfg, nodes))
    hosts = [Host(n.name, connect_address(cfg, n), n.role, _filled(cfg, n, wants[n.instance_id]))
             for n in targets]
    missing = [h.name for h in hosts if h.want.missing_host_values()]
    if missing:
        raise SystemExit(f"host values still unknown on {', '.join(missing)}: configure them first")
    return hosts, Ssh(cfg.cluster.ssh.user, identity_paths(cfg)[0], known_hosts_path(cfg))
