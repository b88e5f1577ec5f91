"""Pure builders: API parameters, security-group permission sets, user-data.

Nothing here calls an API or touches a file; every function is checked by
dict or string equality in tests/unit/test_builders.py.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, NamedTuple

import yaml

from ..config import SSH_PORT, AmiSpec, ClusterConfig, PortRule, RoleConfig
from ..errors import ProvisionError
from ..layout import PROXY_ROLE, SLOTS, WEB_PORT, slot_port
from ..naming import TAG_CLUSTER, TAG_ROLE, cluster_tags, key_pair_name, node_tags, tags
from .keys import KeyText


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    root_device_name: str


# --- AMI and subnet choice ----------------------------------------------------------------

def describe_images_params(ami: AmiSpec) -> dict:
    if ami.unresolved:
        raise ProvisionError("ami: auto was not resolved to an image (provision/images.py: resolve)")
    if ami.id is not None:
        return {"ImageIds": [ami.id]}
    return {"Owners": [ami.owner], "Filters": [{"Name": "name", "Values": [ami.name]},
                                               {"Name": "state", "Values": ["available"]}]}


def pick_image(ami: AmiSpec, images: list[dict]) -> Image:
    """The newest image (by CreationDate) of a DescribeImages answer."""
    if not images:
        wanted = ami.id or f"name {ami.name!r} owned by {ami.owner}"
        raise ProvisionError(f"no AMI found for {wanted}")
    newest = max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
    return Image(id=newest["ImageId"], name=newest.get("Name", ""),
                 root_device_name=newest.get("RootDeviceName") or "/dev/xvda")


def pick_subnet(subnets: list[dict]) -> dict:
    """The subnet of the first availability zone (ties broken by id)."""
    if not subnets:
        raise ProvisionError("no subnet to launch into")
    return min(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))


# --- nodes --------------------------------------------------------------------------------

def client_token(cluster: str, role: str, index: int, retired_ids: Iterable[str], attempt: int = 0) -> str:
    """Idempotency token of one node's launch.

    The same node gets the same token on every retry; once an instance of it
    has been terminated, the set of retired ids changes and so does the token,
    so the node can be launched again.  `attempt` moves past a token whose
    earlier launch AWS answers again after its terminated instance has aged
    out of DescribeInstances (see `ec2.launch`).
    """
    seed = "\n".join([cluster, role, str(index), *sorted(retired_ids)] + ([f"attempt {attempt}"] if attempt else []))
    return "whipup-" + hashlib.sha256(seed.encode()).hexdigest()[:40]


def client_tokens(cluster: str, role: str, index: int, retired_ids: Iterable[str], count: int = 3) -> list[str]:
    """The tokens `ec2.launch` tries in order: the node's token, then fresh attempts."""
    retired = list(retired_ids)
    return [client_token(cluster, role, index, retired, attempt) for attempt in range(count)]


class _LiteralStr(str):
    """A str dumped as a YAML literal block (keeps PEM keys readable in user-data)."""


class _UserDataDumper(yaml.SafeDumper):
    pass


_UserDataDumper.add_representer(
    _LiteralStr, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
)


def user_data(authorized_key: str, host_key: KeyText) -> str:
    """cloud-config: our login key, the node's pinned host key, no root login."""
    document = {
        "ssh_authorized_keys": [authorized_key],
        "ssh_keys": {
            "ed25519_private": _LiteralStr(host_key.private),
            "ed25519_public": host_key.public,
        },
        "disable_root": True,
    }
    return "#cloud-config\n" + yaml.dump(document, Dumper=_UserDataDumper, sort_keys=False, width=1000)


def run_instances_params(cluster: ClusterConfig, role: RoleConfig, index: int, *, image: Image,
                         subnet_id: str, group_id: str, user_data: str, instance_profile: str | None = None) -> dict:
    """RunInstances parameters of node `index` of `role` (ClientToken is added by `ec2.launch`);
    `instance_profile`: the IAM instance profile's name it is launched with (None: none)."""
    node = tags(node_tags(cluster.name, role.name, index))
    params = {
        "ImageId": image.id,
        "InstanceType": role.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": key_pair_name(cluster.name),
        "SubnetId": subnet_id,
        "SecurityGroupIds": [group_id],
        "UserData": user_data,
        "DisableApiTermination": role.termination_protection,
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [{
            "DeviceName": image.root_device_name,
            "Ebs": {"VolumeSize": role.root_volume_gb, "VolumeType": "gp3",
                    "Encrypted": True, "DeleteOnTermination": True},
        }],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": node},
            {"ResourceType": "volume", "Tags": node},
        ],
    }
    if instance_profile is not None:
        params["IamInstanceProfile"] = {"Name": instance_profile}
    return params


def create_group_params(cluster: str, role: str, vpc_id: str, name: str) -> dict:
    return {
        "GroupName": name,
        "Description": f"whipup {cluster} {role}",
        "VpcId": vpc_id,
        "TagSpecifications": [{"ResourceType": "security-group",
                               "Tags": tags(cluster_tags(cluster, Name=name, **{TAG_ROLE: role}))}],
    }


def allocate_address_params(cluster: str, role: str, index: int) -> dict:
    return {"Domain": "vpc",
            "TagSpecifications": [{"ResourceType": "elastic-ip", "Tags": tags(node_tags(cluster, role, index))}]}


def import_key_pair_params(cluster: str, public_line: str) -> dict:
    return {"KeyName": key_pair_name(cluster), "PublicKeyMaterial": public_line.encode("ascii"),
            "TagSpecifications": [{"ResourceType": "key-pair", "Tags": tags(cluster_tags(cluster))}]}


def cluster_filter(cluster: str) -> list[dict]:
    return [{"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]}]


# --- security group permissions ------------------------------------------------------------

class Grant(NamedTuple):
    """One ingress permission: a protocol/port range from one source."""
    protocol: str
    from_port: int | None
    to_port: int | None
    kind: str          # cidr | cidr6 | group | prefix
    source: str


_KIND_KEYS = {  # kind -> (IpPermissions list key, item key)
    "cidr": ("IpRanges", "CidrIp"),
    "cidr6": ("Ipv6Ranges", "CidrIpv6"),
    "group": ("UserIdGroupPairs", "GroupId"),
    "prefix": ("PrefixListIds", "PrefixListId"),
}


def _cidr_grant(port: int, cidr: str, to_port: int | None = None) -> Grant:
    kind = "cidr6" if ipaddress.ip_network(cidr).version == 6 else "cidr"
    return Grant("tcp", port, port if to_port is None else to_port, kind, cidr)


def port_span(role: str, port: int) -> tuple[int, int]:
    """The ports a rule opens: gunicorn's port on the app role opens both slots' (8000-8001)."""
    return (port, slot_port(SLOTS[-1])) if role == "app" and port == WEB_PORT else (port, port)


HTTPS_PORT, HTTP_PORT = 443, 80


def site_rules(role: RoleConfig, tls: bool) -> tuple[PortRule, ...]:
    """The role's port rules as the site's TLS setting has them: without TLS (no cluster.domain, or tls: off)
    port 443 is opened nowhere, nothing listens there; with it, the proxy role's port-80 sources also reach
    443 when roles.yaml names no rule for it."""
    if not tls:
        return tuple(r for r in role.ports if r.port != HTTPS_PORT)
    if role.name != PROXY_ROLE or any(r.port == HTTPS_PORT for r in role.ports):
        return role.ports
    return role.ports + tuple(replace(r, port=HTTPS_PORT) for r in role.ports if r.port == HTTP_PORT)


def desired_grants(role: RoleConfig, admin_cidr: str, group_ids: Mapping[str, str], *,
                   tls: bool = False) -> frozenset[Grant]:
    """What the role's group must allow: its ports from CIDRs and role groups (443 only with `tls`: see
    `site_rules`), plus SSH from admin_cidr."""
    grants = {_cidr_grant(SSH_PORT, admin_cidr)}
    for rule in site_rules(role, tls):
        low, high = port_span(role.name, rule.port)
        grants.update(_cidr_grant(low, cidr, high) for cidr in rule.cidrs)
        grants.update(Grant("tcp", low, high, "group", group_ids[source]) for source in rule.roles)
    return frozenset(grants)


def grants_from_permissions(ip_permissions: Iterable[dict]) -> frozenset[Grant]:
    """A group's IpPermissions (as described) as a set of grants."""
    grants = set()
    for perm in ip_permissions:
        protocol = perm["IpProtocol"]
        ports = (perm.get("FromPort"), perm.get("ToPort")) if protocol != "-1" else (None, None)
        for kind, (list_key, item_key) in _KIND_KEYS.items():
            for item in perm.get(list_key) or []:
                grants.add(Grant(protocol, *ports, kind, item[item_key]))
    return frozenset(grants)


def _grant_order(g: Grant) -> tuple:
    return (g.protocol, -1 if g.from_port is None else g.from_port, -1 if g.to_port is None else g.to_port,
            g.kind, g.source)


def permissions_from_grants(grants: Iterable[Grant]) -> list[dict]:
    """Grants as IpPermissions for Authorize/Revoke, one entry per protocol and port range."""
    by_range: dict[tuple, dict] = {}
    for g in sorted(grants, key=_grant_order):
        key = (g.protocol, g.from_port, g.to_port)
        if key not in by_range:
            perm: dict = {"IpProtocol": g.protocol}
            if g.protocol != "-1":
                perm.update(FromPort=g.from_port, ToPort=g.to_port)
            by_range[key] = perm
        list_key, item_key = _KIND_KEYS[g.kind]
        by_range[key].setdefault(list_key, []).append({item_key: g.source})
    return list(by_range.values())


def diff_grants(desired: frozenset[Grant], current: frozenset[Grant]) -> tuple[frozenset[Grant], frozenset[Grant]]:
    """(to authorize, to revoke)."""
    return desired - current, current - desired
