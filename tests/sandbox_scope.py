"""Which tests may run side by side under pytest-xdist.

Every end-to-end module runs on a numbered private local cloud (`SANDBOX = N`: its own API port, bridge
and addresses); modules sharing a number, and the modules sharing sandbox #2's session cluster
(`e2e_sandbox`/`e2e_cluster`), must never run at once, so they form one scope that one worker runs in
collection order. Any other test module is a scope of its own.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

_NUMBER = re.compile(r"^SANDBOX\s*=\s*(\d+)\s*$", re.M)
_SHARED = re.compile(r"\be2e_(?:sandbox|cluster)\b")
SHARED_SANDBOX = 2  # tests/e2e/conftest.py's e2e_sandbox


@lru_cache(maxsize=None)
def _module_scope(path: str, text: str) -> str:
    if "/e2e/" not in f"/{path}":
        return path
    if _SHARED.search(text):
        return f"sandbox-{SHARED_SANDBOX}"
    found = _NUMBER.search(text)
    return f"sandbox-{found.group(1)}" if found else path


def scope(nodeid: str, root: Path) -> str:
    """The scope of a test id such as `tests/e2e/test_media.py::test_x[p]`."""
    path = nodeid.split("::", 1)[0]
    try:
        text = (root / path).read_text()
    except OSError:
        text = ""
    return _module_scope(path, text)
