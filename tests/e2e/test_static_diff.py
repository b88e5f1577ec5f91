"""Static files as a difference, collectstatic and migrate only when needed (issue 16), end to end.

A private sandbox (#19); the demo (a standalone copy) on proxy, app and db. After whip-up-full-system:
- a template-only change: quick-update skips collectstatic and migrate, ships no static file to the proxy,
  whose new release has the previous one's files as hard links, served through nginx;
- a CSS change: collectstatic runs and the proxy gets that one file (the rest linked), served new;
- a new (empty) migration: migrate runs and applies it.
HTTP goes only to the proxy's private IP once `ip route get` shows it on this sandbox's bridge.
"""
from __future__ import annotations

import json
import re

import pytest
import yaml

from .conftest import cluster_roles, make_network, sandbox_env
from .demo import DemoCluster, fab, sandbox_settings

pytestmark = pytest.mark.e2e

SANDBOX = 19
QUICK = ("quick-update", "--component", "web", "--no-deps", "--no-upgrade-django", "--yes")
SHIPPED = re.compile(r"\] static: releases/\S+/static: (\d+) file\(s\) shipped \(\d+ kB tar\), (\d+) hard-linked")
CSS = "notes/static/notes/site.css"
JS = "notes/static/notes/speed.js"
PAGE = "notes/templates/notes/index.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("static-diff")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    try:
        roles = cluster_roles(tmp, "e2e-static", make_network(env, SANDBOX))
        data = yaml.safe_load(roles.read_text())
        data["roles"]["worker"]["count"] = 0
        roles.write_text(yaml.safe_dump(data, sort_keys=False))
        with sandbox_settings(env):
            c = DemoCluster(env, roles, tmp, "static")
            c.fab("whip-up-full-system")
            c.load()
            yield c
            c.fab("destroy", "--yes", check=False)
    finally:
        fab("sandbox.down", env=env, check=False)


def quick(c: DemoCluster, message: str, files: dict[str, str]) -> str:
    c.commit(message, files)
    out = c.fab(*QUICK).stdout
    return out


def inode(c: DemoCluster, release: str, path: str) -> str:
    return c.ssh("proxy-0", f"stat -c %i /srv/{c.cfg.app.name}/releases/{release}/static/{path}").strip()


def test_a_template_change_ships_no_static_file_and_runs_neither_collectstatic_nor_migrate(site):
    c = site
    before = c.current("proxy-0")
    out = quick(c, "a template line", c.edit(PAGE, "</body>", "<!-- speed -->\n</body>"))
    assert "collectstatic: skipped" in out and "migrate: skipped" in out, out[-3000:]
    shipped = SHIPPED.search(out)
    assert shipped and shipped.group(1) == "0" and shipped.group(2) == "1", out[-3000:]      # site.css
    after = c.current("proxy-0")
    assert after != before and inode(c, after, "notes/site.css") == inode(c, before, "notes/site.css")
    status, body = c.get("/static/notes/site.css")
    assert status == 200 and body == (c.repo / CSS).read_text()
    sums = c.ssh("proxy-0", f"cat /srv/{c.cfg.app.name}/releases/{after}/STATIC_SUMS")
    assert sums == c.ssh("app-0", f"cat /srv/{c.cfg.app.name}/releases/{after}/STATIC_SUMS")


def test_a_css_change_and_a_new_file_collect_and_ship_those_files_only(site):
    c = site
    before = c.current("proxy-0")
    css = (c.repo / CSS).read_text() + "\n/* speed */ body { margin: 1px; }\n"
    out = quick(c, "a CSS change, a new script", {CSS: css, JS: "console.log('speed');\n"})
    assert "collectstatic: skipped" not in out and "migrate: skipped" in out, out[-3000:]
    shipped = SHIPPED.search(out)
    assert shipped and (shipped.group(1), shipped.group(2)) == ("2", "0"), out[-3000:]
    after = c.current("proxy-0")
    assert inode(c, after, "notes/site.css") != inode(c, before, "notes/site.css")
    assert c.get("/static/notes/site.css") == (200, css)
    assert c.get("/static/notes/speed.js") == (200, "console.log('speed');\n")


def test_a_new_migration_is_applied_and_the_static_files_are_all_linked(site):
    c = site
    before = c.current("proxy-0")
    migration = ("from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
                 "    dependencies = [(\"notes\", \"0001_initial\")]\n    operations = []\n")
    out = quick(c, "an empty migration", {"notes/migrations/0002_speed.py": migration})
    assert "migrate: skipped" not in out and "Applying notes.0002_speed" in out, out[-3000:]
    shipped = SHIPPED.search(out)
    assert "collectstatic: skipped" in out and shipped and (shipped.group(1), shipped.group(2)) == ("0", "2")
    after = c.current("proxy-0")
    assert inode(c, after, "notes/speed.js") == inode(c, before, "notes/speed.js")
    status, body = c.get("/health")
    assert status == 200 and json.loads(body)
