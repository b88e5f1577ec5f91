"""`fab recover db`'s choice of the new db node's data (recover._data_source), on moto: the old volume while it
is usable (available, in the node's zone), else a volume made from the latest completed snapshot, else a
blank volume and the latest backup."""
from __future__ import annotations

import time

from fabfile.backup.snapshots import snapshot_tags
from fabfile.naming import tags
from fabfile.provision.volumes import create_volume_params, find_volumes
from fabfile.recover import _data_source

ZONE = "us-east-1a"


def data_volume(ec2, cfg, zone=ZONE) -> str:
    vol = cfg.role("db").volume
    return ec2.create_volume(**create_volume_params(cfg.cluster.name, "db", 0, vol, zone))["VolumeId"]


def test_the_old_volume_first_then_the_latest_snapshot_then_a_backup(ec2, cfg):
    lines: list[str] = []
    assert _data_source(ec2, cfg, ZONE, lines.append) == "backup"           # nothing kept: the latest backup
    assert lines[-1] == "data: no usable volume and no snapshot: a blank volume, then the latest backup"

    old = data_volume(ec2, cfg)
    assert _data_source(ec2, cfg, ZONE, lines.append) == "volume"
    assert lines[-1] == f"data: volume {old} (kept when the instance went) is re-attached"

    snaps = []
    for n in range(2):                                                       # the newer one is used
        time.sleep(1.1 * n)                                                  # StartTime is per second
        snaps.append(ec2.create_snapshot(VolumeId=old, TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags(
            snapshot_tags(cfg.cluster.name, "db", 0))}])["SnapshotId"])
    ec2.delete_volume(VolumeId=old)                                          # the volume is lost too
    assert _data_source(ec2, cfg, ZONE, lines.append) == "snapshot"
    made = [v for v in find_volumes(ec2, cfg.cluster.name, "db", 0) if v["VolumeId"] != old]
    assert len(made) == 1 and made[0]["SnapshotId"] == snaps[-1] and made[0]["AvailabilityZone"] == ZONE
    assert lines[-1].startswith(f"data: no usable volume; {made[0]['VolumeId']} made from snapshot {snaps[-1]}")


def test_a_volume_in_another_zone_is_not_usable(ec2, cfg):
    data_volume(ec2, cfg, zone="us-east-1b")
    lines: list[str] = []
    assert _data_source(ec2, cfg, ZONE, lines.append) == "backup"
