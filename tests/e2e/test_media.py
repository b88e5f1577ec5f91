"""Media in S3 on the local cloud (#11 item 8), on a sandbox of its own (#8) with a proxy and an app node.

provision makes the cluster's bucket (a re-run: "already ok", no change); configure gives the proxy its
`location /media/`; from the app node an object is uploaded into the bucket through the S3 gate on the
bridge (plain curl, unsigned: moto checks no signature), and this machine GETs it through the proxy's
/media/: 200, the same bytes. The gate refuses anything of moto that is not S3; the proxy refuses writes.
destroy removes the bucket with its object.
"""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml

from .conftest import cluster_roles, fab, make_network, sandbox_env
from .demo import sandbox_settings

pytestmark = pytest.mark.e2e

SANDBOX = 8
KEY = "e2e/upload one.bin"          # a space: the key is URL-encoded on the way in and out


class MediaCluster:
    def __init__(self, env: dict, roles):
        from fabfile.cloud import open_cloud
        from fabfile.config import load_config
        from fabfile.media import site
        from fabfile.nodes import find_nodes
        from fabfile.sandbox.settings import ACCOUNT_ID, load_settings

        self.env, self.roles = env, roles
        self.cfg = load_config(roles)
        ec2 = open_cloud(self.cfg.cluster.target, self.cfg.cluster.region, endpoint_url=self.endpoint).client("ec2")
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(ec2, self.cfg.cluster.name)}
        self.site = site(self.cfg, ACCOUNT_ID, load_settings(env).s3_endpoint)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.env['WHIPUP_SANDBOX_PORT']}"

    def ssh(self, node: str, command: str, *, stdin: str | None = None) -> str:
        from fabfile.remote import run
        from fabfile.ssh import connect

        with sandbox_settings(self.env):     # the route check looks for this sandbox's bridge
            conn = connect(self.cfg, self.nodes[node])
            try:
                return run(conn, command, step=command[:40], stdin=stdin, check=True, timeout=120).stdout
            finally:
                conn.close()

    def proxy(self, path: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
        ip = self.nodes["proxy-0"].private_ip
        out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True).stdout
        assert f" dev {self.env['WHIPUP_SANDBOX_BRIDGE']} " in out, f"{ip} is not a host of this sandbox"
        req = urllib.request.Request(f"http://{ip}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("media")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    try:
        roles = cluster_roles(tmp, "media", make_network(env, SANDBOX))
        data = yaml.safe_load(roles.read_text())
        for role in ("db", "worker"):
            data["roles"][role]["count"] = 0
        data["app"]["media"] = "s3"
        roles.write_text(yaml.safe_dump(data, sort_keys=False))
        first = fab("provision", "--config", str(roles), env=env).stdout
        again = fab("provision", "--config", str(roles), env=env).stdout
        yield MediaCluster(env, roles), first, again
    finally:
        fab("sandbox.down", env=env, check=False)


def test_provision_makes_the_bucket_once(media):
    cluster, first, again = media
    bucket = cluster.site.bucket
    assert bucket == "media-media-123456789012-us-east-1" and cluster.site.endpoint.endswith(":8898")
    assert f"media: bucket {bucket} created (us-east-1)" in first
    assert f"media: bucket {bucket} already ok" in again and "0 mutating API calls\n" in again


def test_an_upload_from_the_app_node_is_served_by_the_proxy(media):
    cluster, _, _ = media
    fab("configure", "--config", str(cluster.roles), env=cluster.env)
    body = os.urandom(300 * 1024)
    gate, bucket = cluster.site.endpoint, cluster.site.bucket
    quoted = urllib.request.quote(KEY)
    cluster.ssh("app-0", "base64 -d > /tmp/upload.bin", stdin=base64.b64encode(body).decode())
    status = cluster.ssh("app-0", f"curl -sS -o /dev/null -w '%{{http_code}}' -H 'Content-Type: application/octet-stream' "
                                  f"-T /tmp/upload.bin '{gate}/{bucket}/{quoted}'")
    assert status == "200"
    code, got = cluster.proxy(f"/media/{quoted}")
    assert code == 200 and hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
    assert cluster.proxy("/media/e2e/missing.bin")[0] == 404
    assert cluster.proxy(f"/media/{quoted}", method="PUT", data=b"overwrite")[0] == 403     # read-only there
    assert cluster.proxy(f"/media/{quoted}")[1] == got


def test_the_gate_lets_hosts_reach_s3_only(media):
    cluster, _, _ = media
    gate = cluster.site.endpoint
    ec2 = cluster.ssh("app-0", f"curl -s -o /dev/null -w '%{{http_code}}' -d 'Action=DescribeInstances&Version=2016-11-15' "
                               f"{gate}/")
    reset = cluster.ssh("app-0", f"curl -s -o /dev/null -w '%{{http_code}}' -X POST {gate}/moto-api/reset")
    assert (ec2, reset) == ("403", "403")


def test_destroy_removes_the_bucket_with_its_objects(media):
    cluster, _, _ = media
    out = fab("destroy", "--config", str(cluster.roles), "--yes", env=cluster.env).stdout
    bucket = cluster.site.bucket
    assert f"  media bucket  {bucket}  (1 object(s), uploaded media: deleted with it)" in out
    assert f"deleted media bucket {bucket} and its 1 object(s)" in out
