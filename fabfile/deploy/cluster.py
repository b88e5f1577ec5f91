"""The nodes a deploy works on, each with its open pinned connection, and how work runs across them.

`open_cluster` connects the proxy, app and worker nodes in parallel; `each` runs a step on many members
at once (a failure is kept per node, as an exception object, and never hides the others); `gather` reads
every member's deploy state in one command per node.  Nothing here decides what to deploy.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

from .. import inventory
from ..config import Config
from ..inventory import Lookup
from ..nodes import Node, find_nodes
from ..remote import HostFailures, Progress, on_hosts, raise_failures, run
from ..ssh import connect
from . import commands
from .errors import DeployError, NodesChanged
from ..layout import SLOTS, Layout
from .releases import NodeState, parse_state

if TYPE_CHECKING:
    from fabric import Connection

T = TypeVar("T")

ROLES = ("proxy", "app", "worker")
# the roles a component's deploy connects to (app node 0 holds the lock and the audit log)
COMPONENT_ROLES = {"web": ("proxy", "app"), "workers": ("app", "worker"), "all": ROLES}


@dataclass
class Member:
    """A node deploy works on, with its open, pinned connection."""
    node: Node
    conn: Connection

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def role(self) -> str:
        return self.node.role


@dataclass
class Cluster:
    cfg: Config
    layout: Layout
    proxies: list[Member]
    apps: list[Member]
    workers: list[Member]
    db: Node | None
    broker: Node | None                  # worker node 0: redis, the celery broker (connected or not)
    progress: Progress
    out: Callable[[str], None] = print
    # started from the inventory: the cloud's own list, still coming (see `confirm`)
    lookup: Lookup[list[Node]] | None = None
    seen: list[Node] | None = None
    running: tuple[Node, ...] = ()       # every running node of the cluster, connected or not (the site's names)

    def confirm(self) -> None:
        """Before the first change: the cloud's list must be the one the cluster was opened from.
        NodesChanged if not (the caller starts again from the cloud's list); a no-op after a fresh lookup."""
        if self.lookup is None:
            return
        fresh, self.lookup = self.lookup.result(), None
        inventory.save(self.cfg, fresh)
        if not inventory.same(self.seen or [], fresh):
            raise NodesChanged(f"the cluster's nodes changed since {inventory.path(self.cfg)} was written")

    @property
    def members(self) -> list[Member]:
        return self.proxies + self.apps + self.workers

    @property
    def anchor(self) -> Member:
        """Where the lock and the audit log live: app node 0 (worker node 0 without app nodes)."""
        if self.apps:
            return self.apps[0]
        if self.workers:
            return self.workers[0]
        raise DeployError(f"cluster {self.cfg.cluster.name} has no app or worker node: nothing to deploy to "
                          f"(fab provision)")

    def programs_of(self, member: Member) -> tuple[str, ...]:
        """The supervisor programs deploy manages on `member`: gunicorn on app nodes, celery on workers."""
        if member.role == "app":
            return tuple(self.layout.slot_program(s) for s in SLOTS)
        if member.role == "worker":
            return (self.layout.worker_program,)
        return ()

    def close(self) -> None:
        for m in self.members:
            try:
                m.conn.close()
            except Exception:  # closing is best effort
                pass


def _running(cfg: Config, nodes: list[Node], roles: Iterable[str]) -> list[Node]:
    wanted = set(roles)
    not_running = [n for n in nodes if n.role in wanted and n.state != "running"]
    if not_running:
        raise DeployError("nodes not running: " + ", ".join(f"{n.name} ({n.state})" for n in not_running)
                          + "; start them or run fab provision")
    chosen = [n for n in nodes if n.role in wanted and n.state == "running"]
    if not chosen:
        raise DeployError(f"cluster {cfg.cluster.name} has no running proxy, app or worker node; "
                          f"run fab provision (or fab whip-up-full-system)")
    return chosen


def _connect_all(cfg: Config, nodes: list[Node]) -> list[Member]:
    """Every node connected over pinned SSH, in parallel; on any failure none is left open."""
    def open_one(node: Node):
        conn = connect(cfg, node)
        conn.open()
        return conn

    outcomes = on_hosts(nodes, open_one)
    try:
        raise_failures("SSH connect", outcomes)
    except HostFailures:
        for o in outcomes:
            if o.ok:
                o.value.close()  # type: ignore[attr-defined]  # an open Connection
        raise
    return [Member(o.node, o.value) for o in outcomes]


def open_cluster(cfg: Config, ec2, *, progress: Progress | None = None, out: Callable[[str], None] = print,
                 roles: Iterable[str] = ROLES, seen: list[Node] | None = None,
                 lookup: Lookup[list[Node]] | None = None) -> Cluster:
    """The cluster's proxy, app and worker nodes, each connected (in parallel) over pinned SSH.

    The nodes come from the cloud (`ec2`), or from `seen` (the inventory) while `lookup` asks the cloud:
    then the cluster must `confirm()` before changing anything."""
    if seen is None:
        nodes = find_nodes(ec2, cfg.cluster.name)
        inventory.save(cfg, nodes)
    else:
        nodes = seen
    members = _connect_all(cfg, _running(cfg, nodes, roles))
    db = next((n for n in nodes if n.role == "db" and n.state == "running"), None)
    broker = next((n for n in nodes if n.role == "worker" and n.state == "running"), None)
    return Cluster(cfg, Layout.of(cfg), [m for m in members if m.role == "proxy"],
                   [m for m in members if m.role == "app"], [m for m in members if m.role == "worker"],
                   db, broker, progress or Progress(), out, lookup, seen,
                   tuple(n for n in nodes if n.state == "running"))


def each(members: list[Member], fn: Callable[[Member], T], what: str) -> dict[str, T]:
    """fn(member) on every member in parallel: {node name: value}; HostFailures naming each failed node."""
    by_name = {m.name: m for m in members}
    outcomes = on_hosts([m.node for m in members], lambda node: fn(by_name[node.name]))
    raise_failures(what, outcomes)
    return {o.node.name: o.value for o in outcomes}  # type: ignore[misc]  # an ok outcome's value is a T


def each_best_effort(members: list[Member], fn: Callable[[Member], object]) -> dict[str, Exception]:
    """Like `each`, but only the errors come back ({node name: exception}): for cleanups."""
    by_name = {m.name: m for m in members}
    outcomes = on_hosts([m.node for m in members], lambda node: fn(by_name[node.name]))
    return {o.node.name: o.error for o in outcomes if o.error is not None}


def at_once(background: Callable[[], object], foreground: Callable[[], object]) -> None:
    """Both at the same time; once both ended, the foreground's error if it had one, else the background's."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(background)
        try:
            foreground()
        finally:
            other_error = other.exception()
    if other_error is not None:
        raise other_error


def gather(cl: Cluster, members: list[Member], *, migrations: Iterable[str] = ()) -> dict[str, NodeState]:
    """Each member's releases, `current` and programs (one command per node, in parallel); the nodes
    named in `migrations` also list each release's migration files."""
    with_migrations = set(migrations)

    def one(m: Member) -> NodeState:
        cmd = commands.state(cl.layout, cl.programs_of(m), migrations=m.name in with_migrations)
        st = parse_state(run(m.conn, cmd, step="read state").stdout)
        if not st.configured:
            raise DeployError(f"{cl.layout.root} does not exist: run fab configure first")
        return st

    return each(members, one, "reading the deploy state")


class Timer:
    """Named steps and their seconds, for the closing line of a deploy or rollback."""

    def __init__(self):
        self.start = time.monotonic()
        self.steps: list[tuple[str, float]] = []

    def step(self, name: str, fn: Callable[[], object]):
        t = time.monotonic()
        try:
            return fn()
        finally:
            self.steps.append((name, time.monotonic() - t))

    @property
    def total(self) -> float:
        return time.monotonic() - self.start

    def summary(self) -> str:
        return ", ".join(f"{name} {secs:.1f}" for name, secs in self.steps if secs >= 0.05)
