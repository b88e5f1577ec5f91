"""The fake hosts' vocabulary (deploy_fakes): which stage a real builder's command is (`classify`), the
state a node's slots and releases are in, and what the hosts share (`World`). Not a test module."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from fabfile.deploy import manage
from fabfile.layout import SLOTS, Layout, slot_port
from fabfile.nodes import Node

RID = re.compile(r"\b\d{14}-[0-9a-f]{7,40}\b")
SCRIPTS = {manage.script("migrations_missing"): "migrations missing",
           manage.script("migrate_back"): "migrate back",
           manage.script("django_facts"): "django facts"}
NODES = {"proxy": Node("proxy", 0, "t-proxy-0", "i-p0", "running", "10.0.0.5", None, None),
         "app": Node("app", 0, "t-app-0", "i-a0", "running", "10.0.0.10", None, None),
         "db": Node("db", 0, "t-db-0", "i-d0", "running", "10.0.0.20", None, None),
         "worker": Node("worker", 0, "t-worker-0", "i-w0", "running", "10.0.0.30", None, None)}
WORKERS = 3           # gunicorn's workers in a slot that serves (WEB_CONCURRENCY's default)
_SERVER = re.compile(r"^server ([0-9.]+):([0-9]+) ", re.M)


class Result:
    def __init__(self, exited=0, stdout="", stderr="", halt=False):
        self.exited, self.stdout, self.stderr = exited, stdout, stderr
        self.halt = halt          # the command stops here with this exit status (a warm-up that found it cold)


@dataclass
class Rel:
    """A release on a host: what the state command prints of it."""
    sha: str
    req: str = "-"
    venv: str = "-"
    previous: str = "-"
    migrations: tuple[str, ...] = ()     # e.g. notes/migrations/0002_x.py


@dataclass
class Slot:
    """One gunicorn slot of an app node: the release slots/<s> links to, and its process."""
    release: str | None = None
    running: bool = False
    workers: int = 0
    kept: int | None = None              # slots/<s>.workers: the workers it had before its drain
    cold_at: int | None = None


class World:
    """What the hosts share: the (node, stage) log, the branch head a fetch finds, the hosts by address."""

    def __init__(self, head: str):
        self.head = head
        self.log: list[tuple[str, str]] = []
        self.unclassified: list[str] = []
        self.hosts: dict = {}                 # address -> its FakeHost (deploy_fakes)
        self._lock = threading.Lock()

    def add(self, name: str, stage: str) -> None:
        with self._lock:
            self.log.append((name, stage))

    def stages(self, name: str | None = None) -> list[str]:
        return [s for n, s in self.log if name in (None, n)]

    def reached(self, upstream: str) -> list[tuple[str, str, str | None]]:
        """What an upstream file sends requests to: (app node, slot, the release it answers from, None: down)."""
        out = []
        for ip, port in _SERVER.findall(upstream):
            host, slot = self.hosts[ip], SLOTS[int(port) - slot_port(SLOTS[0])]
            s = host.slots[slot]
            out.append((host.name, slot, s.release if s.running else None))
        return out


def _slot_stages(command: str) -> list[str]:
    """The gunicorn slots' and the switch's commands (deploy/slots.py, commands.switch)."""
    if 'echo "@@ ' in command:
        return ["boot"]
    stages = ["warm up"] if "echo cold; exit 0" in command else []
    if "&& mv -T current.tmp-" in command:
        stages.append("switch")
    if "/slots/live.tmp" in command:
        stages.append("go live")
    if ".whipup-new" in command and "nginx -s reload" in command:
        stages.append("upstream")
    if "supervisor.stopProcess" in command:
        stages.append("drain")
    elif re.search(r"supervisorctl stop \S+-web-[ab] >/dev/null 2>&1; true", command):
        stages.append("stop slot")
    return stages


def classify(command: str, stdin: str | None, layout: Layout) -> list[str]:
    """The stages a command is (several for one that does several things), [] when it is none of them."""
    worker = layout.worker_program
    simple = [("ls-tree -r", "static key"), ("wc -l < ", "count static"), ("STATIC_SUMS 2>/dev/null ||", "proxy sums"),
              ("] || (cd ", "static sums"), ("xargs -0 -r rm -f --", "static prepare"),
              ("--verbatim-files-from", "static pack"), ("tar -xf - --no-same-owner -C", "static unpack"),
              ("pip wheel", "pip install"), ("--no-index --find-links", "pip install"),
              ("grep -c", "wheelhouse size"), ("du -sk", "wheelhouse unpack"), ("tar -cf - ", "wheelhouse pack"),
              ("/wheelhouse/", "wheelhouse remove"),
              ("deploy.lock.new", "lock"), ("echo held", "lock read"), ("echo layout=ok", "state"),
              ("fetch --quiet", "fetch"), ("archive --format=tar", "extract"), (".env.tmp", ".env"),
              ("cp -al", "venv reuse"), ("pip install --progress-bar off --disable-pip-version-check --no-input -r", "pip install"),
              ("collectstatic", "collectstatic"), ("migrate --check", "migrate check"),
              ("migrate --noinput", "migrate"), ("tar -x --no-same-owner", "release files"),
              (".trash.", "remove"), ("supervisorctl tail", "log")]
    if f"cat >> {layout.audit_log}" in command:
        return ["audit", "unlock"] if "grep -qF" in command else ["audit"]
    if "grep -qF" in command:
        return ["unlock"]
    for mark, stage in simple:
        if mark in command:
            return [stage]
    if re.search(r"(?:/bin/| )python -(?=[\s']|$)", command):
        return [SCRIPTS[stdin]] if stdin in SCRIPTS else []
    if command.startswith("curl ") and "/health" in command:
        return ["probe"]
    stages = _slot_stages(command)
    if f"supervisorctl start {worker}" in command or ("signalProcess" in command and f"<string>{worker}</string>"
                                                      in command):
        stages.append("celery restart")
    return stages


def mark(command: str, path_end: str) -> str | None:
    """The value a builder writes with `printf '%s\\n' VALUE > <path ending in path_end>`."""
    found = re.search(r"(\S+) > \S+/" + re.escape(path_end) + r"(?=[\s']|$)", command)
    return found.group(1) if found else None


def slot_of(command: str) -> str:
    return re.search(r"-web-([ab])\b", command).group(1)
