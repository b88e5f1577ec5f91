"""Bringing the local cloud up and down: image, moto server, bridge, proxy, S3 gate (moto's S3 for hosts,
s3gate.py), git server (gitserve.py), materializer (which keeps the security groups' nftables table in
step; `down` removes it).

Every step looks first and acts only when something differs, so `up` twice
changes nothing and `down` with nothing up is a no-op.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..debian import DEFAULT, RELEASES, DebianRelease, sandbox_image_name
from . import acme, aptcache, dns, firewall, hosts, image, net, procs, volumes
from .errors import SandboxError
from .settings import ACCOUNT_ID, SandboxSettings

REQUIRED = {  # command -> Debian package
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "pivot_root": "util-linux",
    "debootstrap": "debootstrap",
    "tinyproxy": "tinyproxy",
    "chroot": "coreutils",
    "nft": "nftables",       # security groups are enforced as an nftables table
    "dnsmasq": "dnsmasq-base",   # the hosted zones on the bridge (dns.py)
    "pebble": "pebble",      # the ACME server on the bridge (acme.py)
}
BRIDGE_SYSCTLS = Path("/proc/sys/net/bridge")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def tinyproxy_conf(settings: SandboxSettings) -> str:
    allow = "".join(f"Allow {r}\n" for r in net.PRIVATE_RANGES)
    return (
        "# whipup sandbox forward proxy: the only way out for sandbox hosts\n"
        "User nobody\nGroup nogroup\n"
        f"Port {settings.proxy_port}\nListen {settings.bridge_address}\n"
        "Timeout 600\nMaxClients 200\nLogLevel Warning\n"
        f"{allow}ConnectPort 443\nDisableViaHeader Yes\n"
    )


def preflight(settings: SandboxSettings) -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("the local cloud needs root (network namespaces, mounts): run as root")
    missing = sorted({pkg for cmd, pkg in REQUIRED.items() if shutil.which(cmd) is None})
    if missing:
        problems.append(f"missing commands; install them with: apt-get install -y {' '.join(missing)}")
    if "overlay" not in Path("/proc/filesystems").read_text():
        subprocess.run(["modprobe", "overlay"], capture_output=True)
        if "overlay" not in Path("/proc/filesystems").read_text():
            problems.append("the kernel has no overlay filesystem (modprobe overlay failed)")
    if os.geteuid() == 0 and not bridge_netfilter():
        problems.append("the kernel has no bridge netfilter, through which the security groups are enforced "
                        "(modprobe br_netfilter failed)")
    if problems:
        raise SandboxError("sandbox.up cannot start:\n  - " + "\n  - ".join(problems))


def bridge_netfilter() -> bool:
    """br_netfilter, which hands a bridge's packets to the IP hooks: loaded if it is not. Loading it turns
    that on for every bridge on this machine (its net.bridge.bridge-nf-call-* default to 1), so when this
    call loaded it those are set back to 0, what the machine did before: only our bridge asks for it."""
    if BRIDGE_SYSCTLS.is_dir():
        return True
    subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
    if not BRIDGE_SYSCTLS.is_dir():
        return False
    for name in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
        (BRIDGE_SYSCTLS / name).write_text("0\n")
    return True


def ec2(settings: SandboxSettings):
    import boto3     # here: every fab run imports this module, few of them need boto3

    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name=settings.region).client("ec2", endpoint_url=settings.endpoint)


def api_answers(settings: SandboxSettings) -> bool:
    try:
        with urllib.request.urlopen(settings.endpoint + "/moto-api/", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def pidfile(settings: SandboxSettings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _env(settings: SandboxSettings) -> dict:
    env = dict(os.environ)
    env.update(sandbox_environ(settings))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["WHIPUP_SANDBOX_STATE"] = str(settings.state_dir)
    env["WHIPUP_CACHE"] = str(settings.cache_dir)
    env["WHIPUP_SANDBOX_PORT"] = str(settings.port)
    return env


def sandbox_environ(settings: SandboxSettings) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": settings.endpoint,
        "AWS_DEFAULT_REGION": settings.region,
        "AWS_REGION": settings.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def start_api(settings: SandboxSettings, log) -> None:
    if procs.read_pidfile(pidfile(settings, "moto")) and api_answers(settings):
        return log(f"api: already up at {settings.endpoint}")
    procs.stop_pidfile(pidfile(settings, "moto"))
    procs.spawn([sys.executable, "-m", "fabfile.sandbox.api", "-H", "127.0.0.1", "-p", str(settings.port),
                 "--mark", str(settings.api_mark)],
                settings.state_dir / "logs" / "moto.log", pidfile(settings, "moto"), env=_env(settings))
    wait_until(lambda: api_answers(settings), settings, "moto", "moto server", f"answer on {settings.endpoint}", 30)
    log(f"api: started at {settings.endpoint}")


def wait_until(ready, settings: SandboxSettings, name: str, what: str, doing: str, seconds: float) -> None:
    """Wait for a process we just spawned (pidfile `name`) until `ready()` (`procs.wait_ready`)."""
    procs.wait_ready(ready, pidfile(settings, name), settings.state_dir / "logs" / f"{name}.log", what, doing,
                     seconds)


def register_image_params(release: DebianRelease) -> dict:
    """RegisterImage's parameters for a release's sandbox image (its name is how hosts find their tree)."""
    return {
        "Name": sandbox_image_name(release),
        "Description": f"{release.title} minbase, whipup local cloud (Python {release.python}, "
                       f"PostgreSQL {release.postgresql})",
        "Architecture": "x86_64", "RootDeviceName": "/dev/xvda", "VirtualizationType": "hvm",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}],
    }


def register_image(settings: SandboxSettings, log, release: DebianRelease = DEFAULT) -> str:
    client = ec2(settings)
    name = sandbox_image_name(release)
    found = client.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
    if found:
        log(f"image: {found[0]['ImageId']} ({name}) already registered")
        return found[0]["ImageId"]
    ami = client.register_image(**register_image_params(release))["ImageId"]
    log(f"image: registered {ami} ({name}, owner {ACCOUNT_ID})")
    return ami


def start_bridge(settings: SandboxSettings, log) -> None:
    if net.link_exists(settings.bridge):
        net.run(net.bridge_netfilter_cmd(settings.bridge))
        return log(f"bridge: {settings.bridge} already up")
    net.run_all(net.bridge_up_cmds(settings.bridge, settings.bridge_address))
    log(f"bridge: {settings.bridge} {settings.bridge_address}")


def start_proxy(settings: SandboxSettings, log) -> None:
    conf = settings.run_dir / "tinyproxy.conf"
    wanted = tinyproxy_conf(settings)
    running = procs.read_pidfile(pidfile(settings, "proxy"))
    if running and conf.exists() and conf.read_text() == wanted:
        return log(f"proxy: already up at {settings.proxy_url}")
    procs.stop_pidfile(pidfile(settings, "proxy"))
    conf.write_text(wanted)
    procs.spawn(["tinyproxy", "-d", "-c", str(conf)], settings.state_dir / "logs" / "proxy.log",
                pidfile(settings, "proxy"))
    time.sleep(0.2)
    if not procs.read_pidfile(pidfile(settings, "proxy")):
        raise SandboxError(f"tinyproxy exited; see {settings.state_dir / 'logs' / 'proxy.log'}")
    log(f"proxy: started at {settings.proxy_url}")


def start_apt_cache(settings: SandboxSettings, log) -> None:
    aptcache.start(settings, log, lambda: listening(settings.bridge_address, settings.apt_cache_port))


def s3gate_argv(settings: SandboxSettings) -> list[str]:
    return [sys.executable, "-m", "fabfile.sandbox.s3gate", settings.bridge_address, str(settings.s3_port),
            str(settings.port)]


def listening(address: str, port: int, timeout: float = 0.5) -> bool:
    """Something accepts connections at address:port. Only tried when that address is this machine's own
    (the bridge is up): else a connection to it would leave by the default route."""
    if net.routed_via(address) != "lo":
        return False
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def git_answers(settings: SandboxSettings) -> bool:
    """The git server accepts connections on the bridge address."""
    return listening(settings.bridge_address, settings.git_port, timeout=1)


def start_s3gate(settings: SandboxSettings, log) -> None:
    """The S3 gate on the bridge address (after the bridge: it binds that address); restarted when its
    arguments changed (another port), as the proxy is when its configuration did."""
    stamp, wanted = settings.run_dir / "s3gate.argv", "\n".join(s3gate_argv(settings)) + "\n"
    if procs.read_pidfile(pidfile(settings, "s3gate")) and stamp.exists() and stamp.read_text() == wanted:
        return log(f"s3: already up at {settings.s3_endpoint}")
    procs.stop_pidfile(pidfile(settings, "s3gate"))
    stamp.write_text(wanted)
    logfile = settings.state_dir / "logs" / "s3gate.log"
    procs.spawn(s3gate_argv(settings), logfile, pidfile(settings, "s3gate"), env=_env(settings), cwd=str(PROJECT_ROOT))
    wait_until(lambda: listening(settings.bridge_address, settings.s3_port), settings, "s3gate", "S3 gate",
               f"listen on {settings.s3_endpoint}", 10)
    log(f"s3: moto's S3 for hosts at {settings.s3_endpoint}")


def start_git(settings: SandboxSettings, log) -> None:
    """The git server (read-only smart HTTP) on the bridge address; its repositories in settings.git_dir."""
    if procs.read_pidfile(pidfile(settings, "git")) and git_answers(settings):
        return log(f"git: already up at {settings.git_url('NAME')}")
    procs.stop_pidfile(pidfile(settings, "git"))
    settings.git_dir.mkdir(parents=True, exist_ok=True)
    procs.spawn([sys.executable, "-m", "fabfile.sandbox.gitserve"], settings.state_dir / "logs" / "git.log",
                pidfile(settings, "git"), env=_env(settings), cwd=str(PROJECT_ROOT))
    wait_until(lambda: git_answers(settings), settings, "git", "git server",
               f"listen on {settings.bridge_address}:{settings.git_port}", 15)
    log(f"git: started at {settings.git_url('NAME')} (fab sandbox.git-publish PATH)")


def start_dns(settings: SandboxSettings, log) -> None:
    """dnsmasq on the bridge address and the sync that writes Route53's records for it (dns.py)."""
    dns.hosts_dir(settings).mkdir(parents=True, exist_ok=True)
    if procs.read_pidfile(pidfile(settings, "dnsmasq")) and dns.answers(settings):
        log(f"dns: already up at {settings.bridge_address}:{settings.dns_port}")
    else:
        procs.stop_pidfile(pidfile(settings, "dnsmasq"))
        procs.spawn(dns.dnsmasq_argv(settings), settings.state_dir / "logs" / "dnsmasq.log",
                    pidfile(settings, "dnsmasq"))
        wait_until(lambda: dns.answers(settings), settings, "dnsmasq", "DNS server (dnsmasq)",
                   f"answer on {settings.bridge_address}:{settings.dns_port}", 10)
        log(f"dns: Route53's zones at {settings.bridge_address}:{settings.dns_port} (the hosts' resolver)")
    if not procs.read_pidfile(pidfile(settings, "dnssync")):
        procs.spawn([sys.executable, "-m", "fabfile.sandbox.dns"], settings.state_dir / "logs" / "dnssync.log",
                    pidfile(settings, "dnssync"), env=_env(settings), cwd=str(PROJECT_ROOT))


def start_acme(settings: SandboxSettings, log) -> None:
    """pebble on the bridge address (after dns: it validates through it); its root saved (acme.py)."""
    made = acme.ensure_listener_cert(settings)
    config = acme.write_config(settings)
    if not made and procs.read_pidfile(pidfile(settings, "pebble")) and acme.answers(settings):
        if acme.save_root(settings):
            log(f"acme: pebble's root changed: saved in {acme.root_path(settings)}")
        return log(f"acme: already up at {settings.acme_directory}")
    procs.stop_pidfile(pidfile(settings, "pebble"))
    procs.spawn(acme.pebble_argv(settings, config), settings.state_dir / "logs" / "pebble.log",
                pidfile(settings, "pebble"), env={**os.environ, **acme.ENV})
    wait_until(lambda: acme.answers(settings), settings, "pebble", "ACME server (pebble)",
               f"answer on {settings.acme_directory}", 20)
    acme.save_root(settings)
    log(f"acme: pebble at {settings.acme_directory}, its root in {acme.root_path(settings)}")


def start_materializer(settings: SandboxSettings, log) -> None:
    if procs.read_pidfile(pidfile(settings, "materializer")):
        return log("materializer: already running")
    procs.spawn([sys.executable, "-m", "fabfile.sandbox.materializer"],
                settings.state_dir / "logs" / "materializer.log", pidfile(settings, "materializer"),
                env=_env(settings), cwd=str(PROJECT_ROOT))
    log("materializer: started")


def up(settings: SandboxSettings, log=print) -> None:
    preflight(settings)
    for d in (settings.state_dir, settings.run_dir, settings.hosts_dir, settings.state_dir / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.state_dir, 0o700)
    for key, info in image.build_images(settings, RELEASES, log).items():
        log(f"image: {settings.image_path(key)} (Debian {info['suite']}, {info['size_bytes'] / 1e6:.0f} MB)")
    start_api(settings, log)
    for release in RELEASES:
        register_image(settings, log, release)
    start_bridge(settings, log)
    start_proxy(settings, log)
    start_apt_cache(settings, log)
    start_s3gate(settings, log)
    start_git(settings, log)
    start_dns(settings, log)
    start_acme(settings, log)
    start_materializer(settings, log)


def down(settings: SandboxSettings, log=print) -> None:
    """Stop everything of ours: materializer, hosts, network, proxy, API. Disks of hosts go too."""
    did = procs.stop_pidfile(pidfile(settings, "materializer"))
    if did:
        log("materializer: stopped")
    if procs.stop_pidfile(pidfile(settings, "s3gate")):
        log("s3: stopped")
    for iid in hosts.known_hosts(settings):
        hosts.destroy(settings, iid)
        log(f"host {iid}: removed")
    if volumes.remove_all(settings):
        log("volumes and snapshots: removed")
    for ns in net.our_netns(settings.bridge):  # leftovers of a crash: namespaces without a host dir
        net.run(["ip", "netns", "del", ns], check=False)
        log(f"netns {ns}: removed")
    for veth in net.bridge_ports(settings.bridge):
        net.run(["ip", "link", "del", veth], check=False)
        log(f"veth {veth}: removed")
    if net.link_exists(settings.bridge):
        net.run_all(net.bridge_down_cmds(settings.bridge))
        log(f"bridge {settings.bridge}: removed")
    if shutil.which("nft") and firewall.Firewall(settings.bridge).remove():
        log(f"security groups: table inet {firewall.table_name(settings.bridge)} removed")
    if procs.stop_pidfile(pidfile(settings, "git")):
        log("git: stopped")
    for name, what in (("pebble", "acme"), ("dnssync", "dns sync"), ("dnsmasq", "dns")):
        if procs.stop_pidfile(pidfile(settings, name)):
            log(f"{what}: stopped")
    if procs.stop_pidfile(pidfile(settings, "proxy")):
        log("proxy: stopped")
    if procs.stop_pidfile(aptcache.pidfile(settings)):
        log("apt cache: stopped")
    if procs.stop_pidfile(pidfile(settings, "moto")):
        log("api: stopped")
    if settings.hosts_dir.exists():
        image.remove_tree(settings.hosts_dir)


@dataclass(frozen=True)
class HostStatus:
    instance_id: str
    state: str
    private_ip: str
    pid: int | None


def status(settings: SandboxSettings) -> dict:
    out = {"endpoint": settings.endpoint, "region": settings.region,
           "api": api_answers(settings),
           "materializer": procs.read_pidfile(pidfile(settings, "materializer")),
           "proxy": settings.proxy_url if procs.read_pidfile(pidfile(settings, "proxy")) else None,
           "s3": settings.s3_endpoint if procs.read_pidfile(pidfile(settings, "s3gate")) else None,
           "git": settings.git_url("NAME") if procs.read_pidfile(pidfile(settings, "git")) else None,
           "dns": (f"{settings.bridge_address}:{settings.dns_port}"
                   if procs.read_pidfile(pidfile(settings, "dnsmasq")) else None),
           "acme": (f"{settings.acme_directory} (root: {acme.root_path(settings)})"
                    if procs.read_pidfile(pidfile(settings, "pebble")) else None),
           "firewall": (f"table inet {firewall.table_name(settings.bridge)}"
                        if shutil.which("nft") and firewall.Firewall(settings.bridge).present() else None),
           "images": [], "hosts": []}
    ids = {}
    if out["api"]:
        client = ec2(settings)
        names = [sandbox_image_name(r) for r in RELEASES]
        ids = {i["Name"]: i["ImageId"] for i in client.describe_images(
            Owners=["self"], Filters=[{"Name": "name", "Values": names}])["Images"]}
    for r in RELEASES:
        built = None
        if image.image_ready(settings, r):
            info = image.image_info(settings, r)
            built = f"{settings.image_path(r.key)} ({r.title}, {info['size_bytes'] / 1e6:.0f} MB)"
        out["images"].append({"name": sandbox_image_name(r), "image_id": ids.get(sandbox_image_name(r)),
                              "tree": built, "python": r.python, "postgresql": r.postgresql})
    api_states = {}
    if out["api"]:
        for res in client.describe_instances()["Reservations"]:
            for inst in res["Instances"]:
                api_states[inst["InstanceId"]] = (inst["State"]["Name"], inst.get("PrivateIpAddress", ""))
    ids = sorted(set(api_states) | set(hosts.known_hosts(settings)))
    for iid in ids:
        st = hosts.read_state(settings, iid) or {}
        state, ip = api_states.get(iid, ("unknown to the API", st.get("private_ip", "")))
        out["hosts"].append(HostStatus(iid, state, ip or st.get("private_ip", ""), hosts.host_pid(settings, iid)))
    return out
