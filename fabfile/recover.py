"""fab recover ROLE: a lost (or broken) node rebuilt in one command, non-interactively; exit 0 once the site
serves again, with how long it took.

db:              a new instance at the lost one's index; its data volume re-attached if it is usable (found
                 by its tags, in the node's zone), else a volume made from the latest snapshot, else a blank
                 volume and the latest backup restored into it; PostgreSQL configured and started on it; the
                 app's environment (DATABASE_URL's host) rewritten and gunicorn reloaded gracefully, celery
                 restarted (the env-change path, fabfile/deploy/envchange.py).
app/proxy/worker: the node launched again, the cluster configured (the proxies' upstream, pg_hba), the
                 release its peers serve deployed to it only (fabfile/deploy/catchup.py).

Like whipup.py this sits above the packages it drives; none of them imports it.
"""
from __future__ import annotations

import time

from . import inventory
from .backup import snapshots
from .backup.tasks import ERRORS as BACKUP_ERRORS
from .boundary import cluster_task
from .configure.run import ConfigureError
from .backup.run import restore
from .backup.nightly import ensure_all as ensure_nightly
from .backup.store import BackupStore
from .config import Config
from .configure.run import configure_cluster
from .deploy import catchup, commands, envchange
from .deploy.cluster import Cluster, gather, open_cluster
from .deploy.errors import DeployError
from .deploy.guard import guarded
from .deploy.planning import HEALTH_TIMEOUT, dotenv, site_address
from .layout import DB_ROLE
from .nodes import find_nodes
from .provision.converge import provision
from .provision.tasks import connect_ec2, open_media, open_profiles
from .provision.timing import DEFAULT_TIMING
from .provision.volumes import attached_to, create_volume_for, find_volumes
from .remote import run
from .ssh import connect
from .whipup import check_site

RECOVERABLE = ("db", "app", "proxy", "worker")
ERRORS = BACKUP_ERRORS + (ConfigureError,)


def healthy_db(cfg: Config, node) -> bool:
    """The db node answers SSH and PostgreSQL accepts connections."""
    try:
        conn = connect(cfg, node)
        try:
            return run(conn, "pg_isready -q -h 127.0.0.1", step="pg_isready", check=False, timeout=30).exited == 0
        finally:
            conn.close()
    except Exception:   # noqa: BLE001 - unreachable is what is being asked
        return False


def _retire(ec2, cfg: Config, role: str, out) -> bool:
    """A running node of `role` that is broken (db: PostgreSQL does not answer) is terminated, protection
    lifted; True when a healthy one runs (nothing to recover)."""
    for node in find_nodes(ec2, cfg.cluster.name, role=role):
        if node.state != "running" or node.index != 0:
            continue
        if role != DB_ROLE or healthy_db(cfg, node):
            return True
        out(f"{node.name} runs but PostgreSQL does not answer: terminating it (its volume is kept)")
        ec2.modify_instance_attribute(InstanceId=node.instance_id, DisableApiTermination={"Value": False})
        inventory.forget(cfg)          # the list names it: no task starts from that now
        ec2.terminate_instances(InstanceIds=[node.instance_id])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[node.instance_id],
                                                    WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    return False


def _data_source(ec2, cfg: Config, zone: str, out) -> str:
    """Where the new db node's data comes from: "volume" (the old one, usable), "snapshot" (a volume made
    from the latest, in the node's zone) or "backup" (a blank volume: the latest backup restored later)."""
    vols = [v for v in find_volumes(ec2, cfg.cluster.name, DB_ROLE, 0) if v["State"] in ("available", "in-use")]
    usable = [v for v in vols if v["AvailabilityZone"] == zone and attached_to(v) is None]
    if usable:
        out(f"data: volume {usable[0]['VolumeId']} (kept when the instance went) is re-attached")
        return "volume"
    snaps = snapshots.find_snapshots(ec2, cfg.cluster.name)
    if snaps:
        vid = create_volume_for(ec2, cfg, DB_ROLE, 0, zone, snaps[0]["SnapshotId"])
        out(f"data: no usable volume; {vid} made from snapshot {snaps[0]['SnapshotId']} "
            f"({snaps[0]['StartTime']:%Y-%m-%d %H:%M:%S})")
        return "snapshot"
    out("data: no usable volume and no snapshot: a blank volume, then the latest backup")
    return "backup"


def _point_app_at_db(cl: Cluster, out, *, force: bool = False) -> None:
    """shared/.env rewritten on the app and worker nodes where it differs (DATABASE_URL names the new db
    node), then gunicorn reloaded gracefully and celery restarted (or with `force`: the database changed)."""
    nodes = cl.apps + cl.workers
    if not nodes:
        return
    text = dotenv(cl)
    with guarded(cl, "", "recover db"):
        changed = [m.name for m in nodes if run(m.conn, commands.write_env(cl.layout), step="write shared/.env",
                                                  stdin=text).stdout.strip() == "changed"]
        if not changed and not force:
            out("app: its environment already names this db node")
            return
        envchange.reload_running(cl, gather(cl, nodes), HEALTH_TIMEOUT)
    out(f"app: DATABASE_URL names {cl.db.private_ip if cl.db else '-'} ({', '.join(changed) or 'unchanged'}); "
        f"gunicorn reloaded gracefully")


def _profiles(cfg: Config, counter) -> list:
    """The instance profiles a relaunched node needs on aws (media for app/worker, backups for db)."""
    return open_profiles(cfg, counter, open_media(cfg, counter))


def recover_db(cfg: Config, out=print) -> str:
    ec2, counter = connect_ec2(cfg)
    healthy = _retire(ec2, cfg, DB_ROLE, out)
    source = "running" if healthy else _data_source(ec2, cfg, _cluster_zone(ec2, cfg), out)
    if not healthy:
        provision(ec2, cfg, wait_ssh=True, timing=DEFAULT_TIMING, log=out,    # the node, its volume mounted
                  profiles=_profiles(cfg, counter))
        configure_cluster(cfg, ec2, quiet=True)                               # PostgreSQL on it; pg_hba, ...
        ensure_nightly(cfg, find_nodes(ec2, cfg.cluster.name), out)
    cl = open_cluster(cfg, ec2)
    try:
        if source == "backup":
            store = BackupStore.open(cfg)
            if store.list():
                restore(cl, store, None, to_release=False, health_timeout=HEALTH_TIMEOUT, out=out, reload=False)
            else:
                out("no backup either: the database starts empty")
        _point_app_at_db(cl, out, force=source == "backup")
        for line in check_site(cfg, cl, site_address(cfg, cl)):
            out(f"  {line}")
    finally:
        cl.close()
    return "the db node was running; the app checked" if healthy else f"db node back (data: {source})"


def _cluster_zone(ec2, cfg: Config) -> str:
    from .provision.ec2 import resolve_subnet

    return resolve_subnet(ec2, cfg.cluster).availability_zone


def recover_node(cfg: Config, role: str, out=print) -> str:
    ec2, counter = connect_ec2(cfg)
    if _retire(ec2, cfg, role, out) and all(
            n.state == "running" for n in find_nodes(ec2, cfg.cluster.name, role=role)):
        running = [n for n in find_nodes(ec2, cfg.cluster.name, role=role) if n.state == "running"]
        if len(running) >= cfg.role(role).count:
            return f"every {role} node runs: nothing to launch"
    provision(ec2, cfg, wait_ssh=True, timing=DEFAULT_TIMING, log=out, profiles=_profiles(cfg, counter))
    configure_cluster(cfg, ec2, quiet=True)
    cl = open_cluster(cfg, ec2)
    try:
        states = gather(cl, cl.proxies + cl.apps + cl.workers)
        missing = catchup.targets(cl, states)
        if missing:
            release = next(iter(missing.values()))
            sha = catchup.commit_of(states, release)
            catchup.rebuild(cl, states, missing, catchup.source_for(cl, states, missing, sha))
        for line in check_site(cfg, cl, site_address(cfg, cl)):
            out(f"  {line}")
    finally:
        cl.close()
    return f"{role} node back" + (f" on release {next(iter(missing.values()))}" if missing else "")


def recover(cfg: Config, role: str, out=print) -> float:
    """Recover `role`; the seconds it took (printed)."""
    if role not in RECOVERABLE:
        raise DeployError(f"recover: unknown role {role!r} (one of: {', '.join(RECOVERABLE)})")
    cfg.role(role)
    start = time.monotonic()
    what = recover_db(cfg, out) if role == DB_ROLE else recover_node(cfg, role, out)
    seconds = time.monotonic() - start
    out(f"recovered {role}: {what} in {seconds:.0f} s")
    return seconds


@cluster_task(name="recover", help={"role": "db, app, proxy or worker: the role whose lost (or broken) node is rebuilt"},
              errors=ERRORS)
def recover_task(c, role, cfg: Config):
    """Rebuild a lost node of ROLE in one command (db: its volume, else a snapshot, else the latest backup)."""
    recover(cfg, role)


__all__ = ["recover", "recover_task"]
