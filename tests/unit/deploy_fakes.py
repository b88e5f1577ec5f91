"""A scripted cluster for the deploy/rollback sequencing tests: one FakeHost per node, no SSH.

A FakeHost answers each remote command by what it is (a distinctive piece of the real builders' output:
see `classify`), keeps its node's state (releases, `current`, the release gunicorn or celery runs, the lock,
the audit log) and changes it as the command would, so a re-read of the state sees the truth.  Every host
logs (node name, stage) to the World's one log; `fail` makes a stage answer as a broken one would.
Not a test module (no test_ prefix): the test files import it (tests/unit is on sys.path, rootless).
"""
from __future__ import annotations

import dataclasses
import json
import re
import threading
from dataclasses import dataclass

from fabfile.deploy import manage
from fabfile.deploy.cluster import Cluster, Member
from fabfile.layout import PREVIOUS_MARK, REQUIREMENTS_MARK, VENV_MARK, Layout
from fabfile.nodes import Node
from fabfile.remote import Progress

RID = re.compile(r"\b\d{14}-[0-9a-f]{7,40}\b")
SCRIPTS = {manage.script("health_check"): "health before traffic",
           manage.script("migrations_missing"): "migrations missing",
           manage.script("migrate_back"): "migrate back",
           manage.script("django_facts"): "django facts"}
NODES = {"proxy": Node("proxy", 0, "t-proxy-0", "i-p0", "running", "10.0.0.5", None, None),
         "app": Node("app", 0, "t-app-0", "i-a0", "running", "10.0.0.10", None, None),
         "db": Node("db", 0, "t-db-0", "i-d0", "running", "10.0.0.20", None, None),
         "worker": Node("worker", 0, "t-worker-0", "i-w0", "running", "10.0.0.30", None, None)}


class Result:
    def __init__(self, exited=0, stdout="", stderr=""):
        self.exited, self.stdout, self.stderr = exited, stdout, stderr


@dataclass
class Rel:
    """A release on a host: what the state command prints of it."""
    sha: str
    req: str = "-"
    venv: str = "-"
    previous: str = "-"
    migrations: tuple[str, ...] = ()     # e.g. notes/migrations/0002_x.py


class World:
    """What the hosts share: the (node, stage) log, the branch head a fetch finds, the hosts by address."""

    def __init__(self, head: str):
        self.head = head
        self.log: list[tuple[str, str]] = []
        self.unclassified: list[str] = []
        self.hosts: dict[str, FakeHost] = {}
        self._lock = threading.Lock()

    def add(self, name: str, stage: str) -> None:
        with self._lock:
            self.log.append((name, stage))

    def stages(self, name: str | None = None) -> list[str]:
        return [s for n, s in self.log if name in (None, n)]


def classify(command: str, stdin: str | None, layout: Layout) -> list[str]:
    """The stages a command is (two for the rollback's switch-and-reload), [] when it is none of them."""
    web, worker = layout.web_program, layout.worker_program
    simple = [("deploy.lock.new", "lock"), ("echo held", "lock read"), ("echo layout=ok", "state"),
              ("fetch --quiet", "fetch"), ("archive --format=tar", "extract"), (".env.tmp", ".env"),
              ("cp -al", "venv reuse"), ("pip install --progress-bar off --disable-pip-version-check --no-input -r", "pip install"),
              ("collectstatic", "collectstatic"), ("migrate --check", "migrate check"),
              ("migrate --noinput", "migrate"), ("base64 -w 0", "static pack"),
              ("tar -x --no-same-owner", "release files"), ("-type f 2>/dev/null | wc -l", "count static"), ("base64 -d", "static unpack"),
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
    stages = ["switch"] if "&& mv -T current.tmp-" in command else []
    if "signalProcess" in command and f"<string>{web}</string>" in command:
        stages.append("hup")
    elif f"supervisorctl restart {web}" in command:
        stages.append("restart")
    elif f"supervisorctl start {web}" in command:
        stages.append("start")
    elif f"supervisorctl start {worker}" in command or ("signalProcess" in command and f"<string>{worker}</string>"
                                                        in command):
        stages.append("celery restart")
    return stages


def _mark(command: str, path_end: str) -> str | None:
    """The value a builder writes with `printf '%s\\n' VALUE > <path ending in path_end>`."""
    found = re.search(r"(\S+) > \S+/" + re.escape(path_end) + r"(?=[\s']|$)", command)
    return found.group(1) if found else None


class FakeHost:
    """One node's connection: answers the deploy's commands from (and onto) the node's state."""
    is_connected = True
    transport = None

    def __init__(self, world: World, node: Node, layout: Layout, releases: dict[str, Rel], current: str | None):
        self.world, self.node, self.layout = world, node, layout
        self.name, self.host = node.name, node.private_ip
        self.releases = {k: dataclasses.replace(v) for k, v in releases.items()}
        self.current = current
        self.program = {"app": layout.web_program, "worker": layout.worker_program}.get(node.role)
        self.serving = current if self.program else None     # the release gunicorn/celery runs (None: not running)
        self.lock: str | None = None
        self.audit: list[str] = []
        self.failures: dict[str, tuple[str | None, str]] = {}
        self.calls: list[tuple[str, str | None, bool]] = []  # (stage, the release it concerns, did it work)
        self.migrations_answer = {"missing": [], "leaves": {}}
        self.pip_output = ""    # what `pip install` prints here
        world.hosts[self.host] = self

    def fail(self, stage: str, release: str | None = None, message: str | None = None) -> None:
        """Make `stage` fail here (only for `release`, when given): exit 1 with a message, or for the probe
        (whose target is this node) a 500, for /health before traffic a {"code": 500} answer."""
        self.failures[stage] = (release, message or f"{stage} broke on {self.name}")

    def close(self) -> None:
        pass

    def run(self, command: str, **kw) -> Result:
        stdin = kw["in_stream"].read() if kw.get("in_stream") else None
        stages = classify(command, stdin, self.layout)
        if not stages:
            self.world.unclassified.append(command)
            raise AssertionError(f"{self.name}: unclassified command: {command[:400]}")
        for stage in stages:
            result = self._one(stage, command, stdin)
            if result.exited != 0:
                break
        if not kw.get("hide", True):   # streamed (remote.run's on_line): invoke echoes what it does not hide
            kw["out_stream"].write(result.stdout)
            kw["err_stream"].write(result.stderr)
        return result

    def _one(self, stage: str, command: str, stdin: str | None) -> Result:
        found = RID.search(command)
        rel = found.group(0) if found else self.current
        target = self.world.hosts[re.search(r"http://([0-9.]+):", command).group(1)] if stage == "probe" else self
        concerned = target.serving if stage == "probe" else rel
        self.world.add(self.name, stage)
        failing = target.failures.get(stage)
        broken = failing is not None and failing[0] in (None, concerned)
        if broken:
            result = self._failure(stage, failing[1], concerned)
        else:
            result = getattr(self, "_" + re.sub(r"\W+", "_", stage).strip("_"))(command, stdin, rel)
        self.calls.append((stage, concerned, not broken and result.exited == 0))
        return result

    @staticmethod
    def _failure(stage: str, message: str, release: str | None) -> Result:
        if stage == "probe":
            return Result(0, json.dumps({"error": message, "release": release}) + "\n500")
        if stage == "health before traffic":
            return Result(0, json.dumps({"code": 500, "body": message}) + "\n")
        return Result(1, "", f"E: {message}\n")

    # --- what each stage does on the node, and what it prints ---------------------------------------

    def _state(self, command, stdin, rel):
        lines = ["layout=ok", "current=" + (f"releases/{self.current}" if self.current else "")]
        lines += [f"release={rid} {r.sha} {r.req} {r.venv} - {r.previous}" for rid, r in sorted(self.releases.items())]
        if "/migrations/" in command:
            lines += [f"migration={rid} {path}" for rid, r in sorted(self.releases.items()) for path in r.migrations]
        if self.program and "getProcessInfo" in command:
            lines.append(f"program={self.program} RUNNING 4242 {self.layout.release(self.serving)} "
                         f"{self.layout.current}/.venv/bin/python" if self.serving else f"program={self.program} FATAL 0 - -")
        return Result(0, "\n".join(lines) + "\n")

    def _lock(self, command, stdin, rel):
        if self.lock is not None:
            return Result(75, self.lock)
        self.lock = stdin
        return Result()

    def _lock_read(self, command, stdin, rel):
        return Result(0, f"held\n{self.lock}" if self.lock is not None else "")

    def _audit(self, command, stdin, rel):
        self.audit.append(stdin)
        return Result()

    def _unlock(self, command, stdin, rel):
        token = re.search(r"grep -qF (\S+)", command).group(1)
        if self.lock is not None and token in self.lock:
            self.lock = None
        return Result()

    def _fetch(self, command, stdin, rel):
        return Result(0, self.world.head + "\n")

    def _extract(self, command, stdin, rel):
        self.releases[rel] = Rel(_mark(command, "REVISION"), previous=_mark(command, PREVIOUS_MARK) or "-")
        return Result()

    _static_unpack = _extract

    def _env(self, command, stdin, rel):
        return Result(0, "changed\n")

    def _release_files(self, command, stdin, rel):
        return Result()

    def _django_facts(self, command, stdin, rel):
        db = NODES["db"].private_ip         # the fakes' clusters keep their db node at this address
        return Result(0, json.dumps({"settings": "whipup_settings", "has_static": True, "static_root": "x",
                                     "database": {"engine": "django.db.backends.postgresql", "host": db}}) + "\n")

    def _count_static(self, command, stdin, rel):
        return Result(0, "12\n")

    def _venv_reuse(self, command, stdin, rel):
        old = self.releases[re.search(r"cp -al \S+/releases/(" + RID.pattern + ")/", command).group(1)]
        self.releases[rel].req, self.releases[rel].venv = old.req, old.venv
        return Result()

    def _pip_install(self, command, stdin, rel):
        self.releases[rel].req = _mark(command, f".venv/{REQUIREMENTS_MARK}")
        self.releases[rel].venv = _mark(command, f".venv/{VENV_MARK}")
        return Result(0, self.pip_output)

    def _collectstatic(self, command, stdin, rel):
        return Result(0, "12 static files copied to 'static'.\n")

    def _migrate(self, command, stdin, rel):
        return Result(0, "Operations to perform:\n  Apply all migrations: notes\nRunning migrations:\n"
                         "  No migrations to apply.\n")

    def _migrate_check(self, command, stdin, rel):
        return Result()

    def _static_pack(self, command, stdin, rel):
        return Result(0, "H4sIAAAAAAAAA+3BAQ0AAADCoPdPbQ8HAAAAAAAAAAAAAAA=\n")

    def _health_before_traffic(self, command, stdin, rel):
        return Result(0, json.dumps({"code": 200, "body": json.dumps({"release": rel})}) + "\n")

    def _migrations_missing(self, command, stdin, rel):
        return Result(0, json.dumps(self.migrations_answer) + "\n")

    def _migrate_back(self, command, stdin, rel):
        return Result(0, json.dumps({"undone": []}) + "\n")

    def _switch(self, command, stdin, rel):
        if rel not in self.releases:
            return Result(1)
        self.current = rel
        return Result()

    def _hup(self, command, stdin, rel):
        if self.serving is None:
            return Result(1, "ERROR (NOT_RUNNING)\n")
        self.serving = self.current
        return Result(0, f"{self.program}: signalled\n")

    def _restart(self, command, stdin, rel):
        self.serving = self.current
        return Result(0, f"{self.program}: started\n")

    _start = _celery_restart = _restart

    def _probe(self, command, stdin, rel):
        target = self.world.hosts[re.search(r"http://([0-9.]+):", command).group(1)]
        if target.serving is None:
            return Result(7, "\n000", "curl: (7) Failed to connect\n")
        return Result(0, json.dumps({"status": "ok", "release": target.serving}) + "\n200")

    def _remove(self, command, stdin, rel):
        doomed = re.search(r'mv -- (.*?) "\$t"/', command).group(1).split()
        if any(r not in self.releases for r in doomed):
            return Result(1, "", "mv: cannot stat: No such file or directory\n")
        for r in doomed:
            del self.releases[r]
        return Result()

    def _log(self, command, stdin, rel):
        return Result(0, "[2024-06-01 12:00:00 +0000] [42] [ERROR] Exception in worker process\n")


def make_cluster(cfg, world: World, releases: dict[str, Rel], current: str | None,
                 ) -> tuple[Cluster, dict[str, FakeHost], list[str]]:
    """A proxy, an app and a worker node (db node, broker on the worker), each a FakeHost holding
    `releases` with `current`; (cluster, hosts by role, the lines the cluster printed)."""
    layout, out = Layout.of(cfg), []
    hosts = {role: FakeHost(world, NODES[role], layout, releases, current) for role in ("proxy", "app", "worker")}
    members = {role: [Member(NODES[role], host)] for role, host in hosts.items()}
    cl = Cluster(cfg, layout, members["proxy"], members["app"], members["worker"], NODES["db"], NODES["worker"],
                 Progress(quiet=True), out=out.append)
    return cl, hosts, out
