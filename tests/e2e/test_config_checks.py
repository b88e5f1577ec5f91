"""Validate before installing, and configure under the deploy lock (issue 12, items 4 and 3), end to end on
a private local cloud (#10): a proxy and an app node (no db role: the app on SQLite), whipped up from nothing (the first configure takes the
deploy lock only once the app node's files made its directory; the deploy that follows takes it again).

In order, on one cluster:
1. a copy of templates/ with an unknown directive in the nginx site: `fab configure` exits 1 with nginx's
   own message naming the template; the live file's sha256 is unchanged, `nginx -t` on the host passes,
   nginx was not reloaded, nothing is owed to a later run, and the site still answers through the proxy;
2. the same for supervisor (an unknown user in the web program): supervisord's own words, file unchanged;
3. a good nginx change lands and is reloaded (the master stays, its workers are new);
4. a deploy holding the lock: `fab configure` is refused at once naming it; `fab configure --wait` waits,
   saying who holds it, and runs once the deploy is done; both are in the audit log, in that order;
5. `fab whip-up-full-system` again on the running cluster: configure then deploy, no deadlock.

Code changes are commits in a standalone git copy of examples/demo; HTTP goes only to the proxy's private
IP once `ip route get` shows it on this sandbox's bridge. Figures are printed as `MEASURE ...` lines (-s).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, cluster_roles, fab, make_network, sandbox_env
from .demo import RELEASE, DeployedCluster, demo_repo, sandbox_settings

pytestmark = pytest.mark.e2e

SANDBOX = 10
SITE = "/etc/nginx/sites-available/whipup.conf"
SITE_TEMPLATE = "etc/nginx/sites-available/whipup.conf.j2"
WEB_TEMPLATE = "etc/supervisor/conf.d/app-web.conf.j2"
SLOW_START = "\nimport time  # noqa: E402\ntime.sleep(4)   # e2e: a release whose app takes 4 s to load\n"


class Background:
    """`fab ARGS` started now, its output in files."""

    def __init__(self, env: dict, *args: str):
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "fabric", *args], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err, text=True)
        self.ended: float | None = None

    def wait(self, timeout: float = 600) -> "Background":
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"fab did not end within {timeout} s:\n{self.stdout}\n{self.stderr}") from None
        self.ended = self.ended or time.monotonic()
        return self

    def _read(self, f) -> str:
        f.seek(0)
        return f.read()

    @property
    def stdout(self) -> str:
        return self._read(self.out)

    @property
    def stderr(self) -> str:
        return self._read(self.err)


class Cluster(DeployedCluster):
    """The cluster: a roles.yaml of a proxy and an app node whose templates_dir is a copy of templates/."""

    def __init__(self, env: dict, roles: Path, tmp: Path):
        self.env, self.tmp = env, tmp
        data = yaml.safe_load(roles.read_text())
        for role in ("db", "worker"):       # the app on SQLite in shared/ (a one-node app tier)
            del data["roles"][role]
        self.templates = tmp / "templates"
        shutil.copytree(ROOT / "templates", self.templates)
        data["configure"]["templates_dir"] = str(self.templates)
        self.repo = demo_repo(tmp / "app", "CHECKS_SESSION")
        data["app"]["repo"] = str(self.repo)
        self.roles = tmp / "roles-checks.yaml"
        self.roles.write_text(yaml.safe_dump(data, sort_keys=False))
        self.cfg = None
        self.nodes: dict = {}

    def fab(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return fab(*args, "--config", str(self.roles), env=self.env, check=check, timeout=timeout)

    def background(self, *args: str) -> Background:
        return Background(self.env, *args, "--config", str(self.roles))

    def load(self) -> None:
        from fabfile.cloud import open_cloud
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        self.cfg = load_config(self.roles)
        ec2 = open_cloud(self.cfg.cluster.target, self.cfg.cluster.region).client("ec2")
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(ec2, self.cfg.cluster.name)}
        assert sorted(self.nodes) == ["app-0", "proxy-0"], self.nodes

    def template(self, rel: str) -> Path:
        return self.templates / rel

    def get(self, path: str) -> tuple[int, dict, str]:
        self.routed(self.proxy_ip)
        try:
            with urllib.request.urlopen(f"http://{self.proxy_ip}{path}", timeout=10) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode(errors="replace")

    def page_release(self) -> str:
        status, _, body = self.get("/")
        assert status == 200, body[:500]
        m = RELEASE.search(body)
        return m.group(1) if m else ""

    def nginx(self) -> tuple[str, str]:
        """(master pid, its workers' pids): a reload keeps the first and replaces the second."""
        master = self.ssh("proxy-0", "cat /run/nginx.pid").strip()
        return master, " ".join(sorted(self.ssh("proxy-0", f"pgrep -P {master}").split()))

    def sha(self, node: str, path: str) -> str:
        return self.ssh(node, f"sudo -n sha256sum {path}").split()[0]

    def lock_held(self) -> bool:
        lock = f"/srv/{self.cfg.app.name}/shared/deploy.lock"
        return self.ssh("app-0", f"sudo -n test -d {lock} && echo held || echo free").strip() == "held"

    def audit(self) -> list[dict]:
        log = f"/srv/{self.cfg.app.name}/shared/deploys.log"
        return [json.loads(line) for line in self.ssh("app-0", f"sudo -n cat {log}").splitlines() if line.strip()]


def eventually(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("checks")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    try:
        with sandbox_settings(env):                 # whipup code in this process: this sandbox
            c = Cluster(env, cluster_roles(tmp, "checks", make_network(env, SANDBOX)), tmp)
            start = time.monotonic()
            p = c.fab("whip-up-full-system", timeout=1800)
            print(f"\nMEASURE cold whip-up-full-system, proxy + app: {time.monotonic() - start:.0f} s")
            # the first configure: no lock to take until the app node's files made /srv/<app>/shared
            assert re.search(r"^deploy lock: \S+-app-0 has no /srv/demo/shared yet \(first configure\): no deploy "
                             r"can run; taken once its files are in place$", p.stdout, re.M), p.stdout
            assert re.search(r"^deploy lock: taken on \S+-app-0, now that its /srv/demo/shared exists$", p.stdout,
                             re.M), p.stdout
            c.load()
            assert c.page_release() == c.current()
            yield c
    finally:
        fab("sandbox.down", env=env, check=False)


def test_a_broken_nginx_template_never_lands_and_nginx_says_why(cl):
    template = cl.template(SITE_TEMPLATE)
    good = template.read_text()
    before, nginx_before, release = cl.sha("proxy-0", SITE), cl.nginx(), cl.page_release()
    template.write_text(good.replace("    server_tokens off;\n", "    server_tokens off;\n    bogus_directive on;\n"))
    try:
        start = time.monotonic()
        p = cl.fab("configure", check=False)
        seconds = time.monotonic() - start
    finally:
        template.write_text(good)
    assert p.returncode == 1, p.stdout + p.stderr
    proxy = cl.nodes["proxy-0"].name
    assert f"{proxy}: files: nginx rejected the new configuration (nothing was installed; the live files are " \
           "unchanged): " in p.stderr, p.stderr
    assert re.search(r'\[emerg\] .*unknown directive "bogus_directive" in /etc/nginx/sites-enabled/whipup\.conf:\d+',
                     p.stderr), p.stderr
    assert "nginx: configuration file /etc/nginx/nginx.conf test failed" in p.stderr
    assert ("/etc/nginx/sites-enabled/whipup.conf: a link to /etc/nginx/sites-available/whipup.conf, rendered "
            f"from {SITE_TEMPLATE}") in p.stderr
    assert f"[{proxy}] FAILED at files: nginx rejected" in p.stdout
    assert "checked first: nginx -t on a copy of /etc/nginx" in p.stdout
    assert cl.sha("proxy-0", SITE) == before                               # byte-identical on disk
    assert "test is successful" in cl.ssh("proxy-0", "sudo -n nginx -t 2>&1")
    assert cl.nginx() == nginx_before                                      # not reloaded either
    assert cl.ssh("proxy-0", "sudo -n ls -A /var/lib/whipup/pending") == ""  # and nothing owed
    assert cl.page_release() == release                                    # the site answers as before
    assert "whipup-new" not in cl.ssh("proxy-0", "sudo -n ls -A /etc/nginx/sites-available")   # no temp file left
    print(f"\nMEASURE configure refused by nginx's check: {seconds:.1f} s wall, exit {p.returncode}")


def test_a_broken_supervisor_program_never_lands_and_supervisord_says_why(cl):
    template = cl.template(WEB_TEMPLATE)
    good = template.read_text()
    conf = f"/etc/supervisor/conf.d/{cl.cfg.app.name}-web.conf"
    before = cl.sha("app-0", conf)
    broken = re.sub(r"(?m)^user=.*$", "user=nosuchuser", good)
    assert broken != good
    template.write_text(broken)
    try:
        p = cl.fab("configure", "--role", "app", check=False)
    finally:
        template.write_text(good)
    assert p.returncode == 1, p.stdout + p.stderr
    assert (f"supervisor rejected the new configuration (nothing was installed; the live files are unchanged): "
            f"Error: Invalid user name nosuchuser in section 'program:{cl.cfg.app.name}-web-a' (file: '{conf}')"
            ) in p.stderr, p.stderr
    assert f"{conf}: rendered from {WEB_TEMPLATE}" in p.stderr
    assert cl.sha("app-0", conf) == before
    assert cl.page_release() == cl.current()


def test_a_good_nginx_change_lands_and_is_reloaded(cl):
    template = cl.template(SITE_TEMPLATE)
    good = template.read_text()
    master, workers = cl.nginx()
    template.write_text(good.replace("    server_tokens off;\n",
                                     '    server_tokens off;\n    add_header X-Whipup-Checked "yes" always;\n'))
    start = time.monotonic()
    p = cl.fab("configure")
    seconds = time.monotonic() - start
    assert re.search(r"^\[\S+-proxy-0\] changed 2, ok \d+, failed 0 \(reload nginx;", p.stdout, re.M), p.stdout
    assert "checked first: nginx -t on a copy of /etc/nginx" in p.stdout
    after = cl.nginx()
    assert after[0] == master and after[1] != workers
    assert eventually(lambda: cl.get("/nginx-health")[1].get("X-Whipup-Checked") == "yes")
    print(f"\nMEASURE configure with one nginx file changed (checked, installed, reloaded): {seconds:.1f} s wall")


def test_what_the_staged_nginx_check_costs_on_the_host(cl):
    """The check alone, as the files stage runs it (copy /etc/nginx, the new site in it, links and paths
    pointed at the copy, nginx -t -c on it), timed on the host itself: what it adds to a changed run."""
    from fabfile.configure import checks
    from fabfile.configure import commands as cmd
    from fabfile.configure.apply import staged_tar
    from fabfile.remote import run, sudo_sh
    from fabfile.ssh import connect

    check = checks.TreeCheck("nginx", "/etc/nginx", (checks.CopyOp("file", "/sites-available/whipup.conf", "f0",
                                                                    "root", "root", "0644"),))
    lines = ["t0=$(date +%s%N)", *checks.check_lines(check, 0), 'echo "ms $(( ($(date +%s%N) - t0) / 1000000 ))"']
    script = sudo_sh(cmd.files_script(lines, staged=True))
    site = cl.ssh("proxy-0", f"sudo -n cat {SITE}")
    conn = connect(cl.cfg, cl.nodes["proxy-0"])
    try:
        ms = sorted(int(run(conn, script, step="check", stdin=staged_tar([site]), timeout=60).stdout.split()[-1])
                    for _ in range(5))
        broken = run(conn, script, step="check", check=False, timeout=60,
                     stdin=staged_tar([site.replace("server_tokens off;", "server_tokens off; bogus_x on;")]))
    finally:
        conn.close()
    assert broken.exited == checks.CHECK_REJECTED and 'unknown directive "bogus_x"' in broken.stderr
    print(f"\nMEASURE staged nginx check on the proxy (copy + nginx -t -c), 5 runs: median {ms[2]} ms, "
          f"min {ms[0]} ms, max {ms[-1]} ms")


def test_configure_refuses_while_a_deploy_holds_the_lock_and_waits_for_it_with_wait(cl):
    from fabfile.deploy.lock import whoami

    settings = cl.repo / "demo" / "settings.py"
    fast = settings.read_text()
    cl.commit("slow to load", {"demo/settings.py": fast + SLOW_START})
    deploy = cl.background("deploy")
    try:
        assert eventually(cl.lock_held, timeout=120), "the deploy never took the lock"
        refused = cl.fab("configure", check=False)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"is held by {whoami()} since " in refused.stderr and ", deploy of release " in refused.stderr
        assert "(fab configure --wait waits for it)" in refused.stderr
        assert "facts" not in refused.stdout                               # no host was touched
        assert deploy.proc.poll() is None, "the deploy ended before configure was refused: not a race"
        # a change for the waiting run to make (a run that changes nothing writes no audit line)
        template = cl.template(SITE_TEMPLATE)
        template.write_text(template.read_text().replace('"yes"', '"waited"'))
        waited = cl.background("configure", "--wait")
        deploy.wait(600)
        waited.wait(600)
    finally:
        if deploy.proc.poll() is None:
            deploy.proc.kill()
    assert deploy.proc.returncode == 0, deploy.stdout + deploy.stderr
    assert waited.proc.returncode == 0, waited.stdout + waited.stderr
    release = re.search(r"^release (\S+) \(push ", deploy.stdout, re.M).group(1)
    assert re.search(rf"^waiting for the deploy lock on \S+-app-0: held by {re.escape(whoami())} since \S+Z "
                     rf"\(\d+ s ago\), deploy of release {re.escape(release)}$", waited.stdout, re.M), waited.stdout
    assert waited.ended >= deploy.ended
    assert not cl.lock_held()
    last = cl.audit()[-2:]
    assert [(r["action"], r["result"]) for r in last] == [("deploy", "ok"), ("configure", "ok")], last
    assert last[1]["from_release"] == release and last[0]["at"] <= last[1]["at"]
    assert "(" + cl.nodes["proxy-0"].name + ": reload nginx)" in last[1]["detail"]
    assert eventually(lambda: cl.get("/nginx-health")[1].get("X-Whipup-Checked") == "waited")
    print(f"\nMEASURE configure --wait behind a deploy: deploy {deploy.ended - deploy.started:.1f} s, "
          f"configure {waited.ended - waited.started:.1f} s, done {waited.ended - deploy.ended:.1f} s after it")
    cl.commit("fast to load", {"demo/settings.py": fast})


def test_whip_up_full_system_again_configures_then_deploys_under_the_same_lock(cl):
    start = time.monotonic()
    p = cl.fab("whip-up-full-system", timeout=1800)
    seconds = time.monotonic() - start
    assert "== configure" in p.stdout and "== deploy" in p.stdout and "site: http://" in p.stdout, p.stdout
    assert "deploy lock:" not in p.stdout            # configure took the lock at once: the cluster is configured
    assert not cl.lock_held()
    assert cl.page_release() == cl.current()
    print(f"\nMEASURE whip-up-full-system on the running cluster: {seconds:.0f} s")
