"""configure under the cluster's deploy lock (deploy/lock.py, deploy/guard.py): never while a deploy runs.

    with cluster_lock(cfg, nodes, wait=..., break_lock=..., out=...) as lock:
        ... every host converged, the anchor's with `lock.after_stage(node)` ...
        lock.audit(results, role=..., seconds=...)   # the audit line, and the lock released in that round trip

- The lock is deploy's own: /srv/<app>/shared/deploy.lock on the anchor node (app node 0, else worker node 0,
  as `deploy.cluster.Cluster.anchor`), taken with deploy's commands under the action `configure`, so a
  deploy started meanwhile is refused naming configure, as configure is refused naming a deploy.
- Held by another run: refused with the holder's name (LockHeld), or with `wait` (seconds) polled every
  POLL seconds, the holder printed (again whenever it changes), until it is free or `wait` has passed.
  A stale lock (its holder's process on this machine is gone) is taken over, and so is any with
  --break-lock, each with the interrupted run's audit line, as deploy does.
- The first configure of a cluster: while the anchor has no /srv/<app>/shared (configure makes it, with the
  app user) no deploy can hold or take the lock, since deploy's lock command needs both. The run starts
  without it and takes it right after the anchor's files stage has made that directory, before the
  anchor's services are touched; a deploy that slips into that instant makes the anchor fail, naming it.
  No anchor (no app or worker node), or one that is not running: no deploy can run (deploy needs every
  node of its roles running), nothing to lock. A dry run takes no lock and says who holds it, if anyone.
- The audit line is a deploy's: shared/deploys.log on the anchor (when the lock was held) and the local
  state dir; action configure, ok or failed, the anchor's current release, what changed or what failed.
  A run that changed nothing and failed nowhere writes none, as a deploy with nothing to do.
"""
from __future__ import annotations

import shlex
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from ..config import Config
from ..deploy.cluster import Cluster, Member
from ..deploy.errors import LockHeld
from ..deploy.guard import Guard, acquire, read_lock
from ..deploy.lock import AuditRecord, describe_holder, format_audit, held_message, iso, utc_now, whoami
from ..layout import Layout
from ..nodes import Node
from ..remote import ConnectionLost, Progress, RemoteError, run, sudo_sh
from ..ssh import connect
from ..state import cluster_dir, ensure_cluster_dir
from .report import HostResult

ACTION = "configure"
POLL = 2.0                  # seconds between two tries of a held lock (--wait)
WAIT_TIMEOUT = 600.0        # --wait-timeout's default


def anchor_of(nodes: list[Node]) -> Node | None:
    """The node deploy keeps its lock on: the first app node (find_nodes' order), else the first worker."""
    for role in ("app", "worker"):
        found = [n for n in nodes if n.role == role]
        if found:
            return found[0]
    return None


def lock_place(layout: Layout) -> str:
    """As root: `ready` when the lock's directory exists, else `absent` (no app user or layout yet)."""
    return sudo_sh(f"if [ -d {shlex.quote(layout.shared)} ]; then echo ready; else echo absent; fi")


def current_release(layout: Layout) -> str:
    """The `current` link's target (nothing when there is none): what the audit line names."""
    return sudo_sh(f"readlink {shlex.quote(layout.current)} || true")


def audit_detail(results: list[HostResult]) -> str:
    """What the run did, in a line: what changed (and the handlers run) on each host, or where it failed."""
    failed = [r for r in results if r.error]
    changed = [r for r in results if r.changed]
    text = f"changed {sum(r.changed for r in results)} on {len(changed)} of {len(results)} host(s)"
    runs = [f"{r.name}: {', '.join(r.services)}" for r in changed if r.services]
    if runs:
        text += " (" + "; ".join(runs) + ")"
    for r in failed:
        text += f"; {r.name} failed" + (f" at {r.stage}" if r.stage else "") + f": {(r.error or '').splitlines()[0]}"
    return text


class ClusterLock:
    """The deploy lock for one configure run (see the module's docstring)."""

    def __init__(self, cfg: Config, nodes: list[Node], *, wait: float | None = None, break_lock: bool = False,
                 dry_run: bool = False, out: Callable[[str], None] = print, layout: Layout | None = None,
                 connect_to=None, sleep=None, clock=None, action: str = ACTION,
                 shared: bool = False):
        self.cfg, self.wait, self.break_lock, self.dry_run, self.out = cfg, wait, break_lock, dry_run, out
        self.action = action           # what a deploy refused meanwhile is told holds the lock
        self.shared = shared           # held around several runs (whip-up's): their audit lines keep it
        self.layout = layout or Layout.of(cfg)
        self.anchor = anchor_of(nodes)
        self._connect = connect_to or connect
        self._sleep, self._clock = sleep or time.sleep, clock or time.monotonic
        self.cl: Cluster | None = None
        self.guard: Guard | None = None
        self.late = False              # the anchor is not configured yet: take the lock after its files stage
        self.current: str | None = None

    def open(self) -> None:
        """Take the lock (or wait for it), or say why there is nothing to lock yet."""
        a = self.anchor
        if a is None or a.state != "running":
            why = "the cluster has no app or worker node" if a is None else f"{a.name} is {a.state}"
            self.out(f"deploy lock: none taken ({why}: no deploy can run)")
            return
        member = Member(a, self._connect(self.cfg, a))
        self.cl = Cluster(self.cfg, self.layout, [], [member] if a.role == "app" else [],
                          [member] if a.role == "worker" else [], None, None, Progress(quiet=True), self.out)
        if not self.dry_run and self._took():
            return
        place = run(member.conn, lock_place(self.layout), step="find the deploy lock").stdout.split()
        if not place or place[0] != "ready":
            self.late = not self.dry_run
            self.out(f"deploy lock: {a.name} has no {self.layout.shared} yet (first configure): no deploy can "
                     f"run; " + ("taken once its files are in place" if self.late else "none taken"))
            return
        if self.dry_run:
            held = read_lock(self.cl)
            if held is not None:
                self.out(held_message(held, f"{a.name}:{self.layout.lock_dir}"))
            return
        self.take()

    def _took(self) -> bool:
        """The lock taken at once, as on every configure of a configured cluster (one round trip); False when
        the anchor could not run the lock's command (no app user or shared/ yet: `open` asks where it is)."""
        try:
            self.take()
        except RemoteError as exc:
            if not isinstance(exc, ConnectionLost) and exc.step in ("take the deploy lock", "break the deploy lock"):
                return False
            raise
        return True

    def take(self) -> None:
        """The lock, now; LockHeld naming the holder, at once or (with `wait`) once the time is up."""
        assert self.cl is not None
        deadline = None if self.wait is None else self._clock() + self.wait
        shown = None
        while True:
            try:
                self.guard = acquire(self.cl, "", self.action, break_lock=self.break_lock)
                return
            except LockHeld as exc:
                if deadline is None:
                    raise LockHeld(f"{exc}\n(fab configure --wait waits for it)", exc.holder) from None
                if self._clock() >= deadline:
                    raise LockHeld(f"{exc}\n(still held after waiting {self.wait:g} s: --wait-timeout)",
                                   exc.holder) from None
                if exc.holder != shown:
                    shown = exc.holder
                    holder = describe_holder(exc.holder) if exc.holder is not None else "another run"
                    self.out(f"waiting for the deploy lock on {self.cl.anchor.name}: held by {holder}")
            self.break_lock = False             # broken once at most
            self._sleep(max(0.0, min(POLL, deadline - self._clock())))

    def _current(self) -> str | None:
        assert self.cl is not None
        link = run(self.cl.anchor.conn, current_release(self.layout), step="read the current release").stdout
        return link.strip().rsplit("/", 1)[-1] or None

    def after_stage(self, node: Node) -> Callable[[str], None] | None:
        """For the anchor on a first configure: take the lock once its files stage has made the directory."""
        if not self.late or self.anchor is None or node.instance_id != self.anchor.instance_id:
            return None

        def took_files(stage: str) -> None:
            if stage == "files" and self.late:
                self.late = False
                self.take()
                self.out(f"deploy lock: taken on {node.name}, now that its {self.layout.shared} exists")
        return took_files

    def audit(self, results: list[HostResult], *, role: str | None, seconds: float) -> None:
        """The run's audit line, written with the lock's release when it is held: none for a dry run, nor for
        a run that changed nothing and failed nowhere (as a deploy with nothing to do writes none)."""
        if self.dry_run or not any(r.changed or r.error for r in results):
            return
        if self.guard is not None and self.current is None:
            self.current = self._current()     # under the lock: what a deploy waited for left (none moves it now)
        record = AuditRecord(at=iso(utc_now()), who=whoami(), action=ACTION,
                             result="failed" if any(r.error for r in results) else "ok",
                             from_release=self.current, to_release=self.current, from_sha=None, to_sha=None,
                             component=role or "all", seconds=round(seconds, 1), detail=audit_detail(results))
        if self.guard is not None:
            # one run of several under a lock held around them (whip-up's pipeline): the line, the lock kept
            (self.guard.borrowed() if self.shared else self.guard).audit(record)
        else:                           # no lock was held: no deploys.log on the anchor yet, or none to hold
            _local_audit(self.cfg, record, self.out)

    def close(self) -> None:
        if self.guard is not None:
            self.guard.release()
        if self.cl is not None:
            self.cl.close()


def _local_audit(cfg: Config, record: AuditRecord, out: Callable[[str], None]) -> None:
    """The audit line in the local state dir only (no anchor holds a deploys.log yet)."""
    try:
        ensure_cluster_dir(cfg)
        with open(cluster_dir(cfg) / "deploys.log", "a", encoding="utf-8") as f:
            f.write(format_audit(record))
    except OSError as exc:
        out(f"warning: local audit log not written: {exc}")


@contextmanager
def cluster_lock(cfg: Config, nodes: list[Node], **options) -> Iterator[ClusterLock]:
    """A ClusterLock, opened (the lock taken, or waited for); released and closed when the block ends."""
    lock = ClusterLock(cfg, nodes, **options)
    try:
        lock.open()
        yield lock
    finally:
        lock.close()
