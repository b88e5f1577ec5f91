"""Count the mutating API calls a client makes (a botocore `before-call` hook).

A re-run on a complete cluster must make none; tasks print the count.
"""
from __future__ import annotations

import threading
from collections import Counter

READ_PREFIXES = ("Describe", "List", "Get", "Head")   # Head: S3's HeadBucket / HeadObject


def is_mutating(operation_name: str) -> bool:
    return not operation_name.startswith(READ_PREFIXES)


class MutationCounter:
    """Attach to one or more clients; `.total` and `.operations` tell what changed."""

    def __init__(self) -> None:
        self.operations: Counter[str] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, client) -> "MutationCounter":
        """A new counter attached to `client`."""
        counter = cls()
        counter.attach(client)
        return counter

    def attach(self, client):
        client.meta.events.register("before-call", self._before_call)
        return client

    def _before_call(self, model, **_kwargs) -> None:
        if is_mutating(model.name):
            with self._lock:
                self.operations[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.operations.values())

    def summary(self) -> str:
        detail = ", ".join(f"{name} {n}" for name, n in sorted(self.operations.items()))
        return f"{self.total} mutating API call{'s' if self.total != 1 else ''}" + (f" ({detail})" if detail else "")
