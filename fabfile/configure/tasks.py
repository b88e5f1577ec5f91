"""fab configure [--role ROLE] [--dry-run]: make every node what its role in roles.yaml says."""
from __future__ import annotations

from ..boundary import cluster_task
from ..config import Config
from ..provision.tasks import connect_ec2
from ..remote import HostFailures, RemoteError
from .facts import FactsError
from .run import ConfigureError, TemplateError, configure_cluster


@cluster_task(help={"role": "configure only the nodes of this role (default: all)",
                    "dry-run": "print what would change on each host, with diffs of config files; change nothing"},
              errors=(ConfigureError, TemplateError, HostFailures, RemoteError, FactsError))
def configure(c, role=None, dry_run=False, *, cfg: Config):
    """Install packages, write config files, run services and PostgreSQL on every node; idempotent."""
    if role is not None:
        cfg.role(role)   # an unknown role exits before the cloud is contacted
    ec2, _ = connect_ec2(cfg)
    configure_cluster(cfg, ec2, role=role, dry_run=dry_run)
