"""The pure parts of `fab manage`, `fab logs` and `fab ssh`: each builder tested by exact string."""
from __future__ import annotations

import re
import shlex
from typing import Iterable, Mapping, Sequence

from ..appconfig import RESERVED_ENV, RESERVED_PREFIX
from ..errors import ProvisionError
from ..layout import Layout
from ..nodes import Node
from ..remote import sudo, sudo_sh
from ..deploy.commands import tied

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# the supervisor programs' log files (templates/etc/supervisor/conf.d/app-*.conf.j2: stdout_logfile); gunicorn's
# two slots have one each (a slot never started has none yet)
PROGRAM_LOGS = {"web": ("web-a.log", "web-b.log"), "worker": ("worker.log",)}
PROGRAM_ROLES = {"web": "app", "worker": "worker"}
NGINX_LOGS = ("/var/log/nginx/access.log", "/var/log/nginx/error.log")
LOG_ROLES = ("proxy", "app", "worker")


class CommandError(ProvisionError):
    """Bad input to a command task, or a cluster that cannot run it (yet): the message says which."""


# --- what follows `--` -------------------------------------------------------------------------

def after_dashes(argv: Sequence[str], remainder: str) -> list[str]:
    """The words after the first `--` of `argv` (invoke splits there too), as the shell gave them.

    invoke keeps only their " "-join (`remainder`), which loses the quoting of `-c "print(1)"`; `argv` is
    the process's own. An argv that does not match (the program was run with another one) falls back to
    the join split on whitespace, as invoke itself split it."""
    words = list(argv[argv.index("--") + 1:]) if "--" in argv else []
    if " ".join(words) == remainder:
        return words
    return remainder.split()


# --- fab manage --------------------------------------------------------------------------------

def env_names(names: Iterable[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The --env names, checked: each a variable name, not whipup's own, set here, one line long."""
    out: list[str] = []
    for name in names:
        if not ENV_NAME.fullmatch(name):
            raise CommandError(f"--env {name!r}: not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if name in RESERVED_ENV or name.startswith(RESERVED_PREFIX):
            raise CommandError(f"--env {name}: set by whipup itself on the node (reserved: "
                               f"{', '.join(sorted(RESERVED_ENV))}, {RESERVED_PREFIX}*)")
        if name not in environ:
            raise CommandError(f"--env {name}: not set in this environment (export {name}=... first)")
        if "\n" in environ[name] or "\0" in environ[name]:
            raise CommandError(f"--env {name}: its value has a newline or NUL byte; only one-line values "
                               f"can be forwarded")
        if name not in out:
            out.append(name)
    return tuple(out)


def env_payload(names: Sequence[str], environ: Mapping[str, str]) -> str:
    """What goes first on the command's stdin: one value a line, in the order of `names`."""
    return "".join(f"{environ[name]}\n" for name in names)


def use_pty(stdin_is_terminal: bool, forwarded: Sequence[str]) -> bool:
    """A terminal on the node when whipup's stdin is one (createsuperuser, shell), none otherwise (piped
    stdin, CI). Forwarded values travel on stdin, which a terminal would echo back: then none either."""
    return stdin_is_terminal and not forwarded


def no_release(node: Node) -> str:
    return f"{node.name} has no current release: nothing deployed yet (run fab deploy first)"


# --- fab logs ----------------------------------------------------------------------------------

def log_files(layout: Layout, role: str, program: str | None = None) -> tuple[str, ...]:
    """The log files a node of `role` has: gunicorn's on app nodes, celery's on workers, nginx's on
    proxies; `program` (web or worker) keeps only that program's."""
    if program is not None and program not in PROGRAM_LOGS:
        raise CommandError(f"--program {program!r}: expected one of {', '.join(PROGRAM_LOGS)}")
    if role == "proxy":
        return () if program else NGINX_LOGS
    wanted = [p for p, r in PROGRAM_ROLES.items() if r == role and program in (None, p)]
    return tuple(f"{layout.logs}/{name}" for p in wanted for name in PROGRAM_LOGS[p])


def log_roles(role: str | None, program: str | None) -> tuple[str, ...]:
    """The roles whose logs are shown: --role's (checked), or every role that has logs."""
    if role is not None and role not in LOG_ROLES:
        raise CommandError(f"--role {role!r}: logs are kept on {', '.join(LOG_ROLES)} nodes")
    roles = (role,) if role else LOG_ROLES
    if program is not None:
        roles = tuple(r for r in roles if r == PROGRAM_ROLES.get(program))
        if not roles:
            raise CommandError(f"--program {program} runs on {PROGRAM_ROLES[program]} nodes, not on {role} nodes")
    return roles


def tail_argv(files: Sequence[str], lines: int, follow: bool) -> list[str]:
    """`tail -n N [-F] -- FILES`; -F follows a file through its rotation."""
    if not files:
        raise ValueError("no log files to tail")
    if lines < 0:
        raise ValueError(f"lines must be >= 0, not {lines}")
    return ["tail", "-n", str(int(lines)), *(["-F"] if follow else []), "--", *files]


def logs_command(files: Sequence[str], lines: int, follow: bool) -> str:
    """The tail as root (nginx's logs are root:adm 0640) of those of `files` that exist (a gunicorn slot
    never started has no log yet); a followed tail (-F: it picks up a file that appears) ends with the SSH
    session that started it (`tied`), so Ctrl-C here leaves no tail running on the node."""
    argv = tail_argv(files, lines, follow)
    if follow:
        return sudo_sh(tied(shlex.join(argv)))
    if len(files) == 1:
        return sudo(argv)
    head = argv[:argv.index("--") + 1]
    return sudo_sh(f"set --; for f in {' '.join(shlex.quote(f) for f in files)}; do "
                   '[ ! -e "$f" ] || set -- "$@" "$f"; done; '
                   f'[ "$#" -eq 0 ] || exec {shlex.join(head)} "$@"')


def prefixed(name: str, text: str) -> list[str]:
    """Each line of `text` as `[name] line` (a pty's \\r dropped)."""
    return [f"[{name}] {line.rstrip(chr(13))}" for line in text.splitlines()]


# --- fab ssh -----------------------------------------------------------------------------------

def pick_node(nodes: Sequence[Node], role: str, index: int, cluster: str) -> Node:
    """Node `index` of `role` among the cluster's nodes, running; else an error naming what exists."""
    of_role = sorted((n for n in nodes if n.role == role), key=lambda n: n.index)
    if not of_role:
        roles = sorted({n.role for n in nodes})
        raise CommandError(f"cluster {cluster} has no {role} node (roles with nodes: "
                           f"{', '.join(roles) if roles else 'none; run fab provision'})")
    chosen = next((n for n in of_role if n.index == index), None)
    listing = ", ".join(f"{n.name} (index {n.index}, {n.state})" for n in of_role)
    if chosen is None:
        raise CommandError(f"{role} has no node {index}: its nodes are {listing}")
    if chosen.state != "running":
        raise CommandError(f"{chosen.name} is {chosen.state}, not running (nodes of {role}: {listing})")
    return chosen


def node_index(value: str) -> int:
    if not str(value).isdigit():
        raise CommandError(f"N {value!r}: expected a node index (0, 1, ...)")
    return int(value)


def ssh_argv(base: Sequence[str], user: str, address: str, command: Sequence[str] = ()) -> list[str]:
    """The system ssh onto `address` with `base`'s options (whipup's key, pinned known_hosts, strict host
    key checking); an interactive shell, or `command` run there (its words quoted for the remote shell)."""
    return [*base, "--", f"{user}@{address}", *([shlex.join(command)] if command else [])]
