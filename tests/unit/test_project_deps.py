"""Dependencies: requirements files (with includes), uv.lock, poetry.lock and pyproject.toml, the text pip
installs and a hash that follows the source files."""
from __future__ import annotations

import pytest

from fabfile.deploy.releases import requirements_hash
from fabfile.project.deps import GENERATED, find_dependencies
from fabfile.project.detect import inspect_tree
from fabfile.project.errors import InspectError
from project_trees import app, hand, minimal

PYPROJECT = '''[project]
name = "shop"
version = "0.1.0"
requires-python = ">=3.12"
dependencies = ["django>=5.2", "celery[redis]>=5.4"]

[dependency-groups]
dev = ["pytest>=8"]
'''

UV_LOCK = '''version = 1
revision = 2
requires-python = ">=3.12"

[[package]]
name = "amqp"
version = "5.3.1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "vine" }]

[[package]]
name = "asgiref"
version = "3.8.1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "celery"
version = "5.5.2"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "kombu" }, { name = "vine" }]

[package.optional-dependencies]
redis = [{ name = "kombu", extra = ["redis"] }]

[[package]]
name = "django"
version = "5.2.1"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "asgiref" },
    { name = "sqlparse" },
    { name = "tzdata", marker = "sys_platform == 'win32'" },
]

[[package]]
name = "kombu"
version = "5.5.3"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "amqp" }, { name = "vine" }]

[package.optional-dependencies]
redis = [{ name = "redis" }]

[[package]]
name = "pytest"
version = "8.3.5"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "redis"
version = "5.2.1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "shop"
version = "0.1.0"
source = { virtual = "." }
dependencies = [
    { name = "celery", extra = ["redis"] },
    { name = "django" },
]

[package.dev-dependencies]
dev = [{ name = "pytest" }]

[[package]]
name = "sqlparse"
version = "0.5.3"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "tzdata"
version = "2025.2"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "vine"
version = "5.1.0"
source = { registry = "https://pypi.org/simple" }
'''

POETRY_PYPROJECT = '''[tool.poetry]
name = "shop"
version = "0.1.0"

[tool.poetry.dependencies]
python = "^3.12"
Django = "^5.2"
mylib = {git = "https://example.org/mylib.git"}

[tool.poetry.group.dev.dependencies]
pytest = "^8"
'''

POETRY_LOCK = '''[[package]]
name = "asgiref"
version = "3.8.1"
optional = false
python-versions = ">=3.8"

[[package]]
name = "django"
version = "5.2.1"
optional = false
python-versions = ">=3.10"

[package.dependencies]
asgiref = ">=3.8.1"
sqlparse = ">=0.3.1"
tzdata = {version = "*", markers = "sys_platform == \\"win32\\""}

[[package]]
name = "mylib"
version = "1.0"
optional = false
python-versions = "*"

[package.source]
type = "git"
url = "https://example.org/mylib.git"
reference = "HEAD"
resolved_reference = "0123456789abcdef0123456789abcdef01234567"

[[package]]
name = "pytest"
version = "8.3.5"
optional = false
python-versions = ">=3.8"

[[package]]
name = "sqlparse"
version = "0.5.3"
optional = false
python-versions = ">=3.8"

[[package]]
name = "tzdata"
version = "2025.2"
optional = false
python-versions = ">=2"

[metadata]
lock-version = "2.0"
python-versions = "^3.12"
content-hash = "abc"
'''


def pyproject_only(**more) -> dict[str, str]:
    tree = minimal(**{"pyproject.toml": PYPROJECT}, **more)
    del tree["requirements.txt"]
    return tree


def body(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_the_first_requirements_file_found_wins_with_its_includes():
    tree = minimal(**{"requirements/base.txt": "Django>=5.2,<6\n", "requirements/production.txt":
                      "-r base.txt\ngunicorn\n", "pyproject.toml": PYPROJECT, "uv.lock": UV_LOCK})
    deps, where = find_dependencies(set(tree), tree.get, None)
    assert where == "requirements/production.txt" and deps.kind == "requirements"
    assert deps.install == "requirements/production.txt" and deps.generated is None
    assert deps.name == "requirements/production.txt (with requirements/base.txt)"
    assert deps.requirements.django() == ("requirements/base.txt", "Django>=5.2,<6")
    del tree["requirements/production.txt"]
    deps, where = find_dependencies(set(tree), tree.get, None)
    assert where == "requirements.txt" and deps.hash == requirements_hash("Django>=5.2,<6\n")   # as before


def test_requirements_in_the_django_root_are_found_after_the_top():
    tree = minimal(prefix="src")
    tree["src/requirements.txt"] = tree.pop("requirements.txt")
    p = inspect_tree(*hand(tree), app())
    assert p.requirements.install == "src/requirements.txt"


def test_uv_lock_pins_what_the_project_needs_transitively_not_dev_not_itself():
    tree = pyproject_only(**{"uv.lock": UV_LOCK})
    deps, where = find_dependencies(set(tree), tree.get, None)
    assert where == "uv.lock" and deps.kind == "uv.lock" and deps.install == GENERATED
    assert body(deps.generated) == ["amqp==5.3.1", "asgiref==3.8.1", "celery==5.5.2", "django==5.2.1",
                                    "kombu==5.5.3", "redis==5.2.1", "sqlparse==0.5.3",
                                    "tzdata==2025.2 ; sys_platform == 'win32'", "vine==5.1.0"]
    assert deps.generated.startswith("# written by whipup from uv.lock")
    assert [p for p, _ in deps.files] == ["uv.lock", "pyproject.toml"]
    assert deps.requirements.django() == (GENERATED, "django==5.2.1")
    p = inspect_tree(*hand(tree), app())
    assert p.python == ">=3.12"
    assert {f.what: f.value for f in p.findings}["requirements"] == \
        f"uv.lock: 9 requirements -> {GENERATED} in the release"


def test_a_marker_on_the_way_carries_to_what_lies_behind_it():
    lock = UV_LOCK.replace('{ name = "celery", extra = ["redis"] }',
                           '{ name = "celery", extra = ["redis"], marker = "python_version < \'3.14\'" }')
    tree = pyproject_only(**{"uv.lock": lock})
    lines = body(find_dependencies(set(tree), tree.get, None)[0].generated)
    assert "redis==5.2.1 ; python_version < '3.14'" in lines
    assert "vine==5.1.0 ; python_version < '3.14'" in lines and "asgiref==3.8.1" in lines


def test_the_hash_changes_with_the_lock_and_with_pyproject():
    tree = pyproject_only(**{"uv.lock": UV_LOCK})
    first = find_dependencies(set(tree), tree.get, None)[0]
    tree["uv.lock"] = UV_LOCK.replace('version = "5.2.1"\nsource', 'version = "5.2.2"\nsource', 1)
    second = find_dependencies(set(tree), tree.get, None)[0]
    tree["pyproject.toml"] = PYPROJECT.replace('version = "0.1.0"', 'version = "0.2.0"')
    third = find_dependencies(set(tree), tree.get, None)[0]
    assert len({first.hash, second.hash, third.hash}) == 3
    assert "django==5.2.2" in second.generated
    assert second.requirements.changed_since("\n".join(first.requirements.files_mark())) == [GENERATED, "uv.lock"]


def test_poetry_lock_pins_the_main_dependencies_and_git_ones_at_their_commit():
    tree = minimal(**{"pyproject.toml": POETRY_PYPROJECT, "poetry.lock": POETRY_LOCK})
    del tree["requirements.txt"]
    deps, where = find_dependencies(set(tree), tree.get, None)
    assert where == "poetry.lock" and deps.kind == "poetry.lock"
    assert body(deps.generated) == [
        "asgiref==3.8.1", "django==5.2.1",
        "mylib @ git+https://example.org/mylib.git@0123456789abcdef0123456789abcdef01234567",
        "sqlparse==0.5.3", 'tzdata==2025.2 ; sys_platform == "win32"']


def test_pyproject_dependencies_as_they_are_when_there_is_no_lock():
    tree = pyproject_only()
    deps, where = find_dependencies(set(tree), tree.get, None)
    assert where == "pyproject.toml [project].dependencies" and deps.kind == "pyproject.toml"
    assert body(deps.generated) == ["django>=5.2", "celery[redis]>=5.4"] and deps.install == GENERATED


def test_app_requirements_wins_and_may_name_a_lock_or_pyproject():
    tree = minimal(**{"deps/live.txt": "Django\n", "pyproject.toml": PYPROJECT, "uv.lock": UV_LOCK})
    assert find_dependencies(set(tree), tree.get, "deps/live.txt")[0].install == "deps/live.txt"
    assert find_dependencies(set(tree), tree.get, "pyproject.toml")[0].kind == "pyproject.toml"
    deps, where = find_dependencies(set(tree), tree.get, "uv.lock")
    assert deps.kind == "uv.lock" and where == "roles.yaml app.requirements"
    with pytest.raises(InspectError, match="roles.yaml app.requirements: deps/prod.txt is not in the commit"):
        find_dependencies(set(tree), tree.get, "deps/prod.txt")


def test_no_source_at_all_or_a_broken_one_is_named():
    tree = minimal()
    del tree["requirements.txt"]
    with pytest.raises(InspectError, match=r"no dependency source in the commit: looked for requirements/production"
                                           r".*uv.lock, poetry.lock, pyproject.toml \[project\].dependencies.*"
                                           r"app.requirements"):
        inspect_tree(*hand(tree), app())
    bad = {**tree, "requirements.txt": "-r missing.txt\n"}
    with pytest.raises(InspectError, match="requirements.txt, line 1: -r missing.txt: missing.txt is not in"):
        find_dependencies(set(bad), bad.get, None)
    broken = {**tree, "pyproject.toml": "[project\n"}
    with pytest.raises(InspectError, match="pyproject.toml: not valid TOML"):
        find_dependencies(set(broken), broken.get, None)
    poetry = {**tree, "pyproject.toml": POETRY_PYPROJECT}
    with pytest.raises(InspectError, match="no poetry.lock beside it: commit poetry.lock"):
        find_dependencies(set(poetry), poetry.get, None)
    stale = {**tree, "pyproject.toml": PYPROJECT, "uv.lock": UV_LOCK.replace('{ name = "django" },\n]', '{ name = "django" },\n    { name = "pillow" },\n]')}
    with pytest.raises(InspectError, match="uv.lock: pillow is a dependency but not a locked package: lock again"):
        find_dependencies(set(stale), stale.get, None)
    local = {**tree, "pyproject.toml": PYPROJECT,
             "uv.lock": UV_LOCK.replace('name = "vine"\nversion = "5.1.0"\nsource = { registry = "https://pypi.org/simple" }',
                                        'name = "vine"\nversion = "5.1.0"\nsource = { directory = "../vine" }')}
    with pytest.raises(InspectError, match=r"uv.lock: vine comes from a local directory \(../vine\)"):
        find_dependencies(set(local), local.get, None)
