"""provision / create_node against moto: first run, re-run, repair, recreate."""
from __future__ import annotations

import base64
import dataclasses
import stat

import pytest
import yaml

from fabfile import inventory
from fabfile.errors import ProvisionError
from fabfile.naming import tag_dict
from fabfile.nodes import find_nodes
from fabfile.provision import builders
from fabfile.provision.accounting import MutationCounter
from fabfile.provision.converge import create_node, provision
from fabfile.provision.keys import generate_ed25519, read_host_public
from fabfile.state import cluster_dir, identity_paths, known_hosts_path

FIRST_RUN = {
    "ImportKeyPair": 1,
    "CreateSecurityGroup": 5,              # the monitor role's too (count 0: its group, no node)
    "AuthorizeSecurityGroupIngress": 5,
    "RunInstances": 4,
    # moto ignores DisableApiTermination at launch, so the db node's protection is set afterwards
    "ModifyInstanceAttribute": 1,
    "CreateVolume": 1, "AttachVolume": 1,   # the db node's data volume (roles.db.volume)
    "AllocateAddress": 1,
    "AssociateAddress": 1,
}


def run(ec2, cfg, fast, log=None) -> MutationCounter:
    counter = MutationCounter.of(ec2)
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=(log.append if log is not None else lambda _m: None))
    return counter


def instance(ec2, instance_id: str) -> dict:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def test_first_run_then_rerun_makes_no_mutating_call(ec2, cfg, fast, log):
    first = run(ec2, cfg, fast, log)
    assert dict(first.operations) == FIRST_RUN
    assert first.total == 20
    nodes = find_nodes(ec2, cfg.cluster.name)
    assert [(n.role, n.index, n.name, n.state) for n in nodes] == [
        ("app", 0, "whipup-demo-app-0", "running"),
        ("db", 0, "whipup-demo-db-0", "running"),
        ("proxy", 0, "whipup-demo-proxy-0", "running"),
        ("worker", 0, "whipup-demo-worker-0", "running"),
    ]
    again = run(ec2, cfg, fast)
    assert again.total == 0, again.summary()
    assert find_nodes(ec2, cfg.cluster.name) == nodes


def test_launched_nodes_carry_tags_imdsv2_encrypted_root_and_user_data(ec2, cfg, fast):
    run(ec2, cfg, fast)
    db = find_nodes(ec2, cfg.cluster.name, role="db")[0]
    described = instance(ec2, db.instance_id)
    assert tag_dict(described) == {"Name": "whipup-demo-db-0", "whipup:cluster": "whipup-demo",
                                   "whipup:role": "db", "whipup:index": "0"}
    assert described["MetadataOptions"]["HttpTokens"] == "required"
    assert described["KeyName"] == "whipup-demo-key"
    assert described["InstanceType"] == "t3.small"
    volume_id = described["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert (volume["Size"], volume["Encrypted"], tag_dict(volume)["whipup:role"]) == (20, True, "db")
    protection = ec2.describe_instance_attribute(InstanceId=db.instance_id, Attribute="disableApiTermination")
    assert protection["DisableApiTermination"]["Value"] is True
    raw = ec2.describe_instance_attribute(InstanceId=db.instance_id, Attribute="userData")["UserData"]["Value"]
    text = base64.b64decode(raw).decode()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["ssh_authorized_keys"] == [identity_paths(cfg)[1].read_text().strip()]
    assert doc["ssh_keys"]["ed25519_public"] == read_host_public(cfg, "whipup-demo-db-0")
    assert doc["disable_root"] is True


def test_state_dir_holds_keys_private_and_known_hosts_pinned(ec2, cfg, fast):
    run(ec2, cfg, fast)
    assert stat.S_IMODE(cluster_dir(cfg).stat().st_mode) == 0o700
    private, public = identity_paths(cfg)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    host_private = cluster_dir(cfg) / "hostkeys" / "whipup-demo-app-0"
    assert stat.S_IMODE(host_private.stat().st_mode) == 0o600
    remote = ec2.describe_key_pairs(KeyNames=["whipup-demo-key"], IncludePublicKey=True)["KeyPairs"][0]
    assert remote["PublicKey"].split()[:2] == public.read_text().split()[:2]
    nodes = find_nodes(ec2, cfg.cluster.name)
    expected = "".join(
        f"{n.private_ip} {' '.join(read_host_public(cfg, n.name).split()[:2])}\n"
        for n in sorted(nodes, key=lambda n: n.name)
    )
    assert known_hosts_path(cfg).read_text() == expected
    assert inventory.load(cfg) == nodes       # the next task starts from the nodes provision left


def test_security_groups_hold_exactly_the_roles_rules(ec2, cfg, fast):
    run(ec2, cfg, fast)
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups(
        Filters=[{"Name": "tag:whipup:cluster", "Values": ["whipup-demo"]}])["SecurityGroups"]}
    ids = {name.removeprefix("whipup-demo-"): g["GroupId"] for name, g in groups.items()}
    assert set(ids) == {"proxy", "app", "db", "worker", "monitor"}
    for role in cfg.roles:
        group = groups[f"whipup-demo-{role.name}"]
        assert builders.grants_from_permissions(group["IpPermissions"]) == builders.desired_grants(
            role, "10.255.255.254/32", ids), role.name
    db_sources = {g.source for g in builders.grants_from_permissions(groups["whipup-demo-db"]["IpPermissions"])
                  if g.from_port == 5432}
    assert db_sources == {ids["app"], ids["worker"]}
    everyone = [g for g in builders.grants_from_permissions(groups["whipup-demo-app"]["IpPermissions"])
                if g.source == "0.0.0.0/0"]
    assert everyone == []


def test_with_the_monitor_on_every_group_lets_the_monitor_in(ec2, cfg, fast):
    on = dataclasses.replace(cfg, roles=tuple(dataclasses.replace(r, count=1) if r.name == "monitor" else r
                                              for r in cfg.roles))
    run(ec2, on, fast)
    groups = {g["GroupName"].removeprefix("whipup-demo-"): g for g in ec2.describe_security_groups(
        Filters=[{"Name": "tag:whipup:cluster", "Values": ["whipup-demo"]}])["SecurityGroups"]}
    monitor = groups["monitor"]["GroupId"]
    for role, ports in {"proxy": {(9100, 9100)}, "app": {(9100, 9100), (8000, 8001)},
                        "db": {(9100, 9100), (5432, 5432)}, "worker": {(9100, 9100)},
                        "monitor": {(9100, 9100)}}.items():
        grants = builders.grants_from_permissions(groups[role]["IpPermissions"])
        assert {(g.from_port, g.to_port) for g in grants if g.source == monitor} == ports, role
    run(ec2, cfg, fast)                                   # off again: the rules go
    for g in ec2.describe_security_groups(GroupIds=[x["GroupId"] for x in groups.values()])["SecurityGroups"]:
        assert monitor not in {x.source for x in builders.grants_from_permissions(g["IpPermissions"])}


def test_proxy_gets_a_tagged_elastic_ip(ec2, cfg, fast):
    run(ec2, cfg, fast)
    proxy = find_nodes(ec2, cfg.cluster.name, role="proxy")[0]
    addresses = ec2.describe_addresses(Filters=[{"Name": "tag:whipup:role", "Values": ["proxy"]}])["Addresses"]
    assert len(addresses) == 1
    assert addresses[0]["InstanceId"] == proxy.instance_id
    assert proxy.public_ip == addresses[0]["PublicIp"]
    assert tag_dict(addresses[0])["whipup:index"] == "0"


def test_reconcile_authorizes_missing_and_revokes_extra_rules(ec2, cfg, fast, log):
    run(ec2, cfg, fast)
    app = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["whipup-demo-app"]}])
    app_group = app["SecurityGroups"][0]
    proxy_id = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["whipup-demo-proxy"]}])["SecurityGroups"][0]["GroupId"]
    ec2.revoke_security_group_ingress(GroupId=app_group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8001, "UserIdGroupPairs": [{"GroupId": proxy_id}]}])
    ec2.authorize_security_group_ingress(GroupId=app_group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 9999, "ToPort": 9999, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    repair = run(ec2, cfg, fast, log)
    assert dict(repair.operations) == {"AuthorizeSecurityGroupIngress": 1, "RevokeSecurityGroupIngress": 1}
    assert "app: security group %s: +1 -1 rules" % app_group["GroupId"] in log
    now = ec2.describe_security_groups(GroupIds=[app_group["GroupId"]])["SecurityGroups"][0]
    assert builders.grants_from_permissions(now["IpPermissions"]) == builders.desired_grants(
        cfg.role("app"), "10.255.255.254/32", {"proxy": proxy_id})


def test_terminated_node_is_recreated_alone_with_a_new_token(ec2, cfg, fast):
    run(ec2, cfg, fast)
    before = {n.name: n for n in find_nodes(ec2, cfg.cluster.name)}
    old_app = before["whipup-demo-app-0"]
    ec2.terminate_instances(InstanceIds=[old_app.instance_id])
    recreate = run(ec2, cfg, fast)
    assert dict(recreate.operations) == {"RunInstances": 1}
    after = {n.name: n for n in find_nodes(ec2, cfg.cluster.name)}
    assert after["whipup-demo-app-0"].instance_id != old_app.instance_id
    assert {k: v for k, v in after.items() if k != "whipup-demo-app-0"} == {
        k: v for k, v in before.items() if k != "whipup-demo-app-0"}
    new = instance(ec2, after["whipup-demo-app-0"].instance_id)
    assert new["ClientToken"] == builders.client_token("whipup-demo", "app", 0, [old_app.instance_id])
    assert new["ClientToken"] != builders.client_token("whipup-demo", "app", 0, [])


def test_recreated_proxy_reuses_its_elastic_ip(ec2, cfg, fast):
    run(ec2, cfg, fast)
    proxy = find_nodes(ec2, cfg.cluster.name, role="proxy")[0]
    ec2.terminate_instances(InstanceIds=[proxy.instance_id])
    recreate = run(ec2, cfg, fast)
    assert dict(recreate.operations) == {"RunInstances": 1, "AssociateAddress": 1}
    new = find_nodes(ec2, cfg.cluster.name, role="proxy")[0]
    assert new.public_ip == proxy.public_ip and new.instance_id != proxy.instance_id


def test_stopped_node_is_started(ec2, cfg, fast):
    run(ec2, cfg, fast)
    worker = find_nodes(ec2, cfg.cluster.name, role="worker")[0]
    ec2.stop_instances(InstanceIds=[worker.instance_id])
    assert dict(run(ec2, cfg, fast).operations) == {"StartInstances": 1}
    assert find_nodes(ec2, cfg.cluster.name, role="worker")[0].state == "running"


def test_create_node_takes_the_lowest_free_index(ec2, cfg, fast, log):
    run(ec2, cfg, fast)
    counter = MutationCounter.of(ec2)
    node = create_node(ec2, cfg, "app", wait_ssh=False, timing=fast, log=log.append)
    assert (node.name, node.state) == ("whipup-demo-app-1", "running")
    assert dict(counter.operations) == {"RunInstances": 1}
    assert any("beyond count 1" in line for line in log)
    assert f"{node.private_ip} ssh-ed25519 " in known_hosts_path(cfg).read_text()
    ec2.terminate_instances(InstanceIds=[find_nodes(ec2, "whipup-demo", role="app")[0].instance_id])
    assert create_node(ec2, cfg, "app", wait_ssh=False, timing=fast, log=log.append).index == 0


def test_create_node_of_unknown_role_makes_no_call(ec2, cfg, fast):
    counter = MutationCounter.of(ec2)
    with pytest.raises(Exception, match=r"unknown role 'cache' \(roles: app, db, monitor, proxy, worker\)"):
        create_node(ec2, cfg, "cache", wait_ssh=False, timing=fast)
    assert counter.total == 0


def test_foreign_key_pair_under_our_name_is_refused(ec2, cfg, fast):
    other = generate_ed25519("someone@else")
    ec2.import_key_pair(KeyName="whipup-demo-key", PublicKeyMaterial=other.public.encode())
    counter = MutationCounter.of(ec2)
    with pytest.raises(ProvisionError, match=r"key pair whipup-demo-key holds another key \(SHA256:"):
        provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    assert counter.total == 0


def test_untagged_group_with_our_name_is_not_adopted(ec2, cfg, fast):
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    ec2.create_security_group(GroupName="whipup-demo-db", Description="someone's", VpcId=vpc)
    with pytest.raises(ProvisionError, match=r"whipup-demo-db .* is not tagged whipup:cluster=whipup-demo"):
        provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)


def test_missing_ami_is_found_by_preflight_before_anything_is_created(ec2, roles_file, fast):
    text = roles_file.read_text().replace('  ami: auto ', '  ami: {name: "ubuntu-*", owner: self} ')
    roles_file.write_text(text)
    from fabfile.config import load_config
    counter = MutationCounter.of(ec2)
    with pytest.raises(ProvisionError) as info:
        provision(ec2, load_config(roles_file), wait_ssh=False, timing=fast, log=lambda _m: None)
    assert str(info.value) == ("preflight: 1 problem, nothing was created:\n  roles.yaml: cluster.ami.name: "
                               "no available image named 'ubuntu-*' owned by self in us-east-1")
    assert counter.total == 0   # tests/unit/test_preflight.py has the other checks


def test_subnet_is_the_first_az_default_subnet(ec2, cfg, fast):
    run(ec2, cfg, fast)
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    first = min(subnets, key=lambda s: s["AvailabilityZone"])
    for node in find_nodes(ec2, cfg.cluster.name):
        assert instance(ec2, node.instance_id)["SubnetId"] == first["SubnetId"]


def test_nodes_beyond_count_are_reported_not_touched(ec2, cfg, fast, log):
    run(ec2, cfg, fast)
    extra = create_node(ec2, cfg, "worker", wait_ssh=False, timing=fast, log=lambda _m: None)
    counter = run(ec2, cfg, fast, log)
    assert counter.total == 0
    assert f"worker: whipup-demo-worker-1 ({extra.instance_id}) is beyond count 1: left as it is" in log
    assert find_nodes(ec2, cfg.cluster.name, role="worker")[1].state == "running"
