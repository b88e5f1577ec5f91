"""fab configure [--role ROLE] [--dry-run] [--wait [--wait-timeout S]] [--break-lock]: make every node what its
role in roles.yaml says, under the cluster's deploy lock (configure/lock.py)."""
from __future__ import annotations

from .. import flags
from ..boundary import cluster_task
from ..config import Config
from ..deploy.errors import DeployError
from ..remote import HostFailures, RemoteError
from .facts import FactsError
from .lock import WAIT_TIMEOUT
from .run import ConfigureError, TemplateError, configure_cluster
from .seen import Alongside, configure_seen
from ..sshpool import Connections


def wait_seconds(wait: bool, wait_timeout) -> float | None:
    """How long to wait for a held deploy lock: None (refuse at once) unless --wait or --wait-timeout."""
    if wait_timeout is not None:
        return flags.seconds("wait_timeout", wait_timeout, 1, 86400)
    return WAIT_TIMEOUT if wait else None


@cluster_task(help={"role": "configure only the nodes of this role (default: all)",
                    "dry-run": "print what would change on each host, with diffs of config files; change nothing",
                    "wait": "if a deploy holds the cluster's deploy lock, wait for it (default: refuse, naming it)",
                    "wait-timeout": f"seconds to wait for the lock (implies --wait; default {WAIT_TIMEOUT:g})",
                    "break-lock": "take over the deploy lock of an interrupted run (it names its holder)"},
              errors=(ConfigureError, TemplateError, HostFailures, RemoteError, FactsError, DeployError))
def configure(c, role=None, dry_run=False, wait=False, wait_timeout=None, break_lock=False, *, cfg: Config):
    """Install packages, write config files, run services and PostgreSQL on every node; idempotent."""
    if role is not None:
        cfg.role(role)   # an unknown role exits before the cloud is contacted
    seconds = wait_seconds(wait, wait_timeout)   # a bad --wait-timeout too
    bucket = None if dry_run or "db" not in cfg.role_names else Alongside(lambda: bucket_ready(cfg),
                                                                                 key="backups-bucket")
    with Connections(cfg) as pool:                    # each host's connection opened once, for every step
        results = configure_seen(cfg, lambda: connect_ec2(cfg)[0], configure_cluster, role=role, dry_run=dry_run,
                                 wait=seconds, break_lock=break_lock, connections=pool, also=bucket,
                                 lookup_connect=lambda: lookup_ec2(cfg))
        finish(cfg, results, dry_run, pool, bucket.answer if bucket is not None else None)


def lookup_ec2(cfg: Config):
    """The forked lookup's ec2 client: DescribeInstances only (slimmodel: EC2's whole model costs ~0.15 CPU-s)."""
    from ..cloud import open_cloud
    from ..slimmodel import slim_client

    return slim_client(open_cloud(cfg.cluster.target, cfg.cluster.region), cfg.cluster.state_dir / ".cache")


def bucket_ready(cfg: Config) -> str | None:
    """The backups bucket, if it exists (asked by the forked cloud lookup, where boto3 is loaded anyway)."""
    from ..backup.nightly import bucket_ready as ready

    return ready(cfg)


def finish(cfg: Config, results, dry_run: bool, pool: Connections, bucket: str | None) -> None:
    """After the hosts are configured: the db node's nightly backup, the monitor's SMTP login."""
    db = {r.name for r in results or () if r.role == "db"}
    mon = {r.name for r in results or () if r.role == "monitor"} if cfg.monitor.email else set()
    if not dry_run and (db or mon):                   # the db node's nightly backup, the monitor's SMTP login
        from ..backup.nightly import ensure_all     # the backup package sits above configure
        from ..inventory import load
        from ..monitor import smtp
        from ..nodes import find_nodes

        nodes = load(cfg) or find_nodes(connect_ec2(cfg)[0], cfg.cluster.name)
        ensure_all(cfg, [n for n in nodes if n.name in db], print, connect_to=pool.connect, bucket=bucket)
        smtp.ensure_all(cfg, [n for n in nodes if n.name in mon], print)


def connect_ec2(cfg: Config):
    """provision's (client, counter): boto3 and the provisioning code imported only when the cloud is asked."""
    from ..provision.tasks import connect_ec2 as connect

    return connect(cfg)
