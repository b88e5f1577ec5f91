"""whip-up's pipeline (fabfile/pipeline.py): the db node configures beside the other nodes' configure and the
deploy's code and venv, under one deploy lock; the deploy waits for it only before Django meets the
database; a failure on either side ends the run once both ended. Configure runs over the FakeHosts of
test_configure_run, the lock's commands for real on this machine (local_host.LocalHost); the deploy's part
over the scripted hosts of deploy_fakes."""
from __future__ import annotations

import json
import threading

import pytest
from deploy_scenarios import APP, NEW, NOW, SOURCE, gitcfg, site, world

import test_configure_run as run_tests
from fabfile import pipeline
from fabfile.configure.facts import MAGIC
from fabfile.deploy import engine, guard
from fabfile.deploy.errors import DeployError
from fabfile.deploy.planning import DeployOptions
from fabfile.remote import HostFailures
from fabfile.vault import secret
from test_configure_lock import audit_lines, up_to_date
from test_configure_run import NODES

shipped, anchor, cluster = run_tests.shipped, run_tests.anchor, run_tests.cluster
__all__ = ["gitcfg", "site", "world", "shipped", "anchor", "cluster"]          # fixtures


# --- the deploy's side: where it waits, and a lock it is lent ----------------------------------------

def test_the_deploy_waits_for_the_database_after_every_nodes_code_and_venv_and_before_django_runs(site, world):
    cl, hosts, out = site
    assert engine.deploy(cl, SOURCE, DeployOptions(), now=NOW,
                         db_ready=lambda: world.log.append(("db", "ready"))) == NEW
    stages = [s for _, s in world.log]
    assert stages.count("ready") == 1
    ready = stages.index("ready")
    for node in ("t-app-0", "t-worker-0"):
        mine = [s for n, s in world.log[:ready] if n == node]
        assert {"fetch", "extract", "release files", ".env", "venv reuse"} <= set(mine), node
    assert world.log[ready + 1] == (APP, "django facts")          # the settings check: Django's first run


def test_a_database_that_never_got_ready_stops_the_deploy_before_the_switch(site, world):
    cl, hosts, out = site

    def db_failed():
        raise HostFailures("configure", [])

    with pytest.raises(DeployError) as info:
        engine.deploy(cl, SOURCE, DeployOptions(), now=NOW, db_ready=db_failed)
    assert str(info.value).startswith("configure failed on 0 host(s)")
    assert str(info.value).endswith("nothing was switched: the previous release keeps serving")
    stages = [s for _, s in world.log]
    assert "django facts" not in stages and "switch" not in stages and "upstream" not in stages
    assert all(NEW not in h.releases for h in hosts.values())       # the new release removed again
    assert hosts["app"].lock is None


def test_a_deploy_under_a_lock_its_caller_holds_neither_takes_nor_releases_it(site, world):
    cl, hosts, out = site
    held = guard.acquire(cl, "", pipeline.ACTION)
    holder = hosts["app"].lock
    assert engine.deploy(cl, SOURCE, DeployOptions(), now=NOW, held=held) == NEW
    assert [s for _, s in world.log].count("lock") == 1              # the caller's, only
    assert hosts["app"].lock == holder and "audit" in [s for _, s in world.log]
    held.release()
    assert hosts["app"].lock is None


# --- the pipeline itself --------------------------------------------------------------------------------

@pytest.fixture
def whip(monkeypatch, shipped, cluster):
    """pipeline.build over the FakeHosts: (hosts, what ran after the db's configure, build(deploy))."""
    hosts, _ = cluster
    up_to_date(shipped, hosts)
    after: list[str] = []
    monkeypatch.setattr(pipeline, "find_nodes", lambda ec2, name: list(NODES))
    monkeypatch.setattr(pipeline, "ensure_nightly", lambda cfg, nodes, out: after.append("nightly"))
    monkeypatch.setattr(pipeline, "ensure_smtp", lambda cfg, nodes, out: after.append("smtp"))
    lines: list[str] = []
    return Whip(hosts, after, lines, lambda deploy: pipeline.build(shipped, None, deploy, out=lines.append), shipped)


class Whip(tuple):
    """(hosts, what ran after the db's configure, the lock's lines, build(deploy)); `.cfg`."""

    def __new__(cls, hosts, after, lines, build, cfg):
        self = super().__new__(cls, (hosts, after, lines, build))
        self.cfg = cfg
        return self


def hold_facts(host, gate: threading.Event) -> None:
    """`host` answers its facts command only once `gate` is set (a db node still installing PostgreSQL)."""
    answer = host.run

    def run(command, **kw):
        if MAGIC in command:
            assert gate.wait(10), f"{host.node.name}: nothing else ran while it configured"
        return answer(command, **kw)
    host.run = run


def test_the_db_node_configures_while_the_others_configure_and_the_deploy_starts(whip, anchor):
    hosts, after, lines, build = whip
    gate, seen = threading.Event(), {}
    hold_facts(hosts["t-db-0"], gate)

    def deploy(held, db_ready):
        seen["holder"] = json.loads((anchor.shared / "deploy.lock" / "info").read_text())["action"]
        seen["configured"] = sorted(name for name, h in hosts.items() if h.calls)
        seen["held"] = held
        gate.set()
        seen["before"] = list(after)
        db_ready()
        seen["after"] = list(after)
        return "site"

    assert build(deploy) == "site"
    assert seen["configured"] == ["t-app-0", "t-proxy-0", "t-worker-0"]    # the db's facts still unanswered
    assert seen["holder"] == "whip-up" and seen["held"] is not None
    assert seen["before"] == [] and seen["after"] == ["nightly", "smtp"]   # its nightly job once it is configured
    assert not (anchor.shared / "deploy.lock").exists()                    # released at the end


def test_a_configure_that_changed_something_audits_under_the_pipelines_lock_and_leaves_it_held(whip, anchor):
    hosts, after, lines, build = whip
    up_to_date(whip.cfg, hosts, changed="t-proxy-0")
    seen = {}

    def deploy(held, db_ready):
        db_ready()
        seen["held"] = (anchor.shared / "deploy.lock").exists()
        seen["audit"] = [(r.action, r.result) for r in audit_lines(anchor.shared / "deploys.log")]

    build(deploy)
    assert seen == {"held": True, "audit": [("configure", "ok")]}
    assert not (anchor.shared / "deploy.lock").exists()


def test_a_db_node_that_fails_to_configure_fails_the_deploy_where_it_waits_and_frees_the_lock(whip, anchor):
    hosts, after, lines, build = whip
    up_to_date(whip.cfg, hosts, changed="t-db-0")   # a file to write
    hosts["t-db-0"].fail_on = "base64 -d | tar"
    reached = []

    def deploy(held, db_ready):
        reached.append("code and venv")
        db_ready()
        reached.append("migrate")

    with pytest.raises(HostFailures) as info:
        build(deploy)
    assert "t-db-0" in str(info.value) and "disk is full" in str(info.value)
    assert reached == ["code and venv"] and after == []
    assert not [line for line in lines if line.startswith("also:")]       # said once, by the deploy
    assert not (anchor.shared / "deploy.lock").exists()


def test_a_failure_ahead_waits_for_the_db_nodes_configure_before_the_lock_goes(whip, anchor):
    hosts, after, lines, build = whip
    gate = threading.Event()
    hold_facts(hosts["t-db-0"], gate)
    hosts["t-proxy-0"].fail_on = MAGIC                       # the proxy's facts command fails
    threading.Timer(0.3, gate.set).start()                   # the db answers a moment later
    deployed = []
    with pytest.raises(HostFailures) as info:
        build(lambda held, db_ready: deployed.append(1))
    assert "t-proxy-0" in str(info.value) and deployed == []
    assert after == ["nightly", "smtp"]                      # the db side ended before the lock was released
    assert not (anchor.shared / "deploy.lock").exists()


# --- a secret asked for by both sides at once ----------------------------------------------------------

def test_a_secret_asked_for_by_several_threads_at_once_is_made_once(shipped):
    values, start = [], threading.Barrier(8)

    def ask():
        start.wait()
        values.append(secret(shipped, "db_password"))
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(values)) == 1 and len(values) == 8
    path = next(p for p in (shipped.cluster.state_dir).rglob("db_password"))
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text().strip() == values[0]
    assert [p.name for p in path.parent.iterdir()] == ["db_password"]          # no temp file left
