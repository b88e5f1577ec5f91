"""fab provision | create-node ROLE | status [--json] | destroy [--yes].

Each task is a `cluster_task` (fabfile/boundary.py): roles.yaml is loaded first
(a bad file exits before any API call), then it opens one cloud session;
whipup's errors become a one-line non-zero exit.
"""
from __future__ import annotations

import sys

from invoke import Exit

from .. import inventory
from ..boundary import cluster_task
from ..cloud import open_cloud
from ..config import Config
from ..monitor.daemon import stop_receiver
from ..monitor.status import health_lines
from ..nodes import find_nodes
from . import converge
from .accounting import MutationCounter
from .destroy import describe_plan, plan_destroy
from .dns import SiteRecords, proxy_addresses
from .destroy import destroy as destroy_plan
from .ec2 import resolve_subnet
from .iam import AppProfile, wants_backups_profile, wants_profile
from .iam import describe as describe_profile
from .media import MediaBucket
from .media import describe as describe_media
from .report import status_json, status_text
from .timing import DEFAULT_TIMING
from .vpce import S3Endpoint


def connect_ec2(cfg: Config) -> tuple[object, MutationCounter]:
    """The ec2 client of cfg's target, counting its mutating calls."""
    cloud = open_cloud(cfg.cluster.target, cfg.cluster.region)
    counter = MutationCounter()
    return counter.attach(cloud.client("ec2")), counter


def open_media(cfg: Config, counter: MutationCounter) -> MediaBucket | None:
    """The cluster's media bucket (app.media s3), its calls counted with the rest; None with media local."""
    if cfg.app.media != "s3":
        return None
    cloud = open_cloud(cfg.cluster.target, cfg.cluster.region)
    endpoint = None
    if cfg.cluster.target == "sandbox":
        from ..sandbox.settings import load_settings

        endpoint = load_settings().s3_endpoint
    return MediaBucket.open(cfg, counter.attach(cloud.client("s3")), counter.attach(cloud.client("sts")), endpoint)


def open_profile(cfg: Config, counter: MutationCounter, media: MediaBucket | None) -> AppProfile | None:
    """The app nodes' instance profile (aws with media s3, iam.py), its calls counted; None otherwise."""
    if media is None or not wants_profile(cfg):
        return None
    iam = counter.attach(open_cloud(cfg.cluster.target, cfg.cluster.region).client("iam"))
    return AppProfile.open(cfg, iam, media.name)


def open_profiles(cfg: Config, counter: MutationCounter, media: MediaBucket | None) -> list[AppProfile]:
    """Every instance profile the cluster's nodes launch with on aws (iam.py): the app nodes' media one, the
    db nodes' nightly backups one; none on the sandbox (no IAM client is made)."""
    profiles = [p for p in (open_profile(cfg, counter, media),) if p is not None]
    if wants_backups_profile(cfg):
        from ..backup.store import BackupStore

        iam = counter.attach(open_cloud(cfg.cluster.target, cfg.cluster.region).client("iam"))
        profiles.append(AppProfile.backups(cfg, iam, BackupStore.open(cfg).bucket))
    return profiles


def provision_cluster(ec2, cfg: Config, counter: MutationCounter, *, wait_ssh: bool, python: str | None = None) -> list:
    """converge.provision, and the media bucket: checked before the first change (a bucket or IAM role name
    held by someone else stops the run with nothing created), made once the nodes are; on aws the app nodes'
    instance profile (before they launch) and the VPC's S3 gateway endpoint; with cluster.domain, the site's
    Route53 records to the proxies' elastic IPs (dns.py); the cluster's nodes."""
    media = open_media(cfg, counter)
    profiles = open_profiles(cfg, counter, media)
    if media is not None:
        media.check()
    for profile in profiles:
        profile.check()
    nodes = converge.provision(ec2, cfg, wait_ssh=wait_ssh, timing=DEFAULT_TIMING, python=python, profiles=profiles)
    if media is not None:
        subnet = resolve_subnet(ec2, cfg.cluster)
        if wants_profile(cfg):
            S3Endpoint(ec2, cfg.cluster.name, cfg.cluster.region).ensure(subnet.vpc_id, subnet.id)
        media.ensure(cfg, subnet.vpc_id)
    if cfg.cluster.site.domain:
        route53 = counter.attach(open_cloud(cfg.cluster.target, cfg.cluster.region).client("route53"))
        SiteRecords(route53, cfg.cluster.name).ensure(cfg.cluster.site, proxy_addresses(nodes))
    return nodes


PYTHON_HELP = "the project's Python (like >=3.12) that `ami: auto` picks the image for (default: app.python)"


@cluster_task(help={"wait-ssh": "wait until every node answers SSH with its pinned host key (default: on)",
                    "python": PYTHON_HELP})
def provision(c, cfg: Config, wait_ssh=True, python=None):
    """Create or complete the cluster (nodes, groups, EIPs, the media bucket)."""
    ec2, counter = connect_ec2(cfg)
    try:
        nodes = provision_cluster(ec2, cfg, counter, wait_ssh=wait_ssh, python=python or cfg.app.python)
    finally:
        print(counter.summary())
    print(status_text(cfg.cluster.name, nodes))


@cluster_task(help={"role": "the role to add a node to", "wait-ssh": "wait until the node answers SSH (default: on)",
                    "python": PYTHON_HELP})
def create_node(c, role, cfg: Config, wait_ssh=True, python=None):
    """Launch one more node of ROLE, at its lowest free index."""
    cfg.role(role)
    ec2, counter = connect_ec2(cfg)
    profiles = open_profiles(cfg, counter, open_media(cfg, counter))
    try:
        node = converge.create_node(ec2, cfg, role, wait_ssh=wait_ssh, timing=DEFAULT_TIMING,
                                    python=python or cfg.app.python, profiles=profiles)
    finally:
        print(counter.summary())
    print(status_text(cfg.cluster.name, [node]))


@cluster_task(help={"json": "print JSON instead of a table"})
def status(c, cfg: Config, json=False):
    """Show the cluster's nodes, the site's certificate and (with a monitor) each node's health."""
    ec2, _ = connect_ec2(cfg)
    nodes = find_nodes(ec2, cfg.cluster.name)
    print(status_json(nodes) if json else status_text(cfg.cluster.name, nodes))
    if not json:
        from ..remote import HostFailures
        from ..tls.stage import status_lines

        try:
            print("\n".join(status_lines(cfg, nodes)))
        except HostFailures as exc:
            print(f"certificate: not read ({exc})")
        for line in health_lines(cfg, nodes):
            print(line)


@cluster_task(help={"yes": "do not ask for confirmation"})
def destroy(c, cfg: Config, yes=False):
    """Tear down the cluster (asks first unless --yes)."""
    ec2, counter = connect_ec2(cfg)
    plan = plan_destroy(ec2, cfg.cluster.name)
    media = open_media(cfg, counter)
    media_plan = media.plan() if media is not None else None
    profiles = [(p, p.plan()) for p in open_profiles(cfg, counter, media)]
    profiles = [(p, name) for p, name in profiles if name is not None]
    lines = describe_plan(plan)
    if plan.empty and (media_plan is not None or profiles):
        lines = [f"cluster {cfg.cluster.name}: will remove"]
    names = cfg.cluster.site.names
    dns_lines = [f"  the A records of {', '.join(names)} (their hosted zone stays)"] if names and not plan.empty else []
    profile_lines = [line for p, name in profiles for line in describe_profile(name, p.purpose)]
    print("\n".join(lines + describe_media(media_plan) + profile_lines + dns_lines))
    if plan.empty and media_plan is None and not profiles:
        return
    if not yes:
        _confirm(cfg.cluster.name)
    try:
        stop_receiver(cfg, print)       # monitor.recover's receiver: no recovery of a cluster being destroyed
        if not plan.empty:
            inventory.forget(cfg)       # no task may start from the list of a cluster going away
            destroy_plan(ec2, plan, DEFAULT_TIMING)
        for profile, _ in profiles:
            profile.destroy()           # after the instances: none holds it any more
        if media is not None and media_plan is not None:
            media.destroy(cfg, media_plan)
        if cfg.cluster.site.domain and not plan.empty:
            route53 = counter.attach(open_cloud(cfg.cluster.target, cfg.cluster.region).client("route53"))
            SiteRecords(route53, cfg.cluster.name).remove(cfg.cluster.site)
    finally:
        print(counter.summary())


def _confirm(cluster: str) -> None:
    if not sys.stdin.isatty():
        raise Exit("destroy: no terminal to confirm on; nothing removed (pass --yes to skip the question)", code=1)
    answer = input(f"Type the cluster name ({cluster}) to destroy it: ")
    if answer.strip() != cluster:
        raise Exit("destroy: not confirmed; nothing removed", code=1)
