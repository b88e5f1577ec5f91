"""How every process of the app gets its environment: one launcher, two env files, gunicorn's settings.

    shared/.env               cluster values and secrets (DATABASE_URL, SECRET_KEY, the user's env), 0600
    releases/<id>/.whipup/env the release's own: its settings module, WSGI callable, Django root, Celery app
    shared/whipup-exec        `whipup-exec RELEASE_DIR (web|worker|CMD) ARGS...`: loads both, the release's
                              venv first on PATH, starts in its Django root, execs
    shared/gunicorn.conf.py   read by gunicorn at start: both files, the WSGI callable, the Django root
                              of the release its slot (slots/a or slots/b) links to

So gunicorn, celery and every Django command whipup runs (check, migrate, collectstatic, the release command,
`fab manage`) see the same environment; nothing of it is on a command line or in a world-readable file, and
the settings a check ran with are the settings that go live (they are the release's, not configure's).
Both env files are `KEY=<sh-quoted value>` lines: sourced by sh, parsed with shlex by gunicorn's settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ..layout import VENV, Layout, env_file_text
from ..appconfig import HEALTH_PATH
from . import overlay
from .commands import as_app, q, release_arg

RELEASE_ENV = ".whipup/env"          # in a release: its own variables
LAUNCHER = "whipup-exec"             # in shared/ (Layout.launcher)
GUNICORN_CONF = "gunicorn.conf.py"   # in shared/


@dataclass(frozen=True)
class AppRuntime:
    """How the release runs: what inspection found (or roles.yaml set), in the terms the hosts need."""
    project_settings: str             # the project's own settings module
    wsgi: str                         # module:callable
    root: str = ""                    # the Django root (manage.py's directory) inside the release
    celery_app: str | None = None
    release_command: str | None = None
    overlay: bool = True
    health_path: str = HEALTH_PATH

    @property
    def settings(self) -> str:
        """DJANGO_SETTINGS_MODULE: the overlay, or the project's own settings."""
        return overlay.SETTINGS_MODULE if self.overlay else self.project_settings


def release_env(layout: Layout, release_id: str, rt: AppRuntime) -> dict[str, str]:
    """The release's own variables (releases/<id>/.whipup/env)."""
    rel = layout.release(release_arg(release_id))
    return {
        "DJANGO_SETTINGS_MODULE": rt.settings,
        "WHIPUP_PROJECT_SETTINGS": rt.project_settings,
        "WHIPUP_WSGI": rt.wsgi,
        "WHIPUP_DJANGO_ROOT": rt.root,
        "WHIPUP_CELERY_APP": rt.celery_app or "",
        "WHIPUP_RELEASE": release_id,
        "STATIC_ROOT": f"{rel}/static",
    }


def release_files(layout: Layout, release_id: str, rt: AppRuntime) -> dict[str, tuple[str, int]]:
    """What whipup adds to a release (paths relative to the app's root, /srv/<app>), with the launcher and
    gunicorn's settings in shared/: the release's env, and the overlay's two modules in its Django root."""
    rel = f"releases/{release_arg(release_id)}"
    files = {f"shared/{name}": item for name, item in runtime_files(layout).items()}
    files[f"{rel}/{RELEASE_ENV}"] = (env_file_text(release_env(layout, release_id, rt)), 0o644)
    if rt.overlay:
        django_root = f"{rel}/{rt.root}".rstrip("/")
        static_root = f"{layout.release(release_id)}/static"
        ours = rt.health_path == HEALTH_PATH      # else app.health_path is a view of the project's own
        files[f"{django_root}/{overlay.SETTINGS_MODULE}.py"] = (overlay.settings_module(
            project=rt.project_settings, release=release_id, static_root=static_root,
            health_path=rt.health_path, health=ours), 0o644)
        if ours:
            files[f"{django_root}/{overlay.HEALTH_MODULE}.py"] = (
                overlay.health_module(release=release_id, health_path=rt.health_path), 0o644)
    return files


def launcher_text(layout: Layout) -> str:
    env, conf, home = q(layout.env_file), q(f"{layout.shared}/{GUNICORN_CONF}"), q(layout.root)
    return "\n".join([
        "#!/bin/sh",
        "# whipup (managed, rewritten by each deploy): run a program of a release with the app's environment.",
        "#   whipup-exec RELEASE_DIR web ARGS...     gunicorn, with shared/gunicorn.conf.py",
        "#   whipup-exec RELEASE_DIR worker ARGS...  celery worker of the release's Celery app",
        "#   whipup-exec RELEASE_DIR CMD ARGS...     anything else (python -m django ..., the release command)",
        "set -eu",
        'release=$1; shift',
        "set -a",
        f". {env}",
        f'. "$release/{RELEASE_ENV}"',
        "set +a",
        f'export HOME={home} PATH="$release/{VENV}/bin:$PATH"',
        'case "${1:-}" in',
        # gunicorn starts in the app's home; its settings chdir into the slot's release
        f'  web) shift; cd {home}; export WHIPUP_RELEASE_DIR="$release"; '
        f'exec "$release/{VENV}/bin/python" "$release/{VENV}/bin/gunicorn" -c {conf} "$@" ;;',
        '  worker) shift; cd "$release/$WHIPUP_DJANGO_ROOT"; '
        f'exec "$release/{VENV}/bin/celery" -A "$WHIPUP_CELERY_APP" worker "$@" ;;',
        "esac",
        'cd "$release/$WHIPUP_DJANGO_ROOT"',
        'exec "$@"',
        "",
    ])


def gunicorn_conf_text(layout: Layout) -> str:
    return "\n".join([
        "# whipup (managed, rewritten by each deploy): gunicorn's settings, read when a slot starts.",
        "# The app's environment: shared/.env and the slot's release's .whipup/env (WHIPUP_RELEASE_DIR, set by",
        "# shared/whipup-exec: slots/a or slots/b, a link to the release the slot runs).",
        "import os",
        "import shlex",
        "import sys",
        "",
        f"RELEASE_DIR = os.environ.get('WHIPUP_RELEASE_DIR', {layout.current!r})",
        f"ENV_FILES = ({layout.env_file!r}, os.path.join(RELEASE_DIR, {RELEASE_ENV!r}))",
        "",
        "",
        "def _read(path):",
        "    out = {}",
        "    with open(path, encoding='utf-8') as f:",
        "        for line in f.read().splitlines():",
        "            if line and not line.startswith('#') and '=' in line:",
        "                key, _, value = line.partition('=')",
        "                out[key] = ''.join(shlex.split(value)) if value else ''",
        "    return out",
        "",
        "",
        "_env = {}",
        "for _path in ENV_FILES:",
        "    _env.update(_read(_path))",
        "for _key in os.environ.get('WHIPUP_ENV_KEYS', '').split():",
        "    if _key not in _env:",
        "        os.environ.pop(_key, None)   # unset since the last load",
        "os.environ.update(_env)",
        "os.environ['WHIPUP_ENV_KEYS'] = ' '.join(sorted(_env))",
        "",
        "wsgi_app = _env['WHIPUP_WSGI']",
        "chdir = os.path.join(RELEASE_DIR, _env.get('WHIPUP_DJANGO_ROOT', ''))",
        "workers = int(_env.get('WEB_CONCURRENCY', '3'))",
        "accesslog = '-'",
        "# the app is imported once, by the master, and its workers fork with it: a slot boots in one import's",
        "# time, TTIN's workers start at once, and they share its memory. WEB_PRELOAD=0 (app.env) imports it in",
        "# each worker instead.",
        "preload_app = _env.get('WEB_PRELOAD', '1') != '0'",
        "",
        "",
        "def pre_fork(server, worker):",
        "    # a database connection the app opened while it loaded (an AppConfig.ready() that queries) stays",
        "    # in the master: a worker opens its own",
        "    db, conf = sys.modules.get('django.db'), sys.modules.get('django.conf')",
        "    if preload_app and db is not None and conf is not None and conf.settings.configured:",
        "        db.connections.close_all()",
        "",
    ])


def files_tar(files: Mapping[str, tuple[str, int]]) -> bytes:
    """A tar of `path -> (text, mode)` (what `write_files` unpacks on a host)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (text, mode) in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_files(layout: Layout, directory: str) -> str:
    """Unpack the tar on stdin (base64) into `directory`, as the app user; files keep their modes."""
    return as_app(layout, f"mkdir -p {q(directory)} && base64 -d | tar -x --no-same-owner -C {q(directory)}")


def runtime_files(layout: Layout) -> dict[str, tuple[str, int]]:
    return {LAUNCHER: (launcher_text(layout), 0o755), GUNICORN_CONF: (gunicorn_conf_text(layout), 0o644)}


def exec_in(layout: Layout, release_dir: str, argv: Sequence[str]) -> str:
    """`whipup-exec RELEASE_DIR ARGV...` quoted: a command of the release with the app's environment."""
    return " ".join(q(a) for a in ["/bin/sh", layout.launcher, release_dir, *argv])
