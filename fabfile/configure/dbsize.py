"""PostgreSQL's `max_connections` for the cluster's shape (the db node's conf.d/whipup.conf).

Django keeps a connection per gunicorn worker (`CONN_MAX_AGE`, the settings overlay), and an app node runs
two slots during a switch, each with `WEB_CONCURRENCY` workers, while the slot it leaves keeps its
connections until the drain: 2 x workers per app node at the peak. PostgreSQL's default (100, 3 of them
for the superuser) is 16 app nodes at the default 3 workers; at 24 the new slots' workers are refused
("sorry, too many clients already") and their health check fails. The figure is rounded up to a hundred
so that adding a node seldom changes it (a change restarts PostgreSQL), and stays at the default, with no
line written, for a cluster that fits in it.
"""
from __future__ import annotations

from ..layout import SLOTS

PG_DEFAULT = 100       # PostgreSQL's own default: nothing is written for a cluster that fits in it
RESERVE = 20           # Django commands (migrate, the settings check), backups, the monitor, shells
WORKER_BUDGET = 8      # a celery worker node's prefork children (celery's default: one per CPU)
WEB_WORKERS = 3        # gunicorn's workers when WEB_CONCURRENCY is not set (deploy/runtime.py)
STEP = 100


def max_connections(app_nodes: int, worker_nodes: int, web_workers: int = WEB_WORKERS) -> int:
    """The connections the cluster may hold at a switch's peak, plus RESERVE, rounded up to a hundred."""
    need = RESERVE + app_nodes * len(SLOTS) * web_workers + worker_nodes * WORKER_BUDGET
    return max(PG_DEFAULT, -(-need // STEP) * STEP)


def web_workers(env: dict[str, str], overrides: dict[str, str], unset) -> int:
    """gunicorn's workers per slot: WEB_CONCURRENCY as the app gets it (`fab env.set` over roles.yaml
    `app.env`, none once `fab env.unset`), else gunicorn's count; a value that is not a count is the
    default too."""
    value = overrides.get("WEB_CONCURRENCY")
    if value is None and "WEB_CONCURRENCY" not in unset:
        value = env.get("WEB_CONCURRENCY")
    try:
        count = int(value) if value is not None else WEB_WORKERS
    except ValueError:
        return WEB_WORKERS
    return count if count > 0 else WEB_WORKERS


def for_cluster(cfg, by_role: dict[str, list]) -> int:
    """max_connections for the nodes listed by role (templates.context's `nodes`) and the app's env."""
    from ..appenv.store import EnvError, load_store

    try:
        store = load_store(cfg)
        overrides, unset = store.plain, store.unset
    except EnvError:            # env.set's file is broken: every task that deploys names it
        overrides, unset = {}, frozenset()
    workers = web_workers(dict(cfg.app.env), overrides, unset)
    return max_connections(len(by_role.get("app", [])), len(by_role.get("worker", [])), workers)


def resize_note(cfg, nodes, before, after) -> str | None:
    """`fab env.set`/`env.unset`'s note when the new WEB_CONCURRENCY asks PostgreSQL for another size
    (`before`/`after`: the env stores; `nodes`: the cluster's); None when the db node's file stays."""
    if "db" not in cfg.role_names:
        return None
    count = {r: sum(1 for n in nodes if n.role == r and n.private_ip) for r in ("app", "worker")}
    env = dict(cfg.app.env)
    old, new = (max_connections(count["app"], count["worker"], web_workers(env, s.plain, s.unset))
                for s in (before, after))
    if old == new:
        return None
    return (f"PostgreSQL's max_connections: {old} -> {new} for these workers; run `fab configure --role db` "
            "(it restarts PostgreSQL)")
