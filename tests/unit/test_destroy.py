"""destroy removes only what is tagged with the cluster."""
from __future__ import annotations

from fabfile.config import load_config
from fabfile.nodes import find_nodes
from fabfile.provision.accounting import MutationCounter
from fabfile.provision.converge import provision
from fabfile.provision.destroy import cross_references, describe_plan, destroy, plan_destroy


def _state(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def _other_cluster(tmp_path, roles_file):
    other = tmp_path / "other"
    other.mkdir()
    text = roles_file.read_text().replace("name: whipup-demo", "name: other-demo")
    (other / "roles.yaml").write_text(text)
    (other / "examples").symlink_to(tmp_path / "examples")
    return load_config(other / "roles.yaml")


def test_destroy_leaves_untagged_and_other_clusters_alone(ec2, cfg, roles_file, tmp_path, fast):
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    other = _other_cluster(tmp_path, roles_file)
    provision(ec2, other, wait_ssh=False, timing=fast, log=lambda _m: None)
    image = ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]
    untagged = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    loose_eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ours = [n.instance_id for n in find_nodes(ec2, "whipup-demo")]
    theirs = [n.instance_id for n in find_nodes(ec2, "other-demo")]

    plan = plan_destroy(ec2, "whipup-demo")
    assert sorted(n.instance_id for n in plan.instances) == sorted(ours)
    assert [g.name for g in plan.groups] == ["whipup-demo-app", "whipup-demo-db", "whipup-demo-monitor",
                                              "whipup-demo-proxy", "whipup-demo-worker"]
    assert plan.key_pairs == ("whipup-demo-key",) and len(plan.addresses) == 1
    lines = describe_plan(plan)
    assert lines[0] == "cluster whipup-demo: will remove"
    assert "  key pair  whipup-demo-key" in lines and len(lines) == 1 + 4 + 1 + 5 + 1   # 5 groups: the monitor role's too
    counter = MutationCounter.of(ec2)
    destroy(ec2, plan, fast, log=lambda _m: None)

    # the db node was termination-protected: destroy lifted that first
    assert counter.operations["ModifyInstanceAttribute"] == 1
    assert all(_state(ec2, i) == "terminated" for i in ours)
    assert all(_state(ec2, i) == "running" for i in theirs)
    assert _state(ec2, untagged) == "running"
    assert plan_destroy(ec2, "whipup-demo").empty
    assert not plan_destroy(ec2, "other-demo").empty
    assert ec2.describe_addresses(AllocationIds=[loose_eip])["Addresses"]
    names = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert names == {"other-demo-key"}
    groups = {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert not any(name.startswith("whipup-demo-") for name in groups)
    assert {"other-demo-app", "other-demo-db"} <= groups


def test_destroy_then_provision_starts_over(ec2, cfg, fast):
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    destroy(ec2, plan_destroy(ec2, "whipup-demo"), fast, log=lambda _m: None)
    counter = MutationCounter.of(ec2)
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    assert counter.operations["RunInstances"] == 4 and counter.operations["ImportKeyPair"] == 1


def test_empty_plan_describes_itself():
    from fabfile.provision.destroy import DestroyPlan
    plan = DestroyPlan("c", (), (), (), ())
    assert plan.empty
    assert describe_plan(plan) == ["cluster c: nothing tagged c to remove"]


def test_cross_references_only_name_grants_from_cluster_groups():
    groups = [{"GroupId": "sg-db", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "UserIdGroupPairs": [{"GroupId": "sg-app"}, {"GroupId": "sg-outside"}],
         "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]},
        {"GroupId": "sg-app", "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                                 "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]}]
    refs = cross_references(groups, {"sg-db", "sg-app"})
    assert {k: sorted(v) for k, v in refs.items()} == {"sg-db": [("tcp", 5432, 5432, "group", "sg-app")]}
