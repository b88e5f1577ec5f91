"""Rollback, stage by stage, over scripted fake hosts (deploy_fakes): to a warm slot (its workers back, the
switch, no boot), to a cold one (booted first, and the output says so), the gate before the workers, the slot
that served left drained; the migrations check, the dry run, the audit line."""
from __future__ import annotations

import io

import pytest
from deploy_fakes import WORKERS, Rel, make_cluster
from deploy_scenarios import (APP, DEPLOYED, NEW, PROXY, R1, R2, SHA, WORKER, audit, count, did, gitcfg, reached, site,
                              warm_site, world)

from fabfile.deploy.errors import DeployError
from fabfile.deploy.rollback import RollbackOptions, roll_back

__all__ = ["gitcfg", "site", "warm_site", "world"]        # fixtures


def after_state(world, name):
    """`name`'s stages after its state read."""
    stages = world.stages(name)
    return stages[stages.index("state") + 1:]


def progress(cl) -> io.StringIO:
    """What the cluster's progress lines say, from here on."""
    cl.progress.out, cl.progress.quiet = io.StringIO(), False
    return cl.progress.out


def test_a_rollback_to_the_warm_slot_boots_nothing_and_drains_the_slot_that_served(warm_site, world):
    cl, hosts, out = warm_site
    said = progress(cl)
    assert roll_back(cl, RollbackOptions(health_timeout=5)) == R1
    log = world.log
    assert log[0] == (APP, "lock")
    assert sorted(log[1:4]) == [(APP, "state"), (PROXY, "state"), (WORKER, "state")]
    # the app node's warm slot first (its workers back, then `current` and slots/live), then the proxy's upstream
    assert log[4:9] == [(APP, "warm up"), (APP, "switch"), (APP, "go live"), (PROXY, "switch"), (PROXY, "upstream")]
    assert log[9] == (PROXY, "probe")                                    # the gate, on the warm slot's port
    assert sorted(log[10:13]) == [(APP, "drain"), (WORKER, "celery restart"), (WORKER, "switch")]
    assert log[13:] == [(APP, "audit"), (APP, "unlock")]
    assert "boot" not in world.stages()
    app = hosts["app"]
    assert app.live == "a" and (app.slots["a"].release, app.slots["a"].workers) == (R1, WORKERS)
    assert app.slots["b"].running and app.slots["b"].workers == 1        # R2 now warm, for a roll forward
    assert reached(world, hosts) == [(APP, "a", R1)] and app.serving == hosts["worker"].serving == R1
    assert all(h.current == R1 and set(h.releases) == {R1, R2} for h in hosts.values())
    assert f"[{APP}] rollback: slot a was warm on {R1}: no boot (warm {WORKERS} worker(s))\n" in said.getvalue()
    (record,) = audit(hosts)
    assert (record.action, record.result, record.from_release, record.to_release) == ("rollback", "ok", R2, R1)
    assert hosts["app"].lock is None and out[-1].startswith(f"rolled back to {R1} on 3 node(s): switched in ")
    assert ", healthy at " in out[-1] and ", done at " in out[-1]


def test_a_rollback_to_a_cold_release_boots_it_first_and_says_so(site, world):
    cl, hosts, out = site                         # slot a serves R2; no slot runs R1 any more
    said = progress(cl)
    assert roll_back(cl, RollbackOptions(health_timeout=5)) == R1
    assert after_state(world, APP)[:3] == ["boot", "switch", "go live"] and "warm up" not in world.stages()
    log = world.log
    assert log.index((APP, "boot")) < log.index((PROXY, "probe")) < log.index((APP, "go live")) \
        < log.index((PROXY, "upstream"))                    # booted, reached from the proxy, then switched
    app = hosts["app"]
    assert did(app, "boot", R1) and app.live == "b" and app.slots["b"].release == R1
    assert app.slots["a"].running and app.slots["a"].workers == 1            # R2 drained, warm
    assert reached(world, hosts) == [(APP, "b", R1)]
    said = said.getvalue()
    assert (f"no warm slot runs {R1} (app.keep_warm passed, or it was never kept): booting it in slot b first"
            in said) and f"slot b booted on {R1} in " in said


def test_a_warm_slot_that_went_cold_since_the_state_read_is_booted_not_switched_to(warm_site, world):
    """Its keep_warm timer stopped it between the state read and the warm-up: the warm-up switches nothing
    (slots/live never names a stopped slot), and the rollback boots it."""
    cl, hosts, out = warm_site
    app = hosts["app"]
    app.expire = "a"
    assert roll_back(cl, RollbackOptions(health_timeout=5)) == R1
    assert after_state(world, APP)[:4] == ["warm up", "boot", "switch", "go live"]
    assert did(app, "boot", R1) and app.live == "a" and reached(world, hosts) == [(APP, "a", R1)]


def test_a_rollback_whose_gate_fails_leaves_the_workers_and_the_old_slot_alone(warm_site, world):
    cl, hosts, out = warm_site
    hosts["app"].fail("gate", release=R1)
    with pytest.raises(Exception, match=r"/health on 10\.0\.0\.10:8000 not healthy within 0\.3 s"):
        roll_back(cl, RollbackOptions(health_timeout=0.3))
    assert world.stages(WORKER) == ["state"]
    assert hosts["worker"].current == hosts["worker"].serving == R2
    assert "drain" not in world.stages() and hosts["app"].slots["b"].workers == WORKERS   # R2's slot, as it was
    (record,) = audit(hosts)
    assert record.result == "failed" and "not healthy" in record.detail
    assert hosts["app"].lock is None


def test_a_rollback_whose_cold_boot_fails_switches_nothing_and_is_audited(site, world):
    cl, hosts, out = site
    hosts["app"].fail("boot", release=R1)
    with pytest.raises(Exception) as info:
        roll_back(cl, RollbackOptions(health_timeout=5))
    assert f"release {R1} in gunicorn slot b (:8001, RUNNING): /health answered 500" in str(info.value)
    assert "the previous release keeps serving" in str(info.value)
    for never in ("switch", "go live", "upstream", "drain", "celery restart"):
        assert never not in world.stages(), never
    assert all(h.current == R2 for h in hosts.values()) and reached(world, hosts) == [(APP, "a", R2)]
    assert did(hosts["app"], "stop slot", R1) and not hosts["app"].slots["b"].running
    (record,) = audit(hosts)
    assert record.result == "failed" and "answered 500" in record.detail
    assert hosts["app"].lock is None


def test_a_rollback_to_a_release_no_slot_runs_boots_it_in_place_of_the_warm_one(gitcfg, world):
    """--to R1 while slot a is warm on R2 and slot b serves NEW: R1 boots in slot a (the idle one)."""
    on_new = {**DEPLOYED, NEW: Rel(SHA, "f" * 64, NEW, previous=R2)}
    cl, hosts, out = make_cluster(gitcfg, world, on_new, NEW, warm=R2)
    assert roll_back(cl, RollbackOptions(to=R1)) == R1
    app = hosts["app"]
    assert count(app, "boot") == 1 and did(app, "boot", R1) and "warm up" not in world.stages()
    assert app.live == "a" and app.slots["a"].release == R1 and app.slots["b"].release == NEW
    assert reached(world, hosts) == [(APP, "a", R1)] and hosts["worker"].serving == R1


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
    assert "switch" not in world.stages() and "boot" not in world.stages() and all(h.current == R2 for h in hosts.values())
    assert app.lock is None and audit(hosts) == []


def test_a_rollback_that_needs_no_migration_check_does_not_ask_the_database(site, world):
    cl, hosts, out = site
    for rel in (R1, R2):      # the same migration files in both releases
        hosts["app"].releases[rel].migrations = ("notes/migrations/0001_initial.py",)
    assert roll_back(cl, RollbackOptions()) == R1
    assert "migrations missing" not in world.stages()


def test_a_dry_run_rollback_takes_no_lock_and_switches_nothing(warm_site, world):
    cl, hosts, out = warm_site
    assert roll_back(cl, RollbackOptions(dry_run=True)) is None
    assert sorted(world.log) == [(APP, "state"), (PROXY, "state"), (WORKER, "state")]
    assert out == ["dry run: nothing is changed. Would roll back:",
                   f"  {PROXY}: {R2} -> {R1}", f"  {APP}: {R2} -> {R1}", f"  {WORKER}: {R2} -> {R1}"]
    assert all(h.current == R2 and h.lock is None for h in hosts.values())
    assert hosts["app"].slots["a"].workers == 1 and hosts["app"].live == "b"
