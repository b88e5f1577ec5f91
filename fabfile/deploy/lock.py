"""The cluster's deploy lock and the audit log: their records and the commands that keep them, pure.

The lock is a directory on the anchor node (renamed into place, which is atomic) holding `info`,
one JSON object: who (user@host), since (UTC), release, action and a random
token that only its owner's release matches.  The audit log gets one JSON line
per deploy or rollback.  `guard` runs these commands.
"""
from __future__ import annotations

import getpass
import json
import re
import secrets
import shlex
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from .commands import as_app
from .layout import Layout

q = shlex.quote
LOCK_HELD = 75          # exit status of lock_acquire when someone else holds the lock


def whoami() -> str:
    """user@host of this machine: who a lock or an audit line names."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LockInfo:
    who: str
    since: str                 # ISO 8601 UTC
    release: str               # the release being deployed, or rolled back to
    action: str                # deploy, quick-update, rollback
    token: str = ""

    @classmethod
    def new(cls, release: str, action: str, now: datetime | None = None, who: str | None = None) -> "LockInfo":
        return cls(who or whoami(), iso(now or utc_now()), release, action, secrets.token_hex(8))


def format_lock(info: LockInfo) -> str:
    return json.dumps(asdict(info), sort_keys=True) + "\n"


def parse_lock(text: str) -> LockInfo:
    """The holder from a lock's `info`; an empty or unreadable one is still a held lock, described as such."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError
    except ValueError:
        raw = " ".join(text.split())[:120]
        return LockInfo(who="unknown" if not raw else f"unknown ({raw!r})", since="", release="", action="")
    return LockInfo(**{k: str(data.get(k, "")) for k in ("who", "since", "release", "action", "token")})


def _ago(since: str, now: datetime) -> str:
    try:
        then = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return ""
    seconds = int((now - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def describe_holder(info: LockInfo, now: datetime | None = None) -> str:
    """`root@laptop since 2024-01-31T12:00:00Z (3 min ago), deploy of release 2024...-1a2b3c4`."""
    text = info.who or "unknown"
    if info.since:
        ago = _ago(info.since, now or utc_now())
        text += f" since {info.since}" + (f" ({ago})" if ago else "")
    else:
        text += " (lock being written, or written by hand: no time recorded)"
    if info.action or info.release:
        text += f", {info.action or 'deploy'}" + (f" of release {info.release}" if info.release else "")
    return text


def held_message(info: LockInfo, where: str, now: datetime | None = None) -> str:
    return (f"deploy lock on {where} is held by {describe_holder(info, now)}. If that deploy is still running, "
            f"wait for it; if it is gone (interrupted, SSH cut), take the lock over with --break-lock")


# --- the audit log ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditRecord:
    at: str
    who: str
    action: str                # deploy, quick-update, rollback
    result: str                # ok, failed, rolled-back
    from_release: str | None
    to_release: str | None
    from_sha: str | None
    to_sha: str | None
    component: str = "all"
    seconds: float | None = None
    detail: str = ""


def format_audit(record: AuditRecord) -> str:
    """One JSON line (no newline inside: a message's newlines are escaped by json)."""
    return json.dumps(asdict(record), sort_keys=False) + "\n"


def parse_audit(text: str) -> list[AuditRecord]:
    records = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            records.append(AuditRecord(**{k: data.get(k) for k in AuditRecord.__dataclass_fields__}))
        except (ValueError, TypeError):
            continue
    return records


def describe_audit(record: AuditRecord) -> str:
    """`2024-01-31T12:00:00Z root@laptop deploy ok: 2024...-aaaaaaa -> 2024...-bbbbbbb (all, 12.3 s)`."""
    frm = record.from_release or "(none)"
    to = record.to_release or "(none)"
    secs = f", {record.seconds:.1f} s" if isinstance(record.seconds, (int, float)) else ""
    detail = f": {record.detail.splitlines()[0]}" if record.detail else ""
    return f"{record.at} {record.who} {record.action} {record.result}: {frm} -> {to} ({record.component}{secs}){detail}"


# --- the commands that take, read and release the lock, and append to the audit log ------------

def lock_acquire(layout: Layout) -> str:
    """Take the lock: its info (stdin) is written in a temporary directory renamed to the lock's path
    (rename is atomic and fails onto a lock that holds its info), so whoever finds the lock held always
    reads who holds it; when held, print the holder's info and exit 75. (With mkdir and then the info,
    a second deploy started at the same moment read an empty lock and named no holder.)"""
    lock = q(layout.lock_dir)
    return as_app(layout, f'tmp=$(mktemp -d {lock}.new.XXXXXX) && cat > "$tmp/info" && chmod 755 "$tmp" && '
                          f'if mv -T "$tmp" {lock} 2>/dev/null; then :; else rm -rf "$tmp"; '
                          f"cat {lock}/info 2>/dev/null; exit {LOCK_HELD}; fi")


def lock_read(layout: Layout) -> str:
    lock = q(layout.lock_dir)
    return as_app(layout, f"if [ -d {lock} ]; then echo held; cat {lock}/info 2>/dev/null; fi; true")


def lock_break(layout: Layout) -> str:
    """Print the holder's info and remove the lock (--break-lock)."""
    lock = q(layout.lock_dir)
    return as_app(layout, f"cat {lock}/info 2>/dev/null; rm -rf {lock}")


def lock_release(layout: Layout, token: str) -> str:
    """Remove the lock only if it is still ours (its info holds our token)."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", token, re.ASCII):
        raise ValueError("bad lock token")
    lock = q(layout.lock_dir)
    return as_app(layout, f"if grep -qF {token} {lock}/info 2>/dev/null; then rm -rf {lock}; fi; true")


def audit_and_unlock(layout: Layout, token: str) -> str:
    """Append stdin to the audit log and release our lock: one round trip at the end of a run."""
    return f"{audit_append(layout)} && {lock_release(layout, token)}"


def audit_append(layout: Layout) -> str:
    """Append stdin (one JSON line) to shared/deploys.log."""
    return as_app(layout, f"cat >> {q(layout.audit_log)}")


def audit_tail(layout: Layout, lines: int = 10) -> str:
    return as_app(layout, f"tail -n {int(lines)} {q(layout.audit_log)} 2>/dev/null; true")
