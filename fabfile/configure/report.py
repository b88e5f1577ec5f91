"""PURE text: per-host results, dry-run reports with unified diffs (secrets masked), summary lines."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ..vault import mask
from .plan import Plan, ServiceAction, WriteFile


@dataclass
class HostResult:
    name: str
    role: str
    dry_run: bool = False
    plan: Plan | None = None
    changed: int = 0
    failed: int = 0            # actions not applied because a stage failed
    stage: str | None = None   # the stage that failed
    error: str | None = None
    exception: Exception | None = None   # the error itself, as raised
    commands: int = 0          # SSH commands sent
    seconds: float = 0.0
    report: str = ""           # the dry-run text
    services: list[str] = field(default_factory=list)   # "reload nginx", ... (what ran, or would)

    @property
    def ok(self) -> int:
        return len(self.plan.ok) if self.plan else 0


MAX_DIFF_LINES = 200


def file_diff(path: str, old: str | None, new: str, secrets: list[str], *, limit: int = MAX_DIFF_LINES) -> str:
    """A unified diff of one config file (old None: a new file), secrets masked, cut after `limit` lines."""
    old_lines = mask(old, secrets).splitlines(keepends=True) if old is not None else []
    new_lines = mask(new, secrets).splitlines(keepends=True)
    lines = difflib.unified_diff(old_lines, new_lines, fromfile="/dev/null" if old is None else f"a{path}",
                                 tofile=f"b{path}")
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    shown = text.splitlines(keepends=True)
    if len(shown) > limit:
        text = "".join(shown[:limit]) + f"... ({len(shown) - limit} more diff lines)\n"
    return text


def dry_run_report(name: str, plan: Plan, old_contents: dict[str, str], secrets: list[str]) -> str:
    """What configure would do on host `name`: each action, and a diff under each file it would write."""
    if not plan.actions:
        return f"[{name}] already ok ({len(plan.ok)} checked): nothing would change"
    out = [f"[{name}] would change {plan.changes}, ok {len(plan.ok)}:"]
    for a in plan.actions:
        out.append(f"  {mask(a.describe(), secrets)}")
        if isinstance(a, WriteFile):
            old = None if a.old_sha256 is None else old_contents.get(a.file.path, "")
            diff = file_diff(a.file.path, old, a.file.content, secrets)
            out += ["    " + line for line in diff.rstrip("\n").splitlines()]
    return "\n".join(out)


def service_runs(plan: Plan) -> list[str]:
    return [f"{a.verb} {a.name}" for a in plan.actions if isinstance(a, ServiceAction)]


def summary_line(r: HostResult) -> str:
    if r.dry_run and not r.error:
        head = f"would change {r.plan.changes if r.plan else 0}, ok {r.ok}"
    else:
        head = f"changed {r.changed}, ok {r.ok}, failed {r.failed}"
    tail = []
    if r.services:
        tail.append(("would " if r.dry_run else "") + ", ".join(r.services))
    tail.append(f"{r.commands} ssh command{'s' if r.commands != 1 else ''}, {r.seconds:.1f} s")
    line = f"[{r.name}] {head} ({'; '.join(tail)})"
    if r.error:
        line += f"\n[{r.name}] FAILED" + (f" at {r.stage}" if r.stage else "") + f": {r.error.splitlines()[0]}"
    return line
