"""Local state of a cluster: `<state_dir>/<cluster>/`, mode 0700.

It holds what only this machine knows: the generated cluster key pair
(`id_ed25519`, `.pub`), each node's SSH host key (`hostkeys/<node>`), and the
`known_hosts` file every SSH connection is pinned to.  Private files are 0600,
written atomically so a crash never leaves half a key.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import Config


def cluster_dir(cfg: Config) -> Path:
    return cfg.cluster.state_dir / cfg.cluster.name


def ensure_dir(path: Path) -> Path:
    """Create `path` (and parents) as 0700; tighten it if it already exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def ensure_cluster_dir(cfg: Config) -> Path:
    ensure_dir(cfg.cluster.state_dir)
    return ensure_dir(cluster_dir(cfg))


def write_file(path: Path, text: str, mode: int) -> None:
    """Replace `path` atomically with `text`, created with `mode` (never wider, even briefly)."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private(path: Path, text: str) -> None:
    write_file(path, text, 0o600)


def create_private(path: Path, text: str) -> str:
    """`path` created 0600 with `text` unless it exists already (the first of several writers wins, even in
    threads of one run: whip-up's pipeline); what `path` holds afterwards."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)           # atomic, and never replaces: a value already there stays
        except FileExistsError:
            pass
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path.read_text()


def write_public(path: Path, text: str) -> None:
    write_file(path, text, 0o644)


def identity_paths(cfg: Config) -> tuple[Path, Path]:
    """(private, public) key files of the cluster: roles.yaml's, or the generated pair."""
    ssh = cfg.cluster.ssh
    if ssh.public_key is not None and ssh.private_key is not None:
        return ssh.private_key, ssh.public_key
    private = cluster_dir(cfg) / "id_ed25519"
    return private, private.with_name("id_ed25519.pub")


def known_hosts_path(cfg: Config) -> Path:
    return cluster_dir(cfg) / "known_hosts"


def host_key_paths(cfg: Config, node_name: str) -> tuple[Path, Path]:
    """(private, public) host key files of one node."""
    private = cluster_dir(cfg) / "hostkeys" / node_name
    return private, private.with_name(f"{node_name}.pub")
