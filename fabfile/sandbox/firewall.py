"""Security groups as packet filters: the API's groups and instances -> one nftables table per sandbox.

Hosts on one bridge talk at layer 2, so their packets never cross this machine's IP stack by themselves.
The bridge's own netfilter option (`nf_call_iptables`/`nf_call_ip6tables`, set on our bridge only) hands
its bridged IPv4/IPv6 packets to the inet family's hooks, conntrack included. One table per sandbox,
`inet whipup-<bridge>` (so sandboxes side by side each have theirs), built by `ruleset`:

  forward   host to host (bridged), and anything routed onto the bridge  \\  oifname <bridge>:
  output    this machine to a host                                       /   jump to-hosts
  to-hosts  IPv6 dropped (the VPC has none); replies of tracked flows (established, related) accepted;
            `ip daddr vmap @hosts` jumps to the destination host's chain; anything else dropped
  i-...     a running instance: a jump to each of its groups' chains
  sg-...    a group: one `accept` per ingress rule and source, the source a CIDR or `ip saddr @sg-...`,
            the set of the private IPs of the running instances in that source group

Egress is open, as AWS's default egress rule: what hosts send (to each other, to this machine: the bridge's
proxy and git server) is only ever looked at as the destination's ingress or as a reply. ARP never reaches
an inet table, so neighbour discovery works; ICMP echo needs a rule, as on AWS; ICMP errors of tracked flows
are `related`. Connections already open when a rule is revoked go on (AWS's tracked connections do too).

The materializer applies a changed ruleset with one `nft -f` (a single transaction: the table is replaced
whole, never half-written) and nothing when it is unchanged.
"""
from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass

from .errors import SandboxError

RUN = ("pending", "running")
PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}
# A VPC's default group allows all traffic from its own members, as on AWS (moto's has no rule): the
# materializer adds that rule once per default group and tags the group, so a revoked rule stays revoked.
SEED_TAG = "whipup:sandbox-default-rule"


@dataclass(frozen=True)
class Host:
    instance_id: str
    ip: str
    groups: tuple[str, ...]


def table_name(bridge: str) -> str:
    return f"whipup-{bridge}"


def _name(identifier: str) -> str:
    """An API id as an nft chain or set name (ids are i-/sg- and hex; anything else cannot break the text)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", identifier)


def _ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def instance_groups(inst: dict, default_by_vpc: dict[str, str]) -> tuple[str, ...]:
    """The instance's groups (its own list and its interfaces'); none: its VPC's default group, as on AWS."""
    ids = {g["GroupId"] for g in inst.get("SecurityGroups") or []}
    for eni in inst.get("NetworkInterfaces") or []:
        ids.update(g["GroupId"] for g in eni.get("Groups") or [])
    if not ids and inst.get("VpcId") in default_by_vpc:
        ids = {default_by_vpc[inst["VpcId"]]}
    return tuple(sorted(ids))


def live_hosts(instances: list[dict], groups: list[dict]) -> list[Host]:
    """Pending and running instances with an IPv4 private address, by instance id."""
    default_by_vpc = {g["VpcId"]: g["GroupId"] for g in groups if g.get("GroupName") == "default" and g.get("VpcId")}
    out = []
    for inst in instances:
        ip = inst.get("PrivateIpAddress")
        if inst["State"]["Name"] in RUN and ip and _ipv4(ip):
            out.append(Host(inst["InstanceId"], ip, instance_groups(inst, default_by_vpc)))
    return sorted(out, key=lambda h: h.instance_id)


def protocol_match(perm: dict) -> str | None:
    """The match of a permission's protocol and ports: '' for all traffic, None if no IPv4 packet matches."""
    proto = str(perm.get("IpProtocol", "-1")).lower()
    proto = PROTOCOLS.get(proto, proto)
    low, high = perm.get("FromPort"), perm.get("ToPort")
    if proto == "-1":
        return ""
    if proto in ("tcp", "udp"):
        if low is None or low < 0:
            return f"meta l4proto {proto}"
        return f"{proto} dport {low}" if low == high else f"{proto} dport {low}-{high}"
    if proto == "icmp":   # FromPort is the ICMP type, ToPort the code; -1: any
        if low is None or low < 0:
            return "meta l4proto icmp"
        return f"icmp type {low}" + ("" if high is None or high < 0 else f" icmp code {high}")
    if proto.isdigit() and proto != "58":
        return f"meta l4proto {int(proto)}"
    return None           # icmpv6, or a protocol name nft would not know: the hosts have no IPv6


def source_matches(perm: dict) -> list[str]:
    """One source match per IPv4 CIDR ('' for 0.0.0.0/0) and per source group; IPv6 ranges match nothing."""
    out = []
    for item in perm.get("IpRanges") or []:
        try:
            net = ipaddress.ip_network(item["CidrIp"], strict=False)
        except ValueError:
            continue
        out.append("" if net.prefixlen == 0 else f"ip saddr {net}")
    out += [f"ip saddr @{_name(p['GroupId'])}" for p in perm.get("UserIdGroupPairs") or [] if p.get("GroupId")]
    return out


def group_rules(group: dict) -> list[str]:
    """A group's ingress permissions as accept rules, sorted (the API's order carries no meaning)."""
    rules = set()
    for perm in group.get("IpPermissions") or []:
        proto = protocol_match(perm)
        if proto is None:
            continue
        for source in source_matches(perm):
            rules.add(" ".join(part for part in (source, proto, "accept") if part))
    return sorted(rules)


def source_groups(group: dict) -> set[str]:
    return {p["GroupId"] for perm in group.get("IpPermissions") or []
            for p in perm.get("UserIdGroupPairs") or [] if p.get("GroupId")}


def _elements(items: list[str]) -> list[str]:
    return [f"\t\telements = {{ {', '.join(items)} }}"] if items else []


def _by_address(ips) -> list[str]:
    return sorted(ips, key=ipaddress.ip_address)


def _chain(name: str, body: list[str], hook: str | None = None) -> list[str]:
    head = [f"\t\ttype filter hook {hook} priority filter; policy accept;"] if hook else []
    return [f"\tchain {name} {{", *head, *(f"\t\t{line}" for line in body), "\t}"]


def ruleset(bridge: str, instances: list[dict], groups: list[dict]) -> str:
    """The sandbox's table for `nft -f`: from DescribeInstances' instances and DescribeSecurityGroups' groups."""
    hosts = live_hosts(instances, groups)
    by_id = {g["GroupId"]: g for g in groups}
    used = sorted({gid for h in hosts for gid in h.groups})
    sources = sorted(set().union(*(source_groups(by_id.get(gid, {})) for gid in used)))
    table = f"inet {table_name(bridge)}"
    lines = [f"# security groups of the local cloud on bridge {bridge}: written by the materializer",
             f"table {table}", f"delete table {table}", f"table {table} {{"]
    for gid in sources:
        members = _by_address(h.ip for h in hosts if gid in h.groups)
        lines += [f"\tset {_name(gid)} {{", "\t\ttype ipv4_addr", *_elements(members), "\t}"]
    by_ip = {h.ip: h for h in hosts}
    lines += ["\tmap hosts {", "\t\ttype ipv4_addr : verdict",
              *_elements([f"{ip} : jump {_name(by_ip[ip].instance_id)}" for ip in _by_address(by_ip)]), "\t}"]
    to_hosts = [f'oifname "{bridge}" jump to-hosts']
    lines += _chain("forward", to_hosts, "forward") + _chain("output", to_hosts, "output")
    lines += _chain("to-hosts", ["meta nfproto ipv6 drop", "ct state established,related accept",
                                 "ip daddr vmap @hosts", "drop"])
    for h in hosts:
        lines += _chain(_name(h.instance_id), [f"jump {_name(gid)}" for gid in h.groups])
    for gid in used:
        lines += _chain(_name(gid), group_rules(by_id.get(gid, {})))
    return "\n".join(lines + ["}"]) + "\n"


def unseeded_default_groups(groups: list[dict]) -> list[str]:
    """Default groups that have not had AWS's default ingress rule added yet (see SEED_TAG)."""
    return sorted(g["GroupId"] for g in groups if g.get("GroupName") == "default"
                  and not any(t.get("Key") == SEED_TAG for t in g.get("Tags") or []))


def default_rule(group_id: str) -> list[dict]:
    """AWS's default group ingress: all traffic from the group's own members."""
    return [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}]


def _nft(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True)


class Firewall:
    """The sandbox's table as last applied: `sync` applies a ruleset only when it differs."""

    def __init__(self, bridge: str, nft=_nft):
        self.bridge = bridge
        self.nft = nft
        self.applied: str | None = None

    def sync(self, instances: list[dict], groups: list[dict]) -> bool:
        """Apply the ruleset of this API view if it changed; True if it was applied."""
        text = ruleset(self.bridge, instances, groups)
        if text == self.applied:
            return False
        p = self.nft(["-f", "-"], text)
        if p.returncode != 0:
            raise SandboxError(f"nft -f (table inet {table_name(self.bridge)}): {p.stderr.strip()}")
        self.applied = text
        return True

    def present(self) -> bool:
        return self.nft(["list", "table", "inet", table_name(self.bridge)]).returncode == 0

    def check(self) -> bool:
        """False (and the next sync applies again) if the table is gone: someone removed it."""
        if self.applied is not None and not self.present():
            self.applied = None
            return False
        return True

    def remove(self) -> bool:
        return self.nft(["delete", "table", "inet", table_name(self.bridge)]).returncode == 0
