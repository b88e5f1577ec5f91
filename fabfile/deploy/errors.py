"""Deploy errors: each message says what failed, where, and what to do."""
from __future__ import annotations


class DeployError(Exception):
    """A deploy, rollback or listing could not be done; the message names the node and step."""


class LockHeld(DeployError):
    """Another deploy holds the cluster's lock; the message names who, since when, for which release;
    `holder` is its record (a deploy.lock.LockInfo), for a caller that waits for it (configure --wait)."""

    def __init__(self, message: str, holder=None):
        super().__init__(message)
        self.holder = holder


class SourceError(DeployError):
    """The code to deploy cannot be resolved (not a git repo, nothing committed, ...)."""


class AnswerMissing(DeployError):
    """quick-update needs an answer that no flag gave and no terminal can ask for."""


class NodesChanged(DeployError):
    """The nodes a task started from (the inventory) are not the ones the cloud lists now."""


class PreviousServes(DeployError):
    """A step before the switch failed, and its message already says the previous release keeps serving."""


class Unhealthy(DeployError):
    """An app node did not answer /health with 200 from the expected release in time."""
