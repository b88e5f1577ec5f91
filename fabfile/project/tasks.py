"""fab inspect: what whipup finds in the project at the commit a deploy would take.

Strategy push reads HEAD of the local repository (the same commit and subtree `fab deploy` takes); strategy
git has the anchor node fetch app.branch into its mirror and reads the commit there.
"""
from __future__ import annotations

from ..boundary import cluster_task
from ..cloud import open_cloud
from ..config import Config
from ..remote import HostFailures, RemoteError, run
from ..ssh import NotInSandbox
from ..deploy import commands
from ..deploy.cluster import gather, open_cluster
from ..deploy.errors import DeployError
from ..deploy.planning import fetch_commit, mirror_reader
from ..deploy.source import local_commit
from .detect import inspect_tree
from .facts import facts_command, parse_facts
from .model import Project
from .table import inspect_table
from .tree import split_listing

ERRORS = (DeployError, HostFailures, RemoteError, NotInSandbox)


def inspect_local(cfg: Config) -> tuple[Project, str]:
    """Strategy push: (the project at HEAD of app.repo, which commit that is)."""
    commit = local_commit(cfg)
    where = f"HEAD {commit.sha[:12]} of {commit.toplevel}" + (f", {commit.prefix}/" if commit.prefix else "")
    return inspect_tree(commit.files(), commit.read, cfg.app), where


def inspect_fetched(cfg: Config) -> tuple[Project, str]:
    """Strategy git: the anchor node fetches app.branch; (the project at that commit, which commit)."""
    cl = open_cluster(cfg, open_cloud(cfg.cluster.target, cfg.cluster.region).client("ec2"), roles=("app", "worker"))
    try:
        sha = fetch_commit(cl)
        out = run(cl.anchor.conn, commands.list_tree(cl.layout, sha), step="list the commit's files").stdout
        project = inspect_tree(split_listing(out), mirror_reader(cl, sha, step="inspect the project"), cfg.app)
        return project, f"{cfg.app.repo} {cfg.app.branch} {sha[:12]} (fetched on {cl.anchor.name})"
    finally:
        cl.close()


def deployed_facts(cfg: Config) -> tuple[list, dict | None, str]:
    """(the overlay's overrides, what Django says, where) in the current release of the first app node (or
    worker node); ([], None, why not) when no release runs yet or the cluster cannot be reached."""
    try:
        cl = open_cluster(cfg, open_cloud(cfg.cluster.target, cfg.cluster.region).client("ec2"),
                          roles=("app", "worker"), out=lambda _line: None)
    except Exception as exc:     # no cloud, no cluster yet: inspection of the commit still stands
        return [], None, f"no running cluster to ask ({type(exc).__name__}: {str(exc)[:120]})"
    try:
        if not cl.members:
            return [], None, "no app or worker node is running"
        m = cl.members[0]
        current = gather(cl, [m])[m.name].current
        if current is None:
            return [], None, f"{m.name} has no release yet (what Django says comes after the first deploy)"
        command, stdin = facts_command(cl.layout, current)
        facts = parse_facts(run(m.conn, command, stdin=stdin, step="what Django says", timeout=120).stdout)
        overrides = [(name, "set", why) for name, why in facts.pop("whipup_overrides", None) or []]
        return overrides, facts, f"{m.name} {current}"
    finally:
        cl.close()


@cluster_task(errors=ERRORS)
def inspect(c, cfg: Config):
    """Show what whipup finds in app.repo (manage.py, settings, WSGI, dependencies, Procfile, Celery, Python)."""
    project, where = inspect_local(cfg) if cfg.app.strategy == "push" else inspect_fetched(cfg)
    print(f"{cfg.app.name}: {where}")
    overrides, facts, facts_where = deployed_facts(cfg)
    print(inspect_table(project, overrides, facts, facts_where))
    if facts is None:
        print(f"\n(what Django says: {facts_where})")
