"""The shell the backup tasks run on the nodes: pure builders (every value quoted), tested by exact string.

The db node's scripts run as root (`sudo -n -- sh -c`); PostgreSQL's tools as postgres (runuser). An S3
URL (presigned: a credential for an hour) never goes on a command line: curl reads it from stdin (`-K -`).
"""
from __future__ import annotations

import shlex

from ..remote import sudo_sh

WORK = "/var/lib/postgresql/whipup-backup"    # on the data volume, postgres's own: dumps pass through here
MAINTENANCE_DIR = "/etc/nginx/whipup"
RETRY_AFTER = 30


def curl_config(url: str) -> str:
    """curl's config (read on stdin) naming the URL: quoted as curl's config format wants."""
    return 'url = "' + url.replace("\\", "\\\\").replace('"', '\\"') + '"\n'


def _psql(db: str = "postgres") -> str:
    return f"runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d {shlex.quote(db)}"


def dump_script(database: str, backup: str) -> str:
    """pg_dump -Fc (one consistent snapshot) to a file, uploaded with the URL on stdin; prints `size=N`."""
    q = shlex.quote
    f = f"{WORK}/{backup}.dump"
    return "\n".join([
        "set -eu",
        f"install -d -o postgres -g postgres -m 0700 {q(WORK)}",
        f"trap 'rm -f {q(f)}' EXIT",
        f"runuser -u postgres -- pg_dump -Fc -f {q(f)} {q(database)}",
        f"size=$(stat -c %s {q(f)})",
        f"curl -sS --fail --retry 3 -m 3600 -T {q(f)} -K -",
        'echo "size=$size"',
    ])


def parse_size(output: str) -> int:
    for line in output.splitlines():
        if line.startswith("size=") and line[5:].strip().isdigit():
            return int(line[5:].strip())
    raise ValueError(f"no size= line in: {output[-300:]!r}")


def restore_script(database: str, owner: str, stamp: str) -> str:
    """Download (URL on stdin), restore into a new database `<db>_restore_<stamp>`, then swap it in by
    ALTER DATABASE RENAME (the current one becomes `<db>_before_<stamp>`, the previous such copy dropped).
    A failed download or restore drops only the new database: the current one stays as it was."""
    q = shlex.quote
    new, old = f"{database}_restore_{stamp}", f"{database}_before_{stamp}"
    f = f"{WORK}/restore-{stamp}.dump"
    psql = _psql()
    ident = lambda name: '"' + name.replace('"', '""') + '"'   # noqa: E731
    lit = lambda text: "'" + text.replace("'", "''") + "'"      # noqa: E731
    like = database.replace("_", "\\_") + "\\_before\\_%"
    previous = f"SELECT datname FROM pg_database WHERE datname LIKE {lit(like)}"
    return "\n".join([
        "set -eu",
        f"install -d -o postgres -g postgres -m 0700 {q(WORK)}",
        f"trap 'rm -f {q(f)}' EXIT",
        f"curl -sS --fail --retry 3 -m 3600 -o {q(f)} -K -",
        f"chown postgres {q(f)}",
        f"{psql} -c {q(f'DROP DATABASE IF EXISTS {ident(new)}')}",
        f"{psql} -c {q(f'CREATE DATABASE {ident(new)} OWNER {ident(owner)} TEMPLATE template0')}",
        f"if ! runuser -u postgres -- pg_restore --exit-on-error --single-transaction --no-owner --no-acl "
        f"--role={q(owner)} -d {q(new)} {q(f)}; then",
        f"  {psql} -c {q(f'DROP DATABASE IF EXISTS {ident(new)}')}",
        '  echo "restore failed: the current database is unchanged" >&2; exit 1',
        "fi",
        f"for d in $({psql} -tA -c {q(previous)}); do",
        f'  {psql} -c "DROP DATABASE IF EXISTS \\"$d\\""',
        "done",
        f"{psql} -c {q(f'ALTER DATABASE {ident(database)} ALLOW_CONNECTIONS false')}",
        "n=0",
        f"until {psql} -c {q(f'ALTER DATABASE {ident(database)} RENAME TO {ident(old)}')} 2>/dev/null; do",
        f"  {psql} -tA -c {q(f'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {lit(database)} AND pid <> pg_backend_pid()')} >/dev/null",
        '  n=$((n + 1)); if [ "$n" -gt 100 ]; then',
        f"    {psql} -c {q(f'ALTER DATABASE {ident(database)} ALLOW_CONNECTIONS true')}",
        '    echo "the current database is still in use: not swapped" >&2; exit 1',
        "  fi",
        "  sleep 0.1",
        "done",
        f"if ! {psql} -c {q(f'ALTER DATABASE {ident(new)} RENAME TO {ident(database)}')}; then",
        f"  {psql} -c {q(f'ALTER DATABASE {ident(old)} RENAME TO {ident(database)}')}",
        f"  {psql} -c {q(f'ALTER DATABASE {ident(database)} ALLOW_CONNECTIONS true')}",
        '  echo "the swap failed: the current database is back as it was" >&2; exit 1',
        "fi",
        f"{psql} -c {q(f'ALTER DATABASE {ident(old)} ALLOW_CONNECTIONS true')}",
        f'echo "swapped: {database} is the restored one, the previous is {old}"',
    ])


def checkpoint() -> str:
    return sudo_sh(f"{_psql()} -c CHECKPOINT")


def maintenance_file(app: str) -> str:
    return f"{MAINTENANCE_DIR}/{app}-maintenance.conf"


def maintenance_conf(app: str, why: str, retry_after: int = RETRY_AFTER) -> str:
    """The site's include while a restore runs: every request but nginx's own health answered 503, with
    Retry-After and a short page."""
    page = (f"<!doctype html><title>Maintenance</title><h1>Down for maintenance</h1>"
            f"<p>{why}. Back in a moment.</p>\n")
    return "\n".join([
        f"# whipup: {why} (removed when it ends)",
        f"add_header Retry-After {int(retry_after)} always;",
        "default_type text/html;",
        "if ($uri != /nginx-health) {",
        "    return 503 '" + page.replace("'", "") .replace("\n", "\\n") + "';",
        "}",
        "",
    ])


def maintenance_on(app: str) -> str:
    """The include from stdin, checked (nginx -t, else removed), then a graceful reload."""
    q = shlex.quote
    path = maintenance_file(app)
    return sudo_sh("\n".join([
        "set -eu",
        f"install -d -m 0755 {q(MAINTENANCE_DIR)}",
        f"cat > {q(path)}.tmp && mv {q(path)}.tmp {q(path)}",
        f"if ! out=$(nginx -t -q 2>&1); then rm -f {q(path)}; echo \"nginx -t: $out\" >&2; exit 1; fi",
        "nginx -s reload",
    ]))


def maintenance_off(app: str) -> str:
    q = shlex.quote
    path = maintenance_file(app)
    return sudo_sh(f"if [ -e {q(path)} ]; then rm -f {q(path)} && nginx -s reload; fi")
