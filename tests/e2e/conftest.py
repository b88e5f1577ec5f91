"""End-to-end tests run against a real local cloud on this machine (root needed)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "end-to-end tests need root (network namespaces, mounts)"
    missing = [c for c in ("ip", "unshare", "debootstrap", "tinyproxy", "ssh", "nft") if shutil.which(c) is None]
    if missing:
        return f"end-to-end tests need: {', '.join(missing)} (./setup.sh --test installs them)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _why_not()
    if reason is None:
        return
    if os.environ.get("CI"):  # in CI a missing prerequisite is a failure, not a skip
        raise pytest.UsageError(reason)
    for item in items:
        if "e2e" in item.keywords or "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))


def fab(*args: str, env: dict, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `fab` as a user would, from the repository root."""
    p = subprocess.run([sys.executable, "-m", "fabric", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"fab {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


# Test sandboxes are numbered; WHIPUP_TEST_SANDBOX_OFFSET shifts the numbers so that two
# test runs on one machine (a developer's and a CI clone's) never share a bridge or a port.
OFFSET = int(os.environ.get("WHIPUP_TEST_SANDBOX_OFFSET", "0"))


def sandbox_env(tmp: Path, n: int) -> dict:
    """Settings for a private sandbox: its own API port, bridge, address and state dir."""
    n += OFFSET
    env = dict(os.environ)
    env.update({
        "WHIPUP_SANDBOX_STATE": str(tmp / "sandbox-state"),
        "WHIPUP_SANDBOX_PORT": str(4600 + n),
        "WHIPUP_SANDBOX_BRIDGE": f"whiptest{n}",
        "WHIPUP_SANDBOX_BRIDGE_ADDRESS": f"10.255.{250 - n}.254",
        "WHIPUP_SANDBOX_PROXY_PORT": str(8900 + n),
    })
    return env


def make_network(env: dict, n: int) -> dict:
    """A VPC and subnet of sandbox #n's own (10.10n.0.0/16), so its hosts' addresses never clash
    with another local cloud on this machine (every default VPC is 172.31.0.0/16), and the admin CIDR
    of a cluster on it: this machine reaches sandbox #n's hosts from #n's bridge address, and the
    security groups are enforced (roles.yaml's default, 10.255.255.254/32, is the default sandbox's)."""
    import boto3

    n += OFFSET
    ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{env['WHIPUP_SANDBOX_PORT']}", region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    vpc = ec2.create_vpc(CidrBlock=f"10.{100 + n}.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{100 + n}.1.0/24",
                               AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    return {"vpc": vpc, "subnet": subnet, "admin_cidr": f"{env['WHIPUP_SANDBOX_BRIDGE_ADDRESS']}/32"}


def cluster_roles(tmp: Path, name: str, network: dict, *, app_count: int = 1) -> Path:
    """A copy of the shipped roles.yaml for a test cluster: its own name, network, state dir and app repo path."""
    import yaml

    data = yaml.safe_load((ROOT / "roles.yaml").read_text())
    data["cluster"]["name"] = name
    data["cluster"].update(network)
    data["cluster"]["state_dir"] = str(tmp / "state")
    data["app"]["repo"] = str(ROOT / "examples" / "demo")
    data.setdefault("configure", {})["templates_dir"] = str(ROOT / "templates")
    data["roles"]["app"]["count"] = app_count
    path = tmp / "roles.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def e2e_sandbox(tmp_path_factory):
    """A private local cloud shared by the configure and deploy tests (sandbox #2)."""
    tmp = tmp_path_factory.mktemp("sandbox2")
    env = sandbox_env(tmp, 2)
    fab("sandbox.up", env=env)
    env["WHIPUP_TEST_NETWORK"] = json.dumps(make_network(env, 2))
    yield env
    fab("sandbox.down", env=env, check=False)


@pytest.fixture(scope="session")
def e2e_cluster(e2e_sandbox, tmp_path_factory):
    """The 4 default roles, provisioned on sandbox #2: (env, roles.yaml path)."""
    tmp = tmp_path_factory.mktemp("cluster")
    roles = cluster_roles(tmp, "e2e", json.loads(e2e_sandbox["WHIPUP_TEST_NETWORK"]))
    fab("provision", "--config", str(roles), env=e2e_sandbox)
    return e2e_sandbox, roles
