"""The site's names in Route53: the hosted zone found (or made) for each name, A records to the proxies'
elastic IPs, upserted only when they differ (a proxy rebuilt with another address moves them; a re-run with
everything right makes no call that changes anything).

Pure parts (`zone_for`, `zone_name`, `record_changes`) are tested by equality; `SiteRecords` is the thin
runner around a route53 client passed in.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import ProvisionError
from ..tls.config import SiteConfig

TTL = 60       # short: a rebuilt proxy's new address is seen within a minute


def fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def zone_for(name: str, zones: Iterable[dict]) -> dict | None:
    """The hosted zone holding `name`: the public zone whose name is its longest suffix (None: none)."""
    name = fqdn(name)
    best = None
    for z in zones:
        if (z.get("Config") or {}).get("PrivateZone"):
            continue
        zn = fqdn(z["Name"])
        if (name == zn or name.endswith("." + zn)) and (best is None or len(zn) > len(fqdn(best["Name"]))):
            best = z
    return best


def zone_name(name: str) -> str:
    """The zone whipup makes when no zone holds `name`: the name itself (its NS records are printed, for the
    registrar's delegation)."""
    return fqdn(name)


def caller_reference(cluster: str, zone: str) -> str:
    """CreateHostedZone's idempotency token: the same cluster and zone always send the same one."""
    return "whipup-" + hashlib.sha256(f"{cluster}\n{zone}".encode()).hexdigest()[:32]


def record_changes(names: Iterable[str], addresses: Iterable[str], records: Iterable[dict]) -> list[dict]:
    """UPSERT changes for the names whose A record is missing or holds other addresses."""
    want = sorted(set(addresses))
    have = {fqdn(r["Name"]): sorted(v["Value"] for v in r.get("ResourceRecords") or [])
            for r in records if r.get("Type") == "A"}
    changes = []
    for name in names:
        if have.get(fqdn(name)) != want:
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {
                "Name": fqdn(name), "Type": "A", "TTL": TTL, "ResourceRecords": [{"Value": a} for a in want]}})
    return changes


@dataclass
class SiteRecords:
    route53: object
    cluster: str
    log: Callable[[str], None] = print

    def zones(self) -> list[dict]:
        out = []
        for page in self.route53.get_paginator("list_hosted_zones").paginate():
            out.extend(page["HostedZones"])
        return out

    def ensure_zone(self, name: str, zones: list[dict]) -> dict:
        found = zone_for(name, zones)
        if found is not None:
            return found
        zone = zone_name(name)
        made = self.route53.create_hosted_zone(
            Name=zone, CallerReference=caller_reference(self.cluster, zone),
            HostedZoneConfig={"Comment": f"whipup {self.cluster}", "PrivateZone": False})
        servers = ", ".join(made.get("DelegationSet", {}).get("NameServers", []))
        self.log(f"dns: hosted zone {zone} created ({made['HostedZone']['Id']})"
                 + (f"; delegate it to {servers} at your registrar" if servers else ""))
        zones.append(made["HostedZone"])
        return made["HostedZone"]

    def records(self, zone_id: str) -> list[dict]:
        out = []
        for page in self.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
            out.extend(page["ResourceRecordSets"])
        return out

    def ensure(self, site: SiteConfig, addresses: list[str]) -> int:
        """Every name of the site points at `addresses`; the number of records changed."""
        if not site.names:
            return 0
        if not addresses:
            raise ProvisionError(f"dns: {', '.join(site.names)}: the proxy has no public address to point at "
                                 "(give the proxy role elastic_ip: true)")
        zones, by_zone = self.zones(), {}
        for name in site.names:
            by_zone.setdefault(self.ensure_zone(name, zones)["Id"], []).append(name)
        changed = 0
        for zone_id, names in by_zone.items():
            changes = record_changes(names, addresses, self.records(zone_id))
            if changes:
                self.route53.change_resource_record_sets(
                    HostedZoneId=zone_id, ChangeBatch={"Comment": f"whipup {self.cluster}", "Changes": changes})
                changed += len(changes)
                for c in changes:
                    self.log(f"dns: {c['ResourceRecordSet']['Name'].rstrip('.')} A {', '.join(addresses)}")
        if not changed:
            self.log(f"dns: {', '.join(site.names)} -> {', '.join(addresses)}: already ok")
        return changed


    def remove(self, site: SiteConfig) -> int:
        """Delete the site's A records (the zone stays: it may hold the user's other records); the number
        deleted. A name left pointing at a released elastic IP could be taken over by whoever gets it next."""
        zones, deleted = self.zones(), 0
        for name in site.names:
            zone = zone_for(name, zones)
            if zone is None:
                continue
            for r in self.records(zone["Id"]):
                if r.get("Type") == "A" and fqdn(r["Name"]) == fqdn(name):
                    self.route53.change_resource_record_sets(HostedZoneId=zone["Id"], ChangeBatch={
                        "Comment": f"whipup {self.cluster}", "Changes": [{"Action": "DELETE", "ResourceRecordSet": r}]})
                    self.log(f"dns: {name} A record deleted")
                    deleted += 1
        return deleted


def proxy_addresses(nodes) -> list[str]:
    """The public (elastic) addresses of the running proxy nodes, in index order."""
    return [n.public_ip for n in sorted(nodes, key=lambda n: n.index)
            if n.role == "proxy" and n.state == "running" and n.public_ip]
