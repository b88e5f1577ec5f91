"""A rebuilt node catches up (deploy/catchup.py), over scripted fake hosts: it gets the release its peers
serve, booted in its slot and put in the proxies' upstream; nothing else changes on the other nodes."""
from __future__ import annotations

import pytest
from deploy_fakes import make_cluster
from deploy_scenarios import APP, DEPLOYED, PROXY, R1, R2, REQS, WORKER, audit, gitcfg, reached, world

from fabfile.deploy import catchup
from fabfile.deploy.cluster import gather
from fabfile.deploy.errors import DeployError
from fabfile.deploy.source import Source
from fabfile.layout import SLOTS

__all__ = ["gitcfg", "world"]        # fixtures

SOURCE_R2 = Source("git", "2" * 40, "", REQS, None, "main")


def lost(host) -> None:
    """`host` launched again: configured, nothing deployed."""
    host.releases, host.current, host.live, host.celery = {}, None, None, None
    for s in SLOTS:
        host.slots[s].release, host.slots[s].running = None, False


@pytest.fixture
def rebuilt_app(gitcfg, world):
    """The app node was lost and launched again; the proxy and the worker still run R2."""
    cl, hosts, out = make_cluster(gitcfg, world, DEPLOYED, R2)
    lost(hosts["app"])
    return cl, hosts, out


def test_targets_are_the_nodes_without_a_release_and_their_peers_release(rebuilt_app):
    cl, hosts, out = rebuilt_app
    states = gather(cl, cl.proxies + cl.apps + cl.workers)
    assert catchup.targets(cl, states) == {APP: R2}             # no app peer: the proxies' release
    lost(hosts["proxy"])                  # neither the web tier's: a worker's is no reference (fab deploy, then)
    assert catchup.targets(cl, gather(cl, cl.proxies + cl.apps + cl.workers)) == {}


def test_nothing_to_catch_up_on_a_first_deploy_or_a_whole_cluster(gitcfg, world):
    cl, hosts, out = make_cluster(gitcfg, world, {}, None)
    assert catchup.targets(cl, gather(cl, cl.proxies + cl.apps + cl.workers)) == {}
    cl, hosts, out = make_cluster(gitcfg, world, DEPLOYED, R2)
    assert catchup.targets(cl, gather(cl, cl.proxies + cl.apps + cl.workers)) == {}


def test_the_commit_of_a_release_is_what_a_peer_says(rebuilt_app):
    cl, hosts, out = rebuilt_app
    states = gather(cl, cl.proxies + cl.apps + cl.workers)
    assert catchup.commit_of(states, R2) == "2" * 40
    with pytest.raises(DeployError, match=r"release 20990101000000-9999999: no node says which commit it is"):
        catchup.commit_of(states, "20990101000000-9999999")


def test_a_rebuilt_app_node_gets_its_peers_release_booted_and_put_in_the_upstream(rebuilt_app, world):
    cl, hosts, out = rebuilt_app
    world.head = "4" * 40                             # the branch moved on: the node still gets R2's commit
    states = gather(cl, cl.proxies + cl.apps + cl.workers)
    world.log.clear()
    catchup.rebuild(cl, states, catchup.targets(cl, states), SOURCE_R2)
    app = hosts["app"]
    assert app.current == R2 and app.releases[R2].sha == "2" * 40 and app.live == "a"
    assert app.slots["a"].release == R2 and app.slots["a"].running
    stages = world.stages(APP)
    assert stages[0] == "lock" and stages[-2:] == ["audit", "unlock"]
    assert {"fetch", "extract", "pip install", "boot", "switch", "go live"} <= set(stages)
    for never in ("migrate", "collectstatic", "drain"):       # the database already serves R2; the proxy has its static
        assert never not in stages, never
    assert world.stages(PROXY) == ["probe", "upstream", "probe"]        # reached, the upstream, the gate
    assert world.stages(WORKER) == []                                    # nothing else changes
    assert reached(world, hosts) == [(APP, "a", R2)]
    assert hosts["proxy"].current == hosts["worker"].current == R2 and hosts["worker"].serving == R2
    (record,) = audit(hosts)
    assert (record.action, record.result, record.to_release, record.detail) == ("rebuild", "ok", R2, APP)
    assert out[-1].startswith(f"rebuilt {APP} on {R2} in ")


def test_a_rebuild_whose_boot_fails_is_audited_and_leaves_the_upstream(rebuilt_app, world):
    cl, hosts, out = rebuilt_app
    upstream = hosts["proxy"].upstream
    hosts["app"].fail("boot", release=R2)
    states = gather(cl, cl.proxies + cl.apps + cl.workers)
    with pytest.raises(Exception, match="the previous release keeps serving"):
        catchup.rebuild(cl, states, catchup.targets(cl, states), SOURCE_R2)
    assert hosts["proxy"].upstream == upstream and "upstream" not in world.stages()
    (record,) = audit(hosts)
    assert record.result == "failed" and "answered 500" in record.detail


def test_nodes_to_rebuild_on_different_releases_are_refused(rebuilt_app):
    cl, hosts, out = rebuilt_app
    states = gather(cl, cl.proxies + cl.apps + cl.workers)
    with pytest.raises(DeployError, match=r"different releases \(20240101000000-1111111, 20240201000000-2222222\)"):
        catchup.rebuild(cl, states, {APP: R2, WORKER: R1}, SOURCE_R2)


def test_a_rebuilt_proxy_gets_the_static_files_and_the_upstream_only(gitcfg, world):
    cl, hosts, out = make_cluster(gitcfg, world, DEPLOYED, R2)
    lost(hosts["proxy"])
    hosts["proxy"].upstream = ""
    states = gather(cl, cl.proxies + cl.apps + cl.workers)
    world.log.clear()
    catchup.rebuild(cl, states, catchup.targets(cl, states), SOURCE_R2)
    assert world.stages(PROXY) == ["static prepare", "static unpack", "switch", "upstream"]   # a new proxy: all files
    assert world.stages(APP) == ["lock", "static sums", "static pack", "audit", "unlock"] and world.stages(WORKER) == []
    assert hosts["proxy"].current == R2 and reached(world, hosts) == [(APP, "a", R2)]
