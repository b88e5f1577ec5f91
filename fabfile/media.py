"""Uploaded media (`app.media`): in S3, a bucket per cluster, or in shared/media on one node (docs/media.md).

Pure values: the bucket's name, where hosts reach S3, the app's environment for django-storages and the
proxy's `location /media/`. `site_of` is the one reader (the bucket provision recorded, the sandbox's
settings); the API calls are in fabfile/provision/media.py.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import ProvisionError
from .sandbox.settings import ACCOUNT_ID as SANDBOX_ACCOUNT
from .state import cluster_dir

REQUIREMENTS = ("django-storages[s3]>=1.14.4,<2",)    # with app.media s3: appended to the venv's install
STORAGE_BACKEND = "storages.backends.s3.S3Storage"   # the overlay's STORAGES["default"]["BACKEND"]
URL_PATH = "/media/"                                 # the site's media path, on the proxy
SANDBOX_KEYS = ("testing", "testing")   # moto accepts any key pair (and checks no signature): not a secret
AWS_RESOLVER = "169.254.169.253"        # the VPC's DNS resolver (Amazon-provided), for nginx on AWS
RECORD = "media.json"                   # in the cluster's state dir: the bucket provision made

BUCKET_NAME = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z", re.ASCII)
RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
PUBLIC_HOST = re.compile(r"\A[A-Za-z0-9.-]+(?::[0-9]{1,5})?\Z|\A\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?\Z", re.ASCII)

# What the overlay gives django-storages: env name -> (S3Storage OPTIONS key, type). django-storages also
# reads Django settings of these very names (and AWS_S3_ACCESS_KEY_ID / AWS_S3_SECRET_ACCESS_KEY from the
# environment by itself).
S3_OPTIONS: dict[str, tuple[str, type]] = {
    "AWS_STORAGE_BUCKET_NAME": ("bucket_name", str),
    "AWS_S3_REGION_NAME": ("region_name", str),
    "AWS_S3_ENDPOINT_URL": ("endpoint_url", str),
    "AWS_S3_ADDRESSING_STYLE": ("addressing_style", str),
    "AWS_S3_SIGNATURE_VERSION": ("signature_version", str),
    "AWS_QUERYSTRING_AUTH": ("querystring_auth", bool),
    "AWS_S3_FILE_OVERWRITE": ("file_overwrite", bool),
    "AWS_S3_CUSTOM_DOMAIN": ("custom_domain", str),
    "AWS_S3_URL_PROTOCOL": ("url_protocol", str),
    "AWS_S3_ACCESS_KEY_ID": ("access_key", str),
    "AWS_S3_SECRET_ACCESS_KEY": ("secret_key", str),
}


def valid_bucket_name(name: str) -> bool:
    """S3's rules for a general purpose bucket (3-63 of [a-z0-9.-], letters or digits at both ends, no '..',
    not an IP address, none of the reserved prefixes and suffixes)."""
    return bool(BUCKET_NAME.fullmatch(name)) and ".." not in name \
        and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name) \
        and not name.startswith(RESERVED_BUCKET_PREFIXES) and not name.endswith(RESERVED_BUCKET_SUFFIXES)


def bucket_name(cluster: str, account: str, region: str, purpose: str = "media") -> str:
    """`<cluster>-media-<account>-<region>`: bucket names are global, so the account and region make the
    cluster's own. A name over 63 characters (or starting as S3 reserves) becomes `w<cut cluster>-<hash of
    the whole cluster name><suffix>`."""
    suffix = f"-{purpose}-{account}-{region}"
    name = cluster + suffix
    if len(name) > 63 or name.startswith(RESERVED_BUCKET_PREFIXES):   # "w": never a reserved prefix
        digest = hashlib.sha256(cluster.encode()).hexdigest()[:8]
        head = cluster[:63 - len(suffix) - len(digest) - 2].rstrip("-")
        name = f"w{head}-{digest}{suffix}"
    if not valid_bucket_name(name):
        raise ProvisionError(f"cluster {cluster}: no valid S3 bucket name from account {account!r}, region {region!r} "
                             f"({name!r})")
    return name


@dataclass(frozen=True)
class MediaSite:
    mode: str                  # "s3" | "local" (app.media)
    region: str
    bucket: str | None = None
    endpoint: str | None = None     # the S3 endpoint hosts use; None: AWS's regional endpoint

    @property
    def s3(self) -> bool:
        return self.mode == "s3"

    @property
    def addressing_style(self) -> str:
        """path on an endpoint of our own (one host name for every bucket), virtual on AWS."""
        return "path" if self.endpoint else "virtual"

    @property
    def bucket_host(self) -> str:
        """The host name (and port) the bucket is reached at."""
        if self.endpoint:
            return self.endpoint.split("://", 1)[1].rstrip("/")
        return f"{self.bucket}.s3.{self.region}.amazonaws.com"


def site(cfg: Config, account: str, sandbox_endpoint: str | None) -> MediaSite:
    """The cluster's media: its bucket (from cluster name, account, region) and how hosts reach S3."""
    cluster = cfg.cluster
    if cfg.app.media != "s3":
        return MediaSite("local", cluster.region)
    endpoint = sandbox_endpoint if cluster.target == "sandbox" else None
    return MediaSite("s3", cluster.region, bucket_name(cluster.name, account, cluster.region), endpoint)


def media_env(site: MediaSite, *, public_host: str, scheme: str = "http") -> dict[str, str]:
    """The app's environment for its media (docs/media.md): django-storages' settings, by their own names.

    public_host is the site's name as browsers reach it (a host name or address, optionally :port): media
    URLs are <scheme>://<public_host>/media/<key>, served by the proxy from the bucket.
    """
    if not PUBLIC_HOST.fullmatch(public_host):
        raise ValueError(f"media_env: public_host {public_host!r} is not a host name or address (no scheme or path)")
    if scheme not in ("http", "https"):
        raise ValueError(f"media_env: scheme {scheme!r} is not http or https")
    env = {"WHIPUP_MEDIA": site.mode, "MEDIA_URL": URL_PATH}
    if not site.s3:
        return env
    env.update({
        "AWS_STORAGE_BUCKET_NAME": site.bucket or "",
        "AWS_S3_REGION_NAME": site.region,
        "AWS_S3_ADDRESSING_STYLE": site.addressing_style,
        "AWS_S3_SIGNATURE_VERSION": "s3v4",
        "AWS_QUERYSTRING_AUTH": "false",      # the proxy serves media unsigned: plain, cacheable URLs
        "AWS_S3_FILE_OVERWRITE": "false",     # an upload never replaces another (FileSystemStorage's way)
        "AWS_S3_CUSTOM_DOMAIN": public_host + URL_PATH.rstrip("/"),
        "AWS_S3_URL_PROTOCOL": f"{scheme}:",
    })
    if site.endpoint:
        env["AWS_S3_ENDPOINT_URL"] = site.endpoint
        env["AWS_S3_ACCESS_KEY_ID"], env["AWS_S3_SECRET_ACCESS_KEY"] = SANDBOX_KEYS
    return env


def nginx_media(site: MediaSite, shared: str) -> dict:
    """The template context's `media`: what `location /media/` serves from."""
    if not site.s3:
        return {"mode": "local", "root": f"{shared}/media/"}
    if site.endpoint:   # one endpoint for every bucket: the bucket is the path's first part
        return {"mode": "s3", "bucket": site.bucket, "upstream": site.endpoint.rstrip("/"),
                "path": f"/{site.bucket}/", "host": site.bucket_host, "resolver": None}
    return {"mode": "s3", "bucket": site.bucket, "upstream": f"https://{site.bucket_host}", "path": "/",
            "host": site.bucket_host, "resolver": AWS_RESOLVER}


# --- the record provision leaves, and the one reader --------------------------------------------------------

def record_path(cfg: Config) -> Path:
    return cluster_dir(cfg) / RECORD


def record_text(site: MediaSite, account: str) -> str:
    return json.dumps({"bucket": site.bucket, "region": site.region, "account": account}, sort_keys=True) + "\n"


def recorded_account(cfg: Config) -> str | None:
    """The account provision found the bucket in, if it recorded one for this region."""
    try:
        data = json.loads(record_path(cfg).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("region") != cfg.cluster.region:
        return None
    account = data.get("account")
    return account if isinstance(account, str) and account.isdigit() else None


def site_of(cfg: Config) -> MediaSite:
    """The cluster's media site: on the sandbox, moto's account and the S3 gate; on AWS, the account that
    provision recorded (STS GetCallerIdentity), so rendering a template makes no API call."""
    if cfg.app.media != "s3":
        return site(cfg, "", None)
    account = recorded_account(cfg)
    if cfg.cluster.target == "sandbox":
        from .sandbox.settings import load_settings

        return site(cfg, account or SANDBOX_ACCOUNT, load_settings().s3_endpoint)
    if account is None:
        raise ProvisionError(f"app.media s3: no bucket recorded in {record_path(cfg)}; run `fab provision` first")
    return site(cfg, account, None)


REHEARSAL_ACCOUNT = "000000000000"   # templates rendered before the first provision on AWS: never contacted


def rehearsal_site(cfg: Config) -> MediaSite:
    """What templates see in a rehearsal (before anything is launched): the site, or on AWS before the first
    provision, one with a placeholder account, as the rehearsal's nodes have placeholder addresses."""
    try:
        return site_of(cfg)
    except ProvisionError:
        return site(cfg, REHEARSAL_ACCOUNT, None)
