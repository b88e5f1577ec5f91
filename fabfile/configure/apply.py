"""Thin: run a Plan's actions on one host, one command per stage that has work.

    packages  one script: debconf answers, apt-get update if due, ONE apt-get install of every missing package
              (its output streamed into progress lines: packages fetched, unpacked, set up, elapsed)
    files     one script: user, directories, changed files (a base64 tar on stdin, installed with owner and mode,
              renamed into place), links, removals
    services  one script: each notified service reloaded/restarted once (started if stopped), stopped ones
              started, enabled at boot (systemctl enable; update-rc.d under sysv)
    postgres  psql as postgres, the SQL (with the password's SCRAM verifier) on stdin

The commands come from `commands`; this module only assembles and runs them.
"""
from __future__ import annotations

import base64
import io
import tarfile
from dataclasses import dataclass

from ..install_progress import apt_live
from ..remote import ConnectionLost, RemoteError, run, sudo_sh
from . import checks
from . import commands as cmd
from .plan import (AptInstall, AptUpdate, CreateUser, EnableService, FixAttrs, Link, MakeDir, ModifyUser,
                   PgEnsure, Plan, Remove, ServiceAction, WriteFile)


# seconds a step may take before it counts as failed (apt on a slow mirror is the long one)
TIMEOUTS = {"packages": 1800.0, "files": 300.0, "services": 600.0, "postgres": 300.0}
DEFAULT_TIMEOUT = 120.0


class Runner:
    """remote.run on one connection, counting the SSH commands sent; each step has a timeout."""

    def __init__(self, conn):
        self.conn = conn
        self.commands = 0

    def __call__(self, command: str, *, step: str, stdin: str | None = None, on_line=None):
        self.commands += 1
        return run(self.conn, command, step=step, stdin=stdin, timeout=TIMEOUTS.get(step, DEFAULT_TIMEOUT),
                   on_line=on_line)


@dataclass(frozen=True)
class StageCommand:
    command: str
    stdin: str | None = None


def staged_tar(contents: list[str]) -> str:
    """The files as a tar (members f0, f1, ... mode 0600), base64: text for stdin."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i, content in enumerate(contents):
            data = content.encode("utf-8")
            info = tarfile.TarInfo(f"f{i}")
            info.size, info.mode, info.mtime = len(data), 0o600, 0
            tar.addfile(info, io.BytesIO(data))
    return base64.encodebytes(buf.getvalue()).decode("ascii")


def packages_stage(actions: list) -> StageCommand:
    update = any(isinstance(a, AptUpdate) for a in actions)
    installs = [a for a in actions if isinstance(a, AptInstall)]
    packages = [p for a in installs for p in a.packages]
    return StageCommand(sudo_sh(cmd.packages_script(packages, update=update)))


def _notified(a) -> tuple[str, str] | None:
    target = a.file if isinstance(a, WriteFile) else a.link if isinstance(a, Link) else \
        a.absent if isinstance(a, Remove) else None
    return (target.notify, target.action) if target is not None and target.notify else None


def _prepare_line(a) -> str | None:
    """The user and directories: made before the checks (supervisord's refuses an unknown user= or a
    missing log directory), and harmless when a check then stops the stage."""
    if isinstance(a, CreateUser):
        return cmd.create_user(a.user.name, a.user.home, a.user.shell)
    if isinstance(a, ModifyUser):
        return cmd.modify_user(a.user.name, a.user.home, a.user.shell)
    if isinstance(a, MakeDir):
        return cmd.ensure_dir(a.dir.path, a.dir.owner, a.dir.group, a.dir.mode)
    return None


def _install_line(a, staged: dict[str, str]) -> str:
    if isinstance(a, WriteFile):
        f = a.file
        return cmd.install_file(staged[f.path], f.path, f.owner, f.group, f.mode)
    if isinstance(a, FixAttrs):
        return cmd.set_attrs(a.path, a.owner, a.group, a.mode)
    if isinstance(a, Link):
        return cmd.link(a.link.path, a.link.target)
    if isinstance(a, Remove):
        return cmd.remove(a.absent.path)
    raise TypeError(f"not a files action: {a!r}")


def files_stage(actions: list) -> StageCommand:
    """User and dirs; then each service's check of its changed config on a staged copy (`checks`); then a
    pending mark for each handler these changes trigger; then files, links, removals."""
    prepare = [line for line in map(_prepare_line, actions) if line is not None]
    rest = [a for a in actions if _prepare_line(a) is None]
    writes = [a.file for a in rest if isinstance(a, WriteFile)]
    staged = {f.path: f"f{i}" for i, f in enumerate(writes)}
    tree_checks = checks.plan_checks(rest, staged)
    owed = dict.fromkeys(n for n in map(_notified, rest) if n)
    lines = prepare + [line for i, c in enumerate(tree_checks) for line in checks.check_lines(c, i)]
    lines += [cmd.mark_pending(service, action) for service, action in owed]
    lines += [_install_line(a, staged) for a in rest]
    script = cmd.files_script(lines, staged=bool(writes), scratch=bool(tree_checks))
    return StageCommand(sudo_sh(script), staged_tar([f.content for f in writes]) if writes else None)


def services_stage(actions: list, init: str) -> StageCommand:
    lines = ["set -e"]
    for a in actions:
        if isinstance(a, ServiceAction):
            lines += [cmd.converge_service(init, a.name, a.verb), cmd.clear_pending(a.name)]
        elif isinstance(a, EnableService):
            lines.append(cmd.enable_service(init, a.name))
        else:
            raise TypeError(f"not a services action: {a!r}")
    return StageCommand(sudo_sh("\n".join(lines)))


def postgres_stage(actions: list) -> StageCommand:
    (a,) = actions
    assert isinstance(a, PgEnsure)
    return StageCommand(cmd.psql_command(), cmd.pg_ensure_sql(a.role, a.database, a.verifier))


def stage_command(stage: str, actions: list, init: str) -> StageCommand:
    if stage == "packages":
        return packages_stage(actions)
    if stage == "files":
        return files_stage(actions)
    if stage == "services":
        return services_stage(actions, init)
    if stage == "postgres":
        return postgres_stage(actions)
    raise ValueError(f"unknown stage {stage!r}")


class StageFailed(Exception):
    def __init__(self, stage: str, done: int, error: BaseException):
        self.stage, self.done = stage, done
        super().__init__(f"{stage}: {error}")


def apply_plan(runner: Runner, plan: Plan, init: str, *, stages: list[str] | None = None,
               progress=lambda stage, message="": None, after=None) -> int:
    """Run the stages of `plan` (all, or `stages`) in order, `after(stage)` after each; the number of
    changes made.

    StageFailed (with the changes made before it) stops at the first failure; one of `after` counts
    against the next stage (the one it let run)."""
    done = 0
    todo = [s for s in plan.stages if stages is None or s in stages]
    for i, stage in enumerate(todo):
        actions = plan.stage(stage)
        progress(stage, "; ".join(a.describe() for a in actions) + _checked_first(stage, actions))
        sc = stage_command(stage, actions, init)
        # apt-get's output, as it comes: a progress line every few seconds and one at the end
        live = apt_live(lambda text: progress(stage, text)) if stage == "packages" else None
        try:
            runner(sc.command, step=stage, stdin=sc.stdin, **({"on_line": live.line} if live else {}))
        except Exception as exc:
            error = rejected(exc, plan) or exc
            raise StageFailed(stage, done, error) from error
        if live:
            live.done()
        done += sum(a.count for a in actions)
        if after is not None:
            try:
                after(stage)
            except Exception as exc:
                raise StageFailed(todo[i + 1] if i + 1 < len(todo) else stage, done, exc) from exc
    return done


def _checked_first(stage: str, actions: list) -> str:
    if stage != "files":
        return ""
    found = checks.plan_checks(actions, {a.file.path: "" for a in actions if isinstance(a, WriteFile)})
    return f"; checked first: {', '.join(c.describe() for c in found)}" if found else ""


def rejected(exc: Exception, plan: Plan) -> checks.ConfigRejected | None:
    """The files stage's error as a service's own rejection of the new config (see `checks`), if it is one."""
    if not isinstance(exc, RemoteError) or isinstance(exc, ConnectionLost) or exc.exit_code != checks.CHECK_REJECTED:
        return None
    found = checks.parse_rejection(exc.output)
    if found is None:
        return None
    service, words = found
    return checks.ConfigRejected(service, words, dict(plan.sources))


def read_files(runner: Runner, paths: list[str]) -> dict[str, str]:
    """The current content of `paths` (for diffs), in one command; '' for a file that cannot be read."""
    if not paths:
        return {}
    out = runner(sudo_sh(cmd.read_files_script(paths)), step="read files").stdout
    files: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@@file\t"):
            current = line.split("\t", 1)[1]
            files[current] = []
        elif line == "@@end":
            break
        elif current is not None:
            files[current].append(line)
    return {p: base64.b64decode("".join(chunks)).decode("utf-8", "replace") for p, chunks in files.items()}
