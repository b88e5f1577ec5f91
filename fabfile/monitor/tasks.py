"""fab receiver: the monitor's recovery receiver on this machine (monitor.recover), started or stopped.

whip-up-full-system starts it already; this task starts it again where it is not running (after a reboot of
this machine, or on another machine that stays up and holds the same state dir), or stops it.
"""
from __future__ import annotations

from ..boundary import cluster_task
from ..config import Config, ConfigError
from .config import MONITOR_ROLE, enabled
from .daemon import ensure_receiver, running_pid, stop_receiver


@cluster_task(help={"stop": "stop the receiver instead of starting it"})
def receiver(c, cfg: Config, stop=False):
    """Start the monitor's recovery receiver here (monitor.recover: lost nodes rebuild themselves), or --stop it."""
    if stop:
        if running_pid(cfg) is None:
            print("monitor: recovery receiver already stopped")
        stop_receiver(cfg, print)
        return
    if not enabled(cfg):
        raise ConfigError(f"{cfg.path}: roles.{MONITOR_ROLE}.count is 0: there is no monitor node to receive from")
    if not cfg.monitor.recover:
        raise ConfigError(f"{cfg.path}: monitor.recover is false: no alert starts a recovery")
    ensure_receiver(cfg, print)
