"""The store of `fab env.set`/`env.unset`, beside the cluster's state: env.json and the 0600 secret files."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..appconfig import ENV_NAME, env_name
from ..config import Config, ConfigError
from ..state import cluster_dir, ensure_dir, write_private
from ..validate import Invalid

BAD_CHARS = ("\n", "\r", "\x00")


class EnvError(ConfigError):
    """The app's environment cannot be resolved or changed as asked; the message names key, file or argument."""


@dataclass(frozen=True)
class Store:
    """What `fab env.set`/`env.unset` keep: plain overrides, secret files (overrides, and the values of
    roles.yaml's file secrets), names hidden from roles.yaml."""
    plain: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    unset: frozenset[str] = frozenset()


def clean(value: str) -> bool:
    """No newline, CR or NUL: the .env holds one line per variable."""
    return not any(ch in value for ch in BAD_CHARS)


def checked_name(value: Any, path: str) -> str:
    """`appconfig.env_name` (reserved names refused), its error as an EnvError."""
    try:
        return env_name(value, path)
    except Invalid as exc:
        raise EnvError(str(exc)) from None


# --- the store on disk -----------------------------------------------------------------------------

def store_path(cfg: Config) -> Path:
    return cluster_dir(cfg) / "env.json"


def secrets_dir(cfg: Config) -> Path:
    return cluster_dir(cfg) / "secrets" / "env"


def read_secret(path: Path) -> str:
    """A secret file's value (one trailing newline dropped); refused when others may read it."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise EnvError(f"{path}: readable by others (mode {mode:04o}); chmod 600 {path}")
    value = path.read_text(encoding="utf-8")
    value = value[:-1] if value.endswith("\n") else value
    value = value[:-1] if value.endswith("\r") else value
    if not clean(value):
        raise EnvError(f"{path}: the value holds a newline or NUL (the .env has one line per variable)")
    return value


def _read_plain(path: Path) -> tuple[dict[str, str], frozenset[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, frozenset()
    except ValueError as exc:
        raise EnvError(f"{path}: not JSON ({exc}); fix or remove it") from None
    plain, unset = (data.get("set", {}), data.get("unset", [])) if isinstance(data, dict) else (None, None)
    if not isinstance(plain, dict) or not isinstance(unset, list):
        raise EnvError(f"{path}: expected {{\"set\": {{NAME: value}}, \"unset\": [NAME]}}; fix or remove it")
    for name, value in plain.items():
        checked_name(name, f"{path}: set.{name}")
        if not isinstance(value, str) or not clean(value):
            raise EnvError(f"{path}: set.{name}: expected a string without newline or NUL")
    for name in unset:
        checked_name(name, f"{path}: unset")
    return dict(plain), frozenset(unset)


def load_store(cfg: Config) -> Store:
    plain, unset = _read_plain(store_path(cfg))
    folder = secrets_dir(cfg)
    secrets = {}
    if folder.is_dir():
        secrets = {p.name: read_secret(p) for p in sorted(folder.iterdir())
                   if p.is_file() and ENV_NAME.fullmatch(p.name)}
    return Store(plain, secrets, unset)


def save_store(cfg: Config, before: Store, after: Store) -> None:
    """Write what changed from `before` to `after`: env.json, and each secret file (0600) written or removed."""
    if (before.plain, before.unset) != (after.plain, after.unset):
        write_private(store_path(cfg), json.dumps({"set": after.plain, "unset": sorted(after.unset)},
                                                  indent=2, sort_keys=True) + "\n")
    folder = secrets_dir(cfg)
    for name, value in after.secrets.items():
        if before.secrets.get(name) != value:
            write_private(ensure_dir(folder) / name, value + "\n")
    for name in before.secrets.keys() - after.secrets.keys():
        (folder / name).unlink(missing_ok=True)


