"""The site checked by its name over HTTPS, as a visitor reaches it (whip-up-full-system's last check).

On the local cloud the name is resolved by the sandbox's own DNS (never this machine's resolver: no query
leaves for anywhere) and the certificate verified against the sandbox ACME server's root only; on aws by
the usual resolver and trust store, where a new zone's delegation may not have reached every resolver yet
(a note, not a failure).
"""
from __future__ import annotations

import http.client
import shlex
import socket
import ssl

from ..errors import ProvisionError


class SiteCheckError(ProvisionError):
    """The site does not answer by its name over HTTPS as it should."""


class SiteConnection(http.client.HTTPSConnection):
    """HTTPS to `address`, with the site's name as SNI, Host and the name the certificate must hold."""

    def __init__(self, name: str, address: str, context: ssl.SSLContext, timeout: float = 10, port: int = 443):
        super().__init__(name, port, context=context, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def get(name: str, address: str, path: str, context: ssl.SSLContext | None, *, https: bool = True,
        port: int | None = None):
    """(status, Location header, body, peer certificate DER) of GET `path` at `address` as `name`."""
    conn = (SiteConnection(name, address, context, port=port or 443) if https
            else http.client.HTTPConnection(address, port or 80, timeout=10))
    try:
        conn.connect()      # the certificate first: a response with `Connection: close` drops the socket
        der = conn.sock.getpeercert(binary_form=True) if https else None
        conn.request("GET", path, headers={"Host": name})
        r = conn.getresponse()
        return r.status, r.getheader("Location"), r.read(), der
    finally:
        conn.close()


def proxy_curl(cfg) -> tuple[str, str]:
    """(base URL, curl options) for checking the site on the proxy itself: its name over HTTPS to 127.0.0.1
    (-k: the proxy may not trust the issuer; the check from outside verifies it)."""
    site = cfg.cluster.site
    if not site.tls:
        return "http://127.0.0.1", ""
    return f"https://{site.domain}", f"-k --noproxy '*' --resolve {shlex.quote(f'{site.domain}:443:127.0.0.1')} "


def sandbox_context(cfg) -> tuple[ssl.SSLContext, str]:
    """The context a visitor of a local cloud site uses: only the sandbox ACME root trusted (tls acme); for a
    self-signed or user certificate, no verification (said so)."""
    from ..sandbox.acme import root_path
    from ..sandbox.settings import load_settings

    if cfg.cluster.site.mode == "acme":
        root = root_path(load_settings())
        return ssl.create_default_context(cafile=str(root)), f"verified with the local cloud's ACME root {root}"
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx, f"not verified: tls {cfg.cluster.site.mode}"


def from_here(cfg, proxy_address: str) -> list[str]:
    """https://<domain>/ answers 200 and http://<domain>/ redirects to it, from this machine."""
    site = cfg.cluster.site
    if cfg.cluster.target != "sandbox":
        return _from_here_aws(site.domain)
    from ..sandbox.dns import resolve
    from ..sandbox.settings import load_settings
    from ..ssh import check_sandbox_route

    addresses = resolve(load_settings(), site.domain)
    if proxy_address not in addresses:
        raise SiteCheckError(f"{site.domain} resolves to {', '.join(addresses) or 'nothing'} in the local cloud's "
                             f"DNS, not to the proxy {proxy_address}")
    check_sandbox_route(proxy_address)
    context, how = sandbox_context(cfg)
    try:
        status, _, _, _ = get(site.domain, proxy_address, "/", context)
        plain, location, _, _ = get(site.domain, proxy_address, "/", None, https=False)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        raise SiteCheckError(f"https://{site.domain}/ from this machine: {exc}") from None
    if status >= 500:
        raise SiteCheckError(f"https://{site.domain}/ from this machine answered {status}")
    if plain not in (301, 308) or location != f"https://{site.domain}/":
        raise SiteCheckError(f"http://{site.domain}/ answered {plain} {location or ''}, not a redirect to HTTPS")
    return [f"from this machine: GET https://{site.domain}/ -> {status} ({how})",
            f"from this machine: GET http://{site.domain}/ -> {plain} {location}"]


def _from_here_aws(domain: str) -> list[str]:
    try:
        address = socket.gethostbyname(domain)
        status = get(domain, address, "/", ssl.create_default_context())[0]
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return [f"note: https://{domain}/ not reached from this machine yet ({exc}); a new zone's delegation "
                "can take a while to reach every resolver"]
    return [f"from this machine: GET https://{domain}/ -> {status}"]


def site_lines(cfg, address: str) -> list[str]:
    """whip-up-full-system's last lines: where the site is."""
    site = cfg.cluster.site
    if site.tls:
        return [f"site: https://{site.domain}/"]
    if site.domain:
        return ["note: plain HTTP (cluster.tls: off): no port 443", f"site: http://{site.domain}/"]
    return ["note: plain HTTP on port 80 (no cluster.domain: set one for its name and HTTPS)",
            f"site: http://{address}/"]
