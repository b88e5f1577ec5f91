"""`fab releases`: the releases on every node (current marked), the deploy lock and the last deploys."""
from __future__ import annotations

from ..remote import run
from . import lock
from .cluster import Cluster, gather
from .guard import read_lock, staleness
from .lock import describe_audit, held_message, parse_audit
from .releases import NodeState, ReleaseInfo


def _partial(info: ReleaseInfo) -> str:
    return "  (partial: an interrupted deploy's; the next deploy removes it)" if info.partial else ""


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
        lines.append(f"  {'*' if rid == current else ' '} {rid}  {(infos[rid].sha or '?')[:12]}{_partial(infos[rid])}")
    return lines


def _per_node(cl: Cluster, states: dict[str, NodeState]) -> list[str]:
    """A list per node, when they differ."""
    lines = [f"releases of {cl.layout.app}: nodes differ (keep {cl.cfg.app.keep_releases}; * = current):"]
    for name in sorted(states):
        st = states[name]
        lines.append(f"  {name}:")
        for rid in sorted(st.releases, reverse=True):
            info = st.releases[rid]
            lines.append(f"    {'*' if rid == st.current else ' '} {rid}  {(info.sha or '?')[:12]}{_partial(info)}")
        if st.current and st.current not in st.releases:
            lines.append(f"    * {st.current}  (current points at a missing release!)")
    return lines


def _lock_line(cl: Cluster) -> str:
    held = read_lock(cl)
    if held is None:
        return "free"
    why = staleness(held)
    return held_message(held, cl.anchor.name) + (f" (stale: {why}; the next deploy takes it over)" if why else "")


def releases_report(cl: Cluster, history: int = 5) -> list[str]:
    states = gather(cl, cl.members)
    with_releases = {name: st for name, st in states.items() if st.releases or st.current}
    if not with_releases:
        return [f"no releases of {cl.layout.app} yet (fab deploy)"]
    views = {(st.current, tuple(sorted(st.releases))) for st in with_releases.values()}
    lines = _agreed(cl, with_releases) if len(views) == 1 else _per_node(cl, with_releases)
    lines.append("deploy lock: " + _lock_line(cl))
    text = run(cl.anchor.conn, lock.audit_tail(cl.layout, history), step="read the audit log").stdout
    records = parse_audit(text)
    if records:
        lines.append(f"last {len(records)} deploy(s) ({cl.layout.audit_log} on {cl.anchor.name}):")
        lines.extend(f"  {describe_audit(r)}" for r in records)
    return lines
