"""Deploy's supervisord commands (XML-RPC with curl on the unix socket) against a real supervisord here.

The state read, gunicorn's HUP and celery's warm restart no longer run supervisorctl (a Python program
that takes ~0.15 s to start on a small host); these tests run the built shell commands with this
machine's sh and curl against supervisord itself, so the sed that reads its replies meets the real
marshalling, faults included.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabfile.deploy import commands as c
from fabfile.deploy import supervisor as sv
from fabfile.deploy.releases import parse_state
from fabfile.layout import Layout

pytest.importorskip("supervisor")
if shutil.which("curl") is None:
    pytest.skip("curl is not installed (setup.sh installs it)", allow_module_level=True)

# web: records each HUP it gets; worker: exits on TERM (celery's warm shutdown), supervisor restarts it
PROGRAM = """\
import os, signal, sys, time
marks = sys.argv[1]
signal.signal(signal.SIGHUP, lambda *_: open(marks, "a").write(f"HUP {os.getpid()}\\n"))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
open(marks, "a").write(f"up {os.getpid()}\\n")
while True:
    time.sleep(0.05)
"""


def local(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a `sudo -n -- sh -c SCRIPT` command's script with this machine's sh."""
    argv = shlex.split(cmd)
    assert argv[:3] == ["sudo", "-n", "--"]
    p = subprocess.run(argv[3:], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class Supervisord:
    def __init__(self, tmp: Path):
        self.tmp, self.sock = tmp, tmp / "supervisor.sock"
        script = tmp / "program.py"
        script.write_text(PROGRAM)
        programs = "".join(
            f"[program:{name}]\ncommand={sys.executable} {script} {tmp / (name + '.marks')}\n"
            f"autostart={auto}\nautorestart=true\nstartsecs=0\nstopwaitsecs=5\n\n"
            for name, auto in (("demo-web", "true"), ("demo-worker", "true"), ("idle", "false")))
        (tmp / "supervisord.conf").write_text(
            f"[unix_http_server]\nfile={self.sock}\n\n"
            f"[supervisord]\nnodaemon=true\nlogfile={tmp / 'supervisord.log'}\npidfile={tmp / 'supervisord.pid'}\n"
            f"childlogdir={tmp}\n\n"
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{self.sock}\n\n" + programs)
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(tmp / "supervisord.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name in ("demo-web", "demo-worker"):
            self.wait(lambda n=name: self.pids(n))

    def marks(self, name: str) -> list[str]:
        path = self.tmp / f"{name}.marks"
        return path.read_text().splitlines() if path.exists() else []

    def pids(self, name: str) -> list[int]:
        """The pids `name` has run as, oldest first (each process writes `up <pid>` once it handles signals)."""
        return [int(line.split()[1]) for line in self.marks(name) if line.startswith("up ")]

    @staticmethod
    def wait(what, limit: float = 15) -> None:
        deadline = time.monotonic() + limit
        while not what():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def sup(tmp_path, monkeypatch):
    s = Supervisord(tmp_path)
    monkeypatch.setattr(sv, "SUPERVISOR_SOCKET", str(s.sock))
    yield s
    s.stop()


L = Layout("demo", "demo.settings", "requirements.txt")


def programs(sup_, *names: str):
    lay = Layout("demo", "demo.settings", "requirements.txt", base=str(sup_.tmp / "srv"))
    os.makedirs(lay.root)
    return parse_state(local(c.state(lay, names)).stdout).programs


def test_state_reads_each_programs_supervisor_state_and_pid(sup):
    got = programs(sup, "demo-web", "idle", "nope")
    web = got["demo-web"]
    assert web.state == "RUNNING" and web.pid == sup.pids("demo-web")[-1]
    assert web.interpreter == sys.executable and web.cwd == os.path.realpath(os.getcwd())
    assert (got["idle"].state, got["idle"].pid) == ("STOPPED", None)
    assert (got["nope"].state, got["nope"].pid) == ("ERROR", None)


def test_state_says_error_when_supervisord_is_down(sup):
    sup.stop()
    got = programs(sup, "demo-web")["demo-web"]
    assert (got.state, got.pid) == ("ERROR", None)


def test_a_signal_reaches_the_running_program_and_fails_clearly_otherwise(sup):
    pid = sup.pids("demo-web")[-1]
    r = local(c.as_root(sv.supervisor_signal("demo-web", "HUP")))
    assert r.stdout == "demo-web: signalled\n"
    sup.wait(lambda: f"HUP {pid}" in sup.marks("demo-web"))
    assert sup.pids("demo-web") == [pid]                         # the same master: a graceful reload
    stopped = local(c.as_root(sv.supervisor_signal("idle", "HUP")), check=False)
    assert stopped.returncode == 1 and stopped.stdout.startswith("ERROR (NOT_RUNNING")
    unknown = local(c.as_root(sv.supervisor_signal("nope", "HUP")), check=False)
    assert unknown.returncode == 1 and unknown.stdout == "ERROR (BAD_NAME: nope)\n"


def test_worker_warm_restart_terms_it_and_supervisor_starts_it_again(sup):
    first = sup.pids("demo-worker")[-1]
    assert local(c.worker_warm_restart(L)).stdout == "demo-worker: signalled\n"
    sup.wait(lambda: len(sup.pids("demo-worker")) == 2)
    assert sup.pids("demo-worker")[0] == first


def test_worker_warm_restart_starts_a_stopped_worker_without_waiting(sup):
    subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(sup.tmp / "supervisord.conf"),
                    "stop", "demo-worker"], check=True, capture_output=True)
    assert local(c.worker_warm_restart(L)).stdout == "demo-worker: started\n"
    sup.wait(lambda: len(sup.pids("demo-worker")) == 2)


def test_a_value_in_the_rpc_body_stays_one_argument():
    words = shlex.split(sv.supervisor_rpc("supervisor.getProcessInfo", "x; whoami").split(" | ")[0])
    assert words[:6] == ["curl", "-sS", "--unix-socket", sv.SUPERVISOR_SOCKET, "-H", "Content-Type: text/xml"]
    assert words[6] == "--data-binary" and "<string>x; whoami</string>" in words[7]
    assert words[8:] == ["http://localhost/RPC2", "2>&1"]
    with pytest.raises(ValueError):
        sv.supervisor_signal("demo-web", "HUP; whoami")
