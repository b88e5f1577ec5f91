"""configure and the gunicorn slots (configure/slotsync.py): the proxies' upstream file names each app node's
live slot as deploy left it, and a changed web program reaches gunicorn by a slot switch, never a restart."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from deploy_fakes import Rel, World, make_cluster

from fabfile.configure import run as configure_run
from fabfile.configure import slotsync
from fabfile.configure.plan import Plan, WriteFile
from fabfile.configure.report import HostResult
from fabfile.configure.want import DesiredFile
from fabfile.layout import Layout
from fabfile.nodes import Node
import test_configure_run as run_tests

anchor, cluster = run_tests.anchor, run_tests.cluster      # their fixtures, used here

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = "/etc/nginx/whipup/demo-upstream.conf"
SITE = "/etc/nginx/sites-available/whipup.conf"
R2 = "20240201000000-2222222"


def node(role, index, ip, state="running"):
    return Node(role, index, f"t-{role}-{index}", f"i-{role}{index}", state, ip, None, None)


NODES = [node("proxy", 0, "10.0.0.5"), node("app", 1, "10.0.0.11"), node("app", 0, "10.0.0.10"),
         node("app", 2, "10.0.0.12", "stopped"), node("db", 0, "10.0.0.20"), node("worker", 0, "10.0.0.30")]


class Answer:
    def __init__(self, stdout):
        self.exited, self.stdout, self.stderr = 0, stdout, ""


class Conn:
    """An app node's connection: answers the readlink of slots/live."""

    def __init__(self, name, live, asked):
        self.host, self.name, self.live, self.asked = name, name, live, asked

    def run(self, command, **kw):
        self.asked.append((self.name, command))
        if self.live is None:
            raise OSError("no route to host")
        return Answer(self.live)

    def close(self):
        pass


@pytest.fixture
def shipped(cfg):
    return dataclasses.replace(cfg, configure=dataclasses.replace(cfg.configure, templates_dir=REPO / "templates"))


@pytest.fixture
def hosts(monkeypatch):
    """{app node name: what `readlink slots/live` prints (None: unreachable)}; the commands asked."""
    lives: dict[str, str | None] = {}
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(slotsync, "connect", lambda cfg, n: Conn(n.name, lives.get(n.name, ""), asked))
    return lives, asked


def test_the_live_slot_is_read_with_readlink():
    assert slotsync.live_slot_command(Layout("demo", "demo.settings", "requirements.txt")) == (
        "readlink /srv/demo/slots/live 2>/dev/null; true")
    evil = Layout("demo", "demo.settings", "requirements.txt", base="/srv/x; whoami")
    assert slotsync.live_slot_command(evil) == "readlink '/srv/x; whoami/demo/slots/live' 2>/dev/null; true"
    assert [slotsync.parse_live_slot(t) for t in ("a\n", "b", "", "c\n", "live\n", "a b\n")] == [
        "a", "b", None, None, None, None]


def test_live_slots_asks_the_running_app_nodes_only(shipped, hosts):
    lives, asked = hosts
    lives.update({"t-app-0": "b\n", "t-app-1": "\n"})
    assert slotsync.live_slots(shipped, NODES) == {"t-app-0": "b"}      # t-app-1: never deployed
    assert sorted(n for n, _ in asked) == ["t-app-0", "t-app-1"]           # not the stopped one, nor others
    lives["t-app-0"] = None                                                # unreachable: left out, no error
    assert slotsync.live_slots(shipped, NODES) == {}


def test_the_shipped_site_includes_the_upstream_file(shipped, hosts):
    files = configure_run.render_role_files(shipped, NODES[0], NODES)
    site = next(f for f in files if f.path == SITE)
    assert slotsync.includes_upstream(shipped, (site,))
    assert not slotsync.includes_upstream(shipped, tuple(f for f in files if f.path != SITE))
    other = dataclasses.replace(site, content=site.content.replace(UPSTREAM, "/etc/nginx/other.conf"))
    assert not slotsync.includes_upstream(shipped, (other,))
    app_files = configure_run.render_role_files(shipped, NODES[2], NODES)
    assert not slotsync.includes_upstream(shipped, app_files)


def test_the_upstream_file_names_each_app_nodes_live_slot_and_reloads_what_the_site_does(shipped):
    site = DesiredFile(SITE, f"upstream x {{ include {UPSTREAM}; }}\n", "root", "root", "0644", notify="nginx",
                       action="reload", src="etc/nginx/sites-available/whipup.conf.j2")
    files = slotsync.upstream_files(shipped, (site,), NODES, {"t-app-0": "b"})
    assert files[0] == site and len(files) == 2
    assert files[1] == DesiredFile(UPSTREAM, (
        "# whipup (managed): each app node's live gunicorn slot; every deploy and rollback rewrites it.\n"
        "server 10.0.0.10:8001 max_fails=1 fail_timeout=10s;  # t-app-0\n"      # live in slot b
        "server 10.0.0.11:8000 max_fails=1 fail_timeout=10s;  # t-app-1\n"      # none yet: slot a's port
        "server 10.0.0.12:8000 max_fails=1 fail_timeout=10s;  # t-app-2\n"),    # stopped: back on boot
        "root", "root", "0644", notify="nginx", action="reload", src="(whipup: the live slots of the app nodes)")


def test_no_upstream_file_where_nothing_includes_it_or_one_is_already_there(shipped):
    other = DesiredFile("/etc/x.conf", "x\n", "root", "root", "0644")
    assert slotsync.upstream_files(shipped, (other,), NODES, {}) == (other,)
    site = DesiredFile(SITE, f"include {UPSTREAM};\n", "root", "root", "0644", notify="nginx", action="reload")
    own = DesiredFile(UPSTREAM, "server 10.9.9.9:80;\n", "root", "root", "0644")
    assert slotsync.upstream_files(shipped, (site, own), NODES, {}) == (site, own)   # the user's template wins
    lone = slotsync.upstream_files(shipped, (site,), [NODES[0], node("app", 0, None)], {})
    assert lone[1].content == "server 127.0.0.1:9 down;  # no app node\n"


def test_configure_renders_the_upstream_deploy_left(shipped):
    wanted = configure_run.desired_for(shipped, [NODES[0]], NODES, dry_run=True, live={"t-app-0": "b"})
    upstream = next(f for f in wanted[NODES[0].instance_id].files if f.path == UPSTREAM)
    assert "server 10.0.0.10:8001 " in upstream.content and "server 10.0.0.11:8000 " in upstream.content
    first = configure_run.desired_for(shipped, [NODES[0]], NODES, dry_run=True)      # none read: slot a's
    assert "server 10.0.0.10:8000 " in next(f for f in first[NODES[0].instance_id].files if f.path == UPSTREAM).content
    app = configure_run.desired_for(shipped, [NODES[2]], NODES, dry_run=True, live={"t-app-0": "b"})
    assert all(f.path != UPSTREAM for f in app[NODES[2].instance_id].files)


def test_a_configure_run_reads_the_live_slots_under_the_lock_for_the_proxies_upstream(shipped, cluster):
    fakes, go = cluster
    for n in run_tests.NODES:
        fakes[n.name] = run_tests.FakeHost(n, [run_tests.facts_text(run_tests.wants(shipped)[n.name], ok=False)],
                                           answers={"slots/live": run_tests.Result(0, "b\n")})
    go(role="proxy", dry_run=True)
    assert [c for c, _ in fakes["t-app-0"].calls] == ["readlink /srv/demo/slots/live 2>/dev/null; true"]
    assert "+server 10.0.0.10:8001 max_fails=1 fail_timeout=10s;  # t-app-0" in go.output


def result(name, role, paths, error=None):
    writes = tuple(WriteFile(DesiredFile(p, "x", "root", "root", "0644"), None) for p in paths)
    return HostResult(name, role, plan=Plan(actions=writes), error=error)


def test_web_program_changed_names_the_app_nodes_whose_slots_program_file_was_written(shipped):
    web = "/etc/supervisor/conf.d/demo-web.conf"
    results = [result("t-app-0", "app", [web]), result("t-app-1", "app", ["/etc/supervisor/conf.d/demo-worker.conf"]),
               result("t-app-2", "app", [web], error="E: disk full"), result("t-proxy-0", "proxy", [web]),
               HostResult("t-app-3", "app")]
    assert slotsync.web_program_changed(shipped, results) == ["t-app-0"]


def test_a_changed_web_program_is_applied_by_a_slot_switch_on_those_nodes(shipped, monkeypatch):
    from fabfile.deploy import cluster as deploy_cluster

    world = World("3" * 40)
    cl, fakes, printed = make_cluster(shipped, world, {R2: Rel("2" * 40)}, R2)
    monkeypatch.setattr(deploy_cluster, "open_cluster", lambda cfg, ec2, *, roles, out: cl)
    out = io.StringIO()
    slotsync.refresh_changed(shipped, None, ["t-app-0"], out)
    assert world.stages("t-app-0") == ["state", "boot", "switch", "go live", "drain"]
    assert world.stages("t-proxy-0") == ["probe", "upstream", "probe"] and world.stages("t-worker-0") == []
    app = fakes["app"]
    assert app.live == "b" and app.slots["b"].release == R2 and app.slots["a"].running   # a: warm, not restarted
    assert world.reached(fakes["proxy"].upstream) == [("t-app-0", "b", R2)]
    assert "web program changed on t-app-0: applied by a slot switch (no restart)" in printed
    assert not world.unclassified


def test_nothing_changed_opens_no_cluster(shipped, monkeypatch):
    from fabfile.deploy import cluster as deploy_cluster

    monkeypatch.setattr(deploy_cluster, "open_cluster", lambda *a, **k: pytest.fail("a cluster was opened"))
    slotsync.refresh_changed(shipped, None, [], io.StringIO())


def test_a_configure_run_asks_the_slot_switch_where_it_wrote_the_web_program(shipped, cluster):
    from fabfile.vault import secret

    fakes, go = cluster
    password = secret(shipped, "db_password")
    for n in run_tests.NODES:
        want = run_tests.wants(shipped)[n.name]
        text = run_tests.facts_text(want, password=password)
        if n.name == "t-app-0":                       # its web program file differs from the template's
            web = next(f for f in want.files if f.path == "/etc/supervisor/conf.d/demo-web.conf")
            text = text.replace(web.sha256, "f" * 64)
        fakes[n.name] = run_tests.FakeHost(n, [text])
    go(dry_run=True)
    assert go.refreshed == []                         # a dry run switches nothing
    go()
    assert go.refreshed == [["t-app-0"]]
    updates = [c for c, _ in fakes["t-app-0"].calls if "supervisorctl reread" in c]
    assert len(updates) == 1 and "grep -Ev -- '\"'\"'-web-[ab]$'\"'\"'" in updates[0]   # never the slots themselves
