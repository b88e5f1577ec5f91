"""The sandbox's S3 gate: moto's S3, and nothing else of moto, for hosts (on loopback here)."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from fabfile.provision.media import read_policy
from fabfile.sandbox import control, s3gate
from fabfile.sandbox.settings import load_settings

S3_SIG = "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"
EC2_SIG = S3_SIG.replace("/s3/", "/ec2/")


@pytest.mark.parametrize("method, target, headers", [
    ("GET", "/b/k", {}),
    ("PUT", "/b/uploads/a.png", {"content-length": "3"}),
    ("GET", "/", {"authorization": S3_SIG}),
    ("PUT", "/b/k?partNumber=1&uploadId=x", {"authorization": S3_SIG, "content-length": "5"}),
    ("GET", "/b/k", {"authorization": "AWS testing:c2ln"}),            # SigV2: moto sends it to S3
    ("POST", "/b?delete", {"authorization": S3_SIG, "content-type": "application/xml", "content-length": "9"}),
    ("POST", "/b", {"content-type": "multipart/form-data; boundary=x", "content-length": "9"}),   # browser upload
])
def test_s3_requests_pass(method, target, headers):
    assert s3gate.refusal(method, target, headers) is None


@pytest.mark.parametrize("method, target, headers, why", [
    ("POST", "/moto-api/reset", {}, "moto's own API"),
    ("GET", "/latest/meta-data/iam/", {}, "moto's own API"),
    ("POST", "/", {"authorization": EC2_SIG, "content-type": "application/x-www-form-urlencoded"}, "signed for ec2"),
    ("POST", "/", {"authorization": "AWS4-HMAC-SHA256 garbage"}, "signed for an unreadable scope"),
    ("POST", "/", {"x-amz-target": "DynamoDB_20120810.ListTables"}, "JSON-protocol"),

    ("GET", "/ec2_us-east-1/x", {}, "no bucket name holds '_'"),
    ("GET", "/pool/.well-known/jwks.json", {}, "identity-provider"),
    ("GET", "/v20180820/accesspoint", {"authorization": S3_SIG}, "S3 Control"),
    ("PUT", "/b/k", {"transfer-encoding": "chunked"}, "without Content-Length"),
])
def test_everything_else_of_moto_is_refused(method, target, headers, why):
    assert why in s3gate.refusal(method, target, headers)


FORM = {"content-type": "application/x-www-form-urlencoded", "content-length": "9"}


@pytest.mark.parametrize("body, why", [
    (b"Action=AssumeRoleWithWebIdentity&RoleArn=x", "form-encoded API call (Action=AssumeRoleWithWebIdentity)"),
    (b"Version=2009-04-15&DomainName=d", "form-encoded API call (Version=2009-04-15)"),
    (b"plain text, no form", None), (bytes(range(256)), None), (b"a=1&b=2", None),
])
def test_an_unsigned_form_body_is_read_for_another_services_call(body, why):
    assert s3gate.reads_form(FORM) and not s3gate.reads_form({**FORM, "authorization": S3_SIG})
    assert not s3gate.reads_form({**FORM, "content-length": "0"})
    assert s3gate.refusal("PUT", "/b/k", FORM, body) == (why and f"a {why}, not S3")


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "bridge"])
def test_the_gate_never_listens_everywhere(address):
    with pytest.raises(ValueError, match="s3gate"):
        s3gate.check_listen(address)
    assert s3gate.check_listen("10.255.255.254") == "10.255.255.254"


def test_sandbox_settings_and_the_gates_command():
    settings = load_settings({"WHIPUP_SANDBOX_BRIDGE_ADDRESS": "10.255.200.254", "WHIPUP_SANDBOX_S3_PORT": "8950",
                              "WHIPUP_SANDBOX_PORT": "4650"})
    assert settings.s3_endpoint == "http://10.255.200.254:8950"
    assert control.s3gate_argv(settings)[1:] == ["-m", "fabfile.sandbox.s3gate", "10.255.200.254", "8950", "4650"]
    assert load_settings({}).s3_port == 8898


@pytest.fixture
def gate():
    """moto's server and the gate in front of it, both on 127.0.0.1: the gate's URL."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    httpd = s3gate.server("127.0.0.1", 0, moto.get_host_and_port()[1])
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", moto.get_host_and_port()[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        moto.stop()


def _client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="any",
                        aws_secret_access_key="any", config=BotoConfig(s3={"addressing_style": "path"},
                                                                       retries={"max_attempts": 1}))


def test_through_the_gate_s3_works_unsigned_and_signed_and_ec2_does_not(gate):
    url, moto_port = gate
    s3 = _client("s3", url)
    s3.create_bucket(Bucket="media")
    s3.put_bucket_policy(Bucket="media", Policy=json.dumps(read_policy("media", "vpc-1")))   # unsigned reads
    body = bytes(range(256)) * 1024                       # 256 KiB: more than one chunk each way
    put = urllib.request.Request(f"{url}/media/uploads/a.bin", data=body, method="PUT",    # unsigned, as curl -T
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(put, timeout=10) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"{url}/media/uploads/a.bin", timeout=10) as resp:
        assert resp.read() == body
    assert s3.get_object(Bucket="media", Key="uploads/a.bin")["Body"].read() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="media")["Contents"]] == ["uploads/a.bin"]
    with pytest.raises(ClientError) as info:
        _client("ec2", url).describe_instances()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST"), timeout=10)
    assert refused.value.code == 403 and b"moto's own API" in refused.value.read()
    direct = _client("s3", f"http://127.0.0.1:{moto_port}")
    assert direct.get_object(Bucket="media", Key="uploads/a.bin")["ContentLength"] == len(body)   # not reset
