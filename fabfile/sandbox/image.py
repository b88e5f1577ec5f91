"""The sandbox's OS images: Debian 12 and 13 (fabfile/debian.py), each built once with debootstrap, then cached.

Configured the way a cloud image is: a default user `admin` with passwordless
sudo, root login disabled, no SSH host keys (each host gets its own at first
boot, or the ones its user-data gives), no apt lists (whipup must update).
"""
from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..debian import RELEASES, DebianRelease
from .errors import SandboxError
from .settings import SandboxSettings

SUITE = "bookworm"   # the default image's (Debian 12); each image's own is its release's codename
DEFAULT_USER = "admin"
INCLUDE = ("openssh-server", "python3", "sudo", "ca-certificates", "tini", "iproute2", "procps")
IMAGE_FORMAT = 2  # bump when the customisation below changes: forces a rebuild

SSHD_CONFIG = """\
# whipup sandbox image: like a cloud image, key login only, no root
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""


def debootstrap_cmd(target: Path, mirror: str, suite: str = SUITE) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", suite, str(target), mirror]


def sources_list(mirror: str, suite: str = SUITE) -> str:
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    return (f"deb {mirror} {suite} main\n"
            f"deb {mirror} {suite}-updates main\n"
            f"deb {security} {suite}-security main\n")


def customize_cmds(root: Path) -> list[list[str]]:
    ch = ["chroot", str(root)]
    return [
        ch + ["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", DEFAULT_USER],
        ch + ["passwd", "--lock", "root"],
    ]


def pem_blocks(text: str) -> list[str]:
    blocks, cur = [], None
    for line in text.splitlines():
        if line.startswith("-----BEGIN CERTIFICATE-----"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.startswith("-----END CERTIFICATE-----"):
                blocks.append("\n".join(cur) + "\n")
                cur = None
    return blocks


def surrounding_cas(host_bundle: str, image_bundle: str) -> list[str]:
    """CA certificates this machine trusts that a stock image does not (a TLS-inspecting proxy's, say).

    The image is configured for its surroundings as a cloud AMI is: hosts reach
    the outside through the same network this machine does, so they trust the same CAs.
    """
    stock = set(pem_blocks(image_bundle))
    return [b for b in pem_blocks(host_bundle) if b not in stock]


def image_ready(settings: SandboxSettings, release: DebianRelease = RELEASES[0]) -> bool:
    try:
        info = json.loads((settings.image_path(release.key) / "whipup-image.json").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return info.get("format") == IMAGE_FORMAT and info.get("suite") == release.codename


def image_info(settings: SandboxSettings, release: DebianRelease = RELEASES[0]) -> dict:
    return json.loads((settings.image_path(release.key) / "whipup-image.json").read_text())


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    out = []
    for line in Path("/proc/mounts").read_text().splitlines():
        mnt = line.split()[1].replace("\\040", " ")
        if mnt.startswith(prefix):
            out.append(mnt)
    return sorted(out, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts anything mounted below `path` (debootstrap leaves /proc on failure)."""
    for mnt in _mounts_under(path):
        subprocess.run(["umount", "-l", mnt], check=False)
    if _mounts_under(path):
        raise SandboxError(f"{path}: still has mounts below it; refusing to delete")
    shutil.rmtree(path, ignore_errors=True)


def build_image(settings: SandboxSettings, release: DebianRelease = RELEASES[0], log=print) -> dict:
    """Build `release`'s image unless a current one is cached; returns its info.

    Under an exclusive lock of the cache (images/<key>.lock): a second sandbox starting at the same time
    waits, then finds the image built, instead of building over the first one's half-made tree."""
    final = settings.image_path(release.key)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{release.key}.lock", "w") as lock:
        if not image_ready(settings, release):
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"image {release.key}: another sandbox is building it; waiting")
                fcntl.flock(lock, fcntl.LOCK_EX)
        if image_ready(settings, release):
            return image_info(settings, release)
        return _build(settings, release, final, log)


def build_images(settings: SandboxSettings, releases=RELEASES, log=print) -> dict[str, dict]:
    """Every release's image, the missing ones built in parallel (debootstrap waits on the network more than
    on the CPU); {key: info}. All failures are reported together."""
    with ThreadPoolExecutor(max_workers=len(releases)) as pool:
        jobs = {r.key: pool.submit(build_image, settings, r, log) for r in releases}
    errors = [f"{key}: {job.exception()}" for key, job in jobs.items() if job.exception() is not None]
    if errors:
        raise SandboxError("image build failed:\n  " + "\n  ".join(errors))
    return {key: job.result() for key, job in jobs.items()}


def _build(settings: SandboxSettings, release: DebianRelease, final: Path, log) -> dict:
    partial = final.with_name(final.name + ".partial")
    remove_tree(partial)
    log(f"image {release.key}: building it (debootstrap {release.codename}, {release.title}) in {partial}; "
        f"about a minute, once")
    started = time.monotonic()
    logfile = final.parent / f"debootstrap-{release.key}.log"
    with open(logfile, "w") as out:
        rc = subprocess.run(debootstrap_cmd(partial, settings.mirror, release.codename),
                            stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "".join(logfile.read_text().splitlines(True)[-15:])
        remove_tree(partial)
        raise SandboxError(f"debootstrap {release.codename} failed (exit {rc}); see {logfile}:\n{tail}")
    _customize(partial, release, settings.mirror, log)
    size = int(subprocess.run(["du", "-sb", str(partial)], capture_output=True, text=True).stdout.split()[0])
    info = {"format": IMAGE_FORMAT, "suite": release.codename, "built_at": int(time.time()),
            "build_seconds": round(time.monotonic() - started, 1), "size_bytes": size,
            "default_user": DEFAULT_USER}
    (partial / "whipup-image.json").write_text(json.dumps(info) + "\n")
    remove_tree(final)
    partial.rename(final)
    log(f"image {release.key}: built in {info['build_seconds']} s ({size / 1e6:.0f} MB)")
    return info


def _customize(partial: Path, release: DebianRelease, mirror: str, log) -> None:
    """What makes a debootstrapped tree a cloud image (see the module's docstring)."""
    for cmd in customize_cmds(partial):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise SandboxError(f"image customisation failed: {' '.join(cmd)}: {p.stderr.strip()}")
    (partial / "etc/sudoers.d/90-cloud-init-users").write_text(f"{DEFAULT_USER} ALL=(ALL) NOPASSWD:ALL\n")
    (partial / "etc/sudoers.d/90-cloud-init-users").chmod(0o440)
    (partial / "etc/ssh/sshd_config.d/50-whipup-cloud.conf").write_text(SSHD_CONFIG)
    for key in (partial / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    pam = partial / "etc/pam.d/sshd"
    pam.write_text(loginuid_optional(pam.read_text()))
    (partial / "etc/apt/sources.list").write_text(sources_list(mirror, release.codename))
    for lists in (partial / "var/lib/apt/lists").glob("*"):
        if lists.is_file():
            lists.unlink()
    for deb in (partial / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (partial / "etc/hostname").write_text("localhost\n")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    extra = surrounding_cas(bundle.read_text() if bundle.exists() else "",
                            (partial / "etc/ssl/certs/ca-certificates.crt").read_text())
    if extra:
        (partial / "usr/local/share/ca-certificates/whipup-surroundings.crt").write_text("".join(extra))
        subprocess.run(["chroot", str(partial), "update-ca-certificates"], capture_output=True, check=True)
        log(f"image {release.key}: trusts {len(extra)} extra CA certificate(s) of this machine's network")


def loginuid_optional(pam_sshd: str) -> str:
    """sshd's PAM stack with pam_loginuid optional: a host in a namespace may not set its login uid."""
    return re.sub(r"^(session\s+)required(\s+pam_loginuid\.so)", r"\1optional\2", pam_sshd, flags=re.M)
