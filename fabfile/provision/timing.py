"""How long provisioning waits, in one value passed down (tests shrink it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    poll_seconds: float = 5.0     # boto3 waiter delay between describes
    max_polls: int = 120          # boto3 waiter attempts (10 minutes at 5 s)
    ssh_timeout: float = 300.0    # total wait for a node to answer SSH
    ssh_interval: float = 3.0     # pause between SSH attempts
    ssh_connect_timeout: float = 10.0

    def waiter_config(self) -> dict:
        return {"Delay": self.poll_seconds, "MaxAttempts": self.max_polls}


DEFAULT_TIMING = Timing()
