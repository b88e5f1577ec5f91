"""The local cloud's DNS: the hosted zones that moto's Route53 serves, answered by dnsmasq on the bridge.

Two processes, both started by `sandbox.up`:
  dnsmasq   (Debian's dnsmasq-base) on <bridge address>:53 only, no upstream server (--no-resolv, no
            --server: a name outside the zones is refused, never asked of anyone else), its records read
            from one hosts file in a directory it watches (--hostsdir: changes are picked up by inotify);
  dns sync  (`python -m fabfile.sandbox.dns`) polls Route53 and EC2 every second and rewrites that file
            only when it changes.
An A record holding an elastic (public) IP is answered with the private IP of the instance it is
associated with, as the VPC's resolver answers a public name inside the VPC: on the bridge that is the
address that reaches the host. The hosts use it as their resolver (/etc/resolv.conf, guest_boot.py), and
this machine can ask it (`dig @<bridge address> shop.test`).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from . import net
from .api import WATCHER_AGENT, due, mark_of
from .settings import SandboxSettings, load_settings

log = logging.getLogger("whipup.dns")
HOSTS_FILE = "route53"


def hosts_dir(settings: SandboxSettings) -> Path:
    return settings.run_dir / "dns"


def dnsmasq_argv(settings: SandboxSettings) -> list[str]:
    return ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--bind-interfaces", f"--listen-address={settings.bridge_address}",
            f"--port={settings.dns_port}", f"--hostsdir={hosts_dir(settings)}", "--local-ttl=5",
            "--user=root", "--pid-file=", "--log-facility=-"]


def address_map(instances: list[dict]) -> dict[str, str]:
    """Public (elastic) IP -> private IP of the pending and running instances."""
    return {i["PublicIpAddress"]: i["PrivateIpAddress"] for i in instances
            if i.get("PublicIpAddress") and i.get("PrivateIpAddress")
            and i.get("State", {}).get("Name") in ("pending", "running")}


def hosts_text(records: list[dict], addresses: dict[str, str]) -> str:
    """The A records of every zone as a hosts file (`address name`, sorted), elastic IPs translated."""
    lines = set()
    for r in records:
        if r.get("Type") != "A":
            continue
        name = r["Name"].rstrip(".").lower().replace("\\052", "*")
        if "*" in name:
            continue          # a wildcard has no hosts-file form
        for v in r.get("ResourceRecords") or []:
            lines.add((addresses.get(v["Value"], v["Value"]), name))
    return "".join(f"{ip} {name}\n" for ip, name in sorted(lines, key=lambda x: (x[1], x[0])))


def a_query(name: str, ident: int = 0x5A5A) -> bytes:
    """A DNS query (RFC 1035) for `name`'s A records, recursion desired."""
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split("."))
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", 1, 1)


def _skip_name(msg: bytes, i: int) -> int:
    while msg[i]:
        if msg[i] & 0xC0 == 0xC0:
            return i + 2
        i += msg[i] + 1
    return i + 1


def parse_a_answer(msg: bytes, ident: int = 0x5A5A) -> tuple[int, list[str]]:
    """(rcode, the A records' addresses) of an answer to `a_query`."""
    got, flags, qd, an = struct.unpack(">HHHH", msg[:8])
    if got != ident or not flags & 0x8000:
        raise ValueError("not an answer to our query")
    i = 12
    for _ in range(qd):
        i = _skip_name(msg, i) + 4
    out = []
    for _ in range(an):
        i = _skip_name(msg, i)
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", msg[i:i + 10])
        i += 10
        if rtype == 1 and length == 4:
            out.append(socket.inet_ntoa(msg[i:i + 4]))
        i += length
    return flags & 0x000F, out


def resolve(settings: SandboxSettings, name: str, timeout: float = 2.0) -> list[str]:
    """`name`'s addresses as the local cloud's DNS answers them (what its hosts see); [] for none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(a_query(name), (settings.bridge_address, settings.dns_port))
        return parse_a_answer(s.recvfrom(4096)[0])[1]


def answers(settings: SandboxSettings) -> bool:
    """dnsmasq answers on the bridge address (asked only once that address is this machine's own)."""
    if net.routed_via(settings.bridge_address) != "lo":
        return False
    try:
        resolve(settings, "whipup-probe.invalid", timeout=0.5)
        return True
    except (OSError, ValueError):
        return False


def all_records(route53) -> list[dict]:
    out = []
    for page in route53.get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            for rpage in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone["Id"]):
                out.extend(rpage["ResourceRecordSets"])
    return out


def write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name("." + path.name + ".tmp")     # a dot file: dnsmasq skips it
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


class Sync:
    def __init__(self, settings: SandboxSettings, route53, ec2):
        self.settings, self.route53, self.ec2 = settings, route53, ec2
        self.stopping = threading.Event()

    def step(self) -> bool:
        from .materializer import list_instances

        text = hosts_text(all_records(self.route53), address_map(list_instances(self.ec2)))
        changed = write_if_changed(hosts_dir(self.settings) / HOSTS_FILE, text)
        if changed:
            log.info("records: %s", "; ".join(text.strip().splitlines()) or "none")
        return changed

    def run(self, interval: float = 0.2) -> None:
        """A step whenever the API's mark moved (sandbox/api.py), else every IDLE_RECONCILE seconds."""
        hosts_dir(self.settings).mkdir(parents=True, exist_ok=True)
        seen, last = None, 0.0
        while not self.stopping.is_set():
            mark = mark_of(self.settings.api_mark)
            if due(mark, seen, time.monotonic() - last):
                seen, last = mark, time.monotonic()
                try:
                    self.step()
                except Exception as exc:  # the API may be restarting: keep trying
                    log.warning("sync failed: %s", exc)
                    seen = None
            self.stopping.wait(interval)


def clients(settings: SandboxSettings):
    import boto3

    from botocore.config import Config as BotoConfig

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name=settings.region)
    own = BotoConfig(user_agent_extra=WATCHER_AGENT)           # its requests leave the API's mark alone
    return (session.client("route53", endpoint_url=settings.endpoint, config=own),
            session.client("ec2", endpoint_url=settings.endpoint, config=own))


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings()
    sync = Sync(settings, *clients(settings))
    signal.signal(signal.SIGTERM, lambda *_: sync.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: sync.stopping.set())
    sync.run()


if __name__ == "__main__":
    main()
