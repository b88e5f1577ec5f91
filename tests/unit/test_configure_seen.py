"""The no-op floor (issue 16): configure from the saved node list with the cloud asked alongside
(configure/seen.py), and only the named tasks' modules imported (fabfile/__init__.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

import fabfile
from fabfile import inventory
from fabfile.configure import seen as seen_mod
from fabfile.deploy.errors import NodesChanged
from fabfile.nodes import Node

APP = Node("app", 0, "c-app-0", "i-a0", "running", "10.0.0.10", None, None)
PROXY = Node("proxy", 0, "c-proxy-0", "i-p0", "running", "10.0.0.5", None, None)
NEW_APP = Node("app", 0, "c-app-0", "i-a9", "running", "10.0.0.11", None, None)


class Recorder:
    """A configure_cluster stand-in: records each call; calls `confirm` as a change would."""

    def __init__(self, change: bool = True):
        self.calls, self.change = [], change

    def __call__(self, cfg, ec2, nodes=None, confirm=None, connect=None, **kw):
        self.calls.append((ec2, nodes, kw))
        if confirm is not None and self.change:
            confirm()
        return "done"


@pytest.fixture
def cloud(monkeypatch):
    """What the cloud lists (set .nodes); the ec2 `connect` returns, counting."""
    class Cloud:
        nodes = [APP, PROXY]
        connects = 0

        def connect(self):
            Cloud.connects += 1
            return "ec2"

    c = Cloud()
    monkeypatch.setattr(seen_mod, "find_nodes", lambda ec2, name: list(c.nodes))
    return c


def test_a_saved_list_the_cloud_agrees_with_is_used_and_kept(cfg, cloud):
    inventory.save(cfg, [APP, PROXY])
    run = Recorder()
    assert seen_mod.configure_seen(cfg, cloud.connect, run, role=None, dry_run=False) == "done"
    assert len(run.calls) == 1 and run.calls[0][0] is None and run.calls[0][1] == [APP, PROXY]
    assert inventory.load(cfg) == [APP, PROXY]


def test_nodes_changed_since_the_list_was_saved_start_again_from_the_cloud(cfg, cloud, capsys):
    inventory.save(cfg, [APP, PROXY])
    cloud.nodes = [NEW_APP, PROXY]                        # app-0 was replaced meanwhile
    run = Recorder()
    seen_mod.configure_seen(cfg, cloud.connect, run, role=None)
    assert [c[:2] for c in run.calls] == [(None, [APP, PROXY]), ("ec2", None)]
    assert "changed since" in capsys.readouterr().out and inventory.load(cfg) == [NEW_APP, PROXY]


def test_no_list_or_a_node_not_running_asks_the_cloud_first(cfg, cloud):
    run = Recorder()
    seen_mod.configure_seen(cfg, cloud.connect, run, role=None)
    assert run.calls == [("ec2", None, {"role": None})]
    inventory.save(cfg, [APP, Node("proxy", 0, "c-proxy-0", "i-p0", "stopped", None, None, None)])
    seen_mod.configure_seen(cfg, cloud.connect, run, role=None)
    assert run.calls[-1][:2] == ("ec2", None)
    inventory.save(cfg, [APP, PROXY])
    seen_mod.configure_seen(cfg, cloud.connect, run, role="db")       # no db node listed
    assert run.calls[-1][:2] == ("ec2", None)


def test_confirm_asks_the_cloud_once_and_keeps_refusing_a_changed_list(cfg):
    answers = []

    class Lookup:
        def result(self):
            answers.append(1)
            return [NEW_APP]

    confirm = seen_mod.Confirm(cfg, [APP], Lookup())
    for _ in range(2):
        with pytest.raises(NodesChanged):
            confirm()
    assert answers == [1]


def test_only_the_named_tasks_modules_are_imported():
    assert fabfile.requested(["fab", "configure", "--role", "app"]) == ["configure"]
    assert fabfile.requested(["fab", "sandbox.up"]) == ["sandbox"]
    assert fabfile.requested(["fab", "env.set", "A=1", "deploy"]) == ["deploy", "env"]
    assert fabfile.requested(["fab", "-l"]) is None and fabfile.requested(["fab", "configur"]) is None
    assert fabfile.requested(["/x/fabric/__main__.py", "deploy"]) == ["deploy"]
    assert fabfile.requested(["/x/pytest", "-k", "deploy"]) is None          # not fab: every task
    probe = ("import json, sys; sys.argv = ['/usr/bin/fab', 'configure', '--dry-run']; import fabfile; "
             "print(json.dumps([sorted(fabfile.ns.task_names), sorted(m for m in sys.modules if m.startswith("
             "('boto3', 'jinja2', 'fabfile.deploy.engine', 'fabfile.sandbox.control', 'fabfile.provision.converge',"
             " 'fabfile.project.detect')))]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    tasks, heavy = json.loads(out.stdout)
    assert tasks == ["configure"] and heavy == []
    every = subprocess.run([sys.executable, "-c", probe.replace("'configure', '--dry-run'", "'-l'")],
                           capture_output=True, text=True, timeout=120, check=True)
    assert {"configure", "deploy", "sandbox.up", "env.set"} <= set(json.loads(every.stdout)[0])


def test_a_question_asked_alongside_is_answered_by_the_forked_lookup(cfg, cloud):
    inventory.save(cfg, [APP, PROXY])
    also = seen_mod.Alongside(lambda: f"bucket of {os.getpid()}")
    forks = threading.active_count() == 1          # another test's thread left running: the lookup's own thread
    assert seen_mod.configure_seen(cfg, cloud.connect, Recorder(), role=None, also=also) == "done"
    assert also.answer.startswith("bucket of ")
    assert (also.answer != f"bucket of {os.getpid()}") == forks                 # the child's, when it forked
    failing = seen_mod.Alongside(lambda: 1 / 0)
    seen_mod.configure_seen(cfg, cloud.connect, Recorder(), role=None, also=failing)
    assert failing.answer is None                   # the caller asks the cloud itself, as before
    unasked = seen_mod.Alongside(lambda: "bucket")
    seen_mod.configure_seen(cfg, cloud.connect, Recorder(), role="db", also=unasked)   # no db node listed
    assert unasked.answer is None


def counting(monkeypatch, nodes):
    """find_nodes counting its calls (each is a DescribeInstances)."""
    calls = []
    monkeypatch.setattr(seen_mod, "find_nodes", lambda ec2, name: calls.append(ec2) or list(nodes))
    return calls


def test_a_list_the_cloud_confirmed_a_moment_ago_is_trusted_and_a_no_op_asks_nothing(cfg, monkeypatch):
    inventory.save(cfg, [APP, PROXY])
    inventory.remember(cfg, "backups-bucket", "b-1")
    asked = counting(monkeypatch, [APP, PROXY])
    also = seen_mod.Alongside(lambda: 1 / 0, key="backups-bucket")     # never asked: no child, no cloud
    assert seen_mod.configure_seen(cfg, lambda: "ec2", Recorder(change=False), role=None, also=also) == "done"
    assert asked == [] and also.answer == "b-1"
    seen_mod.configure_seen(cfg, lambda: "ec2", Recorder(change=True), role=None)   # a change: asked first
    assert asked == ["ec2"]


def test_the_trust_ends_with_its_time_or_with_ttl_zero(cfg, monkeypatch):
    inventory.save(cfg, [APP, PROXY])
    assert inventory.fresh(cfg, 60) and not inventory.fresh(cfg, 60, now=inventory.path(cfg).stat().st_mtime + 61)
    monkeypatch.setenv("WHIPUP_NODES_TTL", "0")
    also = seen_mod.Alongside(lambda: "b-2", key="backups-bucket")
    monkeypatch.setattr(seen_mod, "find_nodes", lambda ec2, name: [APP, PROXY])
    seen_mod.configure_seen(cfg, lambda: "ec2", Recorder(change=False), role=None, also=also)
    assert also.answer == "b-2"                                         # the forked lookup asked it
    monkeypatch.setenv("WHIPUP_NODES_TTL", "60")
    assert inventory.recall(cfg, "backups-bucket", 60) == "b-2"         # and it is remembered
    assert inventory.recall(cfg, "backups-bucket", 60, now=10 ** 10) is None


@pytest.mark.parametrize("raw", ["soon", "-1", "100000"])
def test_a_bad_ttl_names_the_variable(monkeypatch, raw):
    from fabfile.config import ConfigError

    monkeypatch.setenv("WHIPUP_NODES_TTL", raw)
    with pytest.raises(ConfigError, match=f"WHIPUP_NODES_TTL: expected seconds from 0 to 86400, got '{raw}'"):
        inventory.trust_seconds()


class Failing:
    """configure_cluster's stand-in that fails on its first call, as an unreachable node does."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, ec2, nodes=None, confirm=None, connect=None, **kw):
        from fabfile.remote import HostFailures

        self.calls.append((ec2, nodes))
        if len(self.calls) == 1:
            raise HostFailures("configure", [])
        return "done"


def test_a_host_failing_on_a_trusted_list_asks_the_cloud(cfg, monkeypatch, capsys):
    from fabfile.remote import HostFailures

    inventory.save(cfg, [APP, PROXY])
    asked = counting(monkeypatch, [NEW_APP, PROXY])                      # app-0 was replaced outside whipup
    run = Failing()
    assert seen_mod.configure_seen(cfg, lambda: "ec2", run, role=None) == "done"
    assert run.calls == [(None, [APP, PROXY]), ("ec2", [NEW_APP, PROXY])] and asked == ["ec2"]
    assert "changed since" in capsys.readouterr().out and inventory.load(cfg) == [NEW_APP, PROXY]
    counting(monkeypatch, [NEW_APP, PROXY])                              # the same nodes: the failure stands
    with pytest.raises(HostFailures):
        seen_mod.configure_seen(cfg, lambda: "ec2", Failing(), role=None)


def test_trusted_confirm_skips_only_a_settled_end(cfg, monkeypatch):
    asked = counting(monkeypatch, [NEW_APP])
    trusted = seen_mod.Trusted(cfg, [APP], lambda: "ec2")
    trusted(settled=True)                      # nothing changed, nothing failed: the cloud is not asked
    assert asked == []
    with pytest.raises(NodesChanged):
        trusted()                              # before a change: asked
    with pytest.raises(NodesChanged):
        trusted(settled=True)                  # and the end keeps its answer
    assert asked == ["ec2"]
