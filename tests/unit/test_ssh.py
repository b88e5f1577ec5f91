"""Pinned SSH against a real (paramiko) server on loopback: our host key, our user key, nothing else."""
from __future__ import annotations

import io
import socket
import threading

import paramiko
import pytest

from fabfile.errors import ProvisionError
from fabfile.nodes import Node
from fabfile.provision.keys import ensure_host_key, ensure_identity, generate_ed25519, known_hosts_line
from fabfile.provision.ready import wait_for_ssh
from fabfile.ssh import QuickAckSocket, connect, session_socket
from fabfile.state import identity_paths, known_hosts_path, write_public

NODE = Node(role="app", index=0, name="whipup-demo-app-0", instance_id="i-0123", state="running",
            private_ip="127.0.0.1", public_ip=None, security_group="sg-1")


class _Server(paramiko.ServerInterface):
    def __init__(self, user: str, authorized: str, seen: list):
        self.user, self.authorized, self.seen = user, authorized, seen

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if username == self.user and key.get_base64() == self.authorized:
            self.seen.append(("auth", username))
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        self.seen.append(("exec", command.decode()))

        def reply():  # EOF, not close: a close could overtake the exec request's success reply
            channel.sendall(b"ok\n")
            channel.send_exit_status(0)
            channel.shutdown_write()

        threading.Thread(target=reply, daemon=True).start()
        return True


@pytest.fixture
def sshd():
    """start(host_key_text, user, authorized_b64) -> (port, seen): an SSH server on 127.0.0.1."""
    sockets, transports, threads = [], [], []
    stop = threading.Event()

    def start(host_private: str, user: str, authorized: str):
        host_key = paramiko.Ed25519Key.from_private_key(io.StringIO(host_private))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.05)      # accept() wakes up to see `stop`: the thread ends before the socket
        sockets.append(listener)       # closes (else its number, reused by the next test's listener, could
        seen: list = []                # be accepted on with this test's host key)

        def serve():
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                transport = paramiko.Transport(client)
                transports.append(transport)
                transport.add_server_key(host_key)
                try:
                    transport.start_server(server=_Server(user, authorized, seen))
                except (paramiko.SSHException, EOFError, OSError):   # a client that hung up mid-handshake
                    continue

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return listener.getsockname()[1], seen

    yield start
    stop.set()
    for t in threads:
        t.join(5)
    for s in sockets:
        s.close()
    for t in transports:
        t.close()


def _pin(cfg, port: int, public_line: str) -> None:
    write_public(known_hosts_path(cfg), known_hosts_line(NODE.private_ip, public_line, port) + "\n")


def _server_for(cfg, sshd):
    user_public = ensure_identity(cfg)
    host = ensure_host_key(cfg, NODE.name)
    port, seen = sshd(host.private, cfg.cluster.ssh.user, user_public.split()[1])
    return port, seen, host


def test_connect_runs_commands_as_the_ssh_user_with_the_pinned_key(cfg, sshd):
    port, seen, host = _server_for(cfg, sshd)
    _pin(cfg, port, host.public)
    with connect(cfg, NODE, port=port) as conn:
        result = conn.run("echo hi", hide=True, in_stream=False)
    assert result.stdout == "ok\n"
    assert seen == [("auth", "admin"), ("exec", "echo hi")]


def test_connections_turn_nagle_off_on_every_open(cfg, sshd):
    # with Nagle on, each command's request waits for the host's delayed ACK: ~40 ms a command on Linux
    port, seen, host = _server_for(cfg, sshd)
    _pin(cfg, port, host.public)
    conn = connect(cfg, NODE, port=port)
    for _ in range(2):                          # a reopen (after a lost connection) gets a fresh socket
        conn.open()
        sock = conn.transport.sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert "sock" not in conn.connect_kwargs    # not kept for the next open: that socket is spent
        conn.close()
    assert sock.fileno() == -1


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
def test_connections_acknowledge_what_they_read_at_once(cfg, sshd, monkeypatch):
    # sshd answers the first session's open with Nagle on, behind its host keys that paramiko never answers:
    # with Linux's delayed ACK the answer waits 40 ms for ours, so ours goes with every read
    port, seen, host = _server_for(cfg, sshd)
    _pin(cfg, port, host.public)
    acks = []
    setsockopt = QuickAckSocket.setsockopt
    monkeypatch.setattr(QuickAckSocket, "setsockopt", lambda self, level, name, value: (
        acks.append(name == socket.TCP_QUICKACK and value), setsockopt(self, level, name, value)))
    with connect(cfg, NODE, port=port) as conn:
        conn.open()
        logged_in = len(acks)
        assert conn.run("echo hi", hide=True, in_stream=False).stdout == "ok\n"
        assert isinstance(conn.transport.sock, QuickAckSocket)
        assert conn.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert logged_in > 3 and len(acks) > logged_in and all(a == 1 for a in acks)


def test_the_session_socket_keeps_the_descriptor_and_timeout():
    with socket.create_server(("127.0.0.1", 0)) as server:
        plain = socket.create_connection(server.getsockname(), timeout=7)
        fd = plain.fileno()
        peer, _ = server.accept()
        with peer, session_socket(plain) as sock:
            assert sock.fileno() == fd and sock.gettimeout() == 7 and plain.fileno() == -1
            peer.sendall(b"x; whoami")
            assert sock.recv(64) == b"x; whoami"


def test_unpinned_host_key_is_refused(cfg, sshd):
    port, seen, _ = _server_for(cfg, sshd)
    _pin(cfg, port, generate_ed25519("impostor").public)
    before = known_hosts_path(cfg).read_text()
    conn = connect(cfg, NODE, port=port)
    with pytest.raises(paramiko.BadHostKeyException):
        conn.open()
    conn.close()
    assert seen == []
    assert known_hosts_path(cfg).read_text() == before


def test_host_missing_from_known_hosts_is_refused_not_trusted(cfg, sshd):
    port, seen, _ = _server_for(cfg, sshd)
    write_public(known_hosts_path(cfg), "")
    conn = connect(cfg, NODE, port=port)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        conn.open()
    conn.close()
    assert seen == [] and known_hosts_path(cfg).read_text() == ""


def test_connect_ignores_the_users_ssh_config_agent_and_keys(cfg, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  User evil\n  Port 2222\n  IdentityFile ~/.ssh/evil\n")
    monkeypatch.setenv("HOME", str(home))
    ensure_identity(cfg)
    write_public(known_hosts_path(cfg), "")
    conn = connect(cfg, NODE)
    assert (conn.host, conn.user, conn.port) == ("127.0.0.1", "admin", 22)
    assert conn.connect_kwargs == {"key_filename": [str(identity_paths(cfg)[0])], "look_for_keys": False,
                                   "allow_agent": False}
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)


def test_connect_without_known_hosts_is_an_error(cfg):
    with pytest.raises(ProvisionError, match=r"known_hosts: missing; run `fab provision`"):
        connect(cfg, NODE)


def test_connect_on_aws_uses_the_public_address(cfg):
    from fabfile.config import with_target
    aws = with_target(cfg, "aws")
    write_public(known_hosts_path(aws), "")
    node = Node("proxy", 0, "p", "i-1", "running", "172.31.0.4", "203.0.113.9", None)
    assert connect(aws, node).host == "203.0.113.9"
    with pytest.raises(ProvisionError, match=r"p \(i-1, running\) has no public IP address"):
        connect(aws, Node("proxy", 0, "p", "i-1", "running", "172.31.0.4", None, None))


def test_wait_for_ssh_returns_once_the_node_answers(cfg, sshd, fast):
    port, seen, host = _server_for(cfg, sshd)
    _pin(cfg, port, host.public)
    wait_for_ssh(cfg, NODE, fast, port=port)
    assert seen == [("auth", "admin")]


def test_wait_for_ssh_times_out_naming_node_address_and_last_error(cfg, fast):
    ensure_identity(cfg)
    write_public(known_hosts_path(cfg), "")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ProvisionError) as info:
        wait_for_ssh(cfg, NODE, fast, port=port)
    message = str(info.value)
    assert message.startswith(f"whipup-demo-app-0 (i-0123) at 127.0.0.1:{port}: no SSH after 1s; last error: ")
    assert "NoValidConnectionsError" in message


def test_sandbox_connections_only_go_to_addresses_routed_to_the_bridge(cfg, monkeypatch):
    from fabfile import ssh as ssh_mod
    from fabfile.sandbox import net

    routes = {"172.31.0.9": "whipbr0", "172.31.0.10": "eth0", "127.0.0.1": "lo"}
    monkeypatch.setattr(net, "routed_via", lambda a: routes.get(a))
    ssh_mod.check_sandbox_route("172.31.0.9")
    ssh_mod.check_sandbox_route("127.0.0.1")
    for address in ("172.31.0.10", "10.9.9.9"):
        with pytest.raises(ssh_mod.NotInSandbox, match="not routed to the local cloud's bridge whipbr0"):
            ssh_mod.check_sandbox_route(address)


def test_a_command_is_seen_to_end_by_its_exit_status_event_not_a_poll():
    """BriskRemote.wait returns when paramiko sets the channel's exit-status event (invoke's own polls every
    10 ms); every cluster connection runs its commands with it."""
    from types import SimpleNamespace

    from fabfile.ssh import BriskRemote

    event = threading.Event()
    runner = BriskRemote.__new__(BriskRemote)
    runner.channel = SimpleNamespace(status_event=event, exit_status_ready=event.is_set)
    runner.threads = {}
    checks = []
    real_wait = event.wait
    event.wait = lambda timeout: checks.append(timeout) or real_wait(timeout)
    threading.Timer(0.2, event.set).start()
    runner.wait()
    assert event.is_set() and checks and all(t == 0.05 for t in checks) and len(checks) <= 6
    assert BriskRemote.input_sleep < 0.01


def test_stdin_for_a_command_that_already_ended_is_dropped_not_raised():
    """A command that exits at once closes its channel while its stdin is still being sent: the write fails
    with `Socket is closed`, which must leave the command's own result (its exit status) to say what
    happened. A write that fails while the command still runs is an error."""
    from types import SimpleNamespace

    from fabfile.ssh import BriskRemote

    def closed_socket(data):
        raise OSError("Socket is closed")

    runner = BriskRemote.__new__(BriskRemote)
    runner.channel = SimpleNamespace(sendall=closed_socket, closed=True, exit_status_ready=lambda: True)
    runner._write_proc_stdin(b"lock info\n")
    runner.channel = SimpleNamespace(sendall=closed_socket, closed=False, exit_status_ready=lambda: False)
    with pytest.raises(OSError, match="Socket is closed"):
        runner._write_proc_stdin(b"lock info\n")
    sent = []
    runner.channel = SimpleNamespace(sendall=sent.append, closed=False, exit_status_ready=lambda: False)
    runner._write_proc_stdin(b"lock info\n")
    assert sent == [b"lock info\n"]
