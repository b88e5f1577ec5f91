"""Every remote command deploy runs, as a string: pure, each value shlex-quoted.

`*_script` functions return a POSIX sh script (run locally by the tests under a temp base dir); the
command functions wrap it: `as_app` runs it as the app user (`sudo -n -u <app> -- sh -c SCRIPT`), `as_root`
as root.  Secrets never appear here: they go on stdin (`write_env`, `lock_acquire` read stdin).  A value
quoted for the shell is a `Quoted` (what `q` returns); a plain `str` is still to quote.  Django's own
commands are in `manage`, the lock's in `lock`, supervisord's XML-RPC in `supervisor`.
"""
from __future__ import annotations

import re
import shlex
from typing import Iterable, NewType, Sequence

from ..layout import (PARTIAL_MARK, PREVIOUS_MARK, REQUIREMENTS_FILES_MARK, REQUIREMENTS_MARK, TREE_MARK, VENV,
                      VENV_MARK, WEB_PORT, Layout)
from ..remote import sudo, sudo_sh
from ..validate import BRANCH
from .releases import SHA, is_release_id
from .supervisor import supervisor_rpc, supervisor_signal, supervisor_status

Quoted = NewType("Quoted", str)     # one shell word, quoted: safe to paste into a command


def q(value: str) -> Quoted:
    return Quoted(shlex.quote(value))


def release_arg(release_id: str) -> str:
    """`release_id` if it is one (ValueError otherwise): only such a value reaches a command."""
    if not is_release_id(release_id):
        raise ValueError(f"not a release id: {release_id!r}")
    return release_id


def sha_arg(sha: str) -> str:
    """`sha` if it is a full git sha (ValueError otherwise)."""
    if not SHA.fullmatch(sha):
        raise ValueError(f"not a full sha: {sha!r}")
    return sha


def as_app(layout: Layout, script: str) -> str:
    return sudo_sh(script, user=layout.user)


def as_root(script: str) -> str:
    return sudo_sh(script)


def tied(script: str) -> str:
    """`script` ended with the SSH session that started it: it runs in a process group of its own, and a
    watcher reading the session's stdin (which stays open while the session lives: such a command gets no
    stdin) kills that group at EOF. A deploy killed mid-pip leaves no pip running on the host."""
    return "\n".join([
        "exec 3<&0 </dev/null",
        f"setsid -w sh -c {q(script)} &",
        "job=$!",
        '{ cat <&3 >/dev/null 2>&1; kill -TERM -"$job" 2>/dev/null; } >/dev/null 2>&1 &',
        "watch=$!",
        'wait "$job"; rc=$?',
        'kill "$watch" 2>/dev/null',
        'exit "$rc"',
    ])


# --- what a node has ------------------------------------------------------------------------

def state_script(layout: Layout, programs: Iterable[str] = (), migrations: bool = False) -> str:
    # `m FILE` sets $v to FILE's first line (or -) with the shell's own `read`: no process per mark file
    lines = [
        f"cd {q(layout.root)} 2>/dev/null || {{ echo layout=missing; exit 0; }}",
        "echo layout=ok",
        'echo "current=$(readlink current 2>/dev/null)"',
        'echo "live=$(readlink slots/live 2>/dev/null)"',
        'for s in a b; do echo "slot=$s $(readlink "slots/$s" 2>/dev/null || echo -) '
        '$(cat "slots/$s.cold-at" 2>/dev/null || echo -)"; done',
        'm() { v=; [ -f "$1" ] && IFS= read -r v < "$1"; [ -n "$v" ] || v=-; }',
        "for d in releases/*/; do",
        '  [ -d "$d" ] || continue',
        '  d=${d%/}',
        f'  m "$d/REVISION"; a=$v; m "$d/{VENV}/{REQUIREMENTS_MARK}"; b=$v; m "$d/{VENV}/{VENV_MARK}"; c=$v',
        f'  m "$d/{TREE_MARK}"; e=$v; m "$d/{PREVIOUS_MARK}"; f=$v; g=-; [ ! -e "$d/{PARTIAL_MARK}" ] || g=partial',
        '  echo "release=${d#releases/} $a $b $c $e $f $g"',
        "done",
    ]
    if migrations:
        lines += [
            f'find releases -mindepth 2 \\( -path "releases/*/{VENV}" -o -path "releases/*/static" \\) -prune -o '
            '-path "releases/*/*/migrations/*.py" ! -name __init__.py -print 2>/dev/null '
            '| sed -n "s|^releases/\\([^/]*\\)/|migration=\\1 |p"',
        ]
    for program in programs:
        lines += [
            supervisor_status(program),
            'exe=$([ -n "$pid" ] && tr "\\000" "\\n" < "/proc/$pid/cmdline" 2>/dev/null | head -n 1)',
            'cwd=$([ -n "$pid" ] && readlink "/proc/$pid/cwd")',
            f'printf \'program=%s %s %s %s %s\\n\' {q(program)} "${{w:--}}" "${{pid:-0}}" "${{cwd:--}}" "${{exe:--}}"',
        ]
    return "\n".join(lines)


def state(layout: Layout, programs: Iterable[str] = (), migrations: bool = False) -> str:
    """Print layout=, current=, release=<id> <sha> <req hash> <venv id> <tree> <previous>,
    program=<name> <state> <pid> <cwd> <argv0>
    (and migration=<id> <app>/migrations/<file>.py: what a rollback compares first)."""
    return as_root(state_script(layout, programs, migrations))


# --- code -----------------------------------------------------------------------------------

def init_mirror(layout: Layout) -> str:
    m = q(layout.mirror)
    return as_app(layout, f"test -d {m} || git init --bare --quiet {m}")


def receive_pack(layout: Layout) -> str:
    """`git push --receive-pack=...`: the mirror belongs to the app user."""
    return sudo(["git-receive-pack"], user=layout.user)


def fetch_script(layout: Layout, url: str, branch: str) -> str:
    if not BRANCH.fullmatch(branch):
        raise ValueError(f"bad branch name {branch!r}")
    m = q(layout.mirror)
    key_path = f"{layout.root}/.ssh/deploy_key"
    key = q(key_path)
    # GIT_SSH_COMMAND is parsed twice: by this script's shell (the outer quoting), then by git's (the inner)
    ssh = q(shlex.join(["ssh", "-i", key_path, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=accept-new"]))
    return "\n".join([
        "set -e",
        f"test -d {m} || git init --bare --quiet {m}",
        f"if [ -f {key} ]; then export GIT_SSH_COMMAND={ssh}; fi",
        # `--`: the URL is never an option, whatever it starts with (app.repo's check already refuses that)
        f"git --git-dir={m} fetch --quiet --force -- {q(url)} {q(f'+refs/heads/{branch}:refs/heads/{branch}')}",
        f"git --git-dir={m} rev-parse --verify {q(f'refs/heads/{branch}^{{commit}}')}",
    ])


def fetch(layout: Layout, url: str, branch: str) -> str:
    """Strategy git: the host fetches `branch` of `url` into the mirror and prints its sha."""
    return as_app(layout, fetch_script(layout, url, branch))


def show_file(layout: Layout, sha: str, path: str) -> str:
    """A file of commit `sha` in the mirror (the requirements, for strategy git)."""
    return as_app(layout, f"git --git-dir={q(layout.mirror)} show {q(f'{sha_arg(sha)}:{path}')}")


def list_tree(layout: Layout, sha: str) -> str:
    """Every file of commit `sha` in the mirror, NUL-separated (what `fab inspect` looks at, for strategy git)."""
    return as_app(layout, f"git --git-dir={q(layout.mirror)} ls-tree -r -z --name-only {q(sha_arg(sha))}")


def treeish(sha: str, prefix: str) -> str:
    """The tree to deploy: the commit's root, or the app's subdirectory of it."""
    return f"{sha_arg(sha)}:{prefix}" if prefix else f"{sha_arg(sha)}^{{tree}}"


def _marks(rel: Quoted, tree: str | None, previous: str | None) -> list[str]:
    return ([f"printf '%s\\n' {q(sha_arg(tree))} > {rel}/{TREE_MARK}"] if tree else []) + \
        ([f"printf '%s\\n' {q(release_arg(previous))} > {rel}/{PREVIOUS_MARK}"] if previous else [])


def extract_script(layout: Layout, release_id: str, sha: str, prefix: str = "", tree: str | None = None,
                   previous: str | None = None) -> str:
    rel, m, treeq = q(layout.release(release_arg(release_id))), q(layout.mirror), q(treeish(sha, prefix))
    return "\n".join([
        "set -e",
        f'[ "$(git --git-dir={m} cat-file -t {treeq} 2>/dev/null)" = tree ] || '
        f'{{ echo {q(f"{treeish(sha, prefix)}: no such tree in {layout.mirror}")} >&2; exit 1; }}',
        f"rm -rf {rel}",
        f"mkdir -p {rel}",
        f": > {rel}/{PARTIAL_MARK}",
        f"git --git-dir={m} archive --format=tar {treeq} | tar -x -C {rel}",
        f"printf '%s\\n' {q(sha)} > {rel}/REVISION",
        *_marks(rel, tree, previous),
    ])


def extract(layout: Layout, release_id: str, sha: str, prefix: str = "", tree: str | None = None,
            previous: str | None = None) -> str:
    """Check out `sha` (its `prefix` subtree) from the mirror into a fresh release dir, with REVISION (and the
    app's tree id and the node's current release, for "unchanged" and rollback)."""
    return as_app(layout, extract_script(layout, release_id, sha, prefix, tree, previous))


def write_env(layout: Layout) -> str:
    """Replace shared/.env (0600, app user) with stdin; prints changed or unchanged."""
    env, tmp = q(layout.env_file), q(layout.env_file + ".tmp")
    return as_app(layout, f"umask 077 && cat > {tmp} && if cmp -s {tmp} {env}; then rm -f {tmp}; echo unchanged; "
                          f"else chmod 0600 {tmp} && mv -f {tmp} {env} && echo changed; fi")


# --- venvs ----------------------------------------------------------------------------------

def venv_install_script(layout: Layout, release_id: str, req_hash: str, venv_id: str,
                        files: Sequence[str] = (), install: Sequence[str] = (), wheelhouse: str | None = None,
                        build: bool = False) -> str:
    """`wheelhouse` (a directory): with `build`, the wheels are made there first (`pip wheel`) and installed
    from it; without, installed from it (another node built it), or from the index if that fails."""
    rel = layout.release(release_arg(release_id))
    venv = q(f"{rel}/{VENV}")
    reads = " ".join(f"-r {q(f'{rel}/{path}')}" for path in (install or [layout.requirements]))
    pip = f"PYTHONUNBUFFERED=1 {venv}/bin/pip"
    opts = "--progress-bar off --disable-pip-version-check --no-input"
    if wheelhouse is None:
        # not --quiet: its Collecting/Building/Installing lines are the deploy's live progress (install_progress)
        steps = [f"{pip} install {opts} {reads}"]
    else:
        wh = q(wheelhouse)
        steps = ([f"rm -rf {wh}", f"mkdir -p {wh}", f"{pip} wheel {opts} --wheel-dir {wh} {reads}"] if build else []) + [
            f"{pip} install {opts} --no-index --find-links {wh} {reads}" + ("" if build else f" || {pip} install {opts} {reads}")]
    return "\n".join([
        "set -e",
        f"export HOME={q(layout.root)}",
        f"rm -rf {venv}",
        f"python3 -m venv {venv}",
        *steps,
        *([f"printf '%s\\n' {' '.join(q(line) for line in files)} > {venv}/{REQUIREMENTS_FILES_MARK}"]
          if files else []),
        f"printf '%s\\n' {q(req_hash)} > {venv}/{REQUIREMENTS_MARK}",
        f"printf '%s\\n' {q(venv_id)} > {venv}/{VENV_MARK}",
    ])


def venv_install(layout: Layout, release_id: str, req_hash: str, venv_id: str, files: Sequence[str] = (),
                 install: Sequence[str] = (), wheelhouse: str | None = None, build: bool = False) -> str:
    """A new venv in the release, at its final path, and `pip install -r` each of `install` (the release's
    requirements files, which follow their -r/-c includes); `files` (`<sha256> <path>` per requirements file)
    is kept in the venv. `wheelhouse`: see venv_install_script."""
    return as_app(layout, tied(venv_install_script(layout, release_id, req_hash, venv_id, files, install,
                                                   wheelhouse, build)))


def requirements_files_mark(layout: Layout, release_id: str) -> str:
    """The `<sha256> <path>` lines the release's venv was built from (nothing for a venv without them)."""
    return as_app(layout, f"cat {q(layout.venv(release_arg(release_id)) + '/' + REQUIREMENTS_FILES_MARK)} "
                          f"2>/dev/null; true")


def venv_reuse_script(layout: Layout, release_id: str, from_release: str) -> str:
    new = layout.venv(release_arg(release_id))
    old = layout.venv(release_arg(from_release))
    n, o = q(new), q(old)
    return "\n".join([
        "set -e",
        f"rm -rf {n}",
        # a fresh venv at its final path (bin/python, pyvenv.cfg, activate name it) ...
        f"python3 -m venv --without-pip {n}",
        # ... whose packages are the old venv's, hardlinked (pip replaces files, never edits them)
        f"rm -rf {n}/lib",
        f"cp -al {o}/lib {n}/lib",
        # console scripts (gunicorn, celery, pip): copies with the shebang pointing at the new venv
        f"for f in {o}/bin/*; do",
        '  b=${f##*/}',
        f'  if [ -e {n}/bin/"$b" ] || [ -L {n}/bin/"$b" ]; then continue; fi',
        '  if [ "$(head -c 2 "$f")" = "#!" ]; then',
        f'    sed {q(shebang_rewrite(old, new))} "$f" > {n}/bin/"$b" && chmod 755 {n}/bin/"$b"',
        "  else",
        f'    cp -a "$f" {n}/bin/"$b"',
        "  fi",
        "done",
        f"cp {o}/{REQUIREMENTS_MARK} {o}/{VENV_MARK} {n}/",
        f"if [ -f {o}/{REQUIREMENTS_FILES_MARK} ]; then cp {o}/{REQUIREMENTS_FILES_MARK} {n}/; fi",
    ])


def shebang_rewrite(old_venv: str, new_venv: str) -> str:
    """The sed program turning a first line `#!<old_venv>/bin/...` into `#!<new_venv>/bin/...`, both paths
    taken literally (a regex or replacement metacharacter, or the `|` delimiter, in a path is escaped).
    For a venv path too long for a shebang (over 127 bytes), pip writes `#!/bin/sh` and a second line
    `'''exec' <venv>/bin/python "$0" "$@"` (the path quoted by newer pip): that line is rewritten too."""
    pattern = re.sub(r"([\\.*\[\]^$|])", r"\\\1", old_venv)
    replacement = re.sub(r"([\\&|])", r"\\\1", new_venv)
    launcher = "'''exec' "
    return (f"1s|^#!{pattern}/bin/|#!{replacement}/bin/|;"
            f'2s|^{launcher}\\("\\{{0,1\\}}\\){pattern}/bin/|{launcher}\\1{replacement}/bin/|')


def venv_reuse(layout: Layout, release_id: str, from_release: str) -> str:
    """The new release's venv: the current one's packages hardlinked into a venv made at the new path."""
    return as_app(layout, venv_reuse_script(layout, release_id, from_release))


# --- switch and reload -----------------------------------------------------------------------

def switch(layout: Layout, release_id: str) -> str:
    """`current` -> releases/<id>, atomically: a symlink under a temp name, renamed over `current`; the
    release is whole from then on (its partial mark goes)."""
    rid = release_arg(release_id)
    tmp = f"current.tmp-{rid}"
    return as_app(layout, f"cd {q(layout.root)} && test -d {q(f'releases/{rid}')} && "
                          f"rm -f {q(f'releases/{rid}/{PARTIAL_MARK}')} && "
                          f"ln -sfn {q(f'releases/{rid}')} {q(tmp)} && mv -T {q(tmp)} current")


def worker_restart(layout: Layout) -> str:
    """celery: stop (TERM: warm shutdown, running tasks finish) then start on the new release."""
    p = q(layout.worker_program)
    return as_root(f"supervisorctl stop {p} >/dev/null 2>&1; supervisorctl start {p}")


def worker_warm_restart(layout: Layout) -> str:
    """celery: TERM (warm shutdown) without waiting; supervisor's autorestart starts it on `current`.

    Not running (stopped, exited, or backing off between two starts)? Start it without waiting for its
    startsecs; a worker backing off (ALREADY_STARTED) starts on `current` by itself."""
    p = layout.worker_program
    start = supervisor_rpc("supervisor.startProcess", p, False)
    return as_root(f"out=$({supervisor_signal(p, 'TERM')}); case \"$out\" in *signalled) echo \"$out\";; *) "
                   f"x=$({start}); case \"$x\" in *'<boolean>1</boolean>'*) echo {q(p + ': started')};; "
                   f"*ALREADY_STARTED*) echo {q(p + ': starting on current')};; "
                   f"*) echo \"ERROR ($out; start: $x)\"; exit 1;; esac;; esac")


def switch_and_worker(layout: Layout, release_id: str) -> str:
    """Rollback on a worker: switch, then a warm restart that does not wait for celery's startsecs."""
    return f"{switch(layout, release_id)} && {worker_warm_restart(layout)}"


def program_log(layout: Layout, program: str, nbytes: int = 4000) -> str:
    """The last bytes of a program's log through supervisor (whatever its file): stdout, where configure's
    programs send stderr too, else stderr."""
    p = q(program)
    return as_root(f"supervisorctl tail -{int(nbytes)} {p} stdout 2>&1 | grep -v '^ERROR (no log file)' "
                   f"|| supervisorctl tail -{int(nbytes)} {p} stderr")


def health(address: str, port: int = WEB_PORT, timeout: float = 3, path: str = "/health") -> str:
    """GET the health path of an app node (run on a proxy node or the node itself): body, then a line with
    the status code and a redirect's target (empty when none)."""
    return (f"curl -sS -m {timeout:g} -w '\\n%{{http_code}} %{{redirect_url}}' "
            f"{q(f'http://{address}:{int(port)}{path}')}")


def http_code(url: str, timeout: float = 5) -> str:
    return f"curl -sS -m {timeout:g} -o /dev/null -w '%{{http_code}}' {q(url)}"


def remove_releases(layout: Layout, release_ids: Iterable[str]) -> str:
    """Delete these releases (validated ids only: never `current` or anything else).

    They leave releases/ at once (renamed into a fresh trash dir); the files, ~10k per venv, are
    deleted in the background, detached from the SSH session, so a deploy does not wait for it.
    """
    ids = " ".join(q(release_arg(r)) for r in release_ids)
    root = q(layout.root)
    return as_app(layout, f"cd {root} && t=$(mktemp -d {root}/.trash.XXXXXX) && (cd releases && mv -- {ids} \"$t\"/) "
                          f"&& {{ setsid nohup rm -rf {root}/.trash.* </dev/null >/dev/null 2>&1 & }}")
