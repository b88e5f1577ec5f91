"""Pure builders, checked by equality: no cloud, no files."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fabfile.config import AmiSpec, PortRule, RoleConfig, load_config
from fabfile.errors import ProvisionError
from fabfile.provision import builders
from fabfile.provision.accounting import is_mutating
from fabfile.provision.builders import Grant, Image
from fabfile.provision.keys import KeyText

SHIPPED = load_config(Path(__file__).resolve().parents[2] / "roles.yaml")
IDS = {"proxy": "sg-proxy", "app": "sg-app", "db": "sg-db", "worker": "sg-worker"}
ADMIN = "10.255.255.254/32"
HOST_KEY = KeyText(private="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY-----\n",
                   public="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH host")


def test_run_instances_params_for_db():
    image = Image(id="ami-0123456789abcdef0", name="debian-12-amd64-whipup-sandbox", root_device_name="/dev/xvda")
    params = builders.run_instances_params(
        SHIPPED.cluster, SHIPPED.role("db"), 0, image=image, subnet_id="subnet-1", group_id="sg-db",
        user_data="#cloud-config\n",
    )
    node_tags = [{"Key": "Name", "Value": "whipup-demo-db-0"}, {"Key": "whipup:cluster", "Value": "whipup-demo"},
                 {"Key": "whipup:role", "Value": "db"}, {"Key": "whipup:index", "Value": "0"}]
    assert params == {
        "ImageId": "ami-0123456789abcdef0",
        "InstanceType": "t3.small",
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": "whipup-demo-key",
        "SubnetId": "subnet-1",
        "SecurityGroupIds": ["sg-db"],
        "UserData": "#cloud-config\n",
        "DisableApiTermination": True,
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
            "VolumeSize": 20, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": node_tags},
                              {"ResourceType": "volume", "Tags": node_tags}],
    }


def test_run_instances_params_unprotected_role():
    image = Image("ami-1", "x", "/dev/sda1")
    params = builders.run_instances_params(SHIPPED.cluster, SHIPPED.role("app"), 2, image=image, subnet_id="s",
                                           group_id="g", user_data="u")
    assert params["DisableApiTermination"] is False
    assert params["BlockDeviceMappings"][0]["DeviceName"] == "/dev/sda1"
    assert params["TagSpecifications"][0]["Tags"][0] == {"Key": "Name", "Value": "whipup-demo-app-2"}


def test_user_data_is_cloud_config_with_keys_and_no_root():
    text = builders.user_data("ssh-ed25519 AAAAuser whipup@c", HOST_KEY)
    assert text.startswith("#cloud-config\n")
    assert yaml.safe_load(text) == {
        "ssh_authorized_keys": ["ssh-ed25519 AAAAuser whipup@c"],
        "ssh_keys": {"ed25519_private": HOST_KEY.private, "ed25519_public": HOST_KEY.public},
        "disable_root": True,
    }
    assert "ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n" in text


def test_hostile_key_comment_stays_one_value_in_user_data():
    hostile = "ssh-ed25519 AAAAuser x; whoami\nruncmd: [whoami]\n"
    doc = yaml.safe_load(builders.user_data(hostile, HOST_KEY))
    assert set(doc) == {"ssh_authorized_keys", "ssh_keys", "disable_root"}
    assert doc["ssh_authorized_keys"] == [hostile]


def test_client_token_is_stable_and_changes_per_generation():
    first = builders.client_token("c", "app", 0, [])
    assert first == builders.client_token("c", "app", 0, [])
    assert first.startswith("whipup-") and len(first) <= 64
    assert builders.client_token("c", "app", 1, []) != first
    assert builders.client_token("c", "db", 0, []) != first
    second = builders.client_token("c", "app", 0, ["i-1"])
    assert second != first
    assert builders.client_token("c", "app", 0, ["i-2", "i-1"]) == builders.client_token("c", "app", 0, ["i-1", "i-2"])


def test_client_tokens_start_with_the_nodes_token_then_fresh_ones():
    tokens = builders.client_tokens("c", "app", 0, ["i-1"])
    assert tokens[0] == builders.client_token("c", "app", 0, ["i-1"])
    assert tokens[1:] == [builders.client_token("c", "app", 0, ["i-1"], 1),
                          builders.client_token("c", "app", 0, ["i-1"], 2)]
    assert len(set(tokens)) == 3


def test_desired_grants_of_the_shipped_roles():
    ssh = Grant("tcp", 22, 22, "cidr", ADMIN)
    expected = {
        "proxy": {ssh, Grant("tcp", 80, 80, "cidr", "0.0.0.0/0")},      # no domain: no TLS, no 443
        "app": {ssh, Grant("tcp", 8000, 8001, "group", "sg-proxy")},      # both gunicorn slots
        "db": {ssh, Grant("tcp", 5432, 5432, "group", "sg-app"), Grant("tcp", 5432, 5432, "group", "sg-worker")},
        "worker": {ssh, Grant("tcp", 6379, 6379, "group", "sg-app"), Grant("tcp", 6379, 6379, "group", "sg-worker")},
        "monitor": {ssh},            # its services listen on loopback (the other groups let the monitor in)
    }
    for role in SHIPPED.roles:
        assert builders.desired_grants(role, ADMIN, IDS) == expected[role.name]


def test_port_span_opens_both_gunicorn_slots_only_on_the_app_roles_web_port():
    assert builders.port_span("app", 8000) == (8000, 8001)
    assert builders.port_span("app", 9000) == (9000, 9000)
    assert builders.port_span("proxy", 8000) == (8000, 8000)


def test_a_cidr_rule_on_the_app_web_port_opens_the_slot_range():
    role = RoleConfig("app", 1, "t3.micro", 8, False, False, (PortRule(8000, ("10.1.0.0/16",), ("proxy",)),), (),
                      (), (), AmiSpec())
    grants = builders.desired_grants(role, ADMIN, IDS)
    assert grants == {Grant("tcp", 22, 22, "cidr", ADMIN), Grant("tcp", 8000, 8001, "cidr", "10.1.0.0/16"),
                      Grant("tcp", 8000, 8001, "group", "sg-proxy")}
    assert builders.permissions_from_grants(grants)[1] == {
        "IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8001, "IpRanges": [{"CidrIp": "10.1.0.0/16"}],
        "UserIdGroupPairs": [{"GroupId": "sg-proxy"}]}


def test_ipv6_cidr_goes_to_ipv6_ranges():
    role = RoleConfig("web", 1, "t3.micro", 8, False, False, (PortRule(443, ("::/0",), ()),), (), (), (), AmiSpec())
    grants = builders.desired_grants(role, ADMIN, {}, tls=True)
    assert builders.permissions_from_grants(grants) == [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": ADMIN}]},
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
    ]


def test_permissions_group_by_port_range():
    grants = builders.desired_grants(SHIPPED.role("db"), ADMIN, IDS)
    assert builders.permissions_from_grants(grants) == [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": ADMIN}]},
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "UserIdGroupPairs": [{"GroupId": "sg-app"}, {"GroupId": "sg-worker"}]},
    ]


def test_grants_from_described_permissions_round_trip():
    described = [
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [], "Ipv6Ranges": [],
         "PrefixListIds": [], "UserIdGroupPairs": [{"GroupId": "sg-app", "UserId": "123456789012"}]},
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "x"}],
         "PrefixListIds": [{"PrefixListId": "pl-1"}]},
    ]
    grants = builders.grants_from_permissions(described)
    assert grants == {Grant("tcp", 5432, 5432, "group", "sg-app"), Grant("-1", None, None, "cidr", "10.0.0.0/8"),
                      Grant("-1", None, None, "prefix", "pl-1")}
    assert builders.permissions_from_grants(grants) == [
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}], "PrefixListIds": [{"PrefixListId": "pl-1"}]},
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": "sg-app"}]},
    ]


def test_diff_grants_adds_missing_and_revokes_extra():
    desired = builders.desired_grants(SHIPPED.role("app"), ADMIN, IDS)
    current = builders.grants_from_permissions([
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": ADMIN}]},
        {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    ])
    add, revoke = builders.diff_grants(desired, current)
    assert add == {Grant("tcp", 8000, 8001, "group", "sg-proxy")}
    assert revoke == {Grant("tcp", 8000, 8000, "cidr", "0.0.0.0/0")}
    assert builders.diff_grants(desired, desired) == (frozenset(), frozenset())


def test_describe_images_params():
    assert builders.describe_images_params(AmiSpec(name="debian-12-amd64-*", owner="self")) == {
        "Owners": ["self"],
        "Filters": [{"Name": "name", "Values": ["debian-12-amd64-*"]}, {"Name": "state", "Values": ["available"]}],
    }
    assert builders.describe_images_params(AmiSpec(id="ami-0123456789abcdef0")) == {
        "ImageIds": ["ami-0123456789abcdef0"]}


def test_pick_image_takes_the_newest():
    images = [
        {"ImageId": "ami-old", "Name": "a", "CreationDate": "2024-01-01T00:00:00.000Z", "RootDeviceName": "/dev/sda1"},
        {"ImageId": "ami-new", "Name": "b", "CreationDate": "2025-06-01T00:00:00.000Z", "RootDeviceName": "/dev/xvda"},
    ]
    assert builders.pick_image(AmiSpec(name="x"), images) == Image("ami-new", "b", "/dev/xvda")
    with pytest.raises(ProvisionError, match=r"no AMI found for name 'x' owned by self"):
        builders.pick_image(AmiSpec(name="x"), [])


def test_pick_subnet_takes_the_first_az():
    subnets = [{"SubnetId": "subnet-b", "AvailabilityZone": "us-east-1b"},
               {"SubnetId": "subnet-a", "AvailabilityZone": "us-east-1a"}]
    assert builders.pick_subnet(subnets)["SubnetId"] == "subnet-a"


def test_group_and_address_and_key_pair_params():
    assert builders.create_group_params("c", "db", "vpc-1", "c-db") == {
        "GroupName": "c-db", "Description": "whipup c db", "VpcId": "vpc-1",
        "TagSpecifications": [{"ResourceType": "security-group", "Tags": [
            {"Key": "whipup:cluster", "Value": "c"}, {"Key": "Name", "Value": "c-db"},
            {"Key": "whipup:role", "Value": "db"}]}],
    }
    assert builders.allocate_address_params("c", "proxy", 0) == {
        "Domain": "vpc", "TagSpecifications": [{"ResourceType": "elastic-ip", "Tags": [
            {"Key": "Name", "Value": "c-proxy-0"}, {"Key": "whipup:cluster", "Value": "c"},
            {"Key": "whipup:role", "Value": "proxy"}, {"Key": "whipup:index", "Value": "0"}]}],
    }
    assert builders.import_key_pair_params("c", "ssh-ed25519 AAAA k") == {
        "KeyName": "c-key", "PublicKeyMaterial": b"ssh-ed25519 AAAA k",
        "TagSpecifications": [{"ResourceType": "key-pair", "Tags": [{"Key": "whipup:cluster", "Value": "c"}]}],
    }


@pytest.mark.parametrize("name, mutating", [
    ("RunInstances", True), ("CreateSecurityGroup", True), ("AuthorizeSecurityGroupIngress", True),
    ("DescribeInstances", False), ("GetConsoleOutput", False), ("ListImagesInRecycleBin", False),
])
def test_is_mutating(name, mutating):
    assert is_mutating(name) is mutating
