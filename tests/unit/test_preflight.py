"""Preflight on moto in-process: each bad input alone, and several at once, gives its listed error and
ZERO mutating calls (nothing created); the shipped roles.yaml passes, in one read call per kind of check."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from invoke import Context, Exit

from fabfile.config import load_config
from fabfile.nodes import find_nodes
from fabfile.provision import preflight, tasks
from fabfile.provision.accounting import MutationCounter
from fabfile.provision.converge import create_node, provision
from fabfile.errors import ProvisionError
from fabfile.provision.keys import generate_ed25519
from fabfile.state import identity_paths

MISSING_AMI = "ami-0123456789abcdef0"
MISSING_SUBNET = "subnet-0123456789abcdef0"
MISSING_VPC = "vpc-0123456789abcdef0"


def variant(roles_file: Path, **edits) -> Path:
    """roles.yaml with `edits` applied: {"roles.app.instance_type": "t3.smal", ...} (dots: nesting)."""
    data = yaml.safe_load(roles_file.read_text())
    for dotted, value in edits.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    roles_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return roles_file


def key_files(tmp_path: Path, private: bytes | str | None = None, public: str | None = None) -> dict:
    """cluster.ssh edits pointing at a key pair in tmp_path; `private`/`public` replace a file's text."""
    pair = generate_ed25519("me@here")
    (tmp_path / "id").write_bytes(private if isinstance(private, bytes) else (private or pair.private).encode())
    (tmp_path / "id.pub").write_text(public if public is not None else pair.public + "\n")
    return {"cluster.ssh.private_key": str(tmp_path / "id"), "cluster.ssh.public_key": str(tmp_path / "id.pub")}


def nothing_created(ec2, cfg) -> None:
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{cfg.cluster.name}-*"]}])
    assert groups["SecurityGroups"] == []
    assert find_nodes(ec2, cfg.cluster.name) == []


def failing(ec2, cfg, fast, **kwargs) -> str:
    """provision's preflight error for cfg; asserts no mutating call was made and nothing exists."""
    counter = MutationCounter.of(ec2)
    with pytest.raises(ProvisionError) as info:
        provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None, **kwargs)
    assert counter.total == 0, counter.summary()
    nothing_created(ec2, cfg)
    return str(info.value)


def calls_of(ec2) -> Counter:
    seen: Counter = Counter()
    ec2.meta.events.register("before-call", lambda model, **_: seen.update([model.name]))
    return seen


# --- the shipped file passes -------------------------------------------------------------

def test_shipped_roles_yaml_passes_in_one_read_call_per_kind(ec2, cfg, log):
    seen = calls_of(ec2)
    counter = MutationCounter.of(ec2)
    report = preflight.check(ec2, cfg, log=log.append)
    assert counter.total == 0
    assert dict(seen) == {"DescribeInstances": 1, "DescribeAccountAttributes": 1, "DescribeImages": 1,
                          "DescribeInstanceTypeOfferings": 1, "DescribeVpcs": 1, "DescribeSubnets": 1}
    assert report.plan.launches == {"proxy": 1, "app": 1, "db": 1, "worker": 1, "monitor": 0}
    assert report.warnings == ()
    assert log == ["image: debian-12-amd64-whipup-sandbox (owner self): Debian 12 (bookworm), Python 3.11.2, "
                   "PostgreSQL 15; no Python constraint: the default", f"preflight: {report.seconds:.2f} s"]
    assert report.image.release.key == "debian-12" and not report.config.cluster.ami.unresolved


def test_shipped_instance_types_are_offered_by_moto(ec2, cfg):
    assert {r.instance_type for r in cfg.roles} <= preflight.offered_types(ec2, None)


def test_rerun_of_a_complete_cluster_changes_nothing_and_reports_its_preflight(ec2, cfg, fast, log):
    """(Tests assert no time: bench/ prints how long a rerun takes.)"""
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    counter = MutationCounter.of(ec2)
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=log.append)
    assert counter.total == 0
    assert [line.split()[0] for line in log if line.startswith("preflight: ")] == ["preflight:"]


# --- each failure alone --------------------------------------------------------------------

def test_ami_id_that_does_not_exist(ec2, roles_file, fast):
    cfg = load_config(variant(roles_file, **{"cluster.ami": {"id": MISSING_AMI}}))
    assert failing(ec2, cfg, fast) == (
        "preflight: 1 problem, nothing was created:\n"
        f"  roles.yaml: cluster.ami.id: {MISSING_AMI} does not exist in us-east-1")


def test_ami_name_that_matches_nothing_names_the_roles_own_key(ec2, roles_file, fast):
    cfg = load_config(variant(roles_file, **{"roles.app.ami": {"name": "ubuntu-*", "owner": "self"}}))
    assert failing(ec2, cfg, fast).splitlines()[1:] == [
        "  roles.yaml: roles.app.ami.name: no available image named 'ubuntu-*' owned by self in us-east-1"]


def test_ami_that_is_not_available():
    class Images:
        def describe_images(self, **_):
            return {"Images": [{"ImageId": MISSING_AMI, "State": "pending"}]}

    problem = preflight.image_problem(Images(), preflight.AmiSpec(id=MISSING_AMI), "cluster.ami", ("app",), "r")
    assert (problem.key, problem.detail) == ("cluster.ami.id", f"{MISSING_AMI} is pending, not available")


def test_instance_type_not_offered_suggests_the_nearest(ec2, roles_file, fast):
    cfg = load_config(variant(roles_file, **{"roles.app.instance_type": "t3.smal"}))
    assert failing(ec2, cfg, fast).splitlines()[1:] == [
        "  roles.yaml: roles.app.instance_type: t3.smal is not offered in us-east-1 (did you mean t3.small?)"]


@pytest.mark.parametrize("target, detail", [
    ("aws", "us-est-1 is not an EC2 region (did you mean us-east-1 or us-west-1?)"),
    ("sandbox", ("us-est-1 is not served by the local cloud (did you mean us-east-1?); "
                "it serves us-east-1 (WHIPUP_SANDBOX_REGION)")),
])
def test_region_typo_is_found_before_any_call(ec2, roles_file, fast, target, detail):
    cfg = load_config(variant(roles_file, **{"cluster.region": "us-est-1", "cluster.target": target}))
    seen = calls_of(ec2)
    with pytest.raises(ProvisionError) as info:
        provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    assert seen == Counter()
    assert str(info.value).splitlines()[1:] == [f"  roles.yaml: cluster.region: {detail}",
                                                ("  (the checks that ask the cloud did not run: the region must "
                                                "be right first)")]
    nothing_created(ec2, cfg)


def test_aws_regions_are_botocores_for_ec2_in_every_partition(cfg):
    session = boto3.session.Session()
    expected = {r for p in session.get_available_partitions() for r in session.get_available_regions("ec2", p)}
    assert set(preflight.known_regions(replace(cfg, cluster=replace(cfg.cluster, target="aws")))) == expected
    assert {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= expected


def test_subnet_that_does_not_exist(ec2, roles_file, fast):
    cfg = load_config(variant(roles_file, **{"cluster.subnet": MISSING_SUBNET}))
    assert failing(ec2, cfg, fast).splitlines()[1:] == [
        f"  roles.yaml: cluster.subnet: {MISSING_SUBNET} does not exist in us-east-1"]


def test_vpc_that_does_not_exist(ec2, roles_file, fast):
    cfg = load_config(variant(roles_file, **{"cluster.vpc": MISSING_VPC}))
    assert failing(ec2, cfg, fast).splitlines()[1:] == [
        f"  roles.yaml: cluster.vpc: {MISSING_VPC} does not exist in us-east-1"]


def test_subnet_in_another_vpc(ec2, roles_file, fast):
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
    cfg = load_config(variant(roles_file, **{"cluster.vpc": vpc, "cluster.subnet": subnet["SubnetId"]}))
    assert failing(ec2, cfg, fast).splitlines()[1:] == [
        f"  roles.yaml: cluster.subnet: {subnet['SubnetId']} is in {subnet['VpcId']}, not cluster.vpc {vpc}"]


def test_no_default_vpc(ec2, cfg, fast):
    default = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [default]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=default)
    assert failing(ec2, cfg, fast).splitlines()[1:] == [
        ("  roles.yaml: cluster.vpc: is 'default', but us-east-1 has no default VPC; set cluster.vpc and "
        "cluster.subnet")]


def test_private_key_that_does_not_parse(ec2, roles_file, tmp_path, fast):
    cfg = load_config(variant(roles_file, **key_files(tmp_path, private="-----BEGIN OPENSSH PRIVATE KEY-----\n"
                                                                         "c2VjcmV0IG1hdGVyaWFs\n")))
    message = failing(ec2, cfg, fast)
    assert message.splitlines()[1:] == [
        (f"  roles.yaml: cluster.ssh.private_key: {tmp_path / 'id'}: is not a private key paramiko can load "
        f"(ValueError)")]
    assert "c2VjcmV0" not in message


def test_private_key_that_cannot_be_read(ec2, roles_file, tmp_path, fast, monkeypatch):
    cfg = load_config(variant(roles_file, **key_files(tmp_path)))
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if p.name == "id" else real(p))
    assert failing(ec2, cfg, fast).splitlines()[1:] == [
        f"  roles.yaml: cluster.ssh.private_key: {tmp_path / 'id'}: cannot be read (Permission denied)"]


def test_private_key_with_a_passphrase(ec2, roles_file, tmp_path, fast):
    locked = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.BestAvailableEncryption(b"pw"))
    cfg = load_config(variant(roles_file, **key_files(tmp_path, private=locked)))
    assert "cluster.ssh.private_key: " in failing(ec2, cfg, fast)
    assert "is protected by a passphrase" in failing(ec2, cfg, fast)


def test_public_key_that_is_not_one_openssh_line_is_never_quoted(ec2, roles_file, tmp_path, fast):
    pair = generate_ed25519("x")
    cfg = load_config(variant(roles_file, **key_files(tmp_path, public=pair.private)))
    message = failing(ec2, cfg, fast)
    assert message.splitlines()[1:] == [
        f"  roles.yaml: cluster.ssh.public_key: {tmp_path / 'id.pub'}: holds a private key, not a public one"]
    assert all(chunk not in message for chunk in pair.private.splitlines()[1:-1])
    two = f"{pair.public}\n{generate_ed25519('y').public}\n"
    cfg = load_config(variant(roles_file, **key_files(tmp_path, public=two)))
    assert "found 2 lines" in failing(ec2, cfg, fast)


def test_private_key_that_does_not_match_the_public_key(ec2, roles_file, tmp_path, fast):
    cfg = load_config(variant(roles_file, **key_files(tmp_path, public=generate_ed25519("other").public)))
    line = failing(ec2, cfg, fast).splitlines()[1]
    assert line.startswith(f"  roles.yaml: cluster.ssh.private_key: {tmp_path / 'id'}: does not match "
                           f"cluster.ssh.public_key {tmp_path / 'id.pub'} (SHA256:")


def test_generated_pair_is_checked_once_it_exists(ec2, cfg, fast):
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    identity_paths(cfg)[0].write_text("not a key\n")
    counter = MutationCounter.of(ec2)
    with pytest.raises(ProvisionError, match=r"cluster.ssh.private_key \(null: the pair whipup generated\): "):
        provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    assert counter.total == 0


def test_account_instance_limit(ec2, cfg, fast):
    image = ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]
    others = ec2.run_instances(ImageId=image, MinCount=17, MaxCount=17)["Instances"]   # someone else's
    counter = MutationCounter.of(ec2)
    with pytest.raises(ProvisionError) as info:
        provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    assert counter.total == 0
    assert str(info.value).splitlines()[1:] == [
        ("  roles.yaml: roles.*.count: this run would launch 4 instance(s) (proxy 1, app 1, db 1, worker 1), "
        "with 17 running or pending in us-east-1: 21 > the account's max-instances 20")]
    ec2.terminate_instances(InstanceIds=[others[0]["InstanceId"]])
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)   # 16 + 4 = 20: allowed


# --- several at once, and where preflight runs --------------------------------------------

def test_several_failures_are_reported_together(ec2, roles_file, tmp_path, fast):
    edits = {"roles.app.instance_type": "t3.smal", "roles.db.ami": {"id": MISSING_AMI},
             "cluster.subnet": MISSING_SUBNET, **key_files(tmp_path, private="garbage\n")}
    cfg = load_config(variant(roles_file, **edits))
    assert failing(ec2, cfg, fast).splitlines() == [
        "preflight: 4 problems, nothing was created:",
        (f"  roles.yaml: cluster.ssh.private_key: {tmp_path / 'id'}: is not a private key paramiko can load "
        f"(ValueError)"),
        f"  roles.yaml: cluster.subnet: {MISSING_SUBNET} does not exist in us-east-1",
        f"  roles.yaml: roles.db.ami.id: {MISSING_AMI} does not exist in us-east-1",
        "  roles.yaml: roles.app.instance_type: t3.smal is not offered in us-east-1 (did you mean t3.small?)",
    ]


def test_a_role_that_launches_nothing_only_warns(ec2, roles_file, fast, log):
    provision(ec2, load_config(roles_file), wait_ssh=False, timing=fast, log=lambda _m: None)
    cfg = load_config(variant(roles_file, **{"roles.app.ami": {"id": MISSING_AMI}}))
    counter = MutationCounter.of(ec2)
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=log.append)
    assert counter.total == 0
    assert (f"warning: roles.yaml: roles.app.ami.id: {MISSING_AMI} does not exist in us-east-1 "
            f"(role app launches nothing this run; a new node would fail)") in log
    with pytest.raises(ProvisionError, match=r"roles.app.ami.id: "):
        create_node(ec2, cfg, "app", wait_ssh=False, timing=fast, log=lambda _m: None)
    assert counter.total == 0


def test_create_node_checks_only_its_role(ec2, roles_file, fast):
    cfg = load_config(variant(roles_file, **{"roles.app.instance_type": "t3.smal"}))
    counter = MutationCounter.of(ec2)
    with pytest.raises(ProvisionError, match=r"roles.app.instance_type: t3.smal is not offered"):
        create_node(ec2, cfg, "app", wait_ssh=False, timing=fast, log=lambda _m: None)
    assert counter.total == 0
    assert create_node(ec2, cfg, "db", wait_ssh=False, timing=fast, log=lambda _m: None).name == "whipup-demo-db-0"


def test_a_check_the_credentials_may_not_make_is_skipped_with_a_warning(ec2, cfg, monkeypatch, log):
    denied = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "DescribeAccountAttributes")
    monkeypatch.setattr(preflight, "max_instances", lambda _ec2: (_ for _ in ()).throw(denied))
    preflight.check(ec2, cfg, log=log.append)
    assert log[1] == "warning: preflight: limit not checked (UnauthorizedOperation)"   # after the image line


def test_provision_task_exits_with_the_list_and_zero_mutating_calls(ec2, roles_file, capsys):
    # moto holds no Debian cloud team image for `auto` on aws: the fixture's, named
    config = str(variant(roles_file, **{"roles.app.instance_type": "t3.smal", "cluster.subnet": MISSING_SUBNET,
                                        "cluster.ami": {"name": "debian-12-amd64-*", "owner": "self"}}))
    with pytest.raises(Exit) as info:
        tasks.provision(Context(), config=config, target="aws", wait_ssh=False)
    assert info.value.code == 1
    assert info.value.message.splitlines()[1:] == [
        f"  roles.yaml: cluster.subnet: {MISSING_SUBNET} does not exist in us-east-1",
        "  roles.yaml: roles.app.instance_type: t3.smal is not offered in us-east-1 (did you mean t3.small?)"]
    assert "0 mutating API calls\n" in capsys.readouterr().out
