"""fab backup | backups | restore [ID] [--to-release] | snapshot | recover ROLE.

Each is a `cluster_task` (roles.yaml loaded first; whipup's errors become one line and a non-zero exit).
"""
from __future__ import annotations

from ..boundary import cluster_task
from ..cloud import open_cloud
from ..config import Config
from ..deploy.cluster import open_cluster
from ..deploy.errors import DeployError
from ..deploy.planning import HEALTH_TIMEOUT
from ..errors import ProvisionError
from ..flags import seconds
from ..remote import HostFailures, RemoteError
from ..ssh import NotInSandbox
from . import names
from .run import BackupError, restore as restore_backup, take
from .store import BackupStore

ERRORS = (BackupError, DeployError, HostFailures, RemoteError, NotInSandbox, ProvisionError)


def _cluster(cfg: Config):
    return open_cluster(cfg, open_cloud(cfg.cluster.target, cfg.cluster.region).client("ec2"))


@cluster_task(help={"kind": "manual (default) or restore-point: what the backup is listed as"}, errors=ERRORS)
def backup(c, cfg: Config, kind="manual"):
    """pg_dump -Fc of the app's database into the cluster's backups bucket, tagged with the release."""
    if kind not in ("manual", "restore-point"):
        raise BackupError(f"--kind: expected manual or restore-point, got {kind!r}")
    cl = _cluster(cfg)
    try:
        take(cl, BackupStore.open(cfg), kind)
    finally:
        cl.close()


@cluster_task(errors=ERRORS)
def backups(c, cfg: Config):
    """List the app's backups: id, time, size, kind, release (newest last)."""
    store = BackupStore.open(cfg)
    print(f"s3://{store.bucket}/{cfg.app.name}/")
    print("\n".join(names.listing(store.list())))


@cluster_task(help={"id": "the backup to restore (an id from fab backups, or its unique start; default: the latest)",
                    "to-release": "also roll the code back to the release the backup names",
                    "break-lock": "take over the deploy lock of an interrupted run",
                    "health-timeout": f"seconds the app has to be healthy again (default {HEALTH_TIMEOUT:g})"},
              errors=ERRORS)
def restore(c, cfg: Config, id=None, to_release=False, break_lock=False, health_timeout=f"{HEALTH_TIMEOUT:g}"):
    """Restore a backup into a new database and swap it in, under the deploy lock, the site in maintenance."""
    timeout = seconds("health_timeout", health_timeout, 1, 3600)
    cl = _cluster(cfg)
    try:
        restore_backup(cl, BackupStore.open(cfg), id, to_release=to_release, health_timeout=timeout,
                       break_lock=break_lock)
    finally:
        cl.close()


@cluster_task(errors=ERRORS)
def snapshot(c, cfg: Config):
    """Snapshot the db node's data volume (after a CHECKPOINT), tagged; waits until it is complete."""
    from ..nodes import find_nodes
    from ..provision.tasks import connect_ec2
    from .snapshots import snapshot as take_snapshot

    ec2, _ = connect_ec2(cfg)
    db = [n for n in find_nodes(ec2, cfg.cluster.name, role="db") if n.state == "running"]
    if not db:
        raise BackupError(f"cluster {cfg.cluster.name} has no running db node (fab recover db)")
    try:
        take_snapshot(ec2, cfg, db[0])
    except (ValueError, TimeoutError) as exc:
        raise BackupError(str(exc)) from None

