"""Services at boot on the local cloud (issue 12, item 5): an instance started again after stop_instances
starts the services enabled on it, as systemd does on a cloud image, with no `fab configure` run.

A cluster of proxy, app and db (no worker) on a private sandbox (#11), up by `fab whip-up-full-system`.
The db node is stopped (its services shut down through their init scripts: PostgreSQL cleanly, its disk
kept) and started: PostgreSQL starts at boot from its rc link, and the site answers through the proxy with
the rows written before. Then the app node: supervisord starts at boot, and its autostart programs serve
the live release again. Nothing but the EC2 API is used between the stop and the site's answer; a
configure dry-run afterwards has nothing to do. Figures are printed as `MEASURE ...` lines.

HTTP goes only to the proxy's private IP once `ip route get` shows it on this sandbox's bridge.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from .conftest import cluster_roles, fab, make_network, sandbox_env
from .demo import sandbox_settings
from .test_drills import Cluster, _status

pytestmark = pytest.mark.e2e

SANDBOX = 11


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("boot")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    try:
        with sandbox_settings(env):                 # whipup code in this process: this sandbox
            roles = cluster_roles(tmp, "boot", make_network(env, SANDBOX))
            data = yaml.safe_load(roles.read_text())
            data["roles"]["worker"]["count"] = 0    # the db and the app node are what boots again
            roles.write_text(yaml.safe_dump(data, sort_keys=False))
            c = Cluster(env, roles, tmp, "boot")
            start = time.monotonic()
            c.fab("whip-up-full-system", timeout=1800)
            print(f"\nboot: cold whip-up-full-system {time.monotonic() - start:.0f} s")
            c.load()
            assert c.page()[0] == c.current()
            yield c
    finally:
        fab("sandbox.down", env=env, check=False)


# --- the host's side, from this machine -----------------------------------------------------------------

def _disk(cl: Cluster, node: str) -> Path:
    """The node's root volume: its overlay's upper dir (what a stop keeps)."""
    from fabfile.sandbox.hosts import host_dir
    from fabfile.sandbox.settings import load_settings

    return host_dir(load_settings(), cl.nodes[node].instance_id) / "upper"


def _host_up(cl: Cluster, node: str) -> bool:
    from fabfile.sandbox.hosts import is_running
    from fabfile.sandbox.settings import load_settings

    return is_running(load_settings(), cl.nodes[node].instance_id)


def _wait(what: str, ready, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (got := ready()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)
    return got


def _stop(cl: Cluster, node: str) -> float:
    """stop_instances; returns once the host is down (its services stopped, its processes gone): seconds."""
    start = time.monotonic()
    cl.ec2.stop_instances(InstanceIds=[cl.nodes[node].instance_id])
    cl.wait_state(node, "stopped")
    _wait(f"{node}'s host down", lambda: not _host_up(cl, node), 180)
    return time.monotonic() - start


def _log_since(path: Path, size: int) -> str:
    return path.read_bytes()[size:].decode(errors="replace")


def _boot_lines(boot_log: Path, mark: int) -> str:
    """What the node's log says since `mark`, once the boot got as far as sshd (its services started)."""
    def booted() -> str:
        text = _log_since(boot_log, mark)
        return text if "sshd started" in text else ""
    return _wait(f"'sshd started' in {boot_log}", booted, 60)


def _settled(programs: str) -> str:
    return "" if "STARTING" in programs else programs


def _answers(cl: Cluster, path: str) -> int | str:
    try:
        return _status(cl, path)
    except OSError as exc:
        return type(exc).__name__


# --- the tests ------------------------------------------------------------------------------------------

def test_a_db_node_stopped_and_started_serves_its_rows_with_no_configure_run(cl):
    """configure enabled PostgreSQL at boot (its rc2.d start link). Stopped: the shutdown stops it through its
    init script (logged in the node's cloud-init log; PostgreSQL's own log says it shut down), the site says
    the database is down (/health 503). Started: the boot starts PostgreSQL before sshd, PostgreSQL finds a
    cleanly shut down cluster (no recovery), and /health and the page answer through the proxy with the rows
    written before; a new row can be written. No fab command runs between the stop and the answers."""
    links = cl.ssh("db-0", "ls /etc/rc2.d").split()
    assert any(re.fullmatch(r"S\d\dpostgresql", link) for link in links), links
    text = f"before the db stop {time.time_ns()}"
    cl.add_note(text)
    assert text in cl.page()[1]
    disk = _disk(cl, "db-0")
    boot_log = disk / "var/log/cloud-init.log"
    (pg_log,) = sorted((disk / "var/log/postgresql").glob("postgresql-*-main.log"))
    mark, pg_mark = boot_log.stat().st_size, pg_log.stat().st_size

    stopped = _stop(cl, "db-0")
    shutdown = _log_since(boot_log, mark)
    assert re.search(r"shutdown: postgresql: stopped in [\d.]+ s", shutdown), shutdown
    assert "database system is shut down" in _log_since(pg_log, pg_mark)
    _wait("/health 503 with the db node down", lambda: _answers(cl, "/health") == 503, 60, 0.5)

    start = time.monotonic()
    cl.ec2.start_instances(InstanceIds=[cl.nodes["db-0"].instance_id])
    _wait("db-0's host booting", lambda: _host_up(cl, "db-0"), 60)
    booting = time.monotonic() - start
    _wait("/health 200 through the proxy", lambda: _answers(cl, "/health") == 200, 120, 0.05)
    healthy = time.monotonic() - start
    release, rows = cl.page()
    answered = time.monotonic() - start
    assert text in rows and release == cl.current()

    # PostgreSQL may answer a moment before its init script returns and the boot logs it
    boot = _boot_lines(boot_log, mark)
    started = re.search(r"boot: postgresql: started in ([\d.]+) s", boot)
    assert started, boot
    assert re.search(r"boot: runlevel 2: \d+ service\(s\) started\n", boot), boot
    assert "FAILED" not in boot, boot
    assert boot.index("boot: runlevel 2:") < boot.index("sshd started (re boot)"), boot
    pg = _log_since(pg_log, pg_mark)
    assert "database system was shut down at" in pg and "not properly shut down" not in pg, pg
    assert cl.ssh("db-0", "pg_isready -q && echo ready").strip() == "ready"
    after = f"after the db start {time.time_ns()}"
    cl.add_note(after)
    assert {text, after} <= set(cl.page()[1])
    print("\ndb-0's /var/log/cloud-init.log, stop and boot:\n" + boot.rstrip())
    print(f"MEASURE db node stop: {stopped:.1f} s from stop_instances to the host down (services stopped)"
          f"\nMEASURE db node start: host booting {booting:.1f} s after start_instances; PostgreSQL started at boot "
          f"in {float(started.group(1)):.1f} s; /health 200 through the proxy {healthy:.1f} s after "
          f"start_instances; the page with its rows {answered:.1f} s")


def test_an_app_node_stopped_and_started_serves_again_with_no_configure_or_deploy(cl):
    """supervisor is enabled at boot on the app node. Stopped: the shutdown stops supervisord (and with it
    gunicorn) through its init script; the site fails. Started: supervisord starts at boot, its autostart
    programs start, and the live release serves the rows again, with no configure nor deploy run."""
    text = f"before the app stop {time.time_ns()}"
    cl.add_note(text)
    release = cl.current()
    disk = _disk(cl, "app-0")
    boot_log = disk / "var/log/cloud-init.log"
    mark = boot_log.stat().st_size

    stopped = _stop(cl, "app-0")
    shutdown = _log_since(boot_log, mark)
    assert re.search(r"shutdown: supervisor: stopped in [\d.]+ s", shutdown), shutdown
    _wait("the site failing with its only app node down",
          lambda: _answers(cl, "/") in (502, 504, "no answer", "TimeoutError"), 60, 0.5)

    start = time.monotonic()
    cl.ec2.start_instances(InstanceIds=[cl.nodes["app-0"].instance_id])
    _wait("app-0's host booting", lambda: _host_up(cl, "app-0"), 60)
    _wait("the page 200 through the proxy", lambda: _answers(cl, "/") == 200, 120, 0.05)
    answered = time.monotonic() - start
    served, rows = cl.page()
    assert served == release == cl.current() and text in rows

    boot = _boot_lines(boot_log, mark)
    started = re.search(r"boot: supervisor: started in ([\d.]+) s", boot)
    assert started and "FAILED" not in boot, boot
    programs = _wait("supervisor's programs past STARTING", lambda: _settled(
        cl.ssh("app-0", "sudo -n supervisorctl status", check=False)), 30, 0.5)
    assert "RUNNING" in programs and not re.search(r"FATAL|BACKOFF", programs), programs
    print(f"\nMEASURE app node stop: {stopped:.1f} s from stop_instances to the host down"
          f"\nMEASURE app node start: supervisor started at boot in {float(started.group(1)):.1f} s; the page "
          f"through the proxy {answered:.1f} s after start_instances")


def _restart(cl: Cluster, node: str) -> str:
    """Stop and start `node`; its log lines of that boot, once the boot got to sshd."""
    boot_log = _disk(cl, node) / "var/log/cloud-init.log"
    mark = boot_log.stat().st_size
    _stop(cl, node)
    cl.ec2.start_instances(InstanceIds=[cl.nodes[node].instance_id])
    _wait(f"{node}'s host booting", lambda: _host_up(cl, node), 60)
    return "\n".join(line for line in _boot_lines(boot_log, mark).splitlines() if " shutdown: " not in line)


def test_only_enabled_services_start_at_boot_and_configure_enables_them(cl):
    """nginx disabled by hand (`update-rc.d nginx disable`: its start links become K links) stays down when
    the proxy boots again: the boot starts what is enabled, not every init script. configure then plans
    "enable nginx at boot" (update-rc.d defaults + enable) beside starting it; after that the proxy boots
    into a serving nginx with no configure run."""
    cl.ssh("proxy-0", "sudo -n update-rc.d nginx disable")
    assert not any(link.startswith("S") and link.endswith("nginx") for link in cl.ssh("proxy-0", "ls /etc/rc2.d").split())
    boot = _restart(cl, "proxy-0")
    assert "nginx" not in boot, boot
    assert cl.ssh("proxy-0", "sudo -n service nginx status >/dev/null 2>&1 && echo up || echo down").strip() == "down"
    assert _answers(cl, "/health") != 200

    dry = cl.fab("configure", "--dry-run", "--role", "proxy")
    assert "  enable nginx at boot" in dry.stdout and "  start nginx (inactive)" in dry.stdout, dry.stdout
    cl.fab("configure", "--role", "proxy")
    links = cl.ssh("proxy-0", "ls /etc/rc2.d").split()
    assert any(re.fullmatch(r"S\d\dnginx", link) for link in links), links
    _wait("/health 200 after configure", lambda: _answers(cl, "/health") == 200, 30, 0.2)

    start = time.monotonic()
    boot = _restart(cl, "proxy-0")
    assert re.search(r"boot: nginx: started in [\d.]+ s", boot), boot
    _wait("/health 200 through the proxy", lambda: _answers(cl, "/health") == 200, 60, 0.05)
    print(f"\nMEASURE proxy node stop and start: /health 200 {time.monotonic() - start:.1f} s after stop_instances")


def test_configure_afterwards_has_nothing_to_do(cl):
    """After both boots every service is running and enabled: a configure dry-run would change nothing."""
    p = cl.fab("configure", "--dry-run")
    got = dict(re.findall(r"^\[[^\]]*-(\w+-\d+)\] would change (\d+), ok", p.stdout, re.M))
    assert got == {"proxy-0": "0", "app-0": "0", "db-0": "0"}, p.stdout
