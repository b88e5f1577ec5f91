"""The sandbox's network, as pure command builders (argv lists) plus a thin runner.

One bridge in this machine's namespace carries the proxy address. Every host
gets a network namespace with a veth whose outer end is on the bridge. A host
has no default route: the private ranges are on-link (so hosts reach each
other on their private IPs, whatever address the API gave them) and the bridge
address is routed to; so the only way out is the forward proxy. The bridge hands its packets to
netfilter's IP hooks (br_netfilter, for this bridge only), where the security groups are enforced
(firewall.py).
"""
from __future__ import annotations

import hashlib
import subprocess

from .errors import SandboxError

PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
VETH_PREFIX = "wv"


def netns_name(bridge: str, instance_id: str) -> str:
    """Namespaces carry their sandbox's bridge name, so two sandboxes never touch each other's."""
    return f"{bridge}-{instance_id}"


def veth_name(bridge: str, instance_id: str) -> str:
    # interface names are at most 15 characters
    return VETH_PREFIX + hashlib.sha1(f"{bridge}/{instance_id}".encode()).hexdigest()[:12]


def mac_address(bridge: str, instance_id: str) -> str:
    """The host's eth0 MAC: fixed for the instance's life, as an ENI's is across stop and start (a
    locally administered unicast address). A new MAC at every boot would leave the other hosts' (and this
    machine's) neighbour caches pointing at the old one: connections to a restarted host would hang until
    those entries expired (up to a minute)."""
    digest = hashlib.sha1(f"mac/{bridge}/{instance_id}".encode()).hexdigest()
    return "02:" + ":".join(digest[i:i + 2] for i in range(0, 10, 2))


# The bridge's packets go through netfilter's IPv4/IPv6 hooks (the inet family, with conntrack): the
# security groups' table sees host-to-host traffic there. A per-bridge option: other bridges keep
# whatever the machine-wide net.bridge.bridge-nf-call-* settings say.
BRIDGE_NETFILTER = ["nf_call_iptables", "1", "nf_call_ip6tables", "1"]


def bridge_up_cmds(bridge: str, address: str) -> list[list[str]]:
    return [
        ["ip", "link", "add", bridge, "type", "bridge", *BRIDGE_NETFILTER],
        ["ip", "addr", "add", f"{address}/32", "dev", bridge],
        ["ip", "link", "set", bridge, "up"],
    ]


def bridge_netfilter_cmd(bridge: str) -> list[str]:
    """For a bridge made before security groups were enforced: the same option, set again (idempotent)."""
    return ["ip", "link", "set", bridge, "type", "bridge", *BRIDGE_NETFILTER]


def bridge_down_cmds(bridge: str) -> list[list[str]]:
    return [["ip", "link", "del", bridge]]


def host_net_cmds(instance_id: str, ip: str, bridge: str, bridge_address: str) -> list[list[str]]:
    ns, veth = netns_name(bridge, instance_id), veth_name(bridge, instance_id)
    cmds = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "address",
         mac_address(bridge, instance_id), "netns", ns],
        ["ip", "link", "set", veth, "master", bridge, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0"],
        ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ["ip", "-n", ns, "route", "add", f"{bridge_address}/32", "dev", "eth0"],
    ]
    cmds += [["ip", "-n", ns, "route", "add", net, "dev", "eth0"] for net in PRIVATE_RANGES]
    # `add`, not `replace`: an address another sandbox already routes is a clash, reported, never taken over
    cmds.append(host_route_cmd(ip, bridge, bridge_address))
    return cmds


def host_net_down_cmds(instance_id: str, ip: str | None, bridge: str) -> list[list[str]]:
    cmds = []
    if ip:
        cmds.append(["ip", "route", "del", f"{ip}/32", "dev", bridge])
    cmds += [
        ["ip", "link", "del", veth_name(bridge, instance_id)],
        ["ip", "netns", "del", netns_name(bridge, instance_id)],
    ]
    return cmds


def parse_netns_list(output: str) -> list[str]:
    """`ip netns list` prints `name` or `name (id: N)` per line."""
    return [line.split()[0] for line in output.splitlines() if line.strip()]


def parse_link_names(output: str) -> list[str]:
    """`ip -o link show` lines: `N: name@peer: <...> ...`."""
    names = []
    for line in output.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def parse_route_get(output: str) -> str | None:
    """The device of `ip route get ADDR` output (`10.1.2.3 dev whipbr0 src ...`)."""
    fields = output.split()
    return fields[fields.index("dev") + 1] if "dev" in fields[:-1] else None


def routed_via(address: str) -> str | None:
    """Which interface traffic to `address` would leave by (None if unroutable).

    Callers check this before connecting to a sandbox host: until the
    materializer has routed an address to the bridge, a packet to it would
    follow this machine's default route out, and the sandbox must never send
    traffic anywhere but to its own hosts.
    """
    p = run(["ip", "route", "get", address], check=False)
    return parse_route_get(p.stdout) if p.returncode == 0 else None


def parse_host_routes(output: str) -> set[str]:
    """Addresses with a /32 route in `ip route show dev BRIDGE` output (`172.31.0.4 scope link src ...`)."""
    out = set()
    for line in output.splitlines():
        first = line.split()[0] if line.strip() else ""
        if first and "/" not in first and first[0].isdigit():
            out.add(first)
        elif first.endswith("/32"):
            out.add(first[:-3])
    return out


def bridge_routes(bridge: str) -> set[str]:
    p = run(["ip", "route", "show", "dev", bridge], check=False)
    return parse_host_routes(p.stdout) if p.returncode == 0 else set()


def host_route_cmd(ip: str, bridge: str, bridge_address: str) -> list[str]:
    return ["ip", "route", "add", f"{ip}/32", "dev", bridge, "src", bridge_address]


def route_is_specific(address: str) -> bool:
    """Whether this machine has a /32 route for `address` (another sandbox's host)."""
    p = run(["ip", "route", "show", f"{address}/32"], check=False)
    return bool(p.stdout.strip())


def run(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SandboxError(f"{' '.join(cmd)}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def run_all(cmds: list[list[str]], *, check: bool = True) -> None:
    for cmd in cmds:
        run(cmd, check=check)


def our_netns(bridge: str) -> list[str]:
    return [n for n in parse_netns_list(run(["ip", "netns", "list"]).stdout) if n.startswith(bridge + "-")]


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def bridge_ports(bridge: str) -> list[str]:
    p = run(["ip", "-o", "link", "show", "master", bridge], check=False)
    return parse_link_names(p.stdout) if p.returncode == 0 else []
