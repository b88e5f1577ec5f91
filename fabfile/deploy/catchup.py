"""A rebuilt node catches up: the release the cluster serves, deployed to the nodes that lack one, only.

    whip-up-full-system after a node was lost: provision launched it again, configure set it up, and here it
    gets the release its peers run (the same release id, the same commit), not a new release everywhere:
    code + venv on it -> static files (a new proxy, from an app node that has them) -> its gunicorn slot booted
    and asked for its health path -> the proxies' upstream with it -> the gate -> a new worker's celery.
    No migrate (the database already serves that release), nothing changes on the other nodes but the
    proxies' upstream file. `fab deploy` then ships HEAD, if it differs.
"""
from __future__ import annotations

from collections import Counter

from ..remote import run
from . import health, reload, stages, switchover
from .cluster import Cluster, Timer
from .errors import DeployError
from .guard import Guard, guarded
from .lock import AuditRecord, iso, utc_now, whoami
from .planning import DeployOptions, Plan, runtime_of
from .releases import NodeState, VenvPlan
from .source import Source

ROLE_FALLBACK = {"proxy": "app", "worker": "app", "app": "proxy"}


def targets(cl: Cluster, states: dict[str, NodeState]) -> dict[str, str]:
    """{node with no release: the release its peers serve}: the same role's most common `current`, else
    the app tier's. Empty when no node serves anything yet (a first deploy) or none lacks a release."""
    members = cl.proxies + cl.apps + cl.workers
    by_role: dict[str, Counter] = {}
    for m in members:
        if states[m.name].current:
            by_role.setdefault(m.role, Counter())[states[m.name].current] += 1
    out = {}
    for m in members:
        if states[m.name].current is None:
            peers = by_role.get(m.role) or by_role.get(ROLE_FALLBACK[m.role])
            if peers:
                out[m.name] = peers.most_common(1)[0][0]
    return out


def commit_of(states: dict[str, NodeState], release: str) -> str:
    """The commit of `release`, as its peers' REVISION says."""
    for st in states.values():
        info = st.releases.get(release)
        if info is not None and info.sha:
            return info.sha
    raise DeployError(f"release {release}: no node says which commit it is (REVISION); fab deploy deploys HEAD")


def source_for(cl: Cluster, states: dict[str, NodeState], missing: dict[str, str], sha: str) -> Source:
    """The Source of commit `sha`: from the local repository (push), or from the mirror of a node that has the
    release (git: the rebuilt node fetches the branch, which holds it)."""
    from ..project.tree import split_listing
    from . import commands
    from .source import inspected_source, local_source_at

    if cl.cfg.app.strategy == "push":
        return local_source_at(cl.cfg, sha)
    peer = next((m for m in cl.apps + cl.workers if m.name not in missing and states[m.name].current), None)
    if peer is None:
        raise DeployError("no app or worker node has the release to rebuild from; fab deploy deploys HEAD")

    def read(path: str) -> str | None:
        r = run(peer.conn, commands.show_file(cl.layout, sha, path), step="read the release's files", check=False)
        return r.stdout if r.exited == 0 else None

    out = run(peer.conn, commands.list_tree(cl.layout, sha), step="list the release's files").stdout
    return inspected_source(cl.cfg, "git", sha, split_listing(out), read, branch=cl.cfg.app.branch)


def rebuild(cl: Cluster, states: dict[str, NodeState], missing: dict[str, str], source: Source, *,
            held: Guard | None = None) -> None:
    """Deploy `source` (the peers' release's commit) to the nodes in `missing` under the lock (`held`: the
    caller's, whip-up's)."""
    releases = set(missing.values())
    if len(releases) != 1:
        raise DeployError("the nodes to rebuild belong to different releases (" + ", ".join(sorted(releases))
                          + "): fab deploy brings the whole cluster to HEAD")
    release, timer = releases.pop(), Timer()
    new = [m for m in cl.proxies + cl.apps + cl.workers if m.name in missing]
    cl.out(f"rebuild: {', '.join(m.name for m in new)} get release {release} ({source.short}), the release "
           f"the other nodes serve; nothing else changes")
    opts = DeployOptions(action="rebuild", catch_up=True)
    code = [m for m in new if m.role in ("app", "worker")]
    plan = Plan(release, source, opts, code, [m for m in new if m.role == "proxy"], states,
                {m.name: VenvPlan("install", None, release, "a rebuilt node") for m in code}, runtime_of(cl, source))
    with guarded(cl, release, "rebuild", held=held) as guard:
        try:
            _stages(cl, plan, timer, states)
        except Exception as exc:
            guard.audit(_record(plan, "failed", timer, str(exc)))
            raise
        guard.audit(_record(plan, "ok", timer))
    cl.out(f"rebuilt {', '.join(m.name for m in new)} on {release} in {timer.total:.1f} s ({timer.summary()})")


def _stages(cl: Cluster, plan: Plan, timer: Timer, states: dict[str, NodeState]) -> None:
    if plan.code:
        timer.step("code", lambda: stages.deliver(cl, plan))
    if plan.static:
        timer.step("static", lambda: _static(cl, plan))
    if plan.apps:
        timer.step("boot", lambda: switchover.boot_all(cl, plan.apps, plan.release, states, plan.booted))
        timer.step("switch", lambda: switchover.switch_apps(cl, plan.apps, plan.booted, plan.release))
    if plan.static or plan.apps:
        timer.step("proxies", lambda: _proxies(cl, plan, states))
    if plan.apps:
        timer.step("health", lambda: health.gate(cl, plan.release, plan.options.health_timeout, plan.apps,
                                                 plan.booted))
    if plan.worker_nodes:
        timer.step("workers", lambda: (stages.switch(cl, plan.worker_nodes, plan.release),
                                       reload.workers(cl, plan.worker_nodes)))


def _static(cl: Cluster, plan: Plan) -> None:
    """The release's static files for a new proxy, packed on an app node that has them (collected on a
    rebuilt app node 0 first)."""
    if cl.apps and cl.apps[0] in plan.apps:
        stages.collectstatic(cl, plan)
    stages.static_to_proxies(cl, plan)


def _proxies(cl: Cluster, plan: Plan, states: dict[str, NodeState]) -> None:
    """New proxies: `current` and the upstream; the others: the upstream (with the rebuilt app nodes)."""
    others = [m for m in cl.proxies if m not in plan.static]
    if plan.static:
        switchover.switch_proxies(cl, states, plan.booted, plan.release, plan.static)
    if others:
        switchover.switch_proxies(cl, states, plan.booted, None, others)


def _record(plan: Plan, result: str, timer: Timer, detail: str = "") -> AuditRecord:
    return AuditRecord(at=iso(utc_now()), who=whoami(), action="rebuild", result=result, from_release=None,
                       to_release=plan.release, from_sha=None, to_sha=plan.source.sha, component="all",
                       seconds=round(timer.total, 1), detail=detail or ", ".join(m.name for m in plan.involved))
