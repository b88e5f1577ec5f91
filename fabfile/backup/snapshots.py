"""fab snapshot: the db node's data volume snapshotted after a CHECKPOINT (PostgreSQL's files consistent on
disk), tagged as the volume is (`whipup:purpose=data-snapshot`), waited for until complete (on the local
cloud: until its copy is made, the tag `whipup-sandbox:copied`)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from ..config import Config
from ..naming import TAG_CLUSTER, TAG_INDEX, TAG_ROLE, tag_dict, tag_filters, tags
from ..nodes import Node
from ..provision.volumes import attached_to, find_volumes
from ..remote import run
from ..sandbox.volumes import COPIED_TAG
from ..ssh import connect
from . import commands

SNAPSHOT = "data-snapshot"


def snapshot_tags(cluster: str, role: str, index: int) -> dict[str, str]:
    return {"Name": f"{cluster}-{role}-{index}-{SNAPSHOT}", TAG_CLUSTER: cluster, TAG_ROLE: role,
            TAG_INDEX: str(index), "whipup:purpose": SNAPSHOT}


def find_snapshots(ec2, cluster: str, role: str = "db", index: int = 0) -> list[dict]:
    """The node's completed data snapshots, newest first."""
    want = {k: v for k, v in snapshot_tags(cluster, role, index).items() if k != "Name"}
    found = ec2.describe_snapshots(OwnerIds=["self"], Filters=tag_filters(want))["Snapshots"]
    return sorted([s for s in found if s.get("State") == "completed"], key=lambda s: s["StartTime"], reverse=True)


def wait_complete(ec2, cfg: Config, snapshot_id: str, timeout: float = 600) -> None:
    if cfg.cluster.target != "sandbox":
        ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snapshot_id],
                                                  WaiterConfig={"Delay": 5, "MaxAttempts": int(timeout / 5)})
        return
    deadline = time.monotonic() + timeout
    while True:
        snap = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
        if tag_dict(snap).get(COPIED_TAG):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"snapshot {snapshot_id}: the local cloud made no copy in {timeout:.0f} s")
        time.sleep(0.2)


def snapshot(ec2, cfg: Config, node: Node, out=print) -> str:
    """CHECKPOINT on the node, then the snapshot of its volume; the snapshot id."""
    vols = [v for v in find_volumes(ec2, cfg.cluster.name, node.role, node.index)
            if attached_to(v) == node.instance_id]
    if not vols:
        raise ValueError(f"{node.name} has no data volume attached (roles.{node.role}.volume)")
    start = time.monotonic()
    conn = connect(cfg, node)
    try:
        run(conn, commands.checkpoint(), step="CHECKPOINT")
    finally:
        conn.close()
    when = datetime.now(timezone.utc)
    snap = ec2.create_snapshot(
        VolumeId=vols[0]["VolumeId"], Description=f"{node.name} data, {when:%Y-%m-%d %H:%M:%S} UTC (whipup)",
        TagSpecifications=[{"ResourceType": "snapshot",
                            "Tags": tags(snapshot_tags(cfg.cluster.name, node.role, node.index))}])
    wait_complete(ec2, cfg, snap["SnapshotId"])
    out(f"snapshot {snap['SnapshotId']} of {vols[0]['VolumeId']} ({node.name}, after a CHECKPOINT) in "
        f"{time.monotonic() - start:.1f} s")
    return snap["SnapshotId"]
