"""Sandbox volumes: the API's EBS volumes and snapshots as disks of their own.

The materializer reconciles them after the instances, every step:

  volumes/<vol-id>.img     a sparse file of the volume's size: a blank disk (the guest makes its file system,
                           as on EC2), or a copy of its snapshot's image; kept across terminate, attach, detach
  volumes/<vol-id>.json    its attachment: {instance_id, device, loop, pid}: a loop device over the image,
                           a block device node of that name (/dev/xvdf) in the host's /dev
  snapshots/<snap-id>.img  a copy of the volume's image made when the snapshot appears (the volume's file
                           system frozen meanwhile if a host has it mounted): the snapshot's point in time;
                           the snapshot is then tagged `whipup-sandbox:copied` (what `fab snapshot` waits for)

A volume deleted from the API loses its image; a snapshot deleted, its copy. Both directories live in the
sandbox's state dir, not in a host's: terminating an instance removes its root disk, never a volume.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import hosts
from .settings import SandboxSettings

log = logging.getLogger("whipup.materializer")

GIB = 1 << 30
COPIED_TAG = "whipup-sandbox:copied"
DEVICE = re.compile(r"/dev/[a-z][a-z0-9]{1,15}")   # fullmatch: a node right in the guest's /dev, no path
FIFREEZE, FITHAW = 0xC0045877, 0xC0045878          # linux/fs.h: _IOWR('X', 119, int), _IOWR('X', 120, int)
ATTACHED = ("attaching", "attached")


@dataclass(frozen=True)
class Attachment:
    instance_id: str
    device: str
    loop: str = ""
    pid: int = 0          # the host's PID 1 the node was made in (a host booted again has a fresh /dev)


def volumes_dir(settings: SandboxSettings) -> Path:
    return settings.state_dir / "volumes"


def snapshots_dir(settings: SandboxSettings) -> Path:
    return settings.state_dir / "snapshots"


def image_path(settings: SandboxSettings, volume_id: str) -> Path:
    return volumes_dir(settings) / f"{volume_id}.img"


def snapshot_path(settings: SandboxSettings, snapshot_id: str) -> Path:
    return snapshots_dir(settings) / f"{snapshot_id}.img"


def api_attachment(volume: dict) -> Attachment | None:
    """The attachment the API reports for a volume (attaching or attached), if any."""
    for a in volume.get("Attachments") or []:
        if a.get("State") in ATTACHED:
            return Attachment(a["InstanceId"], a["Device"])
    return None


def plan(volumes: list[dict], snapshots: list[dict], *, images: set[str], copies: set[str],
         attached: dict[str, Attachment], pids: dict[str, int]) -> list[tuple]:
    """Pure reconcile: the API's volumes and snapshots, the images and copies on disk, the attachments made,
    the running hosts' PID 1 -> [(action, ...)], in the order to run them: snapshots are copied first (before
    anything else changes their volume), then volumes made, detached, attached, deleted."""
    vol_ids = {v["VolumeId"] for v in volumes}
    snap_ids = {s["SnapshotId"] for s in snapshots}
    acts: list[tuple] = []
    for s in snapshots:
        if s["SnapshotId"] not in copies and s.get("VolumeId") in images:
            acts.append(("snapshot", s["SnapshotId"], s["VolumeId"]))
    ready_copies = copies | {a[1] for a in acts}
    for v in volumes:
        vid, snap = v["VolumeId"], v.get("SnapshotId") or None
        if vid not in images and (snap is None or snap in ready_copies):
            acts.append(("create", vid, int(v["Size"]), snap))
    wanted = {}
    for v in volumes:
        a = api_attachment(v)
        if a is not None and a.instance_id in pids and DEVICE.fullmatch(a.device):
            wanted[v["VolumeId"]] = Attachment(a.instance_id, a.device, pid=pids[a.instance_id])
    for vid, have in sorted(attached.items()):
        want = wanted.get(vid)
        if want is None or (want.instance_id, want.device, want.pid) != (have.instance_id, have.device, have.pid):
            acts.append(("detach", vid))
    made = images | {a[1] for a in acts if a[0] == "create"}
    for vid, want in sorted(wanted.items()):
        have = attached.get(vid)
        if vid in made and (have is None or (have.instance_id, have.device, have.pid) !=
                            (want.instance_id, want.device, want.pid)):
            acts.append(("attach", vid, want.instance_id, want.device, want.pid))
    acts += [("delete", vid) for vid in sorted(images - vol_ids)]
    acts += [("forget", sid) for sid in sorted(copies - snap_ids)]
    return acts


# --- on this machine ------------------------------------------------------------------------------------

def _files(directory: Path, suffix: str) -> set[str]:
    return {p.name[:-len(suffix)] for p in directory.glob(f"*{suffix}")} if directory.is_dir() else set()


def read_attached(settings: SandboxSettings) -> dict[str, Attachment]:
    out = {}
    for vid in _files(volumes_dir(settings), ".json"):
        try:
            out[vid] = Attachment(**json.loads((volumes_dir(settings) / f"{vid}.json").read_text()))
        except (OSError, ValueError, TypeError):
            continue
    return out


def guest_root(pid: int) -> Path | None:
    """The host's root as seen from here (/proc/PID/root), once its PID 1 has pivoted into the guest (runs
    tini); None before: then /proc/PID/root is still this machine's /, where no node may be made."""
    try:
        if not os.readlink(f"/proc/{pid}/exe").endswith("/tini"):
            return None
        root = Path(f"/proc/{pid}/root")
        if os.stat(root).st_dev == os.stat("/").st_dev and os.stat(root).st_ino == os.stat("/").st_ino:
            return None
        return root
    except OSError:
        return None


def running_pids(settings: SandboxSettings, instance_ids) -> dict[str, int]:
    """{instance id: PID 1} of the hosts that run, booted into their guest."""
    out = {}
    for iid in instance_ids:
        pid = hosts.host_pid(settings, iid)
        if pid and guest_root(pid) is not None:
            out[iid] = pid
    return out


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300).stdout.strip()


def create(settings: SandboxSettings, volume_id: str, size_gib: int, snapshot_id: str | None) -> None:
    path = image_path(settings, volume_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    if snapshot_id:
        _run(["cp", "--sparse=always", "--reflink=auto", str(snapshot_path(settings, snapshot_id)), str(tmp)])
    else:
        tmp.unlink(missing_ok=True)
        tmp.touch()
    if tmp.stat().st_size < size_gib * GIB:
        os.truncate(tmp, size_gib * GIB)
    os.replace(tmp, path)
    log.info("%s: volume made (%d GiB%s)", volume_id, size_gib, f", from {snapshot_id}" if snapshot_id else "")


def attach(settings: SandboxSettings, volume_id: str, instance_id: str, device: str, pid: int) -> None:
    """A loop device over the image, its node at `device` in the host's /dev."""
    root = guest_root(pid)
    if root is None or not DEVICE.fullmatch(device):
        return
    loop = _run(["losetup", "--find", "--show", str(image_path(settings, volume_id))])
    node = root / device.lstrip("/")
    if node.exists() or node.is_symlink():
        node.unlink()
    os.mknod(node, 0o660 | stat.S_IFBLK, os.stat(loop).st_rdev)
    state = Attachment(instance_id, device, loop, pid)
    (volumes_dir(settings) / f"{volume_id}.json").write_text(json.dumps(state.__dict__))
    log.info("%s: attached to %s as %s (%s)", volume_id, instance_id, device, loop)


def detach(settings: SandboxSettings, volume_id: str, have: Attachment) -> None:
    """The node out of the host's /dev (if it still runs), the loop device released (by the kernel once the
    guest unmounts the file system, if it still has it mounted: as a forced detach)."""
    root = guest_root(have.pid) if have.pid else None
    if root is not None:
        node = root / have.device.lstrip("/")
        try:
            if stat.S_ISBLK(node.lstat().st_mode):
                node.unlink()
        except OSError:
            pass
    if have.loop:
        subprocess.run(["losetup", "-d", have.loop], capture_output=True, timeout=60)
    (volumes_dir(settings) / f"{volume_id}.json").unlink(missing_ok=True)
    log.info("%s: detached from %s", volume_id, have.instance_id)


def mount_point(pid: int, device: str) -> str | None:
    """Where the host has `device` mounted (its /proc/PID/mounts), if it has."""
    try:
        lines = Path(f"/proc/{pid}/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 1 and fields[0] == device:
            return fields[1].encode().decode("unicode_escape")
    return None


def snapshot(settings: SandboxSettings, snapshot_id: str, volume_id: str, have: Attachment | None) -> None:
    """Copy the volume's image; a mounted file system is frozen while it is copied (a point in time)."""
    out = snapshot_path(settings, snapshot_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = None
    mp = mount_point(have.pid, have.device) if have and have.pid and guest_root(have.pid) else None
    try:
        if mp:
            fd = os.open(f"/proc/{have.pid}/root{mp}", os.O_RDONLY | os.O_DIRECTORY)
            fcntl.ioctl(fd, FIFREEZE, 0)
        tmp = out.with_suffix(".tmp")
        _run(["cp", "--sparse=always", "--reflink=auto", str(image_path(settings, volume_id)), str(tmp)])
        os.replace(tmp, out)
    finally:
        if fd is not None:
            try:
                fcntl.ioctl(fd, FITHAW, 0)
            finally:
                os.close(fd)
    log.info("%s: snapshot of %s copied%s", snapshot_id, volume_id, f" ({mp} frozen meanwhile)" if mp else "")


def delete(settings: SandboxSettings, volume_id: str) -> None:
    image_path(settings, volume_id).unlink(missing_ok=True)
    log.info("%s: volume deleted (its image removed)", volume_id)


def list_volumes(ec2) -> list[dict]:
    return [v for page in ec2.get_paginator("describe_volumes").paginate() for v in page["Volumes"]]


def list_snapshots(ec2) -> list[dict]:
    return [s for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"])
            for s in page["Snapshots"]]


def root_volume(volume: dict, roots: dict[str, str]) -> bool:
    """A volume attached as its instance's root device: the host's overlay is that disk, not this."""
    return any(roots.get(a.get("InstanceId")) == a.get("Device") for a in volume.get("Attachments") or [])


def reconcile(settings: SandboxSettings, ec2, instances: list[dict]) -> None:
    """One step: the API's volumes (but root volumes) and snapshots made real (the materializer calls it
    after the hosts, with the API's instances)."""
    roots = {i["InstanceId"]: i.get("RootDeviceName", "") for i in instances}
    vols = [v for v in list_volumes(ec2) if not root_volume(v, roots)]
    snaps = list_snapshots(ec2)
    attached = read_attached(settings)
    running = [i["InstanceId"] for i in instances if i["State"]["Name"] == "running"]
    acts = plan(vols, snaps, images=_files(volumes_dir(settings), ".img"),
                copies=_files(snapshots_dir(settings), ".img"), attached=attached,
                pids=running_pids(settings, running))
    for act in acts:
        kind = act[0]
        try:
            if kind == "snapshot":
                snapshot(settings, act[1], act[2], attached.get(act[2]))
                ec2.create_tags(Resources=[act[1]], Tags=[{"Key": COPIED_TAG, "Value": "yes"}])
            elif kind == "create":
                create(settings, act[1], act[2], act[3])
            elif kind == "detach":
                detach(settings, act[1], attached.pop(act[1]))
            elif kind == "attach":
                attach(settings, *act[1:])
            elif kind == "delete":
                if act[1] in attached:
                    detach(settings, act[1], attached.pop(act[1]))
                delete(settings, act[1])
            elif kind == "forget":
                snapshot_path(settings, act[1]).unlink(missing_ok=True)
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("%s: %s failed: %s", act[1], kind, exc)


def remove_all(settings: SandboxSettings) -> int:
    """sandbox.down: every loop device released, every volume image and snapshot copy removed; how many."""
    attached = read_attached(settings)
    for vid, have in attached.items():
        detach(settings, vid, have)
    n = len(_files(volumes_dir(settings), ".img")) + len(_files(snapshots_dir(settings), ".img"))
    for d in (volumes_dir(settings), snapshots_dir(settings)):
        if d.is_dir():
            for p in d.iterdir():
                p.unlink(missing_ok=True)
            d.rmdir()
    return n
