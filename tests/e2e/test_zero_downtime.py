"""Zero downtime in every path (issue 12), end to end through the CLI, on a private sandbox (#12).

One cluster of the shipped roles (proxy, ONE app node, db, worker) runs the demo app (a standalone git copy
of examples/demo), whipped up once. Each test runs one operation as a user would (`fab ...`, flags, no
terminal) under a steady, paced load through the proxy of 60 requests/s (at least 30 measured) for the whole operation,
on the page, /health and a static file; every failed request counts: a status other than 200 (a 502 while
gunicorn restarts with no overlap), a connection error, a timeout (10 s), or a wrong body (a page without
its release footer, a /health that is not {"status": "ok", ...}, a static file not the one committed).
Each operation must see 0 of them:

1. a code-only deploy (quick-update);
2. a deploy whose requirements changed (a package added: a new venv) on the single app node;
3. quick-update --upgrade-django (Django 4.2 -> 5.0 within the demo's range);
4. an environment change (`fab env.set TIME_ZONE=...`: the page's note times show the new zone);
5. `fab configure` with a changed gunicorn program (stopwaitsecs 30 -> 31 in a copy of templates/): the
   program file changed, and the gunicorn nginx sends traffic to runs the new program configuration;
6. `fab rollback`: the release served goes back;
7. `fab configure` with a changed nginx site (client_max_body_size 10m -> 11m): nginx takes it.

And the check before traffic: 8. a release whose WSGI module raises at import (manage.py and Django's test
client never import it: it fails only under gunicorn), and 9. one whose WSGI_APPLICATION names a callable
that is not there (the `wsgi_app` gunicorn is given is bad; whipup reads no gunicorn settings file from the
repository, since gunicorn runs with -c shared/gunicorn.conf.py, so this is the bad gunicorn configuration
a commit can make): the deploy exits non-zero saying the previous release keeps serving, the release served
never changes, 0 failed requests, and nothing was rolled back (the release never took traffic).

Every test prints its figures (requests, rate, failures, seconds). HTTP goes only to the proxy's private IP
once `ip route get` shows it on this sandbox's bridge; every load is bounded in time and count.
"""
from __future__ import annotations

import http.client
import json
import re
import shutil
import time

import pytest

from .conftest import ROOT, cluster_roles, fab, make_network, sandbox_env
from .demo import RELEASE, DemoCluster, git, sandbox_settings
from .hostprobe import parse_programs, programs_command, serving, upstream_servers
from .traffic import Load

pytestmark = pytest.mark.e2e

SANDBOX = 12
RATE = 60                      # requests/s the load is paced at; at least MIN_RATE must be measured (the suite
MIN_RATE = 30                  # runs other e2e modules beside this one, on 2 cores: the client itself may lag)
PATHS = ("/", "/health", "/static/notes/site.css")
CSS = (ROOT / "examples" / "demo" / "notes" / "static" / "notes" / "site.css").read_text()
QUICK = ("quick-update", "--yes", "--no-upgrade-django")
WEB_CONF = "etc/supervisor/conf.d/app-web.conf.j2"
SITE_CONF = "etc/nginx/sites-available/whipup.conf.j2"
TZ = "Asia/Kolkata"            # +05:30 all year: the page's <time datetime=...> shows it


def judge(path: str, status: int, body: str) -> str | None:
    """Why an answer is a failed request (None: it is what the site serves)."""
    if status != 200:
        return f"HTTP {status}"
    if path == "/":
        if not RELEASE.search(body) or "<h1>Notes" not in body:
            return "wrong body: the page has no release footer or heading"
    elif path == "/health":
        try:
            data = json.loads(body)
        except ValueError:
            return "wrong body: /health is not JSON"
        if data.get("status") != "ok" or not isinstance(data.get("release"), str):
            return f"wrong body: /health says {body[:100]}"
    elif body != CSS:
        return "wrong body: not the committed stylesheet"
    return None


class ZeroDowntime(DemoCluster):
    def under_load(self, *args: str, timeout: float = 900) -> tuple[object, Load]:
        """`fab ARGS` under the paced load: (its completed process, the load)."""
        with Load(self, PATHS, threads=96, max_seconds=timeout + 60, max_requests=RATE * (timeout + 60),
                  rate=RATE, timeout=10, check=judge) as load:
            p = self.fab(*args, check=False, timeout=timeout)
        return p, load

    def served(self) -> str:
        return self.page()[0]

    def programs(self, reread: bool = False):
        return parse_programs(self.ssh("app-0", programs_command(f"{self.cfg.app.name}-web", reread)))

    def serving_programs(self, programs) -> list:
        servers = upstream_servers(self.ssh("proxy-0", "sudo -n nginx -T 2>/dev/null"))
        return serving(programs, servers, self.nodes["app-0"].private_ip)


def report(name: str, p, load: Load) -> None:
    print(f"\n{name}: fab exit {p.returncode}; load {load.figures()}; releases served "
          f"{[(round(t, 1), r) for t, r in load.releases()]}"
          + (f"\n  first failures: {load.failures_at(8)}" if load.failures else ""))


def assert_zero_failures(load: Load) -> None:
    assert load.operation_rate() >= MIN_RATE, f"the load fell below {MIN_RATE}/s: {load.figures()}"
    assert min(load.ok[p] for p in PATHS) > 0, load.summary()
    assert load.failures == 0, f"{load.figures()}\n{load.failures_at(20)}"


def assert_ran(p) -> None:
    assert p.returncode == 0, f"{p.stdout[-6000:]}\n{p.stderr[-3000:]}"


@pytest.fixture(scope="module")
def zd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zdt")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env, timeout=1800)
    try:
        with sandbox_settings(env):                 # whipup code in this process: this sandbox
            roles = cluster_roles(tmp, "zdt", make_network(env, SANDBOX), app_count=1)
            templates = tmp / "templates"           # configure's tree: a copy the tests edit
            shutil.copytree(ROOT / "templates", templates)
            c = ZeroDowntime(env, roles, tmp, "zdt", templates=templates)
            start = time.monotonic()
            c.fab("whip-up-full-system", timeout=1800)
            print(f"\nzero downtime: cold whip-up-full-system {time.monotonic() - start:.0f} s")
            c.load()
            assert c.served() == c.current()
            c.add_note("a note whose time the page shows")      # the environment test reads its time zone
            yield c
    finally:
        fab("sandbox.down", env=env, check=False, timeout=900)


def test_a_code_only_deploy_fails_no_request(zd):
    before = zd.current()
    zd.commit("code only", zd.edit("notes/templates/notes/index.html", "<h1>Notes</h1>", "<h1>Notes</h1><!-- 1 -->"))
    p, load = zd.under_load(*QUICK, "--component", "all", "--no-deps")
    report("code-only deploy", p, load)
    assert_ran(p)
    assert "dependencies reused" in p.stdout, p.stdout
    assert zd.current() != before and zd.served() == zd.current()
    assert load.releases()[-1][1] == zd.current()
    assert_zero_failures(load)


def test_a_deploy_with_changed_requirements_fails_no_request(zd):
    """A package added to requirements.txt: whipup builds a new venv (pip install) and gunicorn must run
    from it; on the single app node nothing else can take the traffic meanwhile."""
    before = zd.current()
    reqs = (zd.repo / "requirements.txt").read_text()
    zd.commit("a new dependency", {"requirements.txt": reqs + "six>=1.16\n"})
    p, load = zd.under_load("deploy")
    report("deploy with changed requirements", p, load)
    assert_ran(p)
    assert re.search(r"venv: install \(requirements\.txt[^\n]* changed since release", p.stdout), p.stdout
    assert zd.current() != before and zd.served() == zd.current()
    assert "six ok" in zd.fab("manage", "--", "shell", "-c", "import six; print('six', 'ok')").stdout
    assert_zero_failures(load)


def django_version(zd) -> str:
    return zd.fab("manage", "--", "version").stdout.strip().splitlines()[-1]


def test_upgrade_django_fails_no_request(zd):
    """quick-update --upgrade-django with Django 4.2 installed and the demo's range (>=4.2,<5.1) allowing
    5.0: first (no load) a release whose requirements cap Django below 5.0, then the demo's range back with
    --no-deps (its venv kept: 4.2), then the upgrade under load."""
    reqs = (zd.repo / "requirements.txt").read_text()
    assert "Django>=4.2,<5.1\n" in reqs
    zd.commit("Django below 5.0", {"requirements.txt": reqs.replace("Django>=4.2,<5.1", "Django>=4.2,<5.0")})
    zd.fab(*QUICK, "--component", "web", "--deps")
    zd.commit("the demo's Django range again", {"requirements.txt": reqs})
    zd.fab(*QUICK, "--component", "web", "--no-deps")
    old = django_version(zd)
    assert old.startswith("4.2"), old
    p, load = zd.under_load("quick-update", "--yes", "--component", "web", "--no-deps", "--upgrade-django")
    new = django_version(zd)
    report(f"--upgrade-django ({old} -> {new})", p, load)
    assert_ran(p)
    assert new.startswith("5.0"), new
    assert re.search(rf"Django: {re.escape(old)} -> {re.escape(new)}", p.stdout), p.stdout
    assert zd.served() == zd.current()
    assert_zero_failures(load)


def note_times(zd) -> list[str]:
    return re.findall(r'<time datetime="([^"]+)"', zd.get("/")[1])


def test_an_environment_change_fails_no_request(zd):
    """`fab env.set TIME_ZONE=Asia/Kolkata`: the demo's settings read TIME_ZONE, so the page's note times
    (ISO 8601 with their offset) show +05:30 once the processes serving it have the new environment."""
    assert note_times(zd) and all(t.endswith("+00:00") for t in note_times(zd)), note_times(zd)
    p, load = zd.under_load("env.set", f"TIME_ZONE={TZ}")
    report("env.set", p, load)
    assert_ran(p)
    assert all(t.endswith("+05:30") for t in note_times(zd)), note_times(zd)
    env_file = zd.ssh("app-0", f"sudo -n cat /srv/{zd.cfg.app.name}/shared/.env")
    assert re.search(rf"^TIME_ZONE={re.escape(TZ)}$", env_file, re.M) or f"TIME_ZONE='{TZ}'" in env_file
    assert_zero_failures(load)


def edit_template(zd, rel: str, old: str, new: str) -> None:
    path = zd.tmp / "templates" / rel
    text = path.read_text()
    assert old in text, f"{rel}: {old!r} not found"
    path.write_text(text.replace(old, new, 1))


def test_configure_with_a_changed_gunicorn_program_fails_no_request(zd):
    """The copy's app-web.conf.j2: stopwaitsecs=30 -> 31, then `fab configure`. The program file on the app
    node says 31, and the gunicorn nginx sends traffic to runs that configuration: it was started after
    configure began, and supervisord finds no difference between the file and the program it runs
    (`supervisorctl reread` lists its group neither changed nor added)."""
    program_file = f"/etc/supervisor/conf.d/{zd.cfg.app.name}-web.conf"
    assert "stopwaitsecs=30" in zd.ssh("app-0", f"cat {program_file}")
    edit_template(zd, WEB_CONF, "stopwaitsecs=30", "stopwaitsecs=31")
    began = time.time()
    p, load = zd.under_load("configure")
    report("configure, gunicorn program changed", p, load)
    text = zd.ssh("app-0", f"cat {program_file}")
    programs, reread = zd.programs(reread=True)
    live = zd.serving_programs(programs)
    print(f"  programs: {programs}\n  reread: {reread}\n  serving: {[x.name for x in live]}")
    assert_ran(p)
    assert "stopwaitsecs=31" in text and "stopwaitsecs=30" not in text, text
    assert live, f"no running program binds what nginx sends traffic to: {programs}"
    for prog in live:
        assert prog.start >= int(began), f"{prog.name} runs since before configure began: {prog}"
        assert prog.group not in reread["changed"] + reread["added"], (prog, reread)
    assert zd.get("/health")[0] == 200 and zd.served() == zd.current()
    assert_zero_failures(load)


def test_a_rollback_fails_no_request(zd):
    before = zd.current()
    older = [r for r in zd.releases() if r < before]
    assert older, zd.releases()
    target = older[-1]
    p, load = zd.under_load("rollback")
    report("rollback", p, load)
    assert_ran(p)
    assert zd.current() == target and zd.served() == target
    assert load.releases()[0][1] == before and load.releases()[-1][1] == target, load.releases()
    assert_zero_failures(load)


def post_size(zd, size: int) -> int:
    """POST / with a body of `size` bytes through the proxy: 413 when nginx refuses its size, else the app's
    answer (405: the page takes GET)."""
    zd.routed(zd.proxy_ip)
    conn = http.client.HTTPConnection(zd.proxy_ip, 80, timeout=30)
    try:
        conn.request("POST", "/", body=b"x" * size, headers={"Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def test_configure_with_a_changed_nginx_site_fails_no_request(zd):
    """The copy's nginx site: client_max_body_size 10m -> 11m, then `fab configure`: the file on the proxy
    says 11m, and nginx runs it (a 10.5 MB body, refused with 413 before, gets through to the app)."""
    site = "/etc/nginx/sites-available/whipup.conf"
    big = 10 * 1024 * 1024 + 512 * 1024
    assert "client_max_body_size 10m;" in zd.ssh("proxy-0", f"cat {site}")
    assert post_size(zd, big) == 413
    edit_template(zd, SITE_CONF, "client_max_body_size 10m;", "client_max_body_size 11m;")
    p, load = zd.under_load("configure")
    report("configure, nginx site changed", p, load)
    assert_ran(p)
    assert "client_max_body_size 11m;" in zd.ssh("proxy-0", f"cat {site}")
    after = post_size(zd, big)
    print(f"  a 10.5 MB POST: 413 before, {after} after")
    assert after != 413
    assert_zero_failures(load)


def broken_release_is_kept_from_traffic(zd, name: str, files: dict[str, str]) -> str:
    """Commit `files`, deploy under load: refused before any traffic, the previous release serving all along;
    what the deploy printed on stderr."""
    before = zd.current()
    zd.commit(name, files)
    try:
        p, load = zd.under_load(*QUICK, "--component", "web", "--no-deps", "--health-timeout", "15")
        report(name, p, load)
        out = p.stdout + p.stderr
        assert p.returncode != 0, out[-6000:]
        assert not re.search(r'File "[^"]*/fabfile/', p.stderr), out[-6000:]      # whipup itself did not crash
        assert re.search(r"previous release keeps serving", p.stderr), out[-6000:]
        assert not re.search(r"rolled back|rolling back", out, re.I), out[-6000:]     # no traffic, nothing to undo
        assert [r for _, r in load.releases()] == [before], load.releases()
        assert_zero_failures(load)
        assert zd.current() == before and zd.served() == before
        failed = re.search(r"^release (\S+) \(push ", p.stdout, re.M)
        assert failed and failed.group(1) not in zd.releases(), p.stdout
        return p.stderr
    finally:
        git(zd.repo, "revert", "--no-edit", "HEAD")


def test_a_release_whose_wsgi_module_fails_at_import_never_takes_traffic(zd):
    """demo/wsgi.py raises at import: manage.py, migrate, collectstatic and Django's test client never import
    it; only gunicorn does."""
    broken = (zd.repo / "demo" / "wsgi.py").read_text() + '\nraise RuntimeError("zdt: this WSGI module fails at import")\n'
    err = broken_release_is_kept_from_traffic(zd, "a WSGI module that fails at import", {"demo/wsgi.py": broken})
    assert "in gunicorn slot" in err, err          # caught where it booted, in its own gunicorn


def test_a_release_whose_wsgi_callable_is_missing_never_takes_traffic(zd):
    """WSGI_APPLICATION names an attribute demo.wsgi does not have: whipup gives gunicorn that wsgi_app
    (`fab inspect` reads it from the settings), and gunicorn cannot load it."""
    edited = zd.edit("demo/settings.py", 'WSGI_APPLICATION = "demo.wsgi.application"',
                     'WSGI_APPLICATION = "demo.wsgi.application_not_here"')
    err = broken_release_is_kept_from_traffic(zd, "a WSGI_APPLICATION gunicorn cannot load", edited)
    assert "in gunicorn slot" in err, err          # caught where it booted, in its own gunicorn
