"""PURE: what one node should be, from roles.yaml, the rendered templates and the remote layout.

- packages: the cluster's list, then the role's, then (app and worker roles) app.build_packages with
  build-essential and python3-dev, then (every node, while the monitor role is on) node_exporter;
- on app roles (layout.APP_ROLES): the app's system user and its directories (docs/remote-layout.md);
- the role's rendered templates; an nginx site in sites-available is also enabled (a link in
  sites-enabled) and Debian's `default` site is removed, both notifying the site's service;
- the role's services (and node_exporter's, while the monitor role is on), running and enabled at boot
  (systemctl enable, or update-rc.d's rc links under sysv);
- on the db role: the app's PostgreSQL role (with its password) and database.
"""
from __future__ import annotations

import posixpath

from ..config import Config
from ..layout import APP_ROLES, DB_ROLE, NOLOGIN, Layout
from ..monitor.config import node_packages, node_services
from ..nodes import Node
from .want import Desired, DesiredAbsent, DesiredDir, DesiredFile, DesiredLink, DesiredPostgres, DesiredUser

# the roles that build the app's venv (pip may compile a requirement there), and what building needs
VENV_ROLES = ("app", "worker")
BUILD_BASE = ("build-essential", "python3-dev")

NGINX_AVAILABLE = "/etc/nginx/sites-available/"
NGINX_ENABLED = "/etc/nginx/sites-enabled/"
NGINX_DEFAULT_SITE = NGINX_ENABLED + "default"


def app_dirs(cfg: Config) -> tuple[DesiredDir, ...]:
    a = Layout.of(cfg)
    return (
        DesiredDir(a.root, a.user, a.group, "0755"),
        DesiredDir(a.releases, a.user, a.group, "0755"),
        DesiredDir(a.shared, a.user, a.group, "0750"),
        DesiredDir(a.logs, a.user, a.group, "0755"),
    )


def build_packages(cfg: Config, role: str) -> tuple[str, ...]:
    """roles.yaml's app.build_packages, with a compiler and Python's headers, on the roles that build the venv
    (none elsewhere, none when the key is empty)."""
    wanted = cfg.app.build_packages
    return tuple(dict.fromkeys(BUILD_BASE + tuple(wanted))) if wanted and role in VENV_ROLES else ()


def nginx_sites(files: tuple[DesiredFile, ...]) -> tuple[tuple[DesiredLink, ...], tuple[DesiredAbsent, ...]]:
    """Enable every site written to sites-available; disable Debian's default site when there is one."""
    links = tuple(
        DesiredLink(NGINX_ENABLED + posixpath.basename(f.path), f.path, notify=f.notify, action="reload")
        for f in files if f.path.startswith(NGINX_AVAILABLE)
    )
    absent = (DesiredAbsent(NGINX_DEFAULT_SITE, notify=links[0].notify, action="reload"),) if links else ()
    return links, absent


def desired_state(cfg: Config, node: Node, files: tuple[DesiredFile, ...], *,
                  db_password: str | None) -> Desired:
    """The Desired of `node`: `files` are its rendered templates, `db_password` the app role's (db role)."""
    role = cfg.role(node.role)
    a = Layout.of(cfg)
    links, absent = nginx_sites(files)
    on_app_role = role.name in APP_ROLES
    return Desired(
        packages=tuple(dict.fromkeys(cfg.packages + role.packages + build_packages(cfg, role.name)
                                     + node_packages(cfg))),
        user=DesiredUser(a.user, a.root, NOLOGIN) if on_app_role else None,
        dirs=app_dirs(cfg) if on_app_role else (),
        files=files,
        links=links,
        absent=absent,
        services=tuple(dict.fromkeys(role.services + node_services(cfg))),
        postgres=DesiredPostgres(a.user, a.app, db_password) if role.name == DB_ROLE else None,
        apt_max_age=cfg.configure.apt_max_age_hours * 3600,
    )
