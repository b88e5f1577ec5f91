"""The change computation: desired state + facts -> actions (pure)."""
import dataclasses
import hashlib
from pathlib import Path

import pytest

from fabfile.configure.facts import Facts, PathFact, PgFacts, PgRole, ServiceFact, UserFact, parse_facts
from fabfile.configure.plan import (AptInstall, AptUpdate, CreateUser, Desired, DesiredAbsent, DesiredDir,
                                    DesiredFile, DesiredLink, DesiredPostgres, DesiredUser, EnableService, FixAttrs,
                                    Link, MakeDir, ModifyUser, PgEnsure, Remove, ServiceAction, WriteFile, make_plan)
from fabfile.configure.scram import scram_matches, scram_verifier

NOW = 1_800_000_000
SALT = b"0123456789abcdef"
DATA = Path(__file__).parent / "data"

SITE = DesiredFile("/etc/nginx/sites-available/whipup.conf", "upstream {}\n", "root", "root", "0644",
                   notify="nginx", action="reload", src="etc/nginx/sites-available/whipup.conf.j2")
PG_CONF = DesiredFile("/etc/postgresql/15/main/conf.d/whipup.conf", "listen_addresses = 'x'\n", "postgres",
                      "postgres", "0644", notify="postgresql", action="restart", src="whipup.conf.j2")
PG_HBA = DesiredFile("/etc/postgresql/15/main/pg_hba.conf", "local all all peer\n", "postgres", "postgres", "0640",
                     notify="postgresql", action="reload", src="pg_hba.conf.j2")
USER = DesiredUser("demo", "/srv/demo", "/usr/sbin/nologin")
DIR = DesiredDir("/srv/demo", "demo", "demo", "0755")
LINK = DesiredLink("/etc/nginx/sites-enabled/whipup.conf", SITE.path, notify="nginx")
DEFAULT = DesiredAbsent("/etc/nginx/sites-enabled/default", notify="nginx")


def proxy_desired(**kw) -> Desired:
    base = dict(packages=("git", "nginx"), user=USER, dirs=(DIR,), files=(SITE,), links=(LINK,), absent=(DEFAULT,),
                services=("nginx",))
    return Desired(**{**base, **kw})


def file_fact(f: DesiredFile, **kw) -> PathFact:
    return PathFact("file", kw.get("owner", f.owner), kw.get("group", f.group), kw.get("mode", int(f.mode, 8)),
                    sha256=kw.get("sha256", f.sha256))


def facts(**kw) -> Facts:
    base = dict(init="sysv", now=NOW, os="debian 12", apt_lists=3, apt_updated=NOW - 3600,
                packages=frozenset({"git", "nginx"}),
                paths={DIR.path: PathFact("dir", "demo", "demo", 0o755), SITE.path: file_fact(SITE),
                       LINK.path: PathFact("link", target=SITE.path), DEFAULT.path: PathFact("absent")},
                users={"demo": UserFact("demo", "/srv/demo", "/usr/sbin/nologin")},
                services={"nginx": ServiceFact("active", None)}, postgres=None)
    return Facts(**{**base, **kw})


def test_a_host_that_matches_gets_no_actions():
    plan = make_plan(proxy_desired(), facts())
    assert plan.actions == () and plan.changes == 0
    assert plan.ok == ("package git", "package nginx", "user demo", f"directory {DIR.path}", f"file {SITE.path}",
                       f"link {LINK.path}", f"absent {DEFAULT.path}", "service nginx running")


def test_a_fresh_host_gets_everything_in_stage_order():
    fresh = facts(apt_lists=0, apt_updated=None, packages=frozenset({"apt"}), paths={}, users={"demo": None},
                  services={"nginx": ServiceFact("absent", None)})
    plan = make_plan(proxy_desired(), fresh)
    assert plan.actions == (
        AptUpdate("package lists missing"),
        AptInstall(("git", "nginx"), update_on_failure=False),
        CreateUser(USER),
        MakeDir(DIR, "absent"),
        WriteFile(SITE, None),
        Link(LINK, "absent"),
        ServiceAction("nginx", "reload", "whipup.conf changed, whipup.conf enabled; stopped: start"),
        EnableService("nginx"),
    )
    assert plan.stages == ["packages", "files", "services"]
    assert plan.changes == 2 + 6


def test_plan_against_a_captured_fresh_host():
    f = parse_facts((DATA / "facts_app_fresh.txt").read_text())
    web = DesiredFile("/etc/supervisor/conf.d/demo-web.conf", "[program:demo-web]\n", "root", "root", "0644",
                      notify="supervisor", action="reload")
    want = Desired(packages=("git", "supervisor", "python3-venv", "curl", "postgresql-client"), user=USER,
                   dirs=(DIR,), files=(web,), services=("supervisor",))
    plan = make_plan(want, f)
    assert [type(a).__name__ for a in plan.actions] == [
        "AptUpdate", "AptInstall", "CreateUser", "MakeDir", "WriteFile", "ServiceAction", "EnableService"]
    assert plan.actions[1].packages == ("git", "supervisor", "python3-venv", "curl", "postgresql-client")
    assert plan.actions[-2:] == (ServiceAction("supervisor", "reload", "demo-web.conf changed; stopped: start"),
                                 EnableService("supervisor"))


def test_apt_update_only_when_lists_are_old_or_missing_and_something_is_missing():
    want = proxy_desired(packages=("git", "nginx", "curl"))
    old = make_plan(want, facts(apt_updated=NOW - 30 * 3600))
    assert old.actions[:2] == (AptUpdate("package lists 30 h old, max 24 h"), AptInstall(("curl",), False))
    fresh = make_plan(want, facts())
    assert fresh.actions[0] == AptInstall(("curl",), update_on_failure=True)
    assert not make_plan(proxy_desired(), facts(apt_updated=NOW - 90 * 24 * 3600)).actions   # nothing to install
    assert make_plan(dataclasses.replace(want, apt_max_age=3600 * 100), facts(apt_updated=NOW - 30 * 3600)
                     ).actions[0] == AptInstall(("curl",), True)


def test_changed_content_writes_and_notifies_once_with_the_strongest_action():
    want = Desired(files=(PG_CONF, PG_HBA), services=("postgresql",))
    have = facts(paths={PG_CONF.path: file_fact(PG_CONF, sha256="0" * 64), PG_HBA.path: file_fact(PG_HBA, sha256="1" * 64)},
                 services={"postgresql": ServiceFact("active", None)})
    plan = make_plan(want, have)
    assert plan.actions == (
        WriteFile(PG_CONF, "0" * 64), WriteFile(PG_HBA, "1" * 64),
        ServiceAction("postgresql", "restart", "whipup.conf changed, pg_hba.conf changed"))
    only_hba = make_plan(want, dataclasses.replace(have, paths={**have.paths, PG_CONF.path: file_fact(PG_CONF)}))
    assert only_hba.handlers == [ServiceAction("postgresql", "reload", "pg_hba.conf changed")]


def test_owner_or_mode_drift_is_fixed_without_a_handler():
    plan = make_plan(proxy_desired(), facts(paths={**facts().paths, SITE.path: file_fact(SITE, mode=0o600)}))
    assert plan.actions == (FixAttrs(SITE.path, "root", "root", "0644", "root:root 0600"),)


def test_link_default_site_dirs_and_user_drift():
    have = facts(paths={DIR.path: PathFact("dir", "root", "root", 0o700), SITE.path: file_fact(SITE),
                        LINK.path: PathFact("link", target="/elsewhere"), DEFAULT.path: PathFact("link", target="x")},
                 users={"demo": UserFact("demo", "/home/demo", "/bin/bash")})
    plan = make_plan(proxy_desired(), have)
    assert plan.actions == (
        ModifyUser(USER, "home /home/demo, shell /bin/bash"),
        MakeDir(DIR, "root:root 0700"),
        Link(LINK, "-> /elsewhere"),
        Remove(DEFAULT),
        ServiceAction("nginx", "reload", "whipup.conf enabled, default removed"),
    )


def test_stopped_services_are_started_and_disabled_ones_enabled_under_either_init():
    stopped = {"nginx": ServiceFact("inactive", None)}           # nothing says whether it starts at boot
    assert make_plan(proxy_desired(), facts(services=stopped)).actions == (ServiceAction("nginx", "start", "inactive"),)
    for init in ("systemd", "sysv"):
        off = make_plan(proxy_desired(), facts(init=init, services={"nginx": ServiceFact("active", False)}))
        assert off.actions == (EnableService("nginx"),), init
        assert off.actions[0].describe() == "enable nginx at boot"
        assert not make_plan(proxy_desired(), facts(init=init, services={"nginx": ServiceFact("active", True)})).actions
    both = make_plan(proxy_desired(), facts(services={"nginx": ServiceFact("inactive", False)}))
    assert both.actions == (ServiceAction("nginx", "start", "inactive"), EnableService("nginx"))


def test_a_handler_owed_by_an_interrupted_run_is_run_now():
    """An earlier run wrote whipup.conf (so it matches now) and stopped before reloading nginx."""
    plan = make_plan(proxy_desired(), facts(pending=frozenset({("nginx", "reload"), ("gone", "restart")})))
    assert plan.actions == (ServiceAction("nginx", "reload", "reload pending from an earlier run"),)
    both = make_plan(Desired(files=(PG_HBA,), services=("postgresql",)),
                     facts(paths={PG_HBA.path: file_fact(PG_HBA, sha256="0" * 64)},
                           services={"postgresql": ServiceFact("active", None)},
                           pending=frozenset({("postgresql", "restart")})))
    assert both.handlers == [ServiceAction("postgresql", "restart",
                                           "pg_hba.conf changed, restart pending from an earlier run")]


def pg_desired(password="pw") -> Desired:
    return Desired(postgres=DesiredPostgres("demo", "demo", password))


def test_postgres_all_present_is_ok():
    have = facts(postgres=PgFacts(True, {"demo": PgRole(scram_verifier("pw", SALT), True)}, {"demo": "demo"}))
    plan = make_plan(pg_desired(), have)
    assert plan.actions == () and plan.ok[-3:] == (
        "postgres role demo", "postgres role demo password", "postgres database demo")


def test_postgres_missing_role_and_database():
    plan = make_plan(pg_desired(), facts(postgres=PgFacts(True)), salt=SALT)
    (action,) = plan.actions
    assert action == PgEnsure("demo", "demo", scram_verifier("pw", SALT),
                              ("create role demo", "set role demo's password", "create database demo owned by demo"))
    assert scram_matches("pw", action.verifier)


def test_postgres_wrong_password_or_owner_or_down():
    have = facts(postgres=PgFacts(True, {"demo": PgRole(scram_verifier("old", SALT), True)}, {"demo": "postgres"}))
    (action,) = make_plan(pg_desired(), have, salt=SALT).actions
    assert action.what == ("set role demo's password", "give database demo to demo (owner postgres)")
    (down,) = make_plan(pg_desired(), facts(postgres=PgFacts(False)), salt=SALT).actions
    assert down.verifier and down.what[0] == "create role demo if missing"
    with pytest.raises(ValueError, match="salt"):
        make_plan(pg_desired(), facts(postgres=PgFacts(False)))


def test_postgres_on_captured_db_facts():
    f = parse_facts((DATA / "facts_db_configured.txt").read_text())
    assert make_plan(pg_desired("fixture-password-not-a-secret"), f).actions == ()
    (action,) = make_plan(pg_desired("rotated"), f, salt=SALT).actions
    assert action.what == ("set role demo's password",)


def test_a_dry_run_without_a_stored_password_says_it_would_set_one():
    (action,) = make_plan(pg_desired(None), facts(postgres=PgFacts(True, {"demo": PgRole("", True)}, {"demo": "demo"}))
                          ).actions
    assert action.verifier is None and action.what == ("set role demo's password",)


def test_facts_request_lists_every_managed_thing():
    req = proxy_desired(postgres=DesiredPostgres("demo", "demo", "pw")).facts_request()
    assert req.paths == (DIR.path, SITE.path, LINK.path, DEFAULT.path)
    assert (req.services, req.users, req.postgres) == (("nginx",), ("demo",), ("demo", "demo"))


def test_file_sha_is_of_its_content():
    assert SITE.sha256 == hashlib.sha256(b"upstream {}\n").hexdigest()
