"""The nodes' S3 access on AWS (cluster.target: aws): an IAM role and instance profile per purpose and cluster,
attached at launch (RunInstances' IamInstanceProfile), or to a running node that lacks it:

- media   (app.media: s3): the app and worker nodes write the media bucket;
- backups (roles.db.backup.nightly set): the db nodes' nightly job writes, lists and prunes the app's nightly
          backups in the backups bucket (fab backup and the restore points use URLs presigned here instead).

Pure builders (names, trust and access policies) are tested by exact value; `AppProfile` is the thin runner:
`ensure` creates what is missing and says "already ok" (Get* reads only) on a re-run; `plan`/`destroy` remove
only a role and profile tagged with the cluster, after its instances are gone. The sandbox has no IAM
enforcement (moto's S3 gate needs no credentials): nothing here runs there.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Mapping

from botocore.exceptions import ClientError

from ..config import Config
from ..errors import ProvisionError
from ..naming import TAG_CLUSTER, cluster_tags, tags

Log = Callable[[str], None]
PROFILE_ROLES = ("app", "worker")   # the roles whose processes write media
POLICY_NAME = "whipup-media"
MAX_NAME = 64                        # IAM role names (instance profiles allow 128)


@dataclass(frozen=True)
class Purpose:
    key: str                  # what the log lines say
    roles: tuple[str, ...]    # the node roles launched with it
    policy_name: str
    infix: str                # in the profile's name: <cluster>-<infix>-<region>
    description: str          # the IAM role's
    access: str               # destroy's plan line says what goes


MEDIA = Purpose("media", PROFILE_ROLES, POLICY_NAME, "app", "app and worker nodes write the media bucket",
                "the app nodes' media access")
BACKUPS = Purpose("backups", ("db",), "whipup-backups", "db", "db nodes write their nightly backups",
                  "the db nodes' nightly backups")


def profile_name(cluster: str, region: str, infix: str = MEDIA.infix) -> str:
    """`<cluster>-app-<region>` (media; `-db-` for backups): IAM names are account-wide, the region keeps two
    same-named clusters apart (each has its own bucket). Over 64 characters: a cut name and 8 hex of sha256 of
    the full one."""
    name = f"{cluster}-{infix}-{region}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - 9]}-{digest}"


def wants_profile(cfg: Config) -> bool:
    return cfg.cluster.target == "aws" and cfg.app.media == "s3"


def wants_backups_profile(cfg: Config) -> bool:
    return (cfg.cluster.target == "aws" and "db" in cfg.role_names
            and cfg.role("db").backup is not None and bool(cfg.role("db").backup.nightly))


def trust_policy() -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def access_policy(bucket: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "WhipupMediaObjects", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Sid": "WhipupMediaList", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:aws:s3:::{bucket}"},
    ]}


def backups_policy(bucket: str, prefix: str) -> dict:
    """The nightly job's: its objects under `prefix/` (put with their tags, read, deleted past `keep`), and
    the listing of that prefix only."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "WhipupBackupObjects", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*"},
        {"Sid": "WhipupBackupList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}},
    ]}


def create_role_params(cluster: str, name: str, purpose: Purpose = MEDIA) -> dict:
    return {"RoleName": name, "AssumeRolePolicyDocument": json.dumps(trust_policy()),
            "Description": f"whipup {cluster}: {purpose.description}",
            "Tags": tags(cluster_tags(cluster, Name=name))}


def put_policy_params(name: str, bucket: str, purpose: Purpose = MEDIA, document: dict | None = None) -> dict:
    return {"RoleName": name, "PolicyName": purpose.policy_name,
            "PolicyDocument": json.dumps(document if document is not None else access_policy(bucket))}


def create_profile_params(cluster: str, name: str) -> dict:
    return {"InstanceProfileName": name, "Tags": tags(cluster_tags(cluster, Name=name))}


def launch_profile(role: str, profiles: Mapping[str, str]) -> str | None:
    """The profile a node of `role` is launched with (None: none); `profiles`: role -> profile name."""
    return profiles.get(role)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _document(value) -> dict:
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class AppProfile:
    """One purpose's role, inline policy and instance profile (the name is historical: media came first)."""
    iam: object
    cluster: str
    name: str
    bucket: str
    purpose: Purpose = MEDIA
    document: dict | None = None     # the inline policy (None: the media one, on `bucket`)

    @classmethod
    def open(cls, cfg: Config, iam, bucket: str) -> "AppProfile | None":
        """The cluster's media profile (None unless app.media s3 on target aws)."""
        if not wants_profile(cfg):
            return None
        return cls(iam, cfg.cluster.name, profile_name(cfg.cluster.name, cfg.cluster.region), bucket)

    @classmethod
    def backups(cls, cfg: Config, iam, bucket: str) -> "AppProfile | None":
        """The db nodes' profile for their nightly job (None unless target aws with roles.db.backup.nightly)."""
        if not wants_backups_profile(cfg):
            return None
        return cls(iam, cfg.cluster.name, profile_name(cfg.cluster.name, cfg.cluster.region, BACKUPS.infix), bucket,
                   BACKUPS, backups_policy(bucket, cfg.app.name))

    @property
    def policy(self) -> dict:
        return self.document if self.document is not None else access_policy(self.bucket)

    def _role(self) -> dict | None:
        try:
            role = self.iam.get_role(RoleName=self.name)["Role"]
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return None
            raise
        found = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
        if found.get(TAG_CLUSTER) != self.cluster:
            raise ProvisionError(f"IAM role {self.name} exists but is not tagged {TAG_CLUSTER}={self.cluster}: "
                                 f"rename the cluster or remove that role")
        return role

    def _profile(self) -> dict | None:
        try:
            return self.iam.get_instance_profile(InstanceProfileName=self.name)["InstanceProfile"]
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return None
            raise

    def _policy(self) -> dict | None:
        try:
            got = self.iam.get_role_policy(RoleName=self.name, PolicyName=self.purpose.policy_name)
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return None
            raise
        return _document(got["PolicyDocument"])

    def check(self) -> None:
        """Read-only: raises if a role of that name is not the cluster's."""
        self._role()

    def ensure(self, log: Log = print) -> str:
        """Role (tagged, trusted by EC2), its inline policy, the profile holding it; the profile's name."""
        changed = []
        if self._role() is None:
            self.iam.create_role(**create_role_params(self.cluster, self.name, self.purpose))
            changed.append("role created")
        if self._policy() != self.policy:
            self.iam.put_role_policy(**put_policy_params(self.name, self.bucket, self.purpose, self.policy))
            changed.append(f"policy set ({self.bucket})")
        profile = self._profile()
        if profile is None:
            self.iam.create_instance_profile(**create_profile_params(self.cluster, self.name))
            changed.append("instance profile created")
            profile = {"Roles": []}
        if self.name not in [r["RoleName"] for r in profile.get("Roles", [])]:
            self.iam.add_role_to_instance_profile(InstanceProfileName=self.name, RoleName=self.name)
            self.iam.get_waiter("instance_profile_exists").wait(InstanceProfileName=self.name)
            changed.append("role added to the profile")
        log(f"{self.purpose.key}: instance profile {self.name} " + (", ".join(changed) if changed else "already ok"))
        return self.name

    def plan(self) -> str | None:
        """The profile's name if destroy would remove it (read-only): only a role tagged with the cluster."""
        try:
            role = self._role()
        except ProvisionError:
            return None
        return self.name if role is not None or self._tagged_profile() else None

    def _tagged_profile(self) -> bool:
        profile = self._profile()
        found = {t["Key"]: t["Value"] for t in (profile or {}).get("Tags") or []}
        return found.get(TAG_CLUSTER) == self.cluster

    def destroy(self, log: Log = print) -> None:
        """Detach and delete the profile, the inline policy and the role (call once the instances are gone)."""
        profile = self._profile()
        if profile is not None and self._tagged_profile():
            for role in profile.get("Roles", []):
                self.iam.remove_role_from_instance_profile(InstanceProfileName=self.name, RoleName=role["RoleName"])
            self.iam.delete_instance_profile(InstanceProfileName=self.name)
        if self._role() is not None:
            if self._policy() is not None:
                self.iam.delete_role_policy(RoleName=self.name, PolicyName=self.purpose.policy_name)
            self.iam.delete_role(RoleName=self.name)
        log(f"deleted instance profile and IAM role {self.name}")


def describe(name: str | None, purpose: Purpose = MEDIA) -> list[str]:
    """destroy's plan line for the profile."""
    return [f"  instance profile  {name}  (IAM role {name}: {purpose.access})"] if name else []
