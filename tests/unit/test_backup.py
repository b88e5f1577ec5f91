"""Backups: names and listing, the db node's and the proxy's scripts (quoting), the nightly job, the bucket."""
from __future__ import annotations

import json
import shlex
import subprocess
from datetime import datetime, timezone

import boto3
import pytest

from fabfile.backup import commands, names, nightly
from fabfile.backup.names import Backup
from fabfile.backup.store import BackupStore

T = datetime(2026, 12, 1, 21, 5, 9, tzinfo=timezone.utc)


# --- names ------------------------------------------------------------------------------------------------

def test_ids_keys_and_their_parse():
    bid = names.backup_id(T, "restore-point")
    assert bid == "20261201T210509Z-restore-point"
    assert names.object_key("demo", bid) == "demo/20261201T210509Z-restore-point.dump"
    assert names.parse_key("demo", "demo/20261201T210509Z-restore-point.dump") == (bid, T, "restore-point")
    for other in ("demo/x.dump", "other/20261201T210509Z-manual.dump", "demo/20261201T210509Z-weekly.dump",
                  "demo/20261201T210509Z-manual.sql"):
        assert names.parse_key("demo", other) is None
    with pytest.raises(ValueError):
        names.backup_id(T, "weekly")


def _b(bid, kind="manual"):
    return Backup(bid, f"demo/{bid}.dump", 10, T, kind)


def test_pick_the_latest_an_id_or_a_unique_start():
    bs = [_b("20261201T000000Z-manual"), _b("20261202T000000Z-nightly", "nightly"), _b("20261202T010000Z-manual")]
    assert names.pick(bs, None).id == "20261202T010000Z-manual"
    assert names.pick(bs, "20261201").id == "20261201T000000Z-manual"
    assert names.pick(bs, "20261202") is None             # two start so: ambiguous
    assert names.pick(bs, "nope") is None and names.pick([], None) is None


def test_retention_keeps_the_newest_of_a_kind():
    bs = [_b(f"2026120{i}T000000Z-nightly", "nightly") for i in range(1, 6)] + [_b("20261201T010000Z-manual")]
    assert [b.id for b in names.expired(bs, 2)] == [f"2026120{i}T000000Z-nightly" for i in (1, 2, 3)]
    assert names.expired(bs, 7) == []


def test_listing_from_objects_and_tags():
    objs = [{"Key": "demo/20261201T210509Z-manual.dump", "Size": 4223}, {"Key": "demo/junk", "Size": 1}]
    tags = {"demo/20261201T210509Z-manual.dump": {"whipup:release": "20261201210042-c354a60", "whipup:sha": "c" * 40}}
    bs = names.backups_from("demo", objs, tags)
    assert [(b.id, b.size, b.release, b.kind) for b in bs] == [
        ("20261201T210509Z-manual", 4223, "20261201210042-c354a60", "manual")]
    assert names.listing(bs)[1].split() == ["20261201T210509Z-manual", "2026-12-01", "21:05:09", "4.1", "KiB",
                                            "manual", "20261201210042-c354a60"]
    assert names.listing([]) == ["no backups yet (fab backup takes one)"]


def test_tags_say_kind_time_release_and_sha():
    assert names.tag_set("manual", T, None, None) == [
        {"Key": "whipup:kind", "Value": "manual"}, {"Key": "whipup:time", "Value": "2026-12-01T21:05:09Z"},
        {"Key": "whipup:release", "Value": "-"}, {"Key": "whipup:sha", "Value": "-"}]


# --- the scripts ------------------------------------------------------------------------------------------

def test_the_url_goes_on_stdin_as_curls_config_never_on_the_command_line():
    url = 'http://10.0.0.1:8898/b/demo/x.dump?X-Amz-Signature=abc&a="b"'
    script = commands.dump_script("demo", "20261201T210509Z-manual")
    assert "X-Amz" not in script and "-K -" in script
    assert commands.curl_config(url) == 'url = "http://10.0.0.1:8898/b/demo/x.dump?X-Amz-Signature=abc&a=\\"b\\""\n'


def test_the_dump_script_quotes_the_database_name():
    script = commands.dump_script("x; whoami", "id")
    line = next(li for li in script.splitlines() if "pg_dump" in li)
    assert shlex.split(line)[-1] == "x; whoami"
    assert commands.parse_size("...\nsize=4223\n") == 4223


def test_the_restore_goes_to_a_new_database_then_swaps_by_rename():
    s = commands.restore_script("demo", "demo", "20261201T210509Z")
    lines = s.splitlines()
    create = next(i for i, li in enumerate(lines) if "CREATE DATABASE" in li)
    restore = next(i for i, li in enumerate(lines) if "pg_restore" in li)
    rename = next(i for i, li in enumerate(lines) if 'RENAME TO "demo_before_20261201T210509Z"' in li)
    assert create < restore < rename
    assert "--single-transaction" in lines[restore] and "--role=demo" in lines[restore]
    assert 'DROP DATABASE IF EXISTS "demo_restore_20261201T210509Z"' in lines[restore + 1]
    assert "the current database is unchanged" in lines[restore + 2]
    assert subprocess.run(["sh", "-n", "-c", s]).returncode == 0


def test_the_restore_script_quotes_an_odd_database_name():
    s = commands.restore_script("d'x", "o", "1")
    assert subprocess.run(["sh", "-n", "-c", s]).returncode == 0
    assert "CREATE DATABASE \"d'x_restore_1\" OWNER \"o\"" in " ".join(shlex.split(
        next(li for li in s.splitlines() if "CREATE DATABASE" in li)))


def test_the_maintenance_page_is_a_503_with_retry_after_but_for_nginx_health():
    conf = commands.maintenance_conf("demo", "a restore runs")
    assert "add_header Retry-After 30 always;" in conf
    assert "if ($uri != /nginx-health) {" in conf and "return 503 '" in conf
    assert commands.maintenance_file("demo") == "/etc/nginx/whipup/demo-maintenance.conf"
    on = commands.maintenance_on("demo")
    assert "nginx -t -q" in on and "nginx -s reload" in on


def test_the_site_includes_the_maintenance_file():
    from pathlib import Path

    site = (Path(__file__).resolve().parents[2] / "templates/etc/nginx/sites-available/whipup.conf.j2").read_text()
    assert "include /etc/nginx/whipup/{{ app.name }}-maintenance*.conf;" in site


# --- the nightly job --------------------------------------------------------------------------------------

def test_the_cron_line_and_the_jobs_settings():
    assert nightly.cron_line("03:05").splitlines()[1:] == [
        "CRON_TZ=UTC", "5 3 * * * root /usr/local/sbin/whipup-nightly-backup >> /var/log/whipup-backup.log 2>&1"]
    conf = json.loads(nightly.conf_json("demo", "demo", "b", "http://10.0.0.1:8898", 7, "us-east-1", None))
    assert conf == {"app": "demo", "database": "demo", "bucket": "b", "endpoint": "http://10.0.0.1:8898", "keep": 7,
                    "result": "/var/lib/whipup/backup-nightly.json",
                    "metric": "/var/lib/prometheus/node-exporter/whipup_backup.prom", "region": "us-east-1", "keys": None}


def nightly_ns() -> dict:
    ns: dict = {"__name__": "not_main"}
    exec(compile(nightly.NIGHTLY_PY, "whipup-nightly-backup", "exec"), ns)   # noqa: S102 - our own script
    return ns


def test_the_nightly_script_signs_as_botocore_does_with_a_session_token_and_its_tags():
    """The db node's requests on AWS: SigV4 with the instance profile's temporary credentials, the tags header
    signed, the payload unsigned: the same Authorization as botocore's S3 signer at the same instant."""
    import datetime as dt
    from unittest import mock

    import botocore.auth
    import botocore.awsrequest
    import botocore.config
    import botocore.credentials

    ns = nightly_ns()
    when = dt.datetime(2026, 12, 2, 3, 0, 5, tzinfo=dt.timezone.utc)

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return when

    ns["datetime"] = mock.Mock(datetime=Clock, timezone=dt.timezone)
    url = "https://s3.eu-west-1.amazonaws.com/b-backups/demo/20261202T030005Z-nightly.dump"
    tags = {"x-amz-tagging": "whipup%3Akind=nightly&whipup%3Arelease=-"}
    c = {"region": "eu-west-1", "creds": ("ASIAEXAMPLE", "secret/key", "session-token")}
    ours = ns["signed"](c, "PUT", url, tags)
    req = botocore.awsrequest.AWSRequest("PUT", url, headers=dict(tags))
    req.context["client_config"] = botocore.config.Config(s3={"payload_signing_enabled": False})
    with mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        botocore.auth.S3SigV4Auth(botocore.credentials.Credentials("ASIAEXAMPLE", "secret/key", "session-token"),
                                  "s3", "eu-west-1").add_auth(req)
    assert ours["Authorization"] == req.headers["Authorization"]
    assert ours["x-amz-security-token"] == "session-token" and ours["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    listing = "https://s3.eu-west-1.amazonaws.com/b-backups?list-type=2&prefix=demo%2F"
    req = botocore.awsrequest.AWSRequest("GET", listing)
    req.context["client_config"] = botocore.config.Config(s3={"payload_signing_enabled": False})
    with mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        botocore.auth.S3SigV4Auth(botocore.credentials.Credentials("ASIAEXAMPLE", "secret/key", "session-token"),
                                  "s3", "eu-west-1").add_auth(req)
    assert ns["signed"](c, "GET", listing)["Authorization"] == req.headers["Authorization"]


def test_the_nightly_script_takes_the_instance_profiles_credentials_from_imdsv2():
    import http.server
    import threading

    seen = []

    class Imds(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: bytes, code=200):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):  # noqa: N802
            seen.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
            self._answer(b"tok")

        def do_GET(self):  # noqa: N802
            seen.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
            if self.path.endswith("/security-credentials/"):
                self._answer(b"whipup-demo-db-us-east-1")
            else:
                self._answer(json.dumps({"AccessKeyId": "ASIA1", "SecretAccessKey": "s", "Token": "t"}).encode())

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Imds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ns = nightly_ns()
    try:
        imds = f"http://127.0.0.1:{server.server_address[1]}"
        assert ns["credentials"]({"keys": None, "imds": imds}) == ("ASIA1", "s", "t")
    finally:
        server.shutdown()
    assert seen == [("PUT", "/latest/api/token", "300"),
                    ("GET", "/latest/meta-data/iam/security-credentials/", "tok"),
                    ("GET", "/latest/meta-data/iam/security-credentials/whipup-demo-db-us-east-1", "tok")]
    assert ns["credentials"]({"keys": ["testing", "testing"]}) == ("testing", "testing", None)   # the local cloud
    with pytest.raises(RuntimeError, match="the db node has no instance profile"):
        ns["credentials"]({"keys": None, "imds": "http://127.0.0.1:9"})


def test_the_nightly_scripts_requests_against_a_moto_server_on_loopback(tmp_path):
    """The job's S3 side as it runs on a node (urllib, signed): the dump put with its tags, the app's nightly
    ones listed under its prefix only, one deleted."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        client.create_bucket(Bucket="whipup-bk")
        client.put_object(Bucket="whipup-bk", Key="other/20261201T030000Z-nightly.dump", Body=b"o")
        ns = nightly_ns()
        c = {"region": "us-east-1", "creds": ns["credentials"]({"keys": ["testing", "testing"]})}
        dump = tmp_path / "x.dump"
        dump.write_bytes(b"PGDMP" + b"x" * 70000)
        base = endpoint + "/whipup-bk"
        ns["put_file"](c, base + "/demo/20261202T030005Z-nightly.dump", str(dump), "whipup:kind=nightly&whipup:release=-")
        got = client.get_object(Bucket="whipup-bk", Key="demo/20261202T030005Z-nightly.dump")["Body"].read()
        assert got == dump.read_bytes()
        tagset = client.get_object_tagging(Bucket="whipup-bk", Key="demo/20261202T030005Z-nightly.dump")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tagset} == {"whipup:kind": "nightly", "whipup:release": "-"}
        assert ns["nightly_keys"](c, base, "demo") == ["demo/20261202T030005Z-nightly.dump"]
        ns["s3"](c, "DELETE", base + "/demo/20261202T030005Z-nightly.dump")
        assert ns["nightly_keys"](c, base, "demo") == []
        with pytest.raises(RuntimeError, match="HTTP 404"):
            ns["s3"](c, "GET", endpoint + "/no-such-bucket?list-type=2")
    finally:
        server.stop()


def test_the_nightly_metric_keeps_the_last_success_through_a_failed_run(tmp_path):
    """The monitor's BackupTooOld reads whipup_backup_last_success_timestamp_seconds: a failure must not reset it."""
    ns = nightly_ns()
    path = str(tmp_path / "textfile" / "whipup_backup.prom")
    ns["write_metric"](path, True, 1764621000.4)
    ns["write_metric"](path, False, 1764707400.0)
    values = dict(line.split() for line in open(path) if not line.startswith("#"))
    assert values == {"whipup_backup_last_success_timestamp_seconds": "1764621000",
                      "whipup_backup_last_run_timestamp_seconds": "1764707400", "whipup_backup_last_run_success": "0"}
    assert oct((tmp_path / "textfile" / "whipup_backup.prom").stat().st_mode & 0o777) == "0o644"
    ns["write_metric"](str(tmp_path / "fresh.prom"), False, 5.0)   # never succeeded: no success gauge (absent())
    assert "last_success" not in (tmp_path / "fresh.prom").read_text()


def test_install_file_quotes_the_path():
    cmd = nightly.install_file("/etc/x; whoami", "0644")
    assert "'/etc/x; whoami'" in shlex.split(cmd)[-1]


# --- the bucket (moto) ------------------------------------------------------------------------------------

def test_the_bucket_is_made_private_and_tagged_once(aws, cfg):
    from fabfile.sandbox.settings import ACCOUNT_ID

    s3 = boto3.client("s3", region_name="us-east-1")
    store = BackupStore(s3, s3, f"whipup-demo-backups-{ACCOUNT_ID}-us-east-1", "demo", "whipup-demo", None)
    assert store.ensure() == "created" and store.ensure() == "already ok"
    assert store.is_ours()
    block = s3.get_public_access_block(Bucket=store.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    s3.put_object(Bucket=store.bucket, Key="demo/20261201T210509Z-manual.dump", Body=b"x" * 5)
    store.tag("demo/20261201T210509Z-manual.dump", "manual", T, "r1", "s1")
    assert [(b.id, b.size, b.release, b.sha) for b in store.list()] == [("20261201T210509Z-manual", 5, "r1", "s1")]
    assert "Signature=" in store.put_url("demo/x.dump")      # presigned (this test's client signs v2)


def test_the_bucket_asked_alongside_configure_is_read_only(aws, cfg, monkeypatch):
    from fabfile.config import with_target

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    on_aws = with_target(cfg, "aws")
    assert nightly.bucket_ready(on_aws) is None                # not there: nothing made (ensure_all makes it)
    s3 = boto3.client("s3", region_name="us-east-1")
    assert s3.list_buckets()["Buckets"] == []
    store = BackupStore.open(on_aws)
    assert store.ensure() == "created" and nightly.bucket_ready(on_aws) == store.bucket


def test_the_nightly_job_is_checked_in_one_command_when_it_is_in_place(tmp_path):
    """files_same: one command that says `same` only when every file holds its text (a path such as
    `x; whoami` stays one word); ensure() then runs nothing else."""
    import shlex
    import subprocess

    a, b = tmp_path / "x; whoami", tmp_path / "b"
    a.write_text("one\n")
    b.write_text("two\n")
    command = nightly.files_same([(str(a), "0755", "one\n"), (str(b), "0644", "two\n")])
    script = shlex.split(command)[-1]
    assert shlex.quote(str(a)) in script and command.startswith("sudo -n -- sh -c ")
    assert subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout == "same\n"
    b.write_text("changed\n")
    assert subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout == "differs\n"
    b.unlink()
    assert subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout == "differs\n"


def test_ensure_in_place_is_one_command_and_a_difference_installs_each_file(cfg):
    from types import SimpleNamespace

    class Conn:
        host = "10.0.0.20"

        def __init__(self, same: bool):
            self.same, self.commands = same, []

        def run(self, command, **kw):
            self.commands.append(command)
            out = ("same" if self.same else "differs") if "echo same" in command else "changed"
            return SimpleNamespace(exited=0, stdout=out + "\n", stderr="")

    ok = Conn(same=True)
    assert nightly.ensure(ok, cfg, "b-1") == "already ok" and len(ok.commands) == 1
    differs = Conn(same=False)
    assert nightly.ensure(differs, cfg, "b-1") == "changed"
    assert len(differs.commands) == 4 and nightly.CRON in differs.commands[-1]   # the cron line last
