"""PURE: the security group rules the monitor node needs, added to each role's own (provision/converge.py).

While the monitor role is on, every role's group lets the monitor's group in on node_exporter's port (9100);
the app role's on both gunicorn slots (8000-8001, the health probes); the db role's on PostgreSQL's port (a TCP
connect probe). The source is the monitor's group, not an address: a rebuilt monitor (or any node) needs no
rule change. While the role is off, none of these exist (a provision run revokes them).
"""
from __future__ import annotations

from typing import Mapping

from ..layout import DB_PORT, DB_ROLE, SLOTS, WEB_PORT, slot_port
from ..provision.builders import Grant
from .config import MONITOR_ROLE, NODE_EXPORTER_PORT, enabled


def monitor_grants(cfg, role: str, group_ids: Mapping[str, str]) -> frozenset[Grant]:
    """What `role`'s group must allow the monitor's group (nothing while the monitor role is off)."""
    if not enabled(cfg):
        return frozenset()
    source = group_ids[MONITOR_ROLE]
    grants = {Grant("tcp", NODE_EXPORTER_PORT, NODE_EXPORTER_PORT, "group", source)}
    if role == "app":
        grants.add(Grant("tcp", WEB_PORT, slot_port(SLOTS[-1]), "group", source))
    if role == DB_ROLE:
        grants.add(Grant("tcp", DB_PORT, DB_PORT, "group", source))
    return frozenset(grants)
