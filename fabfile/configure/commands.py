"""Pure builders of the shell commands configure runs on a host.

Every function returns a string; every value in it is quoted with shlex, so a
value like `x; whoami` stays one argument.  Stage scripts are composed from
these fragments by `apply`, then wrapped once with `remote.sudo_sh`.  Secrets
never appear here: PostgreSQL statements travel on stdin (`psql_command`).
"""
from __future__ import annotations

import shlex
from typing import Iterable

from ..install_progress import APT_UPDATE_RETRY

INIT_SYSTEMS = ("systemd", "sysv")
DEFAULT_RUNLEVEL = "2"   # sysv: the runlevel a host boots into (Debian's default; the local cloud's boot uses it)
APT_STAMP = "/var/lib/whipup/apt-updated"
APT_UPDATE_TRIES = 3
APT_UPDATE_SECONDS = 300     # one try of apt-get update (a cold one takes 5-20 s)
PENDING_DIR = "/var/lib/whipup/pending"   # <service>:<action> files: handlers owed by a run that stopped early
APT_ENV = "DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a APT_LISTCHANGES_FRONTEND=none"
APT_OPTIONS = ("-y", "-q", "--no-install-recommends",
               "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
NEW_SUFFIX = ".whipup-new"

# debconf answers for packages that would otherwise ask (noninteractive takes the defaults;
# these make the defaults the ones a server wants).
PRESEEDS: dict[str, tuple[str, ...]] = {
    "postfix": ("postfix postfix/main_mailer_type select No configuration",),
    "iptables-persistent": ("iptables-persistent iptables-persistent/autosave_v4 boolean false",
                            "iptables-persistent iptables-persistent/autosave_v6 boolean false"),
    "unattended-upgrades": ("unattended-upgrades unattended-upgrades/enable_auto_updates boolean false",),
}

# A service whose `reload` is not its init script's: supervisor's would restart every program,
# `reread` + `update` restarts only the programs whose files changed, and never gunicorn's slots (programs
# named *-web-a, *-web-b): a slot is restarted by a slot switch (configure.slotsync), never in place.
SLOT_PROGRAMS = r"-web-[ab]$"
SUPERVISOR_UPDATE = "\n".join([
    "out=$(supervisorctl reread) || { echo \"$out\" >&2; exit 1; }",
    "names=$(printf '%s\\n' \"$out\" | sed -n 's/^\\([^: ]*\\): \\(available\\|changed\\|disappeared\\)$/\\1/p' "
    f"| grep -Ev -- {shlex.quote(SLOT_PROGRAMS)} || true)",
    '[ -z "$names" ] || supervisorctl update $names',
])
RELOAD_OVERRIDES: dict[str, str] = {
    "supervisor": SUPERVISOR_UPDATE,
}


# Run before reloading or restarting a service, on a line of its own (so `set -e` stops there): a config
# error is reported in the service's own words, and the running service keeps its old config.
CONFIG_CHECKS: dict[str, str] = {
    "nginx": "nginx -t -q",
}


def q(value: str) -> str:
    return shlex.quote(str(value))


# --- packages ---------------------------------------------------------------------------

def apt_update_tries(tries: int = APT_UPDATE_TRIES, seconds: int = APT_UPDATE_SECONDS) -> str:
    """`apt-get update` until it succeeds, `tries` times at most, each try bounded to `seconds` (as Ansible's
    apt module retries update_cache): a mirror or proxy that fails or stops answering for one try (apt-get
    update can hang after an index answered 503) costs a try, not the step. `exit 1` after the last."""
    numbers = " ".join(str(n) for n in range(1, tries + 1))
    return (f"for n in {numbers}; do timeout -k 10 {seconds} apt-get update -q && break; "
            f'[ "$n" -lt {tries} ] || exit 1; echo "{APT_UPDATE_RETRY} $((n + 1)) of {tries}"; sleep "$n"; done')


def apt_update() -> str:
    """Refresh the package lists and stamp the time (apt keeps the mirror's mtimes on its lists)."""
    return f"{apt_update_tries()} && mkdir -p {q(APT_STAMP.rsplit('/', 1)[0])} && touch {q(APT_STAMP)}"


def apt_install(packages: Iterable[str]) -> str:
    """One non-interactive `apt-get install` of all `packages`, keeping existing config files."""
    packages = list(packages)
    if not packages:
        raise ValueError("apt_install: no packages")
    return f"{APT_ENV} " + shlex.join(["apt-get", "install", *APT_OPTIONS, *packages])


def debconf_preseed(packages: Iterable[str]) -> str | None:
    """`debconf-set-selections` for the known questions of `packages`, or None if none asks."""
    lines = [line for p in packages for line in PRESEEDS.get(p, ())]
    if not lines:
        return None
    return shlex.join(["printf", r"%s\n", *lines]) + " | debconf-set-selections"


def packages_script(packages: Iterable[str], *, update: bool) -> str:
    """Install `packages`: update first if asked, else update and retry only if the install fails."""
    packages = list(packages)
    parts = ["set -e", f"export {APT_ENV}"]
    preseed = debconf_preseed(packages)
    if preseed:
        parts.append(preseed)
    install = apt_install(packages)
    if update:
        parts += [apt_update(), install]
    else:  # lists fresh enough: a package they do not know (or a 404) is the cue to update
        parts.append(f"{install} || {{ {apt_update()} && {install}; }}")
    return "\n".join(parts)


# --- users, directories, files ----------------------------------------------------------

def create_user(name: str, home: str, shell: str) -> str:
    """A system user with its own group, home `home` (created separately), login shell `shell`."""
    return shlex.join(["useradd", "--system", "--user-group", "--home-dir", home, "--no-create-home",
                       "--shell", shell, name])


def modify_user(name: str, home: str, shell: str) -> str:
    return shlex.join(["usermod", "--home", home, "--shell", shell, name])


def ensure_dir(path: str, owner: str, group: str, mode: str) -> str:
    return shlex.join(["install", "-d", "-o", owner, "-g", group, "-m", mode, path])


def install_file(staged: str, dest: str, owner: str, group: str, mode: str) -> str:
    """Copy the staged file next to `dest` with owner and mode, then rename it over `dest` (atomic)."""
    tmp = dest + NEW_SUFFIX
    return (shlex.join(["install", "-D", "-o", owner, "-g", group, "-m", mode, staged, tmp])
            + " && " + shlex.join(["mv", "-f", tmp, dest]))


def set_attrs(path: str, owner: str, group: str, mode: str) -> str:
    return shlex.join(["chown", f"{owner}:{group}", path]) + " && " + shlex.join(["chmod", mode, path])


def link(path: str, target: str) -> str:
    return shlex.join(["ln", "-sfnT", target, path])


def remove(path: str) -> str:
    return shlex.join(["rm", "-f", path])


def files_script(commands: Iterable[str], *, staged: bool, scratch: bool = False) -> str:
    """The files stage: unpack the staged files (a base64 tar on stdin) into a private temp dir, run `commands`
    there; `scratch`: that temp dir without a tar (for the config checks' copies, `checks`)."""
    parts = ["set -e", "umask 022"]
    if staged or scratch:
        parts += ['stage=$(mktemp -d)', "trap 'rm -rf \"$stage\"' EXIT"]
        parts += ['base64 -d | tar -x -f - -C "$stage"'] if staged else []
        parts += ['cd "$stage"']
    return "\n".join(parts + list(commands))


# --- services ---------------------------------------------------------------------------

def _check_init(init: str) -> None:
    if init not in INIT_SYSTEMS:
        raise ValueError(f"unknown init system {init!r}")


def service(init: str, name: str, verb: str) -> str:
    """`systemctl VERB NAME` under systemd, `service NAME VERB` elsewhere: the only place that picks."""
    _check_init(init)
    if verb == "reload" and name in RELOAD_OVERRIDES:
        return RELOAD_OVERRIDES[name]
    if init == "systemd":
        return shlex.join(["systemctl", verb, name])
    return shlex.join(["service", name, verb])


def service_running(init: str, name: str) -> str:
    """A test that exits 0 if the service runs, quietly."""
    _check_init(init)
    if init == "systemd":
        return shlex.join(["systemctl", "is-active", "--quiet", name])
    return shlex.join(["service", name, "status"]) + " >/dev/null 2>&1"


def converge_service(init: str, name: str, verb: str) -> str:
    """start: start it if stopped; reload/restart: check its config (if it has a check), then reload/restart
    it if running, else start it (with the new config).  One or two lines of a `set -e` script."""
    running = service_running(init, name)
    start = service(init, name, "start")
    if verb == "start":
        return f"{running} || {start}"
    if verb not in ("reload", "restart"):
        raise ValueError(f"unknown service verb {verb!r}")
    check = CONFIG_CHECKS.get(name)
    return (f"{check}\n" if check else "") + f"if {running}; then {service(init, name, verb)}; else {start}; fi"


def enable_service(init: str, name: str) -> str:
    """Enable at boot: `systemctl enable` under systemd; under sysv, update-rc.d makes the rc?.d links of
    the script's LSB header if it has none (`defaults`), then turns them to start links (`enable`: a service
    disabled earlier has K links, which `defaults` leaves alone)."""
    _check_init(init)
    if init == "systemd":
        return shlex.join(["systemctl", "enable", "--quiet", name])
    return shlex.join(["update-rc.d", name, "defaults"]) + " && " + shlex.join(["update-rc.d", name, "enable"])


def service_enabled_sysv(name: str) -> str:
    """A test that exits 0 if a start link of the default runlevel runs the service's init script."""
    return (f"for l in /etc/rc{DEFAULT_RUNLEVEL}.d/S[0-9][0-9]{shlex.quote(name)}; do [ -x \"$l\" ] && break; "
            f"done; [ -x \"$l\" ]")


def mark_pending(service: str, action: str) -> str:
    """Written before the files that trigger it: a handler survives a run that fails before it ran."""
    return f"mkdir -p {q(PENDING_DIR)} && touch {q(f'{PENDING_DIR}/{service}:{action}')}"


def clear_pending(service: str) -> str:
    return f"rm -f {q(f'{PENDING_DIR}/{service}:')}*"


# --- PostgreSQL -------------------------------------------------------------------------

def psql_command() -> str:
    """psql as the postgres superuser reading SQL from stdin; stops at the first error."""
    return "cd / && " + shlex.join(["sudo", "-n", "-u", "postgres", "--",
                                    "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"])


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def pg_ensure_sql(role: str, database: str, verifier: str | None) -> str:
    """Idempotent SQL: the login role, its password (a SCRAM verifier, if given), the database it owns.

    Meant for stdin (`psql_command`): the verifier never appears in a command line.
    """
    r, d = sql_literal(role), sql_literal(database)
    lines = [
        f"SELECT format('CREATE ROLE %I LOGIN', {r}) WHERE NOT EXISTS "
        f"(SELECT 1 FROM pg_roles WHERE rolname = {r})\\gexec",
        f"ALTER ROLE {sql_ident(role)} LOGIN" + (f" PASSWORD {sql_literal(verifier)}" if verifier else "") + ";",
        f"SELECT format('CREATE DATABASE %I OWNER %I', {d}, {r}) WHERE NOT EXISTS "
        f"(SELECT 1 FROM pg_database WHERE datname = {d})\\gexec",
        f"ALTER DATABASE {sql_ident(database)} OWNER TO {sql_ident(role)};",
    ]
    return "\n".join(lines) + "\n"


def pg_facts_sql(role: str, database: str) -> str:
    """One query: the role's verifier and login flag, the database's owner (rows tagged role/db)."""
    r, d = sql_literal(role), sql_literal(database)
    return (f"SELECT 'role', rolname::text, coalesce(rolpassword, ''), rolcanlogin::text FROM pg_authid "
            f"WHERE rolname = {r} UNION ALL "
            f"SELECT 'db', datname::text, pg_get_userbyid(datdba)::text, '' FROM pg_database WHERE datname = {d}")


# --- reading files back (dry-run diffs) -------------------------------------------------

def read_files_script(paths: Iterable[str]) -> str:
    """Print each file as `@@file<TAB>path` then its content in base64; `@@end` last."""
    body = "".join(f"printf '@@file\\t%s\\n' {q(p)}; base64 < {q(p)} 2>/dev/null || true\n" for p in paths)
    return body + "echo @@end"
