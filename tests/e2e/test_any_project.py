"""Any Django project, unchanged (#11): projects made at test time by the real tools (tests/e2e/projects.py),
each whipped up from a roles.yaml that names only app.name and app.repo beside the shipped cluster and
roles, on a private sandbox (#9), the five clusters side by side.

For each: GET / 200 through the proxy, a static asset the page links to 200, /admin/login/ 200, a row made
with `fab manage` found in the db node's PostgreSQL with psql, a file saved through Django's storage served
at /media/ by the proxy from the cluster's bucket and still there after another deploy, and `fab inspect`'s
table. HTTP goes only to proxies of this sandbox (checked with `ip route get`).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from . import projects
from .conftest import ROOT, fab, make_network, sandbox_env
from .demo import DeployedCluster, sandbox_settings

pytestmark = pytest.mark.e2e

SANDBOX = 9
KINDS = {"plain": projects.plain, "wagtail": projects.wagtail, "split": projects.split,
         "pyproject": projects.pyproject, "celery": projects.celery}
STATIC = re.compile(r'(?:href|src)="(/static/[^"]+\.(?:css|js))"')
SUPERUSER = {"DJANGO_SUPERUSER_USERNAME": "e2e-admin", "DJANGO_SUPERUSER_EMAIL": "e2e@example.invalid",
             "DJANGO_SUPERUSER_PASSWORD": "e2e-pass-Xq7!"}


class Site(DeployedCluster):
    def __init__(self, kind: str, env: dict, tmp: Path, network: dict):
        self.kind, self.env = kind, env
        self.repo = KINDS[kind](tmp / kind)
        data = yaml.safe_load((ROOT / "roles.yaml").read_text())
        data["cluster"].update(network, name=f"anyp-{kind}", state_dir=str(tmp / "state"))
        data["app"] = {"name": kind, "repo": str(self.repo)}        # everything else is found
        data.setdefault("configure", {})["templates_dir"] = str(ROOT / "templates")
        data["roles"]["worker"]["count"] = 1 if kind == "celery" else 0
        self.roles = tmp / f"{kind}.yaml"
        self.roles.write_text(yaml.safe_dump(data, sort_keys=False))
        self.cfg, self.nodes, self.seconds, self.whipup = None, {}, 0.0, None

    def fab(self, *args: str, check: bool = True, timeout: float = 900, **extra) -> subprocess.CompletedProcess:
        # --config right after the task: what follows `--` goes to the remote command
        return fab(args[0], "--config", str(self.roles), *args[1:], env={**self.env, **extra}, check=check,
                   timeout=timeout)

    def up(self) -> "Site":
        start = time.monotonic()
        self.whipup = self.fab("whip-up-full-system", check=False, timeout=2400)
        self.seconds = time.monotonic() - start
        return self

    def load(self) -> None:
        from fabfile.cloud import open_cloud
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        self.cfg = load_config(self.roles)
        ec2 = open_cloud(self.cfg.cluster.target, self.cfg.cluster.region).client("ec2")
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(ec2, self.cfg.cluster.name)
                      if n.state == "running"}

    def get(self, path: str) -> tuple[int, bytes]:
        self.routed(self.proxy_ip)
        try:
            with urllib.request.urlopen(f"http://{self.proxy_ip}{path}", timeout=20) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def psql(self, sql: str) -> str:
        return self.ssh("db-0", f"sudo -n -u postgres psql -d {self.kind} -Atc {sh(sql)}")


def sh(value: str) -> str:
    import shlex

    return shlex.quote(value)


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("anyproject")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env, timeout=1800)
    try:
        with sandbox_settings(env):
            network = make_network(env, SANDBOX)
            made = {kind: Site(kind, env, tmp, network) for kind in KINDS}
            with concurrent.futures.ThreadPoolExecutor(len(made)) as pool:
                list(pool.map(Site.up, made.values()))
            for s in made.values():
                print(f"\n{s.kind}: cold whip-up-full-system {s.seconds:.0f} s (exit {s.whipup.returncode})")
                s.load()
            yield made
    finally:
        fab("sandbox.down", env=env, check=False, timeout=900)


@pytest.fixture(params=list(KINDS))
def site(request, sites) -> Site:
    s = sites[request.param]
    assert s.whipup.returncode == 0, f"{s.kind}: whip-up-full-system failed\n{s.whipup.stdout[-6000:]}\n" \
                                     f"{s.whipup.stderr[-3000:]}"
    return s


def test_the_site_its_static_files_and_the_admin_answer_through_the_proxy(site):
    code, body = site.get("/")
    assert code == 200, body[:500]
    login_code, login = site.get("/admin/login/")
    assert login_code == 200, login[:500]
    assets = STATIC.findall(body.decode()) + STATIC.findall(login.decode())
    assert assets, "no static asset linked from / or /admin/login/"
    for asset in assets[:3]:
        assert site.get(asset)[0] == 200, asset


def test_inspect_shows_what_was_found(site):
    out = site.fab("inspect").stdout
    print(f"\n{site.kind}:\n{out}")
    expected = {"plain": "mysite.settings", "wagtail": "wagsite.settings.production", "split": "splitsite.settings",
                "pyproject": "pysite.settings", "celery": "celsite.settings"}[site.kind]
    assert re.search(rf"^settings\s+{re.escape(expected)}\s", out, re.M), out
    if site.kind == "split":
        assert "requirements/production.txt (with requirements/base.txt)" in out
        assert re.search(r"^release_command\s+python manage.py createcachetable\s+Procfile release:", out, re.M)
    if site.kind == "pyproject":
        assert re.search(r"^python\s+>=3\.12\s+pyproject.toml requires-python", out, re.M)
    if site.kind == "celery":
        assert re.search(r"^celery_app\s+celsite\s", out, re.M)


def test_the_database_is_the_db_nodes_postgresql_and_manage_writes_to_it(site):
    r = site.fab("manage", *[a for k in SUPERUSER for a in ("--env", k)], "--", "createsuperuser", "--noinput",
                 **SUPERUSER)
    assert SUPERUSER["DJANGO_SUPERUSER_PASSWORD"] not in r.stdout + r.stderr
    assert site.psql("select username from auth_user where is_superuser").split() == ["e2e-admin"]
    engine = site.fab("manage", "--", "shell", "-c",
                      "from django.db import connection as c; print('ENGINE', c.vendor, c.settings_dict['HOST'])")
    assert f"ENGINE postgresql {site.nodes['db-0'].private_ip}" in engine.stdout


def test_check_deploy_passes_its_exit_status_through(site):
    ok = site.fab("manage", "--", "check", "--deploy", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = site.fab("manage", "--", "check", "--deploy", "--fail-level", "DEBUG", "--tag", "nosuchtag", check=False)
    assert bad.returncode != 0


def test_a_media_upload_is_served_by_the_proxy_and_survives_a_deploy(site):
    data = f"media of {site.kind} {time.time_ns()}"
    out = site.fab("manage", "--", "shell", "-c",
                   "from django.core.files.base import ContentFile; from django.core.files.storage import "
                   f"default_storage as s; print('SAVED', s.save('uploads/e2e.txt', ContentFile({data!r}.encode())))"
                   ).stdout
    name = re.search(r"^SAVED (\S+)$", out, re.M).group(1)
    assert site.get(f"/media/{name}") == (200, data.encode())
    before = site.current()
    site.fab("deploy", "--force")
    assert site.current() != before
    assert site.get(f"/media/{name}") == (200, data.encode())


def test_the_celery_task_queued_from_a_view_completes_on_the_worker(sites):
    site = sites["celery"]
    assert site.whipup.returncode == 0, site.whipup.stdout[-4000:]
    label = f"from-the-worker-{time.time_ns()}"
    assert site.get(f"/queue/?label={label}") == (200, b"queued\n")
    deadline = time.monotonic() + 60
    while site.psql(f"select count(*) from shop_item where label = '{label}'").strip() != "1":
        assert time.monotonic() < deadline, site.ssh("worker-0", "tail -n 30 /var/log/celery/worker.log", check=False)
        time.sleep(1)


def test_the_pyproject_project_runs_django_6_on_debian_13(sites):
    site = sites["pyproject"]
    assert site.whipup.returncode == 0, site.whipup.stdout[-4000:]
    assert site.ssh("app-0", "python3 --version").strip().startswith("Python 3.13")
    assert site.fab("manage", "--", "version").stdout.strip().splitlines()[-1].startswith("6.")


def test_a_nested_requirements_change_is_quick_updates_default_reason_to_reinstall(sites):
    site = sites["split"]
    assert site.whipup.returncode == 0, site.whipup.stdout[-4000:]
    base = site.repo / "requirements" / "base.txt"
    base.write_text(base.read_text() + "django-environ>=0.11\n")
    site.commit("a new dependency in the nested file")
    out = site.fab("quick-update", "--component", "web", "--no-upgrade-django", "--yes").stdout
    assert "dependencies reinstalled (requirements/base.txt changed since release" in out, out
    assert "environ" in site.fab("manage", "--", "shell", "-c", "import environ; print(environ.__name__)").stdout


def test_nothing_of_whipup_was_written_into_the_projects(sites):
    for s in sites.values():
        status = subprocess.run(["git", "status", "--porcelain"], cwd=s.repo, capture_output=True, text=True).stdout
        assert status == "", f"{s.kind}: {status}"
        assert not any(p.name.startswith("whipup") for p in s.repo.rglob("*")), os.listdir(s.repo)


def cfg_health(site: Site) -> str:
    return site.cfg.app.health_path


def test_env_set_reaches_the_running_app_with_no_failed_request_under_load(sites):
    import threading

    site = sites["plain"]
    failures, done, stop = [], [0], threading.Event()

    def load():
        while not stop.is_set():
            code, _ = site.get("/")
            done[0] += 1
            if code != 200:
                failures.append(code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        site.fab("env.set", "FOO=bar")
        secret = f"s3cret-{time.time_ns()}"
        p = subprocess.run([sys_python(), "-m", "fabric", "env.set", "--config", str(site.roles), "-", "--secret"],
                           input=f"API_TOKEN={secret}\n", cwd=ROOT, env=site.env, capture_output=True, text=True,
                           timeout=900)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"\nenv.set under load: {done[0]} requests, {len(failures)} failed")
    assert failures == [] and done[0] > 20
    assert site.get("/env/?name=FOO") == (200, b"bar")             # what the running workers see
    assert site.get("/env/?name=API_TOKEN") == (200, secret.encode())
    assert secret not in p.stdout + p.stderr + site.fab("env").stdout
    logs = site.ssh("app-0", f"sudo -n cat /var/log/{site.kind}/*.log /srv/{site.kind}/shared/deploys.log")
    assert secret not in logs and "API_TOKEN=***" in logs


def sys_python() -> str:
    import sys

    return sys.executable


def test_a_changed_settings_module_is_what_gunicorn_runs_after_the_deploy(sites):
    """Settings chosen in roles.yaml reach the running processes with the deploy, not only with configure:
    the check before traffic and gunicorn read the same release env."""
    site = sites["wagtail"]
    assert site.whipup.returncode == 0, site.whipup.stdout[-4000:]
    data = yaml.safe_load(site.roles.read_text())
    data["app"]["django_settings"] = "wagsite.settings.dev"
    site.roles.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        out = site.fab("deploy", "--force").stdout
        assert "overlay over wagsite.settings.dev" in out, out
        code, body = site.get(cfg_health(site))
        assert code == 200 and json.loads(body)["settings"] == "wagsite.settings.dev"   # what gunicorn runs
        assert site.get("/")[0] == 200
    finally:
        del data["app"]["django_settings"]
        site.roles.write_text(yaml.safe_dump(data, sort_keys=False))


def test_without_the_overlay_a_project_on_sqlite_is_refused_before_migrate(sites):
    site = sites["split"]
    assert site.whipup.returncode == 0, site.whipup.stdout[-4000:]
    data = yaml.safe_load(site.roles.read_text())
    data["app"]["overlay"] = False
    site.roles.write_text(yaml.safe_dump(data, sort_keys=False))
    before = site.current()
    try:
        r = site.fab("deploy", "--force", check=False)
        text = r.stdout + r.stderr
        assert r.returncode != 0
        assert "DATABASES['default'] is django.db.backends.sqlite3" in text, text[-3000:]
        assert "nothing was migrated" in text and site.current() == before
        assert site.get("/")[0] == 200
    finally:
        del data["app"]["overlay"]
        site.roles.write_text(yaml.safe_dump(data, sort_keys=False))
