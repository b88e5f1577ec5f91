"""The cluster's nodes as the cloud last listed them: `<state dir>/<cluster>/nodes.json`.

A rollback should not wait for boto3 to load and DescribeInstances to answer (~0.2 s) before its first
SSH command. It starts from this list, asks the cloud again on a thread of its own (`Lookup`), and
compares both (`same`) before it changes anything; when they differ it starts again from the cloud's
answer. The list is a cache, never the truth: SSH to a listed address still needs that node's pinned
host key, and every fresh lookup rewrites the file.
"""
from __future__ import annotations

import json
import os
import pickle
import threading
import time
from dataclasses import asdict, fields
from typing import Callable, Generic, TypeVar

from .cloud import CloudError
from .config import Config, ConfigError
from .nodes import Node
from .state import cluster_dir, ensure_cluster_dir, write_public

T = TypeVar("T")
VERSION = 1
TRUST_VARIABLE = "WHIPUP_NODES_TTL"
TRUST_SECONDS = 60.0     # a list the cloud confirmed this recently is not asked again by `fab configure`


def path(cfg: Config):
    return cluster_dir(cfg) / "nodes.json"


def dumps(cfg: Config, nodes: list[Node]) -> str:
    return json.dumps({"version": VERSION, "target": cfg.cluster.target, "region": cfg.cluster.region,
                       "nodes": [asdict(n) for n in nodes]}, indent=1) + "\n"


def loads(cfg: Config, text: str) -> list[Node] | None:
    """The nodes in `text`, or None when it is not a list for this cluster's target and region."""
    try:
        data = json.loads(text)
        if (data.get("version"), data.get("target"), data.get("region")) != (
                VERSION, cfg.cluster.target, cfg.cluster.region):
            return None
        names = {f.name for f in fields(Node)}
        return [Node(**{k: v for k, v in entry.items() if k in names}) for entry in data["nodes"]]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def save(cfg: Config, nodes: list[Node]) -> None:
    ensure_cluster_dir(cfg)
    write_public(path(cfg), dumps(cfg, nodes))


def forget(cfg: Config) -> None:
    """No saved list: the next task asks the cloud (nodes are being terminated)."""
    path(cfg).unlink(missing_ok=True)


def load(cfg: Config) -> list[Node] | None:
    try:
        return loads(cfg, path(cfg).read_text(encoding="utf-8"))
    except OSError:
        return None


def trust_seconds(environ=os.environ) -> float:
    """How long a list the cloud confirmed is trusted as it is (WHIPUP_NODES_TTL seconds; 0: always ask)."""
    raw = environ.get(TRUST_VARIABLE, "")
    if raw == "":
        return TRUST_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise ConfigError(f"{TRUST_VARIABLE}: expected seconds from 0 to 86400, got {raw!r}")
    return seconds


def fresh(cfg: Config, seconds: float, now: float | None = None) -> bool:
    """The saved list was written (from the cloud's answer) less than `seconds` ago."""
    try:
        age = (time.time() if now is None else now) - path(cfg).stat().st_mtime
    except OSError:
        return False
    return 0 <= age < seconds


def _facts_path(cfg: Config):
    return cluster_dir(cfg) / "cloud-facts.json"


def remember(cfg: Config, name: str, value: str) -> None:
    """A fact the cloud told alongside the node list (the backups bucket exists), kept with the time."""
    try:
        known = json.loads(_facts_path(cfg).read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    known[name] = {"value": value, "at": time.time()}
    ensure_cluster_dir(cfg)
    write_public(_facts_path(cfg), json.dumps(known, indent=1) + "\n")


def recall(cfg: Config, name: str, seconds: float, now: float | None = None) -> str | None:
    """What `remember` kept of `name` less than `seconds` ago, else None."""
    try:
        entry = json.loads(_facts_path(cfg).read_text(encoding="utf-8"))[name]
        value, at = entry["value"], float(entry["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    age = (time.time() if now is None else now) - at
    return value if isinstance(value, str) and 0 <= age < seconds else None


def same(a: list[Node], b: list[Node]) -> bool:
    """The same instances, in the same states, at the same addresses."""
    return sorted(a, key=lambda n: n.instance_id) == sorted(b, key=lambda n: n.instance_id)


class Lookup(Generic[T]):
    """`fn()` (a cloud lookup) running alongside the caller; `result()` waits for it (or re-raises).

    It runs in a forked child when this process has no other thread yet (the usual case: a task starts
    it before its first SSH connection): boto3's import and the API call then use the other core, not
    this process's GIL, which the SSH threads need meanwhile, and the child ends with os._exit, so
    freeing boto3 costs nobody anything. Otherwise it runs on a thread. The result (or the exception)
    comes back pickled; one that cannot be pickled comes back as a CloudError with its message."""

    def __init__(self, fn: Callable[[], T]):
        self._value: T | None = None
        self._error: BaseException | None = None
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        if hasattr(os, "fork") and threading.active_count() == 1:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:                                   # the child: never returns
                os.close(read)
                _child(fn, write)
            os.close(write)
            self._pid, self._read = pid, read
        else:
            self._thread = threading.Thread(target=self._run, args=(fn,), name="cloud-lookup", daemon=True)
            self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # handed to whoever asks for the result
            self._error = exc

    def _collect(self) -> None:
        if self._pid is not None:
            with os.fdopen(self._read, "rb") as f:
                data = f.read()
            os.waitpid(self._pid, 0)
            self._pid = None
            try:
                ok, value = pickle.loads(data)
            except Exception:  # the child died before it answered
                ok, value = False, CloudError("the cloud lookup's process ended without an answer")
            if ok:
                self._value = value
            else:
                self._error = value
        elif self._thread is not None:
            self._thread.join()
            self._thread = None

    def result(self) -> T:
        self._collect()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def close(self) -> None:
        """Wait for the lookup (when nobody asked for its result) so no child is left behind."""
        self._collect()


def _child(fn: Callable[[], object], write: int) -> None:
    try:
        try:
            payload = pickle.dumps((True, fn()))
        except BaseException as exc:
            try:
                payload = pickle.dumps((False, exc))
            except Exception:
                payload = pickle.dumps((False, CloudError(f"{type(exc).__name__}: {exc}")))
        with os.fdopen(write, "wb") as f:
            f.write(payload)
    finally:
        os._exit(0)
