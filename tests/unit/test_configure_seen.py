"""The no-op floor (issue 16): configure from the saved node list with the cloud asked alongside
(configure/seen.py), and only the named tasks' modules imported (fabfile/__init__.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

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
    assert seen_mod.configure_seen(cfg, cloud.connect, Recorder(), role=None, also=also) == "done"
    assert also.answer.startswith("bucket of ") and also.answer != f"bucket of {os.getpid()}"   # the child's
    failing = seen_mod.Alongside(lambda: 1 / 0)
    seen_mod.configure_seen(cfg, cloud.connect, Recorder(), role=None, also=failing)
    assert failing.answer is None                   # the caller asks the cloud itself, as before
    unasked = seen_mod.Alongside(lambda: "bucket")
    seen_mod.configure_seen(cfg, cloud.connect, Recorder(), role="db", also=unasked)   # no db node listed
    assert unasked.answer is None
