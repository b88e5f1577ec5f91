"""docs/remote-layout.md in code: the names, paths and ports configure and deploy agree on.

Pure values only (no I/O): the app's user and directories (one frozen `Layout`,
everything derived from `app.name`), the supervisor program names, the marks
deploy leaves in venvs and releases, which role holds the database and the
broker, their ports, and shared/.env (its variables and its file format).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Mapping, Sequence
from urllib.parse import quote

from .config import Config

PROXY_ROLE = "proxy"                      # nginx: the site, its names and certificate (fabfile/tls)
DB_ROLE = "db"                            # its node 0 is DB_HOST; PostgreSQL is set up on its nodes
BROKER_ROLE = "worker"                    # its node 0 runs redis, the celery broker
APP_ROLES = ("proxy", "app", "worker")    # roles that get the app user and /srv/<app>
WEB_PORT = 8000                           # gunicorn's port on app nodes: slot a's; slot b's is the next one
SLOTS = ("a", "b")                        # the two gunicorn programs of an app node (deploy/slots.py)
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
    def launcher(self) -> str:
        """shared/whipup-exec: every process of the app starts through it (deploy/runtime.py)."""
        return f"{self.shared}/whipup-exec"

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
        """The name of the supervisor conf file of the web slots (and the prefix of their programs)."""
        return f"{self.app}-web"

    def slot_program(self, slot: str) -> str:
        """The supervisor program of gunicorn slot `slot` (a or b)."""
        return f"{self.app}-web-{check_slot(slot)}"

    @property
    def boot_program(self) -> str:
        """A one-shot supervisor program: starts the live slot when supervisord starts (a host's boot)."""
        return f"{self.app}-web-boot"

    @property
    def slots_dir(self) -> str:
        """slots/a and slots/b: links to the release each slot runs; slots/live: a link to the live slot."""
        return f"{self.root}/slots"

    def slot(self, slot: str) -> str:
        return f"{self.slots_dir}/{check_slot(slot)}"

    @property
    def live_slot(self) -> str:
        return f"{self.slots_dir}/live"

    @property
    def upstream_file(self) -> str:
        """On proxies: nginx's servers of the app (each app node's live slot), rewritten by every switch."""
        return f"/etc/nginx/whipup/{self.app}-upstream.conf"

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


def check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise ValueError(f"not a slot: {slot!r} (expected one of {', '.join(SLOTS)})")
    return slot


def slot_port(slot: str) -> int:
    """gunicorn's port in slot `slot`: 8000 for a, 8001 for b."""
    return WEB_PORT + SLOTS.index(check_slot(slot))


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(check_slot(slot))]


def cluster_env(layout: Layout, *, secret_key: str, db_password: str | None, db_host: str | None,
                broker_host: str | None, hosts: Sequence[str] = (), extra: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """shared/.env's variables, as twelve-factor apps read them (secrets included: the file goes to the hosts
    on stdin, never argv). `hosts`: the site's names and addresses; `extra`: media and the user's own.

    Without a db host (a cluster with no db role) the app uses SQLite in shared/, which outlives releases.
    `extra` (the app's own app.env/app.secrets, fabfile/appenv) follows whipup's lines, `NAME='sh-quoted'`.
    """
    db = (f"sqlite:///{layout.shared}/db.sqlite3" if db_host is None else
          f"postgres://{quote(layout.app, safe='')}:{quote(db_password or '', safe='')}@{db_host}:{DB_PORT}/{layout.app}")
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    env = {
        "SECRET_KEY": secret_key, "DJANGO_SECRET_KEY": secret_key,
        "DEBUG": "false", "DJANGO_DEBUG": "false",
        "DATABASE_URL": db,
        "ALLOWED_HOSTS": ",".join(hosts), "DJANGO_ALLOWED_HOSTS": ",".join(hosts),
        "CSRF_TRUSTED_ORIGINS": ",".join(origins), "DJANGO_CSRF_TRUSTED_ORIGINS": ",".join(origins),
        "MEDIA_ROOT": f"{layout.shared}/media",      # uploads outlive releases (when not in the bucket)
    }
    if broker_host:
        env["REDIS_URL"] = env["CELERY_BROKER_URL"] = f"redis://{broker_host}:{BROKER_PORT}/0"
    for key, value in (extra or {}).items():
        env.setdefault(key, value)
    return env


def env_file_text(values: Mapping[str, str]) -> str:
    """`KEY=value` lines, each value quoted for sh (sourced by the launcher; `parse_env_text` reads them)."""
    for key, value in values.items():
        if any(c in value for c in "\n\r\0"):
            raise ValueError(f"{key}: a value may not hold a newline or NUL")
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def parse_env_text(text: str) -> dict[str, str]:
    """The inverse of `env_file_text` (what gunicorn's settings do on every HUP)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = "".join(shlex.split(value)) if value else ""
    return out


def env_text(layout: Layout, **kwargs) -> str:
    """shared/.env's text: `cluster_env` quoted for sh."""
    return env_file_text(cluster_env(layout, **kwargs))
