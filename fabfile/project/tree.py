"""PURE: a commit's file list as inspection walks it: which files count, where a module's file is."""
from __future__ import annotations

import posixpath
from typing import Iterable

# directories that hold someone else's code (a committed virtualenv, node's packages), never the project's
SKIPPED = frozenset({"venv", ".venv", "env", "virtualenv", "node_modules", "site-packages", "__pycache__", ".git",
                     ".tox", ".nox"})


def counted(path: str) -> bool:
    """Whether a path belongs to the project (not inside a virtualenv, node_modules, ...)."""
    return not any(part in SKIPPED or part.startswith(".venv") for part in path.split("/")[:-1])


def join(directory: str, name: str) -> str:
    return posixpath.join(directory, name) if directory else name


def module_file(files: set[str], root: str, module: str) -> str | None:
    """The file of a dotted module under the Django root: `a/b.py`, or `a/b/__init__.py` for a package."""
    base = join(root, module.replace(".", "/"))
    for path in (f"{base}.py", f"{base}/__init__.py"):
        if path in files:
            return path
    return None


def is_package(files: set[str], root: str, module: str) -> bool:
    return join(root, module.replace(".", "/") + "/__init__.py") in files


def children(files: Iterable[str], directory: str, suffix: str = ".py") -> list[str]:
    """The files directly in `directory` ending with `suffix`, sorted."""
    prefix = f"{directory}/" if directory else ""
    return sorted(f for f in files if f.startswith(prefix) and "/" not in f[len(prefix):] and f.endswith(suffix))


def split_listing(out: str) -> list[str]:
    """`git ls-tree -r -z --name-only`'s output as paths."""
    return [name for name in out.split("\0") if name]
