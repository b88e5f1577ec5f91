"""The facts parser, on output captured from real local-cloud hosts (tests/unit/data/facts_*.txt).

Captured with `facts_command` from a cluster named cfgdev: app-1 straight after provisioning, the others
after `fab configure`; the db's role password there was set to FIXTURE_PASSWORD for this purpose.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

from fabfile.configure.facts import (FactsError, FactsRequest, PathFact, ServiceFact, UserFact, facts_command,
                                     facts_script, parse_facts)
from fabfile.configure.scram import scram_matches

DATA = Path(__file__).parent / "data"
FIXTURE_PASSWORD = "fixture-password-not-a-secret"


def captured(name: str) -> str:
    return (DATA / name).read_text()


def test_fresh_host():
    f = parse_facts(captured("facts_app_fresh.txt"))
    assert (f.init, f.os, f.apt_lists) == ("sysv", "debian 12", 0)
    assert "apt" in f.packages and "openssh-server" in f.packages and "supervisor" not in f.packages
    assert f.paths["/srv/demo"] == PathFact("absent")
    assert f.paths["/etc/supervisor/conf.d/demo-web.conf"] == PathFact("absent")
    assert f.users == {"demo": None}
    assert f.services == {"supervisor": ServiceFact("absent", None)}
    assert not f.services["supervisor"].running
    assert f.postgres is None


def test_configured_db_host():
    f = parse_facts(captured("facts_db_configured.txt"))
    assert f.apt_lists == 3 and f.now - f.apt_updated < 24 * 3600
    assert {"postgresql", "postgresql-15", "supervisor", "git"} <= f.packages
    hba = f.paths["/etc/postgresql/15/main/pg_hba.conf"]
    assert (hba.kind, hba.owner, hba.group, hba.mode) == ("file", "postgres", "postgres", 0o640)
    assert len(hba.sha256) == 64
    assert f.services["postgresql"] == ServiceFact("active", None)
    assert f.postgres.up and f.postgres.databases == {"demo": "demo"}
    role = f.postgres.roles["demo"]
    assert role.can_login and role.verifier.startswith("SCRAM-SHA-256$4096:")
    assert scram_matches(FIXTURE_PASSWORD, role.verifier)
    assert not scram_matches("another password", role.verifier)


def test_configured_proxy_host():
    f = parse_facts(captured("facts_proxy_configured.txt"))
    assert f.paths["/etc/nginx/sites-enabled/whipup.conf"] == PathFact(
        "link", target="/etc/nginx/sites-available/whipup.conf")
    assert f.paths["/etc/nginx/sites-enabled/default"] == PathFact("absent")
    assert f.paths["/srv/demo/shared"] == PathFact("dir", "demo", "demo", 0o750)
    assert f.users["demo"] == UserFact("demo", "/srv/demo", "/usr/sbin/nologin")
    assert f.services["nginx"].running


def test_configured_worker_host():
    f = parse_facts(captured("facts_worker_configured.txt"))
    assert f.services["redis-server"].running and f.services["supervisor"].running
    redis = f.paths["/etc/redis/redis.conf"]
    assert (redis.owner, redis.group, redis.mode) == ("redis", "redis", 0o640)


SYSTEMD = """@@whipup-facts 1
@@system
init systemd
now 1700000000
os ubuntu 24.04
apt_lists 12
apt_updated
@@packages
ii \tnginx
rc \told-removed
hi \theld
@@paths
other\t/dev/null-ish
@@users
@@services
nginx\tactive\tenabled
redis-server\tinactive\tdisabled
ghost\tabsent\t-
@@pending
nginx:reload
foo@bar.service:restart
@@end
"""


def test_systemd_host_and_package_states():
    """Synthetic (no systemd host on the local cloud): the systemd branch of the same format."""
    f = parse_facts(SYSTEMD)
    assert f.init == "systemd" and f.apt_updated is None
    assert f.packages == {"nginx", "held"}            # rc: removed, config files left: not installed
    assert f.services["nginx"] == ServiceFact("active", True)
    assert f.services["redis-server"] == ServiceFact("inactive", False)
    assert f.services["ghost"] == ServiceFact("absent", None)
    assert f.paths["/dev/null-ish"] == PathFact("other")
    assert f.pending == {("nginx", "reload"), ("foo@bar.service", "restart")}
    assert parse_facts((DATA / "facts_db_configured.txt").read_text()).pending == frozenset()


def test_sysv_services_say_whether_they_start_at_boot():
    """On a sysv host (the local cloud's) a service is enabled when a start link of the default runlevel runs
    its init script: the facts script says enabled or disabled; `-` (no init script, or a capture of an
    older whipup, as the files in data/) says nothing."""
    text = SYSTEMD.replace("init systemd", "init sysv").replace(
        "nginx\tactive\tenabled\nredis-server\tinactive\tdisabled\n",
        "nginx\tactive\tenabled\nredis-server\tinactive\tdisabled\npostgresql\tactive\t-\n")
    f = parse_facts(text)
    assert f.init == "sysv"
    assert f.services["nginx"] == ServiceFact("active", True)
    assert f.services["redis-server"] == ServiceFact("inactive", False)
    assert f.services["postgresql"] == ServiceFact("active", None)
    script = facts_script(FactsRequest(services=("postgresql",)))
    assert "if for l in /etc/rc2.d/S[0-9][0-9]postgresql; do [ -x \"$l\" ] && break; done; [ -x \"$l\" ]; " \
           "then e=enabled; else e=disabled; fi" in script


@pytest.mark.parametrize("text, message", [
    ("", "no facts output"),
    ("Last login: ...\n", "not whipup facts output"),
    ("@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n", "truncated"),
    ("@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n@@bogus\n@@end\n", "line 5: unknown section"),
    ("@@whipup-facts 1\n@@system\ninit runit\nnow 1\n@@end\n", "line 3: unknown init system 'runit'"),
    ("@@whipup-facts 1\n@@system\ninit sysv\n@@end\n", "lacks 'now'"),
    ("@@whipup-facts 1\n@@system\ninit sysv\nnow x\n@@end\n", "line 4: now: expected a number"),
    ("@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n@@paths\nfile\t/a\troot:root:644\tabc\n@@end\n",
     "line 6: bad sha256"),
    ("@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n@@users\nuser\tdemo:x:1\n@@end\n", "expected a passwd line"),
    ("@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n@@postgres\nrole\tdemo\tSCRAM-x\n@@end\n",
     "bad postgres fact 'role'"),
    ("@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n@@postgres\n@@end\n", "lacks its status line"),
    ("@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n@@pending\nnginx:bounce\n@@end\n", "bad pending handler"),
])
def test_malformed_output_is_an_error_naming_the_line(text, message):
    with pytest.raises(FactsError, match=message):
        parse_facts(text)


def test_postgres_errors_never_echo_a_verifier():
    with pytest.raises(FactsError) as info:
        parse_facts("@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n@@postgres\nrole\tdemo\tSCRAM-SECRET\tx\ty\n@@end\n")
    assert "SCRAM-SECRET" not in str(info.value)


def test_facts_command_is_one_sudo_sh_and_rejects_odd_paths():
    command = facts_command(FactsRequest(paths=("/etc/a b",), services=("nginx",), users=("demo",)))
    assert command.startswith("sudo -n -- sh -c ")
    with pytest.raises(ValueError, match="absolute"):
        facts_script(FactsRequest(paths=("etc/relative",)))
    with pytest.raises(ValueError, match="tabs"):
        facts_script(FactsRequest(paths=("/etc/a\tb",)))


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-like machine")
def test_the_script_runs_under_sh_and_its_output_parses(tmp_path):
    """The facts script itself, run on this machine (no root needed for these facts)."""
    (tmp_path / "f").write_text("hello\n")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    request = FactsRequest(paths=(str(tmp_path / "f"), str(tmp_path / "l"), str(tmp_path), str(tmp_path / "no")),
                           services=("whipup-no-such-service",), users=("root", "whipup-no-such-user"))
    out = subprocess.run(["sh", "-c", facts_script(request)], capture_output=True, text=True, check=True).stdout
    f = parse_facts(out)
    assert f.paths[str(tmp_path / "f")].sha256 == (
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")   # sha256("hello\n")
    assert f.paths[str(tmp_path / "l")] == PathFact("link", target=str(tmp_path / "f"))
    assert f.paths[str(tmp_path)].kind == "dir" and f.paths[str(tmp_path / "no")] == PathFact("absent")
    assert f.users["root"].home == "/root" and f.users["whipup-no-such-user"] is None
    assert f.services["whipup-no-such-service"].state == "absent"
    assert "dpkg" in f.packages
    assert f.pending == frozenset()   # no /var/lib/whipup/pending here (or an empty one)


def test_the_slow_facts_run_side_by_side_and_print_in_order(tmp_path):
    """Each service's status and psql's login start at once, in the background, each into a file of a
    temporary directory: the output keeps the request's order, and the directory is gone at the end."""
    names = ("whipup-no-such-b", "whipup-no-such-a", "whipup-no-such-c")
    script = facts_script(FactsRequest(services=names, postgres=("demo", "demo")))
    assert script.count(") > \"$w/") == 4 and script.index("&\necho \"init $init\"") > 0
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}).stdout
    section = out.split("@@services\n")[1].split("@@pending")[0]
    assert [line.split("\t")[0] for line in section.splitlines()] == list(names)
    assert "@@postgres\nstatus\t" in out
    assert list(tmp_path.iterdir()) == []
