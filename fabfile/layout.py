"""docs/remote-layout.md in code: the names, paths and ports configure and deploy agree on.

Pure values only (no I/O): the app's user and directories (one frozen `Layout`,
everything derived from `app.name`), the supervisor program names, the marks
deploy leaves in venvs and releases, which role holds the database and the
broker, their ports, and the shared/.env text.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Mapping

from .config import Config

DB_ROLE = "db"                            # its node 0 is DB_HOST; PostgreSQL is set up on its nodes
BROKER_ROLE = "worker"                    # its node 0 runs redis, the celery broker
APP_ROLES = ("proxy", "app", "worker")    # roles that get the app user and /srv/<app>
WEB_PORT = 8000                           # gunicorn's port on app nodes
DB_PORT = 5432
BROKER_PORT = 6379
NOLOGIN = "/usr/sbin/nologin"

VENV = ".venv"
REQUIREMENTS_MARK = ".whipup-requirements"   # in a venv: sha256 of the requirements file it was built from
REQUIREMENTS_FILES_MARK = ".whipup-requirements-files"  # in a venv: `<sha256> <path>` per requirements file
VENV_MARK = ".whipup-venv"                   # in a venv: the id of its content (shared by hardlinked copies)
TREE_MARK = ".whipup-tree"                   # in a release: the git tree id of the app deployed
PREVIOUS_MARK = ".whipup-previous"           # in a release: the node's current release when it was deployed
PARTIAL_MARK = ".whipup-partial"             # in a release: still being made (gone once `current` points at it)


@dataclass(frozen=True)
class Layout:
    app: str                 # app.name: system user, group, /srv/<app>, program names
    settings: str            # app.django_settings
    requirements: str        # app.requirements, relative to a release
    base: str = "/srv"       # hosts: /srv (tests run the scripts under a temp dir)

    @classmethod
    def of(cls, cfg: Config) -> "Layout":
        return cls(cfg.app.name, cfg.app.django_settings or f"{cfg.app.name}.settings",
                   cfg.app.requirements or "requirements.txt")

    @property
    def user(self) -> str:
        return self.app

    @property
    def group(self) -> str:
        return self.app

    @property
    def root(self) -> str:
        """/srv/<app>, the app user's home."""
        return f"{self.base}/{self.app}"

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def shared(self) -> str:
        return f"{self.root}/shared"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def current_venv(self) -> str:
        """The venv the supervisor programs run from: the current release's, named through `current`."""
        return f"{self.current}/{VENV}"

    @property
    def logs(self) -> str:
        return f"/var/log/{self.app}"

    @property
    def env_file(self) -> str:
        return f"{self.shared}/.env"

    @property
    def mirror(self) -> str:
        """The bare git mirror the push strategy pushes to (and the git strategy fetches into)."""
        return f"{self.root}/repo.git"

    @property
    def lock_dir(self) -> str:
        return f"{self.shared}/deploy.lock"

    @property
    def audit_log(self) -> str:
        return f"{self.shared}/deploys.log"

    @property
    def web_program(self) -> str:
        return f"{self.app}-web"

    @property
    def worker_program(self) -> str:
        return f"{self.app}-worker"

    @property
    def project(self) -> str:
        """The Django project package: the first part of django_settings."""
        return self.settings.split(".", 1)[0]

    @property
    def wsgi(self) -> str:
        return f"{self.project}.wsgi:application"

    def release(self, release_id: str) -> str:
        return f"{self.releases}/{release_id}"

    def venv(self, release_id: str) -> str:
        """The venv of one release (by its own path; `current_venv` is the one named through `current`)."""
        return f"{self.release(release_id)}/{VENV}"


def env_text(layout: Layout, *, secret_key: str, db_password: str | None, db_host: str | None,
             broker_host: str | None, extra: Mapping[str, str] | None = None) -> str:
    """shared/.env as docs/remote-layout.md lists it (secrets included: it goes on stdin, never argv).

    Without a db host (a cluster with no db role) the app uses SQLite in shared/, which outlives releases.
    `extra` (the app's own app.env/app.secrets, fabfile/appenv) follows whipup's lines, `NAME='sh-quoted'`.
    """
    lines = [
        f"DJANGO_SECRET_KEY={secret_key}",
        "DJANGO_DEBUG=false",
        "DJANGO_ALLOWED_HOSTS=*",
        f"MEDIA_ROOT={layout.shared}/media",      # uploads outlive releases
    ]
    if db_host is None:
        lines += ["DB_ENGINE=sqlite", f"DB_NAME={layout.shared}/db.sqlite3"]
    else:
        lines += ["DB_ENGINE=postgresql", f"DB_NAME={layout.app}", f"DB_USER={layout.app}",
                  f"DB_PASSWORD={db_password}", f"DB_HOST={db_host}", f"DB_PORT={DB_PORT}"]
    if broker_host:
        lines.append(f"CELERY_BROKER_URL=redis://{broker_host}:{BROKER_PORT}/0")
    lines += [f"{name}={shlex.quote(value)}" for name, value in (extra or {}).items()]
    return "".join(f"{line}\n" for line in lines)
