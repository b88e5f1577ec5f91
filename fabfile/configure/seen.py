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
from typing import Callable

from .. import inventory
from ..deploy.errors import NodesChanged
from ..nodes import Node, find_nodes


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


def configure_seen(cfg, connect: Callable[[], object], configure: Callable, **kw):
    """configure(cfg, ec2, nodes=..., confirm=..., **kw) from the saved list with the cloud asked alongside,
    else (or when the nodes changed) configure(cfg, connect(), **kw)."""
    seen = inventory.load(cfg)
    if usable(seen, kw.get("role")):
        lookup = inventory.Lookup(lambda: find_nodes(connect(), cfg.cluster.name))
        try:
            return configure(cfg, None, nodes=seen, confirm=Confirm(cfg, seen, lookup), connect=connect, **kw)
        except NodesChanged as exc:
            print(f"{exc}: starting again from the cloud's list", flush=True)
        finally:
            lookup.close()
    return configure(cfg, connect(), **kw)
