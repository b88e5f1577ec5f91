"""The local cloud's security groups as nftables: the ruleset builder (exact text), applying it only when
it changed, the default groups' AWS rule, and the preflight for nft and br_netfilter."""
from __future__ import annotations

import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from fabfile.sandbox import control, firewall, materializer, net
from fabfile.sandbox.settings import load_settings

BRIDGE = "whipbr0"


def inst(iid: str, ip: str, groups: tuple[str, ...] = (), state: str = "running", eni: bool = False) -> dict:
    """An instance as DescribeInstances shows it; moto lists a default group only on the interface."""
    listed = [{"GroupId": g, "GroupName": g} for g in groups]
    out = {"InstanceId": iid, "PrivateIpAddress": ip, "VpcId": "vpc-1", "State": {"Name": state},
           "SecurityGroups": [] if eni else listed}
    if eni:
        out["NetworkInterfaces"] = [{"Groups": listed}]
    return out


def tcp(port: int, *, cidrs: tuple[str, ...] = (), groups: tuple[str, ...] = ()) -> dict:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": c} for c in cidrs],
            "UserIdGroupPairs": [{"UserId": "123456789012", "GroupId": g} for g in groups],
            "Ipv6Ranges": [], "PrefixListIds": []}


def group(gid: str, name: str, *perms: dict) -> dict:
    return {"GroupId": gid, "GroupName": name, "VpcId": "vpc-1", "IpPermissions": list(perms)}


SSH = tcp(22, cidrs=("10.255.255.254/32",))
GROUPS = [
    group("sg-default", "default", {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-default"}]}),
    group("sg-proxy", "c-proxy", SSH, tcp(80, cidrs=("0.0.0.0/0",))),
    group("sg-app", "c-app", tcp(8000, groups=("sg-proxy",)), SSH),
    group("sg-db", "c-db", SSH, tcp(5432, groups=("sg-app", "sg-worker"))),
    group("sg-ops", "c-ops", {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1,
                              "IpRanges": [{"CidrIp": "10.1.0.9/16"}]}),
    group("sg-unused", "c-unused", tcp(9, cidrs=("0.0.0.0/0",))),
]
INSTANCES = [
    inst("i-proxy", "10.1.0.4", ("sg-proxy",)),
    inst("i-app", "10.1.0.15", ("sg-app", "sg-ops")),          # a host in two groups
    inst("i-db", "10.1.0.6", ("sg-db",)),
    inst("i-plain", "10.1.0.7", ("sg-default",), eni=True),     # launched with no group: the VPC's default
    inst("i-nogroup", "10.1.0.8"),                              # no group listed at all: the default too
    inst("i-stopped", "10.1.0.9", ("sg-app",), state="stopped"),
    inst("i-booting", "10.1.0.10", ("sg-app",), state="pending"),
]

EXPECTED = """\
# security groups of the local cloud on bridge whipbr0: written by the materializer
table inet whipup-whipbr0
delete table inet whipup-whipbr0
table inet whipup-whipbr0 {
\tset sg-app {
\t\ttype ipv4_addr
\t\telements = { 10.1.0.10, 10.1.0.15 }
\t}
\tset sg-default {
\t\ttype ipv4_addr
\t\telements = { 10.1.0.7, 10.1.0.8 }
\t}
\tset sg-proxy {
\t\ttype ipv4_addr
\t\telements = { 10.1.0.4 }
\t}
\tset sg-worker {
\t\ttype ipv4_addr
\t}
\tmap hosts {
\t\ttype ipv4_addr : verdict
\t\telements = { 10.1.0.4 : jump i-proxy, 10.1.0.6 : jump i-db, 10.1.0.7 : jump i-plain, \
10.1.0.8 : jump i-nogroup, 10.1.0.10 : jump i-booting, 10.1.0.15 : jump i-app }
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\toifname "whipbr0" jump to-hosts
\t}
\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\toifname "whipbr0" jump to-hosts
\t}
\tchain to-hosts {
\t\tmeta nfproto ipv6 drop
\t\tct state established,related accept
\t\tip daddr vmap @hosts
\t\tdrop
\t}
\tchain i-app {
\t\tjump sg-app
\t\tjump sg-ops
\t}
\tchain i-booting {
\t\tjump sg-app
\t}
\tchain i-db {
\t\tjump sg-db
\t}
\tchain i-nogroup {
\t\tjump sg-default
\t}
\tchain i-plain {
\t\tjump sg-default
\t}
\tchain i-proxy {
\t\tjump sg-proxy
\t}
\tchain sg-app {
\t\tip saddr 10.255.255.254/32 tcp dport 22 accept
\t\tip saddr @sg-proxy tcp dport 8000 accept
\t}
\tchain sg-db {
\t\tip saddr 10.255.255.254/32 tcp dport 22 accept
\t\tip saddr @sg-app tcp dport 5432 accept
\t\tip saddr @sg-worker tcp dport 5432 accept
\t}
\tchain sg-default {
\t\tip saddr @sg-default accept
\t}
\tchain sg-ops {
\t\tip saddr 10.1.0.0/16 icmp type 8 accept
\t}
\tchain sg-proxy {
\t\tip saddr 10.255.255.254/32 tcp dport 22 accept
\t\ttcp dport 80 accept
\t}
}
"""


def test_ruleset_of_a_small_cluster_by_exact_text():
    assert firewall.ruleset(BRIDGE, INSTANCES, GROUPS) == EXPECTED


def test_ruleset_is_the_same_whatever_the_api_order():
    shuffled = [dict(g, IpPermissions=list(reversed(g["IpPermissions"]))) for g in reversed(GROUPS)]
    assert firewall.ruleset(BRIDGE, list(reversed(INSTANCES)), shuffled) == EXPECTED


def test_no_running_instance_is_a_table_that_drops_everything_sent_to_the_bridge():
    text = firewall.ruleset("whiptest7", [inst("i-x", "10.1.0.4", ("sg-proxy",), state="stopped")], GROUPS)
    assert "\tmap hosts {\n\t\ttype ipv4_addr : verdict\n\t}\n" in text
    assert "table inet whipup-whiptest7 {" in text and 'oifname "whiptest7" jump to-hosts' in text
    assert "chain i-" not in text and "chain sg-" not in text and "\tset " not in text


@pytest.mark.parametrize("perm, match", [
    ({"IpProtocol": "-1"}, ""),
    ({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}, "tcp dport 22"),
    ({"IpProtocol": "6", "FromPort": 1000, "ToPort": 2000}, "tcp dport 1000-2000"),
    ({"IpProtocol": "udp", "FromPort": -1, "ToPort": -1}, "meta l4proto udp"),
    ({"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1}, "meta l4proto icmp"),
    ({"IpProtocol": "1", "FromPort": 8, "ToPort": 0}, "icmp type 8 icmp code 0"),
    ({"IpProtocol": "47"}, "meta l4proto 47"),
    ({"IpProtocol": "icmpv6", "FromPort": -1, "ToPort": -1}, None),
    ({"IpProtocol": "58"}, None),
])
def test_protocols_and_ports(perm, match):
    assert firewall.protocol_match(perm) == match


def test_sources_cidrs_normalised_ipv6_ignored():
    perm = {"IpRanges": [{"CidrIp": "0.0.0.0/0"}, {"CidrIp": "10.1.2.3/16"}, {"CidrIp": "not a cidr"}],
            "Ipv6Ranges": [{"CidrIpv6": "::/0"}], "UserIdGroupPairs": [{"GroupId": "sg-a"}]}
    assert firewall.source_matches(perm) == ["", "ip saddr 10.1.0.0/16", "ip saddr @sg-a"]
    only_v6 = group("sg-6", "six", {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                     "Ipv6Ranges": [{"CidrIpv6": "::/0"}]})
    assert firewall.group_rules(only_v6) == []


class FakeNft:
    def __init__(self, fail: bool = False):
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail = fail
        self.tables: set[str] = set()

    def __call__(self, args, stdin=None):
        self.calls.append((args, stdin))
        if args[0] == "-f":
            if self.fail:
                return SimpleNamespace(returncode=1, stderr="Error: Could not process rule\n")
            self.tables.add("whipup-whipbr0")
        if args[0] == "list":
            return SimpleNamespace(returncode=0 if args[-1] in self.tables else 1, stderr="")
        return SimpleNamespace(returncode=0, stderr="")


def test_an_unchanged_input_is_not_applied_again():
    nft = FakeNft()
    fw = firewall.Firewall(BRIDGE, nft=nft)
    assert fw.sync(INSTANCES, GROUPS) is True
    assert nft.calls == [(["-f", "-"], EXPECTED)]
    assert fw.sync(list(reversed(INSTANCES)), GROUPS) is False          # the same view: nothing run
    assert len(nft.calls) == 1
    revoked = [group("sg-db", "c-db", SSH) if g["GroupId"] == "sg-db" else g for g in GROUPS]
    assert fw.sync(INSTANCES, revoked) is True                          # a rule revoked: applied
    assert len(nft.calls) == 2 and "dport 5432" not in nft.calls[-1][1]
    assert fw.sync(INSTANCES, revoked) is False


def test_a_failed_apply_is_an_error_and_is_tried_again():
    nft = FakeNft(fail=True)
    fw = firewall.Firewall(BRIDGE, nft=nft)
    with pytest.raises(firewall.SandboxError, match=r"nft -f \(table inet whipup-whipbr0\): Error: Could not"):
        fw.sync(INSTANCES, GROUPS)
    nft.fail = False
    assert fw.sync(INSTANCES, GROUPS) is True and len(nft.calls) == 2


def test_a_table_removed_behind_our_back_is_applied_again():
    nft = FakeNft()
    fw = firewall.Firewall(BRIDGE, nft=nft)
    fw.sync(INSTANCES, GROUPS)
    assert fw.check() is True
    nft.tables.clear()
    assert fw.check() is False
    assert fw.sync(INSTANCES, GROUPS) is True


class FakeEc2:
    def __init__(self, groups: list[dict], duplicate: bool = False):
        self.groups, self.duplicate, self.calls = groups, duplicate, []

    def get_paginator(self, name):
        assert name in ("describe_security_groups", "describe_instances", "describe_volumes", "describe_snapshots")
        if name in ("describe_volumes", "describe_snapshots"):     # the step's volumes (none here)
            key = "Volumes" if name == "describe_volumes" else "Snapshots"
            return SimpleNamespace(paginate=lambda **kw: [{key: []}])
        key = "SecurityGroups" if name == "describe_security_groups" else "Reservations"
        value = self.groups if key == "SecurityGroups" else [{"Instances": INSTANCES}]
        return SimpleNamespace(paginate=lambda: [{key: value}])

    def authorize_security_group_ingress(self, **kw):
        self.calls.append(("authorize", kw))
        if self.duplicate:
            raise ClientError({"Error": {"Code": "InvalidPermission.Duplicate"}}, "AuthorizeSecurityGroupIngress")
        self.groups = [dict(g, IpPermissions=g["IpPermissions"] + kw["IpPermissions"])
                       if g["GroupId"] == kw["GroupId"] else g for g in self.groups]

    def create_tags(self, **kw):
        self.calls.append(("tag", kw))
        self.groups = [dict(g, Tags=kw["Tags"]) if g["GroupId"] in kw["Resources"] else g for g in self.groups]


def test_a_default_group_gets_aws_default_rule_once():
    fresh = [group("sg-d", "default"), group("sg-x", "x")]
    ec2 = FakeEc2(fresh)
    assert materializer.seed_default_groups(ec2, ec2.groups) == ["sg-d"]
    assert ec2.calls == [
        ("authorize", {"GroupId": "sg-d", "IpPermissions": [{"IpProtocol": "-1",
                                                             "UserIdGroupPairs": [{"GroupId": "sg-d"}]}]}),
        ("tag", {"Resources": ["sg-d"], "Tags": [{"Key": firewall.SEED_TAG, "Value": "added"}]}),
    ]
    revoked = [dict(g, IpPermissions=[]) for g in ec2.groups]     # the user revokes it: it stays revoked
    assert materializer.seed_default_groups(ec2, revoked) == [] and len(ec2.calls) == 2
    dup = FakeEc2([group("sg-d", "default")], duplicate=True)       # already there (a restart mid-way)
    assert materializer.seed_default_groups(dup, dup.groups) == ["sg-d"] and dup.calls[-1][0] == "tag"


def test_the_table_is_applied_before_any_host_boots(monkeypatch, tmp_path):
    settings = load_settings({"WHIPUP_SANDBOX_STATE": str(tmp_path), "WHIPUP_SANDBOX_BRIDGE": BRIDGE})
    ec2 = FakeEc2(GROUPS)
    m = materializer.Materializer(settings, ec2)
    events = []
    nft = FakeNft()
    m.firewall = firewall.Firewall(BRIDGE, nft=lambda args, stdin=None: (events.append("nft"), nft(args, stdin))[1])
    monkeypatch.setattr(m, "apply", lambda action, target: events.append(action))
    m.step()
    m.step()
    m.pool.shutdown()
    running = [i for i in INSTANCES if i["State"]["Name"] in ("pending", "running")]
    assert events == ["nft"] + ["start"] * len(running) + ["start"] * len(running)   # applied once, first


def test_preflight_names_nftables(monkeypatch):
    monkeypatch.setattr(control.shutil, "which", lambda cmd: None if cmd == "nft" else "/x")
    monkeypatch.setattr(control.os, "geteuid", lambda: 0)
    monkeypatch.setattr(control, "bridge_netfilter", lambda: True)
    with pytest.raises(control.SandboxError, match="apt-get install -y nftables"):
        control.preflight(load_settings({}))


def test_preflight_says_when_bridge_netfilter_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(control.shutil, "which", lambda cmd: "/x")
    monkeypatch.setattr(control.os, "geteuid", lambda: 0)
    monkeypatch.setattr(control, "BRIDGE_SYSCTLS", tmp_path / "bridge")
    monkeypatch.setattr(control.subprocess, "run", lambda *a, **kw: SimpleNamespace(returncode=1))
    with pytest.raises(control.SandboxError, match=r"no bridge netfilter.*modprobe br_netfilter failed"):
        control.preflight(load_settings({}))


def test_loading_br_netfilter_leaves_other_bridges_as_they_were(monkeypatch, tmp_path):
    sysctls = tmp_path / "bridge"
    loaded = []

    def modprobe(argv, **kw):
        loaded.append(argv)
        sysctls.mkdir()
        for name in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
            (sysctls / name).write_text("1\n")       # the module's machine-wide default
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(control, "BRIDGE_SYSCTLS", sysctls)
    monkeypatch.setattr(control.subprocess, "run", modprobe)
    assert control.bridge_netfilter() is True
    assert loaded == [["modprobe", "br_netfilter"]]
    assert {p.name: p.read_text() for p in sysctls.iterdir()} == {
        "bridge-nf-call-iptables": "0\n", "bridge-nf-call-ip6tables": "0\n", "bridge-nf-call-arptables": "0\n"}
    assert control.bridge_netfilter() is True and len(loaded) == 1        # loaded already: untouched


def test_only_our_bridge_hands_its_packets_to_the_ip_hooks():
    assert net.bridge_up_cmds("whiptest1", "10.255.249.254")[0] == [
        "ip", "link", "add", "whiptest1", "type", "bridge", "nf_call_iptables", "1", "nf_call_ip6tables", "1"]
    assert net.bridge_netfilter_cmd("whiptest1") == [
        "ip", "link", "set", "whiptest1", "type", "bridge", "nf_call_iptables", "1", "nf_call_ip6tables", "1"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="nft -c needs root and nftables")
def test_the_kernel_accepts_the_ruleset():
    """`nft -c` checks the text against the kernel without changing anything."""
    text = firewall.ruleset("whipunit0", INSTANCES, GROUPS)
    p = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_hosts_reach_this_machines_bridge_services_unfiltered():
    """The proxy and the git server listen on the bridge address: what hosts send there reaches this
    machine's input, which the table never hooks; only what goes out onto the bridge (to a host) is filtered."""
    text = firewall.ruleset(BRIDGE, INSTANCES, GROUPS)
    hooked = [line.split(" hook ")[1].split()[0] for line in text.splitlines() if " hook " in line]
    assert hooked == ["forward", "output"]
    for chain in ("forward", "output"):
        body = text.split(f"\tchain {chain} {{\n")[1].split("\t}")[0].splitlines()[1:]
        assert body == [f'\t\toifname "{BRIDGE}" jump to-hosts']
