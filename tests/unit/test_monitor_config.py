"""roles.yaml `monitor:` and the monitor role: parsing, key-path errors, what every node gets, the groups."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from fabfile.config import ConfigError, load_config
from fabfile.configure.desired import desired_state
from fabfile.monitor.config import DEFAULT_BACKUP_MAX_AGE, EmailSettings, MonitorConfig, enabled
from fabfile.monitor.grants import monitor_grants
from fabfile.nodes import Node
from fabfile.provision.builders import Grant


def edited(roles_file, edit) -> str:
    data = yaml.safe_load(roles_file.read_text())
    edit(data)
    roles_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return roles_file


def monitor_on(data):
    data["roles"]["monitor"]["count"] = 1


def error_of(roles_file, edit) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(edited(roles_file, edit))
    return str(info.value)


def test_the_shipped_roles_yaml_has_the_monitor_role_off_with_its_defaults(cfg):
    role = cfg.role("monitor")
    assert role.count == 0 and not enabled(cfg)
    assert role.packages == ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter")
    assert role.services == ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter")
    assert cfg.monitor == MonitorConfig(webhooks=(), email=None, recover=False,
                                        backup_max_age=DEFAULT_BACKUP_MAX_AGE, receiver_port=9097)


def test_one_line_turns_it_on_and_the_block_is_read(roles_file):
    def edit(data):
        monitor_on(data)
        data["monitor"].update(webhooks=["https://hooks.example.com/a?x=1", "http://10.1.2.3:9000/b",
                                         "https://hooks.example.com/a?x=1"],
                               email={"to": "ops@example.com", "from": "whipup@example.com",
                                      "smarthost": "smtp.example.com:587", "require_tls": False},
                               recover=True, backup_max_age="2h", receiver_port=9500)
    cfg = load_config(edited(roles_file, edit))
    assert enabled(cfg)
    assert cfg.monitor == MonitorConfig(
        webhooks=("https://hooks.example.com/a?x=1", "http://10.1.2.3:9000/b"),
        email=EmailSettings("ops@example.com", "whipup@example.com", "smtp.example.com:587", False),
        recover=True, backup_max_age=7200, receiver_port=9500)


def test_no_monitor_block_and_null_backup_age(roles_file):
    cfg = load_config(edited(roles_file, lambda d: d.pop("monitor")))
    assert cfg.monitor == MonitorConfig()
    cfg = load_config(edited(roles_file, lambda d: d.update(monitor={"backup_max_age": None})))
    assert cfg.monitor.backup_max_age is None


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["monitor"].update(webhook=["http://x"]), "roles.yaml: monitor.webhook: unknown key (did you mean 'webhooks'?)"),
    (lambda d: d["monitor"].update(webhooks="http://x/y"), "roles.yaml: monitor.webhooks: expected a list, got a string"),
    (lambda d: d["monitor"].update(webhooks=["ftp://x/y"]), "roles.yaml: monitor.webhooks[0]: expected an http(s) URL without spaces or quotes, got 'ftp://x/y'"),
    (lambda d: d["monitor"].update(webhooks=["http://x/a b"]), "roles.yaml: monitor.webhooks[0]: expected an http(s) URL without spaces or quotes"),
    (lambda d: d["monitor"].update(webhooks=["http://x/\"; whoami"]), "roles.yaml: monitor.webhooks[0]: expected an http(s) URL"),
    (lambda d: d["monitor"].update(email={"to": "ops@example.com"}), "roles.yaml: monitor.email.from: required"),
    (lambda d: d["monitor"].update(email={"to": "nobody", "from": "a@b.org", "smarthost": "h:25"}), "roles.yaml: monitor.email.to: expected an email address, got 'nobody'"),
    (lambda d: d["monitor"].update(email={"to": "a@b.org", "from": "a@b.org", "smarthost": "smtp"}), "roles.yaml: monitor.email.smarthost: expected host:port of an SMTP relay, got 'smtp'"),
    (lambda d: d["monitor"].update(recover="yes"), "roles.yaml: monitor.recover: expected true or false, got 'yes'"),
    (lambda d: d["monitor"].update(backup_max_age="1d"), "roles.yaml: monitor.backup_max_age: expected a duration like 90s, 30m or 2h, got '1d'"),
    (lambda d: d["monitor"].update(receiver_port=80), "roles.yaml: monitor.receiver_port: expected an integer 1024-65535, got 80"),
    (lambda d: d["monitor"].update(receiver_port=9093), "roles.yaml: monitor.receiver_port: 9093 is taken on the monitor node by Alertmanager"),
    (lambda d: d["roles"]["monitor"].update(count=2), "roles.yaml: roles.monitor.count: at most 1 (one Prometheus for the cluster), got 2"),
])
def test_errors_name_the_key(roles_file, edit, message):
    assert error_of(roles_file, edit).startswith(message)


def node(role, index=0, ip="10.0.0.9"):
    return Node(role, index, f"t-{role}-{index}", f"i-{role}{index}", "running", ip, None, None)


def test_node_exporter_on_every_node_only_while_the_monitor_is_on(cfg):
    off = desired_state(cfg, node("db"), (), db_password="x")
    assert "prometheus-node-exporter" not in off.packages and "prometheus-node-exporter" not in off.services
    on = dataclasses.replace(cfg, roles=tuple(dataclasses.replace(r, count=1) if r.name == "monitor" else r
                                              for r in cfg.roles))
    for role in ("proxy", "app", "db", "worker", "monitor"):
        d = desired_state(on, node(role), (), db_password="x")
        assert d.packages[-1] == "prometheus-node-exporter", (role, d.packages)
        assert d.services[-1] == "prometheus-node-exporter", (role, d.services)
        assert d.packages.count("prometheus-node-exporter") == 1
    mon = desired_state(on, node("monitor"), (), db_password=None)
    assert mon.services == ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter",
                            "prometheus-node-exporter")


GROUPS = {"proxy": "sg-p", "app": "sg-a", "db": "sg-d", "worker": "sg-w", "monitor": "sg-m"}


def test_the_monitor_group_reaches_node_exporter_everywhere_and_the_app_and_db_probes(cfg):
    assert monitor_grants(cfg, "app", GROUPS) == frozenset()          # the role is off: no rule
    on = dataclasses.replace(cfg, roles=tuple(dataclasses.replace(r, count=1) if r.name == "monitor" else r
                                              for r in cfg.roles))
    exporter = Grant("tcp", 9100, 9100, "group", "sg-m")
    assert monitor_grants(on, "proxy", GROUPS) == {exporter}
    assert monitor_grants(on, "worker", GROUPS) == {exporter}
    assert monitor_grants(on, "monitor", GROUPS) == {exporter}
    assert monitor_grants(on, "app", GROUPS) == {exporter, Grant("tcp", 8000, 8001, "group", "sg-m")}
    assert monitor_grants(on, "db", GROUPS) == {exporter, Grant("tcp", 5432, 5432, "group", "sg-m")}
