"""On AWS with app.media s3: the app nodes' IAM role and instance profile (provision/iam.py) and the VPC's S3
gateway endpoint (provision/vpce.py): pure builders by exact value, create / reuse with no mutating call /
destroy on moto in-process, and a sandbox provision without either."""
from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
from invoke import Context

from fabfile.errors import ProvisionError
from fabfile.provision import builders, tasks
from fabfile.provision.accounting import MutationCounter
from fabfile.provision.destroy import describe_plan, plan_destroy
from fabfile.provision.destroy import destroy as destroy_plan
from fabfile.provision.iam import (AppProfile, access_policy, create_profile_params, create_role_params,
                                   launch_profile, profile_name, put_policy_params, trust_policy, wants_profile)
from fabfile.provision.vpce import S3Endpoint, create_endpoint_params, find_endpoints_params, pick_route_tables
from fabfile.sandbox.settings import ACCOUNT_ID

BUCKET = f"whipup-demo-media-{ACCOUNT_ID}-us-east-1"
TAGS = [{"Key": "whipup:cluster", "Value": "c1"}, {"Key": "Name", "Value": "c1-app-eu-west-1"}]


def aws_cfg(cfg, media="s3"):
    return dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, target="aws"),
                               app=dataclasses.replace(cfg.app, media=media))


# --- pure builders ---------------------------------------------------------------------------------------------

def test_profile_name_is_cluster_app_region_and_fits_iam():
    assert profile_name("c1", "eu-west-1") == "c1-app-eu-west-1"
    long_a, long_b = profile_name("a" * 60, "ap-southeast-3"), profile_name("a" * 59 + "b", "ap-southeast-3")
    assert len(long_a) == len(long_b) == 64 and long_a != long_b


def test_policies_and_params_exactly():
    assert trust_policy() == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    assert access_policy("b") == {"Version": "2012-10-17", "Statement": [
        {"Sid": "WhipupMediaObjects", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], "Resource": "arn:aws:s3:::b/*"},
        {"Sid": "WhipupMediaList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"}]}
    assert create_role_params("c1", "c1-app-eu-west-1") == {
        "RoleName": "c1-app-eu-west-1", "AssumeRolePolicyDocument": json.dumps(trust_policy()),
        "Description": "whipup c1: app and worker nodes write the media bucket", "Tags": TAGS}
    assert put_policy_params("r", "b") == {"RoleName": "r", "PolicyName": "whipup-media",
                                           "PolicyDocument": json.dumps(access_policy("b"))}
    assert create_profile_params("c1", "c1-app-eu-west-1") == {"InstanceProfileName": "c1-app-eu-west-1",
                                                               "Tags": TAGS}
    by_role = {"app": "p", "worker": "p", "db": "d"}
    assert [launch_profile(r, by_role) for r in ("proxy", "app", "db", "worker")] == [None, "p", "d", "p"]
    assert launch_profile("app", {}) is None


def test_endpoint_params_exactly():
    assert create_endpoint_params("c1", "vpc-1", "eu-west-1", ["rtb-b", "rtb-a"]) == {
        "VpcEndpointType": "Gateway", "VpcId": "vpc-1", "ServiceName": "com.amazonaws.eu-west-1.s3",
        "RouteTableIds": ["rtb-a", "rtb-b"],
        "TagSpecifications": [{"ResourceType": "vpc-endpoint", "Tags": [{"Key": "whipup:cluster", "Value": "c1"},
                                                                        {"Key": "Name", "Value": "c1-s3"}]}]}
    assert find_endpoints_params("vpc-1", "eu-west-1") == {"Filters": [
        {"Name": "vpc-id", "Values": ["vpc-1"]}, {"Name": "service-name", "Values": ["com.amazonaws.eu-west-1.s3"]},
        {"Name": "vpc-endpoint-type", "Values": ["Gateway"]},
        {"Name": "vpc-endpoint-state", "Values": ["pending", "available"]}]}
    assert pick_route_tables([{"RouteTableId": "rtb-s"}], [{"RouteTableId": "rtb-m"}]) == ["rtb-s"]
    assert pick_route_tables([], [{"RouteTableId": "rtb-m"}]) == ["rtb-m"]


def test_run_instances_params_name_the_profile_only_when_given(cfg):
    role = cfg.role("app")
    image = builders.Image("ami-1", "img", "/dev/xvda")
    plain = builders.run_instances_params(cfg.cluster, role, 0, image=image, subnet_id="s", group_id="g", user_data="u")
    with_profile = builders.run_instances_params(cfg.cluster, role, 0, image=image, subnet_id="s", group_id="g",
                                                 user_data="u", instance_profile="c1-app-us-east-1")
    assert "IamInstanceProfile" not in plain
    assert with_profile == {**plain, "IamInstanceProfile": {"Name": "c1-app-us-east-1"}}


def test_only_aws_with_media_s3_wants_a_profile(cfg):
    assert cfg.cluster.target == "sandbox" and not wants_profile(cfg)
    assert wants_profile(aws_cfg(cfg)) and not wants_profile(aws_cfg(cfg, media="local"))
    assert AppProfile.open(cfg, object(), BUCKET) is None
    assert tasks.open_profile(cfg, MutationCounter(), object()) is None      # sandbox: no IAM client at all


# --- the instance profile on moto ---------------------------------------------------------------------------------

def test_profile_created_then_already_ok_then_destroyed(cfg, aws, log):
    iam = boto3.client("iam", region_name="us-east-1")
    profile = AppProfile.open(aws_cfg(cfg), iam, BUCKET)
    profile.check()
    assert profile.plan() is None
    assert profile.ensure(log.append) == "whipup-demo-app-us-east-1"
    got = iam.get_instance_profile(InstanceProfileName=profile.name)["InstanceProfile"]
    assert [r["RoleName"] for r in got["Roles"]] == [profile.name]
    doc = iam.get_role_policy(RoleName=profile.name, PolicyName="whipup-media")["PolicyDocument"]
    assert (json.loads(doc) if isinstance(doc, str) else doc) == access_policy(BUCKET)
    counter = MutationCounter.of(iam)
    assert profile.ensure(log.append) == profile.name and counter.total == 0, counter.summary()
    assert log == [f"media: instance profile {profile.name} role created, policy set ({BUCKET}), "
                   f"instance profile created, role added to the profile",
                   f"media: instance profile {profile.name} already ok"]
    assert profile.plan() == profile.name
    profile.destroy(log.append)
    assert iam.list_roles()["Roles"] == [] and iam.list_instance_profiles()["InstanceProfiles"] == []
    assert profile.plan() is None and log[-1] == f"deleted instance profile and IAM role {profile.name}"


def test_a_role_of_that_name_not_tagged_ours_stops_provision(cfg, aws):
    iam = boto3.client("iam", region_name="us-east-1")
    profile = AppProfile.open(aws_cfg(cfg), iam, BUCKET)
    iam.create_role(RoleName=profile.name, AssumeRolePolicyDocument=json.dumps(trust_policy()))
    with pytest.raises(ProvisionError, match="IAM role whipup-demo-app-us-east-1 exists but is not tagged"):
        profile.check()
    assert profile.plan() is None                       # destroy leaves it alone
    assert iam.list_instance_profiles()["InstanceProfiles"] == []


# --- the S3 gateway endpoint on moto ------------------------------------------------------------------------------

def default_subnet(ec2):
    return builders.pick_subnet(ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"])


def test_endpoint_created_on_the_subnets_route_table_then_reused_then_destroyed(ec2, log, fast):
    subnet = default_subnet(ec2)
    main = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]}])["RouteTables"][0]
    endpoint = S3Endpoint(ec2, "whipup-demo", "us-east-1")
    first = endpoint.ensure(subnet["VpcId"], subnet["SubnetId"], log.append)
    got = ec2.describe_vpc_endpoints(VpcEndpointIds=[first])["VpcEndpoints"][0]
    assert got["ServiceName"] == "com.amazonaws.us-east-1.s3" and got["VpcEndpointType"] == "Gateway"
    assert got["RouteTableIds"] == [main["RouteTableId"]]
    counter = MutationCounter.of(ec2)
    assert endpoint.ensure(subnet["VpcId"], subnet["SubnetId"], log.append) == first and counter.total == 0
    assert log == [f"media: S3 gateway endpoint {first} created in {subnet['VpcId']} ({main['RouteTableId']})",
                   f"media: S3 gateway endpoint {first} already ok"]
    plan = plan_destroy(ec2, "whipup-demo")
    assert plan.endpoints == (first,) and f"  S3 gateway endpoint  {first}" in describe_plan(plan)
    destroy_plan(ec2, plan, fast, log.append)
    assert plan_destroy(ec2, "whipup-demo").empty


def test_an_endpoint_not_whipups_is_used_and_never_removed(ec2, log):
    subnet = default_subnet(ec2)
    theirs = ec2.create_vpc_endpoint(VpcEndpointType="Gateway", VpcId=subnet["VpcId"],
                                     ServiceName="com.amazonaws.us-east-1.s3")["VpcEndpoint"]["VpcEndpointId"]
    assert S3Endpoint(ec2, "whipup-demo", "us-east-1").ensure(subnet["VpcId"], subnet["SubnetId"], log.append) == theirs
    assert log[-1].startswith(f"media: S3 gateway endpoint {theirs}: route table(s) ")   # it had none: added
    assert plan_destroy(ec2, "whipup-demo").endpoints == ()


# --- the tasks on target aws ----------------------------------------------------------------------------------------

def test_aws_provision_attaches_the_profiles_media_to_app_and_worker_backups_to_db_and_destroy_removes_all(
        ec2, roles_file, capsys):
    roles_file.write_text(roles_file.read_text().replace("  ami: auto ", '  ami: {name: "debian-12-amd64-*", owner: self} '))
    tasks.provision(Context(), config=str(roles_file), target="aws", wait_ssh=False)
    reservations = ec2.describe_instances()["Reservations"]
    by_role = {next(t["Value"] for t in i["Tags"] if t["Key"] == "whipup:role"): i.get("IamInstanceProfile")
               for r in reservations for i in r["Instances"]}
    assert by_role["proxy"] is None
    assert all(by_role[r]["Arn"].endswith("instance-profile/whipup-demo-app-us-east-1") for r in ("app", "worker"))
    assert by_role["db"]["Arn"].endswith("instance-profile/whipup-demo-db-us-east-1")     # the nightly backups
    iam = boto3.client("iam", region_name="us-east-1")
    doc = iam.get_role_policy(RoleName="whipup-demo-db-us-east-1", PolicyName="whipup-backups")["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    assert doc["Statement"][0]["Resource"].endswith("-backups-123456789012-us-east-1/demo/*")
    capsys.readouterr()
    tasks.destroy(Context(), config=str(roles_file), target="aws", yes=True)
    out = capsys.readouterr().out
    assert "  instance profile  whipup-demo-app-us-east-1" in out and "deleted S3 gateway endpoint(s) vpce-" in out
    assert "  instance profile  whipup-demo-db-us-east-1  (IAM role whipup-demo-db-us-east-1: the db nodes' " \
           "nightly backups)" in out
    iam = boto3.client("iam", region_name="us-east-1")
    assert iam.list_roles()["Roles"] == [] and iam.list_instance_profiles()["InstanceProfiles"] == []
    assert ec2.describe_vpc_endpoints()["VpcEndpoints"] == [] or all(
        e["State"].lower() == "deleted" for e in ec2.describe_vpc_endpoints()["VpcEndpoints"])


# --- the db nodes' backups profile ---------------------------------------------------------------------------------

def test_the_backups_policy_is_the_apps_prefix_only_and_wanted_only_with_a_nightly_on_aws(cfg):
    from fabfile.provision.iam import backups_policy, wants_backups_profile

    assert backups_policy("bk", "demo") == {"Version": "2012-10-17", "Statement": [
        {"Sid": "WhipupBackupObjects", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:DeleteObject"],
         "Resource": "arn:aws:s3:::bk/demo/*"},
        {"Sid": "WhipupBackupList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::bk",
         "Condition": {"StringLike": {"s3:prefix": ["demo/*"]}}}]}
    assert not wants_backups_profile(cfg)                                    # the sandbox: no IAM
    assert wants_backups_profile(aws_cfg(cfg, media="local"))               # whatever the media
    no_nightly = dataclasses.replace(aws_cfg(cfg), roles=tuple(
        dataclasses.replace(r, backup=dataclasses.replace(r.backup, nightly=None)) if r.name == "db" else r
        for r in cfg.roles))
    assert not wants_backups_profile(no_nightly)
    assert [p.purpose.key for p in tasks.open_profiles(cfg, MutationCounter(), None)] == []


def test_a_db_node_launched_before_its_profile_gets_it_on_the_next_provision(ec2, roles_file, capsys):
    roles_file.write_text(roles_file.read_text().replace("  ami: auto ", '  ami: {name: "debian-12-amd64-*", owner: self} ')
                          .replace("nightly: \"03:00\"", "nightly: null"))
    tasks.provision(Context(), config=str(roles_file), target="aws", wait_ssh=False)

    def db_profile():
        return [i.get("IamInstanceProfile") for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                if {"Key": "whipup:role", "Value": "db"} in i["Tags"]]

    assert db_profile() == [None]                                            # no nightly: no profile
    roles_file.write_text(roles_file.read_text().replace("nightly: null", "nightly: \"03:00\""))
    capsys.readouterr()
    tasks.provision(Context(), config=str(roles_file), target="aws", wait_ssh=False)
    assert db_profile()[0]["Arn"].endswith("instance-profile/whipup-demo-db-us-east-1")
    assert "db: instance profile whipup-demo-db-us-east-1 attached to i-" in capsys.readouterr().out
