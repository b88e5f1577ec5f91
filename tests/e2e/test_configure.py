"""`fab configure` on the local cloud, end to end, on the session's cluster (`e2e_cluster`).

The tests run in order: a cold configure of the 4 roles; nginx, PostgreSQL (a login from the app node
accepted, one from the proxy node refused) and redis checked on the hosts; a second configure that changes
and restarts nothing; a template edited in a copy of templates/ (a `--dry-run` first, which shows the diff
and leaves the hosts alone, then a real run that changes exactly that file and reloads exactly nginx).
The edit is undone and configure re-run at the end: test_deploy uses the same cluster afterwards.

Figures for the record are printed as `MEASURE ...` lines (run with -s to see them).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, fab
from .demo import sandbox_settings

pytestmark = pytest.mark.e2e

SUMMARY = re.compile(r"^\[(?P<host>[^\]]+)\] changed (?P<changed>\d+), ok (?P<ok>\d+), failed (?P<failed>\d+) "
                     r"\((?:(?P<services>[^;\n()]*); )?(?P<commands>\d+) ssh commands?, (?P<seconds>[\d.]+) s\)$", re.M)
SITE = "/etc/nginx/sites-available/whipup.conf"
EDIT = '    add_header X-Whipup-Edit "e2e" always;\n'

# A PostgreSQL login attempt with nothing but python3: the startup packet, then the server's first answer
# ('R': it asks for the password, i.e. pg_hba.conf let us in; 'E': refused, with the reason; 'T': the
# connection timed out, i.e. the db node's security group dropped it).
PG_PROBE = r"""
import socket, struct, sys
host, user, db = sys.argv[1:4]
try:
    s = socket.create_connection((host, 5432), timeout=3)
except socket.timeout:
    print("T timed out")
    sys.exit(0)
body = b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
s.sendall(struct.pack("!ii", 8 + len(body), 196608) + body)
kind = s.recv(1).decode()
print(kind, s.recv(4096)[4:].replace(b"\0", b" ").decode(errors="replace").strip())
"""


class Cluster:
    """The e2e cluster through a roles.yaml copy whose templates_dir is a copy of templates/."""

    def __init__(self, env: dict, roles: Path, tmp: Path):
        from fabfile.cloud import open_cloud
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        self.env = env
        self.templates = tmp / "templates"
        shutil.copytree(ROOT / "templates", self.templates)
        data = yaml.safe_load(roles.read_text())
        data.setdefault("configure", {})["templates_dir"] = str(self.templates)
        self.roles = tmp / "roles.yaml"
        self.roles.write_text(yaml.safe_dump(data, sort_keys=False))
        self.cfg = load_config(self.roles)
        ec2 = open_cloud(self.cfg.cluster.target, self.cfg.cluster.region).client("ec2")
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(ec2, self.cfg.cluster.name)}
        assert sorted(self.nodes) == ["app-0", "db-0", "proxy-0", "worker-0"]

    def configure(self, *args: str, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
        start = time.monotonic()
        p = fab("configure", "--config", str(self.roles), *args, env=self.env, check=check)
        return p, time.monotonic() - start

    def ssh(self, node: str, command: str, *, stdin: str | None = None, check: bool = True) -> str:
        from fabfile.remote import run
        from fabfile.ssh import connect

        conn = connect(self.cfg, self.nodes[node])
        try:
            return run(conn, command, step=command[:40], stdin=stdin, check=check, timeout=120).stdout
        finally:
            conn.close()

    def ip(self, node: str) -> str:
        return self.nodes[node].private_ip

    def routed(self, ip: str) -> None:
        out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True).stdout
        assert f" dev {self.env['WHIPUP_SANDBOX_BRIDGE']} " in out, f"{ip} is not a host of this sandbox: {out}"

    def get(self, path: str) -> tuple[int, dict, str]:
        """HTTP from this machine to the proxy's private IP (checked to be routed to this sandbox)."""
        ip = self.ip("proxy-0")
        self.routed(ip)
        try:
            with urllib.request.urlopen(f"http://{ip}{path}", timeout=10) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode(errors="replace")

    def pids(self) -> dict[str, str]:
        """The service processes: their PIDs, and nginx's workers (a reload replaces them)."""
        app = self.cfg.app.name
        out = {
            "nginx master": self.ssh("proxy-0", "cat /run/nginx.pid").strip(),
            "postgres": self.ssh("db-0", "sudo -n sh -c 'head -n 1 /var/lib/postgresql/*/main/postmaster.pid'").strip(),
            "redis": self.ssh("worker-0", "sudo -n cat /run/redis/redis-server.pid").strip(),
            "supervisord app": self.ssh("app-0", "sudo -n cat /var/run/supervisord.pid").strip(),
            "supervisord worker": self.ssh("worker-0", "sudo -n cat /var/run/supervisord.pid").strip(),
        }
        out["nginx workers"] = " ".join(sorted(self.ssh("proxy-0", f"pgrep -P {out['nginx master']}").split()))
        assert all(out.values()), out
        avail = {line.split()[0] for line in self.ssh("app-0", "sudo -n supervisorctl avail").splitlines() if line.strip()}
        assert {f"{app}-web-a", f"{app}-web-b", f"{app}-web-boot"} <= avail, avail
        return out

    def mark(self) -> None:
        for node in self.nodes:
            self.ssh(node, "touch /tmp/whipup-e2e-mark")

    def changed_since_mark(self, node: str) -> list[str]:
        return sorted(self.ssh(node, "sudo -n find /etc /srv -newer /tmp/whipup-e2e-mark "
                                     "\\( -type f -o -type l \\) -print").split())


def eventually(check, timeout: float = 5.0) -> bool:
    """check() turns true within `timeout`. An nginx reload returns once the master has its signal; the
    workers that still run the old configuration finish a moment later."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def summaries(output: str) -> dict[str, dict]:
    found = {m["host"]: m.groupdict() for m in SUMMARY.finditer(output)}
    return {host.rsplit("-", 2)[-2] + "-" + host.rsplit("-", 1)[-1]: v for host, v in found.items()}


@pytest.fixture(scope="module")
def cluster(e2e_cluster, tmp_path_factory):
    env, roles = e2e_cluster
    with sandbox_settings(env):                     # whipup code in this process: this sandbox
        c = Cluster(env, roles, tmp_path_factory.mktemp("configure"))
        try:
            yield c
        finally:
            # leave the cluster as the shipped templates make it (test_deploy comes next)
            shutil.rmtree(c.templates)
            shutil.copytree(ROOT / "templates", c.templates)
            c.configure(check=False)


def test_first_configure_of_the_4_roles(cluster):
    p, seconds = cluster.configure()
    got = summaries(p.stdout)
    assert sorted(got) == ["app-0", "db-0", "proxy-0", "worker-0"], p.stdout
    for node, s in got.items():
        assert int(s["changed"]) > 0 and s["failed"] == "0", p.stdout
    assert "restart postgresql" in got["db-0"]["services"] and "reload nginx" in got["proxy-0"]["services"]
    for stage in ("facts", "plan", "packages", "files", "services"):
        assert f"[{cluster.nodes['proxy-0'].name}] {stage}" in p.stdout
    print(f"\nMEASURE cold configure, 4 roles: {seconds:.1f} s wall; per host: "
          + ", ".join(f"{n} {s['seconds']} s / {s['commands']} ssh commands" for n, s in sorted(got.items())))


def test_nginx_on_the_proxy_answers(cluster):
    assert cluster.ssh("proxy-0", "curl -s http://127.0.0.1/nginx-health") == "ok\n"
    status, headers, body = cluster.get("/nginx-health")
    assert (status, body, headers.get("Server")) == (200, "ok\n", "nginx")
    status, headers, _ = cluster.get("/")       # proxied to gunicorn, which runs only after a deploy
    assert status == 502 and headers.get("Server") == "nginx"
    assert cluster.ssh("proxy-0", "ls /etc/nginx/sites-enabled").split() == ["whipup.conf"]


def test_postgres_accepts_a_login_from_the_app_node_and_refuses_the_proxy_node(cluster):
    from fabfile.vault import stored

    password = stored(cluster.cfg)["db_password"]
    db = cluster.ip("db-0")
    login = f"PGPASSWORD=$(cat) psql -h {db} -U demo -d demo -X -At -c 'select current_user, inet_client_addr()'"
    assert cluster.ssh("app-0", login, stdin=password).strip() == f"demo|{cluster.ip('app-0')}"
    assert cluster.ssh("worker-0", login, stdin=password).strip() == f"demo|{cluster.ip('worker-0')}"
    wrong = cluster.ssh("app-0", login + " 2>&1", stdin="not-the-password", check=False)
    assert "password authentication failed" in wrong

    assert cluster.ssh("app-0", f"python3 - {db} demo demo", stdin=PG_PROBE).startswith("R ")
    # the proxy node does not reach the port at all: the db role's security group lets in app and worker only
    assert cluster.ssh("proxy-0", f"python3 - {db} demo demo", stdin=PG_PROBE).startswith("T ")
    # behind the group, pg_hba.conf refuses any other address too: the db node's own (no security group
    # between a node and itself)
    refused = cluster.ssh("db-0", f"python3 - {db} demo demo", stdin=PG_PROBE)
    assert refused.startswith("E ") and f'no pg_hba.conf entry for host "{db}"' in refused
    assert cluster.ssh("db-0", "sudo -n -u postgres psql -X -At -c 'show listen_addresses'").strip() == (
        f"localhost,{db}")


def test_redis_serves_the_app_node(cluster):
    ping = (f"python3 -c \"import socket; s=socket.create_connection(('{cluster.ip('worker-0')}', 6379), 5); "
            "s.sendall(b'PING\\r\\n'); print(s.recv(100).decode().strip())\"")
    assert cluster.ssh("app-0", ping).strip() == "+PONG"


def test_a_second_configure_changes_nothing_and_restarts_nothing(cluster):
    before = cluster.pids()
    p, seconds = cluster.configure()
    got = summaries(p.stdout)
    assert sorted(got) == ["app-0", "db-0", "proxy-0", "worker-0"], p.stdout
    for node, s in got.items():
        assert (s["changed"], s["failed"], s["services"], s["commands"]) == ("0", "0", None, "1"), p.stdout
    assert "already ok" in p.stdout
    assert cluster.pids() == before
    print(f"\nMEASURE no-op configure, 4 roles: {seconds:.2f} s wall (fab start to exit); "
          f"ssh commands per host: {sorted({s['commands'] for s in got.values()})}")


def test_dry_run_after_a_template_edit_shows_the_diff_and_leaves_the_hosts_alone(cluster):
    template = cluster.templates / "etc/nginx/sites-available/whipup.conf.j2"
    text = template.read_text()
    anchor = "    client_max_body_size 10m;\n"   # the site's server block (a TLS-only block comes first)
    template.write_text(text.replace(anchor, anchor + EDIT, 1))
    before = cluster.pids()
    site_before = cluster.ssh("proxy-0", f"sha256sum {SITE}")
    cluster.mark()
    p, _ = cluster.configure("--dry-run")
    assert f"--- a{SITE}\n" in p.stdout and f"+++ b{SITE}\n" in p.stdout
    assert "+" + EDIT in p.stdout
    got = {m.group(1): m.group(2) for m in re.finditer(r"^\[[^\]]*-(\w+-\d+)\] would change (\d+), ok", p.stdout, re.M)}
    assert got == {"proxy-0": "2", "app-0": "0", "db-0": "0", "worker-0": "0"}, p.stdout   # the file + reload
    assert "would reload nginx" in p.stdout
    assert cluster.ssh("proxy-0", f"sha256sum {SITE}") == site_before
    assert cluster.pids() == before
    assert all(cluster.changed_since_mark(node) == [] for node in cluster.nodes)
    assert eventually(lambda: "X-Whipup-Edit" not in cluster.get("/nginx-health")[1])


def test_the_edit_changes_exactly_that_file_and_reloads_exactly_nginx(cluster):
    before = cluster.pids()
    cluster.mark()
    p, _ = cluster.configure()
    got = summaries(p.stdout)
    assert sorted(got) == ["app-0", "db-0", "proxy-0", "worker-0"], p.stdout
    assert (got["proxy-0"]["changed"], got["proxy-0"]["services"]) == ("2", "reload nginx"), p.stdout
    assert all(got[n]["changed"] == "0" and got[n]["services"] is None for n in ("app-0", "db-0", "worker-0"))
    assert cluster.changed_since_mark("proxy-0") == [SITE]
    # app node 0 holds the deploy lock configure took for the run, and the run's audit line
    assert cluster.changed_since_mark("app-0") == [f"/srv/{cluster.cfg.app.name}/shared/deploys.log"]
    assert all(cluster.changed_since_mark(n) == [] for n in ("db-0", "worker-0"))
    after = cluster.pids()
    assert after["nginx master"] == before["nginx master"]          # reloaded, not restarted ...
    assert after["nginx workers"] != before["nginx workers"]        # ... and reloaded indeed
    assert {k: v for k, v in after.items() if not k.startswith("nginx")} == {
        k: v for k, v in before.items() if not k.startswith("nginx")}
    assert eventually(lambda: cluster.get("/nginx-health")[1].get("X-Whipup-Edit") == "e2e")


def test_a_broken_template_fails_that_host_only_and_never_lands(cluster):
    """nginx checks the new site on a staged copy of /etc/nginx before it is installed: the host fails at
    files with nginx's words, the live file is unchanged (nothing owed to a later run), the others are fine."""
    template = cluster.templates / "etc/nginx/sites-available/whipup.conf.j2"
    good = template.read_text()
    site_before = cluster.ssh("proxy-0", f"sha256sum {SITE}")
    template.write_text(good.replace("    server_tokens off;\n", "    server_tokens off;\n    bogus_directive on;\n"))
    p, _ = cluster.configure(check=False)
    assert p.returncode == 1
    assert 'unknown directive "bogus_directive"' in p.stderr and f"{cluster.nodes['proxy-0'].name}:" in p.stderr
    assert "rendered from etc/nginx/sites-available/whipup.conf.j2" in p.stderr
    got = summaries(p.stdout)
    assert sorted(got) == ["app-0", "db-0", "proxy-0", "worker-0"], p.stdout   # every host reported
    assert got["proxy-0"]["failed"] == "2" and "FAILED at files: nginx rejected" in p.stdout
    assert cluster.ssh("proxy-0", f"sha256sum {SITE}") == site_before
    assert "test is successful" in cluster.ssh("proxy-0", "sudo -n nginx -t 2>&1")
    assert cluster.get("/nginx-health")[0] == 200                     # still serving its previous config
    template.write_text(good)
    p, _ = cluster.configure("--role", "proxy")
    assert (summaries(p.stdout)["proxy-0"]["changed"], summaries(p.stdout)["proxy-0"]["services"]) == ("0", None)
    assert cluster.ssh("proxy-0", "ls -A /var/lib/whipup/pending") == ""


def test_restoring_the_template_restores_the_site(cluster):
    shutil.copy(ROOT / "templates/etc/nginx/sites-available/whipup.conf.j2",
                cluster.templates / "etc/nginx/sites-available/whipup.conf.j2")
    p, _ = cluster.configure("--role", "proxy")
    assert summaries(p.stdout)["proxy-0"]["services"] == "reload nginx"
    assert eventually(lambda: "X-Whipup-Edit" not in cluster.get("/nginx-health")[1])
    p, _ = cluster.configure()
    assert all(s["changed"] == "0" for s in summaries(p.stdout).values()), p.stdout
