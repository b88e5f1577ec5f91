"""PURE: the requirements a release installs: the top file and every file it includes with `-r`/`-c`.

A project's requirements are often split (`requirements/production.txt` holding `-r base.txt`). What
decides "reinstall?" is every one of those files, so their hash covers them all; the venv keeps one
`<sha256> <path>` line per file (`REQUIREMENTS_FILES_MARK`), so a later deploy can say which file changed;
and Django's line is looked up in whichever file holds it.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Callable

from .errors import DeployError
from .releases import django_requirement, requirements_hash, upgrade_spec

# pip's include options, with the value after a space or `=`: -r FILE, --requirement=FILE, -c FILE, ...
INCLUDE = re.compile(r"(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)")


def includes(text: str) -> list[tuple[int, str, str]]:
    """(line number, option, file) of each include line of a requirements file (comments stripped)."""
    found = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        m = INCLUDE.fullmatch(line)
        if m:
            found.append((n, m.group(1), m.group(2)))
    return found


@dataclass(frozen=True)
class Requirements:
    files: tuple[tuple[str, str], ...]      # (path relative to the app's directory, text): the top file first

    @property
    def top(self) -> str:
        return self.files[0][0]

    @property
    def text(self) -> str:
        return self.files[0][1]

    @property
    def name(self) -> str:
        """How messages name them: the top file, with the files it includes."""
        rest = [p for p, _ in self.files[1:]]
        return self.top + (f" (with {', '.join(rest)})" if rest else "")

    @property
    def hash(self) -> str:
        """One file: the sha256 of its text (as before includes were followed); several: of them all."""
        if len(self.files) == 1:
            return requirements_hash(self.text)
        digest = hashlib.sha256()
        for path, text in self.files:
            digest.update(path.encode() + b"\0" + text.encode() + b"\0")
        return digest.hexdigest()

    def files_mark(self) -> list[str]:
        """The venv's `<sha256> <path>` lines: what `changed_since` compares later."""
        return [f"{requirements_hash(text)} {path}" for path, text in self.files]

    def changed_since(self, mark: str) -> list[str]:
        """The files that differ from a venv's `files_mark` (added, changed or gone), in order."""
        old = dict(reversed(line.split(" ", 1)) for line in mark.splitlines() if " " in line)
        new = {path: requirements_hash(text) for path, text in self.files}
        return [p for p, _ in self.files if old.get(p) != new[p]] + [p for p in old if p not in new]

    def django(self) -> tuple[str, str] | None:
        """(the file, its Django line), from the first file that has one."""
        for path, text in self.files:
            line = django_requirement(text)
            if line is not None:
                return path, line
        return None

    def upgrade_spec(self) -> str:
        """What `pip install --upgrade` gets to upgrade Django within the project's constraint."""
        found = self.django()
        if found is None:
            return upgrade_spec("", " and ".join(p for p, _ in self.files))      # names every file looked in
        return upgrade_spec(found[1], found[0])


def read_requirements(top: str, read: Callable[[str], str | None]) -> Requirements:
    """The top file and every file it includes, each once, in the order pip reads them. `read(path)` gives a
    file's text at the commit (None when it is not there); an include is relative to its file's directory.
    An include by URL is left to pip."""
    text = read(top)
    if text is None:
        raise DeployError(f"app.requirements: {top} is not in the commit")
    files: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(path: str, body: str) -> None:
        seen.add(path)
        files.append((path, body))
        for n, option, target in includes(body):
            if "://" in target:
                continue
            inc = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if inc.startswith("../") or posixpath.isabs(inc):
                raise DeployError(f"{path}, line {n}: {option} {target}: outside the app's directory")
            if inc in seen:
                continue
            found = read(inc)
            if found is None:
                raise DeployError(f"{path}, line {n}: {option} {target}: {inc} is not in the commit")
            visit(inc, found)

    visit(posixpath.normpath(top), text)
    return Requirements(tuple(files))
