"""The peers of bench/peers.py: pyinfra and ansible-core in venvs of their own, their runs timed from outside,
and the changes each one reports, read from its own summary.

The venvs live in ~/.cache/whipup-bench/peers/ (installed from the package registry with pip once; a rerun
skips that). Each tool is run as a whole process, like bench/common.fab: wall time, its CPU-seconds (with
its children: Ansible's forks and ssh) and its peak RSS, from os.wait4.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import Run, machine_busy_seconds

CACHE = Path.home() / ".cache" / "whipup-bench" / "peers"
PACKAGES = {"pyinfra": "pyinfra", "ansible": "ansible-core"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def venv(tool: str) -> Path:
    """The venv of `tool` (pyinfra | ansible), made and installed into on the first call."""
    path = CACHE / tool
    if not (path / "bin" / ("pyinfra" if tool == "pyinfra" else "ansible-playbook")).exists():
        subprocess.run(["python3", "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", PACKAGES[tool]], check=True)
    return path


def version(tool: str) -> str:
    out = subprocess.run([str(venv(tool) / "bin" / "pip"), "show", PACKAGES[tool]], capture_output=True,
                         text=True, check=True).stdout
    return f"{PACKAGES[tool]} " + next(line.split()[1] for line in out.splitlines() if line.startswith("Version:"))


# A small launcher starts each tool and reports its rusage: a child's peak RSS counts what it had before its
# exec (the forking process's pages), so a tool spawned straight from this process (fabfile, boto3 and yaml
# loaded: 90 MiB and more) would show this process's size; the launcher (python3 -S) is about 9 MiB.
LAUNCH = ("import os, sys, time\n"
          "start = time.monotonic()\n"
          "pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)\n"
          "_, status, u = os.wait4(pid, 0)\n"
          "os.write(int(sys.argv[1]), f'{time.monotonic() - start} {u.ru_maxrss} {u.ru_utime + u.ru_stime}'.encode())\n"
          "sys.exit(os.waitstatus_to_exitcode(status))\n")


def timed(argv: list[str], *, cwd: Path, env: dict) -> Run:
    """Run `argv` as one process (started by LAUNCH): wall time, CPU-seconds (its children included), peak
    RSS, output."""
    busy = machine_busy_seconds()
    read, write = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(["python3", "-S", "-c", LAUNCH, str(write), *argv], cwd=cwd, env=env, stdout=out,
                             stderr=err, stdin=subprocess.DEVNULL, pass_fds=(write,))
        os.close(write)
        with os.fdopen(read) as figures:
            code = p.wait()
            reported = figures.read().split()
        if len(reported) != 3:
            raise SystemExit(f"{argv[0]}: not started (exit {code})")
        seconds, rss, cpu = reported
        out.seek(0)
        err.seek(0)
        return Run(float(seconds), int(rss) / 1024, out.read().decode(errors="replace"),
                   err.read().decode(errors="replace"), code, float(cpu), machine_busy_seconds() - busy)


@dataclass(frozen=True)
class Peer:
    """One way to converge a run dir: how to start it and how to read the changes it made."""
    label: str
    tool: str                 # pyinfra | ansible
    subdir: str               # the run dir's part it reads (pyinfra, ansible-tuned, ansible-default)

    def argv(self, hosts: int) -> list[str]:
        bin_ = venv(self.tool) / "bin"
        if self.tool == "pyinfra":
            return [str(bin_ / "pyinfra"), "-y", "--sudo", "--parallel", str(max(hosts, 1)),
                    "inventory.py", "deploy.py"]
        return [str(bin_ / "ansible-playbook"), "-i", "inventory.yml", "playbook.yml"]

    def env(self, root: Path) -> dict:
        env = dict(os.environ, NO_COLOR="1", ANSIBLE_NOCOLOR="1", HOME=str(root / "home"))
        if self.tool == "ansible":
            env["ANSIBLE_CONFIG"] = str(root / self.subdir / "ansible.cfg")
        return env

    def run(self, root: Path, hosts: int) -> Run:
        (root / "home").mkdir(exist_ok=True)
        return timed(self.argv(hosts), cwd=root / self.subdir, env=self.env(root))

    def changes(self, run: Run) -> int:
        """The changes the tool reports; SystemExit when it failed or its summary is not there."""
        return (pyinfra_changes if self.tool == "pyinfra" else ansible_changes)(self.label, run)


def _fail(label: str, run: Run, why: str) -> SystemExit:
    return SystemExit(f"{label}: {why} (exit {run.code})\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")


def pyinfra_changes(label: str, run: Run) -> int:
    """pyinfra's results table: its 'Grand total' row's Success column (changed operations x hosts)."""
    rows = [ANSI.sub("", line).split() for line in (run.stdout + run.stderr).splitlines()
            if "Grand total" in line]
    if run.code != 0 or not rows:
        raise _fail(label, run, "failed" if run.code else "no 'Grand total' row")
    _hosts, success, error, _no_change = rows[-1][-4:]
    if error != "-":
        raise _fail(label, run, f"{error} operation(s) failed")
    return 0 if success == "-" else int(success)


RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ansible_changes(label: str, run: Run) -> int:
    """The PLAY RECAP's changed= of every host, added up (tasks that changed something, loops counted once)."""
    recap = RECAP.findall(ANSI.sub("", run.stdout))
    if run.code != 0 or not recap:
        raise _fail(label, run, "failed" if run.code else "no PLAY RECAP")
    if any(int(r[3]) or int(r[4]) for r in recap):
        raise _fail(label, run, "a host unreachable or failed")
    return sum(int(r[2]) for r in recap)


SUMMARY = re.compile(r"^\[(\S+)\] changed (\d+), ok (\d+), failed (\d+)", re.M)


def whipup_changes(run: Run) -> int:
    """fab configure's summary lines: every host's 'changed N' added up."""
    lines = SUMMARY.findall(run.stdout)
    if run.code != 0 or not lines or any(int(f) for *_, f in lines):
        raise _fail("whipup", run, "failed or no summary line")
    return sum(int(c) for _, c, _, _ in lines)
