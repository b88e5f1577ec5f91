"""Fixtures for the cloud-half tests: moto in-process, a sandbox-like image, a roles.yaml copy."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from fabfile.config import load_config
from fabfile.provision.timing import Timing
from fabfile.sandbox.settings import IMAGE_NAME

SHIPPED_ROLES = Path(__file__).resolve().parents[2] / "roles.yaml"
FAST = Timing(poll_seconds=0.01, max_polls=50, ssh_timeout=1.0, ssh_interval=0.05, ssh_connect_timeout=1.0)


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # only the image the test registers
    with mock_aws():
        yield


@pytest.fixture
def ec2(aws):
    """An ec2 client on moto holding one image named like the sandbox's, owned by 'self'."""
    client = boto3.client("ec2", region_name="us-east-1")
    client.register_image(Name=IMAGE_NAME, Description="whipup sandbox image")
    return serialized(client)


def serialized(client):
    """provision converges roles in threads on one client, as boto3 allows; moto's in-process backend is not
    thread-safe (seen: `ValueError: generator already executing` from two roles' calls at once), so in unit
    tests the client's calls take turns. The real API and moto's server need no such thing."""
    lock = threading.RLock()
    call = client._make_api_call

    def one_at_a_time(operation, params):
        with lock:
            return call(operation, params)

    client._make_api_call = one_at_a_time
    return client


@pytest.fixture
def roles_file(tmp_path) -> Path:
    """The shipped roles.yaml, copied so its state dir lands in tmp_path."""
    path = tmp_path / "roles.yaml"
    shutil.copy(SHIPPED_ROLES, path)
    (tmp_path / "examples").symlink_to(SHIPPED_ROLES.parent / "examples")  # app.repo must exist
    return path


@pytest.fixture
def cfg(roles_file):
    return load_config(roles_file)


@pytest.fixture
def fast() -> Timing:
    """Waiter and SSH timing shrunk for moto, where instances run at once."""
    return FAST


@pytest.fixture
def log() -> list[str]:
    """A list to pass as `log=log.append`."""
    return []
