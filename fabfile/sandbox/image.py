"""The sandbox's OS image: Debian 12 built once with debootstrap, then cached.

Configured the way a cloud image is: a default user `admin` with passwordless
sudo, root login disabled, no SSH host keys (each host gets its own at first
boot, or the ones its user-data gives), no apt lists (whipup must update).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from .errors import SandboxError
from .settings import SandboxSettings

SUITE = "bookworm"
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


def debootstrap_cmd(target: Path, mirror: str) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE, str(target), mirror]


def sources_list(mirror: str) -> str:
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    return (f"deb {mirror} {SUITE} main\n"
            f"deb {mirror} {SUITE}-updates main\n"
            f"deb {security} {SUITE}-security main\n")


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


def image_ready(settings: SandboxSettings) -> bool:
    try:
        info = json.loads((settings.image_dir / "whipup-image.json").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return info.get("format") == IMAGE_FORMAT


def image_info(settings: SandboxSettings) -> dict:
    return json.loads((settings.image_dir / "whipup-image.json").read_text())


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


def build_image(settings: SandboxSettings, log=print) -> dict:
    """Build the image unless a current one is cached; returns its info."""
    if image_ready(settings):
        return image_info(settings)
    final = settings.image_dir
    partial = final.with_name(final.name + ".partial")
    remove_tree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the sandbox image (debootstrap {SUITE}) in {partial}; this takes about a minute, once")
    started = time.monotonic()
    logfile = partial.parent / "debootstrap.log"
    with open(logfile, "w") as out:
        rc = subprocess.run(debootstrap_cmd(partial, settings.mirror), stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "".join(logfile.read_text().splitlines(True)[-15:])
        remove_tree(partial)
        raise SandboxError(f"debootstrap failed (exit {rc}); see {logfile}:\n{tail}")
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
    pam.write_text(pam.read_text().replace("session    required     pam_loginuid.so",
                                           "session    optional     pam_loginuid.so"))
    (partial / "etc/apt/sources.list").write_text(sources_list(settings.mirror))
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
        log(f"image: trusts {len(extra)} extra CA certificate(s) of this machine's network")
    size = int(subprocess.run(["du", "-sb", str(partial)], capture_output=True, text=True).stdout.split()[0])
    info = {"format": IMAGE_FORMAT, "suite": SUITE, "built_at": int(time.time()),
            "build_seconds": round(time.monotonic() - started, 1), "size_bytes": size,
            "default_user": DEFAULT_USER}
    (partial / "whipup-image.json").write_text(json.dumps(info) + "\n")
    remove_tree(final)
    partial.rename(final)
    log(f"image built in {info['build_seconds']} s ({size / 1e6:.0f} MB)")
    return info
