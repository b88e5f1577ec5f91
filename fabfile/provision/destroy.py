"""Remove a cluster: only what carries its `whipup:cluster` tag.

`plan_destroy` only reads; `describe_plan` is what the task shows before asking;
`destroy` removes in dependency order: instances (lifting termination protection
first) and their termination, elastic IPs, security-group cross-references, groups,
key pair, the S3 gateway VPC endpoint whipup made (vpce.py: only one tagged with the cluster).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..nodes import LIVE_STATES, Node, find_nodes
from . import builders
from .builders import Grant
from .timing import Timing
from .vpce import tagged_endpoints

ALL_BUT_TERMINATED = LIVE_STATES + ("shutting-down",)


@dataclass(frozen=True)
class Address:
    allocation_id: str
    public_ip: str
    association_id: str | None


@dataclass(frozen=True)
class Group:
    id: str
    name: str


@dataclass(frozen=True)
class DestroyPlan:
    cluster: str
    instances: tuple[Node, ...]
    addresses: tuple[Address, ...]
    groups: tuple[Group, ...]
    key_pairs: tuple[str, ...]
    endpoints: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.instances or self.addresses or self.groups or self.key_pairs or self.endpoints)


def plan_destroy(ec2, cluster: str) -> DestroyPlan:
    """Everything tagged with the cluster (read-only)."""
    tagged = builders.cluster_filter(cluster)
    addresses = ec2.describe_addresses(Filters=tagged)["Addresses"]
    groups = [g for page in ec2.get_paginator("describe_security_groups").paginate(Filters=tagged)
              for g in page["SecurityGroups"]]
    key_pairs = ec2.describe_key_pairs(Filters=tagged)["KeyPairs"]
    return DestroyPlan(
        cluster=cluster,
        instances=tuple(find_nodes(ec2, cluster, states=ALL_BUT_TERMINATED)),
        addresses=tuple(sorted((Address(a["AllocationId"], a.get("PublicIp", ""), a.get("AssociationId"))
                                for a in addresses), key=lambda a: a.allocation_id)),
        groups=tuple(sorted((Group(g["GroupId"], g["GroupName"]) for g in groups), key=lambda g: g.name)),
        key_pairs=tuple(sorted(k["KeyName"] for k in key_pairs)),
        endpoints=tuple(tagged_endpoints(ec2, cluster)),
    )


def describe_plan(plan: DestroyPlan) -> list[str]:
    """What destroy will remove, one line each."""
    if plan.empty:
        return [f"cluster {plan.cluster}: nothing tagged {plan.cluster} to remove"]
    lines = [f"cluster {plan.cluster}: will remove"]
    lines += [f"  instance  {n.instance_id}  {n.name}  ({n.state})" for n in plan.instances]
    lines += [f"  elastic IP  {a.allocation_id}  {a.public_ip}" for a in plan.addresses]
    lines += [f"  security group  {g.id}  {g.name}" for g in plan.groups]
    lines += [f"  key pair  {k}" for k in plan.key_pairs]
    lines += [f"  S3 gateway endpoint  {e}" for e in plan.endpoints]
    return lines


def cross_references(groups: list[dict], group_ids: set[str]) -> dict[str, frozenset[Grant]]:
    """Per group id, its ingress grants whose source is one of `group_ids` (they block deletion)."""
    refs = {}
    for group in groups:
        grants = frozenset(g for g in builders.grants_from_permissions(group.get("IpPermissions", []))
                           if g.kind == "group" and g.source in group_ids)
        if grants:
            refs[group["GroupId"]] = grants
    return refs


def destroy(ec2, plan: DestroyPlan, timing: Timing, log=print) -> None:
    """Remove what `plan` lists."""
    instance_ids = [n.instance_id for n in plan.instances]
    if instance_ids:
        for instance_id in instance_ids:
            attr = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiTermination")
            if attr["DisableApiTermination"]["Value"]:
                ec2.modify_instance_attribute(InstanceId=instance_id, DisableApiTermination={"Value": False})
        ec2.terminate_instances(InstanceIds=instance_ids)
        log(f"terminating {len(instance_ids)} instance(s)")
        ec2.get_waiter("instance_terminated").wait(InstanceIds=instance_ids, WaiterConfig=timing.waiter_config())
    if plan.addresses:
        current = ec2.describe_addresses(AllocationIds=[a.allocation_id for a in plan.addresses])["Addresses"]
        for address in current:
            if address.get("AssociationId"):
                ec2.disassociate_address(AssociationId=address["AssociationId"])
            ec2.release_address(AllocationId=address["AllocationId"])
        log(f"released {len(current)} elastic IP(s)")
    if plan.groups:
        ids = {g.id for g in plan.groups}
        current = ec2.describe_security_groups(GroupIds=sorted(ids))["SecurityGroups"]
        for group_id, grants in cross_references(current, ids).items():
            ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=builders.permissions_from_grants(grants))
        for group in plan.groups:
            ec2.delete_security_group(GroupId=group.id)
        log(f"deleted {len(plan.groups)} security group(s)")
    for name in plan.key_pairs:
        ec2.delete_key_pair(KeyName=name)
        log(f"deleted key pair {name}")
    if plan.endpoints:
        ec2.delete_vpc_endpoints(VpcEndpointIds=list(plan.endpoints))
        log(f"deleted S3 gateway endpoint(s) {', '.join(plan.endpoints)}")

