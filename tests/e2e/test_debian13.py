"""Debian 13 on the local cloud (sandbox #8): a project asking for Python >=3.12 gets the Debian 13 image
through `cluster.ami: auto`, and `fab configure` sets up that release's PostgreSQL (17) with the same
roles.yaml and templates that give Debian 12 its PostgreSQL 15: the paths come from the host.

A db and an app node only (proxy and worker at count 0). Figures are printed as `MEASURE ...` lines."""
from __future__ import annotations

import re
import time

import pytest
import yaml

from .conftest import cluster_roles, fab, make_network, sandbox_env
from .test_configure import PG_PROBE, SUMMARY

pytestmark = pytest.mark.e2e

SANDBOX = 8


class Nodes:
    def __init__(self, env: dict, roles):
        from fabfile.cloud import open_cloud
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        from .demo import sandbox_settings

        self.env, self.roles = env, roles
        with sandbox_settings(env):
            self.cfg = load_config(roles)
            ec2 = open_cloud("sandbox", self.cfg.cluster.region).client("ec2")
            self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(ec2, self.cfg.cluster.name)}
            self.images = {n: ec2.describe_instances(InstanceIds=[node.instance_id])["Reservations"][0]
                           ["Instances"][0]["ImageId"] for n, node in self.nodes.items()}
            self.ec2 = ec2

    def ssh(self, node: str, command: str, *, stdin: str | None = None) -> str:
        from fabfile.remote import run
        from fabfile.ssh import connect

        from .demo import sandbox_settings

        with sandbox_settings(self.env):
            conn = connect(self.cfg, self.nodes[node])
            try:
                return run(conn, command, step=command[:40], stdin=stdin, timeout=120).stdout
            finally:
                conn.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("debian13")
    env = sandbox_env(tmp, SANDBOX)
    started = time.monotonic()
    up = fab("sandbox.up", env=env, timeout=1800)
    print(f"\nMEASURE sandbox.up (both images): {time.monotonic() - started:.1f} s\n{up.stdout}")
    assert "debian-13-amd64-whipup-sandbox" in up.stdout
    roles = cluster_roles(tmp, "deb13", make_network(env, SANDBOX))
    data = yaml.safe_load(roles.read_text())
    assert data["cluster"]["ami"] == "auto"          # the shipped default
    data["app"]["python"] = ">=3.12"                 # what a Django 6 project asks for
    for role in ("proxy", "worker"):
        data["roles"][role]["count"] = 0
    roles.write_text(yaml.safe_dump(data, sort_keys=False))
    yield env, roles
    fab("sandbox.down", env=env, check=False)


@pytest.fixture(scope="module")
def cluster(cloud):
    env, roles = cloud
    started = time.monotonic()
    out = fab("provision", "--config", str(roles), env=env).stdout
    print(f"\nMEASURE provision db + app on Debian 13: {time.monotonic() - started:.1f} s\n{out}")
    assert ("image: debian-13-amd64-whipup-sandbox (owner self): Debian 13 (trixie), Python 3.13.5, "
            "PostgreSQL 17; its Python 3.13.5 satisfies the project's '>=3.12'") in out
    return Nodes(env, roles)


def test_the_nodes_run_debian_13_with_python_3_13(cluster):
    assert sorted(cluster.nodes) == ["app-0", "db-0"]
    (image,) = cluster.ec2.describe_images(ImageIds=sorted(set(cluster.images.values())))["Images"]
    assert image["Name"] == "debian-13-amd64-whipup-sandbox"
    for node in ("app-0", "db-0"):
        assert re.fullmatch(r"Python 3\.13\.\d+\n", cluster.ssh(node, "python3 --version")), node
        assert 'VERSION_ID="13"' in cluster.ssh(node, "cat /etc/os-release")


def test_configure_sets_up_postgresql_17_in_its_own_paths(cluster):
    env, roles = cluster.env, cluster.roles
    started = time.monotonic()
    p = fab("configure", "--config", str(roles), env=env, timeout=1800)
    print(f"\nMEASURE cold configure db + app on Debian 13: {time.monotonic() - started:.1f} s\n{p.stdout}")
    assert "/etc/postgresql/17/main/pg_hba.conf" in p.stdout
    assert "/etc/postgresql/15" not in p.stdout and "<postgresql-version>" not in p.stdout
    assert cluster.ssh("db-0", "ls /etc/postgresql").split() == ["17"]
    conf = cluster.ssh("db-0", "sudo -n cat /etc/postgresql/17/main/conf.d/whipup.conf")
    assert f"listen_addresses = 'localhost,{cluster.nodes['db-0'].private_ip}'" in conf
    assert "managed by whipup" in cluster.ssh("db-0", "sudo -n head -n 3 /etc/postgresql/17/main/pg_hba.conf")
    sql = "select current_setting('server_version_num'), current_setting('listen_addresses'), current_setting('hba_file')"
    answer = cluster.ssh("db-0", f"sudo -n -u postgres psql -X -At -c \"{sql}\"").strip().split("|")
    assert answer[0].startswith("17") and answer[1] == f"localhost,{cluster.nodes['db-0'].private_ip}"
    assert answer[2] == "/etc/postgresql/17/main/pg_hba.conf"
    # from the app node, through the security group and pg_hba.conf: the server asks for the password
    db = cluster.cfg.app.name
    probe = cluster.ssh("app-0", f"python3 - {cluster.nodes['db-0'].private_ip} {db} {db}", stdin=PG_PROBE)
    assert probe.startswith("R"), probe


def test_a_second_configure_reads_the_facts_once_and_changes_nothing(cluster):
    p = fab("configure", "--config", str(cluster.roles), env=cluster.env)
    got = {m["host"]: m.groupdict() for m in SUMMARY.finditer(p.stdout)}
    assert sorted(got) == ["deb13-app-0", "deb13-db-0"], p.stdout
    for s in got.values():
        assert (s["changed"], s["failed"], s["services"], s["commands"]) == ("0", "0", None, "1"), p.stdout
