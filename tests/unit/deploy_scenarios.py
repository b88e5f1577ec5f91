"""What the deploy and rollback sequencing tests share: the releases, the fake cluster they start from, and
helpers that read what happened (deploy_fakes). Not a test module; its fixtures are imported by name."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from deploy_fakes import Rel, World, make_cluster

from fabfile.deploy import engine
from fabfile.deploy.lock import parse_audit
from fabfile.deploy.planning import DeployOptions
from fabfile.deploy.releases import release_id, requirements_hash
from fabfile.deploy.source import Source

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
SHA = "3" * 40
NEW = release_id(NOW, SHA)
R1, R2 = "20240101000000-1111111", "20240201000000-2222222"
REQS = "Django>=4.2,<5.1\ngunicorn>=21.2\ncelery\n"
SOURCE = Source("git", SHA, "", REQS, None, "main")
PROXY, APP, WORKER = "t-proxy-0", "t-app-0", "t-worker-0"
SERVES = "the previous release keeps serving"
# R2 (current) was deployed over R1 and reuses its venv; both were built from REQS
DEPLOYED = {R1: Rel("1" * 40, requirements_hash(REQS), R1),
            R2: Rel("2" * 40, requirements_hash(REQS), R1, previous=R1)}


@pytest.fixture
def gitcfg(cfg):
    """The shipped roles.yaml with strategy git (no local git push) and one release kept (so prune acts)."""
    return replace(cfg, app=replace(cfg.app, strategy="git", repo="https://example.com/demo.git", keep_releases=1))


@pytest.fixture
def world():
    w = World(SHA)
    yield w
    assert not w.unclassified, "commands the fake hosts could not classify:\n" + "\n\n".join(w.unclassified)


@pytest.fixture
def site(gitcfg, world):
    """proxy, app and worker nodes on R2 (deployed over R1): gunicorn slot a and celery run R2, the proxy's
    upstream names slot a's port; slot b is empty."""
    return make_cluster(gitcfg, world, DEPLOYED, R2)


@pytest.fixture
def warm_site(gitcfg, world):
    """As `site`, but R2 serves in slot b and slot a is kept warm on R1 (R2's deploy drained it)."""
    return make_cluster(gitcfg, world, DEPLOYED, R2, warm=R1)


def deploy(cl, **opts):
    return engine.deploy(cl, SOURCE, DeployOptions(**opts), now=NOW)


def audit(hosts):
    """The audit records appended on the anchor (app node 0)."""
    return parse_audit("".join(hosts["app"].audit))


def last(log, entry) -> int:
    return len(log) - 1 - log[::-1].index(entry)


def did(host, stage, release):
    """`stage` for `release` worked on `host`."""
    return (stage, release, True) in host.calls


def count(host, stage, release=None) -> int:
    return sum(1 for s, r, _ in host.calls if s == stage and release in (None, r))


def reached(world, hosts):
    """Where the proxy's upstream sends requests: [(app node, slot, the release answering there)]."""
    return world.reached(hosts["proxy"].upstream)


def labeled(log):
    """The log with each probe named by when it ran: `reach` (a booted slot, from the proxy, before any
    traffic) until the proxy's upstream first moved, `gate` after."""
    moved = next((i for i, (_, s) in enumerate(log) if s == "upstream"), len(log))
    return [(n, ("reach" if i < moved else "gate") if s == "probe" else s) for i, (n, s) in enumerate(log)]
