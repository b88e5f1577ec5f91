"""The no-op floor (issue 16): one SSH connection per host for a whole run (fabfile/sshpool.py)."""
from __future__ import annotations

import threading

import pytest

from fabfile import sshpool
from fabfile.config import with_target
from fabfile.nodes import Node
from fabfile.ssh import NotInSandbox, PinnedConnection

APP = Node("app", 0, "c-app-0", "i-a0", "running", "10.0.0.10", None, None)
DB = Node("db", 0, "c-db-0", "i-d0", "running", "10.0.0.12", None, None)
MOVED = Node("db", 0, "c-db-0", "i-d0", "running", "10.0.0.13", None, None)   # stopped, started elsewhere
STOPPED = Node("proxy", 0, "c-proxy-0", "i-p0", "stopped", None, None, None)


def test_the_route_batch_is_one_line_per_address_and_read_back_in_order():
    assert sshpool.route_batch(["10.0.0.10", "10.0.0.12"]) == ["route get 10.0.0.10", "route get 10.0.0.12"]
    assert sshpool.route_batch([]) is None
    out = ("10.0.0.10 dev whipbr0 src 10.255.255.254 uid 0 \\    cache \n"
           "local 127.0.0.1 dev lo src 127.0.0.1 uid 0 \\    cache <local> \n")
    assert sshpool.parse_route_batch(["10.0.0.10", "127.0.0.1"], out) == {"10.0.0.10": "whipbr0", "127.0.0.1": "lo"}
    # a line missing (ip said an error on stderr) or out of order: asked one by one instead
    assert sshpool.parse_route_batch(["10.0.0.10", "10.0.0.12"], out.splitlines()[0]) is None
    assert sshpool.parse_route_batch(["127.0.0.1", "10.0.0.10"], out) is None


@pytest.fixture
def opened(monkeypatch):
    """Handshakes made without a network: {host: times opened}; a host in `failing` raises OSError."""
    counts: dict[str, int] = {}
    failing: set[str] = set()
    connected: set[str] = set()
    lock = threading.Lock()

    def fake_open(conn):                             # as PinnedConnection.open: nothing to do once open
        with lock:
            if conn.host in connected:
                return
            counts[conn.host] = counts.get(conn.host, 0) + 1
        if conn.host in failing:
            raise OSError(f"{conn.host}: no route")
        connected.add(conn.host)

    def fake_connect(cfg, node, *, kind=PinnedConnection, routed=False, connect_timeout=10, port=22):
        return kind(host=node.private_ip, user="admin", port=port)

    monkeypatch.setattr(PinnedConnection, "open", fake_open)
    monkeypatch.setattr(PinnedConnection, "close", lambda conn: counts.setdefault("closed", []).append(conn.host))
    monkeypatch.setattr(sshpool, "connect", fake_connect)
    return counts, failing


def test_each_host_is_opened_once_and_closed_by_the_pool_only(cfg, opened):
    counts, _ = opened
    with sshpool.Connections(cfg, route=lambda addresses: {a: "whipbr0" for a in addresses}) as pool:
        pool.start([APP, DB, STOPPED])
        conn = pool.connect(cfg, APP)
        assert pool.connect(cfg, APP) is conn and pool.connect(cfg, DB) is not conn
        conn.open()
        conn.close()                                 # the caller's close: the next step uses it again
        assert pool.connect(cfg, APP) is conn and "closed" not in counts
        assert pool.connect(cfg, MOVED) is not pool.connect(cfg, DB)     # another address, another one
    assert counts["10.0.0.10"] == 1 and counts["10.0.0.12"] == 1 and counts["10.0.0.13"] == 1
    assert sorted(counts["closed"]) == ["10.0.0.10", "10.0.0.12", "10.0.0.13"]


def test_a_node_named_twice_in_one_start_gets_one_handshake(cfg, opened):
    # configure starts its targets and the deploy lock's anchor, which is one of them
    made = []
    with sshpool.Connections(cfg, route=lambda addresses: {a: "whipbr0" for a in addresses}) as pool:
        make = pool._make
        pool._make = lambda node: made.append(node.name) or make(node)
        pool.start([APP, DB, APP])
        pool.connect(cfg, APP).open()
    assert sorted(made) == ["c-app-0", "c-db-0"]
    assert sorted(opened[0]["closed"]) == ["10.0.0.10", "10.0.0.12"]


def test_a_failed_handshake_is_raised_by_the_callers_first_open_then_tried_again(cfg, opened):
    counts, failing = opened
    failing.add("10.0.0.10")
    with sshpool.Connections(cfg, route=lambda addresses: {a: "whipbr0" for a in addresses}) as pool:
        pool.start([APP])
        conn = pool.connect(cfg, APP)
        with pytest.raises(OSError, match="no route"):
            conn.open()                              # the pool's attempt's error, not a second attempt
        assert counts["10.0.0.10"] == 1
        failing.clear()
        conn.open()                                  # as fabric's next command would: a new attempt
        assert counts["10.0.0.10"] == 2


def test_on_the_sandbox_an_address_not_routed_to_its_bridge_is_refused_before_any_byte(cfg, opened, monkeypatch):
    counts, _ = opened
    monkeypatch.setattr(sshpool, "sandbox_bridge", lambda: "whipbr0")
    cfg = with_target(cfg, "sandbox")
    asked = []
    route = lambda addresses: asked.append(addresses) or {"10.0.0.10": "whipbr0", "10.0.0.12": "eth0"}  # noqa: E731
    with sshpool.Connections(cfg, route=route) as pool:
        pool.start([APP, DB])
        assert asked == [["10.0.0.10", "10.0.0.12"]]                # one question for every host
        assert pool.connect(cfg, APP).host == "10.0.0.10"
        with pytest.raises(NotInSandbox, match="10.0.0.12 is not routed"):
            pool.connect(cfg, DB)
    assert "10.0.0.12" not in counts


def test_the_handshake_thread_opens_the_first_session_while_the_caller_renders(cfg, opened, monkeypatch):
    """sshd answers a connection's first session late (~40 ms after the login): the pool's thread opens and
    closes one, so the caller's first command does not wait for it; a refusal there is left to that command."""
    sessions = []

    class Channel:
        def close(self):
            sessions.append("closed")

    class Transport:
        def __init__(self, refuse=False):
            self.refuse = refuse

        def open_session(self, timeout=None):
            sessions.append(("open", timeout))
            if self.refuse:
                raise OSError("administratively prohibited")
            return Channel()

    with sshpool.Connections(cfg, route=lambda addresses: {a: "whipbr0" for a in addresses}) as pool:
        monkeypatch.setattr(type(pool.connect(cfg, APP).client), "get_transport", lambda client: Transport())
        conn = pool.connect(cfg, APP)
        conn.handshake()
        assert sessions == [("open", conn.connect_timeout), "closed"]
        monkeypatch.setattr(type(conn.client), "get_transport", lambda client: Transport(refuse=True))
        conn.prepare()
        conn.handshake()                              # no error here: the caller's command meets it
        assert conn._pool_error is None
