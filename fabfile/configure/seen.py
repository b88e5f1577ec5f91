"""configure from the node list the cloud gave last time (`inventory`), the cloud asked alongside.

A no-op configure should not wait for boto3 to load and DescribeInstances to answer before its first SSH
byte. `configure_seen` starts from the saved list while a forked child asks the cloud (`inventory.Lookup`);
the first host with something to change, and the end of the run, wait for that answer (`Confirm`): when it
differs from the saved list, the run starts again from the cloud's list (the hosts already right cost
one facts command each). A list with a node not running, or no list, asks the cloud first, as before
(configure_cluster saves its answer).

A list the cloud confirmed less than WHIPUP_NODES_TTL seconds ago (60 by default; 0: always ask) is trusted
as it is (`Trusted`): the cloud is asked only before a first change, or when a host fails (a node the cloud
replaced does not answer, or not with its pinned key); a run with nothing to change asks it nothing.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

from .. import inventory
from ..deploy.errors import NodesChanged
from ..remote import HostFailures, RemoteError
from ..nodes import Node, find_nodes

T = TypeVar("T")


class Alongside(Generic[T]):
    """A question the forked cloud lookup answers too, after the node list (boto3 is loaded there already):
    `ask()` runs in the child; `answer` is its value once the run is over (None when it was not asked, or
    failed: the caller then asks the cloud itself, as before). With a `key`, an answer is remembered
    (inventory.remember) and a trusted list's run takes the remembered one."""

    def __init__(self, ask: Callable[[], T], key: str | None = None):
        self.ask, self.key = ask, key
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

    def __call__(self, settled: bool = False) -> None:
        with self._lock:
            if self._same is None:
                fresh = self.lookup.result()
                inventory.save(self.cfg, fresh)
                self._same = inventory.same(self.seen, fresh)
        if not self._same:
            raise NodesChanged(f"the cluster's nodes changed since {inventory.path(self.cfg)} was written")


class _Asked:
    """The cloud's list, asked here and now (Confirm's lookup for a trusted list)."""

    def __init__(self, cfg, connect: Callable[[], object]):
        self.cfg, self.connect = cfg, connect

    def result(self) -> list[Node]:
        return find_nodes(self.connect(), self.cfg.cluster.name)


class Trusted:
    """confirm() for a list trusted as fresh: the cloud is asked before the first change, not at the end of
    a run that changed nothing and failed nowhere (`settled`)."""

    def __init__(self, cfg, seen: list[Node], connect: Callable[[], object]):
        self._confirm = Confirm(cfg, seen, _Asked(cfg, connect))
        self._asked = False
        self._lock = threading.Lock()

    def __call__(self, settled: bool = False) -> None:
        with self._lock:
            if settled and not self._asked:
                return
            self._asked = True
        self._confirm()


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
        ttl = inventory.trust_seconds()
        kept = inventory.recall(cfg, also.key, ttl) if also is not None and also.key else None
        if inventory.fresh(cfg, ttl) and (also is None or kept is not None):
            return _trusted(cfg, seen, connect, configure, also, kept, **kw)
        lookup = inventory.Lookup(lambda: _nodes_and(cfg, lookup_connect or connect, also))
        try:
            results = configure(cfg, None, nodes=seen, confirm=Confirm(cfg, seen, _NodesOf(lookup)),
                                connect=connect, **kw)
            if also is not None:
                also.answer = lookup.result()[1]
                if also.key and isinstance(also.answer, str):
                    inventory.remember(cfg, also.key, also.answer)
            return results
        except NodesChanged as exc:
            print(f"{exc}: starting again from the cloud's list", flush=True)
        finally:
            lookup.close()
    return configure(cfg, connect(), **kw)


def _trusted(cfg, seen: list[Node], connect: Callable[[], object], configure: Callable, also: Alongside | None,
             kept, **kw):
    """configure from a list trusted as fresh; again from the cloud's list when a host failed and the cloud
    lists other nodes, or when a change found them changed."""
    try:
        results = configure(cfg, None, nodes=seen, confirm=Trusted(cfg, seen, connect), connect=connect, **kw)
        if also is not None:
            also.answer = kept
        return results
    except NodesChanged as exc:
        print(f"{exc}: starting again from the cloud's list", flush=True)
    except (HostFailures, RemoteError):
        ec2 = connect()
        listed = find_nodes(ec2, cfg.cluster.name)
        inventory.save(cfg, listed)
        if inventory.same(seen, listed):
            raise
        print(f"the cluster's nodes changed since {inventory.path(cfg)} was written: starting again from the "
              "cloud's list", flush=True)
        return configure(cfg, ec2, nodes=listed, **kw)
    return configure(cfg, connect(), **kw)
