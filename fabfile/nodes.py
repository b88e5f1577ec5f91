"""Cluster nodes as the cloud reports them, and the address to reach each by.

A node is an instance tagged `whipup:cluster`; its role and index come from its
`whipup:role` / `whipup:index` tags.  Configuration and deploy code gets nodes
from `find_nodes` and connects with `fabfile.ssh.connect`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .errors import ProvisionError
from .naming import TAG_CLUSTER, TAG_INDEX, TAG_ROLE, tag_dict

LIVE_STATES = ("pending", "running", "stopping", "stopped")
GONE_STATES = ("shutting-down", "terminated")


@dataclass(frozen=True)
class Node:
    role: str
    index: int                 # -1 if the instance lacks a valid whipup:index tag
    name: str
    instance_id: str
    state: str
    private_ip: str | None
    public_ip: str | None      # the elastic IP once associated
    security_group: str | None


def node_from_instance(instance: dict) -> Node:
    """A Node from one DescribeInstances instance."""
    tags = tag_dict(instance)
    index = tags.get(TAG_INDEX, "")
    groups = instance.get("SecurityGroups") or []
    return Node(
        role=tags.get(TAG_ROLE, ""),
        index=int(index) if index.isdigit() else -1,
        name=tags.get("Name", instance["InstanceId"]),
        instance_id=instance["InstanceId"],
        state=instance["State"]["Name"],
        private_ip=instance.get("PrivateIpAddress"),
        public_ip=instance.get("PublicIpAddress"),
        security_group=groups[0]["GroupId"] if groups else None,
    )


def node_sort_key(node: Node) -> tuple:
    return (node.role, node.index, node.instance_id)


def find_nodes(ec2, cluster_name: str, *, role: str | None = None,
               states: tuple[str, ...] = LIVE_STATES) -> list[Node]:
    """The cluster's instances in `states` (default: not terminated), sorted by role and index."""
    filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster_name]},
               {"Name": "instance-state-name", "Values": list(states)}]
    if role is not None:
        filters.append({"Name": f"tag:{TAG_ROLE}", "Values": [role]})
    nodes = [
        node_from_instance(instance)
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]
    return sorted(nodes, key=node_sort_key)


def connect_mode(cfg: Config) -> str:
    """'private' or 'public': ssh.connect, with auto meaning private on the sandbox."""
    mode = cfg.cluster.ssh.connect
    if mode == "auto":
        return "private" if cfg.cluster.target == "sandbox" else "public"
    return mode


def connect_address(cfg: Config, node: Node) -> str:
    """The address SSH uses for `node`; ProvisionError if it has none (yet)."""
    mode = connect_mode(cfg)
    address = node.private_ip if mode == "private" else node.public_ip
    if not address:
        raise ProvisionError(f"{node.name} ({node.instance_id}, {node.state}) has no {mode} IP address to connect to")
    return address
