"""fab inspect: push reads HEAD of the local repository; git lists and reads the commit in the anchor's
mirror (the real commands, run here against a local bare repository)."""
from __future__ import annotations

import shlex
import shutil
import subprocess
from types import SimpleNamespace

import pytest
import yaml
from invoke import Context, Exit

from fabfile import ns
from fabfile.config import load_config
from fabfile.deploy import commands
from fabfile.layout import Layout
from fabfile.project import tasks
from fabfile.project.tree import split_listing
from project_trees import wagtail_start
from test_deploy_source import SHIPPED, git


def roles(tmp_path, repo, **app) -> str:
    data = yaml.safe_load(SHIPPED.read_text())
    data["app"] = {"name": "wsite", "repo": str(repo), **app}
    data["cluster"]["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def wagtail_repo(tmp_path_factory):
    """A repository whose subdirectory `site/` is a `wagtail start` project, committed, plus a dirty file."""
    top = tmp_path_factory.mktemp("repo") / "top"
    wagtail_start(top / "site")
    git(top, "init", "-q", "-b", "main")
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "site")
    (top / "site" / "Procfile").write_text("release: python manage.py migrate\n")   # not committed
    return top


def test_list_tree_builder_is_exact_and_quoted():
    layout = Layout("shop", "shop.settings", "requirements.txt")
    sha = "a" * 40
    assert commands.list_tree(layout, sha) == (
        "sudo -n -u shop -- sh -c 'git --git-dir=/srv/shop/repo.git ls-tree -r -z --name-only " + sha + "'")
    with pytest.raises(ValueError):
        commands.list_tree(layout, "HEAD; whoami")
    assert split_listing("a.py\0dir/b c.py\0") == ["a.py", "dir/b c.py"]


def test_inspect_push_reads_head_of_the_subtree(wagtail_repo, tmp_path, capsys):
    assert "inspect" in ns.task_names
    tasks.inspect(Context(), config=roles(tmp_path, wagtail_repo / "site"))
    out = capsys.readouterr().out
    head = git(wagtail_repo, "rev-parse", "HEAD")
    assert out.startswith(f"wsite: HEAD {head[:12]} of {wagtail_repo}, site/\n")
    assert "settings         wsite.settings.production" in out and "wsite.wsgi:application" in out
    assert "release_command  -" in out          # the uncommitted Procfile is not what a deploy takes


def test_inspect_push_error_is_an_exit_naming_what_to_set(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    (repo / "README").write_text("no project\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "x")
    with pytest.raises(Exit, match="no manage.py in the commit"):
        tasks.inspect(Context(), config=roles(tmp_path, repo))


class MirrorConn:
    """The anchor's connection: runs each command's script here, the mirror path pointing at a local bare
    repository (fetch answers the branch's sha, as commands.fetch prints it)."""

    def __init__(self, layout: Layout, mirror, sha: str):
        self.layout, self.mirror, self.sha, self.commands = layout, str(mirror), sha, []
        self.host = "10.0.0.10"

    def run(self, command, **kw):
        self.commands.append(command)
        argv = shlex.split(command)
        assert argv[:6] == ["sudo", "-n", "-u", self.layout.user, "--", "sh"]
        if "fetch" in argv[-1]:
            return SimpleNamespace(exited=0, stdout=f"{self.sha}\n", stderr="")
        script = argv[-1].replace(self.layout.mirror, self.mirror)
        p = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
        return SimpleNamespace(exited=p.returncode, stdout=p.stdout, stderr=p.stderr)

    def close(self):
        pass


def test_inspect_git_lists_and_reads_the_commit_in_the_anchors_mirror(wagtail_repo, tmp_path, monkeypatch, capsys):
    standalone = tmp_path / "standalone"
    shutil.copytree(wagtail_repo / "site", standalone)
    git(standalone, "init", "-q", "-b", "main")
    git(standalone, "add", ".")
    git(standalone, "commit", "-q", "-m", "one")
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(standalone), str(mirror)], check=True)
    sha = git(standalone, "rev-parse", "HEAD")
    config = roles(tmp_path, "https://git.example.org/wsite.git", strategy="git")
    layout = Layout.of(load_config(config))
    conn = MirrorConn(layout, mirror, sha)
    anchor = SimpleNamespace(name="t-app-0", conn=conn)
    cluster = SimpleNamespace(anchor=anchor, layout=layout, cfg=load_config(config), close=lambda: None)
    monkeypatch.setattr(tasks, "open_cloud", lambda *a: SimpleNamespace(client=lambda name: None))
    monkeypatch.setattr(tasks, "open_cluster", lambda cfg, ec2, roles: cluster)
    tasks.inspect(Context(), config=config)
    out = capsys.readouterr().out
    assert out.startswith(f"wsite: https://git.example.org/wsite.git main {sha[:12]} (fetched on t-app-0)\n")
    rows = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()[3:] if line.strip()}
    assert rows["settings"].startswith("wsite.settings.production ")
    # this commit has the Procfile (committed in the standalone copy): its release: is the release command
    assert rows["release_command"].split() == ["python", "manage.py", "migrate", "Procfile", "release:"]
    assert any("ls-tree -r -z --name-only" in c for c in conn.commands)
    assert any(f"show {sha}:wsite/settings/base.py" in c for c in conn.commands)
