"""The bad-input corpus that needs a cloud to be found (the rest, found in roles.yaml itself, is in
tests/unit/test_bad_input.py): run `fab provision` / `fab create-node` as a user would against a real local
cloud API (moto's server of sandbox #5) with an AMI id that does not exist, an AMI name that matches
nothing, an instance type not offered, a subnet that does not exist, a private key that does not load, a
region typo, and two of those at once.  Each: exit 1, preflight's error naming the file and the key, no
traceback, and afterwards the API holds no key pair, no security group and no instance of that cluster.

No host needs to boot for these, so only the API is started (no image build, bridge, proxy or
materializer); `fab sandbox.down` stops it.  The whole file takes ~13 s (9 fab runs of ~0.8 s, the API ~2 s).
"""
from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
import yaml

from fabfile.provision.keys import generate_ed25519
from fabfile.sandbox import control
from fabfile.sandbox.settings import load_settings

from .conftest import cluster_roles, fab, make_network, sandbox_env

pytestmark = pytest.mark.e2e

SANDBOX = 5
MISSING_AMI = "ami-0123456789abcdef0"
MISSING_SUBNET = "subnet-0123456789abcdef0"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """Sandbox #5's API only (moto's server on loopback) with the sandbox image registered: (env, ec2, network)."""
    tmp = tmp_path_factory.mktemp("bad-input-hosts")
    env = sandbox_env(tmp, SANDBOX)
    settings = load_settings(env)
    for d in (settings.run_dir, settings.state_dir / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    try:
        control.start_api(settings, log=lambda _m: None)
        control.register_image(settings, log=lambda _m: None)
        ec2 = boto3.client("ec2", endpoint_url=settings.endpoint, region_name=settings.region,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        yield env, ec2, make_network(env, SANDBOX)
    finally:
        fab("sandbox.down", env=env, check=False)


def roles_with(tmp: Path, name: str, network: dict, edits: dict) -> Path:
    """A test cluster's roles.yaml (conftest.cluster_roles) with `edits` ({"roles.app.instance_type": ...})."""
    path = cluster_roles(tmp, name, network)
    data = yaml.safe_load(path.read_text())
    for dotted, value in edits.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def bad_private_key(tmp: Path) -> tuple[dict, list[str]]:
    """cluster.ssh naming a real public key and a private key file holding something that is not a key (as
    root, a file mode cannot make it unreadable); (edits, expected problem lines)."""
    (tmp / "id_ed25519.pub").write_text(generate_ed25519("me@here").public + "\n")
    (tmp / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n"
                                    "-----END OPENSSH PRIVATE KEY-----\n")
    edits = {"cluster.ssh.public_key": str(tmp / "id_ed25519.pub"), "cluster.ssh.private_key": str(tmp / "id_ed25519")}
    return edits, [(f"roles.yaml: cluster.ssh.private_key: {tmp / 'id_ed25519'}: is not a private key paramiko "
                   f"can load (ValueError)")]


AMI_ID = ({"cluster.ami": {"id": MISSING_AMI}},
          [f"roles.yaml: cluster.ami.id: {MISSING_AMI} does not exist in us-east-1"])
AMI_NAME = ({"roles.app.ami": {"name": "ubuntu-24.04-*", "owner": "self"}},
            ["roles.yaml: roles.app.ami.name: no available image named 'ubuntu-24.04-*' owned by self in us-east-1"])
TYPE = ({"roles.worker.instance_type": "t3.smal"},
        ["roles.yaml: roles.worker.instance_type: t3.smal is not offered in us-east-1 (did you mean t3.small?)"])
SUBNET = ({"cluster.subnet": MISSING_SUBNET},
          [f"roles.yaml: cluster.subnet: {MISSING_SUBNET} does not exist in us-east-1"])
REGION = ({"cluster.region": "us-est-1"},
          [("roles.yaml: cluster.region: us-est-1 is not served by the local cloud (did you mean us-east-1?); "
           "it serves us-east-1 (WHIPUP_SANDBOX_REGION)"),
           "(the checks that ask the cloud did not run: the region must be right first)"])
CASES = {
    "ami-id": AMI_ID,
    "ami-name": AMI_NAME,
    "instance-type": TYPE,
    "subnet": SUBNET,
    "private-key": bad_private_key,
    "region": REGION,
    "ami-id+instance-type": ({**AMI_ID[0], **TYPE[0]}, AMI_ID[1] + TYPE[1]),
}


def nothing_of(ec2, cluster: str) -> None:
    """The API holds no key pair, security group or instance of `cluster`."""
    assert [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith(cluster)] == []
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{cluster}-*"]}])
    assert groups["SecurityGroups"] == []
    tagged = ec2.describe_instances(Filters=[{"Name": "tag:whipup:cluster", "Values": [cluster]}])
    assert tagged["Reservations"] == []


def refused(env: dict, *args: str) -> list[str]:
    """Run fab ARGS, which must fail cleanly; the error's problem lines."""
    p = fab(*args, env=env, check=False, timeout=120)
    assert p.returncode == 1, f"{p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    assert "0 mutating API calls" in p.stdout, p.stdout
    head, *lines = p.stderr.strip().splitlines()
    assert head.startswith("preflight: ") and head.endswith(", nothing was created:"), p.stderr
    return [line.strip() for line in lines]


@pytest.mark.parametrize("case", list(CASES))
def test_provision_refuses_bad_input_before_creating_anything(api, tmp_path, case):
    env, ec2, network = api
    edits, expected = CASES[case](tmp_path) if callable(CASES[case]) else CASES[case]
    cluster = f"bad-{case.replace('+', '-')}"
    roles = roles_with(tmp_path, cluster, network, edits)
    assert refused(env, "provision", "--config", str(roles)) == expected
    nothing_of(ec2, cluster)


def test_create_node_refuses_a_type_not_offered(api, tmp_path):
    env, ec2, network = api
    roles = roles_with(tmp_path, "bad-create-node", network, TYPE[0])
    assert refused(env, "create-node", "worker", "--config", str(roles)) == TYPE[1]
    nothing_of(ec2, "bad-create-node")


def test_good_input_passes_and_a_rerun_changes_nothing(api, tmp_path):
    """The shipped roles.yaml passes preflight on the sandbox API; on the complete cluster the re-run's preflight
    (same calls, through moto's HTTP server) is printed, not asserted (bench/ times it).  No host boots: moto marks
    the instances running."""
    env, ec2, network = api
    roles = roles_with(tmp_path, "good-input", network, {})
    first = fab("provision", "--no-wait-ssh", "--config", str(roles), env=env, timeout=120).stdout
    assert any(line.startswith("preflight: ") for line in first.splitlines()) and "RunInstances 4" in first
    started = time.monotonic()
    again = fab("provision", "--no-wait-ssh", "--config", str(roles), env=env, timeout=120).stdout
    wall = time.monotonic() - started
    seconds = float(next(line for line in again.splitlines() if line.startswith("preflight: ")).split()[1])
    print(f"\nre-run on a complete cluster: preflight {seconds:.2f} s, whole fab provision {wall:.1f} s")
    assert "0 mutating API calls" in again
    tagged = ec2.describe_instances(Filters=[{"Name": "tag:whipup:cluster", "Values": ["good-input"]}])
    assert sum(len(r["Instances"]) for r in tagged["Reservations"]) == 4
