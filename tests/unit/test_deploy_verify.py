"""The silent failures a deploy now names: a database that is not the cluster's PostgreSQL, an empty
static/ after collectstatic, a health path answered by a redirect."""
from __future__ import annotations

from fabfile.deploy.health import Probe, redirect_cause
from fabfile.deploy.verify import database_problem, static_problem

PG = {"engine": "django.db.backends.postgresql", "host": "10.0.0.20", "name": "shop"}


def test_sqlite_instead_of_the_db_nodes_postgresql_is_named():
    facts = {"database": {"engine": "django.db.backends.sqlite3", "host": None, "name": "/srv/x/db.sqlite3"}}
    problem = database_problem(facts, "10.0.0.20")
    assert problem.startswith("DATABASES['default'] is django.db.backends.sqlite3 (/srv/x/db.sqlite3), not the "
                              "db node's PostgreSQL (10.0.0.20)") and "app.overlay" in problem
    assert "not the db node (10.0.0.20)" in database_problem({"database": {**PG, "host": "127.0.0.1"}}, "10.0.0.20")
    assert database_problem({"database": PG}, "10.0.0.20") is None
    assert database_problem(facts, None) is None       # no db role: SQLite in shared/ is the plan


def test_an_empty_static_dir_for_a_project_with_static_files_names_static_root():
    facts = {"has_static": True, "static_root": "/srv/x/releases/r/staticfiles"}
    problem = static_problem(facts, 0, "/srv/x/releases/r/static")
    assert "collectstatic put nothing in /srv/x/releases/r/static" in problem
    assert "STATIC_ROOT is '/srv/x/releases/r/staticfiles'" in problem
    assert static_problem(facts, 12, "/srv/x/releases/r/static") is None
    assert static_problem({"has_static": False}, 0, "s") is None and static_problem({"has_static": None}, 0, "s") is None


def test_a_redirected_health_check_shows_the_status_the_location_and_the_likely_cause():
    p = Probe("301", "", "https://10.0.0.10:8000/health", "/health")
    why = p.why("r1")
    assert why.startswith("answered 301 with Location: https://10.0.0.10:8000/health; likely cause: ")
    assert "SECURE_SSL_REDIRECT" in why and "SECURE_PROXY_SSL_HEADER" in why
    assert "APPEND_SLASH" in redirect_cause("http://h/health/", "/health")
    assert "login" in redirect_cause("http://h/accounts/login/?next=/health", "/health")
    assert not Probe("301", "", "x", "/health").healthy(None)


def test_a_workers_only_task_names_the_same_site_as_a_web_one(cfg):
    """ALLOWED_HOSTS come from every running node, not only those the task connected to: env.set or a
    workers deploy must not write a .env that locks the proxy's Host out (400s under load)."""
    from fabfile.deploy.cluster import Cluster, Member
    from fabfile.deploy.planning import site_hosts
    from fabfile.layout import Layout
    from fabfile.nodes import Node

    proxy = Node("proxy", 0, "c-proxy-0", "i-p", "running", "10.0.0.5", "203.0.113.5", None)
    app = Node("app", 0, "c-app-0", "i-a", "running", "10.0.0.10", None, None)
    worker = Node("worker", 0, "c-worker-0", "i-w", "running", "10.0.0.30", None, None)
    cl = Cluster(cfg, Layout.of(cfg), [], [], [Member(worker, None)], None, worker, None, running=(proxy, app, worker))
    assert site_hosts(cl) == ["10.0.0.5", "203.0.113.5", "10.0.0.10", "localhost", "127.0.0.1"]

