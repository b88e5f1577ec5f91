"""Cluster secrets (DB password, Django SECRET_KEY): generated once, kept 0600.

(Named vault, not secrets: invoke puts this package's directory on sys.path, where a secrets.py
would shadow the standard library's.)

They live in `<state_dir>/<cluster>/secrets/<name>`, are read by whoever needs
them (configure for PostgreSQL, deploy for the app's .env) and reach hosts
only on stdin, never in a command line, a log or process arguments.
"""
from __future__ import annotations

import re
import secrets as _random

from .config import Config
from .state import cluster_dir, create_private, ensure_cluster_dir, ensure_dir

NAME = re.compile(r"\A[a-z][a-z0-9_]*\Z", re.ASCII)   # matched whole (fullmatch)


def secret(cfg: Config, name: str, *, nbytes: int = 32) -> str:
    """The secret `name` of this cluster, generated (URL-safe, `nbytes` of entropy) on first use."""
    if not NAME.fullmatch(name):
        raise ValueError(f"bad secret name {name!r}")
    ensure_cluster_dir(cfg)
    path = ensure_dir(cluster_dir(cfg) / "secrets") / name
    if path.exists():
        return path.read_text().strip()
    return create_private(path, _random.token_urlsafe(nbytes) + "\n").strip()


def mask(text: str, values: list[str]) -> str:
    """`text` with every secret value replaced by ******** (for diffs and logs)."""
    for v in values:
        if v:
            text = text.replace(v, "********")
    return text


def stored(cfg: Config) -> dict[str, str]:
    """The secrets this cluster has already (none is generated): for dry runs and for masking output."""
    folder = cluster_dir(cfg) / "secrets"
    if not folder.is_dir():
        return {}
    return {p.name: p.read_text().strip() for p in sorted(folder.iterdir()) if NAME.fullmatch(p.name) and p.is_file()}
