"""The recovery receiver's way in: a reverse SSH tunnel from the monitor node's loopback to this machine.

Alertmanager on the monitor node posts its `recover` webhook to http://127.0.0.1:<monitor.receiver_port>/recover,
its own loopback. The receiver keeps an SSH connection to the monitor node open (the cluster's key, the pinned
host key, as every whipup connection) with a remote forward of that port to the address it listens on here
(127.0.0.1, a port of its own). So nothing in the cluster ever connects to this machine, on either target:
on AWS the control machine needs no inbound rule, no address the VPC can reach, and the monitor node holds
no credential: it can ask for a recovery, never run one.

When the link drops or the monitor node is rebuilt, the tunnel finds the node again (by its tags) and
reconnects, every `retry` seconds; while it is down Alertmanager retries and repeats the alert (every 5 min).
"""
from __future__ import annotations

import threading
from typing import Callable

from .config import MONITOR_ROLE

Log = Callable[[str], None]
KEEPALIVE = 15          # seconds between SSH keepalives: a dead monitor node is noticed within ~3 of them
RETRY = 5.0


def monitor_node(cfg, ec2):
    """The running monitor node of the cluster (the first, by index), or None."""
    from ..nodes import find_nodes

    running = find_nodes(ec2, cfg.cluster.name, role=MONITOR_ROLE, states=("running",))
    return running[0] if running else None


def hold(conn, remote_port: int, local_port: int, stop: threading.Event, up: Callable[[], None]) -> None:
    """Forward the monitor's 127.0.0.1:`remote_port` to 127.0.0.1:`local_port` here (`up()` once it is) until
    the SSH transport dies or `stop` is set."""
    conn.open()
    transport = conn.client.get_transport()
    transport.set_keepalive(KEEPALIVE)
    with conn.forward_remote(remote_port, local_port=local_port, remote_host="127.0.0.1", local_host="127.0.0.1"):
        up()
        while transport.is_active() and not stop.is_set():
            stop.wait(1.0)


def keep_open(cfg, remote_port: int, local_port: int, log: Log, stop: threading.Event, *,
              open_ec2: Callable[[], object], connect: Callable, retry: float = RETRY) -> None:
    """Hold the tunnel, reconnecting after each drop, until `stop` is set. Each change is logged once."""
    said = None

    def say(line: str) -> None:
        nonlocal said
        if line != said:
            log(line)
            said = line

    ec2, where = None, cfg.cluster.name
    while not stop.is_set():
        conn = None
        try:
            ec2 = ec2 or open_ec2()
            node = monitor_node(cfg, ec2)
            if node is None:
                say(f"tunnel: no running {MONITOR_ROLE} node in {where}; looking again every {retry:g} s")
            else:
                where = node.name
                conn = connect(cfg, node)
                hold(conn, remote_port, local_port, stop,
                     lambda: say(f"tunnel: {node.name} 127.0.0.1:{remote_port} -> here 127.0.0.1:{local_port}"))
                if not stop.is_set():
                    say(f"tunnel: {node.name}: the connection dropped; reconnecting")
        except Exception as exc:   # noqa: BLE001 - a tunnel that fails is retried, and says why
            say(f"tunnel: {where}: {type(exc).__name__}: {exc}; again every {retry:g} s")
        finally:
            if conn is not None:
                conn.close()
        stop.wait(retry)
