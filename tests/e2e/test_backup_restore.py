"""Backups, restores, snapshots and recovery (issue 15) on the local cloud, one cluster on sandbox #14.

A proxy, one app node and the db node (no worker: nothing here needs celery), the db's data on a 2 GiB
volume of its own. In order, from the least destructive to the most:

1. the database lives on its volume (a block device of the volume's own, mounted at /var/lib/postgresql);
2. rows identical after `fab restore` (a checksum before the backup, after a destructive change, after the
   restore), the site answering a maintenance page (503, Retry-After) while it runs and normally after,
   no other failed request; a restore of a broken dump fails and changes nothing;
3. a deploy with a destructive migration takes a restore point by itself; `fab restore ID --to-release`
   brings data and code back;
4. the nightly job (run by hand): a nightly backup, the older ones beyond `keep` deleted, its result file;
5. `fab snapshot`, then a volume made from the snapshot holds the snapshot's data, not what came after;
6. the db instance terminated (its termination protection lifted): the volume outlives it, and
   `fab recover db` brings the site back on it with every row; the app node terminated: `fab recover app`.

HTTP goes only to the proxy's private IP once `ip route get` shows it on this sandbox's bridge.
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from .conftest import cluster_roles, fab, make_network, sandbox_env
from .demo import DemoCluster, sandbox_settings
from .traffic import Load

pytestmark = pytest.mark.e2e

SANDBOX = 14
CHECKSUM = "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '-') FROM notes_note t;\n"
MAINTENANCE = "Down for maintenance"
DESTRUCTIVE = '''from django.db import migrations


def forget(apps, schema_editor):
    apps.get_model("notes", "Note").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.RunPython(forget, migrations.RunPython.noop)]
'''


class Data(DemoCluster):
    def psql(self, sql: str, db: str = "demo") -> str:
        from fabfile.remote import run
        from fabfile.ssh import connect

        conn = connect(self.cfg, self.nodes["db-0"])
        try:
            return run(conn, f"sudo -n -u postgres psql -X -tA -v ON_ERROR_STOP=1 -d {db}", step="psql",
                       stdin=sql, timeout=120).stdout.strip()
        finally:
            conn.close()

    def checksum(self) -> str:
        return self.psql(CHECKSUM)

    def backups(self) -> list[list[str]]:
        lines = self.fab("backups").stdout.strip().splitlines()
        return [line.split() for line in lines[2:]]


def assert_ran(p) -> None:
    assert p.returncode == 0, f"{p.stdout[-6000:]}\n{p.stderr[-3000:]}"


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env, timeout=1800)
    try:
        with sandbox_settings(env):
            roles = cluster_roles(tmp, "data", make_network(env, SANDBOX))
            data = yaml.safe_load(roles.read_text())
            data["roles"]["worker"]["count"] = 0
            data["roles"]["db"]["volume"]["size_gb"] = 2
            data["roles"]["db"]["backup"] = {"nightly": "03:00", "keep": 1}
            roles.write_text(yaml.safe_dump(data, sort_keys=False))
            c = Data(env, roles, tmp, "data")
            start = time.monotonic()
            c.fab("whip-up-full-system", timeout=1800)
            print(f"\ndata: cold whip-up-full-system {time.monotonic() - start:.0f} s")
            c.load()
            for i in range(20):
                c.add_note(f"note {i}")
            yield c
    finally:
        fab("sandbox.down", env=env, check=False, timeout=900)


def test_the_database_lives_on_its_volume(cl):
    mounts = cl.ssh("db-0", "findmnt -n -o SOURCE,FSTYPE /var/lib/postgresql").split()
    assert mounts == ["/dev/xvdf", "ext4"], mounts
    assert cl.psql("SHOW data_directory;").startswith("/var/lib/postgresql/")
    vols = cl.ec2.describe_volumes(Filters=[{"Name": "tag:whipup:purpose", "Values": ["data"]}])["Volumes"]
    assert [v["Attachments"][0]["InstanceId"] for v in vols] == [cl.nodes["db-0"].instance_id]


def _judge(seen: list):
    def check(path: str, status: int, body: str) -> str | None:
        if status == 200:
            return None
        if status == 503 and MAINTENANCE in body:
            seen.append(time.monotonic())
            return None
        return f"HTTP {status}"
    return check


def _watch_headers(cl, stop: threading.Event, found: dict) -> None:
    while not stop.is_set() and "retry-after" not in found:
        try:
            status, headers, _ = cl.request("GET", "/", timeout=5)
            if status == 503:
                found.update(headers)
        except OSError:
            pass
        time.sleep(0.1)


def test_restore_brings_the_rows_back_behind_a_maintenance_page(cl):
    before = cl.checksum()
    start = time.monotonic()
    b = cl.fab("backup")
    assert_ran(b)
    assert "-manual: " in b.stdout
    print(f"\nMEASURE backup of the demo database: {time.monotonic() - start:.1f} s (the whole fab process): "
          f"{b.stdout.strip().splitlines()[-1]}")
    cl.psql("DELETE FROM notes_note WHERE id % 2 = 0; INSERT INTO notes_note (text, created_at) VALUES ('junk', now());")
    assert cl.checksum() != before
    seen, headers, stop = [], {}, threading.Event()
    watcher = threading.Thread(target=_watch_headers, args=(cl, stop, headers), daemon=True)
    watcher.start()
    with Load(cl, ("/", "/health"), threads=16, max_seconds=600, rate=20, timeout=10, check=_judge(seen)) as load:
        start = time.monotonic()
        p = cl.fab("restore", check=False)
        took = time.monotonic() - start
    stop.set()
    watcher.join(10)
    assert_ran(p)
    print(f"\nrestore of the demo database: {took:.1f} s ({p.stdout.strip().splitlines()[-1]}); "
          f"{len(seen)} maintenance answers; load {load.figures()}")
    assert cl.checksum() == before
    assert seen, "no maintenance page was seen during the restore"
    assert headers.get("retry-after") == "30", headers
    assert load.failures == 0, f"{load.figures()}\n{load.failures_at(20)}"
    status, body = cl.get("/")
    assert status == 200 and MAINTENANCE not in body


def test_a_failed_restore_leaves_the_database_as_it_was(cl):
    import boto3

    from fabfile.backup.store import BackupStore

    before = cl.checksum()
    bucket = BackupStore.open(cl.cfg).bucket
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{cl.env['WHIPUP_SANDBOX_PORT']}", region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.put_object(Bucket=bucket, Key="demo/20200101T000000Z-manual.dump", Body=b"not a dump")
    p = cl.fab("restore", "--id", "20200101T000000Z-manual", check=False)
    assert p.returncode != 0, p.stdout
    assert "the current database is unchanged" in p.stdout + p.stderr
    assert cl.checksum() == before
    assert cl.get("/")[0] == 200
    s3.delete_object(Bucket=bucket, Key="demo/20200101T000000Z-manual.dump")


def test_a_destructive_deploy_is_undone_by_its_restore_point(cl):
    before, release = cl.checksum(), cl.current()
    cl.commit("a migration that forgets every note", {"notes/migrations/0002_forget.py": DESTRUCTIVE})
    try:
        d = cl.fab("deploy")
        assert_ran(d)
        m = re.search(r"restore point (\S+-restore-point) \(release (\S+)\)", d.stdout)
        assert m and m.group(2) == release, d.stdout
        assert cl.checksum().startswith("0 ") and cl.current() != release
        assert [r for r in cl.backups() if r[0] == m.group(1)][0][-2:] == ["restore-point", release]
        start = time.monotonic()
        r = cl.fab("restore", "--id", m.group(1), "--to-release")
        print(f"\nrestore --to-release: {time.monotonic() - start:.1f} s")
        assert cl.checksum() == before
        assert cl.current() == release and cl.page()[0] == release
    finally:
        cl.commit("the forgetting migration reverted", remove=("notes/migrations/0002_forget.py",))
    assert "rolled back to" in r.stdout


def test_the_nightly_job_backs_up_and_keeps_the_newest(cl):
    assert "whipup-nightly-backup" in cl.ssh("db-0", "cat /etc/cron.d/whipup-backup")
    for _ in range(2):
        cl.ssh("db-0", "sudo -n /usr/local/sbin/whipup-nightly-backup")
        time.sleep(1.1)                                        # ids are per second
    result = cl.ssh("db-0", "sudo -n cat /var/lib/whipup/backup-nightly.json")
    assert '"ok": true' in result and '"deleted": ["demo/' in result, result
    print(f"\nMEASURE nightly backup on the db node: {json.loads(result)['seconds']} s")
    assert len([r for r in cl.backups() if r[-2] == "nightly"]) == 1


def _mounted_copy(image: Path, where: Path) -> None:
    where.mkdir()
    subprocess.run(["mount", "-o", "ro,noload,loop", str(image), str(where)], check=True)


def test_a_volume_from_a_snapshot_holds_the_snapshots_data(cl, tmp_path):
    from fabfile.sandbox.settings import load_settings
    from fabfile.sandbox.volumes import image_path

    with sandbox_settings(cl.env):
        settings = load_settings()
    cl.ssh("db-0", "echo before | sudo -n tee /var/lib/postgresql/marker-before >/dev/null")
    s = cl.fab("snapshot")
    assert_ran(s)
    snap = re.search(r"snapshot (snap-\S+) of (vol-\S+)", s.stdout).group(1)
    cl.ssh("db-0", "echo after | sudo -n tee /var/lib/postgresql/marker-after >/dev/null")
    vid = cl.ec2.create_volume(SnapshotId=snap, AvailabilityZone="us-east-1a")["VolumeId"]
    deadline = time.monotonic() + 60
    while not image_path(settings, vid).exists():
        assert time.monotonic() < deadline, f"{vid}: no image made from {snap}"
        time.sleep(0.2)
    where = tmp_path / "copy"
    _mounted_copy(image_path(settings, vid), where)
    try:
        assert (where / "marker-before").read_text() == "before\n"
        assert not (where / "marker-after").exists()
        assert (where / "15" / "main" / "PG_VERSION").exists()
    finally:
        subprocess.run(["umount", str(where)], check=False)
        cl.ec2.delete_volume(VolumeId=vid)


def test_a_lost_db_node_comes_back_on_its_volume(cl):
    before, rows = cl.checksum(), cl.page()[1]
    old = cl.nodes["db-0"].instance_id
    vol = cl.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [old]},
                                           {"Name": "tag:whipup:purpose", "Values": ["data"]}])["Volumes"][0]
    cl.ec2.modify_instance_attribute(InstanceId=old, DisableApiTermination={"Value": False})
    cl.ec2.terminate_instances(InstanceIds=[old])
    cl.wait_state("db-0", "terminated")
    assert cl.ec2.describe_volumes(VolumeIds=[vol["VolumeId"]])["Volumes"][0]["State"] == "available"
    p = cl.fab("recover", "db", timeout=1800)
    assert_ran(p)
    took = re.search(r"recovered db: .* in (\d+) s", p.stdout)
    assert took, p.stdout[-3000:]
    print(f"\nrecover db (lost node, its volume kept): {took.group(1)} s")
    assert f"volume {vol['VolumeId']} (kept when the instance went) is re-attached" in p.stdout
    cl.load()
    assert cl.nodes["db-0"].instance_id != old
    assert cl.checksum() == before
    assert cl.page()[1] == rows


def test_a_lost_app_node_comes_back(cl):
    before = cl.page()
    old = cl.nodes["app-0"].instance_id
    cl.ec2.terminate_instances(InstanceIds=[old])
    cl.wait_state("app-0", "terminated")
    p = cl.fab("recover", "app", timeout=1800)
    assert_ran(p)
    took = re.search(r"recovered app: .* in (\d+) s", p.stdout)
    assert took, p.stdout[-3000:]
    print(f"\nrecover app (lost node): {took.group(1)} s")
    cl.load()
    assert cl.nodes["app-0"].instance_id != old
    assert cl.page() == before
