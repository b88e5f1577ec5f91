"""The xdist schedule: e2e modules that share a local cloud never run side by side."""
from pathlib import Path

from tests.sandbox_scope import scope

ROOT = Path(__file__).resolve().parents[2]
E2E = sorted(p for p in (ROOT / "tests" / "e2e").glob("test_*.py"))


def _scope(path: Path) -> str:
    return scope(f"{path.relative_to(ROOT)}::test_x[a::b]", ROOT)


def test_every_e2e_module_declares_the_sandbox_it_runs_on():
    """A module without `SANDBOX = N` (nor the shared cluster) could run beside one using its number."""
    assert E2E
    undeclared = [p.name for p in E2E if not _scope(p).startswith("sandbox-")]
    assert undeclared == []


def test_modules_sharing_a_cluster_or_a_number_share_a_scope():
    by = {p.name: _scope(p) for p in E2E}
    assert by["test_configure.py"] == by["test_deploy.py"] == "sandbox-2"
    assert by["test_commands.py"] == by["test_git_strategy.py"] == "sandbox-6"
    assert by["test_any_project.py"] == "sandbox-9" != by["test_zero_downtime.py"]


def test_unit_modules_are_scopes_of_their_own(tmp_path):
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_a.py").write_text("SANDBOX = 3\n")
    assert scope("tests/unit/test_a.py::test_x", tmp_path) == "tests/unit/test_a.py"
    assert scope("tests/unit/test_gone.py::test_x", tmp_path) == "tests/unit/test_gone.py"
