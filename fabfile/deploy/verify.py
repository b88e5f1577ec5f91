"""What Django ended up with in the new release, checked before it touches anything: the settings (overlay
or not) must use the cluster's PostgreSQL when there is a db role, and collectstatic must have filled the
release's static/, the directory the proxies serve. Each is a silent failure otherwise: migrate against a
throwaway SQLite file in the release, or an empty static/ shipped to nginx.

    settings_check (app node 0, before collectstatic+migrate) -> static_check (after collectstatic)
"""
from __future__ import annotations

from ..layout import DB_ROLE
from ..project.facts import facts_command, parse_facts
from ..remote import run
from .cluster import Cluster
from .errors import PreviousServes
from .planning import Plan

FIX_DB = ("keep roles.yaml app.overlay on (it sets DATABASES from DATABASE_URL), or have the settings read "
          "DATABASE_URL")


def database_problem(facts: dict, db_host: str | None) -> str | None:
    """Why the release's default database is not the cluster's PostgreSQL on `db_host` (None: it is)."""
    if db_host is None:
        return None
    db = facts.get("database") or {}
    engine, host, name = db.get("engine") or "none", db.get("host") or "", db.get("name") or ""
    if "postgresql" not in engine and "postgis" not in engine:
        return (f"DATABASES['default'] is {engine} ({name}), not the db node's PostgreSQL ({db_host}): migrate "
                f"would write to it and the db node would sit unused; {FIX_DB}")
    if host != db_host:
        return (f"DATABASES['default'] is PostgreSQL on {host or 'the local socket'}, not the db node ({db_host}); "
                f"{FIX_DB}")
    return None


def static_problem(facts: dict, collected: int, release_static: str) -> str | None:
    """Why the proxies would get an empty static/ (None: they will not)."""
    if not facts.get("has_static") or collected > 0:
        return None
    return (f"collectstatic put nothing in {release_static}, the directory the proxy serves, though the project "
            f"has static files: STATIC_ROOT is {facts.get('static_root')!r}; keep roles.yaml app.overlay on (it sets "
            f"STATIC_ROOT to the release's static/) or read STATIC_ROOT from the environment")


def release_facts(cl: Cluster, plan: Plan) -> dict:
    m = cl.apps[0]
    command, stdin = facts_command(cl.layout, plan.release, migrations=True)
    r = run(m.conn, command, step="what Django says", stdin=stdin, check=False, timeout=120)
    if r.exited != 0:
        raise PreviousServes(f"{m.name}: Django could not start in release {plan.release} (exit {r.exited}); the "
                             "previous release keeps serving:\n" + "\n".join(
                                 ((r.stderr or "") + (r.stdout or "")).strip().splitlines()[-25:]))
    return parse_facts(r.stdout or "", f"{m.name}: what Django says")


def settings_check(cl: Cluster, plan: Plan) -> None:
    """The release's settings before migrate: the cluster's database (with a db role)."""
    facts = release_facts(cl, plan)
    plan.facts = facts
    db_host = cl.db.private_ip if DB_ROLE in cl.cfg.role_names and cl.db is not None else None
    problem = database_problem(facts, db_host)
    if problem:
        raise PreviousServes(f"{cl.apps[0].name}: release {plan.release}: {problem}; nothing was migrated, the "
                             "previous release keeps serving")
    overrides = [name for name, _ in facts.get("whipup_overrides") or []]
    cl.progress(cl.apps[0].name, "settings", f"{facts.get('settings')}: database {facts['database'].get('engine', '')}"
                f" on {facts['database'].get('host')}" + (f"; overlay sets {', '.join(overrides)}" if overrides else ""))


def static_check(cl: Cluster, plan: Plan, collected: int) -> None:
    problem = static_problem(plan.facts or {}, collected, f"{cl.layout.release(plan.release)}/static")
    if problem:
        raise PreviousServes(f"{cl.apps[0].name}: release {plan.release}: {problem}; the previous release keeps serving")
