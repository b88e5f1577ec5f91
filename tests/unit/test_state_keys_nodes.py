"""State dir, keys, nodes and the status table: local, no cloud."""
from __future__ import annotations

import io
import stat
from dataclasses import replace

import paramiko
import pytest

from fabfile.config import load_config, with_target
from fabfile.errors import ProvisionError
from fabfile.nodes import Node, connect_address, node_from_instance
from fabfile.provision.converge import known_hosts_text, next_free_index
from fabfile.provision.keys import (
    ensure_host_key,
    ensure_identity,
    fingerprint,
    generate_ed25519,
    known_hosts_line,
    public_key_parts,
)
from fabfile.provision.report import format_table, status_text
from fabfile.state import cluster_dir, ensure_cluster_dir, identity_paths, write_private


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cluster_dir_is_0700_even_if_it_existed_wider(cfg):
    cluster_dir(cfg).mkdir(parents=True, mode=0o755)
    cluster_dir(cfg).chmod(0o755)
    assert ensure_cluster_dir(cfg) == cfg.root / ".whipup" / "whipup-demo"
    assert mode(cluster_dir(cfg)) == 0o700 and mode(cfg.cluster.state_dir) == 0o700


def test_write_private_replaces_with_0600(tmp_path):
    path = tmp_path / "d" / "secret"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret"]


def test_generated_identity_is_made_once_and_loads_in_paramiko(cfg):
    line = ensure_identity(cfg)
    private, public = identity_paths(cfg)
    assert mode(private) == 0o600 and public.read_text() == line + "\n"
    assert line.startswith("ssh-ed25519 ") and line.endswith(" whipup@whipup-demo")
    assert ensure_identity(cfg) == line
    key = paramiko.Ed25519Key.from_private_key_file(str(private))
    assert key.get_base64() == line.split()[1]
    assert fingerprint(line) == key.fingerprint


def test_configured_identity_is_used_not_generated(roles_file):
    pair = generate_ed25519("me@laptop")
    (roles_file.parent / "me.pub").write_text(pair.public + "\n")
    (roles_file.parent / "me").write_text(pair.private)
    roles_file.write_text(roles_file.read_text().replace(
        "public_key: null", "public_key: me.pub").replace("private_key: null", "private_key: me"))
    cfg = load_config(roles_file)
    assert ensure_identity(cfg) == pair.public
    assert identity_paths(cfg) == (roles_file.parent / "me", roles_file.parent / "me.pub")
    assert not (cluster_dir(cfg) / "id_ed25519").exists()


def test_bad_public_key_file_is_named(roles_file):
    (roles_file.parent / "me.pub").write_text("not a key\n")
    (roles_file.parent / "me").write_text("x")
    roles_file.write_text(roles_file.read_text().replace(
        "public_key: null", "public_key: me.pub").replace("private_key: null", "private_key: me"))
    with pytest.raises(ProvisionError, match=r"me.pub: not an OpenSSH public key"):
        ensure_identity(load_config(roles_file))


def test_host_key_is_stable_per_node(cfg):
    first = ensure_host_key(cfg, "whipup-demo-app-0")
    assert ensure_host_key(cfg, "whipup-demo-app-0") == first
    assert ensure_host_key(cfg, "whipup-demo-db-0").public != first.public
    assert paramiko.Ed25519Key.from_private_key(io.StringIO(first.private)).get_base64() == first.public.split()[1]


def test_known_hosts_line_and_key_parts():
    line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7G comment here"
    assert public_key_parts(line) == ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIJ7G")
    assert known_hosts_line("10.0.0.5", line) == "10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7G"
    assert known_hosts_line("127.0.0.1", line, 2222) == "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7G"
    with pytest.raises(ValueError):
        public_key_parts("x; whoami")


INSTANCE = {
    "InstanceId": "i-1", "State": {"Name": "running"}, "PrivateIpAddress": "172.31.0.4",
    "PublicIpAddress": "203.0.113.9", "SecurityGroups": [{"GroupId": "sg-1", "GroupName": "c-proxy"}],
    "Tags": [{"Key": "Name", "Value": "c-proxy-0"}, {"Key": "whipup:role", "Value": "proxy"},
             {"Key": "whipup:index", "Value": "0"}, {"Key": "whipup:cluster", "Value": "c"}],
}


def test_node_from_instance():
    assert node_from_instance(INSTANCE) == Node("proxy", 0, "c-proxy-0", "i-1", "running", "172.31.0.4",
                                                "203.0.113.9", "sg-1")
    bare = {"InstanceId": "i-2", "State": {"Name": "stopped"}, "Tags": [{"Key": "whipup:index", "Value": "x"}]}
    assert node_from_instance(bare) == Node("", -1, "i-2", "i-2", "stopped", None, None, None)


def test_connect_address_follows_target_and_connect_mode(cfg):
    node = node_from_instance(INSTANCE)
    assert connect_address(cfg, node) == "172.31.0.4"
    assert connect_address(with_target(cfg, "aws"), node) == "203.0.113.9"
    private_on_aws = replace(cfg, cluster=replace(cfg.cluster, target="aws",
                                                  ssh=replace(cfg.cluster.ssh, connect="private")))
    assert connect_address(private_on_aws, node) == "172.31.0.4"


def test_known_hosts_text_reports_nodes_without_a_host_key(cfg):
    pinned = Node("app", 0, "whipup-demo-app-0", "i-1", "running", "172.31.0.5", None, "sg")
    stray = Node("app", 1, "whipup-demo-app-1", "i-2", "running", "172.31.0.6", None, "sg")
    public = ensure_host_key(cfg, pinned.name).public
    text, problems = known_hosts_text(cfg, [stray, pinned])
    assert text == f"172.31.0.5 {' '.join(public.split()[:2])}\n"
    assert list(problems) == ["whipup-demo-app-1"] and "no host key in the state dir" in problems[stray.name]


def test_next_free_index():
    def n(i):
        return Node("app", i, f"a-{i}", f"i-{i}", "running", None, None, None)
    assert next_free_index([]) == 0
    assert next_free_index([n(0), n(1)]) == 2
    assert next_free_index([n(1), n(2)]) == 0


def test_status_table():
    node = node_from_instance(INSTANCE)
    assert status_text("c", [node]) == (
        "role   name       id   state    private IP  public IP    security group\n"
        "proxy  c-proxy-0  i-1  running  172.31.0.4  203.0.113.9  sg-1"
    )
    assert status_text("c", []) == "cluster c: no nodes"
    assert format_table(("a", "b"), [("xx", "-")]) == "a   b\nxx  -"
