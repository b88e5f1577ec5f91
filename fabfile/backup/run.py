"""Backups and restores on a running cluster: the db node over SSH, the bucket from this machine.

take:    pg_dump -Fc on the db node (one consistent snapshot), uploaded to a presigned URL (on stdin), the
         object tagged with kind, time, the release the site serves and its sha;
restore: under the deploy lock, the proxies answer a maintenance page (503, Retry-After), the dump goes into
         a new database that is then swapped in (the current one kept as <db>_before_<time>; a failed
         restore changes nothing), gunicorn reloaded gracefully (fresh connections), optionally the code
         back to the backup's release (rollback), then the site again;
restore_point: the deploy's hook before migrate, when the new release has migrations to apply.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from ..deploy import manage, slotstate, switchover
from ..deploy.cluster import Cluster, each, gather
from ..deploy.errors import DeployError
from ..deploy.guard import guarded
from ..remote import RemoteError, run, sudo_sh
from ..ssh import connect
from . import commands
from .names import Backup, backup_id, object_key, pick
from .store import BackupStore

Out = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore could not be made; the message says what is as it was."""


def serving(cl: Cluster) -> tuple[str | None, str | None]:
    """(release, sha) app node 0 (or any node of the cluster) serves now."""
    members = cl.apps or cl.proxies or cl.workers
    if not members:
        return None, None
    state = gather(cl, members[:1])[members[0].name]
    info = state.current_info
    return state.current, info.sha if info else None


def _db_conn(cl: Cluster):
    if cl.db is None:
        raise BackupError(f"cluster {cl.cfg.cluster.name} has no running db node: nothing to back up "
                          f"(fab recover db brings one back)")
    return connect(cl.cfg, cl.db)


def take(cl: Cluster, store: BackupStore, kind: str, release: str | None = None, sha: str | None = None,
         out: Out = print) -> Backup:
    """One backup of the app's database; what was stored."""
    if release is None:
        release, sha = serving(cl)
    bucket = store.ensure()
    if bucket == "created":
        out(f"backups: bucket {store.bucket} created (private)")
    now = datetime.now(timezone.utc)
    bid = backup_id(now, kind)
    key = object_key(cl.cfg.app.name, bid)
    start = time.monotonic()
    conn = _db_conn(cl)
    try:
        r = run(conn, sudo_sh(commands.dump_script(cl.layout.app, bid)), step="pg_dump to S3",
                stdin=commands.curl_config(store.put_url(key)), timeout=3600)
    except RemoteError as exc:
        raise BackupError(f"{cl.db.name}: backup failed: {exc}") from None
    finally:
        conn.close()
    size = commands.parse_size(r.stdout)
    store.tag(key, kind, now, release, sha)
    seconds = time.monotonic() - start
    out(f"backup {bid}: {size} bytes of {cl.layout.app} (release {release or '-'}) in s3://{store.bucket}/{key}, "
        f"{seconds:.1f} s")
    return Backup(bid, key, size, now, kind, release or "", sha or "")


def restore_point(cl: Cluster, plan) -> None:
    """The deploy's hook before migrate: a backup of kind restore-point when the new release has migrations
    the database lacks (and a release serves, whose data it keeps); none otherwise."""
    if cl.db is None or not cl.apps:
        return
    before = plan.before[cl.apps[0].name]
    if not before.current:
        return
    m = cl.apps[0]
    pending = plan.pending_migrations          # the settings check's answer: no second Django process
    if pending is None:
        pending = run(m.conn, manage.migrate_check(cl.layout, plan.release), step="migrate --check",
                      check=False).exited != 0
    if not pending:
        cl.progress(m.name, "restore point", "no migrations to apply: none taken")
        return
    info = before.current_info
    b = take(cl, BackupStore.open(cl.cfg), "restore-point", before.current, info.sha if info else None,
             out=lambda line: cl.progress(cl.db.name, "restore point", line))
    cl.out(f"restore point {b.id} (release {before.current}): fab restore --id {b.id} --to-release undoes this deploy")


# --- restore ------------------------------------------------------------------------------------------

def maintenance(cl: Cluster, on: bool, why: str = "a restore runs") -> None:
    app = cl.layout.app
    if on:
        each(cl.proxies, lambda m: run(m.conn, commands.maintenance_on(app), step="maintenance page on",
                                       stdin=commands.maintenance_conf(app, why)), "maintenance page")
    else:
        each(cl.proxies, lambda m: run(m.conn, commands.maintenance_off(app), step="maintenance page off"),
             "maintenance page")


def reload_apps(cl: Cluster, timeout: float) -> None:
    """gunicorn booted again in the other slot (fresh database connections), switched to once healthy."""
    states = gather(cl, cl.apps)
    apps = [m for m in cl.apps if slotstate.serving(cl.layout, states[m.name])]
    switchover.refresh(cl, apps, states, timeout, "database restored")


def restore(cl: Cluster, store: BackupStore, wanted: str | None, *, to_release: bool, health_timeout: float,
            out: Out = print, break_lock: bool = False, reload: bool = True) -> Backup:
    """Restore backup `wanted` (default: the latest); see the module's docstring. BackupError (the current
    database as it was) when the restore fails. `reload` False: gunicorn is left to the caller (recover,
    which points the app at a new db node next)."""
    backups = store.list()
    b = pick(backups, wanted)
    if b is None:
        raise BackupError(f"no backup {wanted!r} (fab backups lists them)" if wanted else "no backups yet")
    if to_release and not b.release:
        raise BackupError(f"backup {b.id} names no release: restore it without --to-release")
    start = time.monotonic()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out(f"restoring {b.id} ({b.kind}, release {b.release or '-'}, {b.size} bytes)")
    with guarded(cl, b.release or "", "restore", break_lock=break_lock):
        maintenance(cl, True)
        out("maintenance page on (503, Retry-After)")
        try:
            conn = _db_conn(cl)
            try:
                r = run(conn, sudo_sh(commands.restore_script(cl.layout.app, cl.layout.app, stamp)),
                        step="restore", stdin=commands.curl_config(store.get_url(b.key)), timeout=3600)
            except RemoteError as exc:
                raise BackupError(f"{cl.db.name}: restore of {b.id} failed: {exc}") from None
            finally:
                conn.close()
            out(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "swapped")
            restored = time.monotonic() - start
            if reload:
                reload_apps(cl, health_timeout)
        finally:
            if not to_release:
                maintenance(cl, False)
    if to_release:
        try:
            _code_back(cl, b.release, health_timeout)
        finally:
            maintenance(cl, False)
    out(f"maintenance page off; restored {b.id} in {restored:.1f} s (database), {time.monotonic() - start:.1f} s "
        f"in all")
    return b


def _code_back(cl: Cluster, release: str, health_timeout: float) -> None:
    from ..deploy.rollback import RollbackOptions, roll_back

    current, _ = serving(cl)
    if current == release:
        cl.out(f"code: {release} already serves")
        return
    try:
        roll_back(cl, RollbackOptions(to=release, health_timeout=health_timeout))
    except DeployError as exc:
        raise BackupError(f"the database is restored, but the code could not go back to {release}: {exc}") from None
