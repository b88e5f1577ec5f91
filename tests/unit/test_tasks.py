"""The fab tasks: errors before any API call, exits, output, confirmation."""
from __future__ import annotations

import io
import json

import pytest
from invoke import Context, Exit

from fabfile import inventory, ns
from fabfile.nodes import find_nodes
from fabfile.provision import tasks
from fabfile.provision.converge import provision


@pytest.fixture
def no_cloud(monkeypatch):
    """Record open_cloud calls instead of making any: every API call goes through it."""
    calls = []
    monkeypatch.setattr(tasks, "open_cloud", lambda *a, **k: calls.append(a) or pytest.fail("cloud opened"))
    return calls


def _bad(roles_file, old: str, new: str) -> str:
    text = roles_file.read_text()
    assert old in text
    roles_file.write_text(text.replace(old, new, 1))
    return str(roles_file)


BAD = [
    ("    instance_type: t3.small\n    root_volume_gb: 20", "    instnce_type: t3.small\n    root_volume_gb: 20",
     "roles.yaml: roles.db.instnce_type: unknown key (did you mean 'instance_type'?)"),
    ("{port: 8000, from: proxy}", "{port: 70000, from: proxy}",
     "roles.yaml: roles.app.ports[0].port: expected an integer 1-65535, got 70000"),
    ("{port: 5432, from: [app, worker]}", "{port: 5432, from: [ap, worker]}",
     "roles.yaml: roles.db.ports[0].from[0]: unknown role 'ap' (roles: app, db, monitor, proxy, worker)"),
]


@pytest.mark.parametrize("old, new, message", BAD)
@pytest.mark.parametrize("task, kwargs", [
    (tasks.provision, {}), (tasks.status, {}), (tasks.destroy, {"yes": True}), (tasks.create_node, {"role": "app"}),
])
def test_bad_roles_yaml_exits_before_any_api_call(roles_file, no_cloud, old, new, message, task, kwargs):
    with pytest.raises(Exit) as info:
        task(Context(), config=_bad(roles_file, old, new), **kwargs)
    assert info.value.code == 1
    assert info.value.message == message
    assert no_cloud == []


def test_unknown_target_and_role_exit_before_any_api_call(roles_file, no_cloud):
    with pytest.raises(Exit, match=r"--target: unknown target 'gcp'"):
        tasks.provision(Context(), config=str(roles_file), target="gcp")
    with pytest.raises(Exit, match=r"unknown role 'cache'"):
        tasks.create_node(Context(), "cache", config=str(roles_file))
    assert no_cloud == []


def test_aws_without_credentials_is_a_clear_error(roles_file, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(Exit) as info:
        tasks.provision(Context(), config=str(roles_file), target="aws")
    assert info.value.code == 1
    assert info.value.message.startswith("target aws: no AWS credentials found")


def test_provision_task_reports_mutating_calls(ec2, roles_file, capsys):
    # moto holds no Debian cloud team image for `ami: auto` on aws: the fixture's image, named
    roles_file.write_text(roles_file.read_text().replace("  ami: auto ", '  ami: {name: "debian-12-amd64-*", owner: self} '))
    tasks.provision(Context(), config=str(roles_file), target="aws", wait_ssh=False)
    first = capsys.readouterr().out
    assert "33 mutating API calls (AddRoleToInstanceProfile 2, AllocateAddress 1, AssociateAddress 1, AttachVolume 1" in first, first
    assert "CreateBucket 1" in first and "PutBucketPolicy 1" in first    # the media bucket (app.media: s3)
    # on aws: the app nodes' and the db nodes' roles, policies and profiles, and the VPC's S3 gateway endpoint
    assert "CreateInstanceProfile 2, CreateRole 2" in first and "PutRolePolicy 2" in first
    assert first.count("media: instance profile whipup-demo-app-us-east-1") == 1
    assert "CreateVpcEndpoint 1" in first
    assert "whipup-demo-db-0" in first
    tasks.provision(Context(), config=str(roles_file), target="aws", wait_ssh=False)
    again = capsys.readouterr().out
    assert "0 mutating API calls\n" in again
    assert "media: bucket whipup-demo-media-123456789012-us-east-1 already ok" in again
    assert "media: instance profile whipup-demo-app-us-east-1 already ok" in again
    assert "backups: instance profile whipup-demo-db-us-east-1 already ok" in again
    assert "already ok\n" in again.split("media: S3 gateway endpoint ")[1]


def test_status_table_and_json(ec2, cfg, roles_file, fast, capsys):
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    nodes = find_nodes(ec2, "whipup-demo")
    tasks.status(Context(), config=str(roles_file), target="aws", json=True)
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == [n.name for n in nodes]
    assert set(data[0]) == {"role", "index", "name", "instance_id", "state", "private_ip", "public_ip",
                            "security_group"}
    tasks.status(Context(), config=str(roles_file), target="aws")
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["role", "name", "id", "state", "private", "IP", "public", "IP", "security", "group"]
    proxy = next(n for n in nodes if n.role == "proxy")
    assert [proxy.role, proxy.name, proxy.instance_id, "running", proxy.private_ip, proxy.public_ip,
            proxy.security_group] in [line.split() for line in table[1:]]


def test_destroy_without_terminal_or_yes_refuses(ec2, cfg, roles_file, fast, monkeypatch, capsys):
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(Exit) as info:
        tasks.destroy(Context(), config=str(roles_file), target="aws")
    assert info.value.code == 1 and "no terminal to confirm on" in info.value.message
    assert "cluster whipup-demo: will remove" in capsys.readouterr().out
    assert len(find_nodes(ec2, "whipup-demo")) == 4


def test_destroy_with_yes_removes_the_cluster(ec2, cfg, roles_file, fast, capsys):
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None)
    assert inventory.load(cfg) is not None
    tasks.destroy(Context(), config=str(roles_file), target="aws", yes=True)
    assert find_nodes(ec2, "whipup-demo") == []
    assert inventory.load(cfg) is None        # no task starts from the list of a destroyed cluster
    out = capsys.readouterr().out
    assert "deleted key pair whipup-demo-key" in out
    tasks.destroy(Context(), config=str(roles_file), target="aws", yes=True)
    assert "nothing tagged whipup-demo to remove" in capsys.readouterr().out


def test_tasks_are_in_the_collection():
    assert {"provision", "create-node", "status", "destroy"} <= set(ns.task_names)
    for name in ("provision", "create-node", "status", "destroy"):
        doc = ns[name].__doc__.strip()
        assert "\n" not in doc and doc.endswith(".")


def test_cluster_tasks_take_config_and_target_where_their_body_takes_cfg():
    from fabfile.boundary import cluster_task

    @cluster_task(help={"role": "a role"})
    def probe(c, role=None, *, cfg, last=1):
        """Probe."""
        return cfg.cluster.name, role, last

    assert list(probe.argspec(probe.body).parameters) == ["role", "config", "target", "last"]
    with pytest.raises(TypeError, match="a `cfg` parameter"):
        cluster_task()(lambda c, config="roles.yaml": None)


def test_a_cluster_task_loads_roles_yaml_and_passes_it_in(roles_file):
    from fabfile.boundary import cluster_task

    @cluster_task()
    def probe(c, cfg, n=1):
        """Probe."""
        return cfg.cluster.name, n

    assert probe(Context(), config=str(roles_file), n=2) == ("whipup-demo", 2)
    with pytest.raises(Exit, match="unknown target 'gcp'"):
        probe(Context(), config=str(roles_file), target="gcp")
