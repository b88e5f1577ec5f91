"""The recovery receiver as a process of this machine: started by whip-up-full-system (monitor.recover on, the
monitor role on, either target) or `fab receiver`, found again by its pid file, stopped by `fab destroy` or
`fab receiver --stop`. It rebuilds lost nodes while this machine runs it: on AWS, run it on one that stays up.

State dir: <cluster>/monitor-receiver.pid (its pid) and monitor-receiver.log (what it received and ran).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ..state import cluster_dir, ensure_cluster_dir
from .config import enabled
from .context import receiver_url

Log = Callable[[str], None]
MODULE = "fabfile.monitor.receiver"     # run as python -m (not imported here: runpy would warn)


def pid_path(cfg) -> Path:
    return cluster_dir(cfg) / "monitor-receiver.pid"


def log_path(cfg) -> Path:
    return cluster_dir(cfg) / "monitor-receiver.log"


def running_pid(cfg) -> int | None:
    """The receiver's pid if that process is alive and is the receiver (not a reused pid)."""
    try:
        pid = int(pid_path(cfg).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if MODULE.encode() in cmdline else None


def wanted(cfg) -> bool:
    return enabled(cfg) and receiver_url(cfg) is not None


def receiver_argv(cfg) -> list[str]:
    return [sys.executable, "-m", MODULE, "--config", str(cfg.path), "--target", cfg.cluster.target]


def ensure_receiver(cfg, log: Log) -> None:
    """Start the receiver unless it runs (nothing while monitor.recover is off)."""
    if not wanted(cfg):
        return
    pid = running_pid(cfg)
    url = receiver_url(cfg)
    if pid is not None:
        log(f"monitor: recovery receiver already ok (pid {pid}, {url})")
        return
    ensure_cluster_dir(cfg)
    root = Path(__file__).resolve().parents[2]
    with open(log_path(cfg), "ab") as out:
        p = subprocess.Popen(receiver_argv(cfg), cwd=root, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pid_path(cfg).write_text(f"{p.pid}\n")
    log(f"monitor: recovery receiver started (pid {p.pid}, {url} on the monitor node, tunnelled here; "
        f"log {log_path(cfg)})")
    if cfg.cluster.target == "aws":
        log("monitor: lost app/proxy nodes are rebuilt while this machine runs the receiver "
            "(`fab receiver` starts it again, e.g. on a machine that stays up)")


def stop_receiver(cfg, log: Log) -> None:
    pid = running_pid(cfg)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    pid_path(cfg).unlink(missing_ok=True)
    log(f"monitor: recovery receiver stopped (pid {pid})")
