"""`fab env.set` / `env.unset` on the cluster: under the deploy lock, the env store saved, shared/.env rewritten
on every app and worker node (on stdin), gunicorn reloaded gracefully (HUP) and celery restarted, then the
health gate; one audit line naming the keys, secret values masked.

If the app turns unhealthy (or a step fails) once a node has the new .env, the previous environment goes
back: the store as it was, the previous .env, the same reloads. Nothing here prints a secret value: every
line goes through `cl.out`, which the task masks as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import appenv
from ..appenv import EnvVar, Store
from ..config import Config
from ..remote import run
from ..vault import mask
from . import commands, reload, slotstate, switchover
from .cluster import Cluster, Member, Timer, each, gather
from .errors import DeployError
from .guard import Guard, guarded, read_lock
from .lock import AuditRecord, held_message, iso, utc_now, whoami
from .planning import HEALTH_TIMEOUT, dotenv
from .releases import NodeState


@dataclass(frozen=True)
class EnvOptions:
    dry_run: bool = False
    break_lock: bool = False
    health_timeout: float = HEALTH_TIMEOUT


@dataclass(frozen=True)
class EnvChange:
    action: str                         # env.set | env.unset: what the lock and the audit log say
    before: Store
    after: Store
    old: list[EnvVar] | None            # the app's variables before (None: they could not be resolved)
    new: list[EnvVar]
    notes: tuple[str, ...] = ()

    @property
    def lines(self) -> list[str]:
        return appenv.changes(self.old, self.new)

    @property
    def secrets(self) -> list[str]:
        return appenv.secret_values((self.old or []) + self.new)

    @property
    def summary(self) -> str:
        return appenv.summary(self.old, self.new)


def prepare(cfg: Config, action: str, before: Store, after: Store, notes: list[str],
            ssm: Callable[[], Any]) -> EnvChange:
    """The change, resolved before anything is touched: a secret the new environment lacks is an error now."""
    try:
        old = appenv.resolve(cfg, before, ssm)
    except appenv.EnvError:
        old = None
    return EnvChange(action, before, after, old, appenv.resolve(cfg, after, ssm), tuple(notes))


def _running(state: NodeState, program: str) -> bool:
    p = state.programs.get(program)
    return p is not None and p.running


def _split(cl: Cluster, states: dict[str, NodeState]) -> tuple[list[Member], list[Member], list[str]]:
    """(app nodes whose live gunicorn slot runs, worker nodes whose celery runs, the nodes left alone)."""
    apps = [m for m in cl.apps if slotstate.serving(cl.layout, states[m.name])]
    workers = [m for m in cl.workers if _running(states[m.name], cl.layout.worker_program)]
    idle = [m.name for m in cl.apps + cl.workers if m not in apps and m not in workers]
    return apps, workers, idle


def describe(cl: Cluster, ch: EnvChange, states: dict[str, NodeState]) -> list[str]:
    apps, workers, idle = _split(cl, states)
    nodes = cl.apps + cl.workers
    lines = [f"  {line}" for line in ch.lines]
    lines.append(f"  shared/.env (0600) on {', '.join(m.name for m in nodes)}")
    then = [f"gunicorn booted again in the other slot on {', '.join(m.name for m in apps)}, the switch to it, "
            f"then the health gate"] if apps else []
    then += [f"celery restart on {', '.join(m.name for m in workers)}"] if workers else []
    then += [f"{', '.join(idle)}: not running, takes the new .env when it starts"] if idle else []
    lines.append("  then: " + ("; ".join(then) or "nothing runs yet"))
    return lines


def write_env(cl: Cluster, members: list[Member], text: str) -> None:
    def one(m: Member) -> None:
        run(m.conn, commands.write_env(cl.layout), step="write shared/.env", stdin=text)
        cl.progress(m.name, ".env", "written (0600)")

    each(members, one, "writing shared/.env")


def reload_running(cl: Cluster, states: dict[str, NodeState], timeout: float) -> None:
    """gunicorn: the release again in the other slot, switched to once healthy (`switchover.refresh`);
    then celery's warm restart where it runs."""
    apps, workers, idle = _split(cl, states)
    for name in idle:
        cl.progress(name, "reload", "not running: takes the new .env when it starts")
    switchover.refresh(cl, apps, states, timeout, "new environment")
    reload.workers(cl, workers)


def _record(ch: EnvChange, release: str | None, result: str, timer: Timer, detail: str = "") -> AuditRecord:
    text = ch.summary + (f": {detail}" if detail else "")
    return AuditRecord(at=iso(utc_now()), who=whoami(), action=ch.action, result=result, from_release=release,
                       to_release=release, from_sha=None, to_sha=None, seconds=round(timer.total, 1),
                       detail=mask(text, ch.secrets))


def dry_run(cl: Cluster, ch: EnvChange) -> None:
    states = gather(cl, cl.apps + cl.workers)
    cl.out(f"dry run: nothing is changed. {ch.action} would change the app's environment:")
    for line in describe(cl, ch, states):
        cl.out(line)
    held = read_lock(cl)
    if held is not None:
        cl.out(held_message(held, f"{cl.anchor.name}:{cl.layout.lock_dir}"))


def apply(cl: Cluster, ch: EnvChange, opts: EnvOptions) -> None:
    """The change on the cluster (see the module's docstring); DeployError when it could not be made."""
    if opts.dry_run:
        return dry_run(cl, ch)
    nodes, timer = cl.apps + cl.workers, Timer()
    text = dotenv(cl, appenv.values(ch.new))
    with guarded(cl, "", ch.action, break_lock=opts.break_lock) as guard:
        states = gather(cl, nodes)
        release = states[cl.anchor.name].current
        for line in describe(cl, ch, states):
            cl.out(line)
        try:
            appenv.save_store(cl.cfg, ch.before, ch.after)
            timer.step(".env", lambda: write_env(cl, nodes, text))
            timer.step("reload+health", lambda: reload_running(cl, states, opts.health_timeout))
        except Exception as exc:
            _failed(cl, ch, guard, states, timer, release, exc, opts.health_timeout)
        guard.audit(_record(ch, release, "ok", timer))
    cl.out(f"{ch.action}: {mask(ch.summary, ch.secrets)}; on {len(nodes)} node(s) in {timer.total:.1f} s "
           f"({timer.summary()})")


def _failed(cl: Cluster, ch: EnvChange, guard: Guard, states: dict[str, NodeState], timer: Timer,
            release: str | None, exc: Exception, timeout: float):
    """Put the previous environment back (store, .env, reloads), audit, and raise what happened."""
    error = mask(str(exc), ch.secrets)
    if ch.old is None:
        guard.audit(_record(ch, release, "failed", timer, error))
        raise DeployError(f"{ch.action} failed: {error}\nthe previous environment could not be resolved, so it "
                          f"was not put back; the new one is saved: fix the cause and run fab deploy") from None
    cl.out(f"{ch.action} failed: {error}\nputting the previous environment back")
    try:
        appenv.save_store(cl.cfg, ch.after, ch.before)
        write_env(cl, cl.apps + cl.workers, dotenv(cl, appenv.values(ch.old)))
        reload_running(cl, gather(cl, cl.apps + cl.workers), timeout)
        outcome, note = "rolled-back", "the previous environment is back"
    except Exception as again:   # say so: the operator must act
        outcome, note = "failed", f"PUTTING IT BACK FAILED TOO: {mask(str(again), ch.secrets)}"
    guard.audit(_record(ch, release, outcome, timer, f"{error}; {note}"))
    raise DeployError(f"{ch.action} failed: {error}\n{note}") from None
