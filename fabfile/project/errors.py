"""Inspection's error: a DeployError, so every task boundary that handles those handles it."""
from __future__ import annotations

from ..deploy.errors import DeployError


class InspectError(DeployError):
    """Something a deploy needs is not in the project; the message names the file and the roles.yaml key."""
