"""PURE: the project's dependency source, and the requirements pip installs from it.

First found wins: roles.yaml's app.requirements; a requirements file (`REQUIREMENT_FILES`, with its -r/-c
includes); a lock file (`uv.lock`, `poetry.lock`: its pinned packages); `pyproject.toml`'s
`[project].dependencies`. For a lock file or pyproject.toml whipup writes the requirements pip installs into
the release at `GENERATED` (never into the repository); the hash covers the source files and that text, so
it changes when any of them does.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Callable

from ..deploy.errors import DeployError
from ..deploy.requirements import Requirements, read_requirements
from . import locks
from .errors import InspectError
from .toml import load

REQUIREMENT_FILES = ("requirements/production.txt", "requirements/prod.txt", "requirements.txt",
                     "requirements/base.txt")
LOCK_FILES = ("uv.lock", "poetry.lock")
PYPROJECT = "pyproject.toml"
GENERATED = ".whipup/requirements.txt"      # in the release, relative to the app's directory
LOOKED_FOR = (*REQUIREMENT_FILES, *LOCK_FILES, f"{PYPROJECT} [project].dependencies")


@dataclass(frozen=True)
class Dependencies:
    kind: str                               # requirements | uv.lock | poetry.lock | pyproject.toml
    files: tuple[tuple[str, str], ...]      # the source files (path relative to the app's directory, text)
    generated: str | None = None            # what whipup writes at GENERATED (None: pip reads files[0])

    @property
    def install(self) -> str:
        """The file `pip install -r` reads, relative to the app's directory (the release)."""
        return self.files[0][0] if self.generated is None else GENERATED

    @property
    def requirements(self) -> Requirements:
        """As the deploy's requirements plumbing (hash, venv mark, Django's line) takes them."""
        if self.generated is None:
            return Requirements(self.files)
        return Requirements(((GENERATED, self.generated),) + self.files)

    @property
    def hash(self) -> str:
        return self.requirements.hash

    @property
    def name(self) -> str:
        """How messages name the source: the top file with the files it includes."""
        return Requirements(self.files).name


def _join(directory: str, name: str) -> str:
    return posixpath.join(directory, name) if directory else name


def from_requirements(path: str, read: Callable[[str], str | None]) -> Dependencies:
    try:
        return Dependencies("requirements", read_requirements(path, read).files)
    except InspectError:
        raise
    except DeployError as exc:
        raise InspectError(str(exc)) from None


def _header(source: str) -> str:
    return f"# written by whipup from {source} (the project's dependencies, for pip install -r)\n"


def from_lock(path: str, read: Callable[[str], str | None]) -> Dependencies:
    text = read(path)
    if text is None:
        raise InspectError(f"{path} is not in the commit")
    pyproject_path = _join(posixpath.dirname(path), PYPROJECT)
    pyproject_text = read(pyproject_path)
    pyproject = load(pyproject_text, pyproject_path) if pyproject_text is not None else {}
    lock = load(text, path)
    if posixpath.basename(path) == "poetry.lock":
        lines = locks.poetry_requirements(lock, pyproject, path)
    else:
        lines = locks.uv_requirements(lock, pyproject.get("project", {}).get("name"), path)
    files = ((path, text),) + (((pyproject_path, pyproject_text),) if pyproject_text is not None else ())
    return Dependencies(posixpath.basename(path), files, _header(path) + "".join(f"{x}\n" for x in lines))


def from_pyproject(path: str, read: Callable[[str], str | None]) -> Dependencies | None:
    """[project].dependencies, as they are; None when the file has none (a Poetry project without its
    lock file is an error: its constraints are Poetry's, not pip's)."""
    text = read(path)
    if text is None:
        return None
    data = load(text, path)
    listed = data.get("project", {}).get("dependencies")
    if listed:
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            raise InspectError(f"{path}: [project].dependencies must be a list of strings")
        return Dependencies(PYPROJECT, ((path, text),), _header(path) + "".join(f"{x}\n" for x in listed))
    if data.get("tool", {}).get("poetry", {}).get("dependencies"):
        raise InspectError(f"{path}: the dependencies are Poetry's ([tool.poetry.dependencies]) and there is no "
                           f"poetry.lock beside it: commit poetry.lock, or set app.requirements in roles.yaml")
    return None


def find_dependencies(files: set[str], read: Callable[[str], str | None], requested: str | None,
                      directories: tuple[str, ...] = ("",)) -> tuple[Dependencies, str]:
    """(the dependencies, where they were found) of the tree; `requested` is app.requirements (it wins);
    each name is looked for in each of `directories` (the app's directory, then the Django root)."""
    if requested is not None:
        if requested not in files:
            raise InspectError(f"roles.yaml app.requirements: {requested} is not in the commit")
        base = posixpath.basename(requested)
        if base in LOCK_FILES:
            return from_lock(requested, read), "roles.yaml app.requirements"
        if base == PYPROJECT:
            found = from_pyproject(requested, read)
            if found is None:
                raise InspectError(f"roles.yaml app.requirements: {requested} has no [project].dependencies")
            return found, "roles.yaml app.requirements"
        return from_requirements(requested, read), "roles.yaml app.requirements"
    for name in REQUIREMENT_FILES:
        for d in directories:
            if _join(d, name) in files:
                return from_requirements(_join(d, name), read), _join(d, name)
    for name in LOCK_FILES:
        for d in directories:
            if _join(d, name) in files:
                return from_lock(_join(d, name), read), _join(d, name)
    for d in directories:
        path = _join(d, PYPROJECT)
        if path in files:
            found = from_pyproject(path, read)
            if found is not None:
                return found, f"{path} [project].dependencies"
    where = " or ".join(f"{d}/" for d in directories if d)
    raise InspectError(f"no dependency source in the commit: looked for {', '.join(LOOKED_FOR)}"
                       + (f" (at the top and in {where})" if where else "")
                       + "; add one, or set app.requirements in roles.yaml")
