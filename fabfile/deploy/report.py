"""`fab releases`: the releases on every node (current marked), the deploy lock and the last deploys."""
from __future__ import annotations

from ..remote import run
from . import lock
from .cluster import Cluster, gather
from .guard import read_lock
from .lock import describe_audit, held_message, parse_audit
from .releases import NodeState, ReleaseInfo


def _agreed(cl: Cluster, states: dict[str, NodeState]) -> list[str]:
    """One list for every node, when they all agree."""
    (current, ids), = {(st.current, tuple(sorted(st.releases))) for st in states.values()}
    infos: dict[str, ReleaseInfo] = {}
    for st in states.values():
        for rid, info in st.releases.items():
            if info.sha or rid not in infos:
                infos[rid] = info
    lines = [f"releases of {cl.layout.app} on {len(states)} node(s), all in agreement "
             f"(keep {cl.cfg.app.keep_releases}; * = current):"]
    for rid in sorted(ids, reverse=True):
        lines.append(f"  {'*' if rid == current else ' '} {rid}  {(infos[rid].sha or '?')[:12]}")
    return lines


def _per_node(cl: Cluster, states: dict[str, NodeState]) -> list[str]:
    """A list per node, when they differ."""
    lines = [f"releases of {cl.layout.app}: nodes differ (keep {cl.cfg.app.keep_releases}; * = current):"]
    for name in sorted(states):
        st = states[name]
        lines.append(f"  {name}:")
        for rid in sorted(st.releases, reverse=True):
            lines.append(f"    {'*' if rid == st.current else ' '} {rid}  {(st.releases[rid].sha or '?')[:12]}")
        if st.current and st.current not in st.releases:
            lines.append(f"    * {st.current}  (current points at a missing release!)")
    return lines


def releases_report(cl: Cluster, history: int = 5) -> list[str]:
    states = gather(cl, cl.members)
    with_releases = {name: st for name, st in states.items() if st.releases or st.current}
    if not with_releases:
        return [f"no releases of {cl.layout.app} yet (fab deploy)"]
    views = {(st.current, tuple(sorted(st.releases))) for st in with_releases.values()}
    lines = _agreed(cl, with_releases) if len(views) == 1 else _per_node(cl, with_releases)
    held = read_lock(cl)
    lines.append("deploy lock: " + ("free" if held is None else held_message(held, cl.anchor.name)))
    text = run(cl.anchor.conn, lock.audit_tail(cl.layout, history), step="read the audit log").stdout
    records = parse_audit(text)
    if records:
        lines.append(f"last {len(records)} deploy(s) ({cl.layout.audit_log} on {cl.anchor.name}):")
        lines.extend(f"  {describe_audit(r)}" for r in records)
    return lines
