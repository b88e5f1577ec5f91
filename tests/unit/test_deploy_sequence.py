"""Deploy and rollback, stage by stage, over scripted fake hosts (deploy_fakes): the order of the stages,
what a failure before or after the switch leaves behind, the lock, the audit line, rollback's gate."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from deploy_fakes import SCRIPTS, Rel, World, classify, make_cluster

from fabfile.deploy import commands as c
from fabfile.deploy import runtime
from fabfile.deploy import manage as dj
from fabfile.deploy import engine
from fabfile.deploy import lock as lk
from fabfile.layout import Layout
from fabfile.deploy.errors import DeployError, LockHeld
from fabfile.deploy.lock import LockInfo, format_lock, parse_audit
from fabfile.deploy.planning import DeployOptions
from fabfile.deploy.releases import release_id, requirements_hash
from fabfile.deploy.rollback import RollbackOptions, roll_back
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
    """proxy, app and worker nodes on R2 (deployed over R1); gunicorn and celery run R2."""
    return make_cluster(gitcfg, world, DEPLOYED, R2)


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


def test_the_fake_hosts_classify_each_real_builders_command():
    L, T = Layout("demo", "demo.settings", "requirements.txt"), "0123456789abcdef"
    stdin = {v: k for k, v in SCRIPTS.items()}
    cases = [(lk.lock_acquire(L), ["lock"]), (lk.lock_read(L), ["lock read"]), (lk.lock_release(L, T), ["unlock"]),
             (lk.audit_and_unlock(L, T), ["audit", "unlock"]), (lk.audit_append(L), ["audit"]),
             (c.state(L, ["demo-web"], migrations=True), ["state"]), (c.fetch(L, "https://x/y.git", "main"), ["fetch"]),
             (c.extract(L, NEW, SHA, "", None, R2), ["extract"]), (c.write_env(L), [".env"]),
             (runtime.write_files(L, L.root), ["release files"]),
             (c.venv_reuse(L, NEW, R2), ["venv reuse"]), (c.venv_install(L, NEW, "h" * 64, NEW), ["pip install"]),
             (dj.collectstatic(L, NEW), ["collectstatic"]), (dj.migrate(L, NEW), ["migrate"]),
             (dj.migrate_check(L, NEW), ["migrate check"]), (c.static_pack(L, NEW), ["static pack"]),
             (c.static_unpack(L, NEW, SHA, None, R2), ["static unpack"]), (c.switch(L, NEW), ["switch"]),
             (c.web(L, "hup"), ["hup"]), (c.web(L, "restart"), ["restart"]), (c.web(L, "start"), ["start"]),
             (c.worker_restart(L), ["celery restart"]), (c.switch_and_web(L, R1, "hup"), ["switch", "hup"]),
             (c.switch_and_worker(L, R1), ["switch", "celery restart"]), (c.health("10.0.0.10"), ["probe"]),
             (c.remove_releases(L, [R1]), ["remove"]), (c.program_log(L, "demo-web", 100), ["log"])]
    for command, stages in cases:
        assert classify(command, None, L) == stages, command
    for stage, script in stdin.items():
        assert classify(dj.python_stdin(L, R1, ["10.0.0.10:8000"]), script, L) == [stage]
    assert classify(dj.python_stdin(L, R1), "print(1)", L) == [] == classify("uptime", None, L)


# --- a healthy deploy --------------------------------------------------------------------------

PHASES = [{"lock"}, {"state"}, {"fetch", "extract", "release files", ".env", "venv reuse"}, {"django facts"},
          {"collectstatic", "count static", "migrate"},
          {"static pack", "static unpack", "health before traffic"}, {"switch"},
          {"hup", "celery restart", "probe"},   # celery restarts while gunicorn reloads and the gate probes
          {"remove"}, {"audit", "unlock"}]


def phase(stage: str) -> int:
    return next(i for i, names in enumerate(PHASES) if stage in names)


def test_a_healthy_update_runs_every_stage_in_order(site, world):
    cl, hosts, out = site
    assert deploy(cl) == NEW
    phases = [phase(stage) for _, stage in world.log]
    assert phases == sorted(phases), world.log
    assert set(phases) == set(range(len(PHASES)))
    where = {stage: sorted(n for n, s in world.log if s == stage) for _, stage in world.log}
    for stage in ("fetch", "extract", "release files", ".env", "venv reuse"):
        assert where[stage] == [APP, WORKER]
    assert where["collectstatic"] == where["migrate"] == where["static pack"] == where["health before traffic"] == [APP]
    assert where["static unpack"] == [PROXY]
    assert where["switch"] == where["remove"] == [APP, PROXY, WORKER]
    assert where["hup"] == [APP] and where["celery restart"] == [WORKER] and set(where["probe"]) == {PROXY}
    assert world.log.index((APP, "hup")) < world.log.index((PROXY, "probe"))
    for h in hosts.values():
        assert h.current == NEW and set(h.releases) == {R2, NEW}          # R1 pruned, R2 kept as the previous
    for role in ("app", "worker"):                                          # the venv reused, marks and all
        assert hosts[role].releases[NEW] == Rel(SHA, requirements_hash(REQS), R1, previous=R2)
    assert hosts["proxy"].releases[NEW] == Rel(SHA, previous=R2)             # static files only
    assert hosts["app"].serving == hosts["worker"].serving == NEW
    (record,) = audit(hosts)
    assert (record.result, record.from_release, record.to_release, record.to_sha) == ("ok", R2, NEW, SHA)
    assert hosts["app"].lock is None
    assert out[-1].startswith(f"deployed {NEW} (3333333) to 3 node(s)")


# --- failures before the switch ------------------------------------------------------------------

BEFORE_SWITCH = [  # role, stage, options, whether the error says by itself that the previous release serves
    ("app", "extract", {}, False),
    ("worker", "pip install", {"deps": True}, False),
    ("app", "collectstatic", {}, True),
    ("app", "migrate", {}, True),
    ("proxy", "static unpack", {}, False),
    ("app", "health before traffic", {}, True),
]


@pytest.mark.parametrize("role, stage, opts, says", BEFORE_SWITCH, ids=[s for _, s, _, _ in BEFORE_SWITCH])
def test_a_failure_before_the_switch_leaves_the_previous_release_serving(site, world, role, stage, opts, says):
    cl, hosts, out = site
    hosts[role].fail(stage)
    with pytest.raises(Exception) as info:
        deploy(cl, **opts)
    message = str(info.value)
    assert f"{stage} broke on t-{role}-0" in message
    assert message.count(SERVES) == 1, message
    if not says:
        assert message.endswith(f"\nnothing was switched: {SERVES}")
    assert "switch" not in world.stages() and "hup" not in world.stages()
    made = {h.name for h in hosts.values() if did(h, "extract", NEW) or did(h, "static unpack", NEW)}
    removed = {h.name for h in hosts.values() if did(h, "remove", NEW)}
    assert made and removed == made
    for h in hosts.values():
        assert h.current == R2 and NEW not in h.releases and R1 in h.releases   # no pruning either
    assert hosts["app"].serving == hosts["worker"].serving == R2
    (record,) = audit(hosts)
    assert record.result == "failed" and f"{stage} broke on" in record.detail
    assert hosts["app"].lock is None


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
    assert "extract" not in world.stages() and "switch" not in world.stages()
    for h in hosts.values():
        assert h.current == R2 and NEW not in h.releases
    (record,) = audit(hosts)
    assert record.result == "failed" and "moved during the deploy" in record.detail
    assert hosts["app"].lock is None


# --- failures after the switch: the automatic rollback -------------------------------------------

AFTER_SWITCH = [("worker", "switch"), ("app", "hup"), ("app", "probe")]   # probe: the gate (its target fails)


@pytest.mark.parametrize("role, stage", AFTER_SWITCH, ids=[s for _, s in AFTER_SWITCH])
def test_a_failure_after_the_switch_rolls_every_switched_node_back(site, world, role, stage):
    cl, hosts, out = site
    hosts[role].fail(stage, release=NEW)
    with pytest.raises(DeployError) as info:
        deploy(cl, health_timeout=0.3)
    message = str(info.value)
    assert message.startswith(f"deploy of {NEW} failed: ") and f"{stage} broke on t-{role}-0" in message
    assert message.endswith(f"rolled back to {R2}; it serves again")
    switched = [h for h in hosts.values() if did(h, "switch", NEW)]
    assert len(switched) == (2 if stage == "switch" else 3)
    for h in switched:
        assert [r for s, r, ok in h.calls if s == "switch" and ok] == [NEW, R2]
    for h in hosts.values():
        assert h.current == R2 and NEW not in h.releases
    assert hosts["app"].serving == hosts["worker"].serving == R2
    # the app was reloaded on R2 after switching back, then gated: the proxy's last probe found R2
    app_back = hosts["app"].calls.index(("switch", R2, True))
    assert ("hup", R2, True) in hosts["app"].calls[app_back:]
    assert [c for c in hosts["proxy"].calls if c[0] == "probe"][-1] == ("probe", R2, True)
    back = last(world.log, (APP, "switch"))
    assert back < world.log.index((APP, "hup"), back) < last(world.log, (PROXY, "probe"))
    (record,) = audit(hosts)
    assert record.result == "rolled-back" and record.detail == message
    assert hosts["app"].lock is None and f"deploy of {NEW} failed after the switch: rolling back" in out


def test_a_first_deploy_whose_gate_fails_is_left_on_the_new_release(gitcfg, world):
    cl, hosts, out = make_cluster(gitcfg, world, {}, None)
    hosts["app"].fail("probe", release=NEW)
    with pytest.raises(DeployError) as info:
        deploy(cl, health_timeout=0.3)
    found = re.search(rf"\nno previous release on (.+) \(first deploy\): left on {NEW}$", str(info.value))
    assert found and sorted(found.group(1).split(", ")) == [APP, PROXY, WORKER]
    assert "pip install" in world.stages(APP) and "start" in world.stages(APP) and "log" in world.stages(APP)
    for h in hosts.values():
        assert h.current == NEW and set(h.releases) == {NEW} and h.releases[NEW].previous == "-"
    assert "remove" not in world.stages() and hosts["app"].lock is None


def test_a_failed_prune_is_only_a_warning(site, world):
    cl, hosts, out = site
    hosts["proxy"].fail("remove")
    assert deploy(cl) == NEW
    assert any(line.startswith(f"warning: {PROXY}: pruning failed: ") for line in out)
    assert set(hosts["proxy"].releases) == {R1, R2, NEW} and set(hosts["app"].releases) == {R2, NEW}
    assert all(h.current == NEW for h in hosts.values())
    assert [r.result for r in audit(hosts)] == ["ok"] and hosts["app"].lock is None


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
           "gunicorn: hup" in out
    assert all(h.current == R2 and h.lock is None for h in hosts.values())


# --- rollback ----------------------------------------------------------------------------------

def test_rollback_switches_the_web_tier_gates_it_then_moves_the_workers(site, world):
    cl, hosts, out = site
    assert roll_back(cl, RollbackOptions(health_timeout=5)) == R1
    log = world.log
    assert log[0] == (APP, "lock")
    assert sorted(log[1:4]) == [(APP, "state"), (PROXY, "state"), (WORKER, "state")]
    assert sorted(log[4:7]) == [(APP, "hup"), (APP, "switch"), (PROXY, "switch")]
    assert log[7:] == [(PROXY, "probe"), (WORKER, "switch"), (WORKER, "celery restart"), (APP, "audit"), (APP, "unlock")]
    assert all(h.current == R1 and set(h.releases) == {R1, R2} for h in hosts.values())
    assert hosts["app"].serving == hosts["worker"].serving == R1
    (record,) = audit(hosts)
    assert (record.action, record.result, record.from_release, record.to_release) == ("rollback", "ok", R2, R1)
    assert hosts["app"].lock is None and out[-1].startswith(f"rolled back to {R1} on 3 node(s)")


def test_a_rollback_whose_gate_fails_leaves_the_workers_alone(site, world):
    cl, hosts, out = site
    hosts["app"].fail("probe", release=R1)
    with pytest.raises(Exception, match=r"/health on 10\.0\.0\.10:8000 not healthy within 0\.3 s"):
        roll_back(cl, RollbackOptions(health_timeout=0.3))
    assert world.stages(WORKER) == ["state"]
    assert hosts["worker"].current == hosts["worker"].serving == R2
    (record,) = audit(hosts)
    assert record.result == "failed" and "not healthy" in record.detail
    assert hosts["app"].lock is None


def test_a_rollback_is_refused_when_the_database_has_migrations_the_target_lacks(site, world):
    cl, hosts, out = site
    app = hosts["app"]
    app.releases[R1].migrations = ("notes/migrations/0001_initial.py",)
    app.releases[R2].migrations = ("notes/migrations/0001_initial.py", "notes/migrations/0002_x.py")
    app.migrations_answer = {"missing": [["notes", "0002_x"]], "leaves": {"notes": "0001_initial"}}
    with pytest.raises(DeployError, match=rf"the database has migrations that release {R1} lacks: notes\.0002_x\. "
                                          r".*refused\. --migrate-back"):
        roll_back(cl, RollbackOptions())
    assert ("migrations missing", R1, True) in app.calls
    assert "switch" not in world.stages() and all(h.current == R2 for h in hosts.values())
    assert app.lock is None and audit(hosts) == []


def test_a_rollback_that_needs_no_migration_check_does_not_ask_the_database(site, world):
    cl, hosts, out = site
    for rel in (R1, R2):      # the same migration files in both releases
        hosts["app"].releases[rel].migrations = ("notes/migrations/0001_initial.py",)
    assert roll_back(cl, RollbackOptions()) == R1
    assert "migrations missing" not in world.stages()


def test_a_dry_run_rollback_takes_no_lock_and_switches_nothing(site, world):
    cl, hosts, out = site
    assert roll_back(cl, RollbackOptions(dry_run=True)) is None
    assert sorted(world.log) == [(APP, "state"), (PROXY, "state"), (WORKER, "state")]
    assert out == ["dry run: nothing is changed. Would roll back:",
                   f"  {PROXY}: {R2} -> {R1}", f"  {APP}: {R2} -> {R1}", f"  {WORKER}: {R2} -> {R1}"]
    assert all(h.current == R2 and h.lock is None for h in hosts.values())


def test_a_rollback_across_a_venv_change_restarts_gunicorn(gitcfg, world):
    on_new = {**DEPLOYED, NEW: Rel(SHA, "f" * 64, NEW, previous=R2)}        # NEW has its own venv
    cl, hosts, out = make_cluster(gitcfg, world, on_new, NEW)
    assert roll_back(cl, RollbackOptions()) == R2
    assert [s for s, _, _ in hosts["app"].calls if s in ("switch", "hup", "restart")] == ["switch", "restart"]
    assert hosts["app"].serving == R2


# --- engine bugs these tests found (fixed) -----------------------------------------------------

def test_the_automatic_rollback_of_a_restart_deploy_restarts_gunicorn(site, world):
    cl, hosts, out = site
    hosts["app"].fail("probe", release=NEW)
    with pytest.raises(DeployError):
        deploy(cl, deps=True, health_timeout=0.3)
    calls = hosts["app"].calls
    assert ("restart", NEW, True) in calls                                    # the deploy: a new venv, a restart
    back = calls.index(("switch", R2, True))
    assert [s for s, _, _ in calls[back:] if s in ("hup", "restart")] == ["restart"]


def test_a_first_deploy_left_on_its_release_is_not_audited_as_rolled_back(gitcfg, world):
    cl, hosts, out = make_cluster(gitcfg, world, {}, None)
    hosts["app"].fail("probe", release=NEW)
    with pytest.raises(DeployError):
        deploy(cl, health_timeout=0.3)
    assert all(h.current == NEW for h in hosts.values())
    (record,) = audit(hosts)
    assert record.result == "failed"          # left on the new release: nothing was rolled back


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
