"""fab certificate: the certificate stage on its own (whip-up-full-system runs it after configure)."""
from __future__ import annotations

from ..boundary import cluster_task
from ..config import Config
from ..provision.tasks import connect_ec2
from ..remote import HostFailures, RemoteError
from . import stage


@cluster_task(errors=(HostFailures, RemoteError))
def certificate(c, cfg: Config):
    """Get or renew the site's certificate on each proxy (cluster.domain, cluster.tls); say what it serves."""
    if not cfg.cluster.site.tls:
        print("certificate: no TLS (set cluster.domain, and tls other than off): nothing to do")
        return
    ec2, _ = connect_ec2(cfg)
    print(f"certificate: {', '.join(cfg.cluster.site.names)} (tls {cfg.cluster.site.mode})")
    stage.certificates(cfg, ec2)
