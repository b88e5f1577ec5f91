"""The cluster's media bucket (app.media: s3): checked, created and tagged by provision; emptied and removed
by destroy. The same calls on both targets (moto answers them on the sandbox).

`MediaBucket.open` finds the account (STS GetCallerIdentity) and the name (fabfile/media.py: bucket_name);
`check` only reads, and runs before provision's first change: a name another account (or an untagged bucket
of this one) holds stops the run with nothing created. `ensure` then creates what is missing and leaves a
record in the state dir (templates are rendered from it, with no API call); a re-run says "already ok" and
changes nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from botocore.exceptions import ClientError

from ..config import Config
from ..errors import ProvisionError
from ..media import MediaSite, record_path, record_text, site
from ..naming import TAG_CLUSTER, cluster_tags, tags
from ..state import ensure_cluster_dir, write_public

Log = Callable[[str], None]
BATCH = 1000         # DeleteObjects' limit per call


def account_id(sts) -> str:
    return sts.get_caller_identity()["Account"]


def create_bucket_params(bucket: str, region: str) -> dict:
    """CreateBucket's parameters: outside us-east-1 the region is named as the LocationConstraint."""
    params: dict = {"Bucket": bucket}
    if region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return params


def bucket_tagging(cluster: str, bucket: str) -> dict:
    return {"TagSet": tags(cluster_tags(cluster, Name=bucket))}


def read_policy(bucket: str, vpc_id: str) -> dict:
    """Unsigned GETs of objects from inside the cluster's VPC (the proxy's `location /media/`): on AWS the
    request must come through a VPC endpoint of that VPC (aws:SourceVpc is set only there), a condition
    that keeps the policy non-public, so Block Public Access stays on. moto does not evaluate conditions:
    on the sandbox, whoever reaches the S3 gate (the hosts, only) may read."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "WhipupProxyReadsMedia", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": {"StringEquals": {"aws:SourceVpc": vpc_id}},
    }]}


PRIVATE = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class MediaPlan:
    bucket: str
    objects: int


@dataclass(frozen=True)
class MediaBucket:
    s3: object
    site: MediaSite
    account: str
    cluster: str

    @classmethod
    def open(cls, cfg: Config, s3, sts, sandbox_endpoint: str | None) -> "MediaBucket | None":
        """The cluster's bucket (None with app.media local: there is none)."""
        if cfg.app.media != "s3":
            return None
        account = account_id(sts)
        return cls(s3, site(cfg, account, sandbox_endpoint), account, cfg.cluster.name)

    @property
    def name(self) -> str:
        return self.site.bucket or ""

    def state(self) -> str:
        """'ours' (tagged with this cluster), 'missing', or a ProvisionError saying whose it is."""
        try:
            self.s3.head_bucket(Bucket=self.name)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return "missing"
            if _code(exc) in ("403", "AccessDenied", "Forbidden"):
                raise ProvisionError(f"media bucket {self.name}: the name is taken by another account (403); "
                                     f"rename the cluster") from None
            raise
        try:
            found = {t["Key"]: t["Value"] for t in self.s3.get_bucket_tagging(Bucket=self.name)["TagSet"]}
        except ClientError as exc:
            if _code(exc) != "NoSuchTagSet":
                raise
            found = {}
        if found.get(TAG_CLUSTER) != self.cluster:
            raise ProvisionError(f"media bucket {self.name} exists but is not tagged {TAG_CLUSTER}={self.cluster}: "
                                 f"rename the cluster or remove that bucket")
        return "ours"

    def check(self) -> None:
        """Read-only: raises if the bucket's name is someone else's."""
        self.state()

    def policy(self) -> dict | None:
        try:
            return json.loads(self.s3.get_bucket_policy(Bucket=self.name)["Policy"])
        except ClientError as exc:
            if _code(exc) != "NoSuchBucketPolicy":
                raise
            return None

    def ensure(self, cfg: Config, vpc_id: str, log: Log = print) -> bool:
        """Create (private, tagged) unless it is there; make its policy let the cluster's VPC (`vpc_id`, where
        the proxy reads from) read objects; record it in the state dir. True if created."""
        created = self.state() == "missing"
        if created:
            self.s3.create_bucket(**create_bucket_params(self.name, self.site.region))
            self.s3.put_bucket_tagging(Bucket=self.name, Tagging=bucket_tagging(self.cluster, self.name))
            self.s3.put_public_access_block(Bucket=self.name, PublicAccessBlockConfiguration=PRIVATE)
        wanted = read_policy(self.name, vpc_id)
        policy_set = self.policy() != wanted
        if policy_set:
            self.s3.put_bucket_policy(Bucket=self.name, Policy=json.dumps(wanted))
        if created:
            log(f"media: bucket {self.name} created ({self.site.region}), readable from {vpc_id}")
        elif policy_set:
            log(f"media: bucket {self.name}: read policy set (from {vpc_id})")
        else:
            log(f"media: bucket {self.name} already ok")
        path, text = record_path(cfg), record_text(self.site, self.account)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            ensure_cluster_dir(cfg)
            write_public(path, text)
        return created

    def plan(self) -> MediaPlan | None:
        """What destroy would remove (read-only): the bucket and its object count; None if there is none of
        ours (a bucket of that name not tagged with the cluster is never touched)."""
        try:
            if self.state() != "ours":
                return None
        except ProvisionError:
            return None
        pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.name)
        count = sum(len(p.get("Versions", [])) + len(p.get("DeleteMarkers", [])) for p in pages)
        return MediaPlan(self.name, count)

    def destroy(self, cfg: Config, plan: MediaPlan, log: Log = print) -> int:
        """Delete every object (every version) and the bucket; the number of objects deleted."""
        deleted = 0
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=plan.bucket):
            keys = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(keys), BATCH):
                self.s3.delete_objects(Bucket=plan.bucket, Delete={"Objects": keys[i:i + BATCH], "Quiet": True})
                deleted += len(keys[i:i + BATCH])
        self.s3.delete_bucket(Bucket=plan.bucket)
        record_path(cfg).unlink(missing_ok=True)
        log(f"deleted media bucket {plan.bucket} and its {deleted} object(s): the cluster's uploads are gone")
        return deleted


def describe(plan: MediaPlan | None) -> list[str]:
    """destroy's plan line for the bucket."""
    if plan is None:
        return []
    return [f"  media bucket  {plan.bucket}  ({plan.objects} object(s), uploaded media: deleted with it)"]
