"""The node inventory a rollback starts from, the cloud lookup that runs alongside, and the restart from
the cloud's list when the two differ."""
from __future__ import annotations

import os
import threading
from dataclasses import replace

import pytest
from botocore.exceptions import ClientError

from fabfile import inventory
from fabfile.cloud import CloudError
from fabfile.config import with_target
from fabfile.deploy import tasks as deploy_tasks
from fabfile.deploy.cluster import Cluster
from fabfile.deploy.errors import NodesChanged
from fabfile.inventory import Lookup
from fabfile.layout import Layout
from fabfile.nodes import Node
from fabfile.remote import HostFailures, HostOutcome, Progress

APP = Node("app", 0, "whipup-demo-app-0", "i-0a", "running", "172.31.0.5", None, "sg-1")
PROXY = Node("proxy", 0, "whipup-demo-proxy-0", "i-0p", "running", "172.31.0.4", "203.0.113.7", "sg-2")


def test_saved_nodes_load_back_for_the_same_target_and_region_only(cfg):
    assert inventory.load(cfg) is None
    inventory.save(cfg, [APP, PROXY])
    assert inventory.load(cfg) == [APP, PROXY]
    assert oct(inventory.path(cfg).stat().st_mode & 0o777) == "0o644"     # addresses, no secret
    assert inventory.load(with_target(cfg, "aws")) is None               # another cloud's list is not ours
    inventory.path(cfg).write_text("{not json")
    assert inventory.load(cfg) is None


def test_same_means_the_same_instances_states_and_addresses():
    assert inventory.same([APP, PROXY], [PROXY, APP])
    assert not inventory.same([APP, PROXY], [APP])
    assert not inventory.same([APP], [replace(APP, private_ip="172.31.0.9")])
    assert not inventory.same([APP], [replace(APP, state="stopped")])
    assert not inventory.same([APP], [replace(APP, instance_id="i-0b")])


def test_lookup_runs_in_a_child_process_when_there_is_no_other_thread():
    if threading.active_count() != 1:
        pytest.skip("another thread runs in this test process")
    lookup = Lookup(lambda: [os.getpid(), APP])
    child_pid, node = lookup.result()
    assert child_pid != os.getpid() and node == APP


def test_lookup_uses_a_thread_when_threads_already_run():
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert Lookup(lambda: os.getpid()).result() == os.getpid()
    finally:
        stop.set()
        other.join()


def test_lookup_hands_back_the_cloud_error():
    error = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "DescribeInstances")
    lookup = Lookup(lambda: (_ for _ in ()).throw(error))
    with pytest.raises(ClientError, match="UnauthorizedOperation"):
        lookup.result()


def test_an_error_that_cannot_travel_back_becomes_a_cloud_error():
    class Odd(Exception):
        def __reduce__(self):
            raise TypeError("not picklable")

    if threading.active_count() != 1:
        pytest.skip("another thread runs in this test process")

    def fail():
        raise Odd("kaput")

    with pytest.raises(CloudError, match="Odd: kaput"):
        Lookup(fail).result()


def _cluster(cfg, seen, fresh) -> Cluster:
    lookup = Lookup(lambda: fresh)
    return Cluster(cfg, Layout.of(cfg), [], [], [], None, None, Progress(), print, lookup, seen)


def test_confirm_passes_when_the_cloud_agrees_and_saves_its_list(cfg):
    cl = _cluster(cfg, [APP, PROXY], [PROXY, APP])
    cl.confirm()
    assert inventory.load(cfg) == [PROXY, APP]
    cl.confirm()                                      # once confirmed, a no-op


def test_confirm_refuses_a_list_that_the_cloud_no_longer_has(cfg):
    moved = replace(APP, private_ip="172.31.0.77")
    cl = _cluster(cfg, [APP, PROXY], [moved, PROXY])
    with pytest.raises(NodesChanged, match="nodes changed since .*nodes.json"):
        cl.confirm()
    assert inventory.load(cfg) == [moved, PROXY]      # the next run starts from the cloud's list


class _Opened:
    def __init__(self, seen):
        self.seen = seen
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def opens(monkeypatch, cfg):
    """open_cluster recorded: each call's `seen`; the cloud lists `cloud["nodes"]`."""
    cloud = {"nodes": [APP, PROXY]}
    calls: list = []

    def open_cluster(cfg_, ec2, *, roles, seen=None, lookup=None):
        calls.append(seen)
        if seen is not None and cloud.get("unreachable"):
            raise HostFailures("SSH connect", [HostOutcome(APP, False, None, OSError("no route"))])
        return _Opened(seen)

    monkeypatch.setattr(deploy_tasks, "open_cluster", open_cluster)
    monkeypatch.setattr(deploy_tasks, "find_nodes", lambda ec2, name: cloud["nodes"])
    monkeypatch.setattr(deploy_tasks, "_ec2", lambda cfg_: object())
    return cloud, calls


def test_without_an_inventory_the_cluster_comes_from_the_cloud(cfg, opens):
    cloud, calls = opens
    assert deploy_tasks._on_cluster(cfg, ("app",), lambda cl: "done") == "done"
    assert calls == [None]


def test_a_changed_cluster_starts_again_from_the_clouds_list(cfg, opens, capsys):
    cloud, calls = opens
    inventory.save(cfg, [APP, PROXY])
    attempts = []

    def work(cl):
        attempts.append(cl)
        if cl.seen is not None:
            raise NodesChanged("the cluster's nodes changed since nodes.json was written")
        return "done"

    assert deploy_tasks._on_cluster(cfg, ("app",), work) == "done"
    assert calls == [[APP, PROXY], None]
    assert all(cl.closed for cl in attempts)
    assert "starting again from the cloud's list" in capsys.readouterr().out


def test_an_unreachable_listed_node_is_looked_up_again(cfg, opens, capsys):
    cloud, calls = opens
    inventory.save(cfg, [APP, PROXY])
    cloud["unreachable"] = True
    cloud["nodes"] = [replace(APP, private_ip="172.31.0.99"), PROXY]
    assert deploy_tasks._on_cluster(cfg, ("app",), lambda cl: "done") == "done"
    assert calls == [[APP, PROXY], None]
    assert "asking the cloud" in capsys.readouterr().out


def test_an_unreachable_node_the_cloud_still_lists_is_the_error(cfg, opens):
    cloud, calls = opens
    inventory.save(cfg, [APP, PROXY])
    cloud["unreachable"] = True
    with pytest.raises(HostFailures):
        deploy_tasks._on_cluster(cfg, ("app",), lambda cl: "done")
    assert calls == [[APP, PROXY]]


def test_a_stopped_node_in_the_inventory_means_asking_the_cloud_first(cfg, opens):
    cloud, calls = opens
    inventory.save(cfg, [replace(APP, state="stopped"), PROXY])
    deploy_tasks._on_cluster(cfg, ("app",), lambda cl: "done")
    assert calls == [None]
