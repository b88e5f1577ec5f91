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
    assert [(o.node.name, o.ok, o.value, o.message) for o in out] == [
        ("a", True, "A", ""), ("b", False, None, "disk full"), ("c", True, "C", "")]
    assert isinstance(out[1].error, RuntimeError)     # the exception object itself, as GroupResult keeps it
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


class FakeTransport:
    def __init__(self, active):
        self.active = active

    def is_active(self):
        return self.active


def test_a_connection_lost_during_a_command_names_the_host_and_step_whatever_check_says():
    from fabfile.remote import ConnectionLost, RemoteError

    cut = FakeConn()
    cut.run = lambda command, **kw: (_ for _ in ()).throw(EOFError())
    with pytest.raises(ConnectionLost) as exc:
        run(cut, "pip install -r requirements.txt", step="pip install", check=False)
    assert isinstance(exc.value, RemoteError) and exc.value.host == "10.0.0.9" and exc.value.step == "pip install"
    assert str(exc.value) == ("10.0.0.9: pip install: the SSH connection was lost (EOFError); what the command "
                              "did on the host is unknown")
    down = FakeConn()
    down.is_connected = False
    down.run = lambda command, **kw: (_ for _ in ()).throw(TimeoutError("timed out"))
    with pytest.raises(ConnectionLost) as exc:
        run(down, "true", step="facts")
    assert str(exc.value) == "10.0.0.9: facts: could not connect over SSH (TimeoutError: timed out)"
    # the channel closed with no exit status (paramiko's -1) because the transport died
    gone = FakeConn(exited=-1)
    gone.transport = FakeTransport(active=False)
    with pytest.raises(ConnectionLost, match="closed before the command's exit status came"):
        run(gone, "true", step="migrate", check=False)


def test_no_exit_status_on_a_live_connection_is_the_command_s_own_failure():
    """A command killed by a signal sends no exit status either; the connection is fine."""
    killed = FakeConn(exited=-1)
    killed.transport = FakeTransport(active=True)
    assert run(killed, "sleep 9", step="wait", check=False).exited == -1
    with pytest.raises(Exception) as exc:
        run(killed, "sleep 9", step="wait")
    assert str(exc.value).startswith("10.0.0.9: wait failed (exit -1)")


def test_commands_over_one_connection_stay_under_sshds_session_limit():
    from fabfile.remote import CHANNELS_PER_CONNECTION

    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    class SlowConn(FakeConn):
        def run(self, command, **kw):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            threading.Event().wait(0.02)
            with lock:
                state["now"] -= 1
            return FakeResult(0)

    conn = SlowConn()
    out = on_hosts([node(str(i)) for i in range(20)], lambda n: run(conn, "true", step="health"))
    assert all(o.ok for o in out)
    assert state["peak"] == CHANNELS_PER_CONNECTION < 10


def test_a_session_the_host_refuses_is_asked_for_again_and_runs_once(monkeypatch):
    from paramiko import ChannelException

    from fabfile import remote

    monkeypatch.setattr(remote, "SESSION_RETRY_WAITS", (0.01, 0.01, 0.01))

    class BusyConn(FakeConn):
        def __init__(self, refusals):
            super().__init__()
            self.refusals = refusals

        def run(self, command, **kw):
            if self.refusals:
                self.refusals -= 1
                raise ChannelException(2, "Connect failed")     # sshd at MaxSessions
            return super().run(command, **kw)

    conn = BusyConn(refusals=2)
    assert run(conn, "cat > /x", step="write", stdin="data").exited == 0
    assert conn.calls == [("cat > /x", "data")]                  # stdin whole, on the one run
    with pytest.raises(remote.RemoteError, match=r"10.0.0.9: health failed:\nthe host refused a new SSH session "
                                                 r"4 times \(ChannelException"):
        run(BusyConn(refusals=9), "true", step="health")


def test_threads_whose_first_commands_meet_on_an_unopened_connection_open_it_once():
    """fabric opens a connection in its first command; two threads doing so at once both authenticated on
    one transport, and one timed out (the nightly job's two files, installed at once)."""
    import threading
    import time as _time
    from types import SimpleNamespace

    from fabfile import remote

    class Lazy:
        host = "10.0.0.9"

        def __init__(self):
            self.is_connected, self.opens, self.ran = False, 0, []

        def open(self):
            self.opens += 1
            _time.sleep(0.05)              # the handshake: long enough for the other thread to arrive
            self.is_connected = True

        def run(self, command, **kw):          # as fabric's: opens the connection when it is not open
            if not self.is_connected:
                self.open()
            self.ran.append(command)
            return SimpleNamespace(exited=0, stdout="", stderr="")

    conn = Lazy()
    threads = [threading.Thread(target=remote.run, args=(conn, f"true {i}"), kwargs={"step": "s"}) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert conn.opens == 1 and sorted(conn.ran) == [f"true {i}" for i in range(4)]


def test_a_fabric_connection_gets_its_open_lock_and_channel_slots_as_attributes_of_its_own():
    """fabric's Connection turns unknown attributes into config entries (copied, and a lock cannot be)."""
    from fabric import Connection

    from fabfile import remote

    conn = Connection("10.0.0.9", user="admin")
    conn.is_connected                                   # a real fabric attribute: False, nothing opened
    assert remote.channel_slot(conn) is remote.channel_slot(conn)
    opened = []
    object.__setattr__(conn, "open", lambda: opened.append(1))
    remote.opened(conn)
    assert opened == [1] and isinstance(conn.__dict__["_whipup_open_lock"], type(threading.Lock()))
