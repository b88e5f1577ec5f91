"""PURE: a lock file (uv.lock, poetry.lock) as the pinned requirements pip installs: every package the
project depends on (its main dependencies, transitively; not dev groups, not the project itself), each
`name==version`, with the environment markers under which it is needed."""
from __future__ import annotations

import re
from typing import Iterable, NamedTuple

from .errors import InspectError

MAX_MARKERS = 8        # past this many alternatives (or a marker this long) a package is taken as always needed
MAX_MARKER_LEN = 400
PEP508_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Edge(NamedTuple):
    name: str                       # normalized
    marker: str | None = None
    extras: tuple[str, ...] = ()
    version: str | None = None      # uv: which of several locked versions


class Locked(NamedTuple):
    name: str                       # as the lock spells it
    version: str
    pin: str                        # the requirement line without its marker
    edges: tuple[Edge, ...]
    extras: dict[str, tuple[Edge, ...]]   # extra -> what it adds


def _and(parent: frozenset | None, marker: str | None) -> frozenset | None:
    if marker is None:
        return parent
    if parent is None:
        return frozenset({marker})
    return frozenset(f"({p}) and ({marker})" for p in parent)


def _or(old: frozenset | None, new: frozenset | None, seen: bool) -> frozenset | None:
    if not seen:
        return new
    if old is None or new is None:
        return None
    both = old | new
    if len(both) > MAX_MARKERS or any(len(m) > MAX_MARKER_LEN for m in both):
        return None
    return both


def closure(roots: Iterable[Edge], pick, lock: str) -> list[str]:
    """The requirement lines of everything reachable from `roots`; `pick(edge)` gives its Locked."""
    cond: dict[tuple[str, str], frozenset | None] = {}
    found: dict[tuple[str, str], Locked] = {}
    used: dict[tuple[str, str], set[str]] = {}      # the extras asked of each package
    work = [(e, None) for e in roots]
    while work:
        edge, parent = work.pop()
        pkg = pick(edge)
        if pkg is None:
            raise InspectError(f"{lock}: {edge.name} is a dependency but not a locked package: lock again "
                               f"(uv lock / poetry lock) and commit it")
        key = (norm(pkg.name), pkg.version)
        new = _or(cond.get(key), _and(parent, edge.marker), key in cond)
        if key in cond and new == cond[key] and set(edge.extras) <= used[key]:
            continue
        cond[key], found[key] = new, pkg
        extras = used.setdefault(key, set())
        extras.update(edge.extras)
        for child in pkg.edges + tuple(e for x in sorted(extras) for e in pkg.extras.get(x, ())):
            work.append((child, new))
    lines = []
    for key in sorted(found):
        c = cond[key]
        marker = "" if c is None else " ; " + (next(iter(c)) if len(c) == 1 else " or ".join(f"({m})" for m in sorted(c)))
        lines.append(found[key].pin + marker)
    return lines


# --- uv.lock ------------------------------------------------------------------------------------

def _uv_edges(items) -> tuple[Edge, ...]:
    return tuple(Edge(norm(d["name"]), d.get("marker"), tuple(d.get("extra", ())), d.get("version"))
                 for d in items or ())


def _uv_pin(p: dict, lock: str) -> str:
    source = p.get("source", {})
    name, version = p["name"], p.get("version", "")
    if "git" in source:
        url, _, commit = source["git"].partition("#")
        return f"{name} @ git+{url.split('?', 1)[0]}@{commit or version}"
    if "url" in source:
        return f"{name} @ {source['url']}"
    if source.get("registry") or not source:
        return f"{name}=={version}"
    kind = next(iter(source))
    raise InspectError(f"{lock}: {name} comes from a local {kind} ({source[kind]}): whipup installs from a "
                       f"package index or git; set app.requirements in roles.yaml to a requirements file")


def uv_requirements(lock: dict, project: str | None, path: str = "uv.lock") -> list[str]:
    packages = lock.get("package", [])
    own = [p for p in packages if (project and norm(p["name"]) == norm(project))
           or p.get("source", {}).get("virtual") == "." or p.get("source", {}).get("editable") == "."]
    if not own:
        raise InspectError(f"{path}: no package for the project itself (source virtual/editable \".\")")
    me = own[0]
    by_name: dict[str, list[dict]] = {}
    for p in packages:
        if p is not me:
            by_name.setdefault(norm(p["name"]), []).append(p)
    cache: dict[int, Locked] = {}

    def pick(edge: Edge) -> Locked | None:
        choices = [p for p in by_name.get(edge.name, []) if edge.version in (None, p.get("version"))]
        if not choices:
            return None
        p = choices[0]
        if id(p) not in cache:
            cache[id(p)] = Locked(p["name"], p.get("version", ""), _uv_pin(p, path), _uv_edges(p.get("dependencies")),
                                  {x: _uv_edges(v) for x, v in p.get("optional-dependencies", {}).items()})
        return cache[id(p)]

    return closure(_uv_edges(me.get("dependencies")), pick, path)


# --- poetry.lock --------------------------------------------------------------------------------

def _poetry_edges(deps: dict) -> tuple[Edge, ...]:
    out = []
    for name, spec in (deps or {}).items():
        for s in spec if isinstance(spec, list) else [spec]:
            if isinstance(s, dict):
                if s.get("optional"):
                    continue
                out.append(Edge(norm(name), s.get("markers"), tuple(s.get("extras", ()))))
            else:
                out.append(Edge(norm(name)))
    return tuple(out)


def _pep508(line: str) -> Edge | None:
    m = PEP508_NAME.match(line)
    if not m:
        return None
    marker = line.split(";", 1)[1].strip() if ";" in line else None
    extras = tuple(x.strip() for x in (m.group(2) or "").split(",") if x.strip())
    return Edge(norm(m.group(1)), marker, extras)


def _poetry_pin(p: dict, lock: str) -> str:
    source = p.get("source") or {}
    kind, name = source.get("type"), p["name"]
    if kind == "git":
        return f"{name} @ git+{source['url']}@{source.get('resolved_reference') or source.get('reference')}"
    if kind == "url":
        return f"{name} @ {source['url']}"
    if kind in ("directory", "file"):
        raise InspectError(f"{lock}: {name} comes from a local {kind} ({source.get('url')}): whipup installs from "
                           f"a package index or git; set app.requirements in roles.yaml to a requirements file")
    return f"{name}=={p['version']}"


def poetry_roots(pyproject: dict) -> tuple[Edge, ...]:
    """The project's main dependencies: [project].dependencies (Poetry 2) or [tool.poetry.dependencies]."""
    listed = pyproject.get("project", {}).get("dependencies")
    if listed:
        return tuple(e for e in map(_pep508, listed) if e)
    deps = dict(pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {}))
    deps.pop("python", None)
    return _poetry_edges(deps)


def poetry_requirements(lock: dict, pyproject: dict, path: str = "poetry.lock") -> list[str]:
    by_name = {norm(p["name"]): p for p in lock.get("package", [])}
    cache: dict[str, Locked] = {}

    def pick(edge: Edge) -> Locked | None:
        p = by_name.get(edge.name)
        if p is None:
            return None
        if edge.name not in cache:
            extras = {x: tuple(e for e in map(_pep508, v) if e) for x, v in p.get("extras", {}).items()}
            cache[edge.name] = Locked(p["name"], p["version"], _poetry_pin(p, path),
                                      _poetry_edges(p.get("dependencies")), extras)
        return cache[edge.name]

    roots = poetry_roots(pyproject)
    if not roots:
        raise InspectError(f"{path}: pyproject.toml beside it names no main dependencies")
    return closure(roots, pick, path)
