"""Security groups enforced on the local cloud (issue 14): a port the groups do not allow is not reachable.

A private sandbox (#5) with three hosts in groups like whipup's: proxy (80 from 0.0.0.0/0), app (8000 from
the proxy's group), db (5432 from the app's group), each with SSH from the bridge address only (/32, the
admin CIDR). A listener answers on each of those ports inside the hosts. Connections from the hosts and
from this machine get through exactly where a group allows them; a revoked rule stops new connections
within seconds and authorizing it again lets them through. What is not allowed is dropped, so a probe
times out (1 s), as on AWS. Only addresses routed to this sandbox's bridge are ever contacted.
"""
from __future__ import annotations

import socket
import subprocess
import time

import pytest
import yaml

from .conftest import fab, make_network, sandbox_env
from .test_local_cloud import IMAGE_NAME, Cloud, keygen

pytestmark = pytest.mark.e2e

SANDBOX = 5
PORTS = {"proxy": 80, "app": 8000, "db": 5432}

# Inside a host: answer "ok PORT" on PORT forever; /run/listening-PORT once bound.
LISTEN = """
import pathlib, socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
pathlib.Path(f"/run/listening-{port}").touch()
while True:
    c, _ = s.accept()
    c.sendall(f"ok {port}\\n".encode())
    c.close()
"""

# Inside a host: `probe.py [--until open|closed --within S] ip:port...`, one line per target.
PROBE = """
import socket, sys, time
def probe(target):
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0) as s:
            s.settimeout(2.0)
            return "open" if s.recv(64).decode().startswith(("ok ", "SSH-")) else "other"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
args = sys.argv[1:]
if args[0] == "--until":
    want, limit, target = args[1], float(args[3]), args[4]
    start = time.monotonic()
    while ((state := probe(target)) == "open") != (want == "open") and time.monotonic() - start < limit:
        time.sleep(0.1)
    print(f"{state} {time.monotonic() - start:.2f}")
else:
    for target in args:
        print(target, probe(target))
"""


def probe_here(ip: str, port: int) -> str:
    """From this machine, as PROBE does inside a host."""
    try:
        with socket.create_connection((ip, port), timeout=1.0) as s:
            s.settimeout(2.0)
            return "open" if s.recv(64).decode().startswith(("ok ", "SSH-")) else "other"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"


class Groups(Cloud):
    """The sandbox's three hosts by role, their groups, SSH to them and probes from them."""

    def launch(self, ami: str, subnet: str, role: str, group_id: str) -> tuple[str, str]:
        host_key, host_pub = keygen(self.tmp / f"host-{role}")
        user_data = "#cloud-config\n" + yaml.safe_dump({
            "ssh_authorized_keys": [self.user_pub],
            "ssh_keys": {"ed25519_private": host_key, "ed25519_public": host_pub}})
        inst = self.ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                      SubnetId=subnet, SecurityGroupIds=[group_id],
                                      UserData=user_data)["Instances"][0]
        return inst["PrivateIpAddress"], f"{inst['PrivateIpAddress']} {' '.join(host_pub.split()[:2])}\n"

    def from_host(self, role: str, *targets: tuple[str, int]) -> dict[tuple[str, int], str]:
        out = self.ssh(self.ip[role], "python3 /tmp/probe.py " + " ".join(f"{self.ip[r]}:{p}" for r, p in targets))
        got = dict(line.split() for line in out.stdout.splitlines())
        return {(r, p): got[f"{self.ip[r]}:{p}"] for r, p in targets}

    def until(self, role: str, target: tuple[str, int], want: str, within: float) -> tuple[str, float]:
        addr = f"{self.ip[target[0]]}:{target[1]}"
        state, seconds = self.ssh(self.ip[role], f"python3 /tmp/probe.py --until {want} --within {within} {addr}"
                                  ).stdout.split()
        return state, float(seconds)

    def db_rule(self) -> list[dict]:
        return [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                 "UserIdGroupPairs": [{"GroupId": self.group["app"]}]}]


def make_groups(c: Groups, vpc: str, admin_cidr: str) -> dict[str, str]:
    ids = {role: c.ec2.create_security_group(GroupName=f"e2e-sg-{role}", Description=f"e2e {role}",
                                             VpcId=vpc)["GroupId"] for role in PORTS}
    sources = {"proxy": {"IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
               "app": {"UserIdGroupPairs": [{"GroupId": ids["proxy"]}]},
               "db": {"UserIdGroupPairs": [{"GroupId": ids["app"]}]}}
    for role, port in PORTS.items():
        c.ec2.authorize_security_group_ingress(GroupId=ids[role], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": admin_cidr}]},
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **sources[role]}])
    return ids


@pytest.fixture(scope="module")
def sg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secgroups")
    env = sandbox_env(tmp, SANDBOX)
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{env['WHIPUP_SANDBOX_PORT']}", AWS_DEFAULT_REGION="us-east-1")
    started = time.monotonic()
    fab("sandbox.up", env=env)
    try:
        c = Groups(tmp, env)
        network = make_network(env, SANDBOX)
        assert network["admin_cidr"] == f"{env['WHIPUP_SANDBOX_BRIDGE_ADDRESS']}/32"
        c.group = make_groups(c, network["vpc"], network["admin_cidr"])
        ami = c.ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [IMAGE_NAME]}])
        launched = {role: c.launch(ami["Images"][0]["ImageId"], network["subnet"], role, c.group[role])
                    for role in PORTS}
        c.ip = {role: ip for role, (ip, _) in launched.items()}
        c.known_hosts.write_text("".join(line for _, line in launched.values()))
        for ip in c.ip.values():
            c.wait_ssh(ip, 90)
        for role, port in PORTS.items():
            c.ssh(c.ip[role], "cat > /tmp/probe.py", stdin=PROBE)
            c.ssh(c.ip[role], f"sudo -n tee /usr/local/bin/listen.py >/dev/null && sudo -n setsid -f python3 "
                              f"/usr/local/bin/listen.py {port} </dev/null >/dev/null 2>&1 && for i in $(seq 100); "
                              f"do test -e /run/listening-{port} && exit 0; sleep 0.05; done; exit 1", stdin=LISTEN)
        print(f"\nsecurity groups: sandbox up, 3 hosts with listeners in {time.monotonic() - started:.1f} s")
        yield c
    finally:
        fab("sandbox.down", env=env, check=False)


def test_hosts_reach_only_what_their_groups_allow(sg):
    assert sg.from_host("app", ("db", 5432), ("db", 22), ("proxy", 80)) == {
        ("db", 5432): "open", ("db", 22): "timeout", ("proxy", 80): "open"}
    assert sg.from_host("proxy", ("app", 8000), ("db", 5432), ("app", 22)) == {
        ("app", 8000): "open", ("db", 5432): "timeout", ("app", 22): "timeout"}
    assert sg.from_host("db", ("app", 8000), ("proxy", 22)) == {("app", 8000): "timeout", ("proxy", 22): "timeout"}


def test_this_machine_reaches_the_proxy_and_ssh_only(sg):
    for ip in sg.ip.values():
        assert sg.routed_to_sandbox(ip)
    assert probe_here(sg.ip["proxy"], 80) == "open"
    assert probe_here(sg.ip["db"], 5432) == "timeout"
    assert probe_here(sg.ip["app"], 8000) == "timeout"
    assert {role: probe_here(ip, 22) for role, ip in sg.ip.items()} == dict.fromkeys(PORTS, "open")


def test_the_sandbox_has_its_own_table(sg):
    bridge = sg.env["WHIPUP_SANDBOX_BRIDGE"]
    table = subprocess.run(["nft", "list", "table", "inet", f"whipup-{bridge}"], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert f'oifname "{bridge}" jump to-hosts' in table.stdout
    for role in PORTS:
        assert f"{sg.ip[role]} : jump " in table.stdout
    status = fab("sandbox.status", env=sg.env).stdout
    assert f"firewall:     table inet whipup-{bridge} (the security groups)" in status


def test_a_revoked_rule_stops_new_connections_in_seconds_and_comes_back(sg):
    revoked = time.monotonic()
    sg.ec2.revoke_security_group_ingress(GroupId=sg.group["db"], IpPermissions=sg.db_rule())
    state, inside = sg.until("app", ("db", 5432), "closed", within=10)
    closed = time.monotonic() - revoked
    assert state == "timeout", f"app -> db:5432 still {state} {inside:.1f} s after the revoke"
    assert sg.from_host("app", ("db", 22)) == {("db", 22): "timeout"}     # nothing else opened meanwhile
    authorized = time.monotonic()
    sg.ec2.authorize_security_group_ingress(GroupId=sg.group["db"], IpPermissions=sg.db_rule())
    state, _ = sg.until("app", ("db", 5432), "open", within=10)
    opened = time.monotonic() - authorized
    assert state == "open", "app -> db:5432 not open again after the rule was authorized again"
    print(f"\nrevoke: app -> db:5432 dropped {closed:.1f} s after the call; authorize: open again after {opened:.1f} s")
    assert closed < 5 and opened < 5
    assert sg.from_host("proxy", ("db", 5432)) == {("db", 5432): "timeout"}


def test_sandbox_down_removes_the_table(sg):
    fab("sandbox.down", env=sg.env)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert f"table inet whipup-{sg.env['WHIPUP_SANDBOX_BRIDGE']}\n" not in tables
