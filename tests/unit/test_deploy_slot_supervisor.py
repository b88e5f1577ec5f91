"""The gunicorn slots for real: the shipped supervisor program file (app-web.conf.j2) in a supervisord of its
own here, each slot a real gunicorn started through the real launcher, and deploy's slot commands (boot,
drain, warm-up, stop; deploy/slots.py) run against them with this machine's sh and curl. A release's WSGI
app answers /health with its release id, as the overlay's view does."""
from __future__ import annotations

import grp
import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabfile.configure.templates import environment
from fabfile.deploy import commands as c
from fabfile.deploy import runtime, slots
from fabfile.deploy import supervisor as sv
from fabfile.deploy.releases import in_use, parse_state
from fabfile.layout import SLOTS, Layout, env_file_text
from local_host import in_session

pytest.importorskip("supervisor")
pytest.importorskip("gunicorn")
if subprocess.run(["sh", "-c", "command -v curl"], capture_output=True).returncode != 0:
    pytest.skip("curl is not installed (setup.sh installs it)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
R, R2, BAD = "20240131120000-1a2b3c4", "20240131130000-5e6f708", "20240131140000-bad0bad"
HEALTH_APP = """import json, os
RELEASE = os.path.basename(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"status": "ok", "release": RELEASE}).encode()]
"""
SUDO = """#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -n) shift;; -u) shift 2;; --) shift; break;; *) break;; esac; done
exec "$@"
"""


@dataclass(frozen=True)
class HereLayout(Layout):
    @property
    def user(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name

    @property
    def group(self) -> str:
        return grp.getgrgid(os.getgid()).gr_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def release(lay: Layout, rid: str, wsgi: str = HEALTH_APP) -> None:
    """A release whose venv is this one (gunicorn's), its app in src/."""
    rel = Path(lay.release(rid))
    (rel / "src").mkdir(parents=True)
    (rel / "src" / "healthapp.py").write_text(wsgi)
    (rel / ".whipup").mkdir()
    (rel / runtime.RELEASE_ENV).write_text(env_file_text({"WHIPUP_WSGI": "healthapp:application",
                                                          "WHIPUP_DJANGO_ROOT": "src"}))
    bindir = rel / ".venv" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    (bindir / "python").chmod(0o755)
    (bindir / "gunicorn").symlink_to(Path(sys.executable).parent / "gunicorn")


class Node:
    """An app node in a temp dir: the layout, a supervisord with the shipped web program file, a runner."""

    def __init__(self, tmp: Path):
        self.tmp, self.sock, self.conf = tmp, tmp / "supervisor.sock", tmp / "supervisord.conf"
        self.lay = HereLayout("demo", "demo.settings", "requirements.txt", base=str(tmp / "srv"))
        self.ports = {s: free_port() for s in SLOTS}
        for d in (self.lay.shared, tmp / "logs", tmp / "bin"):
            os.makedirs(d)
        Path(self.lay.env_file).write_text(env_file_text({"WEB_CONCURRENCY": "3"}))
        for name, (text, mode) in runtime.runtime_files(self.lay).items():
            Path(self.lay.shared, name).write_text(text)
            Path(self.lay.shared, name).chmod(mode)
        for rid in (R, R2):
            release(self.lay, rid)
        release(self.lay, BAD, "raise ImportError('no module named wagtail')\n")
        for name, text in (("sudo", SUDO), ("supervisorctl", f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m "
                                                             f"supervisor.supervisorctl -c {self.conf} \"$@\"\n")):
            (tmp / "bin" / name).write_text(text)
            (tmp / "bin" / name).chmod(0o755)
        self.env = {**os.environ, "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}"}
        self.write_conf()
        self.proc = None

    def write_conf(self) -> None:
        lay = self.lay
        ctx = {"cluster": {"name": "t"}, "node": {"private_ip": "127.0.0.1"},
               "app": {"name": lay.app, "launcher": lay.launcher, "root": lay.root, "user": lay.user,
                       "logs": str(self.tmp / "logs"), "boot_program": lay.boot_program, "slots_dir": lay.slots_dir,
                       "slots": [{"name": s, "program": lay.slot_program(s), "dir": lay.slot(s),
                                  "port": self.ports[s]} for s in SLOTS]}}
        web = environment(REPO / "templates").get_template("etc/supervisor/conf.d/app-web.conf.j2").render(ctx)
        self.conf.write_text(
            f"[unix_http_server]\nfile={self.sock}\n\n[supervisord]\nnodaemon=true\nlogfile={self.tmp / 'sd.log'}\n"
            f"pidfile={self.tmp / 'sd.pid'}\nchildlogdir={self.tmp}\n\n[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{self.sock}\n\n" + web)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: self.state("a") != "ERROR")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def run(self, cmd: str) -> subprocess.CompletedProcess:
        return in_session(cmd, timeout=120, env=self.env)

    def status(self, slot: str) -> tuple[str, int | None]:
        st = parse_state(self.run(c.state(self.lay, [self.lay.slot_program(slot)])).stdout)
        p = st.programs[self.lay.slot_program(slot)]
        return p.state, p.pid

    def state(self, slot: str) -> str:
        return self.status(slot)[0]

    def workers(self, slot: str) -> int:
        pid = self.status(slot)[1]
        return sum(1 for p in Path("/proc").glob("[0-9]*/status")
                   if _ppid(p) == pid) if pid else 0

    def health(self, slot: str) -> str:
        return self.run(f"curl -sS -m 5 http://127.0.0.1:{self.ports[slot]}/health").stdout


def _ppid(status: Path) -> int | None:
    try:
        line = next(x for x in status.read_text().splitlines() if x.startswith("PPid:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1])


def wait(what, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def ours(tmp: Path) -> list[int]:
    """The pids of processes whose command line names `tmp` (the drain's timers): ours to end."""
    found = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(tmp).encode() in p.read_bytes():
                found.append(int(p.parent.name))
        except OSError:
            continue
    return found


@pytest.fixture
def node(tmp_path, monkeypatch):
    n = Node(tmp_path)
    monkeypatch.setattr(sv, "SUPERVISOR_SOCKET", str(n.sock))
    monkeypatch.setattr(slots, "slot_port", lambda s: n.ports[s])
    n.start()
    yield n
    n.stop()
    for pid in ours(tmp_path):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_a_boot_starts_the_release_in_its_slot_and_answers_its_health_path(node):
    lay = node.lay
    p = node.run(slots.boot(lay, "a", R, "127.0.0.1", "/health", 60))
    assert p.returncode == 0, (p.stdout, p.stderr)
    body, last = p.stdout.rstrip("\n").rsplit("\n", 1)
    assert last == "@@ 200 RUNNING " and f'"release": "{R}"' in body
    st = parse_state(node.run(c.state(lay, [lay.slot_program(s) for s in SLOTS])).stdout)
    assert st.slots == {"a": R, "b": None} and st.programs["demo-web-a"].running
    assert not st.programs["demo-web-b"].running
    assert in_use(lay, st) == {R}                      # its master is in the release: never pruned meanwhile
    wait(lambda: node.workers("a") == 3)               # WEB_CONCURRENCY from shared/.env


def test_two_releases_run_at_once_each_in_its_slot_on_its_port(node):
    lay = node.lay
    for slot, rid in (("a", R), ("b", R2)):
        p = node.run(slots.boot(lay, slot, rid, "127.0.0.1", "/health", 60))
        assert p.returncode == 0, (p.stdout, p.stderr)
    assert f'"release": "{R}"' in node.health("a") and f'"release": "{R2}"' in node.health("b")


def test_a_release_that_fails_under_gunicorn_never_answers_and_says_how_it_died(node):
    lay = node.lay
    p = node.run(slots.boot(lay, "b", BAD, "127.0.0.1", "/health", 60))
    assert p.returncode == 1
    code, state = p.stdout.rstrip("\n").rsplit("\n", 1)[-1].split()[1:3]
    assert code == "000" and state in ("BACKOFF", "FATAL", "EXITED"), p.stdout
    log = node.run(c.program_log(lay, lay.slot_program("b"), 20000)).stdout
    assert "no module named wagtail" in log
    node.run(slots.stop(lay, "b"))
    assert node.state("b") in ("STOPPED", "FATAL", "EXITED")


def test_a_drain_keeps_one_worker_and_a_warm_up_brings_them_back_with_no_restart(node):
    lay = node.lay
    assert node.run(slots.boot(lay, "a", R, "127.0.0.1", "/health", 60)).returncode == 0
    wait(lambda: node.workers("a") == 3)
    pid = node.status("a")[1]
    assert node.run(slots.go_live(lay, "b", R)).returncode == 0          # another slot is live now
    out = node.run(slots.drain(lay, "a", 600, 1, 1717000000))
    assert (out.returncode, out.stdout) == (0, "warm with 1 worker(s) for 10 min\n"), out.stderr
    wait(lambda: node.workers("a") == 1)
    assert Path(lay.slot("a") + ".workers").read_text() == "3\n"
    assert Path(lay.slot("a") + ".cold-at").read_text() == "1717000600\n"
    assert f'"release": "{R}"' in node.health("a")                       # warm: it still answers
    out = node.run(slots.warm_and_go_live(lay, "a", R))
    assert (out.returncode, out.stdout) == (0, "warm 3\n"), out.stderr
    wait(lambda: node.workers("a") == 3)
    assert node.status("a")[1] == pid                                     # the same master: nothing booted
    assert os.readlink(lay.live_slot) == "a" and not os.path.exists(lay.slot("a") + ".cold-at")


def test_a_drained_slot_stops_when_its_time_is_up_unless_it_is_live_again(node):
    lay = node.lay
    for slot in SLOTS:
        assert node.run(slots.boot(lay, slot, R, "127.0.0.1", "/health", 60)).returncode == 0
    assert node.run(slots.go_live(lay, "a", R)).returncode == 0
    now = int(time.time())
    for slot in SLOTS:                                # b is not live: it goes; a is live again: it stays
        assert node.run(slots.drain(lay, slot, 1, 1, now)).returncode == 0
    wait(lambda: node.state("b") == "STOPPED")
    assert not os.path.exists(lay.slot("b") + ".cold-at")
    wait(lambda: not [p for p in ours(node.tmp) if b"sleep 1;" in Path(f"/proc/{p}/cmdline").read_bytes()])
    assert node.state("a") == "RUNNING" and os.path.exists(lay.slot("a") + ".cold-at")


def test_a_drain_that_keeps_nothing_stops_the_slot(node):
    lay = node.lay
    assert node.run(slots.boot(lay, "b", R2, "127.0.0.1", "/health", 60)).returncode == 0
    assert node.run(slots.drain(lay, "b", 0, 0, 0)).stdout == "stopped\n"
    wait(lambda: node.state("b") == "STOPPED")
    assert node.run(slots.drain(lay, "b", 600, 1, 0)).stdout == "not running\n"


def test_when_supervisord_starts_again_the_live_slot_comes_back_on_its_own(node):
    """A host that boots again: the shipped boot program starts the slot slots/live names, only it."""
    lay = node.lay
    assert node.run(slots.boot(lay, "b", R2, "127.0.0.1", "/health", 60)).returncode == 0
    assert node.run(slots.go_live(lay, "b", R2)).returncode == 0
    node.stop()
    node.start()
    wait(lambda: f'"release": "{R2}"' in node.health("b"))
    assert node.state("a") == "STOPPED"
