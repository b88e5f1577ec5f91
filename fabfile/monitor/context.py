"""PURE: what the monitor's templates see (`monitor` in the template context, templates/etc/prometheus/).

Rendered from the cluster's nodes on every `fab configure` (whip-up and recovery run it): a node launched or
rebuilt appears in the scrape targets of the next configure; one gone leaves them.

- nodes      every node's node_exporter (ip:9100), labelled with its name and role
- site       the site through each proxy node: http://<proxy>/<app.health_path> (nginx, gunicorn, the database)
- app_health each app node's two gunicorn slots (8000, 8001): the live one answers; the alert is "neither does"
- db         each db node's PostgreSQL port (a TCP connect from the monitor)
- intervals  short enough that a dead app node reaches the webhook within a minute:
             scrape/evaluate every 5 s, `for: 10s`, Alertmanager's group_wait 5 s
"""
from __future__ import annotations

from typing import Mapping

from ..layout import DB_PORT, DB_ROLE, SLOTS, slot_port
from .config import MONITOR_ROLE, NODE_EXPORTER_PORT, enabled

SCRAPE_INTERVAL = "5s"
EVALUATION_INTERVAL = "5s"
ALERT_FOR = "10s"           # how long a probe must fail before its alert fires
GROUP_WAIT = "5s"           # Alertmanager: how long it gathers a new group's alerts before sending
PROMETHEUS = "127.0.0.1:9090"     # the monitor's own services listen on loopback only
ALERTMANAGER = "127.0.0.1:9093"
BLACKBOX = "127.0.0.1:9115"
SMTP_PASSWORD = "/etc/prometheus/alertmanager-smtp-password"   # written by smtp.py, never by a template
RECOVER_ROLES = ("app", "proxy")  # a lost node of these roles is rebuilt by `recover` when monitor.recover is on


def receiver_url(cfg) -> str | None:
    """Where Alertmanager posts the alerts that start a recovery (None: monitor.recover off): the monitor node's
    own loopback, which the receiver's reverse SSH tunnel brings to the control machine (tunnel.py)."""
    if not cfg.monitor.recover:
        return None
    return f"http://127.0.0.1:{cfg.monitor.receiver_port}/recover"


def monitor_context(cfg, by_role: Mapping[str, list[dict]], recover_url: str | None) -> dict:
    """The `monitor` template variable: `by_role` is templates.context's `nodes` (addressed nodes, by role)."""
    health = cfg.app.health_path
    m = cfg.monitor
    nodes = [n for role in by_role for n in by_role[role]]
    return {
        "enabled": enabled(cfg),
        "scrape_interval": SCRAPE_INTERVAL,
        "evaluation_interval": EVALUATION_INTERVAL,
        "alert_for": ALERT_FOR,
        "group_wait": GROUP_WAIT,
        "prometheus": PROMETHEUS,
        "alertmanager": ALERTMANAGER,
        "blackbox": BLACKBOX,
        "nodes": [{"name": n["name"], "role": n["role"], "target": f"{n['private_ip']}:{NODE_EXPORTER_PORT}"}
                  for n in sorted(nodes, key=lambda n: n["name"])],
        "site": [{"name": n["name"], "target": f"http://{n['private_ip']}{health}"}
                 for n in by_role.get("proxy", [])],
        "app_health": [{"name": n["name"],
                        "targets": [f"http://{n['private_ip']}:{slot_port(s)}{health}" for s in SLOTS]}
                       for n in by_role.get("app", [])],
        "db": [{"name": n["name"], "target": f"{n['private_ip']}:{DB_PORT}"} for n in by_role.get(DB_ROLE, [])],
        "webhooks": list(m.webhooks),
        "email": None if m.email is None else {"to": m.email.to, "from": m.email.sender,
                                               "smarthost": m.email.smarthost, "require_tls": m.email.require_tls,
                                               "username": m.email.username,
                                               "password_file": SMTP_PASSWORD if m.email.username else None},
        "recover_url": recover_url,
        "recover_roles": list(RECOVER_ROLES),
        "backup_max_age": m.backup_max_age,
        "role": MONITOR_ROLE,
    }
