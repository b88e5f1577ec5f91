"""PURE: the Debian releases whipup runs on, with what a project cares about in each.

One table, read by the local cloud (which image to build and register, under which name) and by
provision (which image a project's Python asks for, on the local cloud or on AWS). The versions are
those of the release's own packages (python3, postgresql), not of backports.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DebianRelease:
    version: str          # "12"
    codename: str         # "bookworm": the suite debootstrap and apt use
    python: str           # the python3 it ships, e.g. "3.11.2"
    postgresql: str       # the PostgreSQL major version its `postgresql` package installs

    @property
    def key(self) -> str:
        """debian-12: the image's directory in the cache, and the start of its AMI names."""
        return f"debian-{self.version}"

    @property
    def title(self) -> str:
        return f"Debian {self.version} ({self.codename})"


RELEASES = (
    DebianRelease("12", "bookworm", "3.11.2", "15"),
    DebianRelease("13", "trixie", "3.13.5", "17"),
)
DEFAULT = RELEASES[0]          # when nothing asks for another: the one every cluster so far ran on
OFFICIAL_OWNER = "136693071363"   # the Debian cloud team's AWS account (https://wiki.debian.org/Cloud/AmazonEC2Image)


def release(key: str) -> DebianRelease:
    """The release of a key like 'debian-13'; KeyError naming the known ones."""
    for r in RELEASES:
        if r.key == key:
            return r
    raise KeyError(f"unknown Debian image {key!r} (known: {', '.join(r.key for r in RELEASES)})")


def sandbox_image_name(r: DebianRelease) -> str:
    """The local cloud's AMI name of a release: debian-12-amd64-whipup-sandbox."""
    return f"{r.key}-amd64-whipup-sandbox"


def official_image_pattern(r: DebianRelease) -> str:
    """The name pattern of the Debian cloud team's amd64 AMIs of a release (debian-12-amd64-20250610-2137)."""
    return f"{r.key}-amd64-*"
