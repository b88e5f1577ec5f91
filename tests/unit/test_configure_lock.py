"""configure under the cluster's deploy lock: refused (naming the holder) or waiting (--wait) while a deploy
holds it, taken late on a first configure, audited like a deploy. The lock's commands run for real on this
machine, on a layout under a temp dir (local_host.LocalHost); the other hosts are FakeHosts."""
from __future__ import annotations

import json
import shlex
import socket
import time
from types import SimpleNamespace

import pytest
from invoke import Context, Exit

from fabfile.configure import lock as configure_lock
from fabfile.configure import tasks as configure_tasks
from fabfile.configure.facts import MAGIC
from fabfile.configure.lock import anchor_of, audit_detail, current_release, lock_place
from fabfile.configure.report import HostResult
from fabfile.deploy import guard
from fabfile.deploy.cluster import Cluster, Member
from fabfile.deploy.errors import LockHeld
from fabfile.deploy.lock import LockInfo, format_lock, parse_audit
from fabfile.layout import Layout
from fabfile.nodes import Node
from fabfile.remote import HostFailures, Progress
from fabfile.state import cluster_dir
import test_configure_run as run_tests
from test_configure_run import NODES, FakeHost, Result, facts_text, wants

shipped, anchor, cluster = run_tests.shipped, run_tests.anchor, run_tests.cluster   # their fixtures, used here

EVIL = "x; whoami"
THEIRS = LockInfo("ana@laptop", "2024-01-31T12:00:00Z", "20240131120000-1a2b3c4", "deploy", "ab" * 8,
                  "laptop", 4242, "x:1")


def node(role, index, state="running"):
    return Node(role, index, f"t-{role}-{index}", f"i-{role}{index}", state, "10.0.0.9", None, None)


def hold(anchor_host, info: LockInfo = THEIRS) -> None:
    """A lock as a deploy leaves it: the directory, with its holder's info."""
    (anchor_host.shared / "deploy.lock").mkdir()
    (anchor_host.shared / "deploy.lock" / "info").write_text(format_lock(info))


def up_to_date(shipped, hosts, changed: str | None = None, **answers):
    """Every host as configured; `changed`: that host's managed file differs (a write, then its handler)."""
    from fabfile.vault import secret

    password = secret(shipped, "db_password")
    for n in NODES:
        want = wants(shipped)[n.name]
        text = facts_text(want, password=password)
        if n.name == changed:
            text = text.replace(want.files[0].sha256, "f" * 64)
        hosts[n.name] = FakeHost(n, [text], answers=answers if n.name == changed else None)


def audit_lines(path):
    return parse_audit(path.read_text()) if path.exists() else []


# --- pure ------------------------------------------------------------------------------------------

def test_the_anchor_is_deploys_app_node_0_else_worker_node_0():
    assert anchor_of(NODES).name == "t-app-0"
    assert anchor_of([node("worker", 0), node("proxy", 0)]).name == "t-worker-0"
    assert anchor_of([node("proxy", 0), node("db", 0)]) is None


def test_the_place_of_the_lock_and_the_current_release_are_read_as_root_with_quoted_paths():
    layout = Layout("demo", "demo.settings", "requirements.txt")
    assert lock_place(layout) == "sudo -n -- sh -c 'if [ -d /srv/demo/shared ]; then echo ready; else echo absent; fi'"
    assert current_release(layout) == "sudo -n -- sh -c 'readlink /srv/demo/current || true'"
    evil = Layout("demo", "d.settings", "r.txt", base=f"/srv/{EVIL}")
    assert shlex.split(shlex.split(lock_place(evil))[-1])[:5] == ["if", "[", "-d", f"/srv/{EVIL}/demo/shared", "];"]
    assert shlex.split(shlex.split(current_release(evil))[-1])[:2] == ["readlink", f"/srv/{EVIL}/demo/current"]


def test_the_audit_detail_says_what_changed_or_failed():
    ok = HostResult("p", "proxy", changed=2, services=["reload nginx"])
    idle = HostResult("a", "app")
    bad = HostResult("d", "db", stage="files", error="postgresql rejected the new configuration: x\nmore")
    assert audit_detail([ok, idle]) == "changed 2 on 1 of 2 host(s) (p: reload nginx)"
    assert audit_detail([ok, idle, bad]) == ("changed 2 on 1 of 3 host(s) (p: reload nginx); d failed at files: "
                                             "postgresql rejected the new configuration: x")


# --- refused, waited for, audited --------------------------------------------------------------------

def test_a_deploy_holding_the_lock_refuses_configure_naming_it_and_no_host_is_touched(shipped, cluster, anchor):
    hosts, go = cluster
    up_to_date(shipped, hosts)
    hold(anchor)
    with pytest.raises(LockHeld) as info:
        go()
    assert str(info.value).startswith("deploy lock on t-app-0:")
    assert "is held by ana@laptop since 2024-01-31T12:00:00Z" in str(info.value)
    assert ", deploy of release 20240131120000-1a2b3c4" in str(info.value) and "--break-lock" in str(info.value)
    assert str(info.value).endswith("\n(fab configure --wait waits for it)")
    assert all(h.calls == [] for h in hosts.values())
    assert json.loads((anchor.shared / "deploy.lock" / "info").read_text())["who"] == "ana@laptop"   # theirs still


def test_configure_takes_the_lock_for_its_run_and_audits_it_like_a_deploy(shipped, cluster, anchor, monkeypatch):
    hosts, go = cluster
    (anchor.shared.parent / "current").symlink_to("releases/20240131120000-1a2b3c4")
    seen = {}

    def services(command):   # while configure reloads supervisor, a deploy is refused, naming configure
        seen["lock"] = json.loads((anchor.shared / "deploy.lock" / "info").read_text())
        with pytest.raises(LockHeld) as info:
            guard.acquire(_deploy_cluster(shipped, anchor), "20240131130000-2b3c4d5", "deploy")
        seen["deploy"] = str(info.value)
        return Result(0)

    up_to_date(shipped, hosts, changed="t-app-0", **{"supervisorctl reread": services})
    go()
    assert seen["lock"]["action"] == "configure" and seen["lock"]["host"] == socket.gethostname()
    assert ", configure" in seen["deploy"] and "is held by " in seen["deploy"]
    assert not (anchor.shared / "deploy.lock").exists()                              # released
    (remote,) = audit_lines(anchor.shared / "deploys.log")
    assert (remote.action, remote.result, remote.component, remote.from_release, remote.to_release) == (
        "configure", "ok", "all", "20240131120000-1a2b3c4", "20240131120000-1a2b3c4")
    assert remote.detail == "changed 2 on 1 of 4 host(s) (t-app-0: reload supervisor)"
    assert audit_lines(cluster_dir(shipped) / "deploys.log") == [remote]
    # what whip-up-full-system does next: a deploy takes the lock configure released
    g = guard.acquire(_deploy_cluster(shipped, anchor), "20240131130000-2b3c4d5", "deploy")
    g.release()


def _deploy_cluster(cfg, anchor_host) -> Cluster:
    layout = configure_lock.Layout.of(cfg)
    return Cluster(cfg, layout, [], [Member(NODES[1], anchor_host)], [], None, None, Progress(quiet=True),
                   lambda line: None)


def test_wait_polls_until_the_deploy_is_done_naming_each_holder(shipped, cluster, anchor, monkeypatch):
    hosts, go = cluster
    up_to_date(shipped, hosts, changed="t-app-0")
    hold(anchor)
    other = LockInfo("bo@ci", "2024-01-31T12:05:00Z", "20240131120500-9f8e7d6", "quick-update", "cd" * 8)
    naps = []

    current = anchor.shared.parent / "current"
    current.symlink_to("releases/20240131120000-1a2b3c4")

    def sleep(seconds):          # the deploy ends; another takes the lock; that one ends too, each switching
        naps.append(seconds)
        lock = anchor.shared / "deploy.lock"
        (lock / "info").unlink()
        lock.rmdir()
        current.unlink()
        current.symlink_to(f"releases/{(THEIRS if len(naps) == 1 else other).release}")
        if len(naps) == 1:
            hold(anchor, other)
    monkeypatch.setattr(configure_lock, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    results, out = go(wait=600.0)
    assert naps == [configure_lock.POLL, configure_lock.POLL]
    waits = [line for line in out.splitlines() if line.startswith("waiting for the deploy lock")]
    assert waits == [
        "waiting for the deploy lock on t-app-0: held by ana@laptop since 2024-01-31T12:00:00Z "
        f"({waits[0].split('(')[1].split(')')[0]}), deploy of release 20240131120000-1a2b3c4",
        "waiting for the deploy lock on t-app-0: held by bo@ci since 2024-01-31T12:05:00Z "
        f"({waits[1].split('(')[1].split(')')[0]}), quick-update of release 20240131120500-9f8e7d6"]
    assert [r.error for r in results] == [None] * 4
    (rec,) = audit_lines(anchor.shared / "deploys.log")
    assert (rec.action, rec.from_release) == ("configure", "20240131120500-9f8e7d6")   # what the deploys left


def test_wait_gives_up_after_its_timeout_naming_the_holder(shipped, cluster, anchor, monkeypatch):
    hosts, go = cluster
    up_to_date(shipped, hosts)
    hold(anchor)
    now = [1000.0]
    monkeypatch.setattr(configure_lock, "time", SimpleNamespace(monotonic=lambda: now[0],
                                                              sleep=lambda s: now.__setitem__(0, now[0] + s)))
    with pytest.raises(LockHeld) as info:
        go(wait=5.0)
    assert "is held by ana@laptop" in str(info.value)
    assert str(info.value).endswith("(still held after waiting 5 s: --wait-timeout)")
    assert now[0] == 1005.0 and all(h.calls == [] for h in hosts.values())


def test_break_lock_takes_over_an_interrupted_runs_lock_with_its_audit_line(shipped, cluster, anchor):
    hosts, go = cluster
    up_to_date(shipped, hosts, changed="t-app-0")
    hold(anchor)
    _, out = go(break_lock=True)
    assert "deploy lock taken over from ana@laptop (deploy of 20240131120000-1a2b3c4" in out
    assert [(r.who, r.action, r.result) for r in audit_lines(anchor.shared / "deploys.log")] == [
        ("ana@laptop", "deploy", "interrupted"), (configure_lock.whoami(), "configure", "ok")]


def test_a_run_that_changes_nothing_writes_no_audit_line_and_frees_the_lock(shipped, cluster, anchor):
    hosts, go = cluster
    up_to_date(shipped, hosts)
    _, out = go()
    assert "already ok" in out and not (anchor.shared / "deploy.lock").exists()
    # taken at once, then released: two commands on the anchor, no look for its place first
    taken, released = (c for c, _ in anchor.calls)
    assert "deploy.lock.new." in taken and "rm -rf /" in released and "deploy.lock" in released
    assert audit_lines(anchor.shared / "deploys.log") == audit_lines(cluster_dir(shipped) / "deploys.log") == []


def test_a_dry_run_takes_no_lock_and_says_who_holds_it(shipped, cluster, anchor):
    hosts, go = cluster
    up_to_date(shipped, hosts)
    hold(anchor)
    _, out = go(dry_run=True)
    assert "deploy lock on t-app-0:" in out and "is held by ana@laptop" in out
    assert json.loads((anchor.shared / "deploy.lock" / "info").read_text())["who"] == "ana@laptop"
    assert audit_lines(anchor.shared / "deploys.log") == []


def test_a_failed_run_is_audited_as_failed_and_releases_the_lock(shipped, cluster, anchor):
    hosts, go = cluster
    up_to_date(shipped, hosts, changed="t-app-0", **{"supervisorctl reread": Result(1, "", "E: no\n")})
    with pytest.raises(HostFailures):
        go()
    (rec,) = audit_lines(anchor.shared / "deploys.log")
    assert rec.result == "failed" and "t-app-0 failed at services: " in rec.detail
    assert not (anchor.shared / "deploy.lock").exists()


# --- the first configure: nothing to lock on until the anchor's files stage made it ------------------

def fresh_but_installed(shipped, name):
    """A host with its packages in but nothing of configure's yet (no user, dirs, files; services stopped)."""
    want = wants(shipped)[name]
    text = facts_text(want, ok=False).replace("apt_lists 0", "apt_lists 3").replace(
        "@@packages\nii \tapt", "@@packages\nii \tapt\n" + "\n".join(f"ii \t{p}" for p in want.packages))
    return text


def test_a_first_configure_takes_the_lock_once_the_anchors_files_made_its_directory(shipped, cluster, anchor):
    hosts, go = cluster
    anchor.shared.rmdir()
    held_during_services = []

    def files(command):          # the files stage makes /srv/<app>/shared (install -d ... shared)
        assert "/srv/demo/shared" in command
        anchor.shared.mkdir()
        return Result(0)

    def services(command):
        held_during_services.append((anchor.shared / "deploy.lock" / "info").exists())
        return Result(0)

    app = NODES[1]
    hosts[app.name] = FakeHost(app, [fresh_but_installed(shipped, app.name)],
                               answers={"base64 -d | tar": files, "service supervisor": services})
    results, out = go(role="app")
    assert "deploy lock: t-app-0 has no " in out and "/demo/shared yet (first configure): no deploy can run; " \
        "taken once its files are in place" in out
    assert "deploy lock: taken on t-app-0, now that its " in out
    assert held_during_services == [True]
    assert not (anchor.shared / "deploy.lock").exists()
    (rec,) = audit_lines(anchor.shared / "deploys.log")
    assert (rec.action, rec.result, rec.component, rec.from_release) == ("configure", "ok", "app", None)


def test_a_deploy_slipping_in_before_the_late_lock_fails_the_anchor_naming_it(shipped, cluster, anchor):
    hosts, go = cluster
    anchor.shared.rmdir()

    def files(command):
        anchor.shared.mkdir()
        hold(anchor)             # a deploy took the lock the moment the directory appeared
        return Result(0)

    app = NODES[1]
    hosts[app.name] = FakeHost(app, [fresh_but_installed(shipped, app.name)], answers={"base64 -d | tar": files})
    with pytest.raises(HostFailures) as info:
        go(role="app")
    assert "t-app-0: services: deploy lock on t-app-0:" in str(info.value) and "ana@laptop" in str(info.value)
    sent = [c for c, _ in hosts[app.name].calls if MAGIC not in c]
    assert len(sent) == 1 and "base64 -d | tar" in sent[0]                          # its services untouched
    assert "FAILED at services" in go.output
    assert [r.result for r in audit_lines(cluster_dir(shipped) / "deploys.log")] == ["failed"]


def test_no_lock_when_no_deploy_can_run(shipped, cluster, anchor, monkeypatch):
    hosts, go = cluster
    up_to_date(shipped, hosts, changed="t-proxy-0")
    monkeypatch.setattr(configure_lock, "anchor_of", lambda nodes: node("app", 0, state="stopped"))
    _, out = go(role="proxy")
    assert "deploy lock: none taken (t-app-0 is stopped: no deploy can run)" in out
    assert anchor.calls == []
    assert [r.action for r in audit_lines(cluster_dir(shipped) / "deploys.log")] == ["configure"]


# --- the task's flags -----------------------------------------------------------------------------

def test_the_flags_and_a_bad_wait_timeout(roles_file, monkeypatch):
    assert configure_tasks.wait_seconds(False, None) is None
    assert configure_tasks.wait_seconds(True, None) == configure_lock.WAIT_TIMEOUT == 600
    assert configure_tasks.wait_seconds(False, "30") == 30.0           # --wait-timeout implies --wait
    got = {}
    monkeypatch.setattr(configure_tasks, "connect_ec2", lambda cfg: (None, None))
    monkeypatch.setattr(configure_tasks, "configure_cluster", lambda cfg, ec2, **kw: got.update(kw))
    configure_tasks.configure(Context(), wait=True, break_lock=True, config=str(roles_file))
    assert got.pop("connections") is not None                            # the run's SSH connections (sshpool)
    assert got == {"role": None, "dry_run": False, "wait": 600.0, "break_lock": True}
    monkeypatch.setattr(configure_tasks, "connect_ec2", lambda cfg: pytest.fail("cloud opened"))
    with pytest.raises(Exit, match=r"--wait-timeout: expected seconds between 1 and 86400, got 'soon'"):
        configure_tasks.configure(Context(), wait_timeout="soon", config=str(roles_file))


def test_the_task_turns_a_held_lock_into_a_nonzero_exit_naming_the_holder(roles_file, monkeypatch):
    monkeypatch.setattr(configure_tasks, "connect_ec2", lambda cfg: (None, None))

    def held(*a, **k):
        raise LockHeld("deploy lock on t-app-0:/srv/demo/shared/deploy.lock is held by ana@laptop", THEIRS)
    monkeypatch.setattr(configure_tasks, "configure_cluster", held)
    with pytest.raises(Exit) as info:
        configure_tasks.configure(Context(), config=str(roles_file))
    assert info.value.code == 1 and "is held by ana@laptop" in str(info.value.message)

