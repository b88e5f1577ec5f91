"""Requirements split across files (`-r`, `-c`): what is read, hashed, marked, and where Django's line is."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from fabfile.config import load_config
from fabfile.deploy import commands as c
from fabfile.deploy.errors import DeployError, SourceError
from fabfile.deploy.planning import dependencies_change
from fabfile.deploy.releases import ReleaseInfo, NodeState, requirements_hash
from fabfile.deploy.requirements import Requirements, includes, read_requirements
from fabfile.deploy.source import local_source
from fabfile.layout import Layout

SHIPPED = Path(__file__).resolve().parents[2] / "roles.yaml"
L = Layout("demo", "demo.settings", "requirements/production.txt")
R = "20240131120000-1a2b3c4"

SPLIT = {
    "requirements/production.txt": "-r base.txt  # shared\ngunicorn>=21\n--constraint=constraints.txt\n",
    "requirements/base.txt": "--requirement ./common.txt\nwagtail>=6\n",
    "requirements/common.txt": "Django>=5.2,<6  # LTS\n-r base.txt\n",          # a cycle: read once
    "requirements/constraints.txt": "psycopg==3.2.3\n",
}


def reader(files: dict[str, str]):
    return lambda path: files.get(path)


def test_includes_are_followed_in_pips_order_each_file_once():
    reqs = read_requirements("requirements/production.txt", reader(SPLIT))
    assert [p for p, _ in reqs.files] == ["requirements/production.txt", "requirements/base.txt",
                                          "requirements/common.txt", "requirements/constraints.txt"]
    assert reqs.name == ("requirements/production.txt (with requirements/base.txt, requirements/common.txt, "
                         "requirements/constraints.txt)")
    assert reqs.django() == ("requirements/common.txt", "Django>=5.2,<6")
    assert reqs.upgrade_spec() == "Django>=5.2,<6"
    assert includes("-r a.txt\n# -r commented.txt\n-e .\n-c=b.txt\nx -r not-an-include.txt\n") == [
        (1, "-r", "a.txt"), (4, "-c", "b.txt")]


def test_every_file_counts_in_the_hash_and_a_single_file_hashes_as_before():
    reqs = read_requirements("requirements/production.txt", reader(SPLIT))
    changed = read_requirements("requirements/production.txt",
                                reader({**SPLIT, "requirements/base.txt": SPLIT["requirements/base.txt"] + "x\n"}))
    assert reqs.hash != changed.hash
    assert changed.changed_since("\n".join(reqs.files_mark()) + "\n") == ["requirements/base.txt"]
    assert reqs.changed_since("\n".join(reqs.files_mark())) == []
    single = read_requirements("requirements.txt", reader({"requirements.txt": "Django>=4.2,<5.1\n"}))
    assert single.hash == requirements_hash("Django>=4.2,<5.1\n")   # venvs built before includes stay "unchanged"


def test_an_include_that_is_missing_or_outside_the_app_is_named():
    with pytest.raises(DeployError, match=r"^requirements/production.txt, line 1: -r base.txt: "
                                          r"requirements/base.txt is not in the commit$"):
        read_requirements("requirements/production.txt", reader({"requirements/production.txt": "-r base.txt\n"}))
    with pytest.raises(DeployError, match="line 1: -r ../../etc/passwd: outside the app's directory"):
        read_requirements("requirements/x.txt", reader({"requirements/x.txt": "-r ../../etc/passwd\n"}))
    with pytest.raises(DeployError, match="^app.requirements: nope.txt is not in the commit$"):
        read_requirements("nope.txt", reader({}))
    url = read_requirements("r.txt", reader({"r.txt": "-r https://example.org/base.txt\nDjango\n"}))
    assert [p for p, _ in url.files] == ["r.txt"]                  # pip fetches it: not read here


def test_no_django_anywhere_names_every_file_looked_in():
    reqs = Requirements((("a.txt", "-r b.txt\n"), ("b.txt", "gunicorn\n")))
    with pytest.raises(DeployError, match="^a.txt and b.txt has no Django requirement"):
        reqs.upgrade_spec()


def test_push_reads_the_includes_at_head(tmp_path):
    repo = tmp_path / "app"
    project = {"manage.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "site1.settings")\n',
               "site1/settings.py": "X = 1\n", "site1/wsgi.py": "application = None\n"}
    for path, text in {**SPLIT, **project}.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], cwd=repo, check=True)
    data = yaml.safe_load(SHIPPED.read_text())
    data["app"].update(repo=str(repo), requirements="requirements/production.txt")
    data["cluster"]["state_dir"] = str(tmp_path / "state")
    (tmp_path / "roles.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "roles.yaml")
    src = local_source(cfg)
    files = src.requirement_files.files     # the project's, then the cluster's extras
    assert files[:-1] == read_requirements("requirements/production.txt", reader(SPLIT)).files
    assert files[-1][0] == ".whipup/extras.txt"
    assert src.requirements_hash == src.requirement_files.hash
    (repo / "requirements" / "base.txt").write_text("wagtail>=6\n-r missing.txt\n")
    subprocess.run([*git, "commit", "-q", "-am", "two"], cwd=repo, check=True)
    with pytest.raises(SourceError, match=r"requirements/base.txt, line 2: -r missing.txt: requirements/missing.txt "
                                          r"is not in the commit \(HEAD \w{7} of "):
        local_source(cfg)


def test_the_venv_keeps_what_it_was_built_from_and_a_reused_one_carries_it():
    reqs = read_requirements("requirements/production.txt", reader(SPLIT))
    script = c.venv_install_script(L, R, reqs.hash, R, reqs.files_mark())
    line = next(x for x in script.splitlines() if ".whipup-requirements-files" in x)
    assert line == ("printf '%s\\n' " + " ".join(f"'{m}'" for m in reqs.files_mark())
                    + f" > /srv/demo/releases/{R}/.venv/.whipup-requirements-files")
    assert ".whipup-requirements-files" not in c.venv_install_script(L, R, reqs.hash, R)      # nothing to keep
    assert "if [ -f /srv/demo/releases/20240101000000-1111111/.venv/.whipup-requirements-files ]" in \
        c.venv_reuse_script(L, R, "20240101000000-1111111")


class _Conn:
    def __init__(self, mark: str):
        self.host, self.mark, self.commands = "10.0.0.10", mark, []

    def run(self, command, **kw):
        self.commands.append(command)
        return type("R", (), {"exited": 0, "stdout": self.mark, "stderr": ""})()


class _Anchor:
    def __init__(self, conn):
        self.conn = conn


class _Cl:
    def __init__(self, conn):
        self.anchor, self.layout = _Anchor(conn), L


def test_quick_updates_default_names_the_nested_file_that_changed():
    from fabfile.deploy.source import Source
    old = read_requirements("requirements/production.txt", reader(SPLIT))
    new_files = {**SPLIT, "requirements/base.txt": "--requirement ./common.txt\nwagtail>=7\n"}
    new = read_requirements("requirements/production.txt", reader(new_files))
    src = Source("push", "a" * 40, "", new.text, None, "main", includes=new.files[1:], requirements_path=new.top)
    state = NodeState(True, R, {R: ReleaseInfo(R, "b" * 40, old.hash, R)})
    conn = _Conn("\n".join(old.files_mark()) + "\n")
    assert dependencies_change(_Cl(conn), state, src) == (True, f"requirements/base.txt changed since release {R}")
    assert conn.commands == [c.requirements_files_mark(L, R)]
    same = Source("push", "a" * 40, "", old.text, None, "main", includes=old.files[1:], requirements_path=old.top)
    unchanged = _Conn("")
    assert dependencies_change(_Cl(unchanged), state, same) == (
        False, f"{old.name} unchanged since release {R}")
    assert unchanged.commands == []                                  # unchanged: nothing more to ask
