"""fab manage / logs / ssh as tasks, on fake nodes and connections: exit status, terminal, stdin, prefixing."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fabric import Config as FabConfig
from fabric.main import Fab
from invoke import Collection, Config, Context, Exit, task

from fabfile.console import build, streams, tasks
from fabfile.console.executor import Executor, remainder, takes_remainder
from fabfile.nodes import Node

ROOT = Path(__file__).resolve().parents[2]
RID = "20240101120000-abcdef1"


def node(role: str, index: int = 0, state: str = "running") -> Node:
    return Node(role, index, f"c-{role}-{index}", f"i-{role}{index}", state, f"10.0.0.{index + 1}", None, None)


class Result:
    def __init__(self, exited=0, stdout="", stderr=""):
        self.exited, self.stdout, self.stderr = exited, stdout, stderr


class FakeConn:
    """Answers the state command with `current`; records every other command and how it was run."""

    def __init__(self, current: str | None, exited: int = 0):
        self.current, self.exited, self.runs, self.host, self.closed = current, exited, [], "10.0.0.1", False

    def run(self, command, **kw):
        if "echo layout=ok" in command:
            cur = f"releases/{self.current}" if self.current else ""
            text = f"layout=ok\ncurrent={cur}\n" + (f"release={self.current} - - - - - -\n" if self.current else "")
            return Result(0, text)
        self.runs.append((command, kw))
        if "in_stream" in kw and hasattr(kw["in_stream"], "read") and not isinstance(kw["in_stream"], io.IOBase):
            kw["stdin_sent"] = kw["in_stream"].read()
        return Result(self.exited)

    def close(self):
        self.closed = True


@pytest.fixture
def cluster(monkeypatch):
    """Fake nodes and connections for the tasks: {'nodes': [...], 'conn': FakeConn}."""
    world = {"nodes": [node("proxy"), node("app"), node("db")], "conn": FakeConn(RID)}
    monkeypatch.setattr(tasks, "_nodes", lambda cfg: world["nodes"])
    monkeypatch.setattr(tasks, "connect", lambda cfg, n: world["conn"])
    return world


def ctx(*words: str) -> Context:
    return Context(Config(overrides={"whipup": {"remainder": list(words)}}))


class Stdin(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__("")
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("exited", [0, 1, 7])
def test_manage_passes_the_remote_exit_status_through(cluster, roles_file, monkeypatch, exited):
    monkeypatch.setattr(sys, "stdin", Stdin(False))
    cluster["conn"].exited = exited
    if exited == 0:
        tasks.manage(ctx("check"), config=str(roles_file))
    else:
        with pytest.raises(Exit) as info:
            tasks.manage(ctx("check"), config=str(roles_file))
        assert info.value.code == exited and not info.value.message
    (command, kw), = cluster["conn"].runs
    assert f"whipup-exec /srv/demo/releases/{RID} python -m django" in command and command.endswith("django check'")
    assert kw["pty"] is False and kw["warn"] is True and kw["hide"] is False


def test_manage_has_a_terminal_when_stdin_is_one(cluster, roles_file, monkeypatch):
    stdin = Stdin(True)
    monkeypatch.setattr(sys, "stdin", stdin)
    tasks.manage(ctx("createsuperuser"), config=str(roles_file))
    (_, kw), = cluster["conn"].runs
    assert kw["pty"] is True and kw["in_stream"] is stdin


def test_manage_forwards_env_values_on_stdin_never_on_the_command_line(cluster, roles_file, monkeypatch):
    monkeypatch.setattr(sys, "stdin", Stdin(True))
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret; whoami")
    tasks.manage(ctx("createsuperuser", "--noinput"), config=str(roles_file), env=["DJANGO_SUPERUSER_PASSWORD"])
    (command, kw), = cluster["conn"].runs
    assert "s3cret" not in command
    assert "IFS= read -r DJANGO_SUPERUSER_PASSWORD" in command
    assert kw["pty"] is False                        # a terminal would echo the value
    assert kw["stdin_sent"] == "s3cret; whoami\n"
    assert kw["in_stream"].read() == ""              # stdin is a terminal: the values are all it gets


def test_manage_before_any_deploy_says_so(cluster, roles_file, monkeypatch):
    cluster["conn"] = FakeConn(None)
    with pytest.raises(Exit) as info:
        tasks.manage(ctx("check"), config=str(roles_file))
    assert info.value.code == 1
    assert info.value.message == "c-app-0 has no current release: nothing deployed yet (run fab deploy first)"
    assert cluster["conn"].runs == [] and cluster["conn"].closed


def test_manage_needs_a_command_and_runs_on_worker_0_without_app_nodes(cluster, roles_file, monkeypatch):
    with pytest.raises(Exit, match="give the command after `--`"):
        tasks.manage(ctx(), config=str(roles_file))
    monkeypatch.setattr(sys, "stdin", Stdin(False))
    cluster["nodes"] = [node("worker", 1), node("worker", 0)]
    seen = []
    monkeypatch.setattr(tasks, "connect", lambda cfg, n: seen.append(n.name) or cluster["conn"])
    tasks.manage(ctx("check"), config=str(roles_file))
    assert seen == ["c-worker-0"]


def test_ssh_execs_the_system_ssh_with_the_pinned_options(cluster, roles_file, monkeypatch):
    from fabfile.config import load_config
    from fabfile.state import known_hosts_path

    cfg = load_config(roles_file)
    known_hosts_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    known_hosts_path(cfg).write_text("")
    monkeypatch.setattr(tasks, "check_sandbox_route", lambda address: None)
    execs = []
    monkeypatch.setattr(os, "execvp", lambda file, argv: execs.append(argv))
    tasks.ssh(ctx("echo", "x; whoami"), "app", config=str(roles_file))
    argv, = execs
    assert argv[:3] == ["ssh", "-F", "/dev/null"]
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={known_hosts_path(cfg)}" in argv
    assert argv[-3:] == ["--", "admin@10.0.0.1", "echo 'x; whoami'"]
    with pytest.raises(Exit, match="app has no node 2: its nodes are c-app-0"):
        tasks.ssh(ctx(), "app", n="2", config=str(roles_file))


# --- streams ---------------------------------------------------------------------------------

def test_prefixer_writes_whole_lines_only_and_the_last_at_close():
    sink = io.StringIO()
    out = streams.Prefixer("n1", sink, threading.Lock())
    out.write("one\ntw")
    assert sink.getvalue() == "[n1] one\n"
    out.write("o\r\nthr")
    out.close()
    assert sink.getvalue() == "[n1] one\n[n1] two\n[n1] thr\n"


def test_follow_all_prefixes_each_node_and_a_failing_node_does_not_stop_the_others():
    sink, errors, stop = io.StringIO(), io.StringIO(), threading.Event()
    release = threading.Event()

    def good(out):
        out.write("a\n")
        release.wait(5)
        out.write("b\n")

    def bad(out):
        out.write("partial")
        release.set()
        raise RuntimeError("connection refused")

    failed = streams.follow_all([("n1", good), ("n2", bad)], sink, errors, stop)
    assert set(failed) == {"n2"}
    assert sorted(sink.getvalue().splitlines()) == ["[n1] a", "[n1] b", "[n2] partial"]
    assert errors.getvalue() == "[n2] error: connection refused\n"


def test_stdin_feed_values_first_then_the_pipe_then_eof():
    r, w = os.pipe()
    feed = streams.StdinFeed("v\n", r, wait=0.01)
    assert feed.read(1) == "v\n"
    assert feed.read(1) is None                      # nothing yet: invoke asks again
    os.write(w, "é and more".encode()[:1])           # half a character: still nothing to send
    assert feed.read(1) is None
    os.write(w, "é and more".encode()[1:])
    assert feed.read(1) == "é and more"
    os.close(w)
    assert feed.read(1) == ""
    os.close(r)
    assert streams.StdinFeed("", None).read() == ""


# --- the words after `--` ---------------------------------------------------------------------

def test_the_executor_hands_the_words_after_dashes_to_a_task_that_takes_them(monkeypatch, capsys):
    got = []

    @task
    def t(c):
        got.append(remainder(c))

    ns = Collection(takes_remainder(t), task(lambda c: None, name="other"))
    program = Fab(name="Fabric", version="3", namespace=ns, executor_class=Executor, config_class=FabConfig)
    argv = ["fab", "t", "--", "shell", "-c", "print(1); print(2)"]
    monkeypatch.setattr(sys, "argv", argv)
    program.run(argv, exit=False)
    assert got == [["shell", "-c", "print(1); print(2)"]]
    capsys.readouterr()
    program.run(["fab", "other", "--", "x"], exit=False)       # exit=False: the Exit is printed, not raised
    assert capsys.readouterr().err.startswith("fab other: takes no words after `--`")
    assert got == [["shell", "-c", "print(1); print(2)"]]


def test_fab_reads_the_executor_from_fabric_yaml():
    """fab itself (not a hand-made Program): fabric would say 'not given any hosts' without it."""
    p = subprocess.run([sys.executable, "-m", "fabric", "releases", "--config", "/nonexistent", "--", "x"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "fab releases: takes no words after `--`" in p.stderr


# --- fab logs --------------------------------------------------------------------------------

class TailConn(FakeConn):
    def __init__(self, stdout: str = "", exited: int = 0, stderr: str = ""):
        super().__init__(RID)
        self.out, self.err, self.code = stdout, stderr, exited

    def run(self, command, **kw):
        self.runs.append(command)
        return Result(self.code, self.out, self.err)


def test_logs_prefix_every_line_by_node_and_a_failed_node_is_named(roles_file, monkeypatch, capsys):
    nodes = [node("proxy"), node("app"), node("worker"), node("app", 1, "stopped"), node("db")]
    conns = {"c-proxy-0": TailConn("==> /var/log/nginx/access.log <==\nGET /\n"), "c-app-0": TailConn("boot\nok\n"),
             "c-worker-0": TailConn("", 1, "tail: cannot open '/var/log/demo/worker.log'\n")}
    monkeypatch.setattr(tasks, "_nodes", lambda cfg: nodes)
    monkeypatch.setattr(tasks, "connect", lambda cfg, n: conns[n.name])
    with pytest.raises(Exit) as info:
        tasks.logs(Context(), lines="5", config=str(roles_file))
    assert info.value.message == "logs: no logs from c-worker-0, c-app-1"
    out, err = capsys.readouterr()
    assert out.splitlines() == ["[c-proxy-0] ==> /var/log/nginx/access.log <==", "[c-proxy-0] GET /",
                                "[c-app-0] boot", "[c-app-0] ok"]
    assert err.splitlines() == ["[c-app-1] error: stopped, not running",
                                "[c-worker-0] tail: cannot open '/var/log/demo/worker.log'"]
    assert conns["c-app-0"].runs == [build.logs_command(("/var/log/demo/web-a.log", "/var/log/demo/web-b.log"), 5,
                                                        False)]
    assert conns["c-proxy-0"].runs == [build.logs_command(("/var/log/nginx/access.log", "/var/log/nginx/error.log"),
                                                          5, False)]
    assert conns["c-worker-0"].runs == ["sudo -n -- tail -n 5 -- /var/log/demo/worker.log"]


def test_logs_of_one_program(roles_file, monkeypatch, capsys):
    conns = {"c-worker-0": TailConn("task done\n")}
    monkeypatch.setattr(tasks, "_nodes", lambda cfg: [node("proxy"), node("app"), node("worker")])
    monkeypatch.setattr(tasks, "connect", lambda cfg, n: conns[n.name])
    tasks.logs(Context(), program="worker", config=str(roles_file))
    assert capsys.readouterr().out == "[c-worker-0] task done\n"
    with pytest.raises(Exit, match="--lines: expected a count between 0 and 100000"):
        tasks.logs(Context(), lines="-1", config=str(roles_file))
