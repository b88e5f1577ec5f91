"""ec2.launch against botocore's Stubber: the ClientToken sequence."""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from fabfile.errors import ProvisionError
from fabfile.provision.ec2 import launch

PARAMS = {"ImageId": "ami-0123456789abcdef0", "MinCount": 1, "MaxCount": 1}


def _answer(instance_id: str, state: str) -> dict:
    return {"Instances": [{"InstanceId": instance_id, "State": {"Name": state, "Code": 0}}]}


@pytest.fixture
def stubbed():
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ec2) as stub:
        yield ec2, stub
        stub.assert_no_pending_responses()


def test_launch_uses_the_first_token(stubbed):
    ec2, stub = stubbed
    stub.add_response("run_instances", _answer("i-new", "pending"), {**PARAMS, "ClientToken": "t0"})
    assert launch(ec2, PARAMS, ["t0", "t1"]) == "i-new"


def test_launch_moves_past_a_token_answered_with_a_gone_instance(stubbed):
    ec2, stub = stubbed
    stub.add_response("run_instances", _answer("i-old", "terminated"), {**PARAMS, "ClientToken": "t0"})
    stub.add_response("run_instances", _answer("i-new", "pending"), {**PARAMS, "ClientToken": "t1"})
    assert launch(ec2, PARAMS, ["t0", "t1", "t2"]) == "i-new"


def test_launch_gives_up_after_the_last_token(stubbed):
    ec2, stub = stubbed
    for token in ("t0", "t1"):
        stub.add_response("run_instances", _answer("i-old", "shutting-down"), {**PARAMS, "ClientToken": token})
    with pytest.raises(ProvisionError, match=r"answered only with terminated instances for tokens t0, t1"):
        launch(ec2, PARAMS, ["t0", "t1"])
