import sys
from pathlib import Path

FABFILE = Path(__file__).resolve().parents[2] / "fabfile"


def test_no_module_in_fabfile_shadows_the_standard_library():
    # invoke puts fabfile/ itself on sys.path: a fabfile/secrets.py would be `import secrets` everywhere
    names = {p.stem for p in FABFILE.glob("*.py")} | {p.name for p in FABFILE.iterdir() if p.is_dir()}
    assert not names & set(sys.stdlib_module_names)
