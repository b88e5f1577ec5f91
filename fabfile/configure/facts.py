"""Everything configure needs to know about a host, read by ONE command, parsed by a pure function.

`facts_command(request)` builds a root shell script that prints sections:

    @@whipup-facts 1
    @@system       init systemd|sysv, now <epoch>, os <id> <version>, apt_lists <n>, apt_updated <epoch>,
                   postgresql <major> (the newest in /etc/postgresql; empty when none is installed)
    @@packages     dpkg-query: <status-abbrev><TAB><package>
    @@paths        file|dir|link|other|absent <TAB> path [<TAB> owner:group:mode <TAB> sha256 | <TAB> target]
    @@users        user<TAB><passwd line> | absent<TAB><name>
    @@services     <name><TAB><active state><TAB><enabled state> (systemctl is-enabled's word; sysv: enabled
                   if a start link of the default runlevel runs its init script, else disabled; - for neither)
    @@pending      <service>:<action> handlers owed by an earlier run that stopped before running them
    @@postgres     role|db rows from pg_authid/pg_database, then `status<TAB>up|down` (db nodes only)
    @@end

`parse_facts(text)` turns that into `Facts` (FactsError on anything malformed).
The postgres section carries the role's SCRAM verifier (never the password):
it lets `plan` check the password locally; facts are never printed.

Host values (`HOST_VALUES`): templates see `host.postgresql` as a placeholder, since they are rendered
before any host is contacted; a managed path holding one is stat'ed by the facts script with the host's
own value put in (so an up-to-date host still costs one command), and `Desired.for_host` puts the value
into the rendered paths and contents once the facts are read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import commands as cmd

MAGIC = "@@whipup-facts 1"
SECTIONS = ("system", "packages", "paths", "users", "services", "pending", "postgres")

# host value -> (its placeholder in rendered templates, the facts script's shell variable holding it)
HOST_VALUES = {"postgresql": ("<postgresql-version>", "whipup_pg")}
PG_MAJOR_COMMAND = ("whipup_pg=$(ls -1 /etc/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -n 1); "
                    'echo "postgresql $whipup_pg"')


class FactsError(Exception):
    """The facts output is not what the facts script prints."""


@dataclass(frozen=True)
class FactsRequest:
    paths: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    postgres: tuple[str, str] | None = None    # (role, database)


@dataclass(frozen=True)
class PathFact:
    kind: str                  # file | dir | link | other | absent
    owner: str | None = None
    group: str | None = None
    mode: int | None = None
    sha256: str | None = None
    target: str | None = None  # for links


@dataclass(frozen=True)
class UserFact:
    name: str
    home: str
    shell: str


@dataclass(frozen=True)
class ServiceFact:
    state: str                 # active | inactive | failed | absent | ... (systemctl is-active words)
    enabled: bool | None       # started at boot (systemd unit, or sysv rc link); None where nothing says

    @property
    def running(self) -> bool:
        return self.state == "active"


@dataclass(frozen=True)
class PgRole:
    verifier: str              # rolpassword: a SCRAM verifier, or '' if none
    can_login: bool


@dataclass(frozen=True)
class PgFacts:
    up: bool
    roles: dict[str, PgRole] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)   # name -> owner


@dataclass(frozen=True)
class Facts:
    init: str                  # systemd | sysv
    now: int
    os: str
    apt_lists: int             # number of package list files
    apt_updated: int | None    # newest of whipup's update stamp and the lists dir's mtime
    packages: frozenset[str]   # installed
    paths: dict[str, PathFact]
    users: dict[str, UserFact | None]
    services: dict[str, ServiceFact]
    postgres: PgFacts | None
    pending: frozenset[tuple[str, str]] = frozenset()   # (service, action) handlers still owed
    postgresql: str | None = None     # the installed PostgreSQL's major version ("17"); None: none installed

    @property
    def host_values(self) -> dict[str, str]:
        """The HOST_VALUES this host has (templates' `host.*`)."""
        return {"postgresql": self.postgresql} if self.postgresql else {}


# --- the command ------------------------------------------------------------------------

_PATH_FN = r"""p() {
  if [ -L "$1" ]; then printf 'link\t%s\t%s\n' "$1" "$(readlink -- "$1")"
  elif [ -f "$1" ]; then printf 'file\t%s\t%s\t%s\n' "$1" "$(stat -c %U:%G:%a -- "$1")" "$(sha256sum < "$1" | cut -c1-64)"
  elif [ -d "$1" ]; then printf 'dir\t%s\t%s\n' "$1" "$(stat -c %U:%G:%a -- "$1")"
  elif [ -e "$1" ]; then printf 'other\t%s\n' "$1"
  else printf 'absent\t%s\n' "$1"; fi
}"""

_USER_FN = r"""u() {
  if e=$(getent passwd "$1"); then printf 'user\t%s\n' "$e"; else printf 'absent\t%s\n' "$1"; fi
}"""


def _service_lines(name: str) -> str:
    """State and boot-enabled of one service, by systemctl, or by its init script and rc links (the tests
    come from the service layer)."""
    n = cmd.q(name)
    return (
        f'if [ "$init" = systemd ]; then a=$(systemctl is-active {n} 2>/dev/null); '
        f'e=$(systemctl is-enabled {n} 2>/dev/null); [ -n "$e" ] || {{ a=absent; e=-; }}\n'
        f'elif [ -x /etc/init.d/{n} ]; then if {cmd.service_running("sysv", name)}; then a=active; '
        f'else a=inactive; fi; if {cmd.service_enabled_sysv(name)}; then e=enabled; else e=disabled; fi\n'
        f'else a=absent; e=-; fi; printf \'%s\\t%s\\t%s\\n\' {n} "${{a:-unknown}}" "${{e:-unknown}}"'
    )


def facts_script(request: FactsRequest) -> str:
    """The shell script (run as root) that prints every fact `request` asks for."""
    for p in request.paths:
        if not p.startswith("/") or any(c in p for c in "\t\n"):
            raise ValueError(f"managed path must be absolute without tabs or newlines: {p!r}")
    lines = [
        "cd / || exit 1",
        "LC_ALL=C; export LC_ALL",
        f"echo {cmd.q(MAGIC)}",
        "echo @@system",
        "if [ -d /run/systemd/system ]; then init=systemd; else init=sysv; fi",
        *_background(request),
        'echo "init $init"',
        'echo "now $(date +%s)"',
        '( . /etc/os-release 2>/dev/null; echo "os ${ID:-unknown} ${VERSION_ID:-unknown}" )',
        "n=0; for f in /var/lib/apt/lists/*_Packages*; do [ -e \"$f\" ] && n=$((n+1)); done; echo \"apt_lists $n\"",
        f"echo \"apt_updated $(stat -c %Y {cmd.q(cmd.APT_STAMP)} /var/lib/apt/lists 2>/dev/null | sort -n | tail -n 1)\"",
        PG_MAJOR_COMMAND,
        "echo @@packages",
        r"dpkg-query -W -f '${db:Status-Abbrev}\t${Package}\n' 2>/dev/null",
        "echo @@paths",
        _PATH_FN,
        *(path_line(p) for p in request.paths),
        "echo @@users",
        _USER_FN,
        *(f"u {cmd.q(u)}" for u in request.users),
        "echo @@services",
        *(["wait", " ".join(["cat"] + [f'"$w/s{i}"' for i in range(len(request.services))])]
          if request.services else []),
        "echo @@pending",
        f"for f in {cmd.q(cmd.PENDING_DIR)}/*; do [ -e \"$f\" ] && printf '%s\\n' \"${{f##*/}}\"; done",
    ]
    if request.postgres:
        lines += ["echo @@postgres", "wait", 'cat "$w/pg"']
    lines += ["echo @@end", "exit 0"]
    return "\n".join(lines)


def _postgres_lines(role: str, db: str) -> list[str]:
    psql = cmd.shlex.join(["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-F", "\t",
                           "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", cmd.pg_facts_sql(role, db)])
    return [f"if command -v psql >/dev/null 2>&1 && out=$({psql} 2>/dev/null); then",
            "  [ -z \"$out\" ] || printf '%s\\n' \"$out\"; printf 'status\\tup\\n'",
            "else printf 'status\\tdown\\n'; fi"]


def _background(request: FactsRequest) -> list[str]:
    """The slow facts (each service's status: `service X status` is ~30 ms of init script; psql's login)
    started at once, side by side, each into its own file of `$w`, printed in order where they belong."""
    jobs = [(f"s{i}", _service_lines(name).split("\n")) for i, name in enumerate(request.services)]
    jobs += [("pg", _postgres_lines(*request.postgres))] if request.postgres else []
    if not jobs:
        return []
    lines = ["w=$(mktemp -d) || exit 1", "trap 'rm -rf \"$w\"' EXIT", "trap 'rm -rf \"$w\"; exit 1' HUP INT TERM"]
    for name, body in jobs:
        lines += ["(", *body, f') > "$w/{name}" 2>/dev/null &']
    return lines


def path_line(path: str) -> str:
    """The facts script's line for one managed path: `p PATH`, a host value's placeholder replaced by the
    script's variable (and the line skipped when the host has no such value)."""
    variables = {mark: var for mark, var in HOST_VALUES.values() if mark in path}
    if not variables:
        return f"p {cmd.q(path)}"
    words, last = [], 0
    for m in re.finditer("|".join(re.escape(mark) for mark in variables), path):
        words += [cmd.q(path[last:m.start()])] if m.start() > last else []
        words.append(f'"${variables[m.group()]}"')
        last = m.end()
    words += [cmd.q(path[last:])] if last < len(path) else []
    tests = " && ".join(f'[ -n "${var}" ]' for var in variables.values())
    return f"{tests} && p {''.join(words)}"


def facts_command(request: FactsRequest) -> str:
    """`sudo -n -- sh -c SCRIPT`: one SSH command for all facts."""
    from ..remote import sudo_sh

    return sudo_sh(facts_script(request))


# --- the parser -------------------------------------------------------------------------

def parse_facts(text: str) -> Facts:
    """Facts from the facts script's output; FactsError names the line that does not fit."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != MAGIC:
        raise FactsError(f"not whipup facts output (first line {lines[0][:60]!r})" if lines
                         else "no facts output")
    if "@@end" not in (line.strip() for line in lines):
        raise FactsError("facts output is truncated (no @@end)")
    sections: dict[str, list[tuple[int, str]]] = {}
    current = None
    for n, line in enumerate(lines[1:], start=2):
        if line.startswith("@@"):
            current = line[2:].strip()
            if current == "end":
                break
            if current not in SECTIONS:
                raise FactsError(f"line {n}: unknown section {line!r}")
            sections[current] = []
        elif current is None:
            raise FactsError(f"line {n}: text before the first section")
        elif line.strip():
            sections[current].append((n, line))

    system = _system(sections.get("system", []))
    return Facts(
        init=system["init"],
        now=system["now"],
        os=system.get("os", "unknown"),
        apt_lists=system.get("apt_lists", 0),
        apt_updated=system.get("apt_updated"),
        packages=frozenset(_packages(sections.get("packages", []))),
        paths=dict(_paths(sections.get("paths", []))),
        users=dict(_users(sections.get("users", []))),
        services=dict(_services(sections.get("services", []), system["init"])),
        postgres=_postgres(sections["postgres"]) if "postgres" in sections else None,
        pending=frozenset(_pending(sections.get("pending", []))),
        postgresql=system.get("postgresql"),
    )


def _int(n: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FactsError(f"line {n}: {what}: expected a number, got {value!r}") from None


def _system(rows: list[tuple[int, str]]) -> dict:
    out: dict = {}
    for n, line in rows:
        key, _, value = line.partition(" ")
        value = value.strip()
        if key == "init":
            if value not in cmd.INIT_SYSTEMS:
                raise FactsError(f"line {n}: unknown init system {value!r}")
            out["init"] = value
        elif key in ("now", "apt_lists"):
            out[key] = _int(n, value, key)
        elif key == "apt_updated":
            out[key] = _int(n, value, key) if value else None
        elif key == "os":
            out[key] = value
        elif key == "postgresql":
            out[key] = parse_pg_major(n, value)
        else:
            raise FactsError(f"line {n}: unknown system fact {key!r}")
    for key in ("init", "now"):
        if key not in out:
            raise FactsError(f"system section lacks {key!r}")
    return out


def parse_pg_major(n: int, value: str) -> str | None:
    """The `postgresql` system fact: a major version ("15", "17") or empty (none installed)."""
    if not value:
        return None
    if not value.isdigit() or not value.isascii():
        raise FactsError(f"line {n}: postgresql: expected a major version like 17, got {value!r}")
    return value


def _packages(rows: list[tuple[int, str]]):
    for n, line in rows:
        status, sep, name = line.partition("\t")
        if not sep or len(status) < 2:
            raise FactsError(f"line {n}: expected '<status>\\t<package>', got {line!r}")
        if status[1] == "i":   # installed (ii, hi): the second letter is the current state
            yield name.strip()


def _attrs(n: int, value: str) -> tuple[str, str, int]:
    parts = value.split(":")
    if len(parts) != 3:
        raise FactsError(f"line {n}: expected owner:group:mode, got {value!r}")
    try:
        return parts[0], parts[1], int(parts[2], 8)
    except ValueError:
        raise FactsError(f"line {n}: bad mode in {value!r}") from None


def _paths(rows: list[tuple[int, str]]):
    for n, line in rows:
        f = line.split("\t")
        kind = f[0]
        if kind == "file" and len(f) == 4:
            owner, group, mode = _attrs(n, f[2])
            if len(f[3]) != 64:
                raise FactsError(f"line {n}: bad sha256 {f[3]!r}")
            yield f[1], PathFact("file", owner, group, mode, sha256=f[3])
        elif kind == "dir" and len(f) == 3:
            owner, group, mode = _attrs(n, f[2])
            yield f[1], PathFact("dir", owner, group, mode)
        elif kind == "link" and len(f) == 3:
            yield f[1], PathFact("link", target=f[2])
        elif kind in ("absent", "other") and len(f) == 2:
            yield f[1], PathFact(kind)
        else:
            raise FactsError(f"line {n}: bad path fact {line!r}")


def _users(rows: list[tuple[int, str]]):
    for n, line in rows:
        kind, _, rest = line.partition("\t")
        if kind == "absent" and rest:
            yield rest, None
        elif kind == "user":
            f = rest.split(":")
            if len(f) != 7:
                raise FactsError(f"line {n}: expected a passwd line, got {rest!r}")
            yield f[0], UserFact(f[0], f[5], f[6])
        else:
            raise FactsError(f"line {n}: bad user fact {line!r}")


_ENABLED = {"enabled", "enabled-runtime", "static", "alias", "indirect", "generated"}


def _services(rows: list[tuple[int, str]], init: str):
    for n, line in rows:
        f = line.split("\t")
        if len(f) != 3:
            raise FactsError(f"line {n}: expected '<service>\\t<state>\\t<enabled>', got {line!r}")
        name, state, enabled = f
        yield name, ServiceFact(state, None if enabled == "-" else enabled in _ENABLED)


def _pending(rows: list[tuple[int, str]]):
    for n, line in rows:
        service, sep, action = line.strip().rpartition(":")
        if not sep or not service or action not in ("reload", "restart"):
            raise FactsError(f"line {n}: bad pending handler {line!r}")
        yield service, action


def _postgres(rows: list[tuple[int, str]]) -> PgFacts:
    roles: dict[str, PgRole] = {}
    dbs: dict[str, str] = {}
    up = None
    for n, line in rows:
        f = line.split("\t")
        if f[0] == "status" and len(f) == 2 and f[1] in ("up", "down"):
            up = f[1] == "up"
        elif f[0] == "role" and len(f) == 4:
            roles[f[1]] = PgRole(f[2], f[3] in ("true", "t"))
        elif f[0] == "db" and len(f) == 4:
            dbs[f[1]] = f[2]
        else:
            raise FactsError(f"line {n}: bad postgres fact {f[0]!r}")   # never echo a verifier
    if up is None:
        raise FactsError("postgres section lacks its status line")
    return PgFacts(up, roles, dbs)
