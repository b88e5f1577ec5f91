"""Data volumes: roles.yaml's `volume`, provision's calls (moto), the mount script, the sandbox's reconcile."""
from __future__ import annotations

import shlex

import pytest
import yaml

from fabfile.config import ConfigError, VolumeConfig, load_config
from fabfile.errors import ProvisionError
from fabfile.naming import tag_dict
from fabfile.nodes import find_nodes
from fabfile.provision.accounting import MutationCounter
from fabfile.provision.converge import provision
from fabfile.provision.volumes import attached_to, find_volumes, mount_script
from fabfile.sandbox import guest_boot
from fabfile.sandbox.volumes import Attachment, plan, root_volume


def _edit(roles_file, fn):
    data = yaml.safe_load(roles_file.read_text())
    fn(data)
    roles_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(roles_file)


# --- roles.yaml -----------------------------------------------------------------------------------------

def test_the_shipped_db_role_has_its_volume(cfg):
    assert cfg.role("db").volume == VolumeConfig(10, "gp3", "/dev/xvdf", "/var/lib/postgresql")
    assert cfg.role("app").volume is None
    assert cfg.role("db").backup.keep == 7 and cfg.role("db").backup.nightly == "03:00"


@pytest.mark.parametrize("key,value,message", [
    ("size_gb", 0, "roles.db.volume.size_gb: expected an integer 1-16384, got 0"),
    ("type", "ssd", "roles.db.volume.type: expected one of gp3"),
    ("device", "/dev/sda1", "roles.db.volume.device: expected a device like /dev/xvdf"),
    ("mount", "/data", "roles.db.volume.mount: the db role's volume holds PostgreSQL's clusters"),
])
def test_a_bad_volume_names_its_key(roles_file, key, value, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        _edit(roles_file, lambda d: d["roles"]["db"]["volume"].update({key: value}))


def test_a_bad_nightly_time_names_its_key(roles_file):
    with pytest.raises(ConfigError, match=r"roles\.db\.backup\.nightly: expected a UTC time like 03:00"):
        _edit(roles_file, lambda d: d["roles"]["db"].update(backup={"nightly": "25:00"}))
    assert _edit(roles_file, lambda d: d["roles"]["db"].update(backup={"nightly": None})).role("db").backup.nightly is None


# --- provision (moto) -----------------------------------------------------------------------------------

def _provision(ec2, cfg, fast):
    counter = MutationCounter()
    provision(counter.attach(ec2), cfg, wait_ssh=False, timing=fast, log=lambda m: None)
    return counter


def test_provision_makes_tags_and_attaches_the_volume_once(ec2, cfg, fast):
    _provision(ec2, cfg, fast)
    db = find_nodes(ec2, cfg.cluster.name, role="db")[0]
    vols = find_volumes(ec2, cfg.cluster.name, "db", 0)
    assert len(vols) == 1 and attached_to(vols[0]) == db.instance_id
    v = vols[0]
    assert (v["Size"], v["VolumeType"], v["Attachments"][0]["Device"]) == (10, "gp3", "/dev/xvdf")
    assert tag_dict(v)["Name"] == f"{cfg.cluster.name}-db-0-data" and tag_dict(v)["whipup:purpose"] == "data"
    # AttachVolume's DeleteOnTermination is false (moto reports none): the next test terminates the instance
    again = _provision(ec2, cfg, fast)
    assert again.total == 0, dict(again.operations)


def test_the_volume_outlives_its_instance_and_goes_to_the_next_node(ec2, cfg, fast):
    _provision(ec2, cfg, fast)
    first = find_nodes(ec2, cfg.cluster.name, role="db")[0]
    vid = find_volumes(ec2, cfg.cluster.name, "db", 0)[0]["VolumeId"]
    ec2.modify_instance_attribute(InstanceId=first.instance_id, DisableApiTermination={"Value": False})
    ec2.terminate_instances(InstanceIds=[first.instance_id])
    assert ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["State"] == "available"
    counter = _provision(ec2, cfg, fast)
    second = next(n for n in find_nodes(ec2, cfg.cluster.name, role="db") if n.state == "running")
    assert second.instance_id != first.instance_id
    vols = find_volumes(ec2, cfg.cluster.name, "db", 0)
    assert [v["VolumeId"] for v in vols] == [vid] and attached_to(vols[0]) == second.instance_id
    assert counter.operations["CreateVolume"] == 0 and counter.operations["AttachVolume"] == 1


def test_a_volume_held_by_another_live_instance_stops_provision(ec2, cfg, fast):
    _provision(ec2, cfg, fast)
    vid = find_volumes(ec2, cfg.cluster.name, "db", 0)[0]["VolumeId"]
    db = find_nodes(ec2, cfg.cluster.name, role="db")[0]
    other = ec2.run_instances(ImageId=ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"],
                              MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.detach_volume(VolumeId=vid, InstanceId=db.instance_id)
    ec2.attach_volume(VolumeId=vid, InstanceId=other, Device="/dev/xvdf")
    with pytest.raises(ProvisionError, match=f"{vid} is attached to {other} \\(running\\)"):
        from fabfile.provision.volumes import ensure_volume
        ensure_volume(ec2, cfg, cfg.role("db"), db, "us-east-1a", lambda m: None)


# --- the mount script -----------------------------------------------------------------------------------

def test_the_mount_script_quotes_its_values():
    vol = VolumeConfig(1, "gp3", "/dev/xvdf", "/data/x; whoami")
    script = mount_script(vol, "vol-0abc")
    first = script.splitlines()[1]
    assert first == "mp='/data/x; whoami'; dev=/dev/xvdf; by_id=/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc"
    assert shlex.split(first)[0] == "mp=/data/x; whoami;"   # one word; the ; after it ends the assignment
    assert "mkfs.ext4 -q -L whipup-data" in script and 'if [ -n "$(ls -A "$mp")" ]' in script
    assert "if ! command -v mkfs.ext4 >/dev/null 2>&1; then" in script and "install -y -qq e2fsprogs" in script
    assert 'echo "$dev $mp ext4 defaults,nofail,x-whipup.volume 0 2"' in script


def test_the_sandbox_boot_mounts_only_whipups_volumes():
    fstab = ("# comment\nUUID=abc / ext4 defaults 0 1\n/dev/xvdf /var/lib/postgresql ext4 defaults,nofail,"
             "x-whipup.volume 0 2\n#/dev/xvdg /x ext4 x-whipup.volume 0 2\n")
    assert guest_boot.volume_mounts(fstab) == [("/dev/xvdf", "/var/lib/postgresql")]


# --- the sandbox's reconcile (pure) ---------------------------------------------------------------------

def _vol(vid, size=1, snap=None, attached=None):
    v = {"VolumeId": vid, "Size": size, "SnapshotId": snap or "", "Attachments": []}
    if attached:
        v["Attachments"] = [{"InstanceId": attached[0], "Device": attached[1], "State": "attached"}]
    return v


def test_a_new_volume_is_made_then_attached_to_a_running_host():
    acts = plan([_vol("vol-1", 2, attached=("i-1", "/dev/xvdf"))], [], images=set(), copies=set(),
                attached={}, pids={"i-1": 100})
    assert acts == [("create", "vol-1", 2, None), ("attach", "vol-1", "i-1", "/dev/xvdf", 100)]


def test_nothing_to_do_when_it_is_attached_as_the_api_says():
    acts = plan([_vol("vol-1", attached=("i-1", "/dev/xvdf"))], [], images={"vol-1"}, copies=set(),
                attached={"vol-1": Attachment("i-1", "/dev/xvdf", "/dev/loop0", 100)}, pids={"i-1": 100})
    assert acts == []


def test_a_host_booted_again_gets_its_node_again():
    acts = plan([_vol("vol-1", attached=("i-1", "/dev/xvdf"))], [], images={"vol-1"}, copies=set(),
                attached={"vol-1": Attachment("i-1", "/dev/xvdf", "/dev/loop0", 100)}, pids={"i-1": 200})
    assert acts == [("detach", "vol-1"), ("attach", "vol-1", "i-1", "/dev/xvdf", 200)]


def test_a_terminated_host_detaches_and_the_image_stays():
    acts = plan([_vol("vol-1")], [], images={"vol-1"}, copies=set(),
                attached={"vol-1": Attachment("i-1", "/dev/xvdf", "/dev/loop0", 100)}, pids={})
    assert acts == [("detach", "vol-1")]


def test_a_snapshot_is_copied_before_a_volume_is_made_from_it():
    snaps = [{"SnapshotId": "snap-1", "VolumeId": "vol-1"}]
    acts = plan([_vol("vol-1"), _vol("vol-2", 1, snap="snap-1")], snaps, images={"vol-1"}, copies=set(),
                attached={}, pids={})
    assert acts == [("snapshot", "snap-1", "vol-1"), ("create", "vol-2", 1, "snap-1")]


def test_a_volume_from_a_snapshot_waits_for_its_copy():
    snaps = [{"SnapshotId": "snap-1", "VolumeId": "vol-gone"}]
    assert plan([_vol("vol-2", 1, snap="snap-1")], snaps, images=set(), copies=set(), attached={}, pids={}) == []


def test_deleted_volumes_and_snapshots_lose_their_files():
    acts = plan([], [], images={"vol-1"}, copies={"snap-1"}, attached={}, pids={})
    assert acts == [("delete", "vol-1"), ("forget", "snap-1")]


def test_a_device_name_with_a_path_is_never_made():
    acts = plan([_vol("vol-1", attached=("i-1", "/dev/../etc/x"))], [], images={"vol-1"}, copies=set(),
                attached={}, pids={"i-1": 100})
    assert acts == []


def test_root_volumes_are_the_hosts_overlay_not_disks():
    v = _vol("vol-r", attached=("i-1", "/dev/sda1"))
    assert root_volume(v, {"i-1": "/dev/sda1"}) and not root_volume(v, {"i-1": "/dev/xvda"})
