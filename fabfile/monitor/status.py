"""PURE: `fab status`'s "as the monitor sees it": one command run on the monitor node over SSH (curl to its
Prometheus on loopback: no new network path), and the table made of its answer.

Per node: its node_exporter (up / down), its probes (site through a proxy, an app node's live slot, a db node's
PostgreSQL port: ok / failing), and the alerts firing for it.
"""
from __future__ import annotations

import json
import shlex

from .context import PROMETHEUS

QUERIES = ('up{job="node"}', "probe_success", 'max by (node, job) (probe_success{job="app_health"})',
           'ALERTS{alertstate="firing"}')
HEADER = ("node", "role", "exporter", "probes", "alerts")


def query_command(timeout: float = 5) -> str:
    """One JSON answer per line, in QUERIES' order (an empty line where Prometheus did not answer)."""
    url = f"http://{PROMETHEUS}/api/v1/query"
    lines = [f"curl -sS -m {timeout:g} -G {shlex.quote(url)} --data-urlencode {shlex.quote('query=' + q)}; echo"
             for q in QUERIES]
    return "; ".join(lines)


def _vector(line: str) -> list[dict] | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("status") != "success":
        return None
    return [r for r in data.get("data", {}).get("result", []) if isinstance(r, dict)]


def parse(stdout: str) -> dict[str, dict] | None:
    """{node: {role, exporter, probes: {job: ok}, alerts: [...]}}; None when Prometheus did not answer."""
    lines = stdout.splitlines()
    vectors = [_vector(line) for line in lines[:len(QUERIES)]]
    if len(vectors) < len(QUERIES) or any(v is None for v in vectors):
        return None
    up, probes, app, alerts = vectors
    nodes: dict[str, dict] = {}

    def entry(metric: dict) -> dict | None:
        name = metric.get("node")
        if not name:
            return None
        return nodes.setdefault(name, {"role": metric.get("role", "-"), "exporter": None, "probes": {}, "alerts": []})

    for r in up:
        e = entry(r["metric"])
        if e is not None:
            e["exporter"] = r["value"][1] == "1"
    for r in probes + app:
        e = entry(r["metric"])
        job = r["metric"].get("job")
        if e is not None and job and (job != "app_health" or "instance" not in r["metric"]):
            e["probes"][job] = r["value"][1] == "1"
    for r in alerts:
        e = entry(r["metric"])
        if e is not None:
            e["alerts"].append(r["metric"].get("alertname", "?"))
    return nodes


PROBE_NAMES = {"site": "site", "app_health": "health", "db": "postgres"}


def rows(nodes: dict[str, dict]) -> list[tuple[str, ...]]:
    out = []
    for name in sorted(nodes):
        n = nodes[name]
        exporter = "-" if n["exporter"] is None else ("up" if n["exporter"] else "DOWN")
        probes = ", ".join(f"{PROBE_NAMES.get(job, job)} {'ok' if ok else 'FAILING'}"
                           for job, ok in sorted(n["probes"].items())) or "-"
        out.append((name, n["role"], exporter, probes, ", ".join(sorted(set(n["alerts"]))) or "none"))
    return out


def health_lines(cfg, nodes) -> list[str]:
    """`fab status`'s section (thin runner): the monitor node's Prometheus asked over SSH; [] with no monitor."""
    from ..provision.report import format_table
    from ..remote import RemoteError, run
    from ..ssh import connect
    from .config import MONITOR_ROLE, enabled

    if not enabled(cfg):
        return []
    monitor = next((n for n in nodes if n.role == MONITOR_ROLE and n.state == "running"), None)
    if monitor is None:
        return ["", "health (as the monitor sees it): no running monitor node"]
    conn = connect(cfg, monitor)
    try:
        out = run(conn, query_command(), step="ask Prometheus", check=False, timeout=30).stdout
    except (RemoteError, OSError) as exc:
        return ["", f"health (as the monitor sees it): {monitor.name} does not answer: {exc}"]
    finally:
        conn.close()
    seen = parse(out)
    if seen is None:
        return ["", f"health (as the monitor sees it): Prometheus on {monitor.name} does not answer"]
    return ["", f"health (as {monitor.name} sees it):", format_table(HEADER, rows(seen))]
