"""PURE: a changed config file is checked by its service's own tool, on a staged copy, before it is installed.

configure's files stage installs a file by renaming it over the live one, and the services stage reloads
afterwards: a config that the reload's own check refused (`nginx -t`) was already on disk, and the next
restart or boot read it.  Now, for a service with a check, every change of the run inside that service's
config tree (files written, links made, files removed, owner/mode fixed) is first applied to a COPY of the
tree in the stage's private temp dir; the copy's symlinks and absolute paths into the tree are pointed at
the copy; then the service's own tool reads the copy (several changed files of one tree: one check):

    nginx       /etc/nginx                     nginx -t -q -c <copy>/nginx.conf
    supervisor  /etc/supervisor                supervisord's own parser (ServerOptions.realize, what
                                               supervisord runs at start) on <copy>/supervisord.conf:
                                               sections, values, users, log directories
    postgresql  /etc/postgresql/<v>/<cluster>  `postgres --config-file=<copy>/postgresql.conf -C
                                               data_directory` as postgres: every setting of the file and
                                               of what it includes (conf.d); when pg_hba.conf or
                                               pg_ident.conf changes, also a scratch cluster (initdb, unix
                                               socket in the copy, no TCP) started with the copy's hba_file
                                               and ident_file, then stopped: the postmaster refuses to start
                                               on a pg_hba.conf it cannot load, naming the line

A check runs when a change in the plan notifies its service and lies in its tree.  Only when every check
passed are the handlers marked owed and the files installed.  A rejection prints `@@rejected<TAB><service>`
then the tool's own words (its paths put back to the live ones) on stderr, and ends the stage with exit
CHECK_REJECTED: nothing was installed.  `parse_rejection` reads that back.

Not checked here: redis (redis-server has no mode that reads a config file and exits: only a running
instance reads one), and a file outside its service's tree (e.g. a certificate that a site names): the
services stage still runs `nginx -t` before a reload (commands.CONFIG_CHECKS).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Iterable, Mapping

from .plan import FixAttrs, Link, Remove, WriteFile

CHECK_REJECTED = 65                     # exit status of a files stage that a check stopped (EX_DATAERR)
REJECTED_MARK = "@@rejected"
NGINX_TREE = "/etc/nginx"
SUPERVISOR_TREE = "/etc/supervisor"
PG_TREE = re.compile(r"\A(/etc/postgresql/([0-9]+(?:\.[0-9]+)?)/[A-Za-z0-9_-]+)/")
PG_HBA_FILES = ("/pg_hba.conf", "/pg_ident.conf")
CHECKED = ("nginx", "supervisor", "postgresql")
# the scratch cluster's log lines that say nothing about the file (grep -v), and pg_ctl's pointer to that log
PG_CHATTER = "-e ' LOG:  starting PostgreSQL' -e ' LOG:  listening on' -e ' LOG:  database system is shut down'"
PG_CTL_HINT = "Examine the log output."
# a tree's path goes into a sed expression, a find pattern and a ${var#prefix}: only these characters
SAFE_TREE = re.compile(r"\A(/[A-Za-z0-9_.+-]+)+\Z")

# supervisord's own reading of its config (what `supervisord -c` does before it starts anything), with
# its usage text left out: `Error: <what> in section 'program:x' (file: '...')`, exit 2
SUPERVISOR_PARSE = "\n".join([
    "import sys",
    "from supervisor.options import ServerOptions",
    "o = ServerOptions()",
    "def usage(msg):",
    "    sys.stderr.write('Error: %s\\n' % msg)",
    "    sys.exit(2)",
    "o.usage = usage",
    "o.realize(args=['-c', sys.argv[1]])",
])


def q(value: str) -> str:
    return shlex.quote(str(value))


@dataclass(frozen=True)
class CopyOp:
    """One change of the run, applied to the copy: `rel` is its path inside the tree (leading /)."""
    kind: str                  # file | link | remove | attrs
    rel: str
    source: str = ""           # file: the staged member (f0, ...); link: its target
    owner: str = ""
    group: str = ""
    mode: str = ""

    def line(self, root: str) -> str:
        """The command on the copy at `root` (a shell word, e.g. "$stage/check-0")."""
        at = root + q(self.rel)
        if self.kind == "file":
            return shlex.join(["install", "-D", "-o", self.owner, "-g", self.group, "-m", self.mode,
                               self.source]) + f" {at}"
        if self.kind == "link":
            parent = self.rel.rsplit("/", 1)[0]
            return (f"mkdir -p {root + q(parent)} && " if parent else "") + \
                shlex.join(["ln", "-sfnT", self.source]) + f" {at}"
        if self.kind == "remove":
            return f"rm -f {at}"
        if self.kind == "attrs":
            return f"chown {q(self.owner + ':' + self.group)} {at} && chmod {q(self.mode)} {at}"
        raise ValueError(f"unknown copy operation {self.kind!r}")


@dataclass(frozen=True)
class TreeCheck:
    """A service's config tree, the run's changes in it, and how its tool checks the copy."""
    service: str
    tree: str
    ops: tuple[CopyOp, ...]
    hba: bool = False          # postgresql: pg_hba.conf or pg_ident.conf changes (the scratch cluster check)

    def describe(self) -> str:
        how = {"nginx": "nginx -t", "supervisor": "supervisord's parser",
               "postgresql": "postgres -C" + (" and a scratch cluster for pg_hba.conf" if self.hba else "")}
        return f"{how[self.service]} on a copy of {self.tree}"


def tree_of(service: str, path: str) -> str | None:
    """The config tree of `service` that holds `path`, or None (no check for that service, or elsewhere)."""
    if service == "nginx":
        tree = NGINX_TREE
    elif service == "supervisor":
        tree = SUPERVISOR_TREE
    elif service == "postgresql":
        m = PG_TREE.match(path)
        return m.group(1) if m else None
    else:
        return None
    return tree if path.startswith(tree + "/") else None


def _target(a) -> tuple[str, str | None] | None:
    """(path, the service it notifies) of a change that a check may cover."""
    if isinstance(a, WriteFile):
        return a.file.path, a.file.notify
    if isinstance(a, Link):
        return a.link.path, a.link.notify
    if isinstance(a, Remove):
        return a.absent.path, a.absent.notify
    if isinstance(a, FixAttrs):
        return a.path, None
    return None


def _copy_op(a, tree: str, staged: Mapping[str, str]) -> CopyOp | None:
    found = _target(a)
    if found is None or not found[0].startswith(tree + "/"):
        return None
    rel = found[0][len(tree):]
    if isinstance(a, WriteFile):
        f = a.file
        return CopyOp("file", rel, staged[f.path], f.owner, f.group, f.mode)
    if isinstance(a, Link):
        return CopyOp("link", rel, a.link.target)
    if isinstance(a, Remove):
        return CopyOp("remove", rel)
    return CopyOp("attrs", rel, owner=a.owner, group=a.group, mode=a.mode)


def plan_checks(actions: Iterable, staged: Mapping[str, str]) -> list[TreeCheck]:
    """The checks the files stage `actions` need (`staged`: each written file's path -> its staged member)."""
    actions = list(actions)
    trees: dict[tuple[str, str], None] = {}
    for a in actions:
        found = _target(a)
        if found is not None and found[1] in CHECKED:
            tree = tree_of(found[1], found[0])
            if tree is not None:
                trees[(found[1], tree)] = None
    checks = []
    for service, tree in trees:
        ops = tuple(op for a in actions if (op := _copy_op(a, tree, staged)) is not None)
        hba = service == "postgresql" and any(op.rel in PG_HBA_FILES for op in ops)
        checks.append(TreeCheck(service, tree, ops, hba))
    return checks


# --- the commands ----------------------------------------------------------------------------------

def _safe_tree(tree: str) -> str:
    if not SAFE_TREE.fullmatch(tree):
        raise ValueError(f"not a config tree a check can stage: {tree!r}")
    return tree


def sed_literal(text: str) -> str:
    """`text` as a basic regular expression matching itself (inside "s#...#...#g", in double quotes)."""
    return re.sub(r"([.*\[\]^$\\#])", r"\\\1", text)


def reject(service: str, message_command: str) -> str:
    """A block that reports a rejection: the mark, then what `message_command` prints; exit CHECK_REJECTED."""
    return (f"{{ printf '%s\\t%s\\n' {REJECTED_MARK} {q(service)}; {message_command}; }} >&2; "
            f"exit {CHECK_REJECTED}")


def repoint(tree: str, root_var: str) -> list[str]:
    """The copy at "$root_var" names itself where it named `tree`: absolute symlinks into the tree, and
    the tree's path in every file (include lines, hba_file, ...)."""
    tree, root = _safe_tree(tree), f'"{root_var}"'
    relink = f'for l; do d=$(readlink "$l"); ln -sfnT "$0${{d#{tree}}}" "$l"; done'
    return [f"find {root} -type l -lname {q(tree + '/*')} -exec sh -c {q(relink)} {root} {{}} +",
            f'grep -rlZF {q(tree + "/")} {root} | xargs -0r sed -i "s#{sed_literal(tree)}/#{root_var}/#g"']


def tool_command(check: TreeCheck, root_var: str) -> str:
    """The service's own check of the copy at "$root_var" (run from /, its output on stdout and stderr)."""
    root = f'"{root_var}"'
    if check.service == "nginx":
        return f"nginx -t -q -c {root}/nginx.conf"
    if check.service == "supervisor":
        return f"python3 -c {q(SUPERVISOR_PARSE)} {root}/supervisord.conf"
    if check.service == "postgresql":
        return postgres_check(check, root_var)
    raise ValueError(f"no check for {check.service!r}")


def postgres_check(check: TreeCheck, root_var: str) -> str:
    """postgres -C on the copy's postgresql.conf; with `hba`, a scratch cluster started on its hba_file."""
    m = PG_TREE.match(check.tree + "/")
    if m is None:
        raise ValueError(f"not a PostgreSQL cluster's config directory: {check.tree!r}")
    bin_dir, as_pg, root = f"/usr/lib/postgresql/{m.group(2)}/bin", "runuser -u postgres --", f'"{root_var}"'
    conf = f"{as_pg} {bin_dir}/postgres --config-file={root}/postgresql.conf"
    steps = [f"{conf} -C data_directory >/dev/null"]
    if check.hba:
        scratch = f'"{root_var}.pg"'
        settings = (f"hba_file \"$hba\" ident_file \"$ident\" listen_addresses '' unix_socket_directories "
                    f"{scratch} max_connections 5 shared_buffers 1MB")
        steps += [f"hba=$({conf} -C hba_file)", f"ident=$({conf} -C ident_file)",
                  f"install -d -o postgres -g postgres -m 0700 {scratch}",
                  f"{as_pg} {bin_dir}/initdb -D {scratch}/data -A trust -U postgres -N >/dev/null",
                  f"printf \"%s = '%s'\\n\" {settings} >> {scratch}/data/postgresql.conf",
                  f"{{ ctl=$({as_pg} {bin_dir}/pg_ctl -D {scratch}/data -l {scratch}/log -w -t 60 -s start "
                  f"2>&1) || {{ grep -v {PG_CHATTER} {scratch}/log; printf '%s\\n' \"$ctl\" | "
                  f"grep -v {q(PG_CTL_HINT)}; false; }}; }}",
                  f"{as_pg} {bin_dir}/pg_ctl -D {scratch}/data -s -m immediate stop"]
    return " && ".join(steps)


def check_lines(check: TreeCheck, index: int) -> list[str]:
    """Lines of the files stage (a `set -e` script in "$stage", the staged files there as f0, f1, ...):
    copy the tree, apply the run's changes to the copy, point it at itself, run the service's tool on it;
    a rejection ends the script (exit CHECK_REJECTED) before anything is installed."""
    tree, root_var = _safe_tree(check.tree), f"$stage/check-{index}"
    root = f'"{root_var}"'
    missing = f"echo {q(f'{tree} does not exist: is {check.service} installed on this host?')}"
    lines = [f"# {check.service}: the new config checked on a copy of {tree} before it is installed",
             f"[ -d {q(tree)} ] || {{ {reject(check.service, missing)}; }}"]
    if check.service == "postgresql":
        lines.append('chmod 711 "$stage"')          # postgres reads the copy (its files keep their modes)
    lines.append(f"cp -a {q(tree)} {root}")
    lines += [op.line(root) for op in check.ops]
    lines += repoint(tree, root_var)
    said = f"printf '%s\\n' \"$out\" | sed \"s#{root_var}/#{tree}/#g\""     # the live paths, as they will be
    lines.append(f"if ! out=$(cd / && {{ {tool_command(check, root_var)}; }} 2>&1); then "
                 f"{reject(check.service, said)}; fi")
    return lines


class ConfigRejected(Exception):
    """A service's own check refused the new config of a run; nothing was installed."""

    def __init__(self, service: str, words: str, sources: Mapping[str, str]):
        self.service, self.words = service, words
        first, *rest = words.splitlines() or ["(it printed nothing)"]
        lines = [f"{service} rejected the new configuration (nothing was installed; the live files are "
                 f"unchanged): {first}"]
        lines += [f"  {line}" for line in rest]
        named = [(path, where) for path, where in sources.items() if re.search(re.escape(path) + r"(?![\w./-])", words)]
        lines += [f"{path}: {where}" for path, where in named]
        super().__init__("\n".join(lines))


def parse_rejection(output: str) -> tuple[str, str] | None:
    """(service, its own words) from the output of a files stage that a check stopped, or None."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(REJECTED_MARK + "\t"):
            return line.split("\t", 1)[1], "\n".join(lines[i + 1:]).strip()
    return None
