"""Backups' names, tags and listing: pure values (no I/O).

A backup is one object in the cluster's backups bucket (`<cluster>-backups-<account>-<region>`, never the
media bucket: the proxy serves that one), key `<app>/<id>.dump`, id `<UTC %Y%m%dT%H%M%SZ>-<kind>`, kind
manual | restore-point | nightly. Its tags say the time, the kind, the release the site ran and its sha.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

KINDS = ("manual", "restore-point", "nightly")
ID = re.compile(r"\A(\d{8}T\d{6}Z)-(manual|restore-point|nightly)\Z", re.ASCII)
SUFFIX = ".dump"
PURPOSE = "backups"


@dataclass(frozen=True)
class Backup:
    id: str
    key: str
    size: int
    time: datetime
    kind: str
    release: str = ""
    sha: str = ""


def backup_id(now: datetime, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"backup kind {kind!r}: expected one of {', '.join(KINDS)}")
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{kind}"


def object_key(app: str, backup: str) -> str:
    return f"{app}/{backup}{SUFFIX}"


def parse_key(app: str, key: str) -> tuple[str, datetime, str] | None:
    """(id, time, kind) of one of the app's backup objects; None for any other key."""
    prefix = f"{app}/"
    if not key.startswith(prefix) or not key.endswith(SUFFIX):
        return None
    m = ID.fullmatch(key[len(prefix):-len(SUFFIX)])
    if m is None:
        return None
    when = datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return m.group(0), when, m.group(2)


def tag_set(kind: str, when: datetime, release: str | None, sha: str | None) -> list[dict[str, str]]:
    return [{"Key": "whipup:kind", "Value": kind},
            {"Key": "whipup:time", "Value": f"{when.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"},
            {"Key": "whipup:release", "Value": release or "-"},
            {"Key": "whipup:sha", "Value": sha or "-"}]


def tagging_header(kind: str, when: datetime, release: str | None, sha: str | None) -> str:
    """The same tags as PutObject's x-amz-tagging header (the nightly job's upload)."""
    return "&".join(f"{quote(t['Key'], safe='')}={quote(t['Value'], safe='')}"
                    for t in tag_set(kind, when, release, sha))


def backups_from(app: str, objects: list[dict], tags: dict[str, dict[str, str]]) -> list[Backup]:
    """ListObjectsV2's contents and each key's tags -> the app's backups, oldest first."""
    out = []
    for obj in objects:
        parsed = parse_key(app, obj["Key"])
        if parsed is None:
            continue
        backup, when, kind = parsed
        t = tags.get(obj["Key"], {})
        out.append(Backup(backup, obj["Key"], int(obj.get("Size", 0)), when, kind,
                          "" if t.get("whipup:release", "-") == "-" else t["whipup:release"],
                          "" if t.get("whipup:sha", "-") == "-" else t["whipup:sha"]))
    return sorted(out, key=lambda b: b.id)


def pick(backups: list[Backup], wanted: str | None) -> Backup | None:
    """`wanted` (an id, or a unique start of one), or the latest; None if there is none such."""
    if not backups:
        return None
    if wanted is None:
        return backups[-1]
    found = [b for b in backups if b.id == wanted] or [b for b in backups if b.id.startswith(wanted)]
    return found[-1] if len(found) == 1 or any(b.id == wanted for b in found) else None


def expired(backups: list[Backup], keep: int, kind: str = "nightly") -> list[Backup]:
    """The backups of `kind` beyond the `keep` newest (retention)."""
    mine = [b for b in backups if b.kind == kind]
    return mine[:-keep] if keep > 0 and len(mine) > keep else []


def size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def listing(backups: list[Backup]) -> list[str]:
    """`fab backups`: one line per backup, newest last."""
    if not backups:
        return ["no backups yet (fab backup takes one)"]
    rows = [("ID", "TIME (UTC)", "SIZE", "KIND", "RELEASE")]
    rows += [(b.id, f"{b.time:%Y-%m-%d %H:%M:%S}", size_text(b.size), b.kind, b.release or "-") for b in backups]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def hosts_endpoint(cfg) -> str | None:
    """Where the nodes reach S3: the sandbox's gate; None on AWS (the regional endpoint). Here, not in store.py:
    configure's nightly step needs it without botocore."""
    if cfg.cluster.target != "sandbox":
        return None
    from ..sandbox.settings import load_settings

    return load_settings().s3_endpoint
