"""Background processes of the sandbox: started detached, tracked by pid files.

A pid file holds `<pid> <starttime>` (field 22 of /proc/PID/stat), so a
reused pid is never mistaken for ours.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .errors import SandboxError


def proc_starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie is not running
        return None
    return fields[19]


def read_pidfile(path: Path) -> int | None:
    """The pid in `path` if that very process is still alive, else None."""
    try:
        pid_s, start = path.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    pid = int(pid_s)
    return pid if proc_starttime(pid) == start else None


def write_pidfile(path: Path, pid: int) -> None:
    start = proc_starttime(pid)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid} {start}\n")
    os.replace(tmp, path)


def spawn(argv: list[str], log: Path, pidfile: Path, *, env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
    """Start `argv` in its own session with output to `log`; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab", buffering=0) as out:
        p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=cwd, close_fds=True,
        )
    write_pidfile(pidfile, p.pid)
    return p


def wait_ready(ready, pidfile: Path, logfile: Path, what: str, doing: str, seconds: float) -> None:
    """Wait for a process just spawned (its `pidfile`) until `ready()`; it exiting first, or the time
    running out, is an error naming its log."""
    deadline = time.monotonic() + seconds
    while not ready():
        if not read_pidfile(pidfile):
            raise SandboxError(f"the {what} exited; see {logfile}")
        if time.monotonic() > deadline:
            raise SandboxError(f"the {what} did not {doing} within {seconds:g} s; see {logfile}")
        time.sleep(0.05)


def wait_gone(pid: int, timeout: float) -> bool:
    start = proc_starttime(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if start is None or proc_starttime(pid) != start:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        except ChildProcessError:
            pass
        time.sleep(0.02)
    return proc_starttime(pid) != start


def terminate(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; returns once the process is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_gone(pid, wait):
            return


def stop_pidfile(path: Path, timeout: float = 5.0) -> bool:
    """Stop the process named by `path`; True if one was running."""
    pid = read_pidfile(path)
    if pid is not None:
        terminate(pid, timeout)
    path.unlink(missing_ok=True)
    return pid is not None


def children(pid: int) -> list[int]:
    try:
        out = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [int(x) for x in out.split()]


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def pids_in_namespace(ns: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_namespace(int(entry)) == ns:
            found.append(int(entry))
    return found
