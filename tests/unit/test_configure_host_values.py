"""Host values in templates (`host.postgresql`): the fact, its placeholder in paths the facts script stats,
and the rendered files once the host's facts are read, so PostgreSQL's paths follow the installed version."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from fabfile.configure import run as configure_run
from fabfile.configure.facts import FactsError, FactsRequest, facts_script, parse_facts, path_line
from fabfile.configure.templates import render_role_files
from fabfile.configure.want import Desired, DesiredFile, DesiredLink
from fabfile.vault import secret

from test_configure_run import NODES, FakeHost, facts_text

REPO = Path(__file__).resolve().parents[2]
MARK = "<postgresql-version>"
DB = NODES[2]


@pytest.fixture
def shipped(cfg):
    return dataclasses.replace(cfg, configure=dataclasses.replace(cfg.configure, templates_dir=REPO / "templates"))


def facts_with(system_line: str) -> str:
    return f"@@whipup-facts 1\n@@system\ninit sysv\nnow 1\n{system_line}\n@@end\n"


@pytest.mark.parametrize("line, version", [("postgresql 17", "17"), ("postgresql 15", "15"), ("postgresql", None)])
def test_the_postgresql_fact(line, version):
    f = parse_facts(facts_with(line))
    assert f.postgresql == version
    assert f.host_values == ({"postgresql": version} if version else {})


@pytest.mark.parametrize("line", ["postgresql 17.2", "postgresql main", "postgresql ١٧"])
def test_a_postgresql_fact_that_is_not_a_major_version_is_an_error(line):
    with pytest.raises(FactsError, match=r"line 5: postgresql: expected a major version like 17"):
        parse_facts(facts_with(line))


def test_no_postgresql_line_is_none():
    assert parse_facts(facts_with("os debian 13")).postgresql is None


def test_path_lines():
    assert path_line("/etc/x") == "p /etc/x"
    assert path_line("/etc/x; whoami") == "p '/etc/x; whoami'"
    assert path_line(f"/etc/postgresql/{MARK}/main/pg_hba.conf") == (
        '[ -n "$whipup_pg" ] && p /etc/postgresql/"$whipup_pg"/main/pg_hba.conf')
    assert path_line(f"/x y/{MARK}/{MARK}; whoami") == (
        '[ -n "$whipup_pg" ] && p \'/x y/\'"$whipup_pg"/"$whipup_pg"\'; whoami\'')


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_the_script_reads_the_version_and_stats_its_paths(tmp_path):
    """The facts script's own lines for the version and a placeholder path, run by sh over a fake /etc."""
    etc = tmp_path / "etc"
    for d in ("postgresql/15/main", "postgresql/17/main", "postgresql/notes"):
        (etc / d).mkdir(parents=True)
    (etc / "postgresql/17/main/pg_hba.conf").write_text("local all all peer\n")
    script = facts_script(FactsRequest(paths=(f"/etc/postgresql/{MARK}/main/pg_hba.conf",)))
    script = script.replace("/etc/postgresql", str(etc / "postgresql")).replace("cd / || exit 1", "")
    f = parse_facts(subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout)
    assert f.postgresql == "17"
    assert f.paths[f"{etc}/postgresql/17/main/pg_hba.conf"].kind == "file"
    (etc / "postgresql/17/main/pg_hba.conf").unlink()
    for d in ("17/main", "17", "15/main", "15"):
        (etc / "postgresql" / d).rmdir()
    f = parse_facts(subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout)
    assert f.postgresql is None and f.paths == {}     # no version: the path is not stat'ed at all


def test_templates_render_the_placeholder_and_for_host_puts_the_version(shipped):
    files = render_role_files(shipped, DB, NODES)
    assert [f.path for f in files] == [f"/etc/postgresql/{MARK}/main/conf.d/whipup.conf",
                                       f"/etc/postgresql/{MARK}/main/pg_hba.conf"]
    want = Desired(files=files)
    assert [f.path for f in want.for_host({"postgresql": "17"}).files] == [
        "/etc/postgresql/17/main/conf.d/whipup.conf", "/etc/postgresql/17/main/pg_hba.conf"]
    assert want.for_host({}) is want
    assert want.missing_host_values() == {"postgresql": ("etc/postgresql/main/conf.d/whipup.conf.j2",
                                                         "etc/postgresql/main/pg_hba.conf.j2")}
    assert want.for_host({"postgresql": "17"}).missing_host_values() == {}
    assert all(f.content == g.content for f, g in zip(files, want.for_host({"postgresql": "15"}).files))


def test_for_host_fills_contents_and_links_too():
    want = Desired(files=(DesiredFile(f"/a/{MARK}", f"dir = /var/lib/postgresql/{MARK}/main\n", "root", "root",
                                      "0644", src="a.j2"),),
                   links=(DesiredLink(f"/l/{MARK}", f"/t/{MARK}"),))
    got = want.for_host({"postgresql": "17", "unknown": "x"})
    assert got.files[0].path == "/a/17" and got.files[0].content == "dir = /var/lib/postgresql/17/main\n"
    assert (got.links[0].path, got.links[0].target) == ("/l/17", "/t/17")
    assert got.files[0].sha256 != want.files[0].sha256


def test_an_up_to_date_db_host_costs_one_command_with_its_own_version(shipped, monkeypatch):
    want = configure_run.desired_for(shipped, [DB], NODES, dry_run=False)[DB.instance_id]
    text = facts_text(want, password=secret(shipped, "db_password"), postgresql="17")
    assert "\npostgresql 17\n" in text and "file\t/etc/postgresql/17/main/pg_hba.conf\t" in text
    host = FakeHost(DB, [text])
    monkeypatch.setattr(configure_run, "connect", lambda cfg, n: host)
    r = configure_run.converge_host(shipped, DB, want, dry_run=False, progress=lambda *a: None, secrets=[])
    assert (r.error, r.commands, r.changed) == (None, 1, 0)
    assert '[ -n "$whipup_pg" ] && p /etc/postgresql/"$whipup_pg"/main/pg_hba.conf' in host.calls[0][0]


def test_a_template_using_a_version_the_host_lacks_is_an_error_naming_it(shipped, monkeypatch):
    want = configure_run.desired_for(shipped, [DB], NODES, dry_run=False)[DB.instance_id]
    text = facts_text(want, password=secret(shipped, "db_password"), postgresql=None)  # no /etc/postgresql
    host = FakeHost(DB, [text])
    monkeypatch.setattr(configure_run, "connect", lambda cfg, n: host)
    r = configure_run.converge_host(shipped, DB, want, dry_run=False, progress=lambda *a: None, secrets=[])
    assert r.error == ("etc/postgresql/main/conf.d/whipup.conf.j2, etc/postgresql/main/pg_hba.conf.j2: uses "
                       "host.postgresql, but t-db-0 has no postgresql installed (/etc/postgresql is empty); add "
                       "postgresql to roles.db.packages")
    assert r.commands == 1
