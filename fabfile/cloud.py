"""One boto3 session per task run, for either target.

`sandbox` talks to the local cloud (moto's server on loopback) with dummy
credentials; `aws` uses boto3's normal credential chain.  Neither boto3 nor a
client is loaded at import time: tasks call `open_cloud` once and pass the result down.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import TARGETS

if TYPE_CHECKING:
    import boto3


class CloudError(Exception):
    """A cloud could not be reached or used; the message says what to do."""


@dataclass(frozen=True)
class Cloud:
    target: str
    region: str
    session: boto3.Session
    endpoint_url: str | None

    def client(self, service: str):
        from botocore.config import Config as BotoConfig

        return self.session.client(
            service,
            endpoint_url=self.endpoint_url,
            config=BotoConfig(retries={"mode": "standard", "max_attempts": 5}),
        )


def open_cloud(target: str, region: str, *, endpoint_url: str | None = None) -> Cloud:
    """Make the session for `target`; for aws, fail early when no credentials exist."""
    if target not in TARGETS:
        raise CloudError(f"--target: unknown target {target!r} (expected one of: {', '.join(TARGETS)})")
    import boto3     # here, not at import: boto3 costs ~0.1 s, and tasks that never reach a cloud skip it

    if target == "sandbox":
        if endpoint_url is None:
            from .sandbox.settings import load_settings

            endpoint_url = load_settings().endpoint
        session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=region,
        )
        return Cloud(target, region, session, endpoint_url)
    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise CloudError(
            "target aws: no AWS credentials found (boto3 credential chain: AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials, instance role); "
            "configure one, or use --target sandbox"
        )
    return Cloud(target, region, session, endpoint_url)
