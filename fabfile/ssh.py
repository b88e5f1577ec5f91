"""SSH to cluster nodes, pinned: our known_hosts only, our key only, no TOFU.

`connect(cfg, node)` is what configuration and deploy code uses; a host key
that is not in `<state_dir>/<cluster>/known_hosts` is refused, and neither
~/.ssh/known_hosts, ~/.ssh/config, the agent nor ~/.ssh keys are consulted.
"""
from __future__ import annotations

import logging
import socket

from fabric import Config as FabricConfig
from fabric import Connection
from fabric.runners import Remote
from paramiko import RejectPolicy, SSHConfig
from paramiko.ssh_exception import NoValidConnectionsError

from .config import Config
from .errors import ProvisionError
from .nodes import Node, connect_address
from .state import identity_paths, known_hosts_path


# paramiko logs every failed handshake with a traceback; the callers report failures themselves
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class NotInSandbox(OSError):
    """A sandbox address that is not (yet) routed to the local cloud's bridge: nothing is sent to it."""


def check_sandbox_route(address: str) -> None:
    """On the local cloud, refuse to contact an address unless the materializer has routed it to our bridge.

    A host's /32 route appears when its host boots; before that (or after it
    is gone) a packet would leave by this machine's default route.
    """
    from .sandbox.net import routed_via

    bridge = sandbox_bridge()
    via = routed_via(address)
    if via not in (bridge, "lo"):  # loopback is this machine: always allowed
        raise NotInSandbox(f"{address} is not routed to the local cloud's bridge {bridge} (it goes via {via})")


def sandbox_bridge() -> str:
    """The local cloud's bridge: the only interface (with loopback) SSH may leave by on the sandbox."""
    from .sandbox.settings import load_settings

    return load_settings().bridge


class BriskRemote(Remote):
    """fabric's runner, told at once that the command ended (paramiko's exit-status event) rather than at
    invoke's next 10 ms poll, and passing stdin's end on within 2 ms: 5-20 ms of each command's round trip."""

    input_sleep = 0.002          # the stdin loop's nap (only commands given stdin run that loop)

    def wait(self) -> None:
        while not (self.process_is_finished or self.has_dead_threads):
            self.channel.status_event.wait(0.05)   # set by the exit status; a dead IO thread is seen within 50 ms

    def _write_proc_stdin(self, data: bytes) -> None:
        """stdin for a command that already ended and closed its channel is dropped, as a pipe's gone reader
        is (subprocess ignores BrokenPipeError): its exit status says what happened. A command that fails at
        once (the deploy lock's take, before the cluster's first configure) raced its stdin: invoke's stdin
        thread died with `Socket is closed`, a ThreadException instead of the command's result."""
        try:
            super()._write_proc_stdin(data)
        except OSError:
            if not (self.channel.closed or self.channel.exit_status_ready()):
                raise


class QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it received at once (TCP_QUICKACK, Linux), after every read.

    Right after the login sshd pushes its host keys (a global request paramiko never answers), then answers
    the first session's open with Nagle's algorithm still on: that answer waits for our ACK of the keys,
    which Linux delays by 40 ms. OpenSSH's client answers the keys, so its ACK rides along; ours goes at once.
    """
    __slots__ = ()

    def recv(self, *args):
        data = super().recv(*args)
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


def session_socket(sock: socket.socket) -> socket.socket:
    """`sock` (a connected TCP socket) as an SSH connection's: TCP_NODELAY on, and where the system has it
    (Linux), a QuickAckSocket over the same descriptor and timeout."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not hasattr(socket, "TCP_QUICKACK"):
        return sock
    timeout = sock.gettimeout()
    quick = QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    quick.settimeout(timeout)
    return quick


class PinnedConnection(Connection):
    """A fabric Connection whose TCP socket has Nagle's algorithm off (TCP_NODELAY), as OpenSSH's own, and
    acknowledges at once (`session_socket`).

    paramiko leaves Nagle on: each command's small request then waits for the peer's delayed ACK, about 40 ms
    a command on Linux. Every (re)open makes a fresh socket, so a dropped connection reopens the same way.
    """

    def open(self):
        if self.is_connected:
            return None
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:    # refused, unreachable, timed out: as paramiko's own connect says it
            raise NoValidConnectionsError({(self.host, self.port): exc}) from None
        try:
            sock = session_socket(sock)
            self.connect_kwargs["sock"] = sock
            return super().open()
        except BaseException:
            sock.close()
            raise
        finally:
            self.connect_kwargs.pop("sock", None)


def connect(cfg: Config, node: Node, *, port: int = 22, connect_timeout: float | None = 10,
            kind: type[PinnedConnection] = PinnedConnection, routed: bool = False) -> Connection:
    """A (not yet opened) Connection to `node` as the cluster's SSH user with the cluster key (a `kind`:
    sshpool's); `routed`: the caller has checked the sandbox route already (sshpool, for all hosts at once)."""
    if cfg.cluster.target == "sandbox" and not routed:
        check_sandbox_route(connect_address(cfg, node))
    known_hosts = known_hosts_path(cfg)
    if not known_hosts.is_file():
        raise ProvisionError(f"{known_hosts}: missing; run `fab provision` to write it")
    private_key = identity_paths(cfg)[0]
    conn = kind(
        host=connect_address(cfg, node),
        user=cfg.cluster.ssh.user,
        port=port,
        config=FabricConfig(ssh_config=SSHConfig(),    # explicit and empty: no ~/.ssh/config
                            overrides={"runners": {"remote": BriskRemote}}),
        connect_timeout=connect_timeout,
        connect_kwargs={"key_filename": [str(private_key)], "look_for_keys": False, "allow_agent": False},
    )
    conn.client.set_missing_host_key_policy(RejectPolicy())
    conn.client.load_host_keys(str(known_hosts))
    return conn

