"""roles.<role>.volume and roles.db.backup: a node's data volume and the nightly backup, checked."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .validate import Invalid, absolute, choice, integer, mapping, shown, string

_VOLUME_KEYS = ("size_gb", "type", "device", "mount")
_BACKUP_KEYS = ("nightly", "keep")
VOLUME_TYPES = ("gp3", "gp2", "io1", "io2", "st1", "sc1", "standard")
VOLUME_DEVICE = re.compile(r"\A/dev/(?:sd|xvd)[f-p]\Z", re.ASCII)
PG_DATA = "/var/lib/postgresql"   # the db role's volume mount: Debian's clusters live under it
NIGHTLY = re.compile(r"\A(?:[01][0-9]|2[0-3]):[0-5][0-9]\Z", re.ASCII)


@dataclass(frozen=True)
class VolumeConfig:
    """A data volume of each node of the role (roles.<role>.volume): an EBS volume of its own, tagged with
    the node's role and index, kept when the instance goes (DeleteOnTermination false)."""
    size_gb: int
    type: str
    device: str            # as attached (/dev/xvdf); Nitro instances show it as an NVMe disk, found by id
    mount: str


@dataclass(frozen=True)
class BackupConfig:
    """roles.db.backup: the nightly `pg_dump` (UTC time of day, or None) and how many nightly ones to keep."""
    nightly: str | None = "03:00"
    keep: int = 7



def parse_volume(role: str, value: Any, path: str) -> VolumeConfig:
    m = mapping(value, path, _VOLUME_KEYS, required=("size_gb",))
    mount = absolute(m.get("mount", PG_DATA if role == "db" else "/data"), f"{path}.mount")
    if role == "db" and mount.rstrip("/") != PG_DATA:
        raise Invalid(f"{path}.mount", f"the db role's volume holds PostgreSQL's clusters: expected {PG_DATA}, "
                                       f"got {shown(mount)}")
    if mount.rstrip("/") in ("", "/", "/etc", "/usr", "/var", "/srv", "/home", "/root", "/boot"):
        raise Invalid(f"{path}.mount", f"expected a directory of its own, not {shown(mount)}")
    return VolumeConfig(
        size_gb=integer(m["size_gb"], f"{path}.size_gb", 1, 16384),
        type=choice(m.get("type", "gp3"), f"{path}.type", VOLUME_TYPES),
        device=string(m.get("device", "/dev/xvdf"), f"{path}.device", VOLUME_DEVICE, "a device like /dev/xvdf"),
        mount=mount.rstrip("/"),
    )


def parse_backup(value: Any, path: str) -> BackupConfig:
    m = mapping(value, path, _BACKUP_KEYS)
    nightly = m.get("nightly", "03:00")
    if nightly is not None and nightly is not False:
        nightly = string(nightly, f"{path}.nightly", NIGHTLY, "a UTC time like 03:00 (or null: none)")
    return BackupConfig(nightly=nightly or None, keep=integer(m.get("keep", 7), f"{path}.keep", 1, 365))
