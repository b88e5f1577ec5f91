"""The certificate stage on the proxy nodes (after configure), its placeholder step (before configure's nginx
check), and the status lines. Thin runners around commands.py's builders: one SSH command per step, every
proxy in parallel, failures collected (remote.HostFailures)."""
from __future__ import annotations

import time
from typing import Callable

from ..layout import PROXY_ROLE
from ..nodes import Node, find_nodes
from ..remote import on_hosts, raise_failures, run, sudo_sh
from ..ssh import connect
from . import commands as cmd
from .config import SiteConfig


def proxies(nodes: list[Node]) -> list[Node]:
    return sorted((n for n in nodes if n.role == PROXY_ROLE and n.state == "running"), key=lambda n: n.index)


def _on_proxies(cfg, nodes: list[Node], what: str, fn: Callable) -> list:
    def one(node: Node):
        conn = connect(cfg, node)
        try:
            return fn(conn, node)
        finally:
            conn.close()

    return [o.value for o in raise_failures(what, on_hosts(proxies(nodes), one))]


def prepare(cfg, nodes: list[Node]) -> None:
    """Before configure renders the site: with TLS, each proxy has the files nginx's TLS server names (a
    placeholder made on the proxy until the certificate stage puts the real one in their place)."""
    site = cfg.cluster.site
    if site.tls:
        _on_proxies(cfg, nodes, "tls: the site's placeholder certificate",
                    lambda conn, node: run(conn, sudo_sh(cmd.placeholder(site)), step="placeholder certificate"))


def sandbox_acme() -> tuple[str, str]:
    """The local cloud's ACME directory and its listener's CA certificate (PEM)."""
    from ..sandbox.acme import listener_ca_path
    from ..sandbox.settings import load_settings

    settings = load_settings()
    return settings.acme_directory, listener_ca_path(settings).read_text()


def _acme(cfg, conn, site: SiteConfig) -> str:
    sandbox_dir, ca = sandbox_acme() if cfg.cluster.target == "sandbox" else (None, None)
    if ca is not None:
        run(conn, sudo_sh(cmd.local_ca()), stdin=ca, step="trust the local cloud's ACME server")
    directory = cmd.directory(site, cfg.cluster.target, sandbox_dir)
    return run(conn, sudo_sh(cmd.acme(site, directory)), step=f"certificate from {directory}").stdout


def _files(conn, site: SiteConfig) -> str:
    changed = False
    for src, dest, mode in ((site.certificate, f"{cmd.TLS_DIR}/user.crt", "0644"),
                            (site.key, f"{cmd.TLS_DIR}/user.key", "0600")):
        r = run(conn, sudo_sh(cmd.user_file(dest, mode)), stdin=src.read_text(), step=f"upload {src.name}")
        changed = changed or "changed" in r.stdout
    out = run(conn, sudo_sh(cmd.user_files_linked(changed)), step="the site's certificate").stdout
    return ("issued\n" if changed else "") + out


def certify(cfg, node: Node, conn) -> str:
    """One proxy: its certificate in place for the site's mode; a line saying what it serves."""
    site = cfg.cluster.site
    start = time.monotonic()
    if site.mode == "acme":
        out = _acme(cfg, conn, site)
    elif site.mode == "self-signed":
        out = run(conn, sudo_sh(cmd.self_signed(site)), step="self-signed certificate").stdout
    else:
        out = _files(conn, site)
    shown = cmd.parse_show(run(conn, sudo_sh(cmd.show()), step="read the certificate").stdout)
    how = (f"issued in {time.monotonic() - start:.1f} s" if "issued" in out.split()
           else "linked" if "linked" in out.split() else "already ok")
    return f"{node.name}: {describe(shown)} ({how})"


def describe(shown: dict[str, str]) -> str:
    if not shown:
        return "no certificate"
    return f"{shown.get('subject', '?')}, issuer {shown.get('issuer', '?')}, until {shown.get('notAfter', '?')}"


def certificates(cfg, ec2, out=print) -> list[str]:
    """The certificate stage: every proxy's certificate for the site (a no-op without TLS); its lines."""
    if not cfg.cluster.site.tls:
        return []
    lines = _on_proxies(cfg, find_nodes(ec2, cfg.cluster.name), "certificate",
                        lambda conn, node: certify(cfg, node, conn))
    for line in lines:
        out(f"  {line}")
    return lines


def status_lines(cfg, nodes: list[Node]) -> list[str]:
    """`fab status`'s site lines: the names, and each proxy's certificate (issuer, expiry)."""
    site = cfg.cluster.site
    if not site.domain:
        return ["site: no domain (plain HTTP on the proxy's address; set cluster.domain for HTTPS)"]
    lines = [f"site: {', '.join(site.names)} ({'tls ' + site.mode if site.tls else 'plain HTTP'})"]
    if site.tls:
        lines += _on_proxies(cfg, nodes, "status", lambda conn, node: f"{node.name}: " + describe(
            cmd.parse_show(run(conn, sudo_sh(cmd.show()), step="read the certificate", check=False).stdout)))
    return lines
