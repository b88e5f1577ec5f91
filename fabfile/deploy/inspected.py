"""PURE: from what inspection found (`fabfile.project.Project`) to what a deploy takes: the requirements
(the project's, plus what running on the cluster needs), the files whipup writes into the release before
pip runs, and how the release runs (`AppRuntime`).

What the cluster needs and a project may not list: gunicorn (the web process), a PostgreSQL driver (with a
db role), django-storages with boto3 (media in the cluster's bucket). They go into `.whipup/extras.txt`,
which pip reads after the project's own requirements, so the project's pins win.
"""
from __future__ import annotations

import re

from ..appconfig import AppConfig
from ..config import Config
from ..layout import DB_ROLE
from ..project.model import Project
from .requirements import Requirements
from .runtime import AppRuntime

EXTRAS_FILE = ".whipup/extras.txt"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", re.M)
GUNICORN = "gunicorn>=22"
POSTGRES_DRIVER = "psycopg[binary]>=3.1"
STORAGES = "django-storages[s3]>=1.14"
_POSTGRES_NAMES = {"psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary", "psycopg-c"}


def names(reqs: Requirements) -> set[str]:
    """The distribution names the requirements files list (normalised: lower case, `_`/`.` as `-`)."""
    found = set()
    for _, text in reqs.files:
        for m in _NAME.finditer(text):
            found.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    return found


def extras(reqs: Requirements, *, postgres: bool, s3: bool) -> list[str]:
    """What the cluster needs that the requirements do not list."""
    have = names(reqs)
    out = []
    if "gunicorn" not in have:
        out.append(GUNICORN)
    if postgres and not have & _POSTGRES_NAMES:
        out.append(POSTGRES_DRIVER)
    if s3 and "django-storages" not in have:
        out.append(STORAGES)
    return out


def requirements(project: Project, cfg: Config) -> Requirements:
    """The project's requirements (its files, or what whipup generated from a lock or pyproject.toml), plus
    the extras file when there is anything to add: one hash covers them all."""
    reqs = project.requirements.requirements
    more = extras(reqs, postgres=DB_ROLE in cfg.role_names, s3=cfg.app.media == "s3")
    return Requirements(reqs.files + (((EXTRAS_FILE, "".join(f"{r}\n" for r in more)),) if more else ()))


def generated_files(project: Project, reqs: Requirements) -> dict[str, str]:
    """The files of `reqs` that are whipup's, not the commit's: written into the release before pip."""
    generated = {EXTRAS_FILE}
    if project.requirements.generated is not None:
        generated.add(project.requirements.install)
    return {path: text for path, text in reqs.files if path in generated}


def install_files(project: Project, reqs: Requirements) -> list[str]:
    """The files `pip install` reads with -r (each follows its own includes)."""
    return [project.requirements.install] + [p for p, _ in reqs.files if p == EXTRAS_FILE]


def runtime(project: Project, app: AppConfig) -> AppRuntime:
    return AppRuntime(project_settings=project.settings, wsgi=project.wsgi, root=project.root,
                      celery_app=project.celery_app, release_command=project.release_command,
                      overlay=app.overlay, health_path=app.health_path)
