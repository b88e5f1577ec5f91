"""The local cloud's ACME server: Debian's pebble on the bridge address, its root kept in the sandbox state.

    https://<bridge>:14000/dir     the ACME directory the proxy's certbot asks (settings.acme_directory)
    https://<bridge>:15000/roots/0 pebble's management endpoint: the root its certificates chain to

Pebble makes a new root every time it starts: `sandbox.up` fetches it once pebble answers and keeps it in
`<state>/acme/root.pem` (`fab sandbox.env` exports its path as WHIPUP_SANDBOX_ACME_ROOT), so a test or a
user can trust exactly it and nothing else. Pebble validates HTTP-01 on port 80 of the names as the
sandbox's DNS answers them (-dnsserver <bridge>:53, dns.py). Its own listener needs a certificate for the
bridge address: a small CA of the sandbox's signs one (`listener_ca.pem`); the proxy trusts that CA as a
cloud host trusts its surroundings' (the tls stage adds it to the host's store on the local cloud only).
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import urllib.request
from pathlib import Path

from .settings import SandboxSettings

ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}   # no random waits, no rejected nonces


def acme_dir(settings: SandboxSettings) -> Path:
    return settings.state_dir / "acme"


def root_path(settings: SandboxSettings) -> Path:
    """Pebble's current root certificate (PEM): what clients of the sandbox's sites trust."""
    return acme_dir(settings) / "root.pem"


def listener_ca_path(settings: SandboxSettings) -> Path:
    return acme_dir(settings) / "listener_ca.pem"


def pebble_config(settings: SandboxSettings) -> dict:
    d = acme_dir(settings)
    return {"pebble": {
        "listenAddress": f"{settings.bridge_address}:{settings.acme_port}",
        "managementListenAddress": f"{settings.bridge_address}:{settings.acme_admin_port}",
        "certificate": str(d / "listener.pem"), "privateKey": str(d / "listener.key"),
        "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }}


def pebble_argv(settings: SandboxSettings, config: Path) -> list[str]:
    return ["pebble", "-config", str(config), "-dnsserver", f"{settings.bridge_address}:{settings.dns_port}"]


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure_listener_cert(settings: SandboxSettings) -> bool:
    """The CA and the bridge address's certificate pebble's listener serves; made once (True if made now,
    or again because the bridge address changed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = acme_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    stamp = d / "listener.address"
    if stamp.exists() and stamp.read_text() == settings.bridge_address and (d / "listener.key").exists():
        return False
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whipup local cloud ACME listener CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    address = ipaddress.ip_address(settings.bridge_address)
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, settings.bridge_address)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(address)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    _write(d / "listener.key", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()), 0o600)
    _write(d / "listener.pem", leaf.public_bytes(pem), 0o644)
    _write(listener_ca_path(settings), ca.public_bytes(pem), 0o644)
    stamp.write_text(settings.bridge_address)
    return True


def write_config(settings: SandboxSettings) -> Path:
    path = settings.run_dir / "pebble.json"
    path.write_text(json.dumps(pebble_config(settings), indent=2) + "\n")
    return path


def _context(settings: SandboxSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(listener_ca_path(settings)))


def fetch(settings: SandboxSettings, path: str, port: int | None = None, timeout: float = 2) -> bytes:
    url = f"https://{settings.bridge_address}:{port or settings.acme_admin_port}{path}"
    with urllib.request.urlopen(url, timeout=timeout, context=_context(settings)) as r:  # noqa: S310 - bridge
        return r.read()


def answers(settings: SandboxSettings) -> bool:
    try:
        return b"newOrder" in fetch(settings, "/dir", settings.acme_port, timeout=1)
    except OSError:
        return False


def save_root(settings: SandboxSettings) -> bool:
    """Pebble's root as it is now into the state dir; True if it changed (pebble restarted)."""
    pem = fetch(settings, "/roots/0")
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise OSError(f"pebble's /roots/0 answered no certificate: {pem[:100]!r}")
    path = root_path(settings)
    if path.exists() and path.read_bytes() == pem:
        return False
    _write(path, pem, 0o644)
    return True
