"""Django in a release: `manage.py` commands, Django's upgrade, and the Python programs run there.

Every command runs as the app user in the release through the launcher (`runtime`): the app's environment; the long
ones (migrate, collectstatic, pip) end with the SSH session that started them (`commands.tied`). The
programs (`scripts/*.py`) are package data: `script(name)` goes on stdin, their inputs on argv.
"""
from __future__ import annotations

import re
from importlib import resources
from typing import Sequence

from ..layout import VENV_MARK, Layout
from .commands import as_app, q, release_arg, tied
from .runtime import exec_in


def script(name: str) -> str:
    """The text of the remote program `scripts/<name>.py` (sent on a command's stdin)."""
    return (resources.files(__package__) / "scripts" / f"{name}.py").read_text(encoding="utf-8")


def _in_release(layout: Layout, release_id: str, argv: Sequence[str]) -> str:
    """`argv` in the release through the launcher: the app's environment, the venv, the Django root."""
    return exec_in(layout, layout.release(release_arg(release_id)), argv)


def stdin_env_script(names: Sequence[str]) -> str:
    """Read each of `names` from stdin (one value a line) and export it: values that never touch argv."""
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not an environment variable name: {name!r}")
    return "".join(f"IFS= read -r {name} && export {name} || exit 125\n" for name in names)


def manage(layout: Layout, release_id: str, args: Sequence[str], *, attached: bool = False,
           stdin_env: Sequence[str] = ()) -> str:
    """`python -m django ARGS` in the release, as the app user, with the app's environment (`runtime`).

    The command ends with the SSH session (`tied`, no stdin) unless `attached` (`fab manage`: stdin and a
    terminal reach Django); `stdin_env` names come first on stdin (`stdin_env_script`): the launcher keeps
    them (the env files set only their own names)."""
    run = f"exec {_in_release(layout, release_id, ['python', '-m', 'django', *args])}"
    return as_app(layout, stdin_env_script(stdin_env) + (run if attached else tied(run)))


def collectstatic(layout: Layout, release_id: str) -> str:
    """collectstatic into the release's static/ (STATIC_ROOT), served by nginx through `current`."""
    return manage(layout, release_id, ["collectstatic", "--noinput", "--verbosity", "1"])


def migrate(layout: Layout, release_id: str) -> str:
    return manage(layout, release_id, ["migrate", "--noinput"])


def migrate_check(layout: Layout, release_id: str) -> str:
    """Exit non-zero when the release has migrations the database lacks."""
    return manage(layout, release_id, ["migrate", "--check", "--noinput"])


def python_stdin(layout: Layout, release_id: str, args: Sequence[str] = ()) -> str:
    """Run the Python script on stdin in the release with `args` as its argv (Django set up by the
    script itself: see `script`)."""
    return as_app(layout, f"exec {_in_release(layout, release_id, ['python', '-', *args])}")


def release_command(layout: Layout, release_id: str, command: str) -> str:
    """app.release_command (or the Procfile's release:) once, in the new release, before the switch."""
    return as_app(layout, tied(f"exec {_in_release(layout, release_id, ['sh', '-c', command])}"))


def upgrade_django(layout: Layout, release_id: str, spec: str, venv_id: str) -> str:
    """`pip install --upgrade 'Django>=4.2,<5.1'` in the release's venv; prints `<before> <after>`.

    The venv gets the new content id `venv_id` only if Django's version changed (pip replaces the
    hardlinked files it upgrades; the old release's venv keeps its own).
    """
    venv = q(layout.venv(release_arg(release_id)))
    version = f"{venv}/bin/python -c 'import django; print(django.get_version())'"
    return as_app(layout, tied("\n".join([
        "set -e",
        f"export HOME={q(layout.root)}",
        f"before=$({version})",
        f"{venv}/bin/pip install --quiet --disable-pip-version-check --no-input --upgrade {q(spec)}",
        f"after=$({version})",
        f'if [ "$before" != "$after" ]; then printf \'%s\\n\' {q(venv_id)} > {venv}/{VENV_MARK}; fi',
        'echo "$before $after"',
    ])))


def django_version(layout: Layout, release_id: str) -> str:
    venv = q(layout.venv(release_arg(release_id)))
    return as_app(layout, f"{venv}/bin/python -c 'import django; print(django.get_version())'")
