"""What follows `--` on the command line, for the tasks that take it (`fab manage -- check --deploy`).

Fabric reads `fab TASK -- WORDS` as "run WORDS on the hosts of -H" and stops when no host was given. This
executor (named by fabric.yaml's `tasks.executor_class`, the project configuration next to the fabfile)
hands the words to the one task given instead, when that task takes them (`takes_remainder`), and refuses
them for any other task. The words reach the task as `c.config.whipup.remainder`, quoting kept.
"""
from __future__ import annotations

import sys

from fabric import Executor as FabricExecutor
from invoke import Exit


def takes_remainder(task):
    """Mark a task as taking what follows `--` (read with `remainder(c)`)."""
    task.takes_remainder = True
    return task


def remainder(c) -> list[str]:
    """The words after `--` given to this task (none when there were none)."""
    return list(c.config.get("whipup", {}).get("remainder", []))


class Executor(FabricExecutor):
    def expand_calls(self, calls, apply_hosts=True):
        words = self.core.remainder if self.core is not None else ""
        if not words or not calls:
            return super().expand_calls(calls, apply_hosts)
        from .build import after_dashes

        takers = [c for c in calls if getattr(c.task, "takes_remainder", False)]
        if len(calls) != 1 or not takers:
            names = ", ".join(c.called_as or c.task.name for c in calls)
            raise Exit(f"fab {names}: takes no words after `--` (only fab manage and fab ssh do, one task at a "
                       f"time)", code=1)
        self.config.load_overrides({"whipup": {"remainder": after_dashes(sys.argv, words)}})
        self.core.remainder = ""
        try:
            return super().expand_calls(calls, apply_hosts)
        finally:
            self.core.remainder = words
