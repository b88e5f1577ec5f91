"""A connection whose commands run on this machine, by sh, with `sudo` a stand-in that drops its options
(`-n`, `-u USER`, `--`) and runs the rest as this user.

For the commands whose scripts work on paths a test can move under a temp dir (a Layout with its own
`base`): the deploy lock's, the audit log's. `calls` keeps (command, stdin) in order."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

SUDO = """#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    -n) shift ;;
    -u) shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
exec "$@"
"""


def in_session(cmd: str, stdin: str | None = None, **kw) -> subprocess.CompletedProcess:
    """`sh -c cmd` as an SSH session runs it: with no `stdin` to send, its stdin is a pipe that stays open
    until the command ends (a `tied` command ends when its session's stdin does)."""
    if stdin is not None:
        return subprocess.run(["sh", "-c", cmd], input=stdin, capture_output=True, text=True, **kw)
    r, w = os.pipe()
    try:
        return subprocess.run(["sh", "-c", cmd], stdin=r, capture_output=True, text=True, **kw)
    finally:
        os.close(r)
        os.close(w)


class Result:
    def __init__(self, exited=0, stdout="", stderr=""):
        self.exited, self.stdout, self.stderr = exited, stdout, stderr


class LocalHost:
    def __init__(self, name: str, bin_dir: Path):
        self.host = name
        self.calls: list[tuple[str, str | None]] = []
        self.closed = 0
        self._bin = bin_dir
        bin_dir.mkdir(parents=True, exist_ok=True)
        (self._bin / "sudo").write_text(SUDO)
        (self._bin / "sudo").chmod(0o755)

    def run(self, command: str, **kw) -> Result:
        stdin = kw.get("in_stream")
        data = stdin.read() if stdin else None
        self.calls.append((command, data))
        env = {**os.environ, "PATH": f"{self._bin}:{os.environ['PATH']}"}
        p = subprocess.run(["sh", "-c", command], input=data or "", text=True, capture_output=True, env=env,
                           timeout=30)
        return Result(p.returncode, p.stdout, p.stderr)

    def close(self) -> None:
        self.closed += 1
