"""PURE: `ami: auto`, the image picked by the project's Python.

The known images are the Debian releases of fabfile/debian.py: on the local cloud its own images
(debian-12-amd64-whipup-sandbox, ...), on AWS the Debian cloud team's (owner 136693071363, names
debian-12-amd64-*). `choose_image` takes the project's Python constraint (a PEP 440 specifier such as
">=3.12", a bare version such as "3.12" from .python-version, or None) and returns the first release whose
python3 satisfies it, Debian 12 when there is no constraint. `resolve` puts the choice into a Config:
every role whose ami is `auto` (the cluster's, unless the role sets its own) gets the chosen spec.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from ..config import AmiSpec, Config
from ..debian import OFFICIAL_OWNER, RELEASES, DebianRelease, official_image_pattern, sandbox_image_name
from ..errors import ProvisionError


@dataclass(frozen=True)
class KnownImage:
    release: DebianRelease
    spec: AmiSpec


@dataclass(frozen=True)
class ImageChoice:
    spec: AmiSpec
    release: DebianRelease
    reason: str                # why this one: "no Python constraint: the default" / "Python 3.13.5 satisfies ..."

    def describe(self) -> str:
        """One line for preflight: the image, its OS and Python, and why."""
        return (f"image: {self.spec.name} (owner {self.spec.owner}): {self.release.title}, "
                f"Python {self.release.python}, PostgreSQL {self.release.postgresql}; {self.reason}")


def known_images(target: str) -> tuple[KnownImage, ...]:
    """The images `auto` picks from on `target`, in order of preference (the default first)."""
    if target == "sandbox":
        return tuple(KnownImage(r, AmiSpec(name=sandbox_image_name(r), owner="self")) for r in RELEASES)
    return tuple(KnownImage(r, AmiSpec(name=official_image_pattern(r), owner=OFFICIAL_OWNER)) for r in RELEASES)


def specifier(python: str):
    """The SpecifierSet of a constraint; a bare version X.Y[.Z] (.python-version, runtime.txt's number)
    means its minor series, ==X.Y.*: the image gives one Python, a project pins the series it was made on."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    text = python.strip()
    try:
        v = Version(text)
        return SpecifierSet(f"=={v.major}.{v.minor}.*")
    except InvalidVersion:
        pass
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise ValueError(f"Python constraint {python!r} is not a version specifier (like >=3.12 or 3.12)") from None


def choose_image(python: str | None, images: Sequence[KnownImage]) -> ImageChoice:
    """The first of `images` whose Python satisfies `python` (None: the first, the default);
    ValueError naming the constraint and every image's Python when none does."""
    if not images:
        raise ValueError("no known images to choose from")
    if python is None or not python.strip():
        first = images[0]
        return ImageChoice(first.spec, first.release, "no Python constraint: the default")
    wanted = specifier(python)
    for image in images:
        if wanted.contains(image.release.python, prereleases=True):
            return ImageChoice(image.spec, image.release,
                               f"its Python {image.release.python} satisfies the project's {python.strip()!r}")
    have = ", ".join(f"{i.release.title} has Python {i.release.python}" for i in images)
    raise ValueError(f"no image has a Python that satisfies the project's {python.strip()!r} ({have})")


def resolve(cfg: Config, python: str | None) -> tuple[Config, ImageChoice | None]:
    """`cfg` with every `auto` ami replaced by the image chosen for `python`, and that choice (None when no
    role uses auto). ProvisionError, naming the key, when no image fits."""
    auto_roles = [r for r in cfg.roles if r.ami.unresolved]
    if not auto_roles and not cfg.cluster.ami.unresolved:
        return cfg, None
    key = "cluster.ami" if cfg.cluster.ami.unresolved else f"roles.{auto_roles[0].name}.ami"
    try:
        choice = choose_image(python, known_images(cfg.cluster.target))
    except ValueError as exc:
        raise ProvisionError(f"{cfg.path.name}: {key}: auto: {exc}; give {key} an image of your own whose "
                             f"Python fits ({{name: ..., owner: ...}} or {{id: ami-...}})") from None
    chosen = replace(choice.spec, auto=True)
    cluster = replace(cfg.cluster, ami=chosen) if cfg.cluster.ami.unresolved else cfg.cluster
    roles = tuple(replace(r, ami=chosen) if r.ami.unresolved else r for r in cfg.roles)
    return replace(cfg, cluster=cluster, roles=roles), choice


__all__ = ["ImageChoice", "KnownImage", "choose_image", "known_images", "resolve", "specifier"]
