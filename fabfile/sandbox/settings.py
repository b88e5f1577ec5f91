"""Where the local cloud keeps its state and how it is reached.

Everything is derived from environment variables with sane defaults, read when
asked (never at import time), so tests can point a sandbox at a temp directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ACCOUNT_ID = "123456789012"  # moto's account: the owner of images we register
IMAGE_NAME = "debian-12-amd64-whipup-sandbox"   # the default image's (fabfile/debian.py: sandbox_image_name)
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class SandboxSettings:
    state_dir: Path          # hosts' disks, pid files, logs (kept across restarts)
    cache_dir: Path          # the debootstrap image, built once
    port: int                # moto server port on 127.0.0.1
    region: str
    bridge: str              # Linux bridge name
    bridge_address: str      # the bridge's address: the proxy listens here
    proxy_port: int
    mirror: str              # Debian mirror debootstrap and apt use (through the proxy inside hosts)
    poll_interval: float     # materializer poll period, seconds
    s3_port: int = 8898      # the S3 gate (s3gate.py): moto's S3, for hosts, on the bridge address
    git_port: int = 8897     # the git server (smart HTTP, read-only) on the bridge address
    dns_port: int = 53       # dnsmasq: the hosted zones (dns.py), the hosts' resolver, on the bridge address
    acme_port: int = 14000   # pebble's ACME directory (acme.py) on the bridge address
    acme_admin_port: int = 15000   # pebble's management endpoint (its root certificate)
    apt_cache_port: int = 8896     # apt-cacher-ng (aptcache.py): the hosts' apt proxy, on the bridge address

    @property
    def acme_directory(self) -> str:
        return f"https://{self.bridge_address}:{self.acme_port}/dir"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.bridge_address}:{self.proxy_port}"

    @property
    def apt_cache_url(self) -> str:
        """The hosts' apt proxy over plain HTTP: each package fetched from the mirror once, then served here."""
        return f"http://{self.bridge_address}:{self.apt_cache_port}"

    @property
    def apt_cache_dir(self) -> Path:
        """apt-cacher-ng's cache: kept across sandbox.down, like the hosts' image (remove it to start empty)."""
        return self.state_dir / "apt-cache"

    @property
    def s3_endpoint(self) -> str:
        """Where hosts reach S3 (as a VPC endpoint gives them): the gate on the bridge address."""
        return f"http://{self.bridge_address}:{self.s3_port}"

    @property
    def git_dir(self) -> Path:
        """The bare repositories the git server serves (`fab sandbox.git-publish` fills it)."""
        return self.state_dir / "git"

    def git_url(self, name: str) -> str:
        """The URL the hosts fetch repository `name` from."""
        return f"http://{self.bridge_address}:{self.git_port}/{name}.git"

    @property
    def image_dir(self) -> Path:
        """The default image's tree (Debian 12)."""
        return self.image_path("debian-12")

    def image_path(self, key: str) -> Path:
        """The tree of image `key` (debian-12, debian-13): every host of that image has it as its lower layer."""
        return self.cache_dir / "images" / key

    @property
    def hosts_dir(self) -> Path:
        return self.state_dir / "hosts"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def api_mark(self) -> Path:
        """The file whose time the API moves on every change (sandbox/api.py; the materializer watches it)."""
        return self.run_dir / "api.changed"


def load_settings(environ: dict[str, str] | None = None) -> SandboxSettings:
    env = os.environ if environ is None else environ
    return SandboxSettings(
        state_dir=Path(env.get("WHIPUP_SANDBOX_STATE", "/var/lib/whipup/sandbox")),
        cache_dir=Path(env.get("WHIPUP_CACHE", "/var/cache/whipup")),
        port=int(env.get("WHIPUP_SANDBOX_PORT", "4590")),
        region=env.get("WHIPUP_SANDBOX_REGION", DEFAULT_REGION),
        bridge=env.get("WHIPUP_SANDBOX_BRIDGE", "whipbr0"),
        bridge_address=env.get("WHIPUP_SANDBOX_BRIDGE_ADDRESS", "10.255.255.254"),
        proxy_port=int(env.get("WHIPUP_SANDBOX_PROXY_PORT", "8899")),
        mirror=env.get("WHIPUP_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
        poll_interval=float(env.get("WHIPUP_SANDBOX_POLL", "0.2")),
        s3_port=int(env.get("WHIPUP_SANDBOX_S3_PORT", "8898")),
        git_port=int(env.get("WHIPUP_SANDBOX_GIT_PORT", "8897")),
        dns_port=int(env.get("WHIPUP_SANDBOX_DNS_PORT", "53")),
        acme_port=int(env.get("WHIPUP_SANDBOX_ACME_PORT", "14000")),
        acme_admin_port=int(env.get("WHIPUP_SANDBOX_ACME_ADMIN_PORT", "15000")),
        apt_cache_port=int(env.get("WHIPUP_SANDBOX_APT_CACHE_PORT", "8896")),
    )
