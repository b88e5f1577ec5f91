"""whip-up's configure and deploy as a pipeline: the nodes nothing waits for build beside the ones that serve.

    provision -> db, monitor: configure -> nightly backup, SMTP login           (in a thread of their own)
              -> proxy, app, worker: configure -> certificate -> deploy: code, venv (pip)
                                                  -> the database ready -> settings check, migrate, boot,
                                                     switch, health gate ...

A cold db node spends most of a whip-up in `apt-get install postgresql` and initdb; the app nodes' code and
venv need no database, so they are made meanwhile and only the first stage that uses the database waits
for it (`engine.DB_STAGES`). One deploy lock, taken under the action `whip-up`, is held around all of it,
so no deploy or configure of another run slips in between; each configure and the deploy audit under it.
A failure on either side ends the run once both sides ended, with every error said.
"""
from __future__ import annotations

import threading
from typing import Callable

from .backup.nightly import ensure_all as ensure_nightly
from .config import Config
from .configure.lock import cluster_lock
from .configure.run import configure_cluster
from .layout import DB_ROLE
from .monitor.config import MONITOR_ROLE
from .monitor.smtp import ensure_all as ensure_smtp
from .nodes import Node, find_nodes

BACKGROUND = (DB_ROLE, MONITOR_ROLE)     # configured beside the rest: the deploy's code and venv need neither
ACTION = "whip-up"                       # what a deploy or configure refused meanwhile is told


class Background:
    """`fn()` in a thread of its own from now on; `wait()` returns once it ended, raising its error."""

    def __init__(self, fn: Callable[[], object]):
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="whip-up-background", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - carried to the thread that waits
            self.error = exc

    def wait(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error

    def ended(self) -> BaseException | None:
        """Joined, without raising: its error, if any (for the failure path, where another error leads)."""
        self._thread.join()
        return self.error


def split(cfg: Config, nodes: list[Node]) -> tuple[list[str], list[str]]:
    """(the roles configured in the background, the rest), each only with a node of the cluster."""
    present = [r for r in cfg.role_names if any(n.role == r for n in nodes)]
    return [r for r in present if r in BACKGROUND], [r for r in present if r not in BACKGROUND]


def build(cfg: Config, ec2, deploy: Callable[..., float], out: Callable[[str], None] = print) -> float:
    """Configure every node and deploy, the background roles beside the rest (see the module's docstring);
    `deploy(held=..., db_ready=...)` is whip-up's own deploy and check. What `deploy` returned."""
    nodes = find_nodes(ec2, cfg.cluster.name)
    behind, ahead = split(cfg, nodes)
    out("== configure" + (f" ({', '.join(behind)} alongside, until the deploy needs them)" if behind else ""))
    with cluster_lock(cfg, nodes, out=out, action=ACTION, shared=True) as lock:
        background = Background(lambda: _background(cfg, ec2, nodes, lock, behind))
        try:
            if ahead:
                configure_cluster(cfg, ec2, roles=ahead, nodes=nodes, lock=lock)
            result = deploy(held=lock.guard, db_ready=background.wait)
            background.wait()                  # a deploy with nothing to migrate never asked for it
            return result
        except BaseException as exc:
            error = background.ended()
            if error is not None and str(error) not in str(exc):     # not already what the deploy says
                out(f"also: {' and '.join(behind)}: {error}")
            raise


def _background(cfg: Config, ec2, nodes: list[Node], lock, roles: list[str]) -> None:
    """The background roles configured, then what needs them: the nightly backup, the SMTP login."""
    if roles:
        configure_cluster(cfg, ec2, roles=roles, nodes=nodes, lock=lock)
    ensure_nightly(cfg, nodes, print)
    ensure_smtp(cfg, nodes, print)
