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
from ..deploy.cluster import open_cluster
from ..deploy.errors import DeployError
from ..deploy.planning import fetch_commit, mirror_reader
from ..deploy.source import local_commit
from .detect import inspect_tree
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


@cluster_task(errors=ERRORS)
def inspect(c, cfg: Config):
    """Show what whipup finds in app.repo (manage.py, settings, WSGI, dependencies, Procfile, Celery, Python)."""
    project, where = inspect_local(cfg) if cfg.app.strategy == "push" else inspect_fetched(cfg)
    print(f"{cfg.app.name}: {where}")
    print(inspect_table(project))
