"""configure from the node list the cloud gave last time (`inventory`), the cloud asked alongside.

A no-op configure should not wait for boto3 to load and DescribeInstances to answer before its first SSH
byte. `configure_seen` starts from the saved list while a forked child asks the cloud (`inventory.Lookup`);
the first host with something to change, and the end of the run, wait for that answer (`Confirm`): when it
differs from the saved list, the run starts again from the cloud's list (the hosts already right cost
one facts command each). A list with a node not running, or no list, asks the cloud first, as before (and the deploy tasks save
its answer).
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

from .. import inventory
from ..deploy.errors import NodesChanged
from ..nodes import Node, find_nodes

T = TypeVar("T")


class Alongside(Generic[T]):
    """A question the forked cloud lookup answers too, after the node list (boto3 is loaded there already):
    `ask()` runs in the child; `answer` is its value once the run is over (None when it was not asked, or
    failed: the caller then asks the cloud itself, as before)."""

    def __init__(self, ask: Callable[[], T]):
        self.ask = ask
        self.answer: T | None = None


def _nodes_and(cfg, connect: Callable[[], object], also: Alongside | None) -> tuple[list[Node], object]:
    """The child's work: the cloud's node list, then `also`'s answer (None when it fails)."""
    nodes = find_nodes(connect(), cfg.cluster.name)
    try:
        return nodes, also.ask() if also is not None else None
    except Exception:  # the caller asks again, in the usual way, and reports what goes wrong there
        return nodes, None


class _NodesOf:
    """The node list of a `_nodes_and` lookup, as Confirm asks it."""

    def __init__(self, lookup: inventory.Lookup):
        self.lookup = lookup

    def result(self) -> list[Node]:
        return self.lookup.result()[0]


class Confirm:
    """Callable: waits (once) for the cloud's list; NodesChanged when it is not the saved one."""

    def __init__(self, cfg, seen: list[Node], lookup: inventory.Lookup):
        self.cfg, self.seen, self.lookup = cfg, seen, lookup
        self._lock = threading.Lock()
        self._same: bool | None = None

    def __call__(self) -> None:
        with self._lock:
            if self._same is None:
                fresh = self.lookup.result()
                inventory.save(self.cfg, fresh)
                self._same = inventory.same(self.seen, fresh)
        if not self._same:
            raise NodesChanged(f"the cluster's nodes changed since {inventory.path(self.cfg)} was written")


def usable(seen: list[Node] | None, role: str | None) -> bool:
    """A saved list to start from: some node (of `role`) listed, and every listed node running."""
    return bool(seen) and any(role in (None, n.role) for n in seen) and all(n.state == "running" for n in seen)


def configure_seen(cfg, connect: Callable[[], object], configure: Callable, *, also: Alongside | None = None,
                   lookup_connect: Callable[[], object] | None = None, **kw):
    """configure(cfg, ec2, nodes=..., confirm=..., **kw) from the saved list with the cloud asked alongside
    (by `lookup_connect()`'s client, default `connect()`'s; and `also`, answered once configure has
    returned), else (or when the nodes changed) configure(cfg, connect(), **kw)."""
    seen = inventory.load(cfg)
    if usable(seen, kw.get("role")):
        lookup = inventory.Lookup(lambda: _nodes_and(cfg, lookup_connect or connect, also))
        try:
            results = configure(cfg, None, nodes=seen, confirm=Confirm(cfg, seen, _NodesOf(lookup)),
                                connect=connect, **kw)
            if also is not None:
                also.answer = lookup.result()[1]
            return results
        except NodesChanged as exc:
            print(f"{exc}: starting again from the cloud's list", flush=True)
        finally:
            lookup.close()
    return configure(cfg, connect(), **kw)
