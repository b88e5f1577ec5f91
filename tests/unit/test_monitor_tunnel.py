"""The receiver's reverse tunnel (fabfile/monitor/tunnel.py): the monitor node found by its tags; the tunnel held
through a real SSH server's remote forward (paramiko's, in-process, on loopback), an alert posted at the far
end reaching the receiver's HTTP handler here, reconnected after a drop; each change said once."""
from __future__ import annotations

import json
import socket
import threading
import time

import paramiko
import pytest

from fabfile.monitor import tunnel
from fabfile.nodes import Node

from test_monitor_receiver import serving_receiver


class Cfg:
    class cluster:
        name = "t"


def node(name="t-monitor-0"):
    return Node("monitor", 0, name, "i-1", "running", "10.0.0.9", None, None)


class ForwardingServer(paramiko.ServerInterface):
    """An SSH server that lets any password in and honours tcpip-forward requests, as sshd's AllowTcpForwarding."""

    def __init__(self, forwards: list):
        self.forwards = forwards

    def get_allowed_auths(self, username):
        return "password"

    def check_auth_password(self, username, password):
        return paramiko.AUTH_SUCCESSFUL

    def check_port_forward_request(self, address, port):
        self.forwards.append((address, port))
        return port

    def cancel_port_forward_request(self, address, port):
        self.forwards.append(("cancel", address, port))


class SshPeer:
    """A loopback SSH server (the monitor node's sshd), one session at a time."""

    def __init__(self):
        self.key = paramiko.RSAKey.generate(2048)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwards: list = []
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            t = paramiko.Transport(sock)
            t.add_server_key(self.key)
            t.start_server(server=ForwardingServer(self.forwards))
            self.transports.append(t)

    def connection(self):
        from fabric import Connection

        conn = Connection("127.0.0.1", port=self.port, user="admin",
                          connect_kwargs={"look_for_keys": False, "allow_agent": False, "password": "test"})
        conn.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return conn


def wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_monitor_node_is_found_by_its_tags_running_only(ec2):
    assert tunnel.monitor_node(Cfg, ec2) is None
    ami = ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]
    for cluster, role in (("t", "app"), ("other", "monitor"), ("t", "monitor")):
        ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "whipup:cluster", "Value": cluster}, {"Key": "whipup:role", "Value": role},
            {"Key": "whipup:index", "Value": "0"}, {"Key": "Name", "Value": f"{cluster}-{role}-0"}]}])
    found = tunnel.monitor_node(Cfg, ec2)
    assert found is not None and found.name == "t-monitor-0"
    ec2.terminate_instances(InstanceIds=[found.instance_id])
    assert tunnel.monitor_node(Cfg, ec2) is None                  # a lost monitor: looked for again later


def post_through(transport: paramiko.Transport, port: int, body: bytes) -> bytes:
    """What Alertmanager does on the monitor node: a POST to 127.0.0.1:`port` there (the SSH server opens the
    forwarded channel, as sshd does for a connection to the forwarded port); the HTTP answer."""
    chan = transport.open_forwarded_tcpip_channel(("127.0.0.1", 50000), ("127.0.0.1", port))
    chan.sendall(b"POST /recover HTTP/1.0\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    answer = b""
    while chunk := chan.recv(4096):
        answer += chunk
    chan.close()
    return answer


def test_an_alert_posted_on_the_monitors_loopback_reaches_the_receiver_and_again_after_a_drop():
    server, offered = serving_receiver()
    here = server.server_address[1]
    peer, lines, stop = SshPeer(), [], threading.Event()
    th = threading.Thread(target=tunnel.keep_open, args=(Cfg, 9097, here, lines.append, stop), daemon=True,
                          kwargs={"open_ec2": lambda: None, "connect": lambda cfg, n: peer.connection(),
                                  "retry": 0.2})
    body = json.dumps({"alerts": [{"status": "firing", "labels": {"alertname": "NodeDown", "role": "app"}}]})
    real = tunnel.monitor_node
    tunnel.monitor_node = lambda cfg, ec2: node()
    try:
        th.start()
        wait(lambda: ("127.0.0.1", 9097) in peer.forwards)
        assert lines == [f"tunnel: t-monitor-0 127.0.0.1:9097 -> here 127.0.0.1:{here}"]
        assert post_through(peer.transports[0], 9097, body.encode()).startswith(b"HTTP/1.0 200")
        assert offered == [["app"]]
        peer.transports[0].close()                                # the link drops (the node rebuilt, say)
        wait(lambda: peer.forwards.count(("127.0.0.1", 9097)) == 2)
        assert lines[1] == "tunnel: t-monitor-0: the connection dropped; reconnecting"
        assert post_through(peer.transports[1], 9097, body.encode()).startswith(b"HTTP/1.0 200")
        assert offered == [["app"], ["app"]]
        stop.set()
        th.join(10)
        assert not th.is_alive()
    finally:
        tunnel.monitor_node = real
        stop.set()
        peer.listener.close()
        server.shutdown()


def test_a_failing_tunnel_says_why_once_and_keeps_trying():
    lines, stop, calls = [], threading.Event(), []

    def refuse(cfg, n):
        calls.append(n)
        if len(calls) >= 4:
            stop.set()
        raise OSError("connection refused")

    real = tunnel.monitor_node
    tunnel.monitor_node = lambda cfg, ec2: node()
    try:
        tunnel.keep_open(Cfg, 9097, 1, lines.append, stop, open_ec2=lambda: None, connect=refuse, retry=0.01)
    finally:
        tunnel.monitor_node = real
    assert len(calls) == 4 and lines == ["tunnel: t-monitor-0: OSError: connection refused; again every 0.01 s"]


def test_no_monitor_node_yet_is_said_once(monkeypatch):
    lines, stop, looks = [], threading.Event(), []

    def none(cfg, ec2):
        looks.append(1)
        if len(looks) >= 3:
            stop.set()

    monkeypatch.setattr(tunnel, "monitor_node", none)
    tunnel.keep_open(Cfg, 9097, 1, lines.append, stop, open_ec2=lambda: None, connect=pytest.fail, retry=0.01)
    assert lines == ["tunnel: no running monitor node in t; looking again every 0.01 s"]
