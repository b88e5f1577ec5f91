"""PURE: the arguments of `fab env.set`/`env.unset`, what they do to the store, and what that changes, masked."""
from __future__ import annotations

import shlex
from typing import Any, Callable, Sequence

from ..config import Config
from .resolve import EnvVar, declared, entries, roles_name
from .store import EnvError, Store, checked_name, clean

MASK = "***"


# --- the task's arguments ---------------------------------------------------------------------------

def parse_assignment(text: str, where: str) -> tuple[str, str]:
    """NAME=VALUE (the value taken literally, may be empty). An error never shows the value, nor the whole
    argument when it has no '=' (it may be a secret typed alone)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise EnvError(f"{where}: expected NAME=VALUE, and it has no '=' (not shown: it may be a secret)")
    if not name:
        raise EnvError(f"{where}: expected NAME=VALUE, and the name before '=' is empty")
    checked_name(name, f"{where}: {name}")
    if not clean(value):
        raise EnvError(f"{where}: {name}: a value may not hold a newline, CR or NUL (the .env has one line "
                       f"per variable)")
    return name, value


def parse_lines(text: str) -> list[tuple[str, str]]:
    """NAME=VALUE lines (stdin of `fab env.set -`); blank lines and # comments skipped."""
    pairs = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line[:-1] if line.endswith("\r") else line
        if line.strip() and not line.lstrip().startswith("#"):
            pairs.append(parse_assignment(line, f"env.set: stdin line {number}"))
    if not pairs:
        raise EnvError("env.set: stdin held no NAME=VALUE line")
    return pairs


def parse_names(text: str) -> list[str]:
    """NAME or NAME,NAME,... (`fab env.unset`)."""
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise EnvError(f"env.unset: expected NAME or NAME,NAME,..., got {text!r}")
    return [checked_name(n, f"env.unset: {n}") for n in names]


def _unique(names: Sequence[str], task: str) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise EnvError(f"{task}: {', '.join(twice)} given more than once")


# --- what set and unset do to the store (pure) ------------------------------------------------------

def apply_set(cfg: Config, store: Store, pairs: Sequence[tuple[str, str]], secret: bool) -> Store:
    """The store with `pairs` set (plain, or secret); a name roles.yaml declares keeps its kind."""
    _unique([n for n, _ in pairs], "env.set")
    plain, secrets, unset = dict(store.plain), dict(store.secrets), set(store.unset)
    kinds = declared(cfg)
    for name, value in pairs:
        kind, index = kinds.get(name, (None, 0))
        if kind == "env" and secret:
            raise EnvError(f"env.set: {name} is a plain value in {roles_name(cfg)} app.env: set it without --secret "
                           f"(or move it to app.secrets)")
        if kind == "secret" and not secret:
            raise EnvError(f"env.set: {name} is a secret ({roles_name(cfg)} app.secrets[{index}]): set it with --secret")
        unset.discard(name)
        if secret:
            secrets[name] = value
            plain.pop(name, None)
        else:
            plain[name] = value
            secrets.pop(name, None)
    return Store(plain, secrets, frozenset(unset))


def apply_unset(cfg: Config, store: Store, names: Sequence[str]) -> tuple[Store, list[str]]:
    """The store with `names` unset, and a note per name: an override goes (back to roles.yaml's value, if
    it has one); a name only roles.yaml gives is hidden from the app."""
    _unique(names, "env.unset")
    plain, secrets, unset = dict(store.plain), dict(store.secrets), set(store.unset)
    kinds, notes = declared(cfg), []
    for name in names:
        kind, index = kinds.get(name, (None, 0))
        file_secret = kind == "secret" and cfg.app.secrets[index].ssm is None
        override = name in plain or (name in secrets and not file_secret)
        if override:
            plain.pop(name, None)
            secrets.pop(name, None)
            notes.append(f"{name}: the fab env.set value removed" + (f"; back to {roles_name(cfg)}'s" if kind else ""))
        elif kind is None:
            raise EnvError(f"env.unset: {name} is not set (fab env lists the app's variables)")
        elif name in unset:
            notes.append(f"{name}: already unset")
        else:
            secrets.pop(name, None)
            unset.add(name)
            where = "app.env" if kind == "env" else f"app.secrets[{index}]"
            notes.append(f"{name}: hidden from the app ({roles_name(cfg)} {where} has it; fab env.set brings it back)")
    return Store(plain, secrets, frozenset(unset)), notes


# --- showing it (masked) ----------------------------------------------------------------------------

def shown(var: EnvVar) -> str:
    return MASK if var.secret else shlex.quote(var.value)


def changes(old: list[EnvVar] | None, new: list[EnvVar]) -> list[str]:
    """What the app's environment gains, loses and changes, one line per name, secret values masked
    (`old` None: the previous one could not be resolved)."""
    before = {v.name: v for v in old or []}
    after = {v.name: v for v in new}
    lines = []
    for name, v in after.items():
        was = before.get(name)
        kind = " (secret)" if v.secret else ""
        if was is None:
            lines.append(f"{name}={shown(v)}{kind}: {'set' if old is None else 'added'} ({v.source})")
        elif (was.value, was.secret) != (v.value, v.secret):
            what = f"{shown(was)} -> {shown(v)}" if not (was.secret or v.secret) else f"{MASK} (changed)"
            lines.append(f"{name}{kind}: {what} ({v.source})")
    lines += [f"{name}: removed (was {was.source})" for name, was in before.items() if name not in after]
    return lines


def summary(old: list[EnvVar] | None, new: list[EnvVar]) -> str:
    """The audit log's detail: NAME=value for plain, NAME=*** for secret, NAME removed."""
    before = {v.name: v for v in old or []}
    after = {v.name: v for v in new}
    put = [f"{v.name}={shown(v)}" for v in new if (before.get(v.name) is None
                                                   or (before[v.name].value, before[v.name].secret)
                                                   != (v.value, v.secret))]
    gone = [n for n in before if n not in after]
    return "; ".join(p for p in (("set " + ", ".join(put)) if put else "",
                                 ("unset " + ", ".join(gone)) if gone else "") if p) or "no change"


def listing(cfg: Config, store: Store, ssm: Callable[[], Any] | None = None) -> list[str]:
    """`fab env`: NAME, value (secrets masked), source; missing secrets and hidden names said so."""
    rows = [(e.name, shown(e), e.source) if isinstance(e, EnvVar) else (e.name, "(missing)", e.message)
            for e in entries(cfg, store, ssm)]
    kinds = declared(cfg)
    rows += [(n, "(unset)", f"fab env.unset hides {roles_name(cfg)}'s value") for n in sorted(store.unset)
             if n in kinds and n not in store.plain and n not in store.secrets]
    if not rows:
        return [f"the app has no variables of its own ({roles_name(cfg)} app.env, app.secrets; "
                f"fab env.set NAME=VALUE adds one)"]
    width = [max(len(r[i]) for r in rows + [("NAME", "VALUE", "")]) for i in (0, 1)]
    return [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}".rstrip() for a, b, c in [("NAME", "VALUE", "SOURCE"), *rows]]


