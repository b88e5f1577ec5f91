"""Data volumes (roles.<role>.volume): an EBS volume per node, made, tagged, attached and mounted by provision.

A node's volume carries the node's tags (cluster, role, index) and `whipup:purpose=data`, so a node
launched again at that index (`fab recover db`) finds it and attaches it: the data outlives the instance
(attach_volume's DeleteOnTermination is false). The mount (`mount_script`) makes a file system on a blank
volume only, and refuses a mount point that already holds files.
"""
from __future__ import annotations

import shlex
from typing import Callable

from ..config import PG_DATA, Config, RoleConfig, VolumeConfig
from ..errors import ProvisionError
from ..naming import TAG_CLUSTER, TAG_INDEX, TAG_ROLE, node_name, tag_filters, tags
from ..nodes import Node
from ..remote import run, sudo_sh

Log = Callable[[str], None]
TAG_PURPOSE = "whipup:purpose"
DATA = "data"
PG_ETC = "whipup-etc"                # on the db role's volume: what /etc/postgresql links to
FSTAB_MARK = "x-whipup.volume"      # the fstab option of whipup's volumes (the sandbox's boot mounts them)


def volume_tags(cluster: str, role: str, index: int) -> dict[str, str]:
    return {"Name": f"{node_name(cluster, role, index)}-{DATA}", TAG_CLUSTER: cluster, TAG_ROLE: role,
            TAG_INDEX: str(index), TAG_PURPOSE: DATA}


def create_volume_params(cluster: str, role: str, index: int, vol: VolumeConfig, zone: str,
                         snapshot_id: str | None = None) -> dict:
    params = {"AvailabilityZone": zone, "Size": vol.size_gb, "VolumeType": vol.type, "Encrypted": True,
              "TagSpecifications": [{"ResourceType": "volume", "Tags": tags(volume_tags(cluster, role, index))}]}
    if snapshot_id:
        params["SnapshotId"] = snapshot_id
    return params


def find_volumes(ec2, cluster: str, role: str, index: int) -> list[dict]:
    """The node's data volumes, newest first (normally one)."""
    want = {k: v for k, v in volume_tags(cluster, role, index).items() if k != "Name"}
    found = [v for page in ec2.get_paginator("describe_volumes").paginate(Filters=tag_filters(want))
             for v in page["Volumes"] if v["State"] not in ("deleting", "deleted", "error")]
    return sorted(found, key=lambda v: v["CreateTime"], reverse=True)


def attached_to(volume: dict) -> str | None:
    return next((a["InstanceId"] for a in volume.get("Attachments") or []
                 if a.get("State") in ("attaching", "attached")), None)


def ensure_volume(ec2, cfg: Config, role: RoleConfig, node: Node, zone: str, log: Log,
                  *, snapshot_id: str | None = None, timing=None) -> str:
    """The node's volume attached to it: found by its tags (attached if it is not), or made (from
    `snapshot_id` if given); its id. A volume held by another live instance, or in another zone, stops."""
    vol = role.volume
    assert vol is not None
    cluster = cfg.cluster.name
    found = find_volumes(ec2, cluster, role.name, node.index)
    volume = found[0] if found else None
    if volume is not None and attached_to(volume) == node.instance_id:
        return volume["VolumeId"]
    if volume is not None and volume["AvailabilityZone"] != zone:
        raise ProvisionError(f"{node.name}: its volume {volume['VolumeId']} is in {volume['AvailabilityZone']}, "
                             f"the node in {zone}: make one from a snapshot (fab recover db)")
    delay = {"Delay": timing.poll_seconds, "MaxAttempts": timing.max_polls} if timing else {}
    if volume is None:
        volume = ec2.create_volume(**create_volume_params(cluster, role.name, node.index, vol, zone, snapshot_id))
        log(f"{role.name}: volume {volume['VolumeId']} made for {node.name} ({vol.size_gb} GiB {vol.type}"
            + (f", from {snapshot_id})" if snapshot_id else ")"))
    elif attached_to(volume) is not None:
        holder = attached_to(volume)
        state = ec2.describe_instances(InstanceIds=[holder])["Reservations"][0]["Instances"][0]["State"]["Name"]
        if state not in ("shutting-down", "terminated"):
            raise ProvisionError(f"{node.name}: its volume {volume['VolumeId']} is attached to {holder} ({state}); "
                                 f"stop or terminate that instance first")
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume["VolumeId"]], WaiterConfig=delay or {"Delay": 1})
    ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=node.instance_id, Device=vol.device)
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[volume["VolumeId"]], WaiterConfig=delay or {"Delay": 1})
    log(f"{role.name}: volume {volume['VolumeId']} attached to {node.name} as {vol.device}")
    return volume["VolumeId"]


def create_volume_for(ec2, cfg: Config, role: str, index: int, zone: str, snapshot_id: str) -> str:
    """A volume for node `index` of `role` made from a snapshot (found by its tags by the next provision,
    which attaches it to the node); its id, once available."""
    vol = cfg.role(role).volume
    assert vol is not None
    made = ec2.create_volume(**create_volume_params(cfg.cluster.name, role, index, vol, zone, snapshot_id))
    ec2.get_waiter("volume_available").wait(VolumeIds=[made["VolumeId"]], WaiterConfig={"Delay": 1})
    return made["VolumeId"]


def ensure_role(ec2, cfg: Config, role: RoleConfig, nodes: list[Node], log: Log, timing=None) -> None:
    """Every running node of a role with a volume has its own attached (converge_role calls it)."""
    if role.volume is None:
        return
    for node in nodes:
        if node.state == "running":
            ensure_volume(ec2, cfg, role, node, instance_zone(ec2, node.instance_id), log, timing=timing)


def instance_zone(ec2, instance_id: str) -> str:
    inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return inst["Placement"]["AvailabilityZone"]


def mount_script(vol: VolumeConfig, volume_id: str) -> str:
    """Root's script on the node: wait for the volume's block device (its device name, or on a Nitro
    instance the NVMe disk named by the volume id), a file system made if it has none, mounted at the
    mount point (refused over files), an fstab line; "already ok" when mounted."""
    q = shlex.quote
    by_id = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + volume_id.replace("-", "")
    return "\n".join([
        "set -eu",
        f"mp={q(vol.mount)}; dev={q(vol.device)}; by_id={q(by_id)}",
        'if mountpoint -q "$mp"; then echo "volume: $mp already ok"; else',
        "n=0",
        'until [ -b "$dev" ]; do',
        '  if [ -b "$by_id" ]; then dev=$by_id; break; fi',
        '  n=$((n + 1)); if [ "$n" -gt 240 ]; then echo "volume: no block device $dev after 120 s" >&2; exit 1; fi',
        "  sleep 0.5",
        "done",
        'if ! blkid -p "$dev" >/dev/null 2>&1; then',
        # Debian 13's minimal images have no e2fsprogs (Debian 12's do): its own package, through apt's proxy
        '  if ! command -v mkfs.ext4 >/dev/null 2>&1; then echo "volume: installing e2fsprogs (mkfs.ext4)"; '
        'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs >/dev/null; fi',
        '  mkfs.ext4 -q -L whipup-data "$dev"; echo "volume: file system made on $dev"',
        "fi",
        'mkdir -p "$mp"',
        'if [ -n "$(ls -A "$mp")" ]; then echo "volume: $mp already holds files: not mounted over them" >&2; '
        "exit 1; fi",
        'mount "$dev" "$mp"',
        'grep -v " $mp ext4 " /etc/fstab > /etc/fstab.whipup || true',
        f'echo "$dev $mp ext4 defaults,nofail,{FSTAB_MARK} 0 2" >> /etc/fstab.whipup',
        "mv /etc/fstab.whipup /etc/fstab",
        'echo "volume: $dev mounted at $mp"',
        "fi",
    ] + (_config_on_volume(vol.mount) if vol.mount == PG_DATA else []))


def _config_on_volume(mount: str) -> list[str]:
    """PostgreSQL's configuration (/etc/postgresql) kept on the volume beside its data (a link into it), so
    a new node installing postgresql finds its cluster whole (Debian's packages create none then)."""
    q = shlex.quote
    etc = f"{mount}/{PG_ETC}"
    return [
        "if [ ! -L /etc/postgresql ]; then",
        f"  mkdir -p {q(etc)}",
        f"  if [ -d /etc/postgresql ]; then cp -a /etc/postgresql/. {q(etc)}/ && rm -rf /etc/postgresql; fi",
        f"  ln -s {q(etc)} /etc/postgresql",
        f'  echo "volume: /etc/postgresql -> {etc} (the cluster\'s configuration beside its data)"',
        "fi",
    ]


def mount(cfg: Config, node: Node, vol: VolumeConfig, volume_id: str, log: Log) -> None:
    from ..ssh import connect

    conn = connect(cfg, node)
    try:
        out = run(conn, sudo_sh(mount_script(vol, volume_id)), step="mount the data volume", timeout=180).stdout
    finally:
        conn.close()
    for line in out.splitlines():
        log(f"{node.name}: {line}")


def mount_all(ec2, cfg: Config, nodes: list[Node], log: Log) -> None:
    """Every running node of a role with a volume has it mounted (after SSH answers)."""
    for node in nodes:
        if node.role not in cfg.role_names or node.state != "running":
            continue
        role = cfg.role(node.role)
        if role.volume is None:
            continue
        found = [v for v in find_volumes(ec2, cfg.cluster.name, role.name, node.index)
                 if attached_to(v) == node.instance_id]
        if not found:
            raise ProvisionError(f"{node.name}: no data volume attached; run provision again")
        mount(cfg, node, role.volume, found[0]["VolumeId"], log)
