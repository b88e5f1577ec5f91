"""What `fab status` prints: pure formatting of nodes."""
from __future__ import annotations

import json
from dataclasses import asdict

from ..nodes import Node

STATUS_HEADER = ("role", "name", "id", "state", "private IP", "public IP", "security group")


def status_rows(nodes: list[Node]) -> list[tuple[str, ...]]:
    return [(n.role, n.name, n.instance_id, n.state, n.private_ip or "-", n.public_ip or "-",
             n.security_group or "-") for n in nodes]


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def status_text(cluster: str, nodes: list[Node]) -> str:
    if not nodes:
        return f"cluster {cluster}: no nodes"
    return format_table(STATUS_HEADER, status_rows(nodes))


def status_json(nodes: list[Node]) -> str:
    return json.dumps([asdict(n) for n in nodes], indent=2)
