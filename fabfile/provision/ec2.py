"""Thin EC2 calls: each looks something up, or changes exactly what is missing.

Parameters come from `builders`; every function takes the ec2 client first and
is safe to repeat.  Reads are Describe*; writes happen only on a difference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from botocore.exceptions import ClientError

from ..config import AmiSpec, ClusterConfig
from ..errors import ProvisionError
from ..naming import TAG_CLUSTER, TAG_INDEX, TAG_ROLE, group_name, key_pair_name, tag_dict, tag_filters
from ..nodes import GONE_STATES, Node
from . import builders
from .builders import Grant, Image
from .keys import fingerprint, public_key_parts
from .timing import Timing


@dataclass(frozen=True)
class Subnet:
    id: str
    vpc_id: str
    availability_zone: str


def find_image(ec2, ami: AmiSpec) -> Image:
    try:
        images = ec2.describe_images(**builders.describe_images_params(ami))["Images"]
    except ClientError as exc:
        if ami.id is not None and "InvalidAMIID" in exc.response["Error"]["Code"]:
            raise ProvisionError(f"AMI {ami.id} not found") from None
        raise
    return builders.pick_image(ami, images)


def resolve_subnet(ec2, cluster: ClusterConfig) -> Subnet:
    """cluster.subnet, or the first-AZ default subnet of cluster.vpc."""
    if cluster.subnet is not None:
        found = ec2.describe_subnets(SubnetIds=[cluster.subnet])["Subnets"]
        subnet = builders.pick_subnet(found)
        if cluster.vpc != "default" and subnet["VpcId"] != cluster.vpc:
            raise ProvisionError(f"subnet {cluster.subnet} is in {subnet['VpcId']}, not cluster.vpc {cluster.vpc}")
    else:
        if cluster.vpc == "default":
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
            if not vpcs:
                raise ProvisionError(f"no default VPC in {cluster.region}: set cluster.vpc and cluster.subnet")
            filters = [{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]},
                       {"Name": "default-for-az", "Values": ["true"]}]
        else:
            filters = [{"Name": "vpc-id", "Values": [cluster.vpc]}]
        found = ec2.describe_subnets(Filters=filters)["Subnets"]
        if not found:
            raise ProvisionError(f"no subnet in VPC {cluster.vpc}: set cluster.subnet")
        subnet = builders.pick_subnet(found)
    return Subnet(id=subnet["SubnetId"], vpc_id=subnet["VpcId"], availability_zone=subnet["AvailabilityZone"])


def ensure_key_pair(ec2, cluster: str, public_line: str, timing: Timing) -> bool:
    """Import the cluster key as <cluster>-key unless that exact key is there; True if imported."""
    name = key_pair_name(cluster)
    try:
        existing = ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "InvalidKeyPair.NotFound":
            raise
        existing = []
    if not existing:
        ec2.import_key_pair(**builders.import_key_pair_params(cluster, public_line))
        ec2.get_waiter("key_pair_exists").wait(KeyNames=[name], WaiterConfig=timing.waiter_config())
        return True
    remote = existing[0].get("PublicKey", "")
    try:
        same = public_key_parts(remote) == public_key_parts(public_line)
    except ValueError:
        same = False
    if not same:
        remote_fp = fingerprint(remote) if remote else existing[0].get("KeyFingerprint", "unknown")
        raise ProvisionError(
            f"key pair {name} holds another key ({remote_fp}) than this state dir's ({fingerprint(public_line)}); "
            f"nodes launched with it trust that key only: use the matching key (cluster.ssh.public_key) "
            f"or destroy the cluster"
        )
    return False


def ensure_groups(ec2, cluster: str, vpc_id: str, roles: Iterable[str], timing: Timing) -> dict[str, dict]:
    """Each role's security group <cluster>-<role> (created if missing), as described."""
    names = {group_name(cluster, role): role for role in roles}
    found = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                  {"Name": "group-name", "Values": list(names)}])["SecurityGroups"]
    groups: dict[str, dict] = {}
    for group in found:
        if tag_dict(group).get(TAG_CLUSTER) != cluster:
            raise ProvisionError(f"security group {group['GroupName']} ({group['GroupId']}) exists in {vpc_id} "
                                 f"but is not tagged {TAG_CLUSTER}={cluster}: rename the cluster or remove it")
        groups[names[group["GroupName"]]] = group
    created = []
    for name, role in names.items():
        if role not in groups:
            group_id = ec2.create_security_group(**builders.create_group_params(cluster, role, vpc_id, name))["GroupId"]
            groups[role] = {"GroupId": group_id, "GroupName": name, "IpPermissions": []}
            created.append(group_id)
    if created:  # new groups can take a moment to be visible to the rule calls that follow
        ec2.get_waiter("security_group_exists").wait(GroupIds=created, WaiterConfig=timing.waiter_config())
    return groups


def reconcile_group(ec2, group: dict, desired: frozenset[Grant]) -> tuple[int, int]:
    """Authorize missing and revoke extra ingress grants; (authorized, revoked) counts."""
    add, remove = builders.diff_grants(desired, builders.grants_from_permissions(group.get("IpPermissions", [])))
    if add:
        ec2.authorize_security_group_ingress(GroupId=group["GroupId"],
                                             IpPermissions=builders.permissions_from_grants(add))
    if remove:
        ec2.revoke_security_group_ingress(GroupId=group["GroupId"],
                                          IpPermissions=builders.permissions_from_grants(remove))
    return len(add), len(remove)


def role_instances(ec2, cluster: str, role: str) -> list[dict]:
    """Every instance of the role the API still reports, terminated ones included."""
    filters = tag_filters({TAG_CLUSTER: cluster, TAG_ROLE: role})
    return [
        instance
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]


def launch(ec2, params: dict, tokens: list[str]) -> str:
    """RunInstances with the first token answered by a live instance; its id.

    A retried call with the same token never launches twice.  If AWS answers
    with an instance already gone, that token's launch happened long ago (its
    record aged out of DescribeInstances), so the next token is tried.
    """
    for token in tokens:
        instance = ec2.run_instances(**params, ClientToken=token)["Instances"][0]
        if instance["State"]["Name"] not in GONE_STATES:
            return instance["InstanceId"]
    raise ProvisionError(f"RunInstances answered only with terminated instances for tokens {', '.join(tokens)}")


def start(ec2, nodes: list[Node], timing: Timing) -> None:
    """Start stopped nodes (waiting out any still stopping)."""
    stopping = [n.instance_id for n in nodes if n.state == "stopping"]
    if stopping:
        ec2.get_waiter("instance_stopped").wait(InstanceIds=stopping, WaiterConfig=timing.waiter_config())
    ids = [n.instance_id for n in nodes if n.state in ("stopping", "stopped")]
    if ids:
        ec2.start_instances(InstanceIds=ids)


def wait_running(ec2, instance_ids: list[str], timing: Timing) -> None:
    if instance_ids:
        ec2.get_waiter("instance_running").wait(InstanceIds=instance_ids, WaiterConfig=timing.waiter_config())


def ensure_termination_protection(ec2, instance_ids: list[str], protect: bool) -> int:
    """Set DisableApiTermination where it differs from `protect`; the number changed."""
    changed = 0
    for instance_id in instance_ids:
        attr = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiTermination")
        if attr["DisableApiTermination"]["Value"] != protect:
            ec2.modify_instance_attribute(InstanceId=instance_id, DisableApiTermination={"Value": protect})
            changed += 1
    return changed


def ensure_elastic_ips(ec2, cluster: str, role: str, nodes: list[Node]) -> int:
    """Give each node its tagged elastic IP (reusing an earlier allocation); the number of changes."""
    found = ec2.describe_addresses(Filters=tag_filters({TAG_CLUSTER: cluster, TAG_ROLE: role}))["Addresses"]
    by_index = {tag_dict(a).get(TAG_INDEX): a for a in found}
    changes = 0
    for node in nodes:
        address = by_index.get(str(node.index))
        if address is None:
            allocated = ec2.allocate_address(**builders.allocate_address_params(cluster, role, node.index))
            address = {"AllocationId": allocated["AllocationId"]}
            changes += 1
        if address.get("InstanceId") != node.instance_id:
            ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=node.instance_id,
                                  AllowReassociation=True)
            changes += 1
    return changes
