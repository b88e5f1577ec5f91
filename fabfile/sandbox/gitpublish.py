"""`fab sandbox.git-publish PATH`: a local repository into the git server's directory, as a bare repository.

Every branch and tag of the repository at PATH is pushed (forced, pruned: the published copy is what the
local one has) into `<state>/git/<name>.git`, and HEAD of the copy follows the local checkout's branch. Run
again, it pushes the new commits. The hosts then fetch it from `settings.git_url(name)` (gitserve.py). Only
local files are touched: no network. The local repository's hooks do not run (`--no-verify`).
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import SandboxError
from .settings import SandboxSettings

# not imported from gitserve: `python -m fabfile.sandbox.gitserve` must find it not yet imported (fab's
# tasks import this module)
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", re.ASCII)
REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


@dataclass(frozen=True)
class Published:
    name: str
    url: str
    heads: tuple[tuple[str, str], ...]     # (branch, sha) of the published copy
    head: str | None                       # the branch a clone checks out


def check_name(name: str, what: str = "repository name") -> str:
    if name.endswith(".git") or not NAME.fullmatch(name):
        raise SandboxError(f"{what} {name!r}: expected [A-Za-z0-9][A-Za-z0-9._-]*, at most 64 characters, "
                           f"without .git")
    return name


def default_name(toplevel: Path) -> str:
    return toplevel.name.removesuffix(".git")


def publish_cmds(toplevel: Path, bare: Path, branch: str | None, create: bool) -> list[list[str]]:
    """The git commands, as argv lists: create the bare copy (first time), push, point HEAD at `branch`."""
    cmds = [["git", "init", "--bare", "--quiet", str(bare)]] if create else []
    cmds.append(["git", "-C", str(toplevel), "push", "--quiet", "--no-verify", "--prune", str(bare), *REFSPECS])
    if branch:
        cmds.append(["git", "--git-dir", str(bare), "symbolic-ref", "HEAD", f"refs/heads/{branch}"])
    return cmds


def heads_cmd(bare: Path) -> list[str]:
    return ["git", "--git-dir", str(bare), "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads"]


def parse_heads(output: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, sha) for name, _, sha in (line.partition(" ") for line in output.splitlines() if line))


def _git(argv: list[str], what: str) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    except FileNotFoundError:
        raise SandboxError("git is not installed on this machine (apt-get install -y git)") from None
    if p.returncode != 0:
        raise SandboxError(f"{what}: {' '.join(argv)}: {(p.stderr or p.stdout).strip()}")
    return p.stdout


def _toplevel(path: Path) -> Path:
    if not path.is_dir():
        raise SandboxError(f"git-publish: {path} is not a directory")
    p = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if p.returncode != 0:
        raise SandboxError(f"git-publish: {path} is not a git work tree ({p.stderr.strip()})")
    top = Path(p.stdout.strip())
    if top.resolve() != path.resolve():
        raise SandboxError(f"git-publish: {path} is a subdirectory of the repository {top}; strategy git deploys "
                           f"a repository's root, so publish a repository whose root is the app")
    return top


def publish(settings: SandboxSettings, path: Path, name: str | None = None) -> Published:
    top = _toplevel(path)
    name = check_name(name if name is not None else default_name(top),
                      "--name" if name is not None else f"repository name (from {top.name}; pass --name)")
    if subprocess.run(["git", "-C", str(top), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
                      capture_output=True).returncode != 0:
        raise SandboxError(f"git-publish: {top} has no commit yet; commit the app first")
    branch = subprocess.run(["git", "-C", str(top), "symbolic-ref", "--quiet", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or None
    settings.git_dir.mkdir(parents=True, exist_ok=True)
    bare = settings.git_dir / f"{name}.git"
    for argv in publish_cmds(top, bare, branch, create=not bare.exists()):
        _git(argv, f"git-publish {top} as {name}")
    return Published(name, settings.git_url(name), parse_heads(_git(heads_cmd(bare), "git-publish")), branch)
