"""pytest-xdist: end-to-end modules are scheduled by the sandbox they run on (tests/sandbox_scope.py)."""
from __future__ import annotations


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    from tests.sandbox_scope import scope

    class SandboxScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope(nodeid, config.rootpath)

    return SandboxScheduling(config, log)
