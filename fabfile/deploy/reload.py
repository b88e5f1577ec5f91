"""How celery takes a release: a warm restart (TERM: running tasks finish), then a start on `current`.

gunicorn never restarts in place: a release goes live in the other slot (`switchover`).
"""
from __future__ import annotations

from ..remote import run
from . import commands
from .cluster import Cluster, Member, each
from .errors import DeployError


def _supervisor(m: Member, command: str, step: str) -> tuple[bool, str]:
    """Run a supervisor command: (did it work, what it printed); its output says ERROR when it did not."""
    r = run(m.conn, command, step=step, check=False)
    text = ((r.stdout or "") + (r.stderr or "")).strip()
    return r.exited == 0 and "ERROR" not in text, text


def worker(cl: Cluster, m: Member) -> None:
    """celery on worker node `m`: stop (a warm shutdown), then start on `current`."""
    ok, text = _supervisor(m, commands.worker_restart(cl.layout), "celery restart")
    if not ok:
        raise DeployError(f"{m.name}: supervisorctl (restart {cl.layout.worker_program}): {text}")
    cl.progress(m.name, "celery", "restarted (warm shutdown, then start)")


def workers(cl: Cluster, members: list[Member]) -> None:
    """celery's warm restart on every worker node at once."""
    if members:
        each(members, lambda m: worker(cl, m), "restarting celery")
