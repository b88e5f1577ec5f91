"""fab manage, fab logs and fab ssh on a whipped-up cluster of the local cloud (its own sandbox).

The demo app is a standalone copy with Django's auth apps added (so `createsuperuser` exists); every
command runs through `fab` as a user would type it.
"""
from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import yaml

from .conftest import ROOT, cluster_roles, fab, make_network, sandbox_env
from .demo import DeployedCluster, demo_repo, git, sandbox_settings

pytestmark = pytest.mark.e2e

SANDBOX = 6
AUTH_APPS = '    "django.contrib.auth",\n    "django.contrib.contenttypes",\n    "django.contrib.staticfiles",\n'
PASSWORD = "e2e pass; $(whoami) 'q'"


class Commands(DeployedCluster):
    def __init__(self, env: dict, roles, tmp):
        self.env, self.tmp = env, tmp
        data = yaml.safe_load(roles.read_text())
        self.repo = demo_repo(tmp / "app", "COMMANDS_SESSION")
        settings = self.repo / "demo" / "settings.py"
        text = settings.read_text()
        assert '    "django.contrib.staticfiles",\n' in text
        settings.write_text(text.replace('    "django.contrib.staticfiles",\n', AUTH_APPS, 1))
        git(self.repo, "commit", "-q", "-am", "auth apps, for createsuperuser")
        data["app"]["repo"] = str(self.repo)
        self.roles = tmp / "roles-commands.yaml"
        self.roles.write_text(yaml.safe_dump(data, sort_keys=False))
        self.cfg, self.nodes = None, {}

    def fab(self, *args: str, check: bool = False, env: dict | None = None, stdin: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """`fab TASK --config ROLES [REST]`: the config goes before a `--`, which must stay last."""
        task, *rest = args
        split = rest.index("--") if "--" in rest else len(rest)
        argv = [task, *rest[:split], "--config", str(self.roles), *rest[split:]]
        if stdin is None:
            return fab(*argv, env=env or self.env, check=check, timeout=timeout)
        return subprocess.run([sys.executable, "-m", "fabric", *argv], cwd=ROOT, env=env or self.env, input=stdin,
                              capture_output=True, text=True, timeout=timeout)

    def load(self) -> None:
        from fabfile.cloud import open_cloud
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        self.cfg = load_config(self.roles)
        ec2 = open_cloud(self.cfg.cluster.target, self.cfg.cluster.region).client("ec2")
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(ec2, self.cfg.cluster.name)}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("commands")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    try:
        with sandbox_settings(env):
            s = Commands(env, cluster_roles(tmp, "cmds", make_network(env, SANDBOX)), tmp)
            start = time.monotonic()
            s.fab("whip-up-full-system", check=True, timeout=1800)
            print(f"\ncommands: cold whip-up-full-system {time.monotonic() - start:.0f} s")
            s.load()
            yield s
    finally:
        fab("sandbox.down", env=env, check=False)


def test_manage_check_passes_with_exit_0(site):
    p = site.fab("manage", "--", "check")
    assert p.returncode == 0, p.stderr
    assert "System check identified no issues" in p.stdout


def test_a_failing_command_s_exit_status_comes_through(site):
    p = site.fab("manage", "--", "migrate", "nosuchapp")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "No installed app with label 'nosuchapp'" in p.stdout + p.stderr
    p = site.fab("manage", "--", "shell", "-c", "import sys; sys.exit(7)")
    assert p.returncode == 7, (p.stdout, p.stderr)


def test_the_words_after_dashes_stay_words(site):
    p = site.fab("manage", "--", "shell", "-c", "print('x; whoami')")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "x; whoami"
    assert site.cfg.app.name not in p.stdout.replace("x; whoami", "")   # whoami did not run


def test_piped_stdin_reaches_the_command(site):
    p = site.fab("manage", "--", "shell", stdin="print(6 * 7)\n")
    assert p.returncode == 0, p.stderr
    assert "42" in p.stdout.split()


def test_createsuperuser_noinput_with_the_values_forwarded_on_stdin(site):
    env = {**site.env, "DJANGO_SUPERUSER_USERNAME": "e2eadmin", "DJANGO_SUPERUSER_EMAIL": "e2e@example.invalid",
           "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    p = site.fab("manage", "--env", "DJANGO_SUPERUSER_USERNAME", "--env", "DJANGO_SUPERUSER_EMAIL",
                 "--env", "DJANGO_SUPERUSER_PASSWORD", "--", "createsuperuser", "--noinput", env=env)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "Superuser created successfully." in p.stdout
    assert PASSWORD not in p.stdout + p.stderr
    check = ("from django.contrib.auth import get_user_model as g; import os; "
             "u = g().objects.get(username='e2eadmin'); print(u.is_superuser, u.check_password(os.environ['P']))")
    p = site.fab("manage", "--env", "P", "--", "shell", "-c", check, env={**site.env, "P": PASSWORD})
    assert p.stdout.split()[-2:] == ["True", "True"], (p.stdout, p.stderr)
    p = site.fab("manage", "--env", "DATABASE_URL", "--", "check", env={**site.env, "DATABASE_URL": "x"})
    assert p.returncode == 1 and "--env DATABASE_URL: set by whipup itself" in p.stderr


def test_logs_show_each_node_s_last_lines_prefixed(site):
    p = site.fab("logs", "--lines", "5")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    names = {n.name for n in site.nodes.values() if n.role in ("proxy", "app", "worker")}
    prefixes = {m.group(1) for m in (re.match(r"\[([^\]]+)\] ", line) for line in lines) if m}
    assert all(re.match(r"\[[^\]]+\] ", line) for line in lines), lines
    assert {site.nodes["app-0"].name, site.nodes["worker-0"].name} <= prefixes <= names
    app = [line for line in lines if line.startswith(f"[{site.nodes['app-0'].name}] ")]
    assert 0 < len(app) <= 5
    p = site.fab("logs", "--role", "app", "--program", "worker")
    assert p.returncode == 1 and "--program worker runs on worker nodes, not on app nodes" in p.stderr


def test_logs_follow_streams_until_interrupted_and_leaves_no_tail(site):
    proc = subprocess.Popen([sys.executable, "-m", "fabric", "logs", "-f", "--lines", "1", "--role", "app",
                             "--config", str(site.roles)], cwd=ROOT, env=site.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    prefix = f"[{site.nodes['app-0'].name}] "
    try:
        assert lines.get(timeout=60).startswith(prefix)
        site.routed(site.proxy_ip)
        urllib.request.urlopen(f"http://{site.proxy_ip}/", timeout=20).read()
        deadline, seen = time.monotonic() + 30, ""
        while "GET / " not in seen and time.monotonic() < deadline:
            seen = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert "GET / " in seen and seen.startswith(prefix), seen
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while site.ssh("app-0", "pgrep -c -x tail || true").strip() != "0" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert site.ssh("app-0", "pgrep -c -x tail || true").strip() == "0"


def test_ssh_runs_a_command_on_the_node(site):
    p = site.fab("ssh", "app", "-n", "0", "--", "hostname")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == site.ssh("app-0", "hostname").strip()
    p = site.fab("ssh", "app", "--", "sh", "-c", "exit 3")
    assert p.returncode == 3
    p = site.fab("ssh", "app", "-n", "4")
    assert p.returncode == 1 and f"app has no node 4: its nodes are {site.nodes['app-0'].name}" in p.stderr
    p = site.fab("ssh", "nosuch")
    assert p.returncode == 1 and "has no nosuch node (roles with nodes: app, db, proxy, worker)" in p.stderr
