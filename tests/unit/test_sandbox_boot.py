"""Services at boot and at shutdown on a local-cloud host (fabfile/sandbox/guest_boot.py): what the boot
starts from an rc tree, in which order, what the shutdown stops, and what both log. The runner is run on
rc trees of its own in a temp dir, with `service` replaced by the fake init scripts there."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fabfile.configure import commands as cmd
from fabfile.sandbox import guest_boot as gb
from fabfile.sandbox import hosts

EVIL = "x; whoami"


def test_boot_starts_the_s_links_in_rc_order():
    """As /etc/init.d/rc runs them: the S links sorted by name (number, then name); K links, README and
    other entries are not started; each service once."""
    entries = ["README", "K01nginx", "S03supervisor", "S01sudo", "S01postgresql", "S02redis-server",
               "S01ssh", "S10postgresql", ".placeholder", "Sxx", "S1short", "S01odd\n", "s01lower"]
    assert gb.start_sequence(entries) == ["postgresql", "sudo", "redis-server", "supervisor"]
    assert gb.start_sequence([]) == []


def test_boot_leaves_sshd_and_the_machine_wide_scripts_alone():
    """ssh: the boot starts sshd itself, always; the others would act on the machine the host shares its
    clock and kernel with (hwclock.sh sets the clock, procps applies sysctl.conf), or are rc's own."""
    entries = ["S01ssh", "S01hwclock.sh", "S01procps", "S01umountfs", "S01rc", "S01killprocs", "S01nginx"]
    assert gb.start_sequence(entries) == ["nginx"]


def test_the_shutdown_stops_in_reverse_boot_order_then_the_others():
    started = ["nginx", "postgresql", "redis-server", "supervisor"]
    running = {"postgresql", "supervisor", "cron", "memcached"}   # nginx, redis-server already stopped
    assert gb.stop_sequence(started, running) == ["supervisor", "postgresql", "memcached", "cron"]
    assert gb.stop_sequence([], set()) == []
    assert gb.stop_sequence(["a"], {"b"}) == ["b"]


def test_service_argv_keeps_a_name_one_argument():
    assert gb.service_argv("postgresql", "start") == ["service", "postgresql", "start"]
    assert gb.service_argv(EVIL, "stop") == ["service", EVIL, "stop"]


def test_the_boot_uses_the_runlevel_configure_checks():
    """configure's sysv "enabled" test and the boot read the same rc directory."""
    assert gb.RUNLEVEL == cmd.DEFAULT_RUNLEVEL
    assert f"/etc/rc{gb.RUNLEVEL}.d/" in cmd.service_enabled_sysv("nginx")


def test_outcome_lines():
    assert gb.outcome("postgresql", "start", 0, 1.234, "") == "postgresql: started in 1.2 s"
    assert gb.outcome("supervisor", "stop", 0, 0.05, "x") == "supervisor: stopped in 0.1 s"
    assert gb.outcome("nginx", "start", 1, 0.2, "nginx: [emerg] bad") == (
        "nginx: start FAILED (exit 1: nginx: [emerg] bad; see /var/log/boot.log)")
    assert gb.outcome("slow", "start", None, 120.0, "") == (
        f"slow: start FAILED (timed out after {gb.SERVICE_TIMEOUT} s; see /var/log/boot.log)")


# --- the runner, on a fake host tree -------------------------------------------------------------------

SCRIPT = """#!/bin/sh
echo "$0 $1" >> "{calls}"
case "$1" in
  start) {start} ;;
  stop) echo "stopping"; exit 0 ;;
  status) {status} ;;
esac
"""


@pytest.fixture
def host(tmp_path, monkeypatch):
    """An /etc tree of its own: init.d scripts that record their calls, an rc2.d of links to them; the
    boot's logs and `service` pointed there."""
    initd, rc = tmp_path / "init.d", tmp_path / "rc2.d"
    initd.mkdir()
    rc.mkdir()
    calls = tmp_path / "calls"

    def script(name: str, start: str = "echo started; exit 0", status: str = "exit 3", mode: int = 0o755):
        (initd / name).write_text(SCRIPT.format(calls=calls, start=start, status=status))
        (initd / name).chmod(mode)

    monkeypatch.setattr(gb, "LOG", str(tmp_path / "cloud-init.log"))
    monkeypatch.setattr(gb, "BOOT_LOG", str(tmp_path / "boot.log"))
    monkeypatch.setattr(gb, "service_argv", lambda name, verb: [str(initd / name), verb])
    return tmp_path, initd, rc, calls, script


def _calls(calls: Path) -> list[str]:
    return [line.split("/")[-1] for line in calls.read_text().splitlines()] if calls.exists() else []


def test_boot_starts_each_enabled_service_and_logs_what_started_and_what_failed(host):
    tmp, initd, rc, calls, script = host
    script("postgresql")
    script("nginx", start='echo "nginx: [emerg] unknown directive"; exit 1')
    script("supervisor")
    script("redis-server")                          # disabled: a K link only
    script("noexec", mode=0o644)
    for link, name in (("S01postgresql", "postgresql"), ("S01nginx", "nginx"), ("S02supervisor", "supervisor"),
                       ("K01redis-server", "redis-server"), ("S01noexec", "noexec"), ("S01gone", "gone")):
        (rc / link).symlink_to(initd / name)
    failed = gb.start_services(str(rc))
    assert failed == ["nginx"]
    assert _calls(calls) == ["nginx start", "postgresql start", "supervisor start"]
    log = (tmp / "cloud-init.log").read_text()
    assert f"boot: {rc}/S01noexec: no executable init script behind it: skipped" in log
    assert f"boot: {rc}/S01gone: no executable init script behind it: skipped" in log
    assert ("boot: nginx: start FAILED (exit 1: nginx: [emerg] unknown directive; see "
            f"{tmp / 'boot.log'})") in log
    assert "boot: postgresql: started in " in log and "boot: supervisor: started in " in log
    assert log.rstrip().endswith("boot: runlevel 2: 2 service(s) started, failed: nginx")
    out = (tmp / "boot.log").read_text()
    assert " postgresql start\nstarted\n" in out and "nginx: [emerg] unknown directive" in out


def test_a_boot_with_nothing_enabled_says_so(host):
    tmp, initd, rc, calls, script = host
    assert gb.start_services(str(rc)) == []
    assert gb.start_services(str(tmp / "no-such-rc.d")) == []
    assert (tmp / "cloud-init.log").read_text().rstrip().endswith("boot: runlevel 2: 0 service(s) started")


def test_the_shutdown_stops_what_runs_through_its_init_script(host, monkeypatch):
    tmp, initd, rc, calls, script = host
    script("postgresql", status="exit 0")
    script("supervisor", status="exit 0")
    script("nginx", status="exit 3")                # not running: left alone
    script("cron", status="exit 0")                 # running, not enabled: stopped after the boot's
    script("ssh", status="exit 0")                  # sshd: killed with the rest, not one of the services
    for link in ("S01postgresql", "S01nginx", "S02supervisor"):
        (rc / link).symlink_to(initd / link[3:])
    real_enabled = gb.enabled_services
    monkeypatch.setattr(gb, "enabled_services", lambda _rc: real_enabled(str(rc)))
    real_running = gb.running_services
    monkeypatch.setattr(gb, "running_services", lambda: real_running(str(initd)))
    path = os.environ["PATH"]
    try:
        gb.shutdown()
    finally:
        os.environ["PATH"] = path
    stops = [c for c in _calls(calls) if c.endswith(" stop")]
    assert stops == ["supervisor stop", "postgresql stop", "cron stop"]
    log = (tmp / "cloud-init.log").read_text()
    assert "shutdown: stopping supervisor postgresql cron" in log
    assert "shutdown: supervisor: stopped in " in log and "shutdown: cron: stopped in " in log


# --- the materializer's side ---------------------------------------------------------------------------

def test_the_shutdown_runs_this_whipups_script_inside_the_host():
    argv = hosts.shutdown_argv(4242)
    assert argv[:3] == ["nsenter", "--target", "4242"]
    assert {"--mount", "--uts", "--ipc", "--net", "--pid"} <= set(argv)
    assert argv[argv.index("--") + 1:] == ["/usr/bin/python3", "-", "shutdown"]
    assert hosts.shutdown_script() == (Path(hosts.__file__).parent / "guest_boot.py").read_bytes()


def test_the_guest_script_reads_from_stdin_runs_only_the_shutdown(tmp_path):
    """`python3 - shutdown` with the script on stdin goes to shutdown(), never to the boot's main()."""
    code = hosts.shutdown_script().decode().replace('        shutdown()\n', '        print("shutdown")\n', 1)
    code = code.replace('        main()\n', '        print("main")\n', 1)
    out = subprocess.run(["python3", "-", "shutdown"], input=code, capture_output=True, text=True, check=True)
    assert out.stdout == "shutdown\n"
    out = subprocess.run(["python3", "-"], input=code, capture_output=True, text=True, check=True)
    assert out.stdout == "main\n"
