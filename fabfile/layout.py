"""docs/remote-layout.md in code: the names and paths configure and deploy agree on.

Pure values only (no I/O): the app's user and directories, the supervisor
program names, which role holds the database and the broker, and their ports.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import AppConfig

DB_ROLE = "db"                            # its node 0 is DB_HOST; PostgreSQL is set up on its nodes
BROKER_ROLE = "worker"                    # its node 0 runs redis, the celery broker
APP_ROLES = ("proxy", "app", "worker")    # roles that get the app user and /srv/<app>
WEB_PORT = 8000
DB_PORT = 5432
BROKER_PORT = 6379
NOLOGIN = "/usr/sbin/nologin"


@dataclass(frozen=True)
class AppLayout:
    name: str
    user: str
    group: str
    root: str          # /srv/<app>, the user's home
    releases: str
    shared: str
    current: str
    logs: str          # /var/log/<app>
    env_file: str      # /srv/<app>/shared/.env
    venv: str          # /srv/<app>/current/.venv
    project: str       # first part of django_settings
    wsgi: str          # <project>.wsgi:application
    web_program: str   # supervisor program names
    worker_program: str


def app_layout(app: AppConfig) -> AppLayout:
    root = f"/srv/{app.name}"
    project = app.django_settings.split(".", 1)[0]
    return AppLayout(
        name=app.name, user=app.name, group=app.name, root=root,
        releases=f"{root}/releases", shared=f"{root}/shared", current=f"{root}/current",
        logs=f"/var/log/{app.name}", env_file=f"{root}/shared/.env", venv=f"{root}/current/.venv",
        project=project, wsgi=f"{project}.wsgi:application",
        web_program=f"{app.name}-web", worker_program=f"{app.name}-worker",
    )
