"""configure over fake connections: command counts, dry runs, secrets, per-host failures, the task boundary."""
import dataclasses
import io
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Context, Exit

from fabfile import inventory
from fabfile.configure import lock as configure_lock
from fabfile.configure import run as configure_run
from fabfile.configure import slotsync
from fabfile.configure import tasks as configure_tasks
from fabfile.configure.commands import psql_command, read_files_script
from fabfile.configure.facts import MAGIC, facts_command
from fabfile.configure.plan import Desired
from fabfile.configure.scram import scram_verifier
from fabfile.configure.templates import TemplateError
from fabfile.layout import Layout
from fabfile.nodes import Node
from fabfile.remote import HostFailures, sudo_sh
from fabfile.vault import secret

from local_host import LocalHost

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000


def node(role, index, ip):
    return Node(role, index, f"t-{role}-{index}", f"i-{role}{index}", "running", ip, None, None)


NODES = [node("proxy", 0, "10.0.0.5"), node("app", 0, "10.0.0.10"), node("db", 0, "10.0.0.20"),
         node("worker", 0, "10.0.0.30")]


def facts_text(want: Desired, *, ok: bool = True, init: str = "sysv", password: str | None = None,
               postgresql: str | None = "15") -> str:
    """What the facts script prints on a host that is exactly `want` (ok, with `postgresql` installed where
    its templates use it) or untouched (not ok)."""
    has_pg = ok and postgresql is not None and bool(want.missing_host_values())
    want = want.for_host({"postgresql": postgresql}) if has_pg else want
    lines = [MAGIC, "@@system", f"init {init}", f"now {NOW}", "os debian 12",
             *([f"postgresql {postgresql}"] if has_pg else []),
             f"apt_lists {3 if ok else 0}", f"apt_updated {NOW - 60}", "@@packages", "ii \tapt"]
    lines += [f"ii \t{p}" for p in want.packages] if ok else []
    lines.append("@@paths")
    for d in want.dirs:
        lines.append(f"dir\t{d.path}\t{d.owner}:{d.group}:{int(d.mode, 8):o}" if ok else f"absent\t{d.path}")
    for f in want.files:
        lines.append(f"file\t{f.path}\t{f.owner}:{f.group}:{int(f.mode, 8):o}\t{f.sha256}" if ok
                     else f"absent\t{f.path}")
    lines += [f"link\t{link.path}\t{link.target}" if ok else f"absent\t{link.path}" for link in want.links]
    lines += [f"absent\t{a.path}" for a in want.absent]
    lines.append("@@users")
    if want.user:
        u = want.user
        lines.append(f"user\t{u.name}:x:999:999::{u.home}:{u.shell}" if ok else f"absent\t{u.name}")
    lines.append("@@services")
    lines += [f"{s}\t{'active' if ok else 'absent'}\t{'enabled' if ok else '-'}" for s in want.services]
    if want.postgres:
        pg = want.postgres
        lines.append("@@postgres")
        if ok:
            lines += [f"role\t{pg.role}\t{scram_verifier(password, os.urandom(16))}\ttrue", f"db\t{pg.database}\t{pg.role}\t"]
        lines.append(f"status\t{'up' if ok else 'down'}")
    return "\n".join(lines + ["@@end", ""])


class Result:
    def __init__(self, exited=0, stdout="", stderr=""):
        self.exited, self.stdout, self.stderr = exited, stdout, stderr


class FakeHost:
    """A connection that answers the facts script with `facts` (a list: one answer per facts command)."""

    def __init__(self, node, facts: list[str], *, fail_on: str | None = None, old_files: dict[str, str] | None = None,
                 answers: dict[str, object] | None = None):   # {part of a command: Result, or fn(command)}
        self.host, self.node = node.private_ip, node
        self.facts, self.fail_on, self.old_files = list(facts), fail_on, old_files or {}
        self.answers = answers or {}
        self.calls: list[tuple[str, str | None]] = []

    def run(self, command, **kw):
        stdin = kw["in_stream"]
        self.calls.append((command, stdin.read() if stdin else None))
        if self.fail_on and self.fail_on in command:
            return Result(1, "", "E: the disk is full\n")
        if MAGIC in command:
            return Result(0, self.facts.pop(0) if len(self.facts) > 1 else self.facts[0])
        for part, answer in self.answers.items():
            if part in command:
                return answer(command) if callable(answer) else answer
        if "@@file" in command:
            import base64
            return Result(0, "".join(f"@@file\t{p}\n{base64.b64encode(t.encode()).decode()}\n"
                                     for p, t in self.old_files.items()) + "@@end\n")
        return Result(0, "")

    def close(self):
        pass


@pytest.fixture
def shipped(cfg):
    return dataclasses.replace(cfg, configure=dataclasses.replace(cfg.configure, templates_dir=REPO / "templates"))


@pytest.fixture
def anchor(monkeypatch, tmp_path):
    """The deploy lock's node (app node 0) as a LocalHost: the lock's commands run here, on a layout under
    tmp_path (its shared/ made: a configured cluster); anchor.calls has what they ran."""
    base = tmp_path / "srv"
    monkeypatch.setattr(configure_lock, "Layout", SimpleNamespace(
        of=lambda cfg: dataclasses.replace(Layout.of(cfg), base=str(base))))
    host = LocalHost("anchor", tmp_path / "bin")
    monkeypatch.setattr(configure_lock, "connect", lambda cfg, n: host)
    (base / "demo" / "shared").mkdir(parents=True)
    host.shared = base / "demo" / "shared"
    return host


@pytest.fixture
def cluster(monkeypatch, shipped, anchor):
    """configure_cluster over FakeHosts: hosts[name] is set by the test before running."""
    hosts: dict[str, FakeHost] = {}
    monkeypatch.setattr(configure_run, "find_nodes", lambda ec2, name: list(NODES))
    monkeypatch.setattr(configure_run, "connect", lambda cfg, n: hosts[n.name])
    monkeypatch.setattr(slotsync, "connect", lambda cfg, n: hosts[n.name])     # the live slots: none here
    # the slot switch of app nodes whose web program changed (test_configure_slotsync runs it): recorded
    monkeypatch.setattr(configure_run, "refresh_changed", lambda cfg, ec2, names, out: go.refreshed.append(names))

    def go(*, role=None, dry_run=False, **lock):
        out = io.StringIO()
        try:
            return (configure_run.configure_cluster(shipped, None, role=role, dry_run=dry_run, out=out, **lock),
                    out.getvalue())
        finally:
            go.output = out.getvalue()
    go.refreshed = []
    return hosts, go


def wants(cfg, dry_run=False):
    return {n.name: w for n in NODES
            for w in [configure_run.desired_for(cfg, [n], NODES, dry_run=dry_run)[n.instance_id]]}


def test_an_up_to_date_cluster_costs_one_command_per_host(shipped, cluster):
    hosts, go = cluster
    password = secret(shipped, "db_password")
    for n in NODES:
        hosts[n.name] = FakeHost(n, [facts_text(wants(shipped)[n.name], password=password)])
    results, out = go()
    assert [(r.name, r.changed, r.commands, r.error) for r in results] == [
        (n.name, 0, 1, None) for n in NODES]
    assert "[t-db-0] changed 0, ok 13, failed 0 (1 ssh command" in out   # cron too (the nightly backup)
    assert inventory.load(shipped) == NODES          # the cloud's list it asked for: the next run starts from it


def test_a_cold_host_runs_each_stage_once_and_rereads_facts_after_installing(shipped, cluster):
    hosts, go = cluster
    want = wants(shipped)["t-proxy-0"]
    installed = facts_text(want, ok=False).replace("apt_lists 0", "apt_lists 3").replace(
        "@@packages\nii \tapt", "@@packages\nii \tapt\n" + "\n".join(f"ii \t{p}" for p in want.packages))
    installed = installed.replace("absent\t/etc/nginx/sites-enabled/default",
                                  "link\t/etc/nginx/sites-enabled/default\t/etc/nginx/sites-available/default")
    hosts["t-proxy-0"] = FakeHost(NODES[0], [facts_text(want, ok=False), installed])
    (r,), out = go(role="proxy")
    steps = [c for c, _ in hosts["t-proxy-0"].calls]
    assert len(steps) == r.commands == 5                               # facts, packages, facts, files, services
    assert MAGIC in steps[0] and "apt-get install" in steps[1] and MAGIC in steps[2]
    assert "base64 -d | tar" in steps[3] and "rm -f /etc/nginx/sites-enabled/default" in steps[3]
    assert "service nginx reload" in steps[4]
    assert hosts["t-proxy-0"].calls[3][1]                              # the files, on stdin
    assert r.changed == r.plan.changes and r.services == ["reload nginx"]
    assert "[t-proxy-0] packages: apt-get update (package lists missing); install 5 package(s)" in out
    assert "[t-proxy-0] facts: again, after installing packages" in out


def test_dry_run_reads_only_and_prints_diffs(shipped, cluster):
    hosts, go = cluster
    want = wants(shipped, dry_run=True)["t-proxy-0"]
    site = "/etc/nginx/sites-available/whipup.conf"
    text = facts_text(want).replace(next(f.sha256 for f in want.files if f.path == site), "f" * 64)
    hosts["t-proxy-0"] = FakeHost(NODES[0], [text], old_files={site: "upstream old {}\n"})
    (r,), out = go(role="proxy", dry_run=True)
    # exactly two read-only commands: the facts, then the current content of the file that would change
    assert [c for c, _ in hosts["t-proxy-0"].calls] == [
        facts_command(want.facts_request()), sudo_sh(read_files_script([site]))]
    assert f"--- a{site}\n" in out and f"+++ b{site}\n" in out and "-upstream old {}" in out
    assert "[t-proxy-0] would change 2, ok" in out and "would reload nginx" in out


def test_the_db_password_appears_in_no_command_stdin_or_output(shipped, cluster):
    hosts, go = cluster
    password = secret(shipped, "db_password")
    want = wants(shipped)["t-db-0"]
    hosts["t-db-0"] = FakeHost(NODES[2], [facts_text(want, ok=False), facts_text(want, ok=False).replace(
        "@@packages\nii \tapt", "@@packages\nii \tapt\n" + "\n".join(f"ii \t{p}" for p in want.packages)).replace(
        "os debian 12", "os debian 12\npostgresql 15")])            # installing postgresql made /etc/postgresql/15
    (r,), out = go(role="db")
    calls = hosts["t-db-0"].calls
    sql = next(s for c, s in calls if c == psql_command())
    assert "ALTER ROLE \"demo\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:" in sql
    for command, stdin in calls:
        assert password not in command and password not in (stdin or "")
    assert password not in out


def test_a_failing_host_is_reported_with_the_others(shipped, cluster):
    hosts, go = cluster
    password = secret(shipped, "db_password")
    for n in NODES:
        hosts[n.name] = FakeHost(n, [facts_text(wants(shipped)[n.name], password=password)])
    hosts["t-worker-0"].fail_on = MAGIC
    with pytest.raises(HostFailures) as info:
        go()
    assert str(info.value).startswith("configure failed on 1 host(s):\n  t-worker-0: 10.0.0.30: facts failed (exit 1)")
    for n in NODES[:3]:
        assert f"[{n.name}] changed 0, ok" in go.output
    assert "[t-worker-0] FAILED at facts: 10.0.0.30: facts failed (exit 1):" in go.output


def test_a_failed_stage_counts_what_was_done_and_what_was_not(shipped, cluster):
    hosts, go = cluster
    want = wants(shipped)["t-app-0"]
    text = facts_text(want).replace("supervisor\tactive", "supervisor\tinactive").replace(
        "dir\t/srv/demo\t", "absent\t/srv/demo\t").replace("absent\t/srv/demo\tdemo:demo:755", "absent\t/srv/demo")
    hosts["t-app-0"] = FakeHost(NODES[1], [text], fail_on="service supervisor start")
    with pytest.raises(HostFailures):
        go(role="app")
    assert "[t-app-0] changed 1, ok" in go.output and "failed 1" in go.output
    assert "FAILED at services:" in go.output


def test_a_template_error_stops_before_any_host_is_contacted(shipped, cluster, tmp_path):
    hosts, go = cluster
    broken = tmp_path / "tpl"
    (broken / "etc/nginx/sites-available").mkdir(parents=True)
    for src in (REPO / "templates").rglob("*.j2"):
        (broken / src.relative_to(REPO / "templates")).parent.mkdir(parents=True, exist_ok=True)
        (broken / src.relative_to(REPO / "templates")).write_text(src.read_text())
    (broken / "etc/nginx/sites-available/whipup.conf.j2").write_text("a\n{{ oops }}\n")
    cfg = dataclasses.replace(shipped, configure=dataclasses.replace(shipped.configure, templates_dir=broken))
    with pytest.raises(TemplateError, match=r"whipup\.conf\.j2:2: 'oops' is undefined"):
        configure_run.configure_cluster(cfg, None, out=io.StringIO())
    assert hosts == {}   # no connection was asked for


def test_the_task_turns_host_failures_into_a_nonzero_exit(roles_file, monkeypatch):
    failure = HostFailures("configure", [])
    monkeypatch.setattr(configure_tasks, "connect_ec2", lambda cfg: (None, None))

    def boom(*a, **k):
        raise failure
    monkeypatch.setattr(configure_tasks, "configure_cluster", boom)
    with pytest.raises(Exit) as info:
        configure_tasks.configure(Context(), config=str(roles_file))
    assert info.value.code == 1 and str(info.value.message).startswith("configure failed on 0 host(s)")


def test_the_task_rejects_an_unknown_role_before_contacting_anything(roles_file, monkeypatch):
    monkeypatch.setattr(configure_tasks, "connect_ec2", lambda cfg: pytest.fail("cloud opened"))
    with pytest.raises(Exit, match="unknown role 'web'"):
        configure_tasks.configure(Context(), role="web", config=str(roles_file))


def test_dry_run_diffs_mask_secrets_and_stay_short():
    from fabfile.configure.plan import DesiredFile, Plan, WriteFile
    from fabfile.configure.report import dry_run_report, file_diff

    f = DesiredFile("/etc/app.env", "KEY=s3cr3t-value\nDEBUG=0\n", "root", "root", "0600", src="app.env.j2")
    report = dry_run_report("h", Plan((WriteFile(f, "0" * 64),), ()), {"/etc/app.env": "KEY=old-s3cr3t\n"},
                            ["s3cr3t-value", "old-s3cr3t"])
    assert "s3cr3t" not in report
    assert "     KEY=********\n    +DEBUG=0" in report   # both values masked: the line reads unchanged
    long = file_diff("/x", None, "".join(f"line {i}\n" for i in range(500)), [], limit=10)
    assert long.splitlines()[-1] == "... (493 more diff lines)" and len(long.splitlines()) == 11


def test_a_config_its_service_rejects_is_not_installed_and_the_error_shows_its_words(shipped, cluster):
    """The files stage stops at nginx's check of the staged copy (exit 65): the host fails at files, no
    services command is sent (no reload), and the error carries nginx's words and the template's name."""
    hosts, go = cluster
    want = wants(shipped)["t-proxy-0"]
    site = "/etc/nginx/sites-available/whipup.conf"
    text = facts_text(want).replace(next(f.sha256 for f in want.files if f.path == site), "f" * 64)
    words = ('@@rejected\tnginx\n2026/01/31 12:00:00 [emerg] 41#41: unknown directive "bogus_directive" in '
             '/etc/nginx/sites-enabled/whipup.conf:14\nnginx: configuration file /etc/nginx/nginx.conf test failed\n')
    hosts["t-proxy-0"] = FakeHost(NODES[0], [text], answers={"nginx -t -q -c": Result(65, "", words)})
    with pytest.raises(HostFailures) as info:
        go(role="proxy")
    steps = [c for c, _ in hosts["t-proxy-0"].calls]
    assert len(steps) == 2 and MAGIC in steps[0] and "nginx -t -q -c" in steps[1]     # facts, files: no services
    assert str(info.value) == (
        "configure failed on 1 host(s):\n"
        "  t-proxy-0: files: nginx rejected the new configuration (nothing was installed; the live files are "
        'unchanged): 2026/01/31 12:00:00 [emerg] 41#41: unknown directive "bogus_directive" in '
        "/etc/nginx/sites-enabled/whipup.conf:14\n"
        "      nginx: configuration file /etc/nginx/nginx.conf test failed\n"
        "    /etc/nginx/sites-enabled/whipup.conf: a link to /etc/nginx/sites-available/whipup.conf, rendered from "
        "etc/nginx/sites-available/whipup.conf.j2")
    assert "[t-proxy-0] changed 0, ok" in go.output and "failed 2" in go.output
    assert "[t-proxy-0] files: write /etc/nginx/sites-available/whipup.conf (changed" in go.output
    assert "; checked first: nginx -t on a copy of /etc/nginx" in go.output
    assert "FAILED at files: nginx rejected the new configuration" in go.output
