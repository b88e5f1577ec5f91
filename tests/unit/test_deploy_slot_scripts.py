"""The gunicorn slots' commands (deploy/slots.py) run here, whole (every sudo of a composed command too),
under a temp base dir, with stand-ins for the host's nginx, curl, date and supervisorctl on PATH."""
from __future__ import annotations

import grp
import os
import pwd
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabfile.deploy import commands as c
from fabfile.deploy import slots
from fabfile.deploy.releases import parse_state
from fabfile.layout import Layout
from local_host import in_session

R = "20240131120000-1a2b3c4"
R2 = "20240131130000-5e6f708"
EVIL = "x; whoami"

SUDO = """#!/bin/sh
# sudo -n [-u USER] -- ARGV: ARGV, as this user
while [ $# -gt 0 ]; do case "$1" in -n) shift;; -u) shift 2;; --) shift; break;; *) break;; esac; done
exec "$@"
"""
NGINX = """#!/bin/sh
echo "nginx $*" >> "$LOG"
if [ "$1" = -t ]; then [ -z "$NGINX_BROKEN" ] || { echo "$NGINX_BROKEN" >&2; exit 1; }; fi
"""
WHOAMI = '#!/bin/sh\ntouch "$PWNED"\n'
# date +%s: 1, 2, 3, ... (a clock that moves one second per look)
DATE = '#!/bin/sh\nn=$(cat "$CLOCK" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$CLOCK"; echo "$n"\n'
# curl: supervisord's XML-RPC answers RUNNING (a pid no process has); a health probe logs its URL and gets no answer
CURL = """#!/bin/sh
case " $* " in
  *" --unix-socket "*) echo '<value><struct><member><name>statename</name><value><string>RUNNING</string></value>'
                       echo '</member><member><name>pid</name><value><int>999999999</int></value></member></struct>' ;;
  *) for a; do u=$a; done; echo "$u" >> "$PROBES"; printf '000 '; exit 7 ;;
esac
"""
SUPERVISORCTL = '#!/bin/sh\necho "supervisorctl $*" >> "$LOG"\n'


@dataclass(frozen=True)
class TmpLayout(Layout):
    """The real layout under a temp base: the upstream file too, and this user as the app user."""
    etc: str = "/etc"

    @property
    def upstream_file(self) -> str:
        return f"{self.etc}/nginx/whipup/{self.app}-upstream.conf"

    @property
    def user(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name

    @property
    def group(self) -> str:
        return grp.getgrgid(os.getgid()).gr_name


@pytest.fixture
def host(tmp_path):
    """(layout, run): the layout under tmp_path/'x; whoami' (a value that must stay one word), and a runner
    of built commands with the stand-ins first on PATH."""
    base = tmp_path / EVIL
    lay = TmpLayout("demo", "demo.settings", "requirements.txt", base=str(base), etc=str(tmp_path / "etc"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("sudo", SUDO), ("nginx", NGINX), ("whoami", WHOAMI), ("date", DATE), ("curl", CURL),
                       ("supervisorctl", SUPERVISORCTL)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    for rid in (R, R2):
        os.makedirs(lay.release(rid))
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LOG": str(tmp_path / "calls.log"), "PWNED": str(tmp_path / "pwned"),
           "CLOCK": str(tmp_path / "clock"), "PROBES": str(tmp_path / "probes.log")}

    def run(cmd: str, stdin: str | None = None, **extra) -> subprocess.CompletedProcess:
        p = in_session(cmd, stdin, timeout=60, env={**env, **extra}, cwd=tmp_path)
        assert not (tmp_path / "pwned").exists(), "a value ran as a command"
        return p

    run.log = lambda: (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    run.probes = lambda: (tmp_path / "probes.log").read_text().splitlines()
    return lay, run


def test_go_live_points_current_and_the_live_slot_at_once(host):
    lay, run = host
    os.makedirs(lay.slots_dir)
    for slot, rid in (("a", R), ("b", R2)):
        p = run(slots.go_live(lay, slot, rid))
        assert p.returncode == 0, p.stderr
        assert os.readlink(lay.current) == f"releases/{rid}" and os.readlink(lay.live_slot) == slot
    assert sorted(os.listdir(lay.slots_dir)) == ["live"] and not any(".tmp" in n for n in os.listdir(lay.root))
    assert run(slots.go_live(lay, "a", "20990101000000-0000000")).returncode != 0      # no such release
    assert os.readlink(lay.live_slot) == "b" and os.readlink(lay.current) == f"releases/{R2}"


def test_the_state_reads_the_live_slot_and_what_each_slot_links_to(host, tmp_path):
    _, run = host
    lay = TmpLayout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "srv"))   # /srv: no space
    for rid in (R, R2):
        os.makedirs(lay.release(rid))
    os.makedirs(lay.slots_dir)
    Path(lay.slot("a")).symlink_to(lay.release(R))
    Path(lay.slot("a") + ".cold-at").write_text("1717001800\n")
    run(slots.go_live(lay, "b", R2))
    st = parse_state(run(c.state(lay)).stdout)
    assert (st.live, st.slots, st.cold_at) == ("b", {"a": R, "b": None}, {"a": 1717001800})


def test_a_warm_up_that_finds_its_slot_not_running_switches_nothing(host):
    lay, run = host
    os.makedirs(lay.slots_dir)
    run(slots.go_live(lay, "b", R2))
    stopped = "<value><struct><member><name>statename</name><value><string>STOPPED</string></value></member>"
    (Path(lay.root).parent.parent / "bin" / "curl").write_text(f"#!/bin/sh\necho '{stopped}'\n")
    p = run(slots.warm_and_go_live(lay, "a", R))
    assert (p.returncode, p.stdout) == (0, "cold\n")
    assert os.readlink(lay.live_slot) == "b" and os.readlink(lay.current) == f"releases/{R2}"   # as it was


def test_a_warm_up_of_a_running_slot_switches_to_it(host):
    lay, run = host
    os.makedirs(lay.slots_dir)
    run(slots.go_live(lay, "b", R2))
    Path(lay.slot("a") + ".cold-at").write_text("1717001800\n")
    p = run(slots.warm_and_go_live(lay, "a", R))       # no process has its pid, none were kept: warm 0
    assert (p.returncode, p.stdout) == (0, "warm 0\n"), p.stderr
    assert os.readlink(lay.live_slot) == "a" and os.readlink(lay.current) == f"releases/{R}"
    assert not os.path.exists(lay.slot("a") + ".cold-at")            # its timer will not stop it


def test_a_boot_waits_for_its_health_path_no_longer_than_its_timeout(host):
    """Each probe may take curl's -m: the wait is bounded by the clock, not by a count of probes."""
    lay, run = host
    p = run(slots.boot(lay, "b", R, "127.0.0.1", "/-/health", 3))
    assert p.returncode == 1 and p.stdout.endswith("\n@@ 000 RUNNING \n"), (p.stdout, p.stderr)
    assert run.probes() == ["http://127.0.0.1:8001/-/health"] * 3            # the clock said 1 (+3), 2, 3, 4
    assert os.readlink(lay.slot("b")) == lay.release(R)
    assert run.log() == ["supervisorctl stop demo-web-b", "supervisorctl update demo-web-b"]


def test_a_boot_ends_with_its_ssh_session_and_leaves_no_health_poll_behind(host, tmp_path):
    """A deploy killed while a slot boots: the session's stdin closes, and the boot's poll loop (which would
    go on for its whole timeout) ends with it, its process group killed."""
    lay, run = host
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "LOG": str(tmp_path / "calls.log"),
           "PWNED": str(tmp_path / "pwned"), "CLOCK": str(tmp_path / "clock"), "PROBES": str(tmp_path / "probes.log")}
    (tmp_path / "bin" / "date").write_text("#!/bin/sh\nexec /bin/date \"$@\"\n")       # the real clock
    p = subprocess.Popen(["sh", "-c", slots.boot(lay, "b", R, "127.0.0.1", "/health", 120)], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 10
    while not (tmp_path / "probes.log").exists():
        assert time.monotonic() < deadline and p.poll() is None, "the boot never polled"
        time.sleep(0.05)
    p.stdin.close()                                   # the SSH session ends
    assert p.wait(10) == 143
    probes = len(run.probes())
    time.sleep(1)                                     # a live loop polls every 0.1 s
    assert len(run.probes()) == probes, "the health poll outlived its session"


def test_a_boot_of_a_program_supervisor_does_not_know_says_to_configure(host):
    lay, run = host
    (Path(lay.root).parent.parent / "bin" / "supervisorctl").write_text(
        '#!/bin/sh\n[ "$1" != update ] || echo "ERROR: no such group: demo-web-a"\n')
    p = run(slots.boot(lay, "a", R, "127.0.0.1", "/health", 3))
    assert p.returncode == 1 and p.stderr == "ERROR: no such group: demo-web-a (is the program configured? fab configure)\n"


def test_the_proxy_switch_installs_a_changed_upstream_and_reloads_nginx_once(host):
    lay, run = host
    text = slots.upstream_text([("t-app-0", "10.0.0.10", 8001)])
    first = run(slots.proxy_switch(lay, None), stdin=text)
    assert (first.returncode, first.stdout) == (0, "reloaded\n"), first.stderr
    assert Path(lay.upstream_file).read_text() == text
    again = run(slots.proxy_switch(lay, None), stdin=text)
    assert (again.returncode, again.stdout) == (0, "unchanged\n")
    assert run.log() == ["nginx -t -q", "nginx -s reload"]                   # nothing for the unchanged one
    assert sorted(os.listdir(Path(lay.upstream_file).parent)) == ["demo-upstream.conf"]


def test_a_proxy_switch_nginx_refuses_leaves_the_old_upstream_with_nginxs_words(host):
    lay, run = host
    old = slots.upstream_text([("t-app-0", "10.0.0.10", 8000)])
    run(slots.proxy_switch(lay, None), stdin=old)
    broken = "nginx: [emerg] host not found in upstream \"10.0.0.10:8001\""
    p = run(slots.proxy_switch(lay, R), stdin=slots.upstream_text([("t-app-0", "10.0.0.10", 8001)]),
            NGINX_BROKEN=broken)
    assert p.returncode == 1 and p.stderr == f"nginx -t: {broken}\n"
    assert Path(lay.upstream_file).read_text() == old
    assert sorted(os.listdir(Path(lay.upstream_file).parent)) == ["demo-upstream.conf"]
    assert run.log().count("nginx -s reload") == 1                            # the first one's only
    assert os.readlink(lay.current) == f"releases/{R}"     # `current` (static files) came first: it is harmless


def test_a_first_upstream_nginx_refuses_leaves_none(host):
    lay, run = host
    p = run(slots.proxy_switch(lay, None), stdin="server nowhere;\n", NGINX_BROKEN="nginx: [emerg] bad")
    assert p.returncode == 1 and os.listdir(Path(lay.upstream_file).parent) == []


def test_every_path_in_a_slot_command_stays_one_word(host):
    lay, run = host                       # its base is tmp/'x; whoami': the fake whoami would mark a split
    assert EVIL in lay.root
    run(slots.go_live(lay, "a", R))
    p = run(slots.boot(lay, "a", R, "127.0.0.1", "/health", 1))
    assert p.returncode == 1 and os.readlink(lay.slot("a")) == lay.release(R)
    assert run(slots.drain(lay, "a", 1, 1, 0)).returncode == 0                 # (no worker: nothing to signal)
    assert Path(lay.slot("a") + ".cold-at").read_text() == "1\n"
    assert shlex.split(slots.stop(lay, "a"))[-1] == "supervisorctl stop demo-web-a >/dev/null 2>&1; true"
