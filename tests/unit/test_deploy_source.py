"""Strategy push: the commit and tree to deploy, from a standalone repo or a repo's subdirectory."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from fabfile.config import load_config
from fabfile.deploy.errors import SourceError
from fabfile.deploy.source import git_ssh_command, local_source, push_argv, warnings
from fabfile.layout import Layout
from fabfile.nodes import Node

SHIPPED = Path(__file__).resolve().parents[2] / "roles.yaml"


def git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def app_tree(path: Path, reqs: str = "Django>=4.2,<5.1\n") -> None:
    (path / "demo").mkdir(parents=True)
    (path / "demo" / "settings.py").write_text("X = 1\n")
    (path / "demo" / "wsgi.py").write_text("application = None\n")
    (path / "manage.py").write_text('import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")\n')
    (path / "requirements.txt").write_text(reqs)


def roles_for(tmp_path: Path, repo: Path) -> Path:
    data = yaml.safe_load(SHIPPED.read_text())
    data["app"]["repo"] = str(repo)
    data["cluster"]["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_standalone_repository(tmp_path):
    repo = tmp_path / "app"
    app_tree(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    cfg = load_config(roles_for(tmp_path, repo))
    src = local_source(cfg)
    assert src.sha == git(repo, "rev-parse", "HEAD") and src.prefix == "" and src.toplevel == repo
    assert src.requirements == "Django>=4.2,<5.1\n"
    # the cluster's extras (gunicorn, a PostgreSQL driver, django-storages) are a file of their own
    assert [p for p, _ in src.requirement_files.files] == ["requirements.txt", ".whipup/extras.txt"]
    assert src.install == ("requirements.txt", ".whipup/extras.txt")
    assert src.runtime.project_settings == "demo.settings" and src.runtime.wsgi == "demo.wsgi:application"
    assert src.dirty == () and src.branch == "main" and warnings(cfg, src) == []


def test_subdirectory_of_a_work_tree_deploys_head_of_that_subtree(tmp_path):
    top = tmp_path / "tool"
    app_tree(top / "examples" / "demo")
    (top / "README.md").write_text("tool\n")
    git(top, "init", "-q", "-b", "main")
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "one")
    cfg = load_config(roles_for(tmp_path, top / "examples" / "demo"))
    src = local_source(cfg)
    assert src.prefix == "examples/demo" and src.toplevel == top and src.sha == git(top, "rev-parse", "HEAD")
    assert src.tree == git(top, "rev-parse", "HEAD:examples/demo")
    (top / "README.md").write_text("tool v2\n")
    git(top, "commit", "-q", "-am", "tool only")
    again = local_source(cfg)
    assert again.sha != src.sha and again.tree == src.tree     # the app did not change
    # uncommitted changes in the app are named, and not deployed; changes elsewhere in the tool don't count
    (top / "README.md").write_text("changed\n")
    (top / "examples" / "demo" / "requirements.txt").write_text("Django>=5\n")
    (top / "examples" / "demo" / "new.py").write_text("")
    src = local_source(cfg)
    assert sorted(src.dirty) == ["examples/demo/new.py", "examples/demo/requirements.txt"]
    assert src.requirements == "Django>=4.2,<5.1\n"          # HEAD's, not the working copy's
    (w,) = warnings(cfg, src)
    assert w.startswith(f"uncommitted changes in {top}/examples/demo are NOT deployed (deploying HEAD {src.short}):")
    assert "requirements.txt" in w and "new.py" in w


def test_errors_name_what_to_do(tmp_path):
    plain = tmp_path / "plain"
    app_tree(plain)
    with pytest.raises(SourceError, match="is not inside a git work tree"):
        local_source(load_config(roles_for(tmp_path, plain)))
    git(plain, "init", "-q", "-b", "main")
    with pytest.raises(SourceError, match="has no commit yet"):
        local_source(load_config(roles_for(tmp_path, plain)))
    (plain / "other.txt").write_text("x")
    git(plain, "add", "other.txt")
    git(plain, "commit", "-q", "-m", "x")
    with pytest.raises(SourceError, match="no manage.py in the commit .*is app.repo its directory"):
        local_source(load_config(roles_for(tmp_path, plain)))
    sub = plain / "later"
    app_tree(sub)
    with pytest.raises(SourceError, match=r"later is not in HEAD \(\w+\) of .*plain; commit it first"):
        local_source(load_config(roles_for(tmp_path, sub)))


def test_branch_mismatch_is_a_warning(tmp_path):
    repo = tmp_path / "app"
    app_tree(repo)
    git(repo, "init", "-q", "-b", "feature")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    cfg = load_config(roles_for(tmp_path, repo))
    src = local_source(cfg)
    assert warnings(cfg, src) == [
        f"HEAD is on branch feature, roles.yaml app.branch is main; deploying HEAD {src.short}"]


def test_push_goes_over_pinned_ssh_to_the_app_users_mirror(tmp_path):
    repo = tmp_path / "app"
    app_tree(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    cfg = load_config(roles_for(tmp_path, repo))
    src = local_source(cfg)
    argv = push_argv(cfg, Layout.of(cfg), "172.31.0.4", src)
    assert argv == ["git", "-C", str(repo), "push", "--quiet", "--force",
                    "--receive-pack=sudo -n -u demo -- git-receive-pack",
                    "ssh://admin@172.31.0.4/srv/demo/repo.git", f"{src.sha}:refs/heads/whipup-deploy"]
    ssh = shlex.split(git_ssh_command(cfg))
    state = tmp_path / "state" / "whipup-demo"
    assert ssh == ["ssh", "-F", "/dev/null", "-i", str(state / "id_ed25519"), "-o", "IdentitiesOnly=yes",
                   "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=yes",
                   "-o", f"UserKnownHostsFile={state / 'known_hosts'}", "-o", "GlobalKnownHostsFile=/dev/null",
                   "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]


def test_push_refuses_an_address_outside_the_sandbox(tmp_path, monkeypatch):
    from fabfile import ssh
    from fabfile.deploy import source

    repo = tmp_path / "app"
    app_tree(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    cfg = load_config(roles_for(tmp_path, repo))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or pytest.fail("ran git push"))

    def refuse(address):
        raise ssh.NotInSandbox(f"{address} is not routed to the local cloud's bridge")

    monkeypatch.setattr(ssh, "check_sandbox_route", refuse)
    node = Node("app", 0, "whipup-demo-app-0", "i-1", "running", "192.0.2.9", None, None)
    src = source.Source("push", "a" * 40, "", "", repo, "main")
    with pytest.raises(ssh.NotInSandbox):
        source.push(cfg, Layout.of(cfg), node, src)
    assert calls == []
