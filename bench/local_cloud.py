"""Local cloud figures: run_instances -> SSH ready (1 and 5 instances), idle host memory, image build time.

Run as root from the repository root:  .venv/bin/python bench/local_cloud.py [--rebuild-image]
It brings up a private sandbox (bench/common.py), measures, and takes it down. Traffic goes only to
loopback and to the hosts it launched (checked route by route).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from common import fab, machine, private_sandbox, table


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def routed(ip, bridge):
    return f" dev {bridge} " in subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True).stdout


def launch_and_wait(ec2, ami, subnet, tmp, count, bridge, user_pub) -> float:
    specs, lines = [], []
    for i in range(count):
        host_pub = keygen(tmp / f"h{count}-{i}")
        specs.append("#cloud-config\n" + yaml.safe_dump({
            "ssh_authorized_keys": [user_pub],
            "ssh_keys": {"ed25519_private": (tmp / f"h{count}-{i}").read_text(), "ed25519_public": host_pub}}))
        lines.append(host_pub)
    started = time.monotonic()
    ips = []
    for ud in specs:  # one call each: user-data (host key) differs per instance
        ips.append(ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=subnet,
                                     UserData=ud)["Instances"][0]["PrivateIpAddress"])
    kh = tmp / f"kh{count}"
    kh.write_text("".join(f"{ip} {' '.join(pub.split()[:2])}\n" for ip, pub in zip(ips, lines)))
    pending = set(ips)
    while pending:
        if time.monotonic() - started > 120:
            raise SystemExit(f"no SSH on {pending} after 120 s")
        for ip in sorted(pending):
            if not routed(ip, bridge):
                continue
            p = subprocess.run(["ssh", "-i", str(tmp / "user"), "-o", "StrictHostKeyChecking=yes",
                                "-o", f"UserKnownHostsFile={kh}", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
                                f"admin@{ip}", "true"], capture_output=True)
            if p.returncode == 0:
                pending.discard(ip)
        time.sleep(0.02)
    return time.monotonic() - started


def host_memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB summed over every process in the host's PID namespace."""
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    rss = pss = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            for line in Path(f"/proc/{entry}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return rss, pss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rebuild-image", action="store_true", help="build the image anew in a temp cache and time it")
    args = ap.parse_args()
    rows = []
    if args.rebuild_image:
        os.environ["WHIPUP_CACHE"] = tempfile.mkdtemp(prefix="whipup-bench-cache-")
    t = time.monotonic()
    with private_sandbox() as sb:
        rows.append(("sandbox.up (image " + ("built" if args.rebuild_image else "cached") + ")",
                     f"{time.monotonic() - t:.1f} s"))
        info = json.loads(Path(os.environ.get("WHIPUP_CACHE", "/var/cache/whipup"),
                               "images/debian-12/whipup-image.json").read_text())
        rows.append(("image build time (debootstrap + setup)", f"{info['build_seconds']} s"))
        rows.append(("image size", f"{info['size_bytes'] / 1e6:.0f} MB"))
        ec2 = sb.ec2()
        ami = ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]
        user_pub = keygen(sb.tmp / "user")
        bridge = sb.env["WHIPUP_SANDBOX_BRIDGE"]
        rows.append(("run_instances -> SSH ready, 1 instance",
                     f"{launch_and_wait(ec2, ami, sb.subnet, sb.tmp, 1, bridge, user_pub):.2f} s"))
        rows.append(("run_instances -> SSH ready, 5 instances together",
                     f"{launch_and_wait(ec2, ami, sb.subnet, sb.tmp, 5, bridge, user_pub):.2f} s"))
        time.sleep(2)
        status = json.loads(fab(sb.env, "sandbox.status", "--json").stdout)
        mems = [host_memory_kib(h["pid"]) for h in status["hosts"] if h["pid"]]
        rss = sorted(m[0] for m in mems)[len(mems) // 2]
        pss = sorted(m[1] for m in mems)[len(mems) // 2]
        rows.append(("memory of one idle host (median RSS / PSS)", f"{rss / 1024:.1f} MiB / {pss / 1024:.1f} MiB"))
    if args.rebuild_image:
        subprocess.run(["rm", "-rf", os.environ["WHIPUP_CACHE"]])
    print(f"machine: {machine()}\n")
    print(table("the local cloud", rows))


if __name__ == "__main__":
    main()
