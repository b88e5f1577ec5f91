"""The cluster's backups bucket: made on first use (tagged, private), listed, tagged; presigned URLs for the
db node (it reaches S3 as through a VPC endpoint: on the local cloud the S3 gate on the bridge address).

The bucket is `<cluster>-backups-<account>-<region>`, not the media one (which the proxy serves): dumps are
never reachable from the site. `fab destroy` leaves it: backups outlive the cluster.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from ..cloud import open_cloud
from ..config import Config
from ..media import bucket_name
from ..naming import TAG_CLUSTER, cluster_tags, tags
from ..provision.media import PRIVATE, create_bucket_params
from ..sandbox.settings import ACCOUNT_ID as SANDBOX_ACCOUNT
from .names import PURPOSE, Backup, backups_from, hosts_endpoint, tag_set  # noqa: F401  (hosts_endpoint: re-exported)

URL_SECONDS = 3600


def backups_bucket(cfg: Config, cloud) -> str:
    """`<cluster>-backups-<account>-<region>` (the account asked of STS on AWS)."""
    account = SANDBOX_ACCOUNT if cfg.cluster.target == "sandbox" else \
        cloud.client("sts").get_caller_identity()["Account"]
    return bucket_name(cfg.cluster.name, account, cfg.cluster.region, PURPOSE)


def exists(s3, bucket: str) -> bool:
    """The bucket is there (a head request; changes nothing)."""
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    return False


@dataclass(frozen=True)
class BackupStore:
    s3: object          # API calls from this machine
    signer: object      # presigns the URLs the nodes use (their endpoint)
    bucket: str
    app: str
    cluster: str
    endpoint: str | None

    @classmethod
    def open(cls, cfg: Config) -> "BackupStore":
        cloud = open_cloud(cfg.cluster.target, cfg.cluster.region)
        endpoint = hosts_endpoint(cfg)
        signer = cloud.session.client("s3", region_name=cfg.cluster.region, endpoint_url=endpoint,
                                      config=BotoConfig(signature_version="s3v4",
                                                        s3={"addressing_style": "path" if endpoint else "virtual"}))
        return cls(cloud.client("s3"), signer, backups_bucket(cfg, cloud), cfg.app.name, cfg.cluster.name, endpoint)

    @classmethod
    def existing(cls, cfg: Config) -> str | None:
        """The bucket's name when it exists already (a head request, changes nothing), else None; no signer
        made (configure's forked cloud lookup asks this)."""
        cloud = open_cloud(cfg.cluster.target, cfg.cluster.region)
        bucket = backups_bucket(cfg, cloud)
        return bucket if exists(cloud.client("s3"), bucket) else None

    def ensure(self) -> str:
        """The bucket exists, tagged with the cluster, public access blocked; what was done."""
        if exists(self.s3, self.bucket):
            return "already ok"
        region = self.s3.meta.region_name
        self.s3.create_bucket(**create_bucket_params(self.bucket, region))
        self.s3.put_bucket_tagging(Bucket=self.bucket, Tagging={"TagSet": tags(cluster_tags(self.cluster,
                                                                                            Name=self.bucket))})
        self.s3.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration=PRIVATE)
        return "created"

    def put_url(self, key: str) -> str:
        return self.signer.generate_presigned_url("put_object", Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=URL_SECONDS)

    def get_url(self, key: str) -> str:
        return self.signer.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=URL_SECONDS)

    def tag(self, key: str, kind: str, when: datetime, release: str | None, sha: str | None) -> None:
        self.s3.put_object_tagging(Bucket=self.bucket, Key=key,
                                   Tagging={"TagSet": tag_set(kind, when, release, sha)})

    def list(self) -> list[Backup]:
        """The app's backups, oldest first (none when the bucket does not exist yet)."""
        objects = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.app}/"):
                objects.extend(page.get("Contents", []))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
                return []
            raise
        found = {}
        for obj in objects:
            ts = self.s3.get_object_tagging(Bucket=self.bucket, Key=obj["Key"])["TagSet"]
            found[obj["Key"]] = {t["Key"]: t["Value"] for t in ts}
        return backups_from(self.app, objects, found)

    def is_ours(self) -> bool:
        try:
            ts = self.s3.get_bucket_tagging(Bucket=self.bucket)["TagSet"]
        except ClientError:
            return False
        return {t["Key"]: t["Value"] for t in ts}.get(TAG_CLUSTER) == self.cluster
