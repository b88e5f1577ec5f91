"""How the processes take a release: gunicorn by HUP, restart or start; celery by a warm restart.

The caller says which nodes and which action each app node gets; nothing here reads a plan.
"""
from __future__ import annotations

import time
from typing import Callable

from ..remote import run
from . import commands, health
from .cluster import Cluster, Member, at_once, each
from .errors import DeployError

# A restart refuses connections for a moment; nginx then skips that app node for its fail_timeout (10 s in
# configure's site). A rolling restart waits that long before the next node, or nginx would find none alive.
ROLLING_PAUSE = 11.0
_WEB_DONE = {"hup": "HUP: graceful reload on the new code", "restart": "restarted (new venv)", "start": "started"}


def rolling(actions: dict[str, str]) -> bool:
    """Restart app nodes one at a time: more than one, and a restart (not a HUP) among them."""
    return len(actions) > 1 and "restart" in actions.values()


def _supervisor(m: Member, command: str, step: str) -> tuple[bool, str]:
    """Run a supervisor command: (did it work, what it printed); its output says ERROR when it did not."""
    r = run(m.conn, command, step=step, check=False)
    text = ((r.stdout or "") + (r.stderr or "")).strip()
    return r.exited == 0 and "ERROR" not in text, text


def web(cl: Cluster, m: Member, action: str) -> None:
    """gunicorn on app node `m`: hup, restart or start."""
    ok, text = _supervisor(m, commands.web(cl.layout, action), f"gunicorn {action}")
    if not ok:
        raise DeployError(f"{m.name}: supervisorctl ({action} {cl.layout.web_program}): {text}"
                          + (" (is the program configured? fab configure)" if "no such" in text else ""))
    cl.progress(m.name, "gunicorn", _WEB_DONE[action])


def worker(cl: Cluster, m: Member) -> None:
    """celery on worker node `m`: stop (a warm shutdown), then start on `current`."""
    ok, text = _supervisor(m, commands.worker_restart(cl.layout), "celery restart")
    if not ok:
        raise DeployError(f"{m.name}: supervisorctl (restart {cl.layout.worker_program}): {text}")
    cl.progress(m.name, "celery", "restarted (warm shutdown, then start)")


def web_tier(cl: Cluster, apps: list[Member], actions: dict[str, str], release: str, health_timeout: float) -> None:
    """gunicorn on every app node: all at once, or one at a time (each healthy before the next) when
    several restart."""
    if not rolling({m.name: actions[m.name] for m in apps}):
        if apps:
            each(apps, lambda m: web(cl, m, actions[m.name]), "reloading gunicorn")
        return
    for i, m in enumerate(apps):   # one app node at a time: nginx sends requests to the others meanwhile
        if i:
            cl.progress(m.name, "gunicorn", f"waiting {ROLLING_PAUSE:g} s: nginx skips a restarted node "
                                            f"for its fail_timeout")
            time.sleep(ROLLING_PAUSE)
        web(cl, m, actions[m.name])
        health.gate(cl, release, health_timeout, [m])


def reload(cl: Cluster, *, apps: list[Member], workers: list[Member], actions: dict[str, str], release: str,
           health_timeout: float, then: Callable[[], None] | None = None) -> None:
    """gunicorn on `apps` (see `web_tier`), then `then` (the health gate); celery restarts on `workers`
    meanwhile. The web tier's error comes first."""
    def web_side() -> None:
        web_tier(cl, apps, actions, release, health_timeout)
        if then is not None:
            then()

    if not workers:
        web_side()
        return
    at_once(lambda: each(workers, lambda m: worker(cl, m), "restarting celery"), web_side)
