"""`app.strategy: git` end to end on the local cloud (#11), as in the seed's `git pull`: the hosts fetch the
project from the git server the local cloud serves on its bridge (smart HTTP through Debian's `git
http-backend`, read-only), not from a push.

A private sandbox (#6); a standalone copy of examples/demo published with `fab sandbox.git-publish`; a
cluster of proxy, app and db (no worker) whose roles.yaml names the printed URL with `strategy: git`. The
site answers through the proxy with the published commit in the release's REVISION; then a new commit,
published again, reaches the site through `fab quick-update` (its flags answer every question). HTTP goes
only to the proxy's private IP once `ip route get` shows it on this sandbox's bridge.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from .conftest import cluster_roles, fab, make_network, sandbox_env
from .demo import RELEASE, DeployedCluster, demo_repo, sandbox_settings

pytestmark = pytest.mark.e2e

SANDBOX = 6
QUICK = ("quick-update", "--component", "web", "--no-upgrade-django", "--yes")
URL = re.compile(r"^(http://\S+\.git)$", re.M)


class GitSite(DeployedCluster):
    def __init__(self, env: dict, roles: Path, tmp: Path):
        self.env, self.tmp = env, tmp
        self.repo = demo_repo(tmp / "demo", "GIT_SESSION")
        self.url = self.publish()
        data = yaml.safe_load(roles.read_text())
        data["app"].update(strategy="git", repo=self.url, branch="main")
        data["roles"]["worker"]["count"] = 0            # app, db and proxy are enough for a fetch
        self.roles = tmp / "roles-git.yaml"
        self.roles.write_text(yaml.safe_dump(data, sort_keys=False))
        self.cfg, self.nodes = None, {}

    def publish(self) -> str:
        out = fab("sandbox.git-publish", str(self.repo), "--name", "demo", env=self.env).stdout
        urls = URL.findall(out)
        assert urls, out
        return urls[-1]

    def fab(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return fab(*args, "--config", str(self.roles), env=self.env, timeout=timeout)

    def load(self) -> None:
        from fabfile.cloud import open_cloud
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        self.cfg = load_config(self.roles)
        ec2 = open_cloud(self.cfg.cluster.target, self.cfg.cluster.region).client("ec2")
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(ec2, self.cfg.cluster.name)
                      if n.state == "running"}

    def page(self) -> str:
        """GET / through the proxy: 200, and the release the page names."""
        self.routed(self.proxy_ip)
        try:
            with urllib.request.urlopen(f"http://{self.proxy_ip}/", timeout=10) as r:
                status, body = r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode(errors="replace")
        assert status == 200, body[:500]
        m = RELEASE.search(body)
        assert m, body[:500]
        return m.group(1)

    def revision(self) -> str:
        return self.ssh("app-0", f"cat /srv/{self.cfg.app.name}/current/REVISION").strip()

    def git_log(self) -> str:
        return (Path(self.env["WHIPUP_SANDBOX_STATE"]) / "logs" / "git.log").read_text()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gitstrategy")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    try:
        with sandbox_settings(env):
            s = GitSite(env, cluster_roles(tmp, "gitstrat", make_network(env, SANDBOX)), tmp)
            start = time.monotonic()
            s.fab("whip-up-full-system", timeout=1800)
            print(f"\ngit strategy: cold whip-up-full-system {time.monotonic() - start:.0f} s")
            s.load()
            yield s
    finally:
        fab("sandbox.down", env=env, check=False)


def test_the_git_server_listens_on_the_bridge_address_only(site):
    st = json.loads(fab("sandbox.status", "--json", env=site.env).stdout)
    address = site.env["WHIPUP_SANDBOX_BRIDGE_ADDRESS"]
    assert site.url.startswith(f"http://{address}:") and site.url.endswith("/demo.git")
    assert st["git"] == site.url.replace("/demo.git", "/NAME.git")
    port = site.url.split(":")[2].split("/")[0]
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    addresses = [line.split()[3] for line in listening.splitlines()]   # other sandboxes' servers: their own bridges
    assert f"{address}:{port}" in addresses
    assert not [a for a in addresses if a.startswith(("0.0.0.0:", "*:", "[::]:"))], addresses


def test_the_hosts_fetched_the_published_commit_and_the_site_serves_it(site):
    head = subprocess.run(["git", "-C", str(site.repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert site.revision() == head
    release = site.page()
    assert release == site.current() and release.endswith(head[:7])
    app_ip = site.nodes["app-0"].private_ip
    assert re.search(rf"^{re.escape(app_ip)} .*\"POST /demo\.git/git-upload-pack HTTP/1\.[01]\" 200 ",
                     site.git_log(), re.M), site.git_log()[-2000:]
    mirror = site.ssh("app-0", f"sudo -n -u {site.cfg.app.name} git --git-dir=/srv/{site.cfg.app.name}/repo.git "
                               f"rev-parse refs/heads/main").strip()
    assert mirror == head


def test_a_new_commit_published_reaches_the_site_with_quick_update(site):
    before = site.current()
    sha = site.commit("git strategy: a new commit", site.edit(
        "notes/templates/notes/index.html", "</footer>", "</footer>\n<p class=\"via-git\">fetched over git</p>"))
    assert site.publish() == site.url                  # the same URL: the new commit pushed there
    assert site.revision() != sha                      # published, not deployed yet
    start = time.monotonic()
    out = site.fab(*QUICK).stdout
    print(f"\ngit strategy: quick-update {time.monotonic() - start:.0f} s")
    assert f"git {sha[:12]}" in out, out
    assert site.revision() == sha
    release = site.page()
    assert release != before and release == site.current() and release.endswith(sha[:7])
    with urllib.request.urlopen(f"http://{site.proxy_ip}/", timeout=10) as r:
        assert "fetched over git" in r.read().decode()
