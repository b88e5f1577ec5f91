"""The local cloud's API marks each change (sandbox/api.py) and the materializer reconciles on the mark, not
on a fast poll of four Describe calls: a real moto server on loopback, a real boto3 client of each kind."""
from __future__ import annotations

import concurrent.futures
import sys
import threading
import time

import boto3
from botocore.config import Config as BotoConfig
from werkzeug.serving import make_server

from fabfile.sandbox import api
from fabfile.sandbox.api import WATCHER_AGENT, due, marking, mark_of, serialized, service_of


def serve(tmp_path):
    """moto's WSGI app behind `marking`, on an ephemeral loopback port: (endpoint, mark, stop)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    mark = tmp_path / "api.changed"
    app = serialized(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, marking(app, mark), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", mark, server.shutdown


def client(endpoint, agent=None):
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=BotoConfig(user_agent_extra=agent))


def test_a_users_request_moves_the_mark_and_the_materializers_own_requests_do_not(tmp_path):
    endpoint, mark, stop = serve(tmp_path)
    try:
        watcher, user = client(endpoint, WATCHER_AGENT), client(endpoint)
        watcher.describe_instances()
        assert mark_of(mark) is None                 # nothing but the materializer asked yet
        user.create_key_pair(KeyName="k")
        first = mark_of(mark)
        assert first is not None
        for _ in range(3):
            watcher.describe_instances()
            watcher.describe_security_groups()
        assert mark_of(mark) == first
        time.sleep(0.01)
        user.describe_key_pairs()
        assert mark_of(mark) > first
    finally:
        stop()


def test_the_mark_moves_only_once_the_change_is_in_the_api(tmp_path):
    """The materializer reads the mark before its Describe calls: a mark that moved before moto applied the
    change would let that reconcile miss it."""
    seen = []

    def app(environ, start_response):
        seen.append(WATCHER_AGENT)        # the request is being handled: no mark yet
        assert not (tmp_path / "m").exists()
        start_response("200 OK", [])
        return [b""]

    marking(app, tmp_path / "m")({"HTTP_USER_AGENT": "Boto3/1"}, lambda *a: None)
    assert seen and (tmp_path / "m").exists()


def test_reconcile_when_the_mark_moved_when_there_is_none_and_every_idle_period():
    idle = api.IDLE_RECONCILE
    assert due(5, 4, 0.1) and due(None, None, 0.1)
    assert not due(5, 5, 0.1) and not due(5, 5, idle - 0.01)
    assert due(5, 5, idle)


def test_the_local_clouds_account_limit_is_its_own(tmp_path, monkeypatch):
    """moto answers AWS's old default (20); the local cloud holds more hosts (preflight reads this)."""
    from moto.ec2.responses.account_attributes import AccountAttributes

    monkeypatch.setattr(AccountAttributes, "describe_account_attributes",        # put back after the test
                        AccountAttributes.describe_account_attributes)
    api.with_instance_limit(api.MAX_INSTANCES)
    endpoint, mark, stop = serve(tmp_path)
    try:
        answer = client(endpoint).describe_account_attributes(AttributeNames=["max-instances"])
        (attribute,) = [a for a in answer["AccountAttributes"] if a["AttributeName"] == "max-instances"]
        assert attribute["AttributeValues"] == [{"AttributeValue": "64"}]
    finally:
        stop()


def test_the_service_of_a_signed_request_is_read_from_its_credential_scope():
    auth = ("AWS4-HMAC-SHA256 Credential=testing/20261203/us-east-1/ec2/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=abc")
    assert service_of({"HTTP_AUTHORIZATION": auth}) == "ec2"
    assert service_of({"HTTP_AUTHORIZATION": auth.replace("/ec2/", "/s3/")}) == "s3"
    assert service_of({}) is None


def test_ec2_requests_are_handled_one_at_a_time_and_the_others_alongside():
    inside, most = [0], {"ec2": 0, "s3": 0}
    guard = threading.Lock()

    def app(environ, start_response):
        kind = service_of(environ)
        with guard:
            inside[0] += 1
            most[kind] = max(most[kind], inside[0])
        time.sleep(0.05)
        with guard:
            inside[0] -= 1
        return [b""]

    wrapped = serialized(app)

    def call(kind):
        wrapped({"HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential=k/d/r/{kind}/aws4_request"}, None)

    for kind, want in (("ec2", 1), ("s3", 4)):
        threads = [threading.Thread(target=call, args=(kind,)) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert most[kind] == want, most


def test_instances_launched_at_once_in_one_subnet_all_get_their_own_address(tmp_path):
    """moto alone answers some of these 500 (its subnet's address generator is shared across threads)."""
    endpoint, mark, stop = serve(tmp_path)
    switch = sys.getswitchinterval()
    try:
        once = BotoConfig(retries={"max_attempts": 1})          # boto3 would retry a 500
        clients = [boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t",
                                aws_secret_access_key="t", config=once) for _ in range(16)]
        vpc = clients[0].create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
        subnet = clients[0].create_subnet(VpcId=vpc, CidrBlock="10.7.0.0/20")["Subnet"]["SubnetId"]
        image = clients[0].describe_images()["Images"][0]["ImageId"]
        sys.setswitchinterval(1e-6)                              # threads switch often, as on a busy machine

        def launch(n):
            (instance,) = clients[n % 16].run_instances(ImageId=image, MinCount=1, MaxCount=1,
                                                        SubnetId=subnet)["Instances"]
            return instance["PrivateIpAddress"]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            addresses = list(pool.map(launch, range(160)))
        assert len(set(addresses)) == len(addresses) == 160
    finally:
        sys.setswitchinterval(switch)
        stop()
