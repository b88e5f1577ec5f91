"""ed25519 keys made with `cryptography` (no ssh-keygen), kept in the state dir.

Two kinds: the cluster identity (imported as the EC2 key pair, used to log in)
and one host key per node (handed to cloud-init, pinned in known_hosts).
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..config import SSH_PORT, Config
from ..errors import ProvisionError
from ..state import ensure_cluster_dir, host_key_paths, identity_paths, write_private, write_public


@dataclass(frozen=True)
class KeyText:
    private: str   # OpenSSH PEM ("-----BEGIN OPENSSH PRIVATE KEY-----")
    public: str    # one line: "ssh-ed25519 AAAA... comment"


def generate_ed25519(comment: str) -> KeyText:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyText(private=private, public=f"{public.decode('ascii')} {comment}")


def public_key_parts(line: str) -> tuple[str, str]:
    """("ssh-ed25519", "AAAA...") of an OpenSSH public key line; ValueError if it is not one."""
    fields = line.split()
    if len(fields) < 2 or not fields[0].startswith(("ssh-", "ecdsa-")):
        raise ValueError(f"not an OpenSSH public key: {line[:40]!r}")
    try:
        base64.b64decode(fields[1], validate=True)
    except ValueError:
        raise ValueError(f"not an OpenSSH public key (bad base64): {line[:40]!r}") from None
    return fields[0], fields[1]


def fingerprint(line: str) -> str:
    """SHA256 fingerprint as `ssh-keygen -l` prints it."""
    blob = base64.b64decode(public_key_parts(line)[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def known_hosts_line(address: str, public_line: str, port: int = SSH_PORT) -> str:
    host = address if port == SSH_PORT else f"[{address}]:{port}"
    kind, blob = public_key_parts(public_line)
    return f"{host} {kind} {blob}"


def ensure_identity(cfg: Config) -> str:
    """The cluster's public key line; generates the pair in the state dir if roles.yaml names none."""
    private, public = identity_paths(cfg)
    if cfg.cluster.ssh.public_key is None and not (private.exists() and public.exists()):
        ensure_cluster_dir(cfg)
        pair = generate_ed25519(f"whipup@{cfg.cluster.name}")
        write_private(private, pair.private)
        write_public(public, pair.public + "\n")
    line = public.read_text(encoding="utf-8").strip()
    try:
        public_key_parts(line)
    except ValueError as exc:
        raise ProvisionError(f"{public}: {exc}") from None
    return line


def ensure_host_key(cfg: Config, node_name: str) -> KeyText:
    """The node's host key pair, generated and stored on first use."""
    private, public = host_key_paths(cfg, node_name)
    if not (private.exists() and public.exists()):
        ensure_cluster_dir(cfg)
        pair = generate_ed25519(f"root@{node_name}")
        write_private(private, pair.private)
        write_public(public, pair.public + "\n")
        return pair
    return KeyText(private=private.read_text(encoding="utf-8"), public=public.read_text(encoding="utf-8").strip())


def read_host_public(cfg: Config, node_name: str) -> str | None:
    public = host_key_paths(cfg, node_name)[1]
    return public.read_text(encoding="utf-8").strip() if public.exists() else None

