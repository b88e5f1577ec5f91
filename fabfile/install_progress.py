"""How far a long `pip install` or `apt-get install` has got, from the lines it prints.

PURE: `pip_step`/`apt_step` fold one output line into frozen counts; `pip_text`/`apt_text` say them in a
line (`pip: 23 collected, 2 built, installing 23, 41 s`).  Thin: `Live` feeds a command's lines (from any
thread) through one of them and hands a line to `say` at most every `every` seconds, and once at the end;
`remote.run(..., on_line=live.line)` streams the command's output into it.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Generic, TypeVar

C = TypeVar("C")

# a line every this many seconds at most while pip or apt runs
EVERY = 5.0


# --- pip -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PipCounts:
    collected: int = 0         # `Collecting X` / `Processing ./x.tar.gz`
    downloaded: int = 0        # `  Downloading X.whl (8.0 MB)`
    built: int = 0             # wheels built from source
    building: str = ""         # the package whose wheel is being built now
    to_install: int = 0        # `Installing collected packages: a, b, c`
    installed: int = 0         # `Successfully installed a-1 b-2`
    failed: str = ""           # a package whose build or metadata step failed


# pip without a terminal: `  Building wheel for X (setup.py): started` ... `: finished with status 'done'`;
# with one: `  Building wheel for X (pyproject.toml) ... done`
_BUILD = re.compile(r"^\s*Building wheel for (\S+) \([^)]*\)(?:: (started|finished with status '(\w+)')"
                    r"| \.\.\. (\w+))")
_FAILED_BUILD = re.compile(r"^\s*ERROR: Failed building wheel for (\S+)")


def pip_step(c: PipCounts, line: str) -> PipCounts:
    """`c` after one line of pip's output."""
    if line.startswith(("Collecting ", "Processing ")):
        return replace(c, collected=c.collected + 1)
    stripped = line.strip()
    if stripped.startswith("Downloading "):
        return replace(c, downloaded=c.downloaded + 1)
    if line.startswith("Installing collected packages:"):
        return replace(c, to_install=len(_names(line.partition(":")[2])), building="")
    if line.startswith("Successfully installed "):
        return replace(c, installed=len(line.split()) - 2)
    failed = _FAILED_BUILD.match(line)
    if failed:
        return replace(c, failed=failed.group(1), building="")
    build = _BUILD.match(line)
    if build:
        name, started, status = build.group(1), build.group(2) == "started", build.group(3) or build.group(4)
        if started:
            return replace(c, building=name)
        if status == "done":
            return replace(c, built=c.built + 1, building="")
        return replace(c, building="", failed=name)
    return c


def _names(text: str) -> list[str]:
    return [n for n in (part.strip() for part in text.split(",")) if n]


def pip_text(c: PipCounts, seconds: float) -> str:
    """`pip: 23 collected (12 downloaded), 2 built, building psycopg2, 41 s`; zero counts left out."""
    parts = [f"{c.collected} collected" + (f" ({c.downloaded} downloaded)" if c.downloaded else "")]
    if c.built:
        parts.append(f"{c.built} built")
    if c.building:
        parts.append(f"building {c.building}")
    if c.installed:
        parts.append(f"{c.installed} installed")
    elif c.to_install:
        parts.append(f"installing {c.to_install}")
    if c.failed:
        parts.append(f"{c.failed} failed")
    return f"pip: {', '.join(parts)}, {seconds:.0f} s"


# --- apt-get -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AptCounts:
    total: int = 0             # `0 upgraded, 12 newly installed, ...`: upgraded + newly installed
    lists: int = 0             # `Get:`/`Hit:` lines of `apt-get update` (before the summary line)
    fetched: int = 0           # `Get:N http://... pkg amd64 1.0 [190 kB]` after it
    unpacked: int = 0          # `Unpacking pkg:amd64 (1.0) ...`
    set_up: int = 0            # `Setting up pkg:amd64 (1.0) ...`


_SUMMARY = re.compile(r"^(\d+) upgraded, (\d+) newly installed, ")
# the line configure's packages script prints before trying apt-get update again (`... 2 of 3`)
APT_UPDATE_RETRY = "apt-get update failed; try"


def apt_step(c: AptCounts, line: str) -> AptCounts:
    """`c` after one line of apt-get's output (update and install, one after the other)."""
    summary = _SUMMARY.match(line)
    if summary:
        return replace(c, total=c.total + int(summary.group(1)) + int(summary.group(2)))
    if line.startswith(APT_UPDATE_RETRY):
        return replace(c, lists=0)
    if line.startswith(("Get:", "Hit:", "Ign:")):
        if c.total:
            return replace(c, fetched=c.fetched + 1) if line.startswith("Get:") else c
        return replace(c, lists=c.lists + 1)
    if line.startswith("Unpacking "):
        return replace(c, unpacked=c.unpacked + 1)
    if line.startswith("Setting up "):
        return replace(c, set_up=c.set_up + 1)
    return c


def apt_text(c: AptCounts, seconds: float) -> str:
    """`apt: 40 packages: 40 fetched, 31 unpacked, 12 set up, 41 s` (or the lists, while updating)."""
    if not c.total:
        return f"apt: updating package lists ({c.lists} sources), {seconds:.0f} s" if c.lists else \
            f"apt: reading package lists, {seconds:.0f} s"
    parts = [f"{c.fetched} fetched"] + ([f"{c.unpacked} unpacked"] if c.unpacked else []) + \
        ([f"{c.set_up} set up"] if c.set_up else [])
    return f"apt: {c.total} package{'s' if c.total != 1 else ''}: {', '.join(parts)}, {seconds:.0f} s"


# --- the thin part: a command's lines in, a line out now and then --------------------------------------

class Live(Generic[C]):
    """Folds each line into the counts (`step`); `say(text(counts, seconds))` at most every `every` seconds,
    and once more at `done()`. Lines come from the command's stdout and stderr threads: locked."""

    def __init__(self, say: Callable[[str], None], step: Callable[[C, str], C], counts: C,
                 text: Callable[[C, float], str], *, every: float = EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.say, self.step, self.counts, self.text, self.every, self.clock = say, step, counts, text, every, clock
        self.start = self.last = clock()
        self._lock = threading.Lock()

    def line(self, line: str) -> None:
        with self._lock:
            self.counts = self.step(self.counts, line)
            now = self.clock()
            if now - self.last < self.every:
                return
            self.last = now
            message = self.text(self.counts, now - self.start)
        self.say(message)

    def done(self) -> str:
        """The closing line (said, and returned)."""
        with self._lock:
            message = self.text(self.counts, self.clock() - self.start)
        self.say(message)
        return message


def pip_live(say: Callable[[str], None], **kw) -> Live[PipCounts]:
    return Live(say, pip_step, PipCounts(), pip_text, **kw)


def apt_live(say: Callable[[str], None], **kw) -> Live[AptCounts]:
    return Live(say, apt_step, AptCounts(), apt_text, **kw)
