"""roles.yaml's site keys under `cluster`: domain, aliases, tls, acme, hsts -> one frozen `SiteConfig`.

    domain: shop.example.com         # null (the default): no name, the site is plain HTTP on the proxy's address
    aliases: [www.shop.example.com]  # more names on the same certificate and records
    tls: acme                        # acme (the default with a domain) | self-signed | off
                                     # | {certificate: PATH, key: PATH}: a certificate of your own
    acme: {staging: false, email: null}   # Let's Encrypt's staging directory; the account's contact
    hsts: false                      # true (one year) or max-age seconds: Strict-Transport-Security

Errors carry the key path (`cluster.tls.key: ...`), raised by config.py's loader before any API call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..validate import Invalid, boolean, file_path, integer, list_of, mapping, shown, string, text_file, type_name

MODES = ("acme", "self-signed", "files", "off")
HSTS_YEAR = 31536000
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN = re.compile(rf"\A{_LABEL}(?:\.{_LABEL})+\Z", re.ASCII)
EMAIL = re.compile(r"\A[^@\s]+@[^@\s]+\.[^@\s]+\Z", re.ASCII)
_ACME_KEYS = ("staging", "email")
_FILES_KEYS = ("certificate", "key")


@dataclass(frozen=True)
class SiteConfig:
    domain: str | None = None
    aliases: tuple[str, ...] = ()
    mode: str = "off"                  # acme | self-signed | files | off
    certificate: Path | None = None    # mode files: the user's certificate chain (PEM) and key on this machine
    key: Path | None = None
    staging: bool = False              # acme on aws: Let's Encrypt's staging directory
    email: str | None = None
    hsts: int = 0                      # Strict-Transport-Security max-age; 0: not sent

    @property
    def tls(self) -> bool:
        return self.mode != "off"

    @property
    def names(self) -> tuple[str, ...]:
        return ((self.domain,) if self.domain else ()) + self.aliases


NO_SITE = SiteConfig()


def parse_site(m: dict, path: str, root: Path) -> SiteConfig:
    """The site keys of the cluster mapping `m` (already checked for unknown keys) at `path` (`cluster`)."""
    domain = None if m.get("domain") is None else _domain(m["domain"], f"{path}.domain")
    aliases = list_of(m.get("aliases", []) or [], f"{path}.aliases", _domain)
    for i, alias in enumerate(aliases):
        if alias == domain or alias in aliases[:i]:
            raise Invalid(f"{path}.aliases[{i}]", f"{alias} is named twice")
    if aliases and domain is None:
        raise Invalid(f"{path}.aliases", "needs cluster.domain (the site's main name)")
    tls = m.get("tls", "acme" if domain else "off")
    mode, cert, key = _tls(tls, f"{path}.tls", root)
    if mode != "off" and domain is None:
        raise Invalid(f"{path}.tls", f"{mode} needs cluster.domain (the name the certificate is for)")
    acme = mapping(m.get("acme", {}) or {}, f"{path}.acme", _ACME_KEYS)
    email = acme.get("email")
    hsts = _hsts(m.get("hsts", False), f"{path}.hsts")
    if hsts and mode == "off":
        raise Invalid(f"{path}.hsts", "needs TLS (cluster.domain with tls other than off)")
    return SiteConfig(
        domain=domain, aliases=aliases, mode=mode, certificate=cert, key=key,
        staging=boolean(acme.get("staging", False), f"{path}.acme.staging"),
        email=None if email is None else string(email, f"{path}.acme.email", EMAIL, "an e-mail address"),
        hsts=hsts)


def _domain(value: Any, path: str) -> str:
    if isinstance(value, str) and value.endswith("."):
        value = value[:-1]
    if isinstance(value, str) and value != value.lower():
        raise Invalid(path, f"expected a lower-case DNS name, got {shown(value)}")
    name = string(value, path, DOMAIN, "a DNS name like shop.example.com")
    if len(name) > 253:
        raise Invalid(path, "a DNS name has at most 253 characters")
    return name


def _tls(value: Any, path: str, root: Path) -> tuple[str, Path | None, Path | None]:
    if isinstance(value, bool) and not value:
        return "off", None, None
    if isinstance(value, str):
        if value not in ("acme", "self-signed", "off"):
            raise Invalid(path, f"expected acme, self-signed, off or {{certificate: PATH, key: PATH}}, "
                                f"got {shown(value)}")
        return value, None, None
    if not isinstance(value, dict):
        raise Invalid(path, f"expected acme, self-signed, off or {{certificate: PATH, key: PATH}}, "
                            f"got {type_name(value)}")
    m = mapping(value, path, _FILES_KEYS, required=_FILES_KEYS)
    cert = file_path(m["certificate"], f"{path}.certificate", root, must_exist=True)
    key = file_path(m["key"], f"{path}.key", root, must_exist=True)
    if "-----BEGIN CERTIFICATE-----" not in text_file(cert, f"{path}.certificate"):
        raise Invalid(f"{path}.certificate", f"{cert} holds no PEM certificate")
    if "PRIVATE KEY-----" not in text_file(key, f"{path}.key"):
        raise Invalid(f"{path}.key", f"{key} holds no PEM private key")
    return "files", cert, key


def _hsts(value: Any, path: str) -> int:
    if isinstance(value, bool):
        return HSTS_YEAR if value else 0
    return integer(value, path, 0, 2 * HSTS_YEAR)


ACME_PACKAGES = ("certbot", "cron")    # cron: certbot's renewal job on a host without systemd (its timer on one)


def with_site_packages(roles: tuple, site: SiteConfig, proxy_role: str = "proxy") -> tuple:
    """The roles as configure sees them: with tls acme, the proxy role also installs certbot and keeps cron
    running (the certbot package's renewal schedule); else unchanged."""
    if site.mode != "acme":
        return roles
    out = []
    for role in roles:
        if role.name == proxy_role:
            role = replace(role, packages=tuple(dict.fromkeys(role.packages + ACME_PACKAGES)),
                           services=tuple(dict.fromkeys(role.services + ("cron",))))
        out.append(role)
    return tuple(out)
