"""`fab provision` / `status` / `destroy` on a real local cloud (sandbox #3, no host configuration)."""
from __future__ import annotations

import json
import time

import boto3
import pytest

from .conftest import cluster_roles, fab, make_network, sandbox_env

pytestmark = pytest.mark.e2e


SANDBOX = 3


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("provision")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    roles = cluster_roles(tmp, "e2e-prov", make_network(env, SANDBOX))
    ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{env['WHIPUP_SANDBOX_PORT']}",
                       region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    yield env, roles, ec2
    fab("sandbox.down", env=env, check=False)


def nodes(env, roles) -> list[dict]:
    return json.loads(fab("status", "--json", "--config", str(roles), env=env).stdout)


def test_provision_reaches_ssh_on_every_node_with_pinned_keys(cloud):
    env, roles, ec2 = cloud
    started = time.monotonic()
    out = fab("provision", "--config", str(roles), env=env).stdout
    print(f"\nprovision of 4 roles: {time.monotonic() - started:.1f} s\n{out}")
    found = nodes(env, roles)
    assert sorted(n["role"] for n in found) == ["app", "db", "proxy", "worker"]
    assert all(n["state"] == "running" for n in found)
    # provision returns only once every node accepted our key over SSH with its pinned host key;
    # the known_hosts file holds exactly one pinned key per node address
    known = (roles.parent / "state" / "e2e-prov" / "known_hosts").read_text().splitlines()
    assert sorted(line.split()[0] for line in known) == sorted(n["private_ip"] for n in found)
    assert all(line.split()[1] == "ssh-ed25519" for line in known)


def test_second_provision_launches_nothing(cloud):
    env, roles, _ = cloud
    before = nodes(env, roles)
    out = fab("provision", "--config", str(roles), env=env).stdout
    assert "0 mutating API calls" in out
    assert nodes(env, roles) == before


def test_a_terminated_node_is_recreated_and_only_it(cloud):
    env, roles, ec2 = cloud
    before = {n["role"]: n for n in nodes(env, roles)}
    lost = before["app"]["instance_id"]
    ec2.terminate_instances(InstanceIds=[lost])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[lost], WaiterConfig={"Delay": 1})
    out = fab("provision", "--config", str(roles), env=env).stdout
    assert "RunInstances 1" in out
    after = {n["role"]: n for n in nodes(env, roles)}
    assert after["app"]["instance_id"] != lost and after["app"]["name"] == before["app"]["name"]
    for role in ("proxy", "db", "worker"):
        assert after[role]["instance_id"] == before[role]["instance_id"]


def test_destroy_removes_only_this_cluster(cloud):
    env, roles, ec2 = cloud
    ami = ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]
    bystander = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    no_terminal = fab("destroy", "--config", str(roles), env=env, check=False)
    assert no_terminal.returncode == 1 and "nothing removed" in no_terminal.stderr
    assert len(nodes(env, roles)) == 4
    fab("destroy", "--yes", "--config", str(roles), env=env)
    assert nodes(env, roles) == []
    state = ec2.describe_instances(InstanceIds=[bystander])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"
    groups = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    assert not [g for g in groups if g.startswith("e2e-prov-")]
