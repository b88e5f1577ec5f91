"""Deploy, stage by stage, over scripted fake hosts (deploy_fakes): the order of the stages and the node each
runs on (the new release booted in the idle gunicorn slot, the switch of app nodes then proxies, the gate on the
new slots, celery after it, the old slot drained), what a failure before or after the switch leaves behind,
the lock, the audit line. Rollback's are in test_rollback_sequence."""
from __future__ import annotations

import re

import pytest
from deploy_fakes import SCRIPTS, WORKERS, classify, make_cluster
from deploy_scenarios import (APP, NEW, PROXY, R1, R2, REQS, SERVES, SHA, WORKER, audit, count, deploy, did, gitcfg,
                              labeled, last, reached, site, warm_site, world)

from fabfile.deploy import commands as c
from fabfile.deploy import lock as lk
from fabfile.deploy import manage as dj
from fabfile.deploy import runtime, slots
from fabfile.deploy import staticdiff as sd
from fabfile.deploy import wheelhouse as wh
from fabfile.deploy.errors import DeployError, LockHeld
from fabfile.deploy.lock import LockInfo, format_lock
from fabfile.deploy.releases import requirements_hash
from fabfile.layout import Layout

__all__ = ["gitcfg", "site", "warm_site", "world"]        # fixtures


def test_the_fake_hosts_classify_each_real_builders_command():
    L, T = Layout("demo", "demo.settings", "requirements.txt"), "0123456789abcdef"
    stdin = {v: k for k, v in SCRIPTS.items()}
    cases = [(lk.lock_acquire(L), ["lock"]), (lk.lock_read(L), ["lock read"]), (lk.lock_release(L, T), ["unlock"]),
             (lk.audit_and_unlock(L, T), ["audit", "unlock"]), (lk.audit_append(L), ["audit"]),
             (c.state(L, ["demo-web-a", "demo-web-b"], migrations=True), ["state"]),
             (c.fetch(L, "https://x/y.git", "main"), ["fetch"]),
             (c.extract(L, NEW, SHA, "", None, R2), ["extract"]), (c.write_env(L), [".env"]),
             (runtime.write_files(L, L.root), ["release files"]),
             (c.venv_reuse(L, NEW, R2), ["venv reuse"]), (c.venv_install(L, NEW, "h" * 64, NEW), ["pip install"]),
             (dj.collectstatic(L, NEW), ["collectstatic"]), (dj.migrate(L, NEW), ["migrate"]),
             (dj.migrate_check(L, NEW), ["migrate check"]),
             (sd.reuse_or_collect(L, NEW, SHA, "", R2, "f" * 32), ["static key"]),
             (sd.reuse_or_collect(L, NEW, SHA, "", None, "f" * 32), ["static key"]),
             (sd.record(L, NEW, "f" * 32 + "-" + SHA), ["count static"]), (sd.sums(L, NEW), ["static sums"]),
             (sd.proxy_sums(L, R2), ["proxy sums"]), (sd.proxy_prepare(L, NEW, R2), ["static prepare"]),
             (sd.proxy_prepare(L, NEW, None), ["static prepare"]),
             (sd.pack(L, NEW), ["static pack"]), (sd.unpack(L, NEW, SHA, None, R2), ["static unpack"]),
             (c.switch(L, NEW), ["switch"]),
             (c.venv_install(L, NEW, "h" * 64, NEW, wheelhouse=wh.directory(L, "h" * 64), build=True), ["pip install"]),
             (c.venv_install(L, NEW, "h" * 64, NEW, wheelhouse=wh.directory(L, "h" * 64)), ["pip install"]),
             (wh.size(L, "h" * 64), ["wheelhouse size"]), (wh.pack(L, "h" * 64), ["wheelhouse pack"]),
             (wh.unpack(L, "h" * 64), ["wheelhouse unpack"]), (wh.remove(L, "h" * 64), ["wheelhouse remove"]),
             (slots.boot(L, "b", NEW, "10.0.0.10", "/health", 120), ["boot"]), (slots.stop(L, "b"), ["stop slot"]),
             (slots.go_live(L, "b", NEW), ["switch", "go live"]),
             (slots.warm_and_go_live(L, "a", R1), ["warm up", "switch", "go live"]),
             (slots.proxy_switch(L, NEW), ["switch", "upstream"]), (slots.proxy_switch(L, None), ["upstream"]),
             (slots.drain(L, "a", 1800, 1, 1717000000), ["drain"]), (slots.drain(L, "a", 0, 0, 0), ["drain"]),
             (c.worker_restart(L), ["celery restart"]), (c.switch_and_worker(L, R1), ["switch", "celery restart"]),
             (c.health("10.0.0.10", 8001), ["probe"]),
             (c.remove_releases(L, [R1]), ["remove"]), (c.program_log(L, "demo-web-a", 100), ["log"])]
    for command, stages in cases:
        assert classify(command, None, L) == stages, command
    for stage, script in stdin.items():
        assert classify(dj.python_stdin(L, R1, ["10.0.0.10:8000"]), script, L) == [stage]
    assert classify(dj.python_stdin(L, R1), "print(1)", L) == [] == classify("uptime", None, L)


# --- a healthy deploy --------------------------------------------------------------------------

PHASES = [{"lock"}, {"state"}, {"fetch", "extract", "release files", ".env", "venv reuse"}, {"django facts"},
          {"migrate check"},                                    # the restore point's question: none to apply
          {"static key", "collectstatic", "count static", "migrate"},
          {"static sums", "proxy sums", "static prepare", "static pack", "static unpack", "boot", "reach"},   # the idle slot boots while the proxies get static
          {"switch", "go live", "upstream"},                    # app nodes, proxies (traffic moves), workers
          {"gate"}, {"celery restart"}, {"drain"}, {"remove"}, {"audit", "unlock"}]


def phase(stage: str) -> int:
    return next(i for i, names in enumerate(PHASES) if stage in names)


def test_collectstatic_and_migrate_are_skipped_when_nothing_of_theirs_changed(site, world):
    """The static inputs as in the current release (its static/ hard-linked) and no migration the database
    lacks: neither collectstatic nor migrate runs; the proxies still get the release's files."""
    cl, hosts, out = site
    hosts["app"].static_reused, hosts["app"].pending_migrations = True, []
    assert deploy(cl) == NEW
    stages = world.stages(APP)
    assert "static key" in stages and "collectstatic" not in stages and "count static" not in stages
    assert "migrate" not in stages and "static pack" in stages and did(hosts["proxy"], "static unpack", NEW)


def test_a_healthy_update_boots_the_idle_slot_switches_gates_then_drains(site, world):
    cl, hosts, out = site
    assert deploy(cl) == NEW
    log = labeled(world.log)
    phases = [phase(stage) for _, stage in log]
    assert phases == sorted(phases), log
    assert set(phases) == set(range(len(PHASES)))
    where = {stage: sorted({n for n, s in log if s == stage}) for _, stage in log}
    for stage in ("fetch", "extract", "release files", ".env", "venv reuse"):
        assert where[stage] == [APP, WORKER]
    for stage in ("collectstatic", "migrate", "static pack", "boot", "go live", "drain"):
        assert where[stage] == [APP], stage
    assert where["static unpack"] == where["upstream"] == where["reach"] == where["gate"] == [PROXY]
    assert where["switch"] == where["remove"] == [APP, PROXY, WORKER] and where["celery restart"] == [WORKER]
    switching = [e for e in log if e[1] in ("switch", "go live", "upstream")]
    assert switching == [(APP, "switch"), (APP, "go live"), (PROXY, "switch"), (PROXY, "upstream"), (WORKER, "switch")]
    app = hosts["app"]
    assert did(app, "boot", NEW) and count(app, "boot") == 1 and "stop slot" not in world.stages()
    assert app.live == "b" and (app.slots["b"].release, app.slots["b"].running, app.slots["b"].workers) == (
        NEW, True, WORKERS)
    # the previous slot stays up, warm with app.keep_warm's one worker, for a rollback
    old = app.slots["a"]
    assert (old.release, old.running, old.workers, old.kept) == (R2, True, 1, WORKERS) and old.cold_at is not None
    assert reached(world, hosts) == [(APP, "b", NEW)] and app.serving == hosts["worker"].serving == NEW
    for h in hosts.values():
        assert h.current == NEW and set(h.releases) == {R2, NEW}          # R1 pruned, R2 kept as the previous
    for role in ("app", "worker"):                                          # the venv reused, marks and all
        assert hosts[role].releases[NEW].req == requirements_hash(REQS) and hosts[role].releases[NEW].venv == R1
    (record,) = audit(hosts)
    assert (record.result, record.from_release, record.to_release, record.to_sha) == ("ok", R2, NEW, SHA)
    assert hosts["app"].lock is None
    assert f"  {APP}: {R2} -> {NEW}; venv: reuse from {R2} (requirements.txt unchanged since release {R2}); " \
           "gunicorn: boot slot b, then slot a stays warm" in out
    assert out[-1].startswith(f"deployed {NEW} (3333333) to 3 node(s)")


def test_nodes_installing_the_same_requirements_share_one_wheelhouse(site, world):
    """--deps on the app and worker nodes: the app node builds the wheelhouse and installs from it; the worker
    gets it (one tar stream) and installs from it after; both remove it."""
    cl, hosts, out = site
    assert deploy(cl, deps=True) == NEW
    app, worker = (hosts[r] for r in ("app", "worker"))
    builds = [c for c in app.calls if c[0] == "pip install"]
    assert len(builds) == 1 and did(worker, "pip install", NEW)
    log = labeled(world.log)
    assert log.index((APP, "pip install")) < log.index((APP, "wheelhouse size")) < log.index((APP, "wheelhouse pack"))
    assert log.index((APP, "wheelhouse pack")) < log.index((WORKER, "wheelhouse unpack")) < log.index((WORKER, "pip install"))
    assert (APP, "wheelhouse remove") in log and (WORKER, "wheelhouse remove") in log
    assert worker.releases[NEW].venv == app.releases[NEW].venv == NEW


def test_a_new_venv_goes_through_the_same_slot_switch_with_no_restart(site, world):
    """--deps (or changed requirements): a new venv, booted in the other slot; the serving one is never
    stopped or restarted before the switch."""
    cl, hosts, out = site
    assert deploy(cl, deps=True) == NEW
    app = hosts["app"]
    assert did(app, "pip install", NEW) and did(app, "boot", NEW) and app.live == "b"
    assert "stop slot" not in world.stages() and app.slots["a"].running and app.slots["a"].release == R2
    log = labeled(world.log)
    assert log.index((APP, "boot")) < log.index((PROXY, "upstream")) < log.index((PROXY, "gate"))
    assert app.releases[NEW].venv == NEW


def test_a_deploy_boots_over_the_warm_slot_and_prunes_the_release_it_ran(warm_site, world):
    """Slot a was warm on R1, slot b serves R2: the new release boots in slot a, R2's slot is drained warm,
    and R1 (its process gone) is pruned like any old release."""
    cl, hosts, out = warm_site
    assert deploy(cl) == NEW
    app = hosts["app"]
    assert did(app, "boot", NEW) and app.live == "a" and app.slots["a"].release == NEW
    assert app.slots["b"].release == R2 and app.slots["b"].workers == 1
    assert set(app.releases) == {R2, NEW} and did(app, "remove", R1)


def test_a_first_deploy_boots_slot_a_and_writes_the_upstream(gitcfg, world):
    cl, hosts, out = make_cluster(gitcfg, world, {}, None)
    assert deploy(cl) == NEW
    app = hosts["app"]
    assert app.live == "a" and app.slots["a"].release == NEW and app.slots["a"].running
    assert reached(world, hosts) == [(APP, "a", NEW)]
    assert "drain" not in world.stages()                     # no slot served before
    assert "gunicorn: boot slot a" in "\n".join(out) and "stays warm" not in "\n".join(out)


# --- failures before the switch ------------------------------------------------------------------

BEFORE_SWITCH = [  # role, stage, options, whether the error says by itself that the previous release serves,
    ("app", "extract", {}, False, False),                             # whether the new slot had booted
    ("worker", "pip install", {"deps": True}, False, False),
    ("app", "collectstatic", {}, True, False),
    ("app", "migrate", {}, True, False),
    ("proxy", "static unpack", {}, False, True),
    ("app", "boot", {}, True, True),                  # the slot answers 500 on the node
    ("app", "probe", {}, True, True),                 # it answers on the node, not from the proxy
]


@pytest.mark.parametrize("role, stage, opts, says, booted", BEFORE_SWITCH, ids=[s for _, s, *_ in BEFORE_SWITCH])
def test_a_failure_before_the_switch_stops_the_booted_slot_and_removes_the_release(site, world, role, stage, opts,
                                                                                     says, booted):
    cl, hosts, out = site
    hosts[role].fail(stage, release=NEW if stage in ("boot", "probe") else None)
    with pytest.raises(Exception) as info:
        deploy(cl, **opts)
    message = str(info.value)
    assert f"{stage} broke on t-{role}-0" in message
    assert message.count(SERVES) == 1, message
    if not says:
        assert message.endswith(f"\nnothing was switched: {SERVES}")
    for never in ("switch", "go live", "upstream", "gate", "celery restart", "drain"):
        assert never not in [s for _, s in labeled(world.log)], never
    made = {h.name for h in hosts.values() if did(h, "extract", NEW) or did(h, "static unpack", NEW)}
    removed = {h.name for h in hosts.values() if did(h, "remove", NEW)}
    assert made and removed == made
    for h in hosts.values():
        assert h.current == R2 and NEW not in h.releases and R1 in h.releases   # no pruning either
    app = hosts["app"]
    assert did(app, "boot", NEW) is (stage not in ("boot",) and booted) and did(app, "stop slot", NEW) is booted
    assert not app.slots["b"].running and app.live == "a"
    assert (app.slots["a"].release, app.slots["a"].running, app.slots["a"].workers) == (R2, True, WORKERS)
    assert reached(world, hosts) == [(APP, "a", R2)] and hosts["worker"].serving == R2
    (record,) = audit(hosts)
    assert record.result == "failed" and f"{stage} broke on" in record.detail
    assert hosts["app"].lock is None


def test_a_boot_that_fails_says_what_the_slot_answered_and_its_log(site, world):
    cl, hosts, out = site
    hosts["app"].fail("boot", release=NEW, message="ImportError: no module named wagtail")
    with pytest.raises(Exception) as info:
        deploy(cl)
    message = str(info.value)
    assert f"t-app-0: release {NEW} in gunicorn slot b (:8001, RUNNING): /health answered 500: " in message
    assert "ImportError: no module named wagtail" in message
    assert re.search(r"last lines of the demo-web-b log:\n +\[2024-06-01 12:00:00 \+0000\] \[42\] \[ERROR\]", message)
    assert world.stages(APP).index("log") < world.stages(APP).index("stop slot")


def test_a_branch_moved_during_a_deploy_stops_it_before_anything_is_switched(site, world):
    """Strategy git: the source was fetched at SHA; when the nodes fetch, main has moved on. No node gets
    a release of a commit other than the one planned (and shown), nothing is switched."""
    cl, hosts, out = site
    world.head = "4" * 40
    with pytest.raises(Exception) as info:
        deploy(cl)
    message = str(info.value)
    assert "main moved during the deploy (3333333 -> 4444444); deploy again" in message
    assert message.endswith(f"nothing was switched: {SERVES}")
    assert "extract" not in world.stages() and "switch" not in world.stages() and "boot" not in world.stages()
    for h in hosts.values():
        assert h.current == R2 and NEW not in h.releases
    (record,) = audit(hosts)
    assert record.result == "failed" and "moved during the deploy" in record.detail
    assert hosts["app"].lock is None


# --- failures after the switch: the automatic rollback -------------------------------------------

AFTER_SWITCH = [("worker", "switch"), ("proxy", "upstream"), ("app", "gate")]   # gate: its probes through the proxy


@pytest.mark.parametrize("role, stage", AFTER_SWITCH, ids=[s for _, s in AFTER_SWITCH])
def test_a_failure_after_the_switch_sends_the_traffic_back_to_the_old_slot_with_no_boot(site, world, role, stage):
    cl, hosts, out = site
    hosts[role].fail(stage, release=NEW)
    with pytest.raises(DeployError) as info:
        deploy(cl, health_timeout=0.3)
    message = str(info.value)
    assert message.startswith(f"deploy of {NEW} failed: ") and f"{stage} broke on t-{role}-0" in message
    assert message.endswith(f"rolled back to {R2}; it serves again")
    if stage == "gate":          # through the new slot's port, with that slot's log
        assert "/health on 10.0.0.10:8001 not healthy within 0.3 s; last answered 500" in message
        assert "last lines of the demo-web-b log:" in message
    app, proxy, worker = hosts["app"], hosts["proxy"], hosts["worker"]
    for h in hosts.values():
        assert h.current == R2 and NEW not in h.releases
    # the old slot was never drained: it takes the traffic back as it was, nothing boots
    assert count(app, "boot") == 1 and "drain" not in world.stages() and "warm up" not in world.stages()
    assert app.live == "a" and (app.slots["a"].release, app.slots["a"].workers) == (R2, WORKERS)
    assert did(app, "stop slot", NEW) and not app.slots["b"].running
    assert reached(world, hosts) == [(APP, "a", R2)] and app.serving == R2
    assert [r for s, r, ok in proxy.calls if s == "upstream" and ok][-1] == R2
    assert [x for x in proxy.calls if x[0] == "probe"][-1] == ("probe", R2, True)    # the gate, back on R2
    # celery restarts only once the web tier is healthy: never on the release that failed
    assert not any(s == "celery restart" and r == NEW for s, r, _ in worker.calls) and worker.serving == R2
    log = world.log                                  # back: the app node's live slot, then the proxy's upstream
    assert last(log, (APP, "go live")) < last(log, (PROXY, "upstream")) < last(log, (PROXY, "probe"))
    (record,) = audit(hosts)
    assert record.result == "rolled-back" and record.detail == message
    assert hosts["app"].lock is None and f"deploy of {NEW} failed after the switch: rolling back" in out


def test_a_first_deploy_whose_gate_fails_is_left_on_the_new_release(gitcfg, world):
    cl, hosts, out = make_cluster(gitcfg, world, {}, None)
    hosts["app"].fail("gate", release=NEW)
    with pytest.raises(DeployError) as info:
        deploy(cl, health_timeout=0.3)
    found = re.search(rf"\nno previous release on (.+) \(first deploy\): left on {NEW}$", str(info.value))
    assert found and sorted(found.group(1).split(", ")) == [APP, PROXY, WORKER]
    assert "pip install" in world.stages(APP) and "boot" in world.stages(APP) and "log" in world.stages(APP)
    for h in hosts.values():
        assert h.current == NEW and set(h.releases) == {NEW} and h.releases[NEW].previous == "-"
    assert reached(world, hosts) == [(APP, "a", NEW)]
    assert "remove" not in world.stages() and hosts["app"].lock is None
    (record,) = audit(hosts)
    assert record.result == "failed"          # left on the new release: nothing was rolled back


def test_a_failed_prune_is_only_a_warning(site, world):
    cl, hosts, out = site
    hosts["proxy"].fail("remove")
    assert deploy(cl) == NEW
    assert any(line.startswith(f"warning: {PROXY}: pruning failed: ") for line in out)
    assert set(hosts["proxy"].releases) == {R1, R2, NEW} and set(hosts["app"].releases) == {R2, NEW}
    assert all(h.current == NEW for h in hosts.values())
    assert [r.result for r in audit(hosts)] == ["ok"] and hosts["app"].lock is None


def test_a_failed_drain_is_only_a_warning(site, world):
    cl, hosts, out = site
    hosts["app"].fail("drain")
    assert deploy(cl) == NEW
    assert any(line.startswith(f"warning: {APP}: slot a not drained: ") for line in out)
    assert [r.result for r in audit(hosts)] == ["ok"] and reached(world, hosts) == [(APP, "b", NEW)]


# --- the lock, and dry runs --------------------------------------------------------------------

def test_a_lock_held_by_someone_else_stops_the_deploy_before_anything_else(site, world):
    cl, hosts, out = site
    theirs = format_lock(LockInfo("alice@laptop", "2024-06-01T11:58:00Z", R1, "rollback", "0123456789abcdef"))
    hosts["app"].lock = theirs
    with pytest.raises(LockHeld, match=r"deploy lock on t-app-0:/srv/demo/shared/deploy.lock is held by "
                                       rf"alice@laptop since 2024-06-01T11:58:00Z .*, rollback of release {R1}\."):
        deploy(cl)
    assert world.log == [(APP, "lock")]
    assert hosts["app"].lock == theirs                      # still theirs: not released by us


def test_a_dry_run_deploy_reads_and_changes_nothing(site, world):
    cl, hosts, out = site
    assert deploy(cl, dry_run=True) is None
    assert sorted(world.log) == [(APP, "lock read"), (APP, "state"), (PROXY, "state"), (WORKER, "state")]
    assert out[0] == "dry run: nothing is changed. Would deploy:"
    assert f"  {APP}: {R2} -> {NEW}; venv: reuse from {R2} (requirements.txt unchanged since release {R2}); " \
           "gunicorn: boot slot b, then slot a stays warm" in out
    assert all(h.current == R2 and h.lock is None for h in hosts.values())


# --- a stale lock: its holder's process on this machine is gone ----------------------------------

def test_a_lock_whose_holder_is_gone_is_taken_over_and_its_run_recorded_as_interrupted(site, world):
    import socket
    from fabfile.deploy.lock import boot_id
    cl, hosts, out = site
    dead = LockInfo("ana@laptop", "2024-06-01T11:58:00Z", R1, "quick-update", "0123456789abcdef",
                    socket.gethostname(), 2 ** 22 + 12345, f"{boot_id()}:1")        # no such pid runs
    hosts["app"].lock = format_lock(dead)
    assert deploy(cl) == NEW
    assert any(line.startswith("deploy lock of ana@laptop since 2024-06-01T11:58:00Z") and
               line.endswith(f"is stale: its process {dead.pid} on {dead.host} is gone; taken over") for line in out)
    interrupted, ok = audit(hosts)
    assert (interrupted.who, interrupted.action, interrupted.result, interrupted.to_release) == (
        "ana@laptop", "quick-update", "interrupted", R1)
    assert "taken over by" in interrupted.detail and ok.result == "ok"
    assert hosts["app"].lock is None and all(h.current == NEW for h in hosts.values())


def test_a_lock_whose_holder_still_runs_here_is_refused(site, world):
    import os
    cl, hosts, out = site
    alive = LockInfo.new(R1, "deploy", who="ana@laptop")          # this very process: alive
    hosts["app"].lock = format_lock(alive)
    with pytest.raises(LockHeld, match="is held by ana@laptop since"):
        deploy(cl)
    assert hosts["app"].lock == format_lock(alive) and alive.pid == os.getpid()
    assert world.log == [(APP, "lock")]


def test_a_deploy_from_the_saved_node_list_stops_before_any_change_when_the_cloud_disagrees(site, world):
    """quick-update opens the cluster from the saved node list while the cloud is asked: the engine waits
    for that answer after reading the nodes and planning, and a different list stops it (NodesChanged: the
    task starts again from the cloud's list) with nothing changed."""
    from fabfile.deploy.errors import NodesChanged

    cl, hosts, out = site

    class Lookup:
        def result(self):
            return [h.node for h in hosts.values()][:1]          # a node is gone

    cl.seen, cl.lookup = [h.node for h in hosts.values()], Lookup()
    with pytest.raises(NodesChanged):
        deploy(cl)
    assert {s for s in world.stages() if s not in ("lock", "state", "unlock", "lock read")} == set()
    assert all(h.current == R2 and h.lock is None for h in hosts.values())

