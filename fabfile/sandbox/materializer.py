"""The materializer: makes moto's instance list real, one host per instance.

It reads the local cloud's DescribeInstances (when the API says something changed: sandbox/api.py, and
every IDLE_RECONCILE seconds) and reconciles:
  pending/running        -> host created (first time) and booted
  stopping/stopped       -> host's processes stopped, disk kept
  shutting-down/terminated, or unknown to the API -> host and disk removed
  volumes and snapshots  -> disks of their own, attached as block devices (volumes.py)
and, before any host is booted, turns the API's security groups into the sandbox's nftables table
(firewall.py), applied only when it changed.
State lives on disk (hosts/<id>/host.json, launcher.pid), so a restarted
materializer picks up the hosts that are already running.

Run: python -m fabfile.sandbox.materializer   (sandbox.up does it)
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from ..debian import RELEASES, sandbox_image_name
from . import firewall, hosts, net, volumes
from .api import WATCHER_AGENT, due, mark_of
from .errors import SandboxError
from .settings import SandboxSettings, load_settings

log = logging.getLogger("whipup.materializer")

RUN = ("pending", "running")
CHECK_EVERY = 2.0         # seconds between two checks of the hosts' routes and the packet filter
STOP = ("stopping", "stopped")
GONE = ("shutting-down", "terminated")


def desired_actions(instances: list[dict], present: set[str], running: set[str]) -> list[tuple[str, dict | str]]:
    """Pure reconcile: API view + host view -> [(action, instance-or-id)]."""
    actions: list[tuple[str, dict | str]] = []
    seen = set()
    for inst in instances:
        iid, state = inst["InstanceId"], inst["State"]["Name"]
        seen.add(iid)
        if state in RUN and iid not in running:
            actions.append(("start", inst))
        elif state in STOP and iid in running:
            actions.append(("stop", iid))
        elif state in GONE and iid in present:
            actions.append(("destroy", iid))
    for iid in sorted(present - seen):
        actions.append(("destroy", iid))
    return actions


def image_key(image_name: str | None) -> str | None:
    """The image tree (debian-12, ...) of one of the sandbox's AMI names; None for any other image."""
    return next((r.key for r in RELEASES if sandbox_image_name(r) == image_name), None)


def ec2_client(settings: SandboxSettings):
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name=settings.region).client(
        "ec2", endpoint_url=settings.endpoint,
        config=BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10,
                          user_agent_extra=WATCHER_AGENT))     # its own requests leave the API's mark alone



def list_instances(ec2) -> list[dict]:
    out = []
    for page in ec2.get_paginator("describe_instances").paginate():
        for res in page["Reservations"]:
            out.extend(res["Instances"])
    return out


def list_groups(ec2) -> list[dict]:
    out = []
    for page in ec2.get_paginator("describe_security_groups").paginate():
        out.extend(page["SecurityGroups"])
    return out


def seed_default_groups(ec2, groups: list[dict]) -> list[str]:
    """Give every VPC's default group AWS's default ingress rule (all traffic from its members), once."""
    seeded = firewall.unseeded_default_groups(groups)
    for gid in seeded:
        try:
            ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=firewall.default_rule(gid))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidPermission.Duplicate":
                raise
        ec2.create_tags(Resources=[gid], Tags=[{"Key": firewall.SEED_TAG, "Value": "added"}])
        log.info("%s: default group: ingress from its own members allowed, as on AWS", gid)
    return seeded


class Materializer:
    def __init__(self, settings: SandboxSettings, ec2):
        self.settings = settings
        self.ec2 = ec2
        self.stopping = threading.Event()
        self.children = []  # Popen of launchers we started: reaped as they exit
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.firewall = firewall.Firewall(settings.bridge)
        self.image_names: dict[str, str] = {}   # AMI id -> name, of the images instances were launched from

    def image_of(self, inst: dict) -> str:
        ami = inst.get("ImageId", "")
        if ami not in self.image_names:
            found = self.ec2.describe_images(ImageIds=[ami])["Images"] if ami else []
            self.image_names[ami] = found[0].get("Name", "") if found else ""
        key = image_key(self.image_names[ami])
        if key is None:
            known = ", ".join(sandbox_image_name(r) for r in RELEASES)
            raise SandboxError(f"{inst['InstanceId']}: launched from {ami or 'no image'} "
                               f"({self.image_names[ami] or 'unknown'}), not a local cloud image ({known})")
        return key

    def spec(self, inst: dict) -> hosts.HostSpec:
        ip = inst.get("PrivateIpAddress")
        if not ip:
            raise SandboxError(f"{inst['InstanceId']}: the API reports no private IP")
        return hosts.HostSpec(inst["InstanceId"], ip, inst.get("PrivateDnsName") or inst["InstanceId"],
                              image=self.image_of(inst))

    def user_data(self, instance_id: str) -> bytes | None:
        attr = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        return hosts.decode_user_data(attr.get("UserData", {}).get("Value"))

    def apply(self, action: str, target) -> None:
        s = self.settings
        if action == "start":
            spec = self.spec(target)
            ud = None if hosts.read_state(s, spec.instance_id) else self.user_data(spec.instance_id)
            p = hosts.start(s, spec, ud, log=lambda m: log.info("%s: %s", spec.instance_id, m))
            if p is not None:
                self.children.append(p)
                log.info("%s: booted (%s, %s)", spec.instance_id, spec.private_ip, spec.hostname)
        elif action == "stop":
            hosts.stop(s, target)
            log.info("%s: stopped (disk kept)", target)
        elif action == "destroy":
            hosts.destroy(s, target)
            log.info("%s: terminated (host and disk removed)", target)

    def repair_routes(self, running: set[str]) -> None:
        """Put back the /32 route of a running host if something removed it (another sandbox, a person)."""
        routed = net.bridge_routes(self.settings.bridge)
        for iid in running:
            if not hosts.is_running(self.settings, iid):   # stopped by this very step: its route went on purpose
                continue
            ip = (hosts.read_state(self.settings, iid) or {}).get("private_ip")
            if ip and ip not in routed and not net.route_is_specific(ip):
                net.run(net.host_route_cmd(ip, self.settings.bridge, self.settings.bridge_address), check=False)
                log.warning("%s: route to %s was missing: restored", iid, ip)

    def sync_firewall(self, instances: list[dict]) -> None:
        """The security groups as the sandbox's packet filter, before any host boots behind it."""
        groups = list_groups(self.ec2)
        if seed_default_groups(self.ec2, groups):
            groups = list_groups(self.ec2)
        if self.firewall.sync(instances, groups):
            live = firewall.live_hosts(instances, groups)
            log.info("security groups: table inet %s applied (%d host(s), %d group(s))",
                     firewall.table_name(self.settings.bridge), len(live),
                     len({g for h in live for g in h.groups}))

    def step(self) -> set[str]:
        """One reconcile; returns the ids of the hosts that were running before it."""
        instances = list_instances(self.ec2)
        self.sync_firewall(instances)
        present = set(hosts.known_hosts(self.settings))
        running = {i for i in present if hosts.is_running(self.settings, i)}
        actions = desired_actions(instances, present, running)
        futures = [(a, t, self.pool.submit(self.apply, a, t)) for a, t in actions]
        for action, target, fut in futures:
            try:
                fut.result()
            except Exception as exc:
                iid = target["InstanceId"] if isinstance(target, dict) else target
                log.error("%s: %s failed: %s", iid, action, exc)
        self.children = [p for p in self.children if p.poll() is None]
        volumes.reconcile(self.settings, self.ec2, instances)
        return running

    def run(self) -> None:
        """Reconcile whenever the API's mark moved (else every IDLE_RECONCILE s); the routes and the
        packet filter checked every CHECK_EVERY s."""
        log.info("materializer up: endpoint %s, region %s", self.settings.endpoint, self.settings.region)
        seen, last, checked, running = None, 0.0, time.monotonic(), set()
        while not self.stopping.is_set():
            try:
                mark = mark_of(self.settings.api_mark)
                if due(mark, seen, time.monotonic() - last):
                    seen, last = mark, time.monotonic()       # read before: a change during the step counts
                    running = self.step()
                if time.monotonic() - checked >= CHECK_EVERY:
                    checked = time.monotonic()
                    self.repair_routes(running)
                    if not self.firewall.check():
                        log.warning("security groups: table inet %s was missing: applying it again",
                                    firewall.table_name(self.settings.bridge))
            except Exception as exc:  # the API may be restarting: keep trying
                log.warning("reconcile failed: %s", exc)
                seen = None
                self.stopping.wait(1.0)
            self.stopping.wait(self.settings.poll_interval)
        log.info("materializer stopped (hosts keep running)")


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings()
    m = Materializer(settings, ec2_client(settings))
    signal.signal(signal.SIGTERM, lambda *_: m.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: m.stopping.set())
    m.run()


if __name__ == "__main__":
    main()
