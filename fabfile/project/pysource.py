"""PURE: what inspection reads in a project's Python files, by parsing them (never importing them)."""
from __future__ import annotations

import ast
from typing import Iterator, NamedTuple


class Statement(NamedTuple):
    kind: str        # "assign" (NAME = "constant") | "star" (from MODULE import *)
    name: str        # the assigned name, or the imported module (relative: with its leading dots)
    value: str | None
    line: int


def parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _const(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_environ(node: ast.AST) -> bool:
    """`os.environ` or a bare `environ`."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or \
        (isinstance(node, ast.Name) and node.id == "environ")


def settings_default(text: str, variable: str = "DJANGO_SETTINGS_MODULE") -> tuple[str, int] | None:
    """(module, line) of `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "x")` (or `os.environ[...] = "x"`):
    the first in the file."""
    tree = parse(text)
    if tree is None:
        return None
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault" \
                and _is_environ(node.func.value) and len(node.args) == 2 and _const(node.args[0]) == variable \
                and _const(node.args[1]):
            found.append((node.lineno, _const(node.args[1])))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and _const(node.value):
            t = node.targets[0]
            if isinstance(t, ast.Subscript) and _is_environ(t.value) and _const(t.slice) == variable:
                found.append((node.lineno, _const(node.value)))
    if not found:
        return None
    line, module = min(found)
    return module, line


def statements(text: str) -> Iterator[Statement]:
    """The module's `NAME = "constant"` and `from X import *`, in the order they run (the bodies of
    top-level if/try blocks included: they may run)."""
    tree = parse(text)
    if tree is not None:
        yield from _walk(tree.body)


def _walk(body: list[ast.stmt]) -> Iterator[Statement]:
    for node in body:
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            yield Statement("star", "." * node.level + (node.module or ""), None, node.lineno)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    yield Statement("assign", t.id, _const(node.value) if node.value else None, node.lineno)
        elif isinstance(node, ast.If):
            yield from _walk(node.body)
            yield from _walk(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _walk(node.body)
            for h in node.handlers:
                yield from _walk(h.body)
            yield from _walk(node.orelse)
            yield from _walk(node.finalbody)


def creates_celery(text: str) -> int | None:
    """The line where the module makes a Celery app (`Celery(...)` or `celery.Celery(...)`), if it does."""
    tree = parse(text)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == "Celery") or (isinstance(f, ast.Attribute) and f.attr == "Celery"):
                return node.lineno
    return None


def absolute(module: str, importer: str, is_package: bool) -> str:
    """A `from .base import *` module name made absolute, relative to the importing module."""
    level = len(module) - len(module.lstrip("."))
    if level == 0:
        return module
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    rest = module[level:]
    return ".".join(base + ([rest] if rest else []))
