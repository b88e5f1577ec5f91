"""What the deploy, configure and drill tests share: the demo app as a git repository of their own, this
process pointed at a test sandbox, and SSH/HTTP helpers for a deployed cluster's nodes."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import boto3
import yaml

from .conftest import ROOT, fab

DEMO = ROOT / "examples" / "demo"
SANDBOX_VARS = ("WHIPUP_SANDBOX_STATE", "WHIPUP_SANDBOX_PORT", "WHIPUP_SANDBOX_BRIDGE",
                "WHIPUP_SANDBOX_BRIDGE_ADDRESS", "WHIPUP_SANDBOX_PROXY_PORT")
RELEASE = re.compile(r'<code class="release">([^<]+)</code>')
ROW = re.compile(r'<span class="text">([^<]+)</span>')


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


class DemoCluster(DeployedCluster):
    """A demo cluster under test (the drills', the zero-downtime tests'): fab with its roles.yaml, boto3 and
    SSH to its nodes, HTTP to its proxy. `name` names its session file and roles file; `templates` is the
    templates tree configure reads (the repository's by default)."""

    def __init__(self, env: dict, roles: Path, tmp: Path, name: str, templates: Path | None = None):
        self.env, self.tmp = env, tmp
        data = yaml.safe_load(roles.read_text())
        data["configure"]["templates_dir"] = str(templates or ROOT / "templates")
        self.repo = demo_repo(tmp / "app", f"{name.upper()}_SESSION")      # a standalone copy of the demo
        data["app"]["repo"] = str(self.repo)
        self.roles = tmp / f"roles-{name}.yaml"
        self.roles.write_text(yaml.safe_dump(data, sort_keys=False))
        self.ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{env['WHIPUP_SANDBOX_PORT']}",
                                region_name="us-east-1", aws_access_key_id="testing",
                                aws_secret_access_key="testing")
        self.cfg = None
        self.nodes: dict = {}

    # --- fab and the app repo ---
    def fab(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        # --config right after the task: what follows `--` (fab manage -- ARGS) goes to the remote command
        return fab(args[0], "--config", str(self.roles), *args[1:], env=self.env, check=check, timeout=timeout)

    def background(self, *args: str):
        from .traffic import Background

        return Background(self.env, args[0], "--config", str(self.roles), *args[1:])

    # --- nodes ---
    def load(self) -> None:
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        self.cfg = load_config(self.roles)
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(self.ec2, self.cfg.cluster.name)
                      if n.state not in ("terminated", "shutting-down")}

    def lock_held(self) -> bool:
        lock = f"/srv/{self.cfg.app.name}/shared/deploy.lock"
        return self.ssh("app-0", f"sudo -n test -d {lock} && echo held || echo free").strip() == "held"

    def instance_state(self, node: str) -> str:
        r = self.ec2.describe_instances(InstanceIds=[self.nodes[node].instance_id])
        return r["Reservations"][0]["Instances"][0]["State"]["Name"]

    def wait_state(self, node: str, state: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while (now := self.instance_state(node)) != state:
            assert time.monotonic() < deadline, f"{node} still {now} after {timeout} s (waiting for {state})"
            time.sleep(0.5)

    def host_pid1(self, node: str) -> int:
        """The node's PID 1 as seen from this machine (`fab sandbox.status --json`)."""
        st = json.loads(fab("sandbox.status", "--json", env=self.env).stdout)
        pid = next((h["pid"] for h in st["hosts"] if h["instance_id"] == self.nodes[node].instance_id), None)
        assert pid, f"{node} ({self.nodes[node].instance_id}) has no PID 1: {st['hosts']}"
        return int(pid)

    # --- HTTP through the proxy ---
    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None,
                timeout: float = 10) -> tuple[int, dict, str]:
        self.routed(self.proxy_ip)
        conn = http.client.HTTPConnection(self.proxy_ip, 80, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        status, _, body = self.request("GET", path)
        return status, body

    def page(self) -> tuple[str, list[str]]:
        """(release, rows) of the site's page; asserts it answers 200."""
        status, body = self.get("/")
        assert status == 200, body[:500]
        m = RELEASE.search(body)
        return (m.group(1) if m else ""), ROW.findall(body)

    def add_note(self, text: str) -> None:
        """As a user would: GET the page (CSRF cookie and token), POST its form."""
        status, headers, body = self.request("GET", "/")
        assert status == 200, body[:500]
        cookie = headers.get("set-cookie", "").split(";", 1)[0]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
        status, headers, body = self.request(
            "POST", "/notes/", urllib.parse.urlencode({"csrfmiddlewaretoken": token, "text": text}),
            {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, (status, body[:500])

    def wait_health(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.get("/health")
                if last[0] == 200:
                    return
            except OSError as exc:
                last = repr(exc)
            assert time.monotonic() < deadline, f"/health not 200 through the proxy within {timeout} s: {last}"
            time.sleep(0.5)
