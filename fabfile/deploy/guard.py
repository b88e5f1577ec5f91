"""The deploy lock and the audit log, as one guard around a deploy or rollback.

    with guarded(cl, release, "deploy", break_lock=...) as guard:
        ...
        guard.audit(record)        # appends the audit line and releases the lock in one round trip

The lock lives on the anchor node (app node 0); it is released when the block ends, whatever happened.
The audit line goes to shared/deploys.log there and to the local state dir.
"""
from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

from ..remote import RemoteError, run
from ..state import cluster_dir, ensure_cluster_dir
from . import lock as cmd
from .cluster import Cluster, Member
from .errors import LockHeld
from .lock import (AuditRecord, LockInfo, boot_id, describe_holder, format_audit, format_lock, held_message,
                   interrupted_record, parse_lock, stale_evidence)


@dataclass
class Guard:
    """A lock this process holds on `member`, and the audit log it writes to."""
    cl: Cluster
    member: Member
    info: LockInfo
    released: bool = False
    keep: bool = False          # borrowed: held by the caller, who releases it (whip-up's pipeline)

    def audit(self, record: AuditRecord) -> None:
        """Append `record` on the anchor node (releasing the lock in the same round trip, unless it is
        borrowed) and locally."""
        write_audit(self.cl, record, None if self.keep else self)

    def borrowed(self) -> "Guard":
        """This lock for a run inside the holder's: it audits, and leaves the release to the holder."""
        return replace(self, keep=True)

    def release(self) -> None:
        if self.released or self.keep:
            return
        try:
            run(self.member.conn, cmd.lock_release(self.cl.layout, self.info.token), step="release the deploy lock")
            self.released = True
        except Exception as exc:  # reported; the deploy's own outcome matters more
            self.cl.out(f"warning: could not release the deploy lock on {self.member.name}: {exc}; "
                        f"the next deploy needs --break-lock")


def _take(cl: Cluster, info: LockInfo) -> LockInfo | None:
    """Take the lock for `info`: None when taken, else the holder's info."""
    m = cl.anchor
    r = run(m.conn, cmd.lock_acquire(cl.layout), step="take the deploy lock", stdin=format_lock(info), check=False)
    if r.exited == cmd.LOCK_HELD:
        return parse_lock(r.stdout.strip())
    if r.exited != 0:
        raise RemoteError(m.name, "take the deploy lock", r.exited, (r.stdout or "") + (r.stderr or ""))
    return None


def staleness(held: LockInfo) -> str | None:
    """Why `held`'s holder is provably gone (a process of this machine that no longer runs), or None."""
    if not cmd.TOKEN.fullmatch(held.token):
        return None
    return stale_evidence(held, socket.gethostname(), boot_id())


def acquire(cl: Cluster, release: str, action: str, *, break_lock: bool = False) -> Guard:
    """Take the cluster's lock. A lock whose holder is provably gone (see `staleness`) is taken over, and so
    is any lock with --break-lock; either way the interrupted run gets its audit line. LockHeld names a
    holder that may still run."""
    m, info = cl.anchor, LockInfo.new(release, action)
    interrupted: list[tuple[LockInfo, str]] = []
    if break_lock:
        old = run(m.conn, cmd.lock_break(cl.layout), step="break the deploy lock").stdout.strip()
        if old:
            held = parse_lock(old)
            cl.out(f"deploy lock taken over from {held.who} ({held.action} of {held.release or '?'} "
                   f"since {held.since or '?'})")
            interrupted.append((held, "its lock was broken with --break-lock"))
    held = _take(cl, info)
    why = staleness(held) if held is not None else None
    if held is not None and why is not None:
        run(m.conn, cmd.lock_release(cl.layout, held.token), step="take over the stale deploy lock")
        cl.out(f"deploy lock of {describe_holder(held)} is stale: {why}; taken over")
        interrupted.append((held, why))
        held = _take(cl, info)              # None, unless another run took it over first
    if held is not None:
        raise LockHeld(held_message(held, f"{m.name}:{cl.layout.lock_dir}"), held)
    for old, reason in interrupted:
        write_audit(cl, interrupted_record(old, reason, info.who))
    return Guard(cl, m, info)


@contextmanager
def guarded(cl: Cluster, release: str, action: str, *, break_lock: bool = False,
            held: Guard | None = None) -> Iterator[Guard]:
    """The cluster's lock held for the block (see `acquire`), released when it ends; or `held`, a lock this
    process already holds around the block (whip-up's), borrowed: its holder releases it."""
    if held is not None:
        yield held.borrowed()
        return
    guard = acquire(cl, release, action, break_lock=break_lock)
    try:
        yield guard
    finally:
        guard.release()


def read_lock(cl: Cluster) -> LockInfo | None:
    """Who holds the lock now (None when it is free)."""
    text = run(cl.anchor.conn, cmd.lock_read(cl.layout), step="read the deploy lock").stdout
    if not text.startswith("held"):
        return None
    return parse_lock(text[len("held"):].strip())


def write_audit(cl: Cluster, record: AuditRecord, guard: Guard | None = None) -> None:
    """Append to shared/deploys.log on the anchor node (releasing `guard`'s lock in the same round trip)
    and to the local state dir; a failure is a warning, never the run's outcome."""
    line = format_audit(record)
    try:
        if guard is not None and guard.member is cl.anchor and not guard.released:
            run(cl.anchor.conn, cmd.audit_and_unlock(cl.layout, guard.info.token),
                step="append to the audit log and release the lock", stdin=line)
            guard.released = True
        else:
            run(cl.anchor.conn, cmd.audit_append(cl.layout), step="append to the audit log", stdin=line)
    except Exception as exc:
        cl.out(f"warning: audit log on {cl.anchor.name} not written: {exc}")
    try:
        ensure_cluster_dir(cl.cfg)
        with open(cluster_dir(cl.cfg) / "deploys.log", "a", encoding="utf-8") as f:
            f.write(line)
    except OSError as exc:
        cl.out(f"warning: local audit log not written: {exc}")
