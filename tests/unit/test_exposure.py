"""Openings to the whole internet need `public: true`; provision says so on every run."""
from __future__ import annotations

import pytest
import yaml

from fabfile.config import ConfigError, PortRule, load_config
from fabfile.exposure import public_warnings


def config(tmp_path, ports=None, admin=None, admin_public=None):
    (tmp_path / "src").mkdir(exist_ok=True)
    data = {"cluster": {"name": "t"}, "app": {"name": "demo", "repo": "src"},
            "roles": {"app": {"instance_type": "t3.small"},
                      "db": {"instance_type": "t3.small", "ports": ports or [{"port": 5432, "from": "app"}]}}}
    if admin is not None:
        data["cluster"]["admin_cidr"] = admin
    if admin_public is not None:
        data["cluster"]["admin_public"] = admin_public
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def error_of(tmp_path, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, **kw)
    return str(info.value)


@pytest.mark.parametrize("port", [5432, 6379, 8000, 1, 65535])
@pytest.mark.parametrize("world", ["0.0.0.0/0", "::/0", "0.0.0.0/0.0.0.0", "0::0/0"])
def test_a_port_open_to_the_world_is_refused_without_public(tmp_path, port, world):
    message = error_of(tmp_path, ports=[{"port": port, "from": world}])
    normal = "::/0" if ":" in world else "0.0.0.0/0"
    assert message == (f"roles.yaml: roles.db.ports[0].from: port {port} would be open to {normal}, the whole "
                       f"internet; if that is meant, say so with public: true in this rule "
                       f"(roles.db.ports[0].public: true)")


def test_the_key_path_is_the_list_item(tmp_path):
    message = error_of(tmp_path, ports=[{"port": 5432, "from": "app"}, {"port": 6379, "from": ["app", "::/0"]}])
    assert message.startswith("roles.yaml: roles.db.ports[1].from[1]: port 6379 would be open to ::/0")


def test_80_and_443_need_no_word_and_public_true_is_allowed_and_warned(tmp_path):
    cfg = config(tmp_path, ports=[{"port": 80, "from": "0.0.0.0/0"}, {"port": 443, "from": ["0.0.0.0/0", "::/0"]},
                                  {"port": 5432, "from": ["0.0.0.0/0", "app"], "public": True}])
    assert cfg.role("db").ports == (PortRule(80, ("0.0.0.0/0",), ()), PortRule(443, ("0.0.0.0/0", "::/0"), ()),
                                    PortRule(5432, ("0.0.0.0/0",), ("app",), public=True))
    assert public_warnings(cfg) == ["warning: db: port 5432 is open to 0.0.0.0/0 (roles.db.ports[2].public: true)"]


def test_public_where_nothing_is_open_to_the_world_is_refused(tmp_path):
    assert error_of(tmp_path, ports=[{"port": 5432, "from": "10.0.0.0/8", "public": True}]) == (
        "roles.yaml: roles.db.ports[0].public: true, but the rule is not open to 0.0.0.0/0 or ::/0; remove it")
    assert error_of(tmp_path, ports=[{"port": 5432, "from": "app", "public": "yes"}]) == (
        "roles.yaml: roles.db.ports[0].public: expected true or false, got 'yes'")


def test_ssh_open_to_the_world_needs_admin_public(tmp_path):
    assert error_of(tmp_path, admin="0.0.0.0/0") == (
        "roles.yaml: cluster.admin_cidr: 0.0.0.0/0 opens SSH (port 22) on every node to the whole internet; name "
        "the network you connect from (like 203.0.113.7/32), or allow it with cluster.admin_public: true")
    cfg = config(tmp_path, admin="0.0.0.0/0", admin_public=True)
    assert public_warnings(cfg) == ["warning: every role: port 22 (SSH) is open to 0.0.0.0/0 "
                                    "(cluster.admin_public: true)"]
    assert error_of(tmp_path, admin="203.0.113.7/32", admin_public=True).startswith(
        "roles.yaml: cluster.admin_public: true, but admin_cidr 203.0.113.7/32 is not 0.0.0.0/0 or ::/0")


def test_the_shipped_file_warns_of_nothing(cfg):
    assert public_warnings(cfg) == []


def test_provision_prints_the_warning_first(ec2, roles_file, fast, log):
    from fabfile.provision.converge import provision

    text = roles_file.read_text().replace("- {port: 5432, from: [app, worker]}",
                                          "- {port: 5432, from: [app, worker, 0.0.0.0/0], public: true}")
    roles_file.write_text(text)
    cfg = load_config(roles_file)
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=log.append)
    assert log[0] == "warning: db: port 5432 is open to 0.0.0.0/0 (roles.db.ports[0].public: true)"
    assert sum("is open to" in line for line in log) == 1
