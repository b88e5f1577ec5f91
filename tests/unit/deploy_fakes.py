"""A scripted cluster for the deploy/rollback sequencing tests: one FakeHost per node, no SSH.

A FakeHost answers each remote command by what it is (a distinctive piece of the real builders' output:
see `classify`), keeps its node's state (releases, `current`, the lock, the audit log; on an app node its two
gunicorn slots: the release each links to, whether it runs, its workers, the live one; on a proxy its upstream
file; on a worker the release celery runs) and changes it as the command would, so a re-read of the state
sees the truth. Every host logs (node name, stage) to the World's one log; `fail` makes a stage answer as a
broken one would. Not a test module (no test_ prefix): the test files import it (tests/unit is on sys.path).
"""
from __future__ import annotations

import dataclasses
import json
import re

from fake_commands import NODES, RID, SCRIPTS, WORKERS, Rel, Result, Slot, World, classify, mark, slot_of
from fabfile.deploy.cluster import Cluster, Member
from fabfile.deploy.slots import upstream_text
from fabfile.layout import PREVIOUS_MARK, REQUIREMENTS_MARK, SLOTS, VENV_MARK, Layout, slot_port
from fabfile.nodes import Node
from fabfile.remote import Progress

__all__ = ["NODES", "SCRIPTS", "FakeHost", "Rel", "Result", "World", "classify", "make_cluster"]


class FakeChannel:
    """One session of `fabfile.stream.pipe` on a FakeHost: the command runs once its stdin ends."""

    def __init__(self, host: "FakeHost"):
        self.host, self.command, self.stdin, self.result = host, "", b"", None
        self._out = b""

    def exec_command(self, command: str) -> None:
        self.command = command

    def sendall(self, data: bytes) -> None:
        self.stdin += data

    def shutdown_write(self) -> None:
        self.result = self.host.run(self.command, in_stream=_Text(self.stdin.decode("utf-8", "replace")))
        self._out, self._err = self.result.stdout.encode(), self.result.stderr.encode()

    def recv(self, n: int) -> bytes:
        data, self._out = self._out[:n], self._out[n:]
        return data

    def recv_stderr(self, n: int) -> bytes:
        data, self._err = self._err[:n], self._err[n:]
        return data

    def recv_exit_status(self) -> int:
        return self.result.exited

    def close(self) -> None:
        pass


class _Text:
    def __init__(self, text: str):
        self.text = text

    def read(self) -> str:
        return self.text


class FakeTransport:
    def __init__(self, host: "FakeHost"):
        self.host = host

    def open_session(self) -> FakeChannel:
        return FakeChannel(self.host)

    def is_active(self) -> bool:
        return True


class FakeHost:
    """One node's connection: answers the deploy's commands from (and onto) the node's state."""
    is_connected = True

    def __init__(self, world: World, node: Node, layout: Layout, releases: dict[str, Rel], current: str | None):
        self.world, self.node, self.layout, self.role = world, node, layout, node.role
        self.name, self.host = node.name, node.private_ip
        self.releases = {k: dataclasses.replace(v) for k, v in releases.items()}
        self.current = current
        self.slots = {s: Slot() for s in SLOTS}
        self.live: str | None = None
        if node.role == "app" and current:          # deployed before: slot a serves `current`
            self.slots["a"], self.live = Slot(current, True, WORKERS), "a"
        self.celery = current if node.role == "worker" else None   # the release celery runs (None: down)
        self.upstream = ""                            # a proxy's upstream file
        self.lock: str | None = None
        self.audit: list[str] = []
        self.failures: dict[str, tuple[str | None, str]] = {}
        self.calls: list[tuple[str, str | None, bool]] = []  # (stage, the release it concerns, did it work)
        self.migrations_answer = {"missing": [], "leaves": {}}
        self.pip_output = ""    # what `pip install` prints here
        self.expire: str | None = None   # a slot whose keep_warm timer stops it just after the next state read
        self.static = {"static/app.css": "a" * 40}   # the static files of its releases (path -> sha1)
        self.static_reused = False        # app node 0: the new release's static inputs are its current release's
        self.pending_migrations: list | None = None   # what the facts say the database lacks (None: not asked)
        self.transport = FakeTransport(self)
        world.hosts[self.host] = self

    def fail(self, stage: str, release: str | None = None, message: str | None = None) -> None:
        """Make `stage` fail here (only for `release`, when given): exit 1 with a message; a boot answers 500;
        for "probe" (whose target is this node) a 500 to any probe, for "gate" only to a proxy whose upstream
        already sends requests to the probed slot (the gate after the switch, not the check before it)."""
        self.failures[stage] = (release, message or f"{stage} broke on {self.name}")

    def warm(self, slot: str, release: str, workers: int = 1, cold_at: int = 1717000000) -> None:
        """Slot `slot` kept warm on `release` since a drain (it had WORKERS workers)."""
        self.slots[slot] = Slot(release, True, workers, WORKERS, cold_at)

    @property
    def serving(self) -> str | None:
        """What runs: celery's release on a worker; on an app node, the release the proxies' upstream reaches."""
        if self.role != "app":
            return self.celery
        for proxy in (h for h in self.world.hosts.values() if h.role == "proxy"):
            for name, _, release in self.world.reached(proxy.upstream):
                if name == self.name:
                    return release
        return None

    def close(self) -> None:
        pass

    def run(self, command: str, **kw) -> Result:
        stdin = kw["in_stream"].read() if kw.get("in_stream") else None
        stages = classify(command, stdin, self.layout)
        if not stages:
            self.world.unclassified.append(command)
            raise AssertionError(f"{self.name}: unclassified command: {command[:400]}")
        out, err = "", ""
        for stage in stages:
            result = self._one(stage, command, stdin)
            out, err = out + result.stdout, err + result.stderr
            if result.exited != 0 or result.halt:
                break
        result = Result(result.exited, out, err)
        if not kw.get("hide", True):   # streamed (remote.run's on_line): invoke echoes what it does not hide
            kw["out_stream"].write(result.stdout)
            kw["err_stream"].write(result.stderr)
        return result

    def _one(self, stage: str, command: str, stdin: str | None) -> Result:
        found = RID.search(command)
        rel = found.group(0) if found else self.current
        failing, concerned = self.failures.get(stage), rel
        if stage == "probe":
            target, port = re.search(r"http://([0-9.]+):([0-9]+)/", command).groups()
            target, slot = self.world.hosts[target], SLOTS[int(port) - slot_port(SLOTS[0])]
            concerned = target.slots[slot].release if target.slots[slot].running else None
            live = (target.name, slot, concerned) in self.world.reached(self.upstream)
            failing = target.failures.get("probe") or (target.failures.get("gate") if live else None)
        elif stage in ("drain", "stop slot", "warm up"):
            concerned = self.slots[slot_of(command)].release
        self.world.add(self.name, stage)
        broken = failing is not None and failing[0] in (None, concerned)
        if broken:
            result = self._failure(stage, failing[1], concerned, command)
        else:
            result = getattr(self, "_" + re.sub(r"\W+", "_", stage).strip("_"))(command, stdin, rel)
        self.calls.append((stage, concerned, not broken and result.exited == 0))
        return result

    def _failure(self, stage: str, message: str, release: str | None, command: str) -> Result:
        if stage == "probe":
            return Result(0, json.dumps({"error": message, "release": release}) + "\n500 ")
        if stage == "boot":            # the slot started, but its health path answers 500
            self.slots[slot_of(command)] = Slot(release, True, WORKERS)
            return Result(1, json.dumps({"error": message}) + "\n@@ 500 RUNNING \n")
        return Result(1, "", f"E: {message}\n")

    # --- what each stage does on the node, and what it prints ---------------------------------------

    def _state(self, command, stdin, rel):
        lines = ["layout=ok", "current=" + (f"releases/{self.current}" if self.current else ""),
                 f"live={self.live or ''}"]
        lines += [f"slot={s} {self.layout.release(x.release) if x.release else '-'} {x.cold_at or '-'}"
                  for s, x in self.slots.items()]
        lines += [f"release={rid} {r.sha} {r.req} {r.venv} - {r.previous}" for rid, r in sorted(self.releases.items())]
        if "/migrations/" in command:
            lines += [f"migration={rid} {path}" for rid, r in sorted(self.releases.items()) for path in r.migrations]
        if "getProcessInfo" in command:
            lines += self._programs()
        if self.expire:
            self.slots[self.expire].running, self.expire = False, None
        return Result(0, "\n".join(lines) + "\n")

    def _programs(self) -> list[str]:
        if self.role == "worker":
            program = self.layout.worker_program
            return [f"program={program} RUNNING 4343 {self.layout.release(self.celery)} "
                    f"{self.layout.current}/.venv/bin/python" if self.celery else f"program={program} FATAL 0 - -"]
        if self.role != "app":
            return []
        return [f"program={self.layout.slot_program(s)} RUNNING {4240 + i} {self.layout.release(x.release)} "
                f"{self.layout.slot(s)}/.venv/bin/python" if x.running else
                f"program={self.layout.slot_program(s)} STOPPED 0 - -" for i, (s, x) in enumerate(self.slots.items())]

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
        self.releases[rel] = Rel(mark(command, "REVISION"), previous=mark(command, PREVIOUS_MARK) or "-")
        return Result()

    _static_unpack = _extract

    def _env(self, command, stdin, rel):
        return Result(0, "changed\n")

    def _release_files(self, command, stdin, rel):
        return Result()

    def _django_facts(self, command, stdin, rel):
        db = NODES["db"].private_ip         # the fakes' clusters keep their db node at this address
        facts = {"settings": "whipup_settings", "has_static": True, "static_root": "x",
                 "database": {"engine": "django.db.backends.postgresql", "host": db}}
        if self.pending_migrations is not None and "--migrations" in command:
            facts["migrations"] = {"pending": self.pending_migrations, "unmigrated": []}
        return Result(0, json.dumps(facts) + "\n")

    def _count_static(self, command, stdin, rel):
        return Result(0, "12\n")

    def _venv_reuse(self, command, stdin, rel):
        old = self.releases[re.search(r"cp -al \S+/releases/(" + RID.pattern + ")/", command).group(1)]
        self.releases[rel].req, self.releases[rel].venv = old.req, old.venv
        return Result()

    def _pip_install(self, command, stdin, rel):
        self.releases[rel].req = mark(command, f".venv/{REQUIREMENTS_MARK}")
        self.releases[rel].venv = mark(command, f".venv/{VENV_MARK}")
        return Result(0, self.pip_output)

    def _collectstatic(self, command, stdin, rel):
        return Result(0, "12 static files copied to 'static'.\n")

    def _migrate(self, command, stdin, rel):
        return Result(0, "Operations to perform:\n  Apply all migrations: notes\nRunning migrations:\n"
                         "  No migrations to apply.\n")

    def _migrate_check(self, command, stdin, rel):
        return Result()

    def _static_key(self, command, stdin, rel):
        return Result(0, f"key={'0' * 32}-{'1' * 40}\n" + ("reused 12\n" if self.static_reused else "collect\n"))

    def _static_sums(self, command, stdin, rel):
        return Result(0, "".join(f"{h}  {p}\n" for p, h in sorted(self.static.items())))

    _proxy_sums = _static_sums

    def _static_prepare(self, command, stdin, rel):
        return Result()

    def _static_pack(self, command, stdin, rel):
        return Result(0, "tar of " + " ".join(stdin.split()) + "\n")

    def _wheelhouse_size(self, command, stdin, rel):
        return Result(0, "2048 12\n")

    def _wheelhouse_pack(self, command, stdin, rel):
        return Result(0, "tar of the wheelhouse\n")

    def _wheelhouse_unpack(self, command, stdin, rel):
        return Result(0, "2048\n")

    def _wheelhouse_remove(self, command, stdin, rel):
        return Result()

    def _migrations_missing(self, command, stdin, rel):
        return Result(0, json.dumps(self.migrations_answer) + "\n")

    def _migrate_back(self, command, stdin, rel):
        return Result(0, json.dumps({"undone": []}) + "\n")

    def _switch(self, command, stdin, rel):
        if rel not in self.releases:
            return Result(1)
        self.current = rel
        return Result()

    def _boot(self, command, stdin, rel):
        """slots/<s> -> the release, its gunicorn started and asked for /health until it answers."""
        if rel not in self.releases:
            return Result(1, "\n@@ 000 FATAL \n", "can't chdir\n")
        self.slots[slot_of(command)] = Slot(rel, True, WORKERS)
        return Result(0, json.dumps({"status": "ok", "release": rel}) + "\n@@ 200 RUNNING \n")

    def _stop_slot(self, command, stdin, rel):
        self.slots[slot_of(command)].running = False
        return Result()

    def _go_live(self, command, stdin, rel):
        self.live = re.search(r"ln -sfn ([ab]) \S+/slots/live\.tmp", command).group(1)
        return Result()

    def _upstream(self, command, stdin, rel):
        if stdin == self.upstream:
            return Result(0, "unchanged\n")
        self.upstream = stdin
        return Result(0, "reloaded\n")

    def _drain(self, command, stdin, rel):
        s = self.slots[slot_of(command)]
        if not s.running:
            return Result(0, "not running\n")
        if "echo stopped" in command:
            s.running = False
            return Result(0, "stopped\n")
        keep = int(re.search(r'while \[ "\$have" -gt ([0-9]+) \]', command).group(1))
        s.kept = s.workers if s.kept is None else s.kept
        s.workers = min(s.workers, keep)
        s.cold_at = int(re.search(r"echo ([0-9]+) > \S+\.cold-at", command).group(1))
        return Result(0, f"warm with {s.workers} worker(s) for 30 min\n")

    def _warm_up(self, command, stdin, rel):
        s = self.slots[slot_of(command)]
        if not s.running:
            return Result(0, "cold\n", halt=True)      # warm_and_go_live switches nothing then
        s.workers, s.kept, s.cold_at = max(s.workers, s.kept or 0), None, None
        return Result(0, f"warm {s.workers}\n")

    def _celery_restart(self, command, stdin, rel):
        self.celery = self.current
        return Result(0, f"{self.layout.worker_program}: started\n")

    def _probe(self, command, stdin, rel):
        target, port = re.search(r"http://([0-9.]+):([0-9]+)/", command).groups()
        s = self.world.hosts[target].slots[SLOTS[int(port) - slot_port(SLOTS[0])]]
        if not s.running:
            return Result(7, "\n000 ", "curl: (7) Failed to connect\n")
        return Result(0, json.dumps({"status": "ok", "release": s.release}) + "\n200 ")

    def _remove(self, command, stdin, rel):
        doomed = re.search(r'mv -- (.*?) "\$t"/', command).group(1).split()
        if any(r not in self.releases for r in doomed):
            return Result(1, "", "mv: cannot stat: No such file or directory\n")
        for r in doomed:
            del self.releases[r]
        return Result()

    def _log(self, command, stdin, rel):
        return Result(0, "[2024-06-01 12:00:00 +0000] [42] [ERROR] Exception in worker process\n")


def make_cluster(cfg, world: World, releases: dict[str, Rel], current: str | None, warm: str | None = None,
                 ) -> tuple[Cluster, dict[str, FakeHost], list[str]]:
    """A proxy, an app and a worker node (db node, broker on the worker), each a FakeHost holding
    `releases` with `current`; the app node serves `current` in slot a (in slot b, with slot a kept warm on
    `warm`, when given), the proxy's upstream sends requests there. (cluster, hosts by role, what it printed)"""
    layout, out = Layout.of(cfg), []
    hosts = {role: FakeHost(world, NODES[role], layout, releases, current) for role in ("proxy", "app", "worker")}
    app = hosts["app"]
    if warm is not None:
        app.slots["b"], app.live = app.slots["a"], "b"
        app.warm("a", warm)
    if app.live:
        hosts["proxy"].upstream = upstream_text([(app.name, app.host, slot_port(app.live))])
    members = {role: [Member(NODES[role], host)] for role, host in hosts.items()}
    cl = Cluster(cfg, layout, members["proxy"], members["app"], members["worker"], NODES["db"], NODES["worker"],
                 Progress(quiet=True), out=out.append)
    return cl, hosts, out
