"""roles.yaml's `app` section: the project to deploy and how it runs, into a frozen `AppConfig`.

Only `name` and `repo` are needed: everything else is detected from the repository (`fab inspect`), and
a value set here wins over what is detected. `env` and `secrets` are the app's own environment.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .validate import (BRANCH, DOTTED, GIT_URL, PACKAGE, Invalid, boolean, choice, integer, join, list_of,
                       local_path, mapping, relative, shown, string, type_name)

STRATEGIES = ("push", "git")
MEDIA = ("s3", "local")
HEALTH_PATH = "/-/health"

APP_NAME = re.compile(r"\A[a-z][a-z0-9_]*\Z", re.ASCII)
ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)
WSGI = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)
URL_PATH = re.compile(r"\A/[A-Za-z0-9._~/-]*\Z", re.ASCII)
SSM_NAME = re.compile(r"\A/?[A-Za-z0-9_.\-/]{1,1011}\Z", re.ASCII)
_ONE = r"(?:[<>=!~]=?|==)\d+(?:\.\d+)*(?:\.\*)?"
PYTHON_SPEC = re.compile(rf"\A{_ONE}(?:, ?{_ONE})*\Z", re.ASCII)

# names whipup sets itself: the app may read them, not set them (env.set refuses them too)
RESERVED_ENV = frozenset({
    "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DJANGO_SECRET_KEY", "DJANGO_SETTINGS_MODULE",
    "ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DJANGO_CSRF_TRUSTED_ORIGINS", "STATIC_ROOT",
    "MEDIA_ROOT", "HOME", "PATH",
})
RESERVED_PREFIX = "WHIPUP_"

_APP_KEYS = ("name", "repo", "branch", "strategy", "django_settings", "requirements", "wsgi", "celery_app",
             "release_command", "python", "health_path", "overlay", "env", "secrets", "media", "build_packages",
             "keep_releases", "keep_warm")
_SECRET_KEYS = ("name", "ssm")
_WARM_KEYS = ("for", "workers")
DURATION = re.compile(r"\A([0-9]{1,6})([smh]?)\Z", re.ASCII)
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class KeepWarm:
    """How long the previous release's gunicorn slot stays up after a switch, and with how many workers:
    a rollback within that time switches to it with no process to boot. seconds 0: stopped at once."""
    seconds: int = 1800
    workers: int = 1


@dataclass(frozen=True)
class SecretSpec:
    name: str
    ssm: str | None = None     # an SSM Parameter Store name; None: the local secrets file beside the state


@dataclass(frozen=True)
class AppConfig:
    name: str
    repo: str
    repo_path: Path | None     # the resolved local checkout for strategy push, else None
    branch: str
    strategy: str
    django_settings: str | None = None   # None: detected (manage.py's default, a production module)
    requirements: str | None = None      # None: detected (requirements files, else pyproject.toml)
    keep_releases: int = 5
    keep_warm: KeepWarm = KeepWarm()
    wsgi: str | None = None              # module:callable; None: WSGI_APPLICATION
    celery_app: str | None = None        # celery -A; None: detected
    release_command: str | None = None   # None: the Procfile's release:, if any
    python: str | None = None            # a version constraint; None: the project's own
    health_path: str = HEALTH_PATH
    overlay: bool = True                 # write the settings overlay into each release
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    media: str = "s3"
    build_packages: tuple[str, ...] = ()  # Debian packages for requirements pip compiles: configure installs
                                          # them (with build-essential, python3-dev) on app and worker nodes


def duration(value: Any, path: str, hi: int = 7 * 24 * 3600) -> int:
    """Seconds from `90`, `90s`, `30m` or `2h` (at most a week)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    found = DURATION.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise Invalid(path, f"expected a duration like 90s, 30m or 2h, got {value!r}")
    seconds = int(found.group(1)) * _UNIT[found.group(2)]
    if seconds > hi:
        raise Invalid(path, f"at most {hi // 3600} h, got {value!r}")
    return seconds


def keep_warm(value: Any, path: str) -> KeepWarm:
    """app.keep_warm: false (the previous slot stops at once), a duration, or {for: 30m, workers: 1}."""
    if value is False:
        return KeepWarm(0, 0)
    if value is True or value is None:
        return KeepWarm()
    if not isinstance(value, dict):
        return KeepWarm(duration(value, path), KeepWarm.workers)
    m = mapping(value, path, _WARM_KEYS)
    seconds = duration(m.get("for", "30m"), f"{path}.for")
    return KeepWarm(seconds, integer(m.get("workers", 1), f"{path}.workers", 1, 64) if seconds else 0)


def env_name(value: Any, path: str) -> str:
    name = string(value, path, ENV_NAME, "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    if name in RESERVED_ENV or name.startswith(RESERVED_PREFIX):
        raise Invalid(path, f"{name} is set by whipup itself (reserved: {', '.join(sorted(RESERVED_ENV))}, "
                            f"{RESERVED_PREFIX}*)")
    return name


def env_value(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise Invalid(path, f"expected a string, number or boolean, got {type_name(value)}")
    if "\n" in value or "\r" in value or "\x00" in value:
        raise Invalid(path, f"a value may not hold a newline or NUL: {shown(value)}")
    return value


def _env(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise Invalid(path, f"expected a mapping of NAME: value, got {type_name(value)}")
    return tuple((env_name(k, join(path, str(k))), env_value(v, join(path, str(k)))) for k, v in value.items())


def _secret(value: Any, path: str) -> SecretSpec:
    if isinstance(value, str):
        return SecretSpec(env_name(value, path))
    m = mapping(value, path, _SECRET_KEYS, required=("name",))
    ssm = m.get("ssm")
    return SecretSpec(env_name(m["name"], f"{path}.name"),
                      None if ssm is None else string(ssm, f"{path}.ssm", SSM_NAME, "an SSM parameter name"))


def _optional(m: dict, key: str, path: str, pattern: re.Pattern, what: str) -> str | None:
    value = m.get(key)
    return None if value is None else string(value, join(path, key), pattern, what)


def _credentials(url: str) -> bool:
    """A password in the URL, or any user part of an http(s) URL (a token, as `https://TOKEN@host/...`)."""
    try:
        parts = urlsplit(url)
    except ValueError:   # e.g. an unclosed [ of an IPv6 address: git then refuses it itself
        return False
    return "://" in url and (parts.password is not None
                             or (parts.scheme in ("http", "https") and parts.username is not None))


def parse_app(value: Any, path: str, root: Path) -> AppConfig:
    m = mapping(value, path, _APP_KEYS, required=("name", "repo"))
    name = string(m["name"], f"{path}.name", APP_NAME, "a name of [a-z][a-z0-9_]*")
    strategy = choice(m.get("strategy", "push"), f"{path}.strategy", STRATEGIES)
    repo = string(m["repo"], f"{path}.repo", what="a local path or a git URL")
    if strategy == "git" and not GIT_URL.fullmatch(repo):
        raise Invalid(f"{path}.repo", f"strategy git needs a git URL (https://, ssh://, user@host:path), got {repo!r}")
    if strategy == "git" and _credentials(repo):
        raise Invalid(f"{path}.repo", "a password or token in the URL would be on the hosts' command lines and in "
                      "their git config: give the hosts a deploy key (ssh://) or serve the repository without one")
    if strategy == "push" and GIT_URL.fullmatch(repo):
        raise Invalid(f"{path}.repo", f"strategy push needs a local path, got the URL {repo!r} (use strategy: git)")
    repo_path = local_path(repo, f"{path}.repo", root) if strategy == "push" else None
    if repo_path is not None and not repo_path.is_dir():
        raise Invalid(f"{path}.repo", f"strategy push needs a local directory, and {repo_path} is not one")
    secrets = list_of(m.get("secrets", []), f"{path}.secrets", _secret)
    env = _env(m.get("env"), f"{path}.env")
    for i, s in enumerate(secrets):
        if s.name in dict(env):
            raise Invalid(f"{path}.secrets[{i}]", f"{s.name} is also in {path}.env: a name is plain or secret")
    release_command = m.get("release_command")
    return AppConfig(
        name=name,
        repo=repo,
        repo_path=repo_path,
        branch=string(m.get("branch", "main"), f"{path}.branch", BRANCH, "a git branch name"),
        strategy=strategy,
        django_settings=_optional(m, "django_settings", path, DOTTED, "a dotted module path like demo.settings"),
        requirements=None if m.get("requirements") is None else relative(m["requirements"], f"{path}.requirements"),
        keep_releases=integer(m.get("keep_releases", 5), f"{path}.keep_releases", 1, 100),
        keep_warm=keep_warm(m.get("keep_warm"), f"{path}.keep_warm"),
        wsgi=_optional(m, "wsgi", path, WSGI, "module:callable, like mysite.wsgi:application"),
        celery_app=_optional(m, "celery_app", path, DOTTED, "a dotted module path (celery -A)"),
        release_command=None if release_command is None else env_value(release_command, f"{path}.release_command"),
        python=_optional(m, "python", path, PYTHON_SPEC, "a version constraint like >=3.12"),
        health_path=string(m.get("health_path", HEALTH_PATH), f"{path}.health_path", URL_PATH, "a URL path like /-/health"),
        overlay=boolean(m.get("overlay", True), f"{path}.overlay"),
        env=env,
        secrets=secrets,
        media=choice(m.get("media", "s3"), f"{path}.media", MEDIA),
        build_packages=list_of(m.get("build_packages", []), f"{path}.build_packages",
                               lambda v, p: string(v, p, PACKAGE, "a Debian package name")),
    )
