"""What the deploy, configure and drill tests share: the demo app as a git repository of their own, this
process pointed at a test sandbox, and SSH/HTTP helpers for a deployed cluster's nodes."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from .conftest import ROOT

DEMO = ROOT / "examples" / "demo"
SANDBOX_VARS = ("WHIPUP_SANDBOX_STATE", "WHIPUP_SANDBOX_PORT", "WHIPUP_SANDBOX_BRIDGE",
                "WHIPUP_SANDBOX_BRIDGE_ADDRESS", "WHIPUP_SANDBOX_PROXY_PORT")
RELEASE = re.compile(r'<code class="release">([^<]+)</code>')


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def demo_repo(path: Path, session_file: str) -> Path:
    """A standalone copy of examples/demo at `path`, committed as its own git repository. `session_file`
    holds this session's time, so the app's tree (and its release) is new to a cluster used before."""
    shutil.copytree(DEMO, path, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3", "static_collected",
                                                               "media"))
    (path / session_file).write_text(f"{time.time_ns()}\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "demo app")
    return path


@contextmanager
def sandbox_settings(env: dict):
    """whipup code run in this process (inventory, SSH route checks) uses the test sandbox `env` names."""
    saved = {k: os.environ.get(k) for k in SANDBOX_VARS}
    os.environ.update({k: env[k] for k in SANDBOX_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class DeployedCluster:
    """Commits to the app repository and SSH to the nodes of a cluster under test. Subclasses set
    `env`, `repo`, `cfg` (after load) and `nodes` ({"app-0": Node, ...})."""

    env: dict
    repo: Path
    cfg: object
    nodes: dict

    def commit(self, message: str, files: dict[str, str] | None = None, remove: tuple[str, ...] = ()) -> str:
        for rel, text in (files or {}).items():
            (self.repo / rel).write_text(text)
        for rel in remove:
            (self.repo / rel).unlink()
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def edit(self, rel: str, old: str, new: str) -> dict[str, str]:
        text = (self.repo / rel).read_text()
        assert old in text, f"{rel}: {old!r} not found"
        return {rel: text.replace(old, new, 1)}

    def ssh(self, node: str, command: str, check: bool = True) -> str:
        from fabfile.remote import run
        from fabfile.ssh import connect

        conn = connect(self.cfg, self.nodes[node])
        try:
            return run(conn, command, step=command[:40], check=check, timeout=120).stdout
        finally:
            conn.close()

    def current(self, node: str = "app-0") -> str:
        return self.ssh(node, f"readlink /srv/{self.cfg.app.name}/current").strip().rsplit("/", 1)[-1]

    def releases(self, node: str = "app-0") -> list[str]:
        return sorted(self.ssh(node, f"ls /srv/{self.cfg.app.name}/releases").split())

    @property
    def proxy_ip(self) -> str:
        return self.nodes["proxy-0"].private_ip

    def routed(self, ip: str) -> None:
        """Traffic goes only to this sandbox's hosts: `ip` must be routed to its bridge."""
        out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True).stdout
        assert f" dev {self.env['WHIPUP_SANDBOX_BRIDGE']} " in out, f"{ip} is not a host of this sandbox: {out}"
