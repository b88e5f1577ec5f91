"""The local cloud, driven with plain boto3 and ssh only (no whipup code).

Proves that an instance launched through the API is a real, isolated host:
SSH with the host key from user-data, sudo, private files, host-to-host
traffic, apt through the proxy, stop/start keeping the disk, terminate
removing the host, and `fab sandbox.down` leaving nothing behind.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from fabfile.sandbox import net

from .conftest import fab, sandbox_env

pytestmark = pytest.mark.e2e
IMAGE_NAME = "debian-12-amd64-whipup-sandbox"


def keygen(path: Path) -> tuple[str, str]:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for this machine's init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class Cloud:
    def __init__(self, tmp: Path, env: dict):
        self.tmp, self.env = tmp, env
        self.ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        self.user_key, self.user_pub = keygen(tmp / "user")
        self.known_hosts = tmp / "known_hosts"

    def ssh_argv(self, ip: str, command: str, timeout: int = 5) -> list[str]:
        return ["ssh", "-i", str(self.tmp / "user"), "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}", f"admin@{ip}", command]

    def ssh(self, ip: str, command: str, check: bool = True, timeout: float = 300,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        assert self.routed_to_sandbox(ip), f"{ip} is not a host of this sandbox"
        p = subprocess.run(self.ssh_argv(ip, command), capture_output=True, text=True, timeout=timeout,
                           input=stdin if stdin is not None else "")
        if check and p.returncode != 0:
            raise AssertionError(f"ssh {ip} {command!r}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def routed_to_sandbox(self, ip: str) -> bool:
        """Only addresses routed to our bridge are ever contacted (the network rule)."""
        out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True).stdout
        return f" dev {self.env['WHIPUP_SANDBOX_BRIDGE']} " in out

    def wait_ssh(self, ip: str, limit: float) -> float:
        start = time.monotonic()
        last = None
        while time.monotonic() - start < limit:
            if not self.routed_to_sandbox(ip):
                time.sleep(0.05)
                continue
            last = subprocess.run(self.ssh_argv(ip, "true", timeout=2), capture_output=True, text=True)
            if last.returncode == 0:
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"{ip}: no SSH within {limit} s: {last.stderr if last else ''}")


def allow_ssh_from_this_machine(cloud: Cloud) -> None:
    """The instances here are launched with no group: they are in the default VPC's default group, which
    lets in only its own members (AWS's default). SSH from this machine comes from the bridge address."""
    vpc = cloud.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    default = cloud.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                          {"Name": "group-name", "Values": ["default"]}])
    cloud.ec2.authorize_security_group_ingress(
        GroupId=default["SecurityGroups"][0]["GroupId"],
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                        "IpRanges": [{"CidrIp": f"{cloud.env['WHIPUP_SANDBOX_BRIDGE_ADDRESS']}/32"}]}])


SANDBOX = 1


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("localcloud")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    exports = fab("sandbox.env", env=env).stdout
    for line in exports.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    c = Cloud(tmp, env)
    c.state = {}
    allow_ssh_from_this_machine(c)
    yield c
    fab("sandbox.down", env=env, check=False)


def test_sandbox_up_is_idempotent(cloud):
    again = fab("sandbox.up", env=cloud.env).stdout
    for part in ("api: already up", "already registered", f"bridge: {cloud.env['WHIPUP_SANDBOX_BRIDGE']} already up",
                 "proxy: already up", "apt cache: already up", "materializer: already running"):
        assert part in again


def test_three_instances_answer_ssh_with_pinned_host_keys(cloud):
    ami = cloud.ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [IMAGE_NAME]}])["Images"]
    assert ami, "the sandbox registers its image as an AMI"
    started = time.monotonic()
    ips, ids, lines = [], [], []
    for n in range(3):  # one user-data per instance: each gets its own host key
        host_key, host_pub = keygen(cloud.tmp / f"host{n}")
        user_data = "#cloud-config\n" + yaml.safe_dump({
            "ssh_authorized_keys": [cloud.user_pub],
            "ssh_keys": {"ed25519_private": host_key, "ed25519_public": host_pub},
            "write_files": [{"path": "/etc/whipup-test/motd", "content": f"host {n}\n", "permissions": "0640"}],
            "runcmd": ["cp /etc/whipup-test/motd /etc/whipup-test/ran", ["touch", "/etc/whipup-test/argv form"]],
            "no_such_module": {"x": 1},
        })
        inst = cloud.ec2.run_instances(ImageId=ami[0]["ImageId"], MinCount=1, MaxCount=1,
                                       InstanceType="t3.micro", UserData=user_data)["Instances"][0]
        ips.append(inst["PrivateIpAddress"])
        ids.append(inst["InstanceId"])
        lines.append(f"{inst['PrivateIpAddress']} {' '.join(host_pub.split()[:2])}\n")
    cloud.known_hosts.write_text("".join(lines))
    for ip in ips:
        cloud.wait_ssh(ip, 60 - (time.monotonic() - started))
    print(f"\n3 instances: run_instances to SSH ready on all: {time.monotonic() - started:.2f} s")
    for ip, iid in zip(ips, ids):
        out = cloud.ssh(ip, "sudo -n id -u && hostname && ip -4 -o addr show dev eth0").stdout.split("\n")
        assert out[0] == "0"
        assert out[1].startswith("ip-") or out[1] == iid
        assert f"inet {ip}/32" in out[2]
    for n, ip in enumerate(ips):  # the rest of the user-data: write_files, runcmd, an unknown key
        out = cloud.ssh(ip, "sudo cat /etc/whipup-test/ran; sudo stat -c %a /etc/whipup-test/motd; "
                            "sudo ls /etc/whipup-test; cat /var/log/cloud-init.log").stdout
        assert out.startswith(f"host {n}\n640\nargv form\nmotd\nran\n")
        assert "unsupported cloud-config key 'no_such_module': skipped" in out
    cloud.state.update(ips=ips, ids=ids)


def test_a_file_written_on_one_host_stays_there(cloud):
    ips = cloud.state["ips"]
    token = uuid.uuid4().hex
    path = f"/tmp/whipup-isolation-{token}"
    cloud.ssh(ips[0], f"echo {token} > {path}")
    assert cloud.ssh(ips[0], f"cat {path}").stdout.strip() == token
    for ip in ips[1:]:
        assert cloud.ssh(ip, f"test -e {path}", check=False).returncode == 1
    assert not os.path.exists(path)
    cloud.state["token"] = token
    cloud.state["path"] = path


def test_hosts_reach_each_other_on_private_ips(cloud):
    a, b, _ = cloud.state["ips"]
    probe = f"python3 -c 'import socket; s = socket.create_connection((\"{b}\", 22), 3); print(s.recv(64).decode())'"
    assert cloud.ssh(a, probe).stdout.startswith("SSH-2.0-OpenSSH")


def test_hosts_have_no_way_out_but_the_proxy(cloud):
    a = cloud.state["ips"][0]
    out = cloud.ssh(a, "ip route show; ip route get 192.0.2.1 2>&1 || true").stdout
    assert "default" not in out
    assert "unreachable" in out


def test_apt_get_install_works_through_the_package_cache(cloud):
    a = cloud.state["ips"][0]
    cloud.ssh(a, "sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hello")
    assert "Hello, world!" in cloud.ssh(a, "hello").stdout
    # the package was fetched through the sandbox's apt-cacher-ng, which keeps it for the next host
    cache = Path(cloud.env["WHIPUP_SANDBOX_STATE"]) / "apt-cache"
    assert [p.name for p in cache.rglob("hello_*.deb")], f"no hello package in {cache}"
    conf = cloud.ssh(a, "cat /etc/apt/apt.conf.d/80whipup-proxy").stdout
    assert f'Acquire::http::Proxy "http://{cloud.env["WHIPUP_SANDBOX_BRIDGE_ADDRESS"]}:8896";' in conf


def test_hosts_updating_their_package_lists_together_all_get_them(cloud):
    """Every host of a new cluster runs apt-get update at once. apt-cacher-ng answered some of them 503 for an
    index that another client had just started fetching, and apt-get update hung; 6 updates per host, from
    each host at once, after the cached indexes are dropped, must all end."""
    cache = Path(cloud.env["WHIPUP_SANDBOX_STATE"]) / "apt-cache"
    for index in [*cache.rglob("InRelease*"), *cache.rglob("Release*")]:
        index.unlink()
    each = ("rm -rf /tmp/lists-$i && mkdir -p /tmp/lists-$i/partial && "
            "timeout 120 apt-get update -qq -o Dir::State::Lists=/tmp/lists-$i > /tmp/update-$i.log 2>&1; "
            "echo $? > /tmp/update-$i.rc")
    command = f"sudo sh -c 'for i in 1 2 3 4 5 6; do ({each}) & done; wait; cat /tmp/update-*.rc'"
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        rcs = list(pool.map(lambda ip: cloud.ssh(ip, command, timeout=200).stdout.split(), cloud.state["ips"]))
    assert rcs == [["0"] * 6] * 3, f"apt-get update exit codes per host (124: it hung): {rcs}"


SERVICE = """#!/bin/sh
# a service that notes whether it was stopped cleanly
case "$1" in
  start) touch /run/demo.pid ;;
  status) [ -e /run/demo.pid ] ;;
  stop) rm -f /run/demo.pid; echo clean > /var/tmp/demo-stopped ;;
esac
"""


def test_stop_and_start_keep_the_disk(cloud):
    ip, iid = cloud.state["ips"][0], cloud.state["ids"][0]
    cloud.ssh(ip, "sudo tee /etc/init.d/whipup-demo >/dev/null && sudo chmod 755 /etc/init.d/whipup-demo "
                  "&& sudo /etc/init.d/whipup-demo start", stdin=SERVICE)
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1})
    deadline = time.monotonic() + 60  # its services get up to 90 s to stop (this one stops at once), then its processes 5 s
    while cloud.routed_to_sandbox(ip):  # a stopped host is unplugged: nothing answers there
        assert time.monotonic() < deadline, "a stopped instance must not answer SSH"
        time.sleep(0.2)
    cloud.ec2.start_instances(InstanceIds=[iid])
    cloud.ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1})
    cloud.wait_ssh(ip, 60)
    assert cloud.ssh(ip, f"cat {cloud.state['path']}").stdout.strip() == cloud.state["token"]
    assert "Hello, world!" in cloud.ssh(ip, "hello").stdout
    # stopping ran the services' init scripts, as a shutdown does; /run is fresh after the boot
    assert cloud.ssh(ip, "cat /var/tmp/demo-stopped; ls /run/demo.pid 2>&1 || true").stdout.startswith("clean\n")


def test_a_crashed_materializer_is_reattached_by_up(cloud):
    state = Path(cloud.env["WHIPUP_SANDBOX_STATE"])
    pid = int((state / "run" / "materializer.pid").read_text().split()[0])
    os.kill(pid, 9)
    while alive(pid):
        time.sleep(0.05)
    out = fab("sandbox.up", env=cloud.env).stdout
    assert "materializer: started" in out and "api: already up" in out
    for ip in cloud.state["ips"][:2]:  # hosts kept running through it
        assert cloud.ssh(ip, "true").returncode == 0


def test_terminate_removes_the_host(cloud):
    ip, iid = cloud.state["ips"][2], cloud.state["ids"][2]
    cloud.ec2.terminate_instances(InstanceIds=[iid])
    cloud.ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1})
    host_dir = Path(cloud.env["WHIPUP_SANDBOX_STATE"]) / "hosts" / iid
    deadline = time.monotonic() + 15
    while host_dir.exists() or iid in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, "terminated host still present"
        time.sleep(0.2)
    assert not cloud.routed_to_sandbox(ip)
    assert cloud.state["ips"][0] != ip and cloud.routed_to_sandbox(cloud.state["ips"][0])


def test_sandbox_down_leaves_nothing(cloud):
    status = json.loads(fab("sandbox.status", "--json", env=cloud.env).stdout)
    pids = [h["pid"] for h in status["hosts"] if h["pid"]]
    assert len(pids) == 2
    state = Path(cloud.env["WHIPUP_SANDBOX_STATE"])
    daemons = [int(p.read_text().split()[0]) for p in (state / "run").glob("*.pid")]
    # api, proxy, apt cache, S3 gate, git server, DNS (dnsmasq + its zone sync), ACME (pebble), materializer
    assert len(daemons) == 9
    fab("sandbox.down", env=cloud.env)
    bridge = cloud.env["WHIPUP_SANDBOX_BRIDGE"]
    # exact names: another module's sandbox may be called whiptest12 while this one is whiptest1
    namespaces = net.parse_netns_list(subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout)
    assert [n for n in namespaces if n.startswith(bridge + "-")] == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = set(net.parse_link_names(links))
    assert bridge not in names
    for iid in cloud.state["ids"]:
        assert net.veth_name(bridge, iid) not in names
    assert str(state) not in Path("/proc/mounts").read_text()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert f"whipup-{bridge}\n" not in tables, "sandbox.down must remove the security groups' table"
    for pid in pids + daemons:
        assert not alive(pid), f"process {pid} survived sandbox.down"
    assert "already" not in fab("sandbox.down", env=cloud.env).stdout  # a no-op, and says nothing
