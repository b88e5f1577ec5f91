"""The code to deploy, and getting it onto hosts.

Strategy push: `app.repo` is a local path inside a git work tree; the deploy is
HEAD's commit, and of it the repo path's subtree (`examples/demo` of whipup's own
repository) or the whole tree (a standalone repository).  Only committed code
is deployed; uncommitted changes under the path are named in a warning.  The
commit is pushed with `git push` over SSH (our key, our known_hosts, strict host
key checking) to a bare mirror on each host, so hosts need no git credentials;
the host then archives the subtree into the release directory.

Strategy git: each host fetches `app.branch` of `app.repo` into the same mirror.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..layout import Layout
from ..nodes import Node, connect_address
from ..state import identity_paths, known_hosts_path
from . import commands
from .errors import DeployError, SourceError
from .releases import SHA
from ..project.detect import inspect_tree
from ..project.model import Project
from . import inspected
from .requirements import Requirements
from .runtime import AppRuntime


@dataclass(frozen=True)
class Source:
    strategy: str              # push | git
    sha: str                   # the commit deployed (HEAD's, for push)
    prefix: str                # the app's directory inside the commit ('' for a whole repository)
    requirements: str          # the requirements file's text at sha
    toplevel: Path | None      # push: the local work tree's root
    branch: str | None         # push: HEAD's branch (None when detached)
    dirty: tuple[str, ...] = ()  # push: uncommitted paths under the app's directory (not deployed)
    tree: str | None = None    # push: the git tree id of the app's directory at sha
    includes: tuple[tuple[str, str], ...] = ()   # the files `requirements` includes (-r/-c): (path, text)
    requirements_path: str = "requirements.txt"  # app.requirements
    runtime: AppRuntime | None = None  # how the project runs (inspection); None: from roles.yaml and the layout
    install: tuple[str, ...] = ()      # the files `pip install -r` reads (default: requirements_path)
    generated: tuple[tuple[str, str], ...] = ()   # whipup's files among the requirements, written into the release
    project: Project | None = None     # what inspection found at sha

    @property
    def short(self) -> str:
        return self.sha[:7]

    @property
    def requirement_files(self) -> Requirements:
        return Requirements(((self.requirements_path, self.requirements),) + self.includes)

    @property
    def requirements_hash(self) -> str:
        return self.requirement_files.hash


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    except FileNotFoundError:
        raise SourceError("git is not installed on this machine (strategy push needs it)") from None
    if check and p.returncode != 0:
        raise SourceError(f"git {' '.join(args)} in {cwd}: {(p.stderr or p.stdout).strip()}")
    return p.stdout


@dataclass(frozen=True)
class LocalCommit:
    """HEAD of the work tree holding app.repo: where it is, and the app's directory in it."""
    toplevel: Path
    prefix: str                # the app's directory inside the commit ('' for a whole repository)
    sha: str
    treeish: str               # `sha:prefix` or `sha^{tree}`

    def read(self, path: str) -> str | None:
        """A file of the app's directory at the commit (None when it is not there)."""
        spec = f"{self.sha}:{self.prefix}/{path}" if self.prefix else f"{self.sha}:{path}"
        p = subprocess.run(["git", "show", spec], cwd=self.toplevel, capture_output=True, timeout=60)
        return p.stdout.decode("utf-8", "replace") if p.returncode == 0 else None

    def files(self) -> list[str]:
        """Every file of the app's directory at the commit, relative to it."""
        out = _git(self.toplevel, "ls-tree", "-r", "-z", "--name-only", self.treeish)
        return [name for name in out.split("\0") if name]


def local_commit(cfg: Config) -> LocalCommit:
    """HEAD of the git work tree holding app.repo, restricted to app.repo's subtree."""
    path = cfg.app.repo_path
    if path is None:
        raise SourceError("app.strategy is git: the hosts fetch the code (no local repository)")
    if not path.is_dir():
        raise SourceError(f"app.repo: {path} is not a directory")
    inside = _git(path, "rev-parse", "--is-inside-work-tree", check=False).strip()
    if inside != "true":
        raise SourceError(f"app.repo: {path} is not inside a git work tree (git init && git commit it)")
    toplevel = Path(_git(path, "rev-parse", "--show-toplevel").strip())
    prefix = _git(path, "rev-parse", "--show-prefix").strip().rstrip("/")
    head = _git(path, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).strip()
    if not SHA.fullmatch(head):
        raise SourceError(f"app.repo: {toplevel} has no commit yet; commit the app first")
    treeish = f"{head}:{prefix}" if prefix else f"{head}^{{tree}}"
    kind = _git(toplevel, "cat-file", "-t", treeish, check=False).strip()
    if kind != "tree":
        raise SourceError(f"app.repo: {prefix or '.'} is not in HEAD ({head[:7]}) of {toplevel}; commit it first")
    return LocalCommit(toplevel, prefix, head, treeish)


def local_source_at(cfg: Config, sha: str) -> Source:
    """Commit `sha` of the local repository (a release's, to rebuild a node with), app.repo's subtree of it."""
    head = local_commit(cfg)
    treeish = f"{sha}:{head.prefix}" if head.prefix else f"{sha}^{{tree}}"
    if _git(head.toplevel, "cat-file", "-t", treeish, check=False).strip() != "tree":
        raise SourceError(f"commit {sha[:7]} is not in {head.toplevel} (fetch it), or {head.prefix or '.'} is not "
                          f"in it: fab deploy deploys HEAD instead")
    commit = LocalCommit(head.toplevel, head.prefix, sha, treeish)
    tree = _git(commit.toplevel, "rev-parse", treeish).strip()
    return inspected_source(cfg, "push", sha, commit.files(), commit.read, prefix=commit.prefix,
                            toplevel=commit.toplevel, tree=tree)


def inspected_source(cfg: Config, strategy: str, sha: str, files: list[str], read, **kw) -> Source:
    """A Source of commit `sha` whose tree (`files`, `read`) inspection describes: its requirements (with the
    cluster's extras), the files whipup writes before pip, how the release runs."""
    project = inspect_tree(files, read, cfg.app)
    reqs = inspected.requirements(project, cfg)
    return Source(strategy, sha, kw.pop("prefix", ""), reqs.text, kw.pop("toplevel", None), kw.pop("branch", None),
                  includes=reqs.files[1:], requirements_path=reqs.top, runtime=inspected.runtime(project, cfg.app),
                  install=tuple(inspected.install_files(project, reqs)),
                  generated=tuple(inspected.generated_files(project, reqs).items()), project=project, **kw)


def local_source(cfg: Config) -> Source:
    """HEAD of the git work tree holding app.repo, restricted to app.repo's subtree, inspected."""
    commit = local_commit(cfg)
    try:
        files = commit.files()
        status = _git(cfg.app.repo_path, "status", "--porcelain", "--untracked-files=all", "--", ".")
        dirty = tuple(line[3:] for line in status.splitlines() if line.strip())
        branch = _git(cfg.app.repo_path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip() or None
        tree = _git(commit.toplevel, "rev-parse", commit.treeish).strip()
        return inspected_source(cfg, "push", commit.sha, files, commit.read, prefix=commit.prefix,
                                toplevel=commit.toplevel, branch=branch, dirty=dirty, tree=tree)
    except SourceError:
        raise
    except DeployError as exc:
        raise SourceError(f"{exc} (HEAD {commit.sha[:7]} of {commit.toplevel})") from None


def warnings(cfg: Config, source: Source) -> list[str]:
    """What the user should know about what is (not) deployed."""
    out = []
    if source.dirty:
        shown = ", ".join(source.dirty[:8]) + (f" and {len(source.dirty) - 8} more" if len(source.dirty) > 8 else "")
        out.append(f"uncommitted changes in {source.toplevel}/{source.prefix} are NOT deployed "
                   f"(deploying HEAD {source.short}): {shown}")
    if source.strategy == "push" and source.branch is not None and source.branch != cfg.app.branch:
        out.append(f"HEAD is on branch {source.branch}, roles.yaml app.branch is {cfg.app.branch}; "
                   f"deploying HEAD {source.short}")
    return out


# --- push over SSH ------------------------------------------------------------------------------

def git_ssh_command(cfg: Config) -> str:
    """ssh for git: only our key, only our known_hosts, strict host key checking, no ~/.ssh/config."""
    key = identity_paths(cfg)[0]
    return shlex.join([
        "ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts_path(cfg)}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
    ])


PUSH_REF = "refs/heads/whipup-deploy"


def push_argv(cfg: Config, layout: Layout, address: str, source: Source) -> list[str]:
    return ["git", "-C", str(source.toplevel), "push", "--quiet", "--force",
            f"--receive-pack={commands.receive_pack(layout)}",
            f"ssh://{cfg.cluster.ssh.user}@{address}{layout.mirror}", f"{source.sha}:{PUSH_REF}"]


def push(cfg: Config, layout: Layout, node: Node, source: Source, *, timeout: float = 300) -> None:
    """git push HEAD's commit to the node's mirror, through pinned SSH."""
    address = connect_address(cfg, node)
    if cfg.cluster.target == "sandbox":
        from ..ssh import check_sandbox_route

        check_sandbox_route(address)
    env = {**os.environ, "GIT_SSH_COMMAND": git_ssh_command(cfg), "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    p = subprocess.run(push_argv(cfg, layout, address, source), capture_output=True, text=True, env=env,
                       timeout=timeout)
    if p.returncode != 0:
        raise SourceError(f"git push to {node.name} ({address}) failed: {(p.stderr or p.stdout).strip()}")
