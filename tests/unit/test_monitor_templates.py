"""The monitor's templates (templates/etc/prometheus, templates/etc/default), rendered from the cluster."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from fabfile.configure.templates import render_role_files
from fabfile.monitor.config import EmailSettings, MonitorConfig
from fabfile.monitor.context import receiver_url
from fabfile.nodes import Node

REPO = Path(__file__).resolve().parents[2]


def node(role, index, ip):
    return Node(role, index, f"t-{role}-{index}", f"i-{role}{index}", "running", ip, None, None)


NODES = [node("proxy", 0, "10.0.0.5"), node("app", 0, "10.0.0.10"), node("app", 1, "10.0.0.11"),
         node("db", 0, "10.0.0.20"), node("monitor", 0, "10.0.0.40"),
         node("worker", 0, None)]                  # not addressed yet: not a target


@pytest.fixture
def on(cfg):
    """The shipped roles.yaml with the monitor role on, reading the repository's templates."""
    return dataclasses.replace(
        cfg, configure=dataclasses.replace(cfg.configure, templates_dir=REPO / "templates"),
        roles=tuple(dataclasses.replace(r, count=1) if r.name == "monitor" else r for r in cfg.roles))


def rendered(cfg, nodes=NODES) -> dict[str, str]:
    mon = next(n for n in nodes if n.role == "monitor")
    return {f.path: f.content for f in render_role_files(cfg, mon, nodes)}


def test_the_monitor_writes_its_files_mirroring_the_remote_paths(on):
    assert sorted(rendered(on)) == [
        "/etc/default/prometheus", "/etc/default/prometheus-alertmanager", "/etc/default/prometheus-blackbox-exporter",
        "/etc/prometheus/alertmanager.yml", "/etc/prometheus/blackbox.yml", "/etc/prometheus/prometheus.yml",
        "/etc/prometheus/whipup-alerts.yml"]


def test_prometheus_scrapes_every_addressed_node_and_probes_site_app_slots_and_db(on):
    text = rendered(on)["/etc/prometheus/prometheus.yml"]
    conf = yaml.safe_load(text)
    assert conf["global"]["scrape_interval"] == "5s" and conf["global"]["evaluation_interval"] == "5s"
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert jobs["node"]["static_configs"] == [
        {"targets": ["10.0.0.10:9100"], "labels": {"node": "t-app-0", "role": "app"}},
        {"targets": ["10.0.0.11:9100"], "labels": {"node": "t-app-1", "role": "app"}},
        {"targets": ["10.0.0.20:9100"], "labels": {"node": "t-db-0", "role": "db"}},
        {"targets": ["10.0.0.40:9100"], "labels": {"node": "t-monitor-0", "role": "monitor"}},
        {"targets": ["10.0.0.5:9100"], "labels": {"node": "t-proxy-0", "role": "proxy"}}]
    assert jobs["site"]["static_configs"] == [
        {"targets": ["http://10.0.0.5/health"], "labels": {"node": "t-proxy-0", "role": "proxy"}}]
    assert jobs["app_health"]["static_configs"] == [
        {"targets": ["http://10.0.0.10:8000/health", "http://10.0.0.10:8001/health"],
         "labels": {"node": "t-app-0", "role": "app"}},
        {"targets": ["http://10.0.0.11:8000/health", "http://10.0.0.11:8001/health"],
         "labels": {"node": "t-app-1", "role": "app"}}]
    assert jobs["db"]["static_configs"] == [{"targets": ["10.0.0.20:5432"], "labels": {"node": "t-db-0", "role": "db"}}]
    assert jobs["db"]["params"] == {"module": ["tcp_connect"]}
    for job in ("site", "app_health", "db"):
        assert jobs[job]["metrics_path"] == "/probe"
        assert jobs[job]["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "127.0.0.1:9115"}
    assert conf["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]}
    assert conf["rule_files"] == ["/etc/prometheus/whipup-alerts.yml"]


def test_a_rebuilt_node_is_a_new_target_and_a_cluster_without_proxy_still_renders(on):
    moved = [n if n.name != "t-app-1" else dataclasses.replace(n, private_ip="10.0.0.99") for n in NODES]
    text = rendered(on, moved)["/etc/prometheus/prometheus.yml"]
    assert '"10.0.0.99:9100"' in text and '"http://10.0.0.99:8001/health"' in text and "10.0.0.11" not in text
    alone = [n for n in NODES if n.role in ("monitor", "db")]
    jobs = {j["job_name"]: j for j in yaml.safe_load(rendered(on, alone)["/etc/prometheus/prometheus.yml"])
            ["scrape_configs"]}
    assert jobs["site"]["static_configs"] == [] and jobs["app_health"]["static_configs"] == []


def test_the_alert_rules(on):
    rules = yaml.safe_load(rendered(on)["/etc/prometheus/whipup-alerts.yml"])["groups"][0]["rules"]
    by = {}
    for r in rules:
        by.setdefault(r["alert"], []).append(r)
    assert sorted(by) == ["AppUnhealthy", "BackupTooOld", "DbDown", "DiskFull", "NodeDown", "SiteDown"]
    assert by["SiteDown"][0]["expr"] == 'probe_success{job="site"} == 0'
    assert by["AppUnhealthy"][0]["expr"] == 'max by (node, role) (probe_success{job="app_health"}) == 0'
    assert by["NodeDown"][0]["expr"] == 'up{job="node"} == 0'
    assert by["DbDown"][0]["expr"] == 'probe_success{job="db"} == 0'
    assert all(by[a][0]["for"] == "10s" for a in ("SiteDown", "AppUnhealthy", "NodeDown", "DbDown"))
    assert by["DiskFull"][0]["expr"].endswith("> 0.90")
    assert by["AppUnhealthy"][0]["annotations"]["summary"] == \
        "neither gunicorn slot of {{ $labels.node }} answers its health path"
    old, absent = by["BackupTooOld"]
    assert old["expr"] == ("time() - max by (node, role) (whipup_backup_last_success_timestamp_seconds"
                           '{job="node"}) > 93600')
    assert absent["expr"] == 'absent(whipup_backup_last_success_timestamp_seconds{job="node"})'
    assert absent["for"] == "93600s"
    no_backups = dataclasses.replace(on, monitor=MonitorConfig(backup_max_age=None))
    assert "BackupTooOld" not in rendered(no_backups)["/etc/prometheus/whipup-alerts.yml"]


def test_alertmanager_without_receivers_is_a_null_receiver(on):
    assert rendered(on)["/etc/prometheus/alertmanager.yml"].split("\n", 1)[1] == (
        "route:\n"
        "  receiver: whipup\n"
        "  group_by: [alertname, node]\n"
        "  group_wait: 5s\n"
        "  group_interval: 30s\n"
        "  repeat_interval: 4h\n"
        "\n"
        "receivers:\n"
        "  - name: whipup\n")


def test_alertmanager_sends_to_webhooks_email_and_the_recovery_receiver(on):
    cfg = dataclasses.replace(on, monitor=MonitorConfig(
        webhooks=("https://hooks.example.com/a?b=1&c=2",),
        email=EmailSettings("ops@example.com", "whipup@example.com", "smtp.example.com:587"),
        recover=True, receiver_port=9717))
    conf = yaml.safe_load(rendered(cfg)["/etc/prometheus/alertmanager.yml"])
    assert conf["global"] == {"smtp_smarthost": "smtp.example.com:587", "smtp_from": "whipup@example.com",
                              "smtp_require_tls": True}
    assert conf["receivers"] == [
        {"name": "whipup", "webhook_configs": [{"url": "https://hooks.example.com/a?b=1&c=2", "send_resolved": True}],
         "email_configs": [{"to": "ops@example.com", "send_resolved": True}]},
        {"name": "recover", "webhook_configs": [{"url": "http://127.0.0.1:9717/recover",
                                                 "send_resolved": False}]}]
    route, rest = conf["route"]["routes"]
    assert route["receiver"] == "recover" and route["continue"] is True
    assert route["matchers"] == ['alertname="NodeDown"', 'role=~"app|proxy"']
    assert rest == {"receiver": "whipup"}     # NodeDown goes on to the webhooks (a matched child replaces the root's)


def test_the_recovery_receiver_is_on_the_monitor_nodes_loopback_on_either_target(on):
    """Alertmanager posts to the monitor's own loopback; the receiver's reverse tunnel brings it to the
    control machine, so AWS needs no address of the control machine either."""
    rec = dataclasses.replace(on, monitor=MonitorConfig(recover=True, receiver_port=9800))
    assert receiver_url(rec) == "http://127.0.0.1:9800/recover"
    assert receiver_url(on) is None                                       # recover off
    aws = dataclasses.replace(rec, cluster=dataclasses.replace(rec.cluster, target="aws"))
    assert receiver_url(aws) == "http://127.0.0.1:9800/recover"


def test_the_daemons_listen_on_loopback(on):
    files = rendered(on)
    assert files["/etc/default/prometheus"].splitlines()[-1] == \
        'ARGS="--web.listen-address=127.0.0.1:9090 --storage.tsdb.retention.time=15d"'
    assert files["/etc/default/prometheus-alertmanager"].splitlines()[-1] == \
        'ARGS="--web.listen-address=127.0.0.1:9093 --cluster.listen-address="'
    blackbox = files["/etc/default/prometheus-blackbox-exporter"]
    assert blackbox.splitlines()[1] == \
        'ARGS="--config.file /etc/prometheus/blackbox.yml --web.listen-address=127.0.0.1:9115"'
    # Debian's sysv script checks blackbox.yml with promtool (Prometheus' checker): the exporter's own instead
    assert "config_check()\n{\n  if ! errors=\"$(/usr/bin/prometheus-blackbox-exporter --config.check " \
           "--config.file /etc/prometheus/blackbox.yml 2>&1)\"; then\n" in blackbox
    modules = yaml.safe_load(files["/etc/prometheus/blackbox.yml"])["modules"]
    assert modules["http_2xx"]["prober"] == "http" and modules["tcp_connect"]["prober"] == "tcp"
