"""PURE: how the project runs, as its files say: the Procfile, the release command, the Celery app and the
Python version it asks for. roles.yaml's values win (`roles.yaml app.<key>`)."""
from __future__ import annotations

import re
from typing import Callable

from ..appconfig import AppConfig
from . import pysource
from .deps import Dependencies
from .errors import InspectError
from .toml import load
from .tree import children, join

Reader = Callable[[str], "str | None"]
PROCESS = re.compile(r"([A-Za-z0-9_-]+)\s*:\s*(\S.*)")
CELERY_APP = re.compile(r"(?:^|\s)(?:-A|--app)(?:\s+|=)([A-Za-z_][\w.:]*)")
VERSION = re.compile(r"(?:cpython-|python-?)?(\d+)\.(\d+)(?:\.\d+)?(?:\S*)")


def parse_procfile(text: str) -> tuple[tuple[str, str], ...]:
    """(process type, command) of each `type: command` line, in order (comments and blank lines skipped)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        m = PROCESS.fullmatch(line) if line and not line.startswith("#") else None
        if m:
            out.append((m.group(1), m.group(2).strip()))
    return tuple(out)


def find_procfile(files: set[str], read: Reader, directories: tuple[str, ...]) -> tuple[tuple, str]:
    for d in directories:
        path = join(d, "Procfile")
        if path in files:
            return parse_procfile(read(path) or ""), path
    return (), "no Procfile"


def find_release(procfile: tuple, where: str, app: AppConfig) -> tuple[str | None, str]:
    if app.release_command:
        return app.release_command, "roles.yaml app.release_command"
    command = dict(procfile).get("release")
    if command:
        return command, f"{where} release:"
    return None, "not set (no roles.yaml app.release_command, no Procfile release:)"


def find_celery(files: set[str], read: Reader, root: str, settings: str, procfile: tuple, procfile_where: str,
                app: AppConfig) -> tuple[str | None, str]:
    """roles.yaml's; else a module of the project's package that makes a Celery app (`mysite/celery.py` ->
    mysite, `config/celery_app.py` -> config.celery_app); else the Procfile's `celery -A X`."""
    if app.celery_app:
        return app.celery_app, "roles.yaml app.celery_app"
    package = settings.split(".")[0]
    directory = join(root, package)
    modules = children(files, directory)
    first = [p for p in modules if p.endswith("/celery.py")]
    for path in first + [p for p in modules if p not in first]:
        line = pysource.creates_celery(read(path) or "")
        if line is not None:
            name = path.rsplit("/", 1)[1][:-3]
            return (package if name in ("celery", "__init__") else f"{package}.{name}"), f"{path}:{line} Celery("
    for kind, command in sorted(procfile, key=lambda p: p[0] != "worker"):
        m = CELERY_APP.search(command) if "celery" in command else None
        if m:
            return m.group(1), f"{procfile_where} {kind}: -A"
    return None, f"none (no Celery( in {directory}/*.py, no celery -A in a Procfile)"


def python_constraint(text: str) -> str | None:
    """`3.12` or `3.12.1` (.python-version, runtime.txt's python-3.12.1) as ==3.12.*: the minor version is
    what picks the image."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            m = VERSION.fullmatch(line)
            return f"=={m.group(1)}.{m.group(2)}.*" if m else None
    return None


def find_python(files: set[str], read: Reader, directories: tuple[str, ...], app: AppConfig) -> tuple[str | None, str]:
    if app.python:
        return app.python, "roles.yaml app.python"
    for d in directories:
        path = join(d, "pyproject.toml")
        if path in files:
            wanted = load(read(path) or "", path).get("project", {}).get("requires-python")
            if isinstance(wanted, str) and wanted.strip():
                return re.sub(r"\s+", "", wanted), f"{path} requires-python"
    for name in (".python-version", "runtime.txt"):
        for d in directories:
            path = join(d, name)
            if path in files:
                text = read(path) or ""
                found = python_constraint(text)
                if found is None:
                    raise InspectError(f"{path}: {text.strip()[:40]!r} is not a Python version like 3.12; "
                                       f"set app.python in roles.yaml (a constraint like >=3.12)")
                return found, f"{path} {text.strip().splitlines()[0]}"
    return None, "not set"


_DJANGO_FLOOR = re.compile(r"(?:>=|==|~=|===)\s*(\d+)(?:\.(\d+))?")
DJANGO_PYTHON = ((6, ">=3.12"), (5, ">=3.10"))     # the oldest Python each Django major series supports


def python_for_django(line: str) -> str | None:
    """The Python a Django requirement needs, from its lowest allowed version (`Django>=6.1,<6.2` -> >=3.12);
    None when it allows any Django."""
    floors = [int(m.group(1)) for m in _DJANGO_FLOOR.finditer(line)]
    if not floors:
        return None
    for major, python in DJANGO_PYTHON:
        if max(floors) >= major:
            return python
    return None


def infer_python(deps: Dependencies) -> tuple[str | None, str]:
    """No Python asked for: the one the required Django needs (Django 6 needs 3.12 or later)."""
    found = deps.requirements.django()
    python = python_for_django(found[1]) if found else None
    if python is None:
        return None, "not set (no requires-python, .python-version or runtime.txt): any"
    return python, f"{found[0]}: {found[1]} needs Python {python}"


def describe_deps(deps: Dependencies) -> str:
    """The dependency source as the table shows it."""
    if deps.generated is None:
        return deps.name
    pins = sum(1 for line in deps.generated.splitlines() if line and not line.startswith("#"))
    return f"{deps.kind}: {pins} requirements -> {deps.install} in the release"
