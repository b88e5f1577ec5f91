"""Sandbox hosts: one per instance, made real with namespaces and an overlay.

A host's directory holds its disk (`upper/`, the root volume, kept across
stop/start), the overlay's `work/` and mount point, its seed (cloud-config,
metadata, boot script: copied into the guest's /run at every boot), its
console log and `host.json` (what the materializer needs to find it again).
"""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from . import aptcache, net, procs
from .errors import SandboxError
from .image import DEFAULT_USER, remove_tree
from .settings import SandboxSettings

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class HostSpec:
    instance_id: str
    private_ip: str
    hostname: str
    image: str = "debian-12"   # the image tree under the cache (settings.image_path): the disk's lower layer


def host_dir(settings: SandboxSettings, instance_id: str) -> Path:
    return settings.hosts_dir / instance_id


def split_user_data(raw: bytes | None, log=print) -> tuple[dict | None, bytes | None]:
    """User-data into (cloud-config dict, shell script) as cloud-init reads it."""
    if not raw:
        return None, None
    if raw[:2] == b"\x1f\x8b":
        import gzip
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8", "replace")
    if text.startswith("#cloud-config"):
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            log(f"user-data: not valid cloud-config YAML: {exc}")
            return None, None
        if not isinstance(cfg, dict):
            log("user-data: cloud-config is not a mapping: ignored")
            return None, None
        return cfg, None
    if text.startswith("#!"):
        return None, raw
    log("user-data: neither #cloud-config nor a #! script: ignored")
    return None, None


def decode_user_data(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value else None


def boot_argv(settings: SandboxSettings, spec: HostSpec) -> list[str]:
    """The command that becomes the host: namespaces around init.sh."""
    return [
        "ip", "netns", "exec", net.netns_name(settings.bridge, spec.instance_id),
        "unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child", "--propagation", "private",
        "/bin/sh", str(HERE / "init.sh"),
        str(host_dir(settings, spec.instance_id)), str(settings.image_path(spec.image)), spec.hostname,
    ]


def write_seed(settings: SandboxSettings, spec: HostSpec, user_data: bytes | None, log=print) -> None:
    d = host_dir(settings, spec.instance_id)
    seed = d / "seed"
    seed.mkdir(parents=True, exist_ok=True)
    meta = {"instance_id": spec.instance_id, "hostname": spec.hostname, "private_ip": spec.private_ip,
            "proxy_url": settings.proxy_url, "apt_proxy_url": aptcache.apt_proxy(settings),
            "default_user": DEFAULT_USER,
            # the bridge address by name too: Python's no_proxy matching knows no CIDR ranges, and the S3
            # gate there is reached directly, not through the proxy
            "no_proxy": [*net.PRIVATE_RANGES, settings.bridge_address],
            "nameserver": settings.bridge_address}   # dnsmasq with Route53's zones (dns.py)
    (seed / "meta.json").write_text(json.dumps(meta))
    (seed / "boot.py").write_bytes((HERE / "guest_boot.py").read_bytes())
    cfg, script = split_user_data(user_data, log)
    cfg_file, script_file = seed / "cloud-config.json", seed / "user-script"
    cfg_file.unlink(missing_ok=True)
    script_file.unlink(missing_ok=True)
    if cfg is not None:
        cfg_file.write_text(json.dumps(cfg, default=str))
        cfg_file.chmod(0o600)
    if script is not None:
        script_file.write_bytes(script)
        script_file.chmod(0o700)
    os.chmod(seed, 0o700)


def read_state(settings: SandboxSettings, instance_id: str) -> dict | None:
    try:
        return json.loads((host_dir(settings, instance_id) / "host.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_state(settings: SandboxSettings, instance_id: str, state: dict) -> None:
    path = host_dir(settings, instance_id) / "host.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def known_hosts(settings: SandboxSettings) -> list[str]:
    if not settings.hosts_dir.is_dir():
        return []
    return sorted(p.name for p in settings.hosts_dir.iterdir() if (p / "host.json").exists())


def host_pid(settings: SandboxSettings, instance_id: str) -> int | None:
    """The host's PID 1 as seen from this machine, if it runs."""
    launcher = procs.read_pidfile(host_dir(settings, instance_id) / "launcher.pid")
    if launcher is None:
        return None
    kids = procs.children(launcher)
    return kids[0] if kids else None


def is_running(settings: SandboxSettings, instance_id: str) -> bool:
    return procs.read_pidfile(host_dir(settings, instance_id) / "launcher.pid") is not None


RETRY_AFTER = 10.0  # a host whose boot died is booted again at most this often


def start(settings: SandboxSettings, spec: HostSpec, user_data: bytes | None, log=print) -> subprocess.Popen | None:
    """Create (first time) and boot the host; no-op if it runs or its last boot died moments ago."""
    if is_running(settings, spec.instance_id):
        return None
    d = host_dir(settings, spec.instance_id)
    booted = d / "launcher.pid"
    if booted.exists() and time.time() - booted.stat().st_mtime < RETRY_AFTER:
        return None  # it crashed: its console.log says why; retry later rather than spin
    for sub in ("upper", "work", "merged"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    state = read_state(settings, spec.instance_id) or {}
    if state.get("private_ip") not in (None, spec.private_ip):
        raise SandboxError(f"{spec.instance_id}: private IP changed from {state['private_ip']} to {spec.private_ip}")
    if state.get("image", spec.image) != spec.image:   # host.json of before images had names: debian-12
        raise SandboxError(f"{spec.instance_id}: its disk lies over image {state['image']}, not {spec.image}")
    write_state(settings, spec.instance_id, {**asdict(spec), "created": state.get("created", time.time())})
    if not state.get("seeded"):
        write_seed(settings, spec, user_data, log)
    else:  # later boots: fresh metadata and boot script, the same user-data
        _refresh_seed(settings, spec)
    write_state(settings, spec.instance_id, {**asdict(spec), "created": state.get("created", time.time()), "seeded": True})
    stop_network(settings, spec.instance_id, spec.private_ip)
    via = net.routed_via(spec.private_ip)
    if via is not None and via != settings.bridge and net.route_is_specific(spec.private_ip):
        raise SandboxError(f"{spec.instance_id}: {spec.private_ip} is already routed via {via} "
                           f"(another local cloud on this machine uses it); not booted")
    net.run_all(net.host_net_cmds(spec.instance_id, spec.private_ip, settings.bridge, settings.bridge_address))
    return procs.spawn(boot_argv(settings, spec), d / "console.log", d / "launcher.pid")


def _refresh_seed(settings: SandboxSettings, spec: HostSpec) -> None:
    seed = host_dir(settings, spec.instance_id) / "seed"
    meta = json.loads((seed / "meta.json").read_text())
    meta.update(hostname=spec.hostname, private_ip=spec.private_ip, proxy_url=settings.proxy_url,
                apt_proxy_url=aptcache.apt_proxy(settings))
    (seed / "meta.json").write_text(json.dumps(meta))
    (seed / "boot.py").write_bytes((HERE / "guest_boot.py").read_bytes())


def shutdown_argv(init_pid: int) -> list[str]:
    """Run the guest's shutdown (guest_boot.py's, read from stdin: the one of this whipup, whatever boot
    script the host booted with) inside the host's namespaces, as its root: every running service stopped
    through its init script, the boot's in reverse order, so PostgreSQL shuts down cleanly and supervisord
    stops its programs."""
    return ["nsenter", "--target", str(init_pid), "--mount", "--uts", "--ipc", "--net", "--pid",
            "--", "/usr/bin/python3", "-", "shutdown"]


def shutdown_script() -> bytes:
    return (HERE / "guest_boot.py").read_bytes()


def stop(settings: SandboxSettings, instance_id: str, grace: float = 5.0, services_grace: float = 90.0) -> bool:
    """Stop the host as a shutdown would: its services' init scripts, then SIGTERM to every
    process, then SIGKILL of its PID 1 (which ends the rest); keep its disk."""
    d = host_dir(settings, instance_id)
    launcher = procs.read_pidfile(d / "launcher.pid")
    stopped = False
    if launcher is not None:
        init = host_pid(settings, instance_id)
        if init and services_grace > 0:
            with open(d / "console.log", "ab") as console:
                try:
                    subprocess.run(shutdown_argv(init), stdout=console, stderr=subprocess.STDOUT,
                                   input=shutdown_script(), timeout=services_grace)
                except subprocess.TimeoutExpired:
                    console.write(b"shutdown: services did not stop in time\n")
        ns = procs.pid_namespace(init) if init else None
        if ns and ns != procs.pid_namespace(os.getpid()):
            members = [p for p in procs.pids_in_namespace(ns) if p != init]
            for pid in members:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(procs.proc_starttime(p) for p in members):
                time.sleep(0.05)
        if init:
            try:
                os.kill(init, signal.SIGKILL)
            except ProcessLookupError:
                pass
        procs.terminate(launcher, 5.0)
        stopped = True
    (d / "launcher.pid").unlink(missing_ok=True)
    state = read_state(settings, instance_id) or {}
    stop_network(settings, instance_id, state.get("private_ip"))
    return stopped


def stop_network(settings: SandboxSettings, instance_id: str, ip: str | None) -> None:
    net.run_all(net.host_net_down_cmds(instance_id, ip, settings.bridge), check=False)


def destroy(settings: SandboxSettings, instance_id: str) -> None:
    """Terminate: processes, network namespace and disk are removed."""
    stop(settings, instance_id, grace=1.0, services_grace=0)
    remove_tree(host_dir(settings, instance_id))
