"""gunicorn's HUP serves the release `current` points at now, from the same master, even after pruning.

What deploy relies on, proven on loopback with the installed gunicorn: the master
runs `--chdir <root>/current` started in <root> (as configure's program does); a
HUP after switching `current` re-resolves it, so new workers serve the new code;
the release the master started on can then be deleted and the next HUP still works.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")

APP = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"{}"]\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return r.read().decode()


def wait_for(port: int, want: str, limit: float = 15) -> None:
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        try:
            last = get(port)
            if last == want:
                return
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"wanted {want!r}, last got {last!r}")


def wait_log(path: Path, line: str, count: int, limit: float = 15) -> None:
    """Until gunicorn's log has `line` `count` times (the master handled that many HUPs)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(line) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{line!r} not {count} times in {path}")


def switch(root: Path, release: str) -> None:
    (root / "current.tmp").symlink_to(f"releases/{release}")
    os.replace(root / "current.tmp", root / "current")


def test_hup_serves_the_new_current_and_survives_pruning(tmp_path):
    root = tmp_path / "srv"
    for name in ("r1", "r2", "r3"):
        (root / "releases" / name).mkdir(parents=True)
        (root / "releases" / name / "site_app.py").write_text(APP.format(name))
    switch(root, "r1")
    port = free_port()
    log = tmp_path / "gunicorn.log"
    master = subprocess.Popen([sys.executable, "-m", "gunicorn", "--chdir", str(root / "current"),
                               "--bind", f"127.0.0.1:{port}", "--workers", "2", "--error-logfile", str(log),
                               "site_app:application"],
                              cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(port, "r1")
        switch(root, "r2")
        master.send_signal(signal.SIGHUP)
        wait_log(log, "Hang up: Master", 1)            # handled: the master's cwd is now releases/r2
        wait_for(port, "r2")
        import shutil

        shutil.rmtree(root / "releases" / "r1")      # pruned: the release the master started on
        switch(root, "r3")
        master.send_signal(signal.SIGHUP)
        wait_log(log, "Hang up: Master", 2)
        wait_for(port, "r3")
        assert master.poll() is None                   # the same master all along
    except AssertionError:
        master.terminate()
        raise AssertionError(log.read_text()[-3000:] if log.exists() else "no log")
    finally:
        if master.poll() is None:
            master.terminate()
        err = master.communicate(timeout=30)[1]
    assert "can't chdir" not in err, err


def test_a_master_started_in_current_dies_on_hup_once_its_start_release_is_pruned(tmp_path):
    """Why configure's program starts in /srv/<app>, not in `current` (docs/remote-layout.md)."""
    root = tmp_path / "srv"
    for name in ("r1", "r2"):
        (root / "releases" / name).mkdir(parents=True)
        (root / "releases" / name / "site_app.py").write_text(APP.format(name))
    switch(root, "r1")
    port = free_port()
    master = subprocess.Popen([sys.executable, "-m", "gunicorn", "--chdir", str(root / "current"),
                               "--bind", f"127.0.0.1:{port}", "--workers", "1", "site_app:application"],
                              cwd=root / "current", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        wait_for(port, "r1")
        switch(root, "r2")
        import shutil

        shutil.rmtree(root / "releases" / "r1")
        master.send_signal(signal.SIGHUP)
        code = master.wait(timeout=15)
    finally:
        try:
            os.killpg(master.pid, signal.SIGKILL)  # its orphaned worker too
        except ProcessLookupError:
            pass
        err = master.communicate(timeout=30)[1]
    assert code != 0 and "Error:" in err
