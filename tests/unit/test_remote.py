import threading

import pytest

from fabfile.nodes import Node
from fabfile.remote import HostFailures, Progress, on_hosts, raise_failures, run, sudo, sudo_sh


def node(name):
    return Node("app", 0, name, "i-" + name, "running", "10.0.0.1", None, None)


def test_sudo_quotes_every_word():
    assert sudo(["touch", "x; whoami"]) == "sudo -n -- touch 'x; whoami'"
    assert sudo(["id"], user="demo") == "sudo -n -u demo -- id"
    assert sudo_sh("echo a && echo b") == "sudo -n -- sh -c 'echo a && echo b'"


def test_on_hosts_collects_each_failure_without_hiding_others():
    seen = []
    lock = threading.Lock()

    def fn(n):
        with lock:
            seen.append(n.name)
        if n.name == "b":
            raise RuntimeError("disk full")
        return n.name.upper()

    out = on_hosts([node("a"), node("b"), node("c")], fn)
    assert sorted(seen) == ["a", "b", "c"]
    assert [(o.node.name, o.ok, o.value, o.error) for o in out] == [
        ("a", True, "A", None), ("b", False, None, "disk full"), ("c", True, "C", None)]
    with pytest.raises(HostFailures) as exc:
        raise_failures("configure", out)
    assert str(exc.value) == "configure failed on 1 host(s):\n  b: disk full"


class FakeResult:
    def __init__(self, exited, stdout="", stderr=""):
        self.exited, self.stdout, self.stderr = exited, stdout, stderr


class FakeConn:
    host = "10.0.0.9"

    def __init__(self, exited=0):
        self.exited = exited
        self.calls = []

    def run(self, command, **kw):
        stdin = kw["in_stream"]
        self.calls.append((command, stdin.read() if stdin else None))
        return FakeResult(self.exited, "out\n", "boom\n")


def test_run_sends_secrets_on_stdin_and_names_the_step():
    conn = FakeConn()
    run(conn, "sudo -n -- tee /x", step="write secret", stdin="s3cret")
    assert conn.calls == [("sudo -n -- tee /x", "s3cret")]
    bad = FakeConn(exited=2)
    with pytest.raises(Exception) as exc:
        run(bad, "false", step="migrate")
    assert str(exc.value) == "10.0.0.9: migrate failed (exit 2):\nout\nboom"


def test_run_hands_stdin_over_in_one_read():
    """invoke asks for 1 byte per 10 ms loop from a non-terminal stream: 1 kB must not take 10 s."""
    conn = FakeConn()
    conn.run = lambda command, **kw: (conn.calls.append(kw["in_stream"].read(1)), FakeResult(0))[1]
    run(conn, "cat", step="big", stdin="x" * 5000)
    run(conn, "cat", step="bytes", stdin=b"KEY=value\n")
    assert conn.calls == ["x" * 5000, "KEY=value\n"]


def test_progress_lines(capsys):
    p = Progress()
    p("app-0", "packages", "3 to install")
    assert capsys.readouterr().out == "[app-0] packages: 3 to install\n"
