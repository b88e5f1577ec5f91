"""PostgreSQL's max_connections follows the cluster's shape (configure/dbsize.py): two slots' workers per app
node at a switch, the worker nodes', a reserve; PostgreSQL's default, with nothing written, while it fits."""
import dataclasses
import json
from pathlib import Path

from fabfile.configure import dbsize
from fabfile.configure.templates import render_role_files
from fabfile.nodes import Node
from fabfile.state import cluster_dir

REPO = Path(__file__).resolve().parents[2]
CONF = "/etc/postgresql/<postgresql-version>/main/conf.d/whipup.conf"


def test_the_default_holds_up_to_sixteen_app_nodes_at_three_workers():
    assert dbsize.max_connections(1, 1) == 100
    assert dbsize.max_connections(13, 0) == 100            # 20 + 13 * 2 * 3 = 98
    assert dbsize.max_connections(14, 0) == 200            # 104: rounded up to a hundred
    assert dbsize.max_connections(24, 1) == 200            # 20 + 144 + 8 = 172
    assert dbsize.max_connections(24, 1, web_workers=8) == 500   # 20 + 384 + 8 = 412
    assert dbsize.max_connections(0, 0) == 100


def test_web_workers_is_what_the_app_gets_for_web_concurrency():
    assert dbsize.web_workers({}, {}, frozenset()) == 3
    assert dbsize.web_workers({"WEB_CONCURRENCY": "5"}, {}, frozenset()) == 5
    assert dbsize.web_workers({"WEB_CONCURRENCY": "5"}, {"WEB_CONCURRENCY": "9"}, frozenset()) == 9   # env.set wins
    assert dbsize.web_workers({"WEB_CONCURRENCY": "5"}, {}, frozenset({"WEB_CONCURRENCY"})) == 3      # env.unset
    assert dbsize.web_workers({"WEB_CONCURRENCY": "many"}, {}, frozenset()) == 3
    assert dbsize.web_workers({"WEB_CONCURRENCY": "0"}, {}, frozenset()) == 3


def nodes(apps: int) -> list[Node]:
    out = [Node("db", 0, "t-db-0", "i-db0", "running", "10.0.0.20", None, None)]
    out += [Node("app", i, f"t-app-{i}", f"i-app{i}", "running", f"10.0.1.{i + 1}", None, None) for i in range(apps)]
    return out


def db_conf(cfg, apps: int) -> str:
    cluster = nodes(apps)
    return {f.path: f.content for f in render_role_files(cfg, cluster[0], cluster)}[CONF]


def test_the_db_nodes_conf_sizes_max_connections_once_the_default_is_short(cfg):
    shipped = dataclasses.replace(cfg, configure=dataclasses.replace(cfg.configure, templates_dir=REPO / "templates"))
    assert "max_connections" not in db_conf(shipped, 2)       # an existing small cluster's file is unchanged
    assert "\nmax_connections = 200\n" in db_conf(shipped, 24)
    cluster_dir(shipped).mkdir(parents=True, exist_ok=True)
    (cluster_dir(shipped) / "env.json").write_text(json.dumps({"set": {"WEB_CONCURRENCY": "10"}, "unset": []}))
    assert "\nmax_connections = 300\n" in db_conf(shipped, 12)   # 20 + 12 * 2 * 10 = 260


def test_env_set_says_when_the_new_workers_need_another_size(cfg):
    from fabfile.appenv import Store

    cluster = nodes(14)
    assert dbsize.resize_note(cfg, cluster, Store(), Store(plain={"WEB_CONCURRENCY": "3"})) is None
    note = dbsize.resize_note(cfg, cluster, Store(), Store(plain={"WEB_CONCURRENCY": "2"}))
    assert note == ("PostgreSQL's max_connections: 200 -> 100 for these workers; run `fab configure --role db` "
                    "(it restarts PostgreSQL)")
    no_db = dataclasses.replace(cfg, roles=tuple(r for r in cfg.roles if r.name != "db"))
    assert dbsize.resize_note(no_db, cluster, Store(), Store(plain={"WEB_CONCURRENCY": "9"})) is None
